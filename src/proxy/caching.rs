//! The cache step of the request path (SPEC 5): decide whether a request may use the cache,
//! answer a hit from the stored copy, and run a miss as a shared upstream call (single
//! flight) whose clean 2xx answer is stored. The step sees the request once; the rest of
//! the pipeline (`attempt`) is the same for cached and uncached calls.

use super::attempt::{self, Call};
use super::body::{ForwardBody, GateBody};
use super::cached::{accepts_gzip, FollowBody, ReplayBody};
use super::headers::{X_GEMGATE_ATTEMPTS, X_GEMGATE_CACHE, X_GEMGATE_KEY};
use super::service::Gateway;
use crate::auth::Client;
use crate::cache::answer::KEPT_HEADERS;
use crate::cache::flight::{End, EndGuard, Flight, Head};
use crate::cache::key::{cache_key, KeyParts};
use crate::cache::{Cache, CacheKey, CacheStats, CachedAnswer, Decision};
use crate::error::GateError;
use crate::gemini::{CallInfo, Surface};
use crate::snapshot::Snapshot;
use crate::telemetry::AccessLog;
use http::header::{CACHE_CONTROL, CONTENT_ENCODING, CONTENT_LENGTH};
use http::{HeaderName, HeaderValue, Response, StatusCode};
use http_body_util::BodyExt;
use std::sync::Arc;
use tokio::sync::OwnedSemaphorePermit;
use tracing::{debug, warn};

/// A request on its way upstream, owned, so a shared call can run on its own task.
pub struct Request {
    pub parts: http::request::Parts,
    pub body: ForwardBody,
    pub call: Call,
    /// The body's share of the retry buffer budget, held until the call ends.
    pub budget: Option<OwnedSemaphorePermit>,
}

/// How one request uses the cache: the decision, its key, and the backend.
pub struct CacheUse {
    pub decision: Decision,
    pub key: CacheKey,
    pub cache: Arc<dyn Cache>,
}

/// How this request uses the cache, and its key; `None`: it does not (a method not cached,
/// a body that is not JSON or was not kept, no backend, or `Cache-Control: no-store`).
/// Routing rules will add their `cache: bypass` here.
pub fn key_for(snapshot: &Snapshot, request: &Request, info: &CallInfo, client: &Client) -> Option<CacheUse> {
    let cache = snapshot.cache.clone()?;
    let config = &snapshot.config.cache;
    let decision = decision_from(&request.parts.headers);
    if decision == Decision::Bypass || !request.call.metered {
        return None;
    }
    let method = match info.surface {
        Surface::OpenAi => info.method.as_deref()?.replace('/', "."),
        Surface::Rest => info.method.clone()?,
        _ => return None,
    };
    if !config.methods.contains(&method) {
        return None;
    }
    let path = request.parts.uri.path();
    let version = match info.surface {
        Surface::OpenAi => "v1beta/openai",
        _ => path.trim_start_matches('/').split('/').next().unwrap_or(""),
    };
    let key = cache_key(&KeyParts {
        version,
        method: &method,
        model: request.call.model.as_deref()?,
        body: request.body.bytes()?,
        query: request.parts.uri.query(),
        client: config.per_client.then_some(&*client.name),
    })?;
    Some(CacheUse { decision, key, cache })
}

/// `Cache-Control: no-store` skips the cache; `no-cache` skips reading only (SPEC 5).
fn decision_from(headers: &http::HeaderMap) -> Decision {
    let mut decision = Decision::Use;
    for value in headers.get_all(CACHE_CONTROL).iter().filter_map(|v| v.to_str().ok()) {
        for directive in value.split(',').map(str::trim) {
            if directive.eq_ignore_ascii_case("no-store") {
                return Decision::Bypass;
            }
            if directive.eq_ignore_ascii_case("no-cache") {
                decision = Decision::Refresh;
            }
        }
    }
    decision
}

pub async fn serve(
    gateway: &Arc<Gateway>,
    snapshot: &Arc<Snapshot>,
    request: Request,
    CacheUse { decision, key, cache }: CacheUse,
    log: &mut AccessLog,
) -> Result<Response<GateBody>, GateError> {
    let stats = &gateway.cache_stats;
    let decode = !accepts_gzip(&request.parts.headers);
    // An identical call in flight is joined before the cache is read: were it to land while
    // the lookup is out (a Redis round trip), this request would miss and call again.
    let joined = if decision == Decision::Use { gateway.flights.follow(key) } else { None };
    if decision == Decision::Use && joined.is_none() {
        match cache.get(&key).await {
            Ok(Some(answer)) => {
                CacheStats::count(&stats.hits);
                log.cache = "hit";
                return Ok(replay(answer, decode));
            }
            Ok(None) => {}
            Err(e) => {
                // SPEC 5: a cache fault never fails a request; this one goes around it.
                CacheStats::count(&stats.faults);
                CacheStats::count(&stats.bypasses);
                warn!(error = %e, "cache lookup failed: bypassing the cache");
                log.cache = "bypass";
                let pool = snapshot.default_pool()?;
                let mut response =
                    attempt::run(gateway, snapshot, pool, request.parts, request.body, &request.call, log).await?;
                response.headers_mut().insert(&X_GEMGATE_CACHE, HeaderValue::from_static("bypass"));
                return Ok(response);
            }
        }
    }
    let max_keep = usize::try_from(snapshot.config.cache.max_entry_bytes).unwrap_or(usize::MAX);
    let (flight, subscriber, leader) = match joined {
        Some((flight, subscriber)) => (flight, subscriber, false),
        None if decision == Decision::Refresh => gateway.flights.solo(key, max_keep),
        None => gateway.flights.join(key, max_keep),
    };
    if leader {
        CacheStats::count(&stats.misses);
        tokio::spawn(fly(gateway.clone(), snapshot.clone(), request, flight.clone(), key, cache));
    } else {
        CacheStats::count(&stats.joined);
        drop(request);
    }
    let head = flight
        .head()
        .await
        .ok_or_else(|| GateError::UpstreamBroken("the shared upstream call ended without an answer".into()))?;
    log.cache = if leader { "miss" } else { "hit" };
    if leader {
        log.attempts = head.attempts;
        log.key = head.key.clone();
    }
    let decode =
        decode && head.headers.get(CONTENT_ENCODING).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
    let mut response = Response::new(GateBody::Follow { inner: FollowBody::new(subscriber, decode) });
    *response.status_mut() = head.status;
    *response.headers_mut() = head.headers;
    let headers = response.headers_mut();
    if decode {
        headers.remove(CONTENT_ENCODING);
        headers.remove(CONTENT_LENGTH);
    }
    if !leader {
        // A share of another request's call: no key of its own, no attempts.
        headers.remove(&X_GEMGATE_KEY);
        headers.remove(&X_GEMGATE_ATTEMPTS);
    }
    headers.insert(&X_GEMGATE_CACHE, HeaderValue::from_static(if leader { "miss" } else { "hit" }));
    Ok(response)
}

/// A stored answer as a response: its kept headers, no key, `x-gemgate-cache: hit`.
fn replay(answer: Arc<CachedAnswer>, decode: bool) -> Response<GateBody> {
    let decode = decode && answer.is_gzip();
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
    let mut response = Response::new(GateBody::Replay { inner: ReplayBody::new(answer.clone(), decode) });
    *response.status_mut() = status;
    let headers = response.headers_mut();
    for (name, value) in &answer.headers {
        if decode && name.eq_ignore_ascii_case("content-encoding") {
            continue;
        }
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) {
            headers.append(name, value);
        }
    }
    headers.insert(&X_GEMGATE_CACHE, HeaderValue::from_static("hit"));
    response
}

/// The shared upstream call of a flight: runs the attempts, feeds the flight, and stores a
/// clean 2xx answer. Cancelled when the last client of the flight has gone.
async fn fly(
    gateway: Arc<Gateway>,
    snapshot: Arc<Snapshot>,
    request: Request,
    flight: Arc<Flight>,
    key: CacheKey,
    cache: Arc<dyn Cache>,
) {
    let _ended = EndGuard(flight.clone());
    let cancel = flight.cancel.clone();
    let end = tokio::select! {
        end = pump(&gateway, &snapshot, request, &flight) => end,
        () = cancel.cancelled() => {
            debug!("every client of a shared call left: cancelling it");
            End::Broken
        }
    };
    let Some(answer) = (end == End::Clean).then(|| storable(&snapshot, &flight)).flatten() else {
        gateway.flights.land(&flight);
        flight.finish(end);
        return;
    };
    // Ended but not landed yet: an identical request arriving while the answer is being
    // stored joins this flight and reads the answer from it, rather than missing.
    flight.finish(End::Clean);
    match cache.put(&key, answer).await {
        Ok(()) => CacheStats::count(&gateway.cache_stats.stores),
        Err(e) => {
            CacheStats::count(&gateway.cache_stats.faults);
            warn!(error = %e, "cache store failed: the answer is not cached");
        }
    }
    gateway.flights.land(&flight);
}

/// The flight's answer in its stored form, if it may be stored: 2xx, kept whole, and
/// within `max_entry_bytes`.
fn storable(snapshot: &Snapshot, flight: &Flight) -> Option<Arc<CachedAnswer>> {
    let (head, chunks) = flight.whole()?;
    if !head.status.is_success() {
        return None;
    }
    let headers = KEPT_HEADERS
        .iter()
        .filter_map(|name| Some((name.to_string(), head.headers.get(*name)?.to_str().ok()?.to_string())))
        .collect();
    let answer = Arc::new(CachedAnswer { status: head.status.as_u16(), headers, chunks });
    (answer.size() as u64 <= snapshot.config.cache.max_entry_bytes).then_some(answer)
}

async fn pump(gateway: &Arc<Gateway>, snapshot: &Arc<Snapshot>, request: Request, flight: &Flight) -> End {
    let mut log = AccessLog::detached();
    let response = match snapshot.default_pool() {
        Ok(pool) => attempt::run(gateway, snapshot, pool, request.parts, request.body, &request.call, &mut log).await,
        Err(e) => Err(e),
    };
    drop(request.budget);
    let response = response.unwrap_or_else(GateError::into_response);
    let (parts, body) = response.into_parts();
    let mut body = std::pin::pin!(body);
    flight.set_head(Head { status: parts.status, headers: parts.headers, attempts: log.attempts, key: log.key });
    loop {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    flight.push(data);
                }
            }
            Some(Err(_)) => return End::Broken,
            None => return End::Clean,
        }
    }
}
