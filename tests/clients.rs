//! Client tokens (SPEC 2, SPEC 3 `clients`): in tokens mode a caller's API key must be a
//! known token, in any of the three credential forms; a model outside the client's
//! allow-list is refused, in the path and in an OpenAI body. Refusals never reach the
//! upstream, and the client's token never does either.

mod support;

use mock_gemini::Script;
use support::*;

const CLIENTS: &str = r#"clients:
  mode: tokens
  tokens:
    - { name: bot, token: tok-bot, models: ["gemini-2.5-*"] }
    - { name: etl, token: tok-etl }
"#;
const TOKENS: [&str; 2] = ["tok-bot", "tok-etl"];
const OTHER_MODEL_PATH: &str = "/v1beta/models/gemini-2.0-flash:generateContent";
const CHAT_PATH: &str = "/v1beta/openai/chat/completions";

fn chat(model: &str) -> String {
    format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}]}}"#)
}

/// Reads a refusal: asserts the Gemini error shape and returns headers and body.
async fn refusal(rsp: reqwest::Response, code: u16, status: &str) -> (reqwest::header::HeaderMap, String) {
    assert_eq!(rsp.status(), code);
    let headers = rsp.headers().clone();
    assert!(headers.get("x-gemgate-key").is_none(), "a refusal used no key");
    let body = rsp.text().await.unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(v["error"]["code"], code, "{body}");
    assert_eq!(v["error"]["status"], status, "{body}");
    (headers, body)
}

/// No recorded upstream request carries a client token anywhere.
fn assert_no_token_upstream(h: &Harness) {
    for r in h.mock.requests() {
        for token in TOKENS {
            assert!(!r.query.as_deref().unwrap_or_default().contains(token), "token in the query of {}", r.path);
            assert!(r.headers.iter().all(|(_, v)| !v.contains(token)), "token in a header of {}", r.path);
            assert!(!r.body_text().contains(token), "token in the body of {}", r.path);
        }
        assert!(KEYS.contains(&r.key.as_deref().unwrap_or_default()), "{} went out without a pool key", r.path);
    }
}

#[tokio::test]
async fn missing_or_unknown_tokens_are_401() {
    let h = start(Script::default(), CLIENTS).await;
    let none = h.http.post(h.url(GENERATE_PATH)).body(GENERATE).send().await.unwrap();
    let (headers, body) = refusal(none, 401, "UNAUTHENTICATED").await;
    h.assert_no_key_leak(&headers, &body);
    let unknown = h.http.post(h.url(GENERATE_PATH)).header("x-goog-api-key", "tok-nobody").body(GENERATE).send();
    let (headers, body) = refusal(unknown.await.unwrap(), 401, "UNAUTHENTICATED").await;
    h.assert_no_key_leak(&headers, &body);
    let bearer = h.http.post(h.url(CHAT_PATH)).bearer_auth("tok-nobody").body(chat("gemini-2.5-flash")).send();
    refusal(bearer.await.unwrap(), 401, "UNAUTHENTICATED").await;
    let query = h.http.get(h.url("/v1beta/models?key=tok-nobody")).send();
    refusal(query.await.unwrap(), 401, "UNAUTHENTICATED").await;
    // A valid token in the query does not rescue an unknown one in the header, which wins.
    let both = h.http.get(h.url("/v1beta/models?key=tok-etl")).header("x-goog-api-key", "tok-nobody").send();
    refusal(both.await.unwrap(), 401, "UNAUTHENTICATED").await;
    assert_eq!(h.mock.count(), 0, "refusals never reach the upstream");
}

#[tokio::test]
async fn a_valid_token_works_in_all_three_forms() {
    let h = start(Script::default(), CLIENTS).await;
    let header = h.http.post(h.url(GENERATE_PATH)).header("x-goog-api-key", "tok-etl").body(GENERATE).send();
    let bearer = h.http.post(h.url(CHAT_PATH)).bearer_auth("tok-bot").body(chat("gemini-2.5-flash")).send();
    let query = h.http.post(h.url(&format!("{GENERATE_PATH}?key=tok-bot"))).body(GENERATE).send();
    for (form, rsp) in [("header", header.await), ("bearer", bearer.await), ("query", query.await)] {
        let rsp = rsp.unwrap();
        assert_eq!(rsp.status(), 200, "{form}");
        let headers = rsp.headers().clone();
        let body = rsp.text().await.unwrap();
        h.assert_no_key_leak(&headers, &body);
    }
    let seen = h.mock.requests();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[1].header("authorization"), None, "the bearer token is removed");
    assert_eq!(seen[2].query, None, "the query token is removed");
    assert_no_token_upstream(&h);
}

#[tokio::test]
async fn a_model_outside_the_allow_list_is_403_in_the_path() {
    let h = start(Script::default(), CLIENTS).await;
    for path in [
        OTHER_MODEL_PATH,
        "/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse",
        "/v1/models/gemini-1.5-pro:countTokens",
        "/v1beta/tunedModels/my-tune:generateContent",
    ] {
        let rsp = h.http.post(h.url(path)).header("x-goog-api-key", "tok-bot").body(GENERATE).send().await.unwrap();
        let (headers, body) = refusal(rsp, 403, "PERMISSION_DENIED").await;
        assert!(body.contains("bot"), "the message names the client: {body}");
        h.assert_no_key_leak(&headers, &body);
    }
    assert_eq!(h.mock.count(), 0, "refusals never reach the upstream");

    // The allowed models, and a client without an allow-list, go through.
    let rsp = h.http.post(h.url(GENERATE_PATH)).header("x-goog-api-key", "tok-bot").body(GENERATE).send();
    assert_eq!(rsp.await.unwrap().status(), 200);
    let rsp = h.http.post(h.url(OTHER_MODEL_PATH)).header("x-goog-api-key", "tok-etl").body(GENERATE).send();
    assert_eq!(rsp.await.unwrap().status(), 200);
    assert_eq!(h.mock.count(), 2);
    assert_no_token_upstream(&h);
}

#[tokio::test]
async fn a_model_outside_the_allow_list_is_403_in_an_openai_body() {
    let h = start(Script::default(), CLIENTS).await;
    for model in ["gemini-2.0-flash", "models/gemini-2.0-flash"] {
        let rsp = h.http.post(h.url(CHAT_PATH)).bearer_auth("tok-bot").body(chat(model)).send().await.unwrap();
        let (headers, body) = refusal(rsp, 403, "PERMISSION_DENIED").await;
        h.assert_no_key_leak(&headers, &body);
    }
    // A chunked body (no Content-Length) is read before it is let through, too.
    let body = chat("gemini-2.0-flash");
    let stream = futures_util::stream::iter(
        body.as_bytes()
            .chunks(16)
            .map(|c| Ok::<_, std::io::Error>(bytes::Bytes::copy_from_slice(c)))
            .collect::<Vec<_>>(),
    );
    let rsp = h.http.post(h.url(CHAT_PATH)).bearer_auth("tok-bot").body(reqwest::Body::wrap_stream(stream)).send();
    refusal(rsp.await.unwrap(), 403, "PERMISSION_DENIED").await;
    // A restricted client must name its model.
    let rsp = h.http.post(h.url(CHAT_PATH)).bearer_auth("tok-bot").body(r#"{"messages":[]}"#).send();
    refusal(rsp.await.unwrap(), 400, "INVALID_ARGUMENT").await;
    assert_eq!(h.mock.count(), 0, "refusals never reach the upstream");

    let rsp = h.http.post(h.url(CHAT_PATH)).bearer_auth("tok-bot").body(chat("gemini-2.5-pro")).send().await.unwrap();
    assert_eq!(rsp.status(), 200);
    assert_eq!(rsp.headers()["x-gemgate-model"], "gemini-2.5-pro");
    let rsp = h.http.post(h.url(CHAT_PATH)).bearer_auth("tok-etl").body(chat("gemini-2.0-flash")).send().await.unwrap();
    assert_eq!(rsp.status(), 200);
    let headers = rsp.headers().clone();
    let body = rsp.text().await.unwrap();
    h.assert_no_key_leak(&headers, &body);
    assert_eq!(h.mock.count(), 2);
    assert_no_token_upstream(&h);
}
