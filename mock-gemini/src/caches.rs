//! Context caching (`cachedContents` create/get/patch/delete/list), each cache scoped to
//! the key that created it; generateContent naming another key's cache is refused in
//! `generate::check_references`.

use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};

use crate::body::ok_json;
use crate::errors;
use crate::generate::read_prompt;
use crate::resources::{access, owned_by, Access, Owned};
use crate::script::parse_duration;
use crate::server::{Call, Reply};
use crate::util::{new_id, timestamp};

/// Caches live an hour unless the request says otherwise (Google's default).
const DEFAULT_TTL: Duration = Duration::from_secs(3600);

/// `POST cachedContents`.
pub(crate) fn create(call: &Call<'_>) -> Reply {
    let prompt = match read_prompt(call.body) {
        Ok(p) => p,
        Err(e) => return errors::bad_json(&e),
    };
    let body: Value = serde_json::from_slice(call.body).unwrap_or(Value::Null);
    let model = body["model"].as_str().unwrap_or("gemini-2.5-flash");
    let model = model.strip_prefix("models/").unwrap_or(model);
    let ttl = body["ttl"].as_str().and_then(|t| parse_duration(t).ok()).unwrap_or(DEFAULT_TTL);
    let id = new_id(24);
    let now = timestamp(Duration::ZERO);
    let mut cache = json!({
        "name": format!("cachedContents/{id}"),
        "model": format!("models/{model}"),
        "createTime": now,
        "updateTime": now,
        "expireTime": timestamp(ttl),
        "usageMetadata": { "totalTokenCount": prompt.tokens() },
    });
    let display = body.get("displayName").or_else(|| body.get("display_name"));
    if let Some(Value::String(name)) = display {
        cache["displayName"] = Value::String(name.clone());
    }
    let out = cache.to_string();
    call.state.resources().caches.insert(id, Owned { key: call.key.map(str::to_owned), json: cache });
    ok_json(out)
}

/// `GET`, `PATCH` (ttl only) and `DELETE cachedContents/{id}`.
pub(crate) fn one(call: &Call<'_>, id: &str) -> Reply {
    let mut res = call.state.resources();
    match access(&mut res.caches, id, call.key) {
        Access::Granted(c) => match call.parts.method.as_str() {
            "DELETE" => {
                res.caches.remove(id);
                ok_json(Bytes::from_static(b"{}"))
            }
            "PATCH" => {
                let body: Value = serde_json::from_slice(call.body).unwrap_or(Value::Null);
                if let Some(ttl) = body["ttl"].as_str().and_then(|t| parse_duration(t).ok()) {
                    c.json["expireTime"] = json!(timestamp(ttl));
                }
                c.json["updateTime"] = json!(timestamp(Duration::ZERO));
                ok_json(c.json.to_string())
            }
            _ => ok_json(c.json.to_string()),
        },
        Access::Denied => errors::resource_denied("CachedContent", id),
        Access::Missing => errors::resource_missing("CachedContent", id),
    }
}

/// `GET cachedContents`: this key's caches.
pub(crate) fn list(call: &Call<'_>) -> Reply {
    let caches = owned_by(&call.state.resources().caches, call.key);
    ok_json(json!({ "cachedContents": caches }).to_string())
}
