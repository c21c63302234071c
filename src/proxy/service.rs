//! The request path, one way (STYLE 2): accept → authenticate (auth) → parse (gemini) →
//! take the body → choose a key (pool, pins) → forward (proxy::forward) → observe (pins,
//! access log) → respond (headers, error). Only this file orchestrates; each step hands
//! its value to the next and nothing calls back up the chain.

use super::body::{self, BodyObserver, ForwardBody, GateBody, Intake, ReadError, RelayBody};
use super::headers::{self, X_GEMGATE_ATTEMPTS, X_GEMGATE_KEY, X_GEMGATE_MODEL, X_GOOG_UPLOAD_URL, X_REQUEST_ID};
use super::{upgrade, upload};
use crate::auth::Client;
use crate::error::GateError;
use crate::gemini::{self, CallInfo, Surface};
use crate::pool::pins::PinStore;
use crate::pool::Key;
use crate::snapshot::Snapshot;
use crate::telemetry::AccessLog;
use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, HOST};
use http::{HeaderValue, Method, Request, Response};
use hyper::body::Incoming;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Answers to creating requests are read for the names they create up to this size.
const CREATED_NAME_SCAN_MAX: usize = 1 << 20;

/// The state shared by every request: the live config snapshot and what outlives it.
pub struct Gateway {
    live: ArcSwap<Snapshot>,
    pins: Arc<PinStore>,
    draining: AtomicBool,
    /// Upgraded (WebSocket) sessions, which outlive their HTTP connection; shutdown waits
    /// for them within the grace period.
    pub(crate) sessions: TaskTracker,
    /// Cancelled when the shutdown grace has elapsed: connections and sessions still open
    /// are cut off then (SPEC 7), not left running past `shutdown()`.
    pub(crate) cutoff: CancellationToken,
}

impl Gateway {
    pub fn new(snapshot: Snapshot) -> Arc<Gateway> {
        Arc::new(Gateway {
            live: ArcSwap::from_pointee(snapshot),
            pins: Arc::new(PinStore::default()),
            draining: AtomicBool::new(false),
            sessions: TaskTracker::new(),
            cutoff: CancellationToken::new(),
        })
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.live.load_full()
    }

    /// `/readyz`: config loaded, a key usable, not shutting down (SPEC 7).
    pub fn is_ready(&self) -> bool {
        !self.draining.load(Ordering::Relaxed) && self.live.load().pools.all_keys().next().is_some()
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
        log.finish(response.status(), started.elapsed());
        response
    }

    async fn proxy(
        &self,
        snapshot: &Snapshot,
        request: Request<Incoming>,
        request_id: &HeaderValue,
        log: &mut AccessLog,
    ) -> Result<Response<GateBody>, GateError> {
        let path = request.uri().path();
        let info = gemini::classify(path).ok_or_else(|| GateError::UnknownPath(path.to_string()))?;
        let credential = headers::client_credential(request.headers(), request.uri().query());
        let client = snapshot.auth.authenticate(credential.as_deref())?;
        log.client = Some(client.name.clone());
        if let Some(model) = &info.model {
            log.model = Some(model.clone());
            client.check_model(model)?;
        }
        if upgrade::is_websocket(&request) {
            let key = self.choose_key(snapshot, &info, request.uri().query(), None)?;
            log.key = Some(key.id.clone());
            let session = upgrade::Session { client, key, request_id: request_id.clone() };
            return upgrade::proxy(snapshot, request, session, &self.sessions, self.cutoff.clone()).await;
        }
        let (mut parts, incoming) = request.into_parts();
        let body = take_body(snapshot, &parts, incoming, &info, &client).await?;
        let model = match info.surface {
            Surface::OpenAi => {
                let model = body.bytes().and_then(gemini::openai_model);
                if let Some(m) = &model {
                    client.check_model(m)?;
                } else if client.is_restricted() && info.method.as_deref().is_some_and(gemini::is_generation) {
                    return Err(GateError::BadRequest("the request names no model".into()));
                }
                log.model.clone_from(&model);
                model
            }
            _ => info.model.clone(),
        };
        let key = self.choose_key(snapshot, &info, parts.uri.query(), body.bytes())?;
        log.key = Some(key.id.clone());

        let host = parts.headers.get(HOST).and_then(|h| h.to_str().ok()).map(str::to_owned);
        let query = parts.uri.query().map(headers::strip_key_param);
        parts.uri = snapshot.upstream.uri(parts.uri.path(), query.as_deref())?;
        headers::to_upstream(&mut parts.headers, key.auth_header(), false);
        let creates = parts.method == Method::POST && !info.method.as_deref().is_some_and(gemini::is_generation);
        let response = snapshot.upstream.send(Request::from_parts(parts, body)).await?;
        log.attempts = 1;

        let (mut parts, incoming) = response.into_parts();
        headers::remove_hop_by_hop(&mut parts.headers, false);
        if parts.headers.contains_key(&X_GOOG_UPLOAD_URL) {
            let host = host.unwrap_or_else(|| snapshot.config.listen.to_string());
            if let Some(id) = upload::rewrite_upload_url(&mut parts.headers, &host, snapshot.upstream.prefix()) {
                self.pins.pin(PinStore::upload_resource(&id), key.id.clone());
            }
        }
        let streaming = gemini::is_streaming_method(info.method.as_deref())
            || parts.headers.get(CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        let mut relay = if streaming {
            RelayBody::streaming(incoming, snapshot.upstream.stream_idle_timeout)
        } else {
            let limit = snapshot.upstream.request_timeout;
            RelayBody::until(incoming, log.started() + limit, limit)
        };
        if creates && parts.status.is_success() {
            let gzip = parts.headers.get(CONTENT_ENCODING).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
            relay = relay.observe(Box::new(CreatedNames::new(self.pins.clone(), key.id.clone(), gzip)));
        }
        parts.headers.insert(&X_GEMGATE_KEY, key.id_header().clone());
        if let Some(model) = model.as_deref().and_then(|m| HeaderValue::from_str(m).ok()) {
            parts.headers.insert(&X_GEMGATE_MODEL, model);
        }
        parts.headers.insert(&X_GEMGATE_ATTEMPTS, HeaderValue::from_static("1"));
        Ok(Response::from_parts(parts, GateBody::relay(relay)))
    }

    /// The key for this request: the one its pinned resource lives with (SPEC 2), else the
    /// next of the pool.
    fn choose_key(
        &self,
        snapshot: &Snapshot,
        info: &CallInfo,
        query: Option<&str>,
        body: Option<&[u8]>,
    ) -> Result<Arc<Key>, GateError> {
        if self.pins.in_use() {
            let pinned = info
                .resource
                .as_ref()
                .and_then(|r| self.pins.lookup(r))
                .or_else(|| {
                    let id = headers::query_param(query?, "upload_id")?;
                    self.pins.lookup(&PinStore::upload_resource(&id))
                })
                .or_else(|| self.pins.lookup_any(&gemini::referenced_resources(body?)));
            // A pinned key that a reload removed falls through to the pool.
            if let Some(key) = pinned.and_then(|id| snapshot.pools.key(&id).cloned()) {
                return Ok(key);
            }
        }
        let pool_name = &snapshot.config.default_pool;
        let pool = snapshot
            .pools
            .get(pool_name)
            .ok_or_else(|| GateError::BadRequest(format!("no pool named `{pool_name}`")))?;
        Ok(pool.select())
    }
}

/// Takes in the request body as SPEC 2 asks: refused by declared length over the limit,
/// read whole when small (to inspect), streamed otherwise; uploads are exempt.
async fn take_body(
    snapshot: &Snapshot,
    parts: &http::request::Parts,
    incoming: Incoming,
    info: &CallInfo,
    client: &Client,
) -> Result<ForwardBody, GateError> {
    let limit = snapshot.upstream.max_request_body;
    let declared = parts.headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if hyper::body::Body::is_end_stream(&incoming) && declared.unwrap_or(0) == 0 {
        return Ok(ForwardBody::empty());
    }
    let must_inspect = client.is_restricted() && info.surface == Surface::OpenAi;
    match body::intake(declared, limit, info.surface == Surface::Upload, must_inspect) {
        Intake::TooLarge => Err(GateError::BodyTooLarge { limit }),
        Intake::Buffer => match body::read_limited(incoming, limit).await {
            Ok(bytes) => Ok(ForwardBody::buffered(bytes)),
            Err(ReadError::TooLarge) => Err(GateError::BodyTooLarge { limit }),
            Err(ReadError::Client(e)) => Err(GateError::BadRequest(format!("could not read the request body: {e}"))),
        },
        Intake::Stream => Ok(ForwardBody::Streaming { inner: http_body_util::Limited::new(incoming, limit as usize) }),
        Intake::StreamUnlimited => Ok(ForwardBody::Unlimited { inner: incoming }),
    }
}

/// Reads the answer to a creating request for the resource names it creates, and pins them
/// to the key that made them (SPEC 2).
struct CreatedNames {
    pins: Arc<PinStore>,
    key_id: Arc<str>,
    seen: Vec<u8>,
    overflowed: bool,
    /// The answer is gzip-encoded: names are read from a decoded copy (SPEC 2).
    gzip: bool,
}

impl CreatedNames {
    fn new(pins: Arc<PinStore>, key_id: Arc<str>, gzip: bool) -> Self {
        CreatedNames { pins, key_id, seen: Vec::new(), overflowed: false, gzip }
    }
}

impl BodyObserver for CreatedNames {
    fn chunk(&mut self, data: &Bytes) {
        if self.seen.len() + data.len() > CREATED_NAME_SCAN_MAX {
            self.overflowed = true;
        } else {
            self.seen.extend_from_slice(data);
        }
    }

    fn end(&mut self) {
        if self.overflowed {
            return;
        }
        if self.gzip {
            use std::io::Read;
            let mut decoded = Vec::new();
            let mut decoder = flate2::read::GzDecoder::new(self.seen.as_slice()).take(CREATED_NAME_SCAN_MAX as u64);
            if decoder.read_to_end(&mut decoded).is_err() {
                return;
            }
            self.seen = decoded;
        }
        for name in gemini::created_resources(&self.seen) {
            self.pins.pin(name, self.key_id.clone());
        }
    }
}
