//! `GET /admin/keys` (SPEC 7, issue 3): every key's id, pool, project, state, cooldowns,
//! in-flight calls and usage per model this minute and today. Never a key's value.

use crate::pool::Key;
use crate::proxy::service::Gateway;
use crate::quota::clock::Millis;
use crate::quota::ModelUsage;
use chrono::{TimeZone, Utc};
use serde::Serialize;

#[derive(Serialize)]
struct KeyView<'a> {
    id: &'a str,
    pool: &'a str,
    project: &'a str,
    /// `active`, `cooling` (some model of its project is cooling down) or `disabled`.
    state: &'static str,
    disabled: Option<DisabledView>,
    in_flight: u32,
    max_in_flight: u32,
    models: Vec<ModelView>,
}

#[derive(Serialize)]
struct DisabledView {
    reason: String,
    since: String,
    next_probe: String,
}

#[derive(Serialize)]
struct ModelView {
    #[serde(flatten)]
    usage: ModelUsage,
    cooldown_until: Option<String>,
}

fn rfc3339(ms: Millis) -> String {
    Utc.timestamp_millis_opt(ms as i64).single().map(|t| t.to_rfc3339()).unwrap_or_default()
}

fn view(key: &Key) -> KeyView<'_> {
    let disabled = key.health.disabled();
    let models: Vec<ModelView> = key
        .quota
        .usage()
        .into_iter()
        .map(|usage| ModelView { cooldown_until: usage.cooldown_until_ms.map(rfc3339), usage })
        .collect();
    let state = if disabled.is_some() {
        "disabled"
    } else if models.iter().any(|m| m.cooldown_until.is_some()) {
        "cooling"
    } else {
        "active"
    };
    KeyView {
        id: &key.id,
        pool: &key.pool,
        project: &key.project,
        state,
        disabled: disabled.map(|d| DisabledView {
            reason: d.reason,
            since: rfc3339(d.since_ms),
            next_probe: rfc3339(d.next_probe_ms),
        }),
        in_flight: key.health.in_flight(),
        max_in_flight: key.max_in_flight(),
        models,
    }
}

/// The JSON document of `/admin/keys`.
pub fn render(gateway: &Gateway) -> String {
    let snapshot = gateway.snapshot();
    let mut keys: Vec<&std::sync::Arc<Key>> = snapshot.pools.all_keys().collect();
    keys.sort_by(|a, b| (&a.pool, &a.id).cmp(&(&b.pool, &b.id)));
    let views: Vec<KeyView> = keys.iter().map(|k| view(k)).collect();
    serde_json::json!({ "keys": views }).to_string()
}
