//! Every error the mock answers, in Google's shape:
//! `{"error":{"code":N,"message":"…","status":"…","details":[…]}}`.

use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode};
use serde_json::{json, Value};

use crate::body::{json, MockBody};

const ERROR_INFO: &str = "type.googleapis.com/google.rpc.ErrorInfo";
const QUOTA_METRIC: &str = "generativelanguage.googleapis.com/generate_content_free_tier_requests";
const RATE_LIMITS_URL: &str = "https://ai.google.dev/gemini-api/docs/rate-limits";

/// The canonical gRPC status name Google pairs with an HTTP code.
pub(crate) fn status_name(code: u16) -> &'static str {
    match code {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ALREADY_EXISTS",
        412 => "FAILED_PRECONDITION",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        501 => "NOT_IMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "INTERNAL",
    }
}

fn body(code: u16, message: &str, details: Vec<Value>) -> Bytes {
    let mut error = json!({ "code": code, "message": message, "status": status_name(code) });
    if !details.is_empty() {
        error["details"] = Value::Array(details);
    }
    Bytes::from(json!({ "error": error }).to_string())
}

/// An error response with the given code, message and details.
pub(crate) fn error(code: u16, message: &str, details: Vec<Value>) -> Response<MockBody> {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json(status, body(code, message, details))
}

fn cached(cell: &'static OnceLock<Bytes>, code: u16, f: impl FnOnce() -> Bytes) -> Response<MockBody> {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json(status, cell.get_or_init(f).clone())
}

/// 400 API_KEY_INVALID: what Google answers for a wrong or leaked key.
pub(crate) fn api_key_invalid() -> Response<MockBody> {
    static BODY: OnceLock<Bytes> = OnceLock::new();
    cached(&BODY, 400, || {
        body(
            400,
            "API key not valid. Please pass a valid API key.",
            vec![json!({
                "@type": ERROR_INFO,
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": { "service": "generativelanguage.googleapis.com" }
            })],
        )
    })
}

/// 403 for a request without any credential.
pub(crate) fn unregistered() -> Response<MockBody> {
    static BODY: OnceLock<Bytes> = OnceLock::new();
    cached(&BODY, 403, || {
        body(
            403,
            "Method doesn't allow unregistered callers (callers without established identity). \
             Please use API Key or other form of API consumer identity to call this API.",
            vec![json!({
                "@type": ERROR_INFO,
                "reason": "CONSUMER_INVALID",
                "domain": "googleapis.com",
                "metadata": { "service": "generativelanguage.googleapis.com" }
            })],
        )
    })
}

/// 403 API_KEY_SERVICE_BLOCKED: a key-level refusal.
pub(crate) fn blocked() -> Response<MockBody> {
    static BODY: OnceLock<Bytes> = OnceLock::new();
    cached(&BODY, 403, || {
        body(
            403,
            "Requests to this API generativelanguage.googleapis.com method \
             google.ai.generativelanguage.v1beta.GenerativeService.GenerateContent are blocked.",
            vec![json!({
                "@type": ERROR_INFO,
                "reason": "API_KEY_SERVICE_BLOCKED",
                "domain": "googleapis.com",
                "metadata": {
                    "service": "generativelanguage.googleapis.com",
                    "consumer": "projects/000000000000"
                }
            })],
        )
    })
}

/// A scripted failure status (500 INTERNAL, 503 UNAVAILABLE, …) with Google's wording.
pub(crate) fn scripted(code: u16) -> Response<MockBody> {
    let message = match code {
        500 => "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting",
        503 => "The model is overloaded. Please try again later.",
        504 => "Deadline expired before operation could complete.",
        429 => "Resource has been exhausted (e.g. check quota).",
        400 => "Request contains an invalid argument.",
        401 => "Request had invalid authentication credentials.",
        403 => "The caller does not have permission",
        404 => "Requested entity was not found.",
        _ => "Scripted failure from mock-gemini.",
    };
    error(code, message, Vec::new())
}

/// "30s" or "0.250s", the way `RetryInfo.retryDelay` spells durations.
pub(crate) fn proto_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{}.{:03}s", ms / 1000, ms % 1000)
    }
}

/// 429 RESOURCE_EXHAUSTED with QuotaFailure, Help and (when known) RetryInfo.
pub(crate) fn quota_exceeded(model: &str, quota_id: &str, limit: u64, retry: Option<Duration>) -> Response<MockBody> {
    let mut message = format!(
        "You exceeded your current quota, please check your plan and billing details. \
         For more information on this error, head to: {RATE_LIMITS_URL}.\n\
         * Quota exceeded for metric: {QUOTA_METRIC}, limit: {limit}, model: {model}"
    );
    let mut details = vec![
        json!({
            "@type": "type.googleapis.com/google.rpc.QuotaFailure",
            "violations": [{
                "quotaMetric": QUOTA_METRIC,
                "quotaId": quota_id,
                "quotaDimensions": { "location": "global", "model": model },
                "quotaValue": limit.to_string()
            }]
        }),
        json!({
            "@type": "type.googleapis.com/google.rpc.Help",
            "links": [{ "description": "Learn more about Gemini API quotas", "url": RATE_LIMITS_URL }]
        }),
    ];
    if let Some(retry) = retry {
        let delay = proto_duration(retry);
        message.push_str(&format!("\nPlease retry in {delay}."));
        details.push(json!({
            "@type": "type.googleapis.com/google.rpc.RetryInfo",
            "retryDelay": delay
        }));
    }
    error(429, &message, details)
}

/// 403 about one resource of another project (no key-level ErrorInfo reason).
pub(crate) fn resource_denied(kind: &str, id: &str) -> Response<MockBody> {
    error(403, &format!("You do not have permission to access the {kind} {id} or it may not exist."), Vec::new())
}

/// 404 for a resource id nobody created.
pub(crate) fn resource_missing(kind: &str, id: &str) -> Response<MockBody> {
    error(404, &format!("{kind} {id} not found."), Vec::new())
}

/// 404 for a path the mock does not serve.
pub(crate) fn no_route(method: &str, path: &str) -> Response<MockBody> {
    error(404, &format!("Method not found: {method} {path} is not served by mock-gemini."), Vec::new())
}

/// 400 for a body that is not valid JSON (Google's wording).
pub(crate) fn bad_json(err: &serde_json::Error) -> Response<MockBody> {
    error(
        400,
        &format!("Invalid JSON payload received. {err}"),
        vec![json!({
            "@type": "type.googleapis.com/google.rpc.BadRequest",
            "fieldViolations": [{ "description": format!("Invalid JSON payload received. {err}") }]
        })],
    )
}

/// 400 for a request the mock understands but refuses.
pub(crate) fn invalid_argument(message: &str) -> Response<MockBody> {
    error(400, message, Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delay_spelling() {
        assert_eq!(proto_duration(Duration::from_secs(30)), "30s");
        assert_eq!(proto_duration(Duration::from_millis(1250)), "1.250s");
    }
}
