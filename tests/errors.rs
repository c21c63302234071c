//! Failures (SPEC 2's table): what gemgate answers itself when the upstream cannot be
//! reached, breaks the exchange, or does not answer in time, and when a body is over
//! `upstream.max_request_body`; all Gemini-shaped. The upstream's own errors pass through
//! unchanged.

mod support;

use bytes::Bytes;
use mock_gemini::{KeyScript, Script};
use std::time::Duration;
use support::*;
use tokio::time::Instant;

/// Reads a gemgate refusal: asserts the Gemini error shape and returns the body.
async fn gemini_error(rsp: reqwest::Response, code: u16, status: &str) -> (reqwest::header::HeaderMap, String) {
    assert_eq!(rsp.status(), code);
    assert!(rsp.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    let headers = rsp.headers().clone();
    let body = rsp.text().await.unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(v["error"]["code"], code, "{body}");
    assert_eq!(v["error"]["status"], status, "{body}");
    assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    (headers, body)
}

/// A body of `n` bytes that is still valid JSON.
fn json_of_size(n: usize) -> String {
    let prefix = r#"{"contents":[{"parts":[{"text":""#;
    let suffix = r#""}]}]}"#;
    format!("{prefix}{}{suffix}", "x".repeat(n - prefix.len() - suffix.len()))
}

/// `body` as a chunked request body (no Content-Length) of `pieces` pieces.
fn chunked(body: &str, pieces: usize) -> reqwest::Body {
    let bytes = Bytes::from(body.to_string());
    let size = bytes.len().div_ceil(pieces);
    let chunks: Vec<Result<Bytes, std::io::Error>> =
        (0..bytes.len()).step_by(size).map(|at| Ok(bytes.slice(at..(at + size).min(bytes.len())))).collect();
    reqwest::Body::wrap_stream(futures_util::stream::iter(chunks))
}

#[tokio::test]
async fn an_unreachable_upstream_is_503_unavailable() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let h = start_against(&upstream, "connect_timeout: 1s", "").await;
    let started = Instant::now();
    let (headers, body) = gemini_error(h.post(GENERATE_PATH, GENERATE).await, 503, "UNAVAILABLE").await;
    assert!(started.elapsed() < Duration::from_secs(3));
    h.assert_no_key_leak(&headers, &body);
}

#[tokio::test]
async fn an_upstream_reset_before_answering_is_502_unavailable() {
    let h = start(Script::default().with_default(KeyScript::default().reset()), "").await;
    let (headers, body) = gemini_error(h.post(GENERATE_PATH, GENERATE).await, 502, "UNAVAILABLE").await;
    // A broken exchange of a non-creating call is retried on the other key (SPEC 4).
    assert_eq!(h.mock.count(), 2, "one attempt per key");
    assert_eq!(headers["x-gemgate-attempts"], "2");
    h.assert_no_key_leak(&headers, &body);
}

#[tokio::test]
async fn no_answer_within_the_request_timeout_is_504_deadline_exceeded() {
    let h = start_with(Script::default().with_default(KeyScript::default().hang()), "request_timeout: 300ms", "").await;
    let started = Instant::now();
    let (headers, body) = gemini_error(h.post(GENERATE_PATH, GENERATE).await, 504, "DEADLINE_EXCEEDED").await;
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(250), "answered after {waited:?}, before the timeout");
    assert!(waited < Duration::from_secs(3), "answered after {waited:?}");
    assert!(body.contains("300ms"), "the message names the timeout: {body}");
    h.assert_no_key_leak(&headers, &body);
}

#[tokio::test]
async fn a_body_over_the_limit_by_content_length_is_413_and_never_sent() {
    let h = start_with(Script::default(), "max_request_body: 1KiB", "").await;
    let (headers, body) = gemini_error(h.post(GENERATE_PATH, &json_of_size(2048)).await, 413, "INVALID_ARGUMENT").await;
    assert_eq!(h.mock.count(), 0, "nothing reached the upstream");
    h.assert_no_key_leak(&headers, &body);

    // At the limit is still fine.
    let rsp = h.post(GENERATE_PATH, &json_of_size(1024)).await;
    assert_eq!(rsp.status(), 200);
    assert_eq!(h.mock.count(), 1);
}

#[tokio::test]
async fn a_chunked_body_crossing_the_limit_is_413() {
    let h = start_with(Script::default(), "max_request_body: 1KiB", "").await;
    let send = |body: reqwest::Body| {
        h.http
            .post(h.url(GENERATE_PATH))
            .header("x-goog-api-key", "client-token")
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let rsp = send(chunked(&json_of_size(3000), 6)).await.expect("gemgate answers");
    assert!(rsp.headers().get("content-length").is_some());
    let (headers, body) = gemini_error(rsp, 413, "INVALID_ARGUMENT").await;
    assert!(h.mock.requests().is_empty(), "the upstream never got a whole request");
    h.assert_no_key_leak(&headers, &body);

    // A chunked body under the limit goes through whole.
    let small = json_of_size(900);
    let rsp = send(chunked(&small, 3)).await.unwrap();
    assert_eq!(rsp.status(), 200);
    assert_eq!(h.mock.last().unwrap().body_text(), small);
}

#[tokio::test]
async fn upstream_errors_pass_through_unchanged() {
    let h = start(Script::default().with_default(KeyScript::default().status(503)), "").await;
    let direct =
        h.http.post(format!("{}{GENERATE_PATH}", h.mock.base_url())).header("x-goog-api-key", "other").body(GENERATE);
    let expected = direct.send().await.unwrap().text().await.unwrap();
    let rsp = h.post(GENERATE_PATH, GENERATE).await;
    assert_eq!(rsp.status(), 503);
    assert!(rsp.headers().contains_key("x-gemgate-key"), "an upstream answer names its key");
    let headers = rsp.headers().clone();
    let body = rsp.text().await.unwrap();
    assert_eq!(body, expected, "the upstream's body, byte for byte");
    h.assert_no_key_leak(&headers, &body);

    // A 400 about the request (not the key) passes through too. (A key-level 400 disables
    // the key; with every key disabled gemgate answers 503 itself: tests/health.rs.)
    h.mock.set_script(Script::default().with_default(KeyScript::default().status(400)));
    let rsp = h.post(GENERATE_PATH, GENERATE).await;
    assert_eq!(rsp.status(), 400);
    let headers = rsp.headers().clone();
    let body = rsp.text().await.unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["status"], "INVALID_ARGUMENT");
    assert_eq!(v["error"]["message"], "Request contains an invalid argument.", "{body}");
    h.assert_no_key_leak(&headers, &body);
}

#[tokio::test]
async fn uploads_are_exempt_from_the_body_limit() {
    let h = start_with(Script::default(), "max_request_body: 1KiB", "").await;
    let start = h
        .http
        .post(h.url("/upload/v1beta/files"))
        .header("x-goog-api-key", "client-token")
        .header("x-goog-upload-protocol", "resumable")
        .header("x-goog-upload-command", "start")
        .header("x-goog-upload-header-content-type", "application/octet-stream")
        .header("content-type", "application/json")
        .body(r#"{"file":{"display_name":"big"}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), 200);
    let upload_url = start.headers()["x-goog-upload-url"].to_str().unwrap().to_string();
    let content = vec![7u8; 4096];
    let rsp = h
        .http
        .post(&upload_url)
        .header("x-goog-upload-command", "upload, finalize")
        .header("x-goog-upload-offset", "0")
        .body(content)
        .send()
        .await
        .unwrap();
    assert_eq!(rsp.status(), 200);
    let headers = rsp.headers().clone();
    let body = rsp.text().await.unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["file"]["sizeBytes"], "4096", "{body}");
    assert_eq!(h.mock.last().unwrap().body.len(), 4096);
    h.assert_no_key_leak(&headers, &body);
}
