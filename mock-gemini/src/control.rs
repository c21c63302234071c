//! The control endpoint under `/_mock/` (never recorded): replace the script, read the
//! request log, reset. Lets out-of-process users (`gemgate mock`, SDK tests) drive the mock.

use bytes::Bytes;
use http::request::Parts;
use http::{Method, StatusCode};
use serde_json::json;

use crate::body::{json, ok_json};
use crate::errors;
use crate::script::Script;
use crate::server::Reply;
use crate::state::State;

pub(crate) fn handle(state: &State, parts: &Parts, rest: &str, body: &Bytes) -> Reply {
    match (&parts.method, rest) {
        (&Method::POST | &Method::PUT, "script") => match Script::from_slice(body) {
            Ok(script) => {
                state.set_script(script);
                ok_json(Bytes::from_static(b"{}"))
            }
            Err(e) => errors::invalid_argument(&e.to_string()),
        },
        (&Method::GET, "script") => ok_json(serde_json::to_vec(&state.plan().source).unwrap_or_default()),
        (&Method::GET, "requests") => ok_json(state.requests_json()),
        (&Method::GET, "count") => ok_json(json!({ "count": state.count() }).to_string()),
        (&Method::POST, "reset") => {
            state.reset();
            ok_json(Bytes::from_static(b"{}"))
        }
        _ => json(StatusCode::NOT_FOUND, errors_body(parts.method.as_str(), parts.uri.path())),
    }
}

fn errors_body(method: &str, path: &str) -> String {
    json!({ "error": { "code": 404, "status": "NOT_FOUND",
        "message": format!("mock-gemini control: no {method} {path}") } })
    .to_string()
}
