//! The request path, one way (STYLE 2): accept → authenticate (auth) → parse (gemini) →
//! take the body → choose the pool and any pinned key → attempts (proxy::attempt: acquire
//! a key permit, forward, observe the outcome, retry) → respond. Only this file and
//! `attempt` orchestrate; each step hands its value to the next and nothing calls back up
//! the chain.

use super::attempt::{self, Call};
use super::body::{self, ForwardBody, GateBody, Intake, ReadError};
use super::caching;
use super::headers::{self, X_GEMGATE_ATTEMPTS, X_GEMGATE_CACHE, X_REQUEST_ID};
use super::upgrade;
use crate::auth::Client;
use crate::cache::flight::Flights;
use crate::cache::CacheStats;
use crate::error::GateError;
use crate::gemini::{self, CallInfo, Surface};
use crate::pool::pins::PinStore;
use crate::pool::state::GateState;
use crate::pool::Key;
use crate::snapshot::Snapshot;
use crate::telemetry::AccessLog;
use arc_swap::ArcSwap;
use http::header::CONTENT_LENGTH;
use http::{HeaderValue, Method, Request, Response};
use hyper::body::Incoming;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The state shared by every request: the live config snapshot and what outlives it.
pub struct Gateway {
    live: ArcSwap<Snapshot>,
    pub state: Arc<GateState>,
    draining: AtomicBool,
    /// Bytes of request bodies kept for retries, all requests together (`retry.buffer_budget`).
    retry_budget: Arc<Semaphore>,
    /// Upgraded (WebSocket) sessions, which outlive their HTTP connection; shutdown waits
    /// for them within the grace period.
    pub(crate) sessions: TaskTracker,
    /// Cancelled when the shutdown grace has elapsed: connections and sessions still open
    /// are cut off then (SPEC 7), not left running past `shutdown()`.
    pub(crate) cutoff: CancellationToken,
    /// Identical cacheable calls in flight (SPEC 5).
    pub flights: Arc<Flights>,
    pub cache_stats: Arc<CacheStats>,
}

impl Gateway {
    pub fn new(snapshot: Snapshot, state: Arc<GateState>) -> Arc<Gateway> {
        let budget =
            usize::try_from(snapshot.config.retry.buffer_budget).unwrap_or(usize::MAX).min(Semaphore::MAX_PERMITS);
        Arc::new(Gateway {
            live: ArcSwap::from_pointee(snapshot),
            state,
            draining: AtomicBool::new(false),
            retry_budget: Arc::new(Semaphore::new(budget)),
            sessions: TaskTracker::new(),
            cutoff: CancellationToken::new(),
            flights: Arc::default(),
            cache_stats: Arc::default(),
        })
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.live.load_full()
    }

    /// `/readyz`: config loaded, a key usable, not shutting down (SPEC 7).
    pub fn is_ready(&self) -> bool {
        !self.draining.load(Ordering::Relaxed) && self.live.load().pools.pools().any(|p| p.has_usable_key())
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// Serves one request; never fails (errors become Gemini-shaped answers).
    pub async fn handle(self: Arc<Self>, mut request: Request<Incoming>) -> Response<GateBody> {
        let started = Instant::now();
        let request_id = request.headers_mut().remove(&X_REQUEST_ID).unwrap_or_else(headers::new_request_id);
        let snapshot = self.live.load_full();
        let mut log = AccessLog::start(&request_id, request.method(), request.uri().path());
        let mut response = match self.proxy(&snapshot, request, &request_id, &mut log).await {
            Ok(response) => response,
            Err(e) => {
                log.error = Some(e.kind());
                e.into_response()
            }
        };
        response.headers_mut().insert(&X_REQUEST_ID, request_id);
        if log.attempts > 0 && !response.headers().contains_key(&X_GEMGATE_ATTEMPTS) {
            response.headers_mut().insert(&X_GEMGATE_ATTEMPTS, headers::attempts_value(log.attempts));
        }
        log.finish(response.status(), started.elapsed());
        response
    }

    async fn proxy(
        self: &Arc<Self>,
        snapshot: &Arc<Snapshot>,
        request: Request<Incoming>,
        request_id: &HeaderValue,
        log: &mut AccessLog,
    ) -> Result<Response<GateBody>, GateError> {
        let path = request.uri().path();
        let mut info = gemini::classify(path).ok_or_else(|| GateError::UnknownPath(path.to_string()))?;
        let credential = headers::client_credential(request.headers(), request.uri().query());
        let client = snapshot.auth.authenticate(credential.as_deref())?;
        log.client = Some(client.name.clone());
        if let Some(model) = &info.model {
            log.set_model(model);
            client.check_model(model)?;
        }
        let pool = snapshot.default_pool()?;
        if upgrade::is_websocket(&request) {
            let key = match self.pinned_key(snapshot, &info, request.uri().query(), None) {
                Some(key) => key,
                None => attempt::acquire_unmetered(self, snapshot, pool).await?,
            };
            log.key = Some(key.id.clone());
            let session = upgrade::Session { client, key, request_id: request_id.clone() };
            return upgrade::proxy(snapshot, request, session, &self.sessions, self.cutoff.clone()).await;
        }
        let (parts, incoming) = request.into_parts();
        let taken = self.take_body(snapshot, &parts, incoming, &info, &client).await?;
        let model = match info.surface {
            Surface::OpenAi => {
                let model = taken.body.bytes().and_then(gemini::openai_model);
                if let Some(m) = &model {
                    client.check_model(m)?;
                } else if client.is_restricted() && info.method.as_deref().is_some_and(gemini::is_generation) {
                    return Err(GateError::BadRequest("the request names no model".into()));
                }
                if let Some(m) = &model {
                    log.set_model(m);
                }
                model
            }
            // Nothing after this reads `info.model`: it moves into the call.
            _ => info.model.take(),
        };
        let pinned = self.pinned_key(snapshot, &info, parts.uri.query(), taken.body.bytes());
        let metered = match info.surface {
            // SPEC 4: quota applies to calls of a model method and to OpenAI chat
            // completions and embeddings; files, uploads, models list/get take none.
            Surface::OpenAi => info.method.as_deref().is_some_and(gemini::is_generation),
            Surface::Rest => info.method.is_some(),
            _ => false,
        };
        let call = Call {
            metered: metered && model.is_some(),
            model,
            creates: parts.method == Method::POST && !info.method.as_deref().is_some_and(gemini::is_generation),
            streaming: gemini::is_streaming_method(info.method.as_deref()),
            retryable: taken.retryable && pinned.is_none(),
            pinned,
        };
        let request = caching::Request { parts, body: taken.body, call, budget: taken.budget };
        match caching::key_for(snapshot, &request, &info, &client) {
            Some(cache_use) => caching::serve(self, snapshot, request, cache_use, log).await,
            None => {
                log.cache = "bypass";
                let mut response =
                    attempt::run(self, snapshot, pool, request.parts, request.body, &request.call, log).await?;
                response.headers_mut().insert(&X_GEMGATE_CACHE, HeaderValue::from_static("bypass"));
                Ok(response)
            }
        }
    }

    /// The key a pinned resource lives with (SPEC 2): named in the path, by an upload
    /// session, or in the body. A key that a reload removed pins nothing.
    fn pinned_key(
        &self,
        snapshot: &Snapshot,
        info: &CallInfo,
        query: Option<&str>,
        body: Option<&[u8]>,
    ) -> Option<Arc<Key>> {
        let pins = &self.state.pins;
        if !pins.in_use() {
            return None;
        }
        let pinned = info
            .resource
            .as_ref()
            .and_then(|r| pins.lookup(r))
            .or_else(|| {
                let id = headers::query_param(query?, "upload_id")?;
                pins.lookup(&PinStore::upload_resource(&id))
            })
            .or_else(|| pins.lookup_any(&gemini::referenced_resources(body?)))?;
        snapshot.pools.key(&pinned).cloned()
    }

    /// Takes in the request body as SPEC 2 and 4 ask: refused by declared length over the
    /// limit; read whole when small enough to keep for retries (within the budget) or when
    /// it must be inspected; streamed otherwise (not retried); uploads are exempt.
    async fn take_body(
        &self,
        snapshot: &Snapshot,
        parts: &http::request::Parts,
        incoming: Incoming,
        info: &CallInfo,
        client: &Client,
    ) -> Result<TakenBody, GateError> {
        let limit = snapshot.upstream.max_request_body;
        let declared =
            parts.headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
        if hyper::body::Body::is_end_stream(&incoming) && declared.unwrap_or(0) == 0 {
            return Ok(TakenBody { body: ForwardBody::empty(), retryable: true, budget: None });
        }
        let retry = &snapshot.config.retry;
        let budget = declared
            .filter(|&n| n <= retry.max_body)
            .and_then(|n| self.retry_budget.clone().try_acquire_many_owned(u32::try_from(n).ok()?).ok());
        let must_inspect = client.is_restricted() && info.surface == Surface::OpenAi;
        let keep = budget.is_some() || must_inspect;
        let intake = body::intake(declared, limit, info.surface == Surface::Upload, keep);
        let body = match intake {
            Intake::TooLarge => return Err(GateError::BodyTooLarge { limit }),
            Intake::Buffer => match body::read_limited(incoming, limit).await {
                Ok(bytes) => ForwardBody::buffered(bytes),
                Err(ReadError::TooLarge) => return Err(GateError::BodyTooLarge { limit }),
                Err(ReadError::Client(e)) => {
                    return Err(GateError::BadRequest(format!("could not read the request body: {e}")))
                }
            },
            Intake::Stream => ForwardBody::Streaming { inner: http_body_util::Limited::new(incoming, limit as usize) },
            Intake::StreamUnlimited => ForwardBody::Unlimited { inner: incoming },
        };
        Ok(TakenBody { retryable: budget.is_some(), body, budget })
    }
}

/// A request body as taken in, and whether it may be sent more than once.
pub struct TakenBody {
    body: ForwardBody,
    retryable: bool,
    /// This body's share of `retry.buffer_budget`, held until the request is answered.
    budget: Option<OwnedSemaphorePermit>,
}
