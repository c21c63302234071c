//! Transparent forwarding (SPEC 2): method, path, query, headers and body unchanged except
//! the credential, hop-by-hop headers and Host; x-gemgate-* headers; round-robin keys.

mod support;

use mock_gemini::Script;
use support::*;

#[tokio::test]
async fn generate_content_goes_out_with_a_pool_key_and_unchanged_request() {
    let h = start(Script::default(), "").await;
    let rsp = h
        .http
        .post(h.url("/v1beta/models/gemini-2.5-flash:generateContent?foo=bar&key=client-in-query"))
        .header("x-goog-api-key", "client-token")
        .header("x-goog-api-client", "genai-py/1.0")
        .header("x-custom", "kept")
        .header("connection", "keep-alive, x-hop")
        .header("x-hop", "dropped")
        .header("content-type", "application/json")
        .body(GENERATE)
        .send()
        .await
        .unwrap();
    assert_eq!(rsp.status(), 200);
    let headers = rsp.headers().clone();
    assert_eq!(headers["x-gemgate-key"], "key-a");
    assert_eq!(headers["x-gemgate-model"], "gemini-2.5-flash");
    assert_eq!(headers["x-gemgate-attempts"], "1");
    assert_eq!(headers["x-request-id"].len(), 16);
    let body = rsp.text().await.unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(v["candidates"][0]["content"]["parts"][0]["text"].is_string(), "{body}");
    assert!(v["usageMetadata"]["promptTokenCount"].is_number());

    let up = h.mock.last().unwrap();
    assert_eq!(up.method, "POST");
    assert_eq!(up.path, "/v1beta/models/gemini-2.5-flash:generateContent");
    assert_eq!(up.query.as_deref(), Some("foo=bar"), "the client's key= is removed, the rest kept");
    assert_eq!(up.header("x-goog-api-key"), Some(KEY_A));
    assert_eq!(up.key.as_deref(), Some(KEY_A));
    assert_eq!(up.header("x-goog-api-client"), Some("genai-py/1.0"));
    assert_eq!(up.header("x-custom"), Some("kept"));
    assert_eq!(up.header("x-hop"), None, "headers named in Connection are hop-by-hop");
    assert_eq!(up.header("host"), Some(h.mock.addr().to_string().as_str()));
    assert_eq!(&up.body[..], GENERATE.as_bytes());
    assert!(up.headers.iter().all(|(_, v)| !v.contains("client-token") && !v.contains("client-in-query")));
    h.assert_no_key_leak(&headers, &body);
}

#[tokio::test]
async fn bearer_credentials_are_replaced_too() {
    let h = start(Script::default(), "").await;
    let rsp = h
        .http
        .post(h.url("/v1beta/openai/chat/completions"))
        .bearer_auth("client-token")
        .header("content-type", "application/json")
        .body(r#"{"model":"gemini-2.5-flash","messages":[{"role":"user","content":"hi"}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(rsp.status(), 200);
    assert_eq!(rsp.headers()["x-gemgate-model"], "gemini-2.5-flash");
    let up = h.mock.last().unwrap();
    assert_eq!(up.header("authorization"), None);
    assert_eq!(up.header("x-goog-api-key"), Some(KEY_A));
    let headers = rsp.headers().clone();
    let body = rsp.text().await.unwrap();
    assert!(body.contains("chat.completion"), "{body}");
    h.assert_no_key_leak(&headers, &body);
}

#[tokio::test]
async fn keys_rotate_round_robin() {
    let h = start(Script::default(), "").await;
    let mut seen = Vec::new();
    for _ in 0..4 {
        let rsp = h.post(GENERATE_PATH, GENERATE).await;
        seen.push(rsp.headers()["x-gemgate-key"].to_str().unwrap().to_string());
    }
    assert_eq!(seen, ["key-a", "key-b", "key-a", "key-b"]);
    assert_eq!(h.mock.calls_for_key(KEY_A), 2);
    assert_eq!(h.mock.calls_for_key(KEY_B), 2);
}

#[tokio::test]
async fn request_ids_pass_through_or_are_made() {
    let h = start(Script::default(), "").await;
    let rsp = h.http.get(h.url("/v1beta/models")).header("x-request-id", "abc-123").send().await.unwrap();
    assert_eq!(rsp.status(), 200);
    assert_eq!(rsp.headers()["x-request-id"], "abc-123");
    assert!(rsp.headers().get("x-gemgate-model").is_none(), "a model list calls no model");
}

#[tokio::test]
async fn unknown_paths_under_api_prefixes_are_forwarded() {
    let h = start(Script::default(), "").await;
    let rsp = h.http.get(h.url("/v1alpha/someNewThing/x?y=1")).send().await.unwrap();
    assert_eq!(rsp.status(), 404, "the upstream's answer");
    assert_eq!(rsp.headers()["x-gemgate-key"], "key-a");
    assert_eq!(h.mock.last().unwrap().path, "/v1alpha/someNewThing/x");
}

#[tokio::test]
async fn paths_outside_the_api_get_a_gemini_shaped_404() {
    let h = start(Script::default(), "").await;
    let rsp = h.http.get(h.url("/etc/passwd")).send().await.unwrap();
    assert_eq!(rsp.status(), 404);
    let v: serde_json::Value = rsp.json().await.unwrap();
    assert_eq!(v["error"]["status"], "NOT_FOUND");
    assert_eq!(h.mock.count(), 0);
}

#[tokio::test]
async fn other_methods_and_empty_bodies_pass() {
    let h = start(Script::default(), "").await;
    for path in ["/v1beta/models/gemini-2.5-flash", "/v1/models"] {
        let rsp = h.http.get(h.url(path)).header("x-goog-api-key", "c").send().await.unwrap();
        assert_eq!(rsp.status(), 200, "{path}");
        assert_eq!(h.mock.last().unwrap().method, "GET");
    }
}

#[tokio::test]
async fn health_and_readiness() {
    let h = start(Script::default(), "").await;
    assert_eq!(h.http.get(h.admin_url("/healthz")).send().await.unwrap().status(), 200);
    assert_eq!(h.http.get(h.admin_url("/readyz")).send().await.unwrap().status(), 200);
    assert_eq!(h.http.get(h.admin_url("/nope")).send().await.unwrap().status(), 404);
}
