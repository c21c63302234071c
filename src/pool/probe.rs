//! Brings disabled keys back (SPEC 4): every `health.probe_interval` each disabled key is
//! asked for `models.get`; a key that answers (anything but a key-level error) is enabled
//! again and the wait queues are woken. Probes are paced with a GCRA (governor), so a
//! fleet of disabled keys does not burst at the upstream.

use crate::gemini::ErrorFacts;
use crate::pool::Key;
use crate::proxy::body::{read_limited, ForwardBody};
use crate::proxy::headers::X_GOOG_API_KEY;
use crate::proxy::service::Gateway;
use crate::quota::clock::Millis;
use crate::snapshot::Snapshot;
use governor::{Quota, RateLimiter};
use http::Request;
use std::num::NonZeroU32;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

/// The model a probe asks about; any answer but a key-level error means the key works.
const PROBE_MODEL: &str = "gemini-2.5-flash";
/// Probes per second, at most, across all keys.
const PROBES_PER_SECOND: NonZeroU32 = NonZeroU32::MIN.saturating_add(4);

pub async fn run(gateway: Arc<Gateway>, stop: CancellationToken) {
    let pace = RateLimiter::direct(Quota::per_second(PROBES_PER_SECOND));
    loop {
        let snapshot = gateway.snapshot();
        let clock = gateway.state.clock.clone();
        let interval = snapshot.config.health.probe_interval.as_millis() as Millis;
        let now = clock.now();
        let mut next_due = now + interval;
        for key in snapshot.pools.all_keys() {
            let Some(disabled) = key.health.disabled() else { continue };
            if disabled.next_probe_ms > now {
                next_due = next_due.min(disabled.next_probe_ms);
                continue;
            }
            tokio::select! {
                () = pace.until_ready() => {}
                () = stop.cancelled() => return,
            }
            if probe(&snapshot, key).await {
                info!(key = %key.id, was = %disabled.reason, "key answers again: enabled");
                key.health.enable();
                key.release_waiters();
            } else {
                key.health.set_next_probe(now + interval);
            }
        }
        tokio::select! {
            () = clock.sleep_until(next_due) => {}
            () = gateway.state.health_changed.notified() => {}
            () = stop.cancelled() => return,
        }
    }
}

/// True when the key answered `models.get` with anything but a key-level error.
async fn probe(snapshot: &Snapshot, key: &Key) -> bool {
    let Ok(uri) = snapshot.upstream.uri(&format!("/v1beta/models/{PROBE_MODEL}"), None) else { return false };
    let mut request = Request::new(ForwardBody::empty());
    *request.uri_mut() = uri;
    request.headers_mut().insert(&X_GOOG_API_KEY, key.auth_header().clone());
    let response = match snapshot.upstream.send(request).await {
        Ok(response) => response,
        Err(e) => {
            debug!(key = %key.id, error = %e, "probe could not reach the upstream");
            return false;
        }
    };
    let status = response.status().as_u16();
    if response.status().is_success() {
        return true;
    }
    if status >= 500 {
        return false;
    }
    let body = read_limited(response.into_body(), 64 << 10).await.unwrap_or_default();
    !ErrorFacts::parse(&body).is_key_level(status)
}
