//! `GateError`: every way gemgate itself refuses or fails a request, and the one place that
//! turns it into an HTTP status and a Gemini-shaped body (SPEC 2's table), so every SDK reads
//! it like an upstream error. Messages never carry a key's value.

use crate::proxy::body::GateBody;
use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use http::{Response, StatusCode};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error("API key not valid: it is missing or not a known client token")]
    Unauthenticated,
    #[error("client `{client}` is not allowed to call model `{model}`")]
    ModelNotAllowed { client: String, model: String },
    #[error("request body is larger than the limit of {limit} bytes")]
    BodyTooLarge { limit: u64 },
    #[error("{0}")]
    BadRequest(String),
    #[error("gemgate does not serve {0}: only /v1/, /v1beta/, /v1alpha/, /upload/ and /ws/ paths are forwarded")]
    UnknownPath(String),
    #[error("the upstream could not be reached: {0}")]
    UpstreamUnreachable(String),
    #[error("the upstream broke the exchange before answering: {0}")]
    UpstreamBroken(String),
    #[error("the upstream did not answer within {0:?}")]
    UpstreamTimeout(Duration),
    #[error("no key of pool `{pool}` has capacity{} right now; retry in {}s", model_phrase(.model), whole_secs(*.retry_in))]
    Exhausted { pool: String, model: Option<String>, retry_in: Duration },
    #[error("too many requests are waiting for pool `{pool}`; retry in {}s", whole_secs(*.retry_in))]
    QueueFull { pool: String, retry_in: Duration },
    #[error("every key of pool `{pool}` is disabled ({reasons}); they are probed again every few minutes")]
    AllKeysDisabled { pool: String, reasons: String, retry_in: Option<Duration> },
}

fn model_phrase(model: &Option<String>) -> String {
    model.as_deref().map(|m| format!(" for model `{m}`")).unwrap_or_default()
}

/// Whole seconds, rounded up, at least 1: what `Retry-After` and `retryDelay` say.
pub fn whole_secs(d: Duration) -> u64 {
    (d.as_millis().div_ceil(1000) as u64).max(1)
}

impl GateError {
    /// The HTTP status and the google.rpc status name; the only place that chooses them.
    pub fn status(&self) -> (StatusCode, &'static str) {
        match self {
            Self::Unauthenticated => (StatusCode::UNAUTHORIZED, "UNAUTHENTICATED"),
            Self::ModelNotAllowed { .. } => (StatusCode::FORBIDDEN, "PERMISSION_DENIED"),
            Self::BodyTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "INVALID_ARGUMENT"),
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, "INVALID_ARGUMENT"),
            Self::UnknownPath(_) => (StatusCode::NOT_FOUND, "NOT_FOUND"),
            Self::UpstreamUnreachable(_) => (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE"),
            Self::UpstreamBroken(_) => (StatusCode::BAD_GATEWAY, "UNAVAILABLE"),
            Self::UpstreamTimeout(_) => (StatusCode::GATEWAY_TIMEOUT, "DEADLINE_EXCEEDED"),
            Self::Exhausted { .. } | Self::QueueFull { .. } => (StatusCode::TOO_MANY_REQUESTS, "RESOURCE_EXHAUSTED"),
            Self::AllKeysDisabled { .. } => (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE"),
        }
    }

    /// When the client may try again, for `Retry-After` and `RetryInfo`.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Exhausted { retry_in, .. } | Self::QueueFull { retry_in, .. } => Some(*retry_in),
            Self::AllKeysDisabled { retry_in, .. } => *retry_in,
            _ => None,
        }
    }

    /// A low-cardinality name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Unauthenticated => "unauthenticated",
            Self::ModelNotAllowed { .. } => "model_not_allowed",
            Self::BodyTooLarge { .. } => "body_too_large",
            Self::BadRequest(_) => "bad_request",
            Self::UnknownPath(_) => "unknown_path",
            Self::UpstreamUnreachable(_) => "upstream_unreachable",
            Self::UpstreamBroken(_) => "upstream_broken",
            Self::UpstreamTimeout(_) => "upstream_timeout",
            Self::Exhausted { .. } => "exhausted",
            Self::QueueFull { .. } => "queue_full",
            Self::AllKeysDisabled { .. } => "all_keys_disabled",
        }
    }

    /// `{"error":{"code":…,"message":…,"status":…,"details":[RetryInfo]}}` + `Retry-After`.
    pub fn into_response(self) -> Response<GateBody> {
        let (status, name) = self.status();
        let mut error = serde_json::json!({
            "code": status.as_u16(),
            "message": self.to_string(),
            "status": name,
        });
        let retry = self.retry_after();
        if let Some(delay) = retry {
            let secs = whole_secs(delay);
            error["details"] = serde_json::json!([{
                "@type": "type.googleapis.com/google.rpc.RetryInfo",
                "retryDelay": format!("{secs}s"),
            }]);
        }
        let body = serde_json::json!({ "error": error }).to_string();
        let mut response = Response::new(GateBody::full(Bytes::from(body)));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json; charset=UTF-8"));
        if let Some(delay) = retry {
            let secs = whole_secs(delay);
            headers.insert(RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn body_is_gemini_shaped() {
        let rsp = GateError::UpstreamTimeout(Duration::from_secs(600)).into_response();
        assert_eq!(rsp.status(), StatusCode::GATEWAY_TIMEOUT);
        let body = rsp.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["code"], 504);
        assert_eq!(v["error"]["status"], "DEADLINE_EXCEEDED");
    }

    #[tokio::test]
    async fn retry_info_goes_with_retry_after() {
        let rsp = GateError::Exhausted { pool: "default".into(), model: None, retry_in: Duration::from_millis(300) }
            .into_response();
        assert_eq!(rsp.headers()[RETRY_AFTER], "1");
        let body = rsp.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["details"][0]["retryDelay"], "1s");
    }
}
