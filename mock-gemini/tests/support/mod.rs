//! Helpers shared by the mock's wire tests: a reqwest client and request shorthands.

#![allow(dead_code)]

use mock_gemini::MockServer;
use serde_json::Value;

pub const GEN: &str = "/v1beta/models/gemini-2.5-flash:generateContent";
pub const STREAM: &str = "/v1beta/models/gemini-2.5-flash:streamGenerateContent";
pub const BODY: &str = r#"{"contents":[{"role":"user","parts":[{"text":"Hello there, mock"}]}]}"#;

pub fn client() -> reqwest::Client {
    // Workspace builds unify reqwest features; this client must see raw encodings.
    reqwest::Client::builder().no_proxy().no_gzip().build().unwrap()
}

pub async fn post(up: &MockServer, path: &str, key: &str, body: &str) -> reqwest::Response {
    client()
        .post(format!("{}{path}", up.base_url()))
        .header("x-goog-api-key", key)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

pub async fn get(up: &MockServer, path: &str, key: &str) -> reqwest::Response {
    client().get(format!("{}{path}", up.base_url())).header("x-goog-api-key", key).send().await.unwrap()
}

pub async fn json(rsp: reqwest::Response) -> (u16, Value) {
    let status = rsp.status().as_u16();
    let text = rsp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// The `@type`s of an error's details.
pub fn detail_types(v: &Value) -> Vec<String> {
    v["error"]["details"]
        .as_array()
        .map(|d| d.iter().map(|x| x["@type"].as_str().unwrap_or("").rsplit('.').next().unwrap().to_owned()).collect())
        .unwrap_or_default()
}
