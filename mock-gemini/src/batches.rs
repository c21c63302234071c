//! Batch mode (`models/{m}:batchGenerateContent`, `batches/{id}` get/cancel/delete/list):
//! a batch is created pending and reads back succeeded, to the key that created it only.

use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};

use crate::body::ok_json;
use crate::errors;
use crate::generate::{response_id, response_json, Usage};
use crate::resources::{access, owned_by, Access, Owned};
use crate::server::{Call, Reply};
use crate::util::{new_id, timestamp};

const BATCH_TYPE: &str = "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch";
const OUTPUT_TYPE: &str = "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatchOutput";

fn pick<'a>(v: &'a Value, camel: &str, snake: &str) -> &'a Value {
    match v.get(camel) {
        Some(x) => x,
        None => v.get(snake).unwrap_or(&Value::Null),
    }
}

/// `POST models/{m}:batchGenerateContent`.
pub(crate) fn create(call: &Call<'_>, model: &str) -> Reply {
    let body: Value = match serde_json::from_slice(call.body) {
        Ok(v) => v,
        Err(e) => return errors::bad_json(&e),
    };
    let batch = body.get("batch").unwrap_or(&body);
    let requests = pick(pick(batch, "inputConfig", "input_config"), "requests", "requests");
    let count = requests.get("requests").and_then(Value::as_array).map_or(1, Vec::len);
    let id = new_id(32);
    let now = timestamp(Duration::ZERO);
    let mut meta = json!({
        "@type": BATCH_TYPE,
        "name": format!("batches/{id}"),
        "model": format!("models/{model}"),
        "createTime": now,
        "updateTime": now,
        "state": "BATCH_STATE_PENDING",
        "batchStats": { "requestCount": count.to_string(), "pendingRequestCount": count.to_string() },
    });
    if let Value::String(name) = pick(batch, "displayName", "display_name") {
        meta["displayName"] = Value::String(name.clone());
    }
    let op = json!({ "name": format!("batches/{id}"), "metadata": meta });
    call.state.resources().batches.insert(id, Owned { key: call.key.map(str::to_owned), json: meta });
    ok_json(op.to_string())
}

/// The operation as read back: finished (succeeded unless cancelled).
fn finished(meta: &Value) -> Value {
    let mut meta = meta.clone();
    let name = meta["name"].clone();
    if meta["state"] == "BATCH_STATE_CANCELLED" {
        return json!({ "name": name, "metadata": meta, "done": true });
    }
    let count: usize = meta["batchStats"]["requestCount"].as_str().and_then(|s| s.parse().ok()).unwrap_or(1);
    let model = meta["model"].as_str().unwrap_or("models/mock").trim_start_matches("models/").to_owned();
    let text = format!("mock answer from {model}");
    let responses: Vec<Value> = (0..count)
        .map(|_| {
            let r = response_json(&text, &model, &response_id(), true, Usage::new(1, 5));
            json!({ "response": serde_json::from_slice::<Value>(&r).unwrap_or(Value::Null) })
        })
        .collect();
    let inlined = json!({ "inlinedResponses": responses });
    meta["state"] = json!("BATCH_STATE_SUCCEEDED");
    meta["endTime"] = json!(timestamp(Duration::ZERO));
    meta["batchStats"] = json!({ "requestCount": count.to_string(), "successfulRequestCount": count.to_string() });
    meta["output"] = json!({ "inlinedResponses": inlined });
    json!({
        "name": name,
        "metadata": meta,
        "done": true,
        "response": { "@type": OUTPUT_TYPE, "inlinedResponses": inlined },
    })
}

/// `GET batches/{id}`.
pub(crate) fn get(call: &Call<'_>, id: &str) -> Reply {
    match access(&mut call.state.resources().batches, id, call.key) {
        Access::Granted(b) => ok_json(finished(&b.json).to_string()),
        Access::Denied => errors::resource_denied("Batch", id),
        Access::Missing => errors::resource_missing("Batch", id),
    }
}

/// `POST batches/{id}:cancel` and `DELETE batches/{id}`.
pub(crate) fn cancel_or_delete(call: &Call<'_>, id: &str, delete: bool) -> Reply {
    let mut res = call.state.resources();
    match access(&mut res.batches, id, call.key) {
        Access::Granted(b) => {
            b.json["state"] = json!("BATCH_STATE_CANCELLED");
            if delete {
                res.batches.remove(id);
            }
            ok_json(Bytes::from_static(b"{}"))
        }
        Access::Denied => errors::resource_denied("Batch", id),
        Access::Missing => errors::resource_missing("Batch", id),
    }
}

/// `GET batches`: this key's batches as operations.
pub(crate) fn list(call: &Call<'_>) -> Reply {
    let ops: Vec<Value> = owned_by(&call.state.resources().batches, call.key).iter().map(finished).collect();
    ok_json(json!({ "operations": ops }).to_string())
}
