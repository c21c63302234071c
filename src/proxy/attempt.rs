//! Upstream attempts (SPEC 4): acquire a key permit (waiting in the pool's FIFO when no key
//! has capacity), forward, read what the answer says about the key (429 → cool its project
//! for the model; key-level 400/403 → disable it), and retry a retryable failure on
//! another key while nothing has reached the client. The answer that ends the loop is
//! relayed with a tap that settles tokens, pins created resources and holds the permit
//! until the body is done.

use super::body::{self, BodyObserver, ForwardBody, GateBody, RelayBody};
use super::headers::{self, X_GEMGATE_ATTEMPTS, X_GEMGATE_KEY, X_GEMGATE_MODEL, X_GOOG_UPLOAD_URL};
use super::service::Gateway;
use super::upload;
use crate::error::GateError;
use crate::gemini::{self, ErrorFacts, UsageScan};
use crate::pool::pins::PinStore;
use crate::pool::{try_acquire_key, Demand, Key, KeyPool, Permit, Unavailable};
use crate::quota::clock::Millis;
use crate::quota::day::pacific_day;
use crate::quota::queue::Refused;
use crate::quota::CooldownCause;
use crate::snapshot::Snapshot;
use crate::telemetry::AccessLog;
use bytes::Bytes;
use http::header::{CONTENT_ENCODING, CONTENT_TYPE, HOST};
use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tracing::warn;

/// Error bodies are read (to learn about the key) up to this size.
const ERROR_BODY_MAX: u64 = 256 << 10;
/// Answers to creating requests are read for the names they create up to this size.
const CREATED_NAME_SCAN_MAX: usize = 1 << 20;

/// What the attempts need to know about the request.
pub struct Call {
    /// The model called, for quota and `x-gemgate-model`.
    pub model: Option<String>,
    /// The call takes quota for its model (SPEC 4: model methods, OpenAI chat completions
    /// and embeddings).
    pub metered: bool,
    /// The request creates something: retried only when the upstream surely did not act.
    pub creates: bool,
    pub streaming: bool,
    /// The body was kept and the request is not pinned: it may go to another key.
    pub retryable: bool,
    pub pinned: Option<Arc<Key>>,
}

impl Call {
    fn quota_model(&self) -> Option<&str> {
        self.model.as_deref().filter(|_| self.metered)
    }
}

/// Why one attempt did not end the request.
enum Failure {
    /// An upstream answer that may still be the final one.
    Answer(http::response::Parts, Bytes),
    Error(GateError),
}

impl Failure {
    fn is_quota(&self) -> bool {
        matches!(self, Failure::Answer(parts, _) if parts.status == StatusCode::TOO_MANY_REQUESTS)
    }
}

pub async fn run(
    gateway: &Gateway,
    snapshot: &Snapshot,
    pool: &KeyPool,
    parts: http::request::Parts,
    body: ForwardBody,
    call: &Call,
    log: &mut AccessLog,
) -> Result<Response<GateBody>, GateError> {
    let max_attempts = if call.retryable { snapshot.config.retry.attempts } else { 1 };
    let host = parts.headers.get(HOST).and_then(|h| h.to_str().ok()).map(str::to_owned);
    let query = parts.uri.query().map(headers::strip_key_param);
    let uri = snapshot.upstream.uri(parts.uri.path(), query.as_deref())?;
    let body_bytes = body.shared_bytes();
    let estimate = || body_bytes.as_deref().map_or(1, gemini::estimate_input_tokens);
    let demand = Demand { model: call.quota_model(), tokens: &estimate };
    let mut body = Some(body);
    let mut tried: Vec<Arc<str>> = Vec::new();
    let mut last: Option<Failure> = None;
    let mut attempt: u32 = 0;
    while attempt < max_attempts {
        let mut permit = match acquire(gateway, snapshot, pool, call.pinned.as_ref(), &demand, &tried).await {
            Ok(permit) => permit,
            // Every key answered 429 and now cools: wait for the first back like any
            // request would (up to `queue.max_wait`), or answer when it will be.
            Err(Acquired::NoOtherKey) if last.as_ref().is_some_and(Failure::is_quota) && !tried.is_empty() => {
                tried.clear();
                continue;
            }
            Err(Acquired::NoOtherKey) => break,
            // After a 429 the refusal says better when capacity returns (SPEC 4: keys
            // cooling → 429 with the earliest end); after other failures the last stands.
            Err(Acquired::Refused(e)) if last.as_ref().is_none_or(Failure::is_quota) => return Err(e),
            Err(Acquired::Refused(_)) => break,
        };
        attempt += 1;
        log.attempts = attempt;
        log.key = Some(permit.key.id.clone());
        tried.push(permit.key.id.clone());
        let mut upstream_headers = parts.headers.clone();
        headers::to_upstream(&mut upstream_headers, permit.key.auth_header(), false);
        let this_body = match (&body_bytes, body.take()) {
            (Some(bytes), _) => ForwardBody::buffered(bytes.clone()),
            (None, Some(streamed)) => streamed,
            (None, None) => break,
        };
        let mut request = Request::new(this_body);
        *request.method_mut() = parts.method.clone();
        *request.uri_mut() = uri.clone();
        *request.headers_mut() = upstream_headers;
        let sent_at = Instant::now();
        let response = match snapshot.upstream.send(request).await {
            Ok(response) => response,
            Err(e) => {
                let retry = match &e {
                    // Nothing was sent: safe to retry anything, and no quota was used.
                    GateError::UpstreamUnreachable(_) => {
                        permit.refund();
                        true
                    }
                    GateError::UpstreamBroken(_) => !call.creates,
                    _ => false,
                };
                if !retry || attempt >= max_attempts {
                    return Err(e);
                }
                last = Some(Failure::Error(e));
                continue;
            }
        };
        let status = response.status();
        let retry_on = snapshot.config.retry.on.contains(&status.as_u16());
        let may_retry = attempt < max_attempts;
        let inspect = matches!(status.as_u16(), 400 | 403 | 429);
        let retry_5xx = retry_on && may_retry && !call.creates;
        if !(inspect || retry_5xx) {
            return Ok(respond(gateway, snapshot, response, permit, call, attempt, host.as_deref(), sent_at));
        }
        // An error worth reading: it may say something about the key, or be retried.
        let (response_parts, incoming) = response.into_parts();
        let raw = match body::read_limited(incoming, ERROR_BODY_MAX).await {
            Ok(raw) => raw,
            Err(_) => return Err(GateError::UpstreamBroken("the upstream's error answer could not be read".into())),
        };
        let facts = ErrorFacts::parse(&decoded(&response_parts.headers, &raw));
        let key_level = facts.is_key_level(status.as_u16());
        if status == StatusCode::TOO_MANY_REQUESTS {
            cool(snapshot, &permit.key, call.quota_model(), &facts);
            permit.refund();
        } else if key_level {
            let now = gateway.state.clock.now();
            let next_probe = now + snapshot.config.health.probe_interval.as_millis() as Millis;
            let reason = facts.reason.as_deref().unwrap_or("key-level error");
            warn!(key = %permit.key.id, status = status.as_u16(), reason, "key disabled");
            permit.key.health.disable(reason, now, next_probe);
            gateway.state.health_changed.notify_one();
        }
        // SPEC 4: creating requests are retried only when the upstream surely did not act.
        let retry =
            may_retry && ((retry_on && (!call.creates || status == StatusCode::TOO_MANY_REQUESTS)) || key_level);
        if !retry {
            return Ok(buffered_answer(response_parts, raw, &permit.key, call, attempt));
        }
        last = Some(Failure::Answer(response_parts, raw));
    }
    // SPEC 2: with every key disabled the answer is 503, not the last key's own 400/403,
    // which a client would read as a fault of its own credential.
    if matches!(last, Some(Failure::Answer(..))) && call.pinned.is_none() && !pool.has_usable_key() {
        if let Unavailable::AllDisabled { reasons, next_probe } = pool.all_disabled() {
            return Err(all_disabled(gateway, pool, &reasons, next_probe));
        }
    }
    match last {
        Some(Failure::Answer(parts, raw)) => {
            let key = tried.last().and_then(|id| snapshot.pools.key(id)).cloned();
            match key {
                Some(key) => Ok(buffered_answer(parts, raw, &key, call, attempt)),
                None => Ok(Response::from_parts(parts, GateBody::full(raw))),
            }
        }
        Some(Failure::Error(e)) => Err(e),
        None => Err(GateError::BadRequest("the request could not be sent".into())),
    }
}

/// Cools the key's project for the model after an upstream 429 (SPEC 4): until the Pacific
/// midnight for a per-day quota, for Google's `retryDelay`, else `health.cooldown_default`.
fn cool(snapshot: &Snapshot, key: &Key, model: Option<&str>, facts: &ErrorFacts) {
    let Some(model) = model else { return };
    let now = key.quota.now();
    let (until, cause) = if facts.is_per_day() {
        (pacific_day(now).1, CooldownCause::PerDay)
    } else if let Some(delay) = facts.retry_delay {
        (now + delay.as_millis() as Millis, CooldownCause::PerMinute)
    } else {
        (now + snapshot.config.health.cooldown_default.as_millis() as Millis, CooldownCause::Unspecified)
    };
    warn!(key = %key.id, project = %key.project, model, cooldown_ms = until - now, ?cause, "upstream 429: cooling down");
    key.quota.cool(model, until, cause);
}

/// A decoded copy of an error body (SPEC 2: gemgate reads a copy, the client gets the
/// original encoding).
fn decoded(headers: &http::HeaderMap, raw: &Bytes) -> Bytes {
    let gzip = headers.get(CONTENT_ENCODING).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
    if !gzip {
        return raw.clone();
    }
    body::gunzip(raw, ERROR_BODY_MAX).map(Bytes::from).unwrap_or_default()
}

enum Acquired {
    /// Every key that could serve was tried: the last answer stands.
    NoOtherKey,
    Refused(GateError),
}

/// A permit for the pinned key, or any key of the pool, waiting in FIFO order up to
/// `queue.max_wait` (SPEC 4).
async fn acquire(
    gateway: &Gateway,
    snapshot: &Snapshot,
    pool: &KeyPool,
    pinned: Option<&Arc<Key>>,
    demand: &Demand<'_>,
    tried: &[Arc<str>],
) -> Result<Permit, Acquired> {
    let model = demand.model.unwrap_or("");
    // A pinned call waits in a line of its own, so it never holds up calls that any key
    // could serve.
    let queue = match pinned {
        Some(key) => pool.queues.queue(&format!("{model}@{}", key.id)),
        None => pool.queues.queue(model),
    };
    let clock = &gateway.state.clock;
    let q = &snapshot.config.queue;
    let result = queue
        .acquire(clock, q.max_wait, q.max_waiting, || match pinned {
            Some(_) if !tried.is_empty() => crate::quota::queue::Try::Fail(Unavailable::NoOtherKey),
            Some(key) => try_acquire_key(key, demand),
            None => pool.try_acquire(demand, tried),
        })
        .await;
    let retry_in = |at: Option<Millis>| {
        let now = clock.now();
        at.map_or(q.max_wait, |at| Duration::from_millis(at.saturating_sub(now)))
    };
    result.map_err(|refused| match refused {
        Refused::Failed(Unavailable::NoOtherKey) => Acquired::NoOtherKey,
        Refused::Failed(Unavailable::AllDisabled { reasons, next_probe }) => {
            Acquired::Refused(all_disabled(gateway, pool, &reasons, next_probe))
        }
        Refused::Full { retry_at } => {
            Acquired::Refused(GateError::QueueFull { pool: pool.name.to_string(), retry_in: retry_in(retry_at) })
        }
        Refused::TimedOut { retry_at } => Acquired::Refused(GateError::Exhausted {
            pool: pool.name.to_string(),
            model: demand.model.map(str::to_string),
            retry_in: retry_in(retry_at),
        }),
    })
}

/// 503 for a pool whose keys are all disabled, with `Retry-After` at the next probe.
fn all_disabled(gateway: &Gateway, pool: &KeyPool, reasons: &[String], next_probe: Option<Millis>) -> GateError {
    let now = gateway.state.clock.now();
    GateError::AllKeysDisabled {
        pool: pool.name.to_string(),
        reasons: reasons.join(", "),
        retry_in: next_probe.map(|at| Duration::from_millis(at.saturating_sub(now))),
    }
}

/// A key for a Live session: healthy and under its in-flight cap (no quota: the session's
/// usage is counted by Google as it goes). The slot is released at once; sessions are few.
pub async fn acquire_unmetered(gateway: &Gateway, snapshot: &Snapshot, pool: &KeyPool) -> Result<Arc<Key>, GateError> {
    let no_tokens = || 0;
    let demand = Demand { model: None, tokens: &no_tokens };
    match acquire(gateway, snapshot, pool, None, &demand, &[]).await {
        Ok(permit) => Ok(permit.key.clone()),
        Err(Acquired::Refused(e)) => Err(e),
        Err(Acquired::NoOtherKey) => Err(GateError::BadRequest("no key can serve this session".into())),
    }
}

/// The gemgate headers every answer from the upstream carries.
fn mark(parts: &mut http::response::Parts, key: &Key, call: &Call, attempts: u32) {
    headers::remove_hop_by_hop(&mut parts.headers, false);
    parts.headers.insert(&X_GEMGATE_KEY, key.id_header().clone());
    if let Some(model) = call.model.as_deref().and_then(|m| HeaderValue::from_str(m).ok()) {
        parts.headers.insert(&X_GEMGATE_MODEL, model);
    }
    parts.headers.insert(&X_GEMGATE_ATTEMPTS, headers::attempts_value(attempts));
}

fn buffered_answer(
    mut parts: http::response::Parts,
    raw: Bytes,
    key: &Key,
    call: &Call,
    attempts: u32,
) -> Response<GateBody> {
    mark(&mut parts, key, call, attempts);
    Response::from_parts(parts, GateBody::full(raw))
}

/// Relays the final upstream answer with the tap attached.
#[allow(clippy::too_many_arguments)]
fn respond(
    gateway: &Gateway,
    snapshot: &Snapshot,
    response: Response<Incoming>,
    permit: Permit,
    call: &Call,
    attempts: u32,
    host: Option<&str>,
    sent_at: Instant,
) -> Response<GateBody> {
    let (mut parts, incoming) = response.into_parts();
    mark(&mut parts, &permit.key, call, attempts);
    let pins = &gateway.state.pins;
    if parts.headers.contains_key(&X_GOOG_UPLOAD_URL) {
        let host = host.map(str::to_owned).unwrap_or_else(|| snapshot.config.listen.to_string());
        if let Some(id) = upload::rewrite_upload_url(&mut parts.headers, &host, snapshot.upstream.prefix()) {
            pins.pin(PinStore::upload_resource(&id), permit.key.id.clone());
        }
    }
    let streaming = call.streaming
        || parts.headers.get(CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    let relay = if streaming {
        RelayBody::streaming(incoming, snapshot.upstream.stream_idle_timeout)
    } else {
        let limit = snapshot.upstream.request_timeout;
        RelayBody::until(incoming, sent_at + limit, limit)
    };
    let gzip = parts.headers.get(CONTENT_ENCODING).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
    let tap = Tap {
        usage: permit.tracks_tokens().then(UsageScan::default),
        created: (call.creates && parts.status.is_success())
            .then(|| Created { pins: gateway.state.clone(), seen: Vec::new() }),
        gzip_seen: gzip.then(Vec::new),
        permit: Some(permit),
    };
    Response::from_parts(parts, GateBody::relay(relay.observe(Box::new(tap))))
}

/// Watches a relayed answer: reads its input-token count (to settle TPM) and the names it
/// creates (to pin them), and holds the key's permit until the answer is done.
struct Tap {
    permit: Option<Permit>,
    usage: Option<UsageScan>,
    created: Option<Created>,
    /// A gzip answer is kept (bounded) and decoded at its end.
    gzip_seen: Option<Vec<u8>>,
}

struct Created {
    pins: Arc<crate::pool::state::GateState>,
    seen: Vec<u8>,
}

impl BodyObserver for Tap {
    fn chunk(&mut self, data: &Bytes) {
        if self.usage.is_none() && self.created.is_none() {
            return;
        }
        if let Some(seen) = self.gzip_seen.as_mut() {
            if seen.len() + data.len() <= CREATED_NAME_SCAN_MAX {
                seen.extend_from_slice(data);
            }
            return;
        }
        self.see(data);
    }

    fn end(&mut self) {
        if let Some(plain) = self.gzip_seen.take().and_then(|gz| body::gunzip(&gz, CREATED_NAME_SCAN_MAX as u64)) {
            self.see(&plain);
        }
        if let (Some(permit), Some(tokens)) = (&self.permit, self.usage.as_ref().and_then(|u| u.prompt_tokens)) {
            permit.settle(tokens);
        }
        if let (Some(created), Some(permit)) = (self.created.take(), &self.permit) {
            for name in gemini::created_resources(&created.seen) {
                created.pins.pins.pin(name, permit.key.id.clone());
            }
        }
        self.permit = None;
    }
}

impl Tap {
    fn see(&mut self, data: &[u8]) {
        if let Some(usage) = self.usage.as_mut() {
            usage.feed(data);
        }
        if let Some(created) = self.created.as_mut() {
            if created.seen.len() + data.len() <= CREATED_NAME_SCAN_MAX {
                created.seen.extend_from_slice(data);
            } else {
                created.seen.clear();
                self.created = None;
            }
        }
    }
}
