//! Retries (SPEC 4, issue 3): a retryable upstream failure before any byte reached the
//! client is tried again on another key within `retry.attempts`; a request that creates
//! something is retried only when the upstream surely did not act on it (a 429, not a 5xx).

mod support;

use gemgate::quota::clock::ManualClock;
use mock_gemini::{KeyScript, Script};
use reqwest::header::HeaderMap;
use support::*;

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers.get(name).map_or("", |v| v.to_str().unwrap())
}

/// Sends a request, checks the key hygiene, returns status, headers, body.
async fn exchange(h: &Harness, request: reqwest::RequestBuilder) -> (u16, HeaderMap, String) {
    let rsp = request.header("x-goog-api-key", "client-token").send().await.expect("gemgate answers");
    let status = rsp.status().as_u16();
    let headers = rsp.headers().clone();
    let body = rsp.text().await.expect("a body");
    h.assert_no_key_leak(&headers, &body);
    (status, headers, body)
}

async fn generate(h: &Harness) -> (u16, HeaderMap, String) {
    exchange(h, h.http.post(h.url(GENERATE_PATH)).header("content-type", "application/json").body(GENERATE)).await
}

async fn retried_on_the_other_key_after(code: u16) {
    let clock = ManualClock::starting_at(CLOCK_START);
    let h = start_clocked(Script::default().with_key(KEY_A, KeyScript::default().status(code)), "", clock).await;
    // Round-robin starts at key-a.
    let (status, headers, body) = generate(&h).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(header(&headers, "x-gemgate-key"), "key-b");
    assert_eq!(header(&headers, "x-gemgate-attempts"), "2");
    assert!(body.contains("mock answer"), "key-b's answer: {body}");
    assert_eq!((h.mock.calls_for_key(KEY_A), h.mock.calls_for_key(KEY_B)), (1, 1));
    // Upstream 5xx say nothing about the key.
    assert_eq!(h.admin_key("key-a").await["state"], "active");
}

#[tokio::test]
async fn a_503_is_retried_on_another_key() {
    retried_on_the_other_key_after(503).await;
}

#[tokio::test]
async fn a_500_is_retried_on_another_key() {
    retried_on_the_other_key_after(500).await;
}

#[tokio::test]
async fn a_streamed_call_is_retried_while_nothing_reached_the_client() {
    let clock = ManualClock::starting_at(CLOCK_START);
    let h = start_clocked(Script::default().with_key(KEY_A, KeyScript::default().status(503)), "", clock).await;
    let path = "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse";
    let (status, headers, body) =
        exchange(&h, h.http.post(h.url(path)).header("content-type", "application/json").body(GENERATE)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(header(&headers, "x-gemgate-attempts"), "2");
    assert_eq!(header(&headers, "x-gemgate-key"), "key-b");
    assert!(body.starts_with("data: "), "{body}");
}

#[tokio::test]
async fn retries_stop_at_retry_attempts() {
    let clock = ManualClock::starting_at(CLOCK_START);
    let script = Script::default().with_default(KeyScript::default().status(503));
    let keys = [("key-a", KEY_A, None), ("key-b", KEY_B, None), ("key-c", KEY_C, None)];
    let setup = Setup { keys: &keys, extra: "retry: { attempts: 2 }\n", ..Setup::default() };
    let h = start_setup(script, setup, clock).await;
    let (status, headers, body) = generate(&h).await;
    assert_eq!(status, 503, "the last upstream answer: {body}");
    assert_eq!(header(&headers, "x-gemgate-attempts"), "2");
    assert!(headers.contains_key("x-gemgate-key"), "an upstream answer names its key");
    assert_eq!(h.mock.count(), 2, "two attempts, not three");
}

#[tokio::test]
async fn a_create_is_not_retried_after_a_5xx() {
    let clock = ManualClock::starting_at(CLOCK_START);
    // Every key fails, so the first key tried answers whatever the rotation.
    let h = start_clocked(Script::default().with_default(KeyScript::default().status(500)), "", clock).await;
    let cache = r#"{"model":"models/gemini-2.5-flash","contents":[{"role":"user","parts":[{"text":"cache me"}]}]}"#;
    let request = h.http.post(h.url("/v1beta/cachedContents")).header("content-type", "application/json").body(cache);
    let (status, headers, body) = exchange(&h, request).await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(header(&headers, "x-gemgate-attempts"), "1");
    assert_eq!(h.mock.count(), 1, "the upstream may have created it: no second call");

    let upload = h
        .http
        .post(h.url("/upload/v1beta/files"))
        .header("x-goog-upload-protocol", "resumable")
        .header("x-goog-upload-command", "start")
        .header("content-type", "application/json")
        .body(r#"{"file":{"display_name":"notes"}}"#);
    let (status, headers, body) = exchange(&h, upload).await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(header(&headers, "x-gemgate-attempts"), "1");
    assert_eq!(h.mock.count(), 2, "one call per create");
}

#[tokio::test]
async fn a_create_refused_with_429_is_retried_on_another_key() {
    let clock = ManualClock::starting_at(CLOCK_START);
    // A 429 means Google did not act: safe to send the create elsewhere.
    let h = start_clocked(Script::default().with_key(KEY_A, KeyScript::default().status(429)), "", clock).await;
    let cache = r#"{"model":"models/gemini-2.5-flash","contents":[{"role":"user","parts":[{"text":"cache me"}]}]}"#;
    let request = h.http.post(h.url("/v1beta/cachedContents")).header("content-type", "application/json").body(cache);
    let (status, headers, body) = exchange(&h, request).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(header(&headers, "x-gemgate-attempts"), "2");
    assert_eq!(header(&headers, "x-gemgate-key"), "key-b");
    assert!(body.contains("cachedContents/"), "{body}");
    assert_eq!((h.mock.calls_for_key(KEY_A), h.mock.calls_for_key(KEY_B)), (1, 1));
}
