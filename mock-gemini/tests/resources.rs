//! Wire tests of key-scoped resources (resumable upload, files, batches, cached contents,
//! references in generateContent) and the Live WebSocket.

mod support;

use futures_util::{SinkExt, StreamExt};
use mock_gemini::{KeyScript, MockServer, Script};
use serde_json::Value;
use support::*;
use tokio_tungstenite::tungstenite::Message;

/// Starts a resumable upload with `key`; returns the upload URL.
async fn start_upload(up: &MockServer, key: &str, size: usize) -> String {
    let rsp = client()
        .post(format!("{}/upload/v1beta/files", up.base_url()))
        .header("x-goog-api-key", key)
        .header("x-goog-upload-protocol", "resumable")
        .header("x-goog-upload-command", "start")
        .header("x-goog-upload-header-content-length", size.to_string())
        .header("x-goog-upload-header-content-type", "text/plain")
        .header("content-type", "application/json")
        .body(r#"{"file":{"display_name":"notes.txt"}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(rsp.status(), 200);
    assert_eq!(rsp.headers()["x-goog-upload-status"], "active");
    rsp.headers()["x-goog-upload-url"].to_str().unwrap().to_owned()
}

async fn send_chunk(
    url: &str,
    key: Option<&str>,
    command: &str,
    offset: usize,
    data: &'static str,
) -> reqwest::Response {
    let mut r = client()
        .post(url)
        .header("x-goog-upload-command", command)
        .header("x-goog-upload-offset", offset.to_string())
        .body(data);
    if let Some(k) = key {
        r = r.header("x-goog-api-key", k);
    }
    r.send().await.unwrap()
}

#[tokio::test]
async fn resumable_upload_round_trip_and_key_scoping() {
    let up = MockServer::spawn(Script::default()).await;
    let url = start_upload(&up, "ka", 11).await;
    assert!(url.starts_with(&format!("{}/upload/v1beta/files?upload_id=", up.base_url())), "{url}");
    assert!(url.ends_with("&upload_protocol=resumable"));

    // A continuation with another key is another project: refused.
    let (s, v) = json(send_chunk(&url, Some("kb"), "upload, finalize", 0, "hello world").await).await;
    assert_eq!(s, 403);
    assert_eq!(v["error"]["status"], "PERMISSION_DENIED");

    let rsp = send_chunk(&url, Some("ka"), "upload", 0, "hello ").await;
    assert_eq!(rsp.status(), 200);
    assert_eq!(rsp.headers()["x-goog-upload-status"], "active");
    let rsp = send_chunk(&url, Some("ka"), "upload, finalize", 6, "world").await;
    assert_eq!(rsp.status(), 200);
    assert_eq!(rsp.headers()["x-goog-upload-status"], "final");
    let (_, v) = json(rsp).await;
    let file = &v["file"];
    let name = file["name"].as_str().unwrap();
    let id = name.strip_prefix("files/").unwrap();
    assert_eq!(file["displayName"], "notes.txt");
    assert_eq!(file["mimeType"], "text/plain");
    assert_eq!(file["sizeBytes"], "11");
    assert_eq!(file["state"], "ACTIVE");
    assert_eq!(file["source"], "UPLOADED");
    let uri = file["uri"].as_str().unwrap();
    assert_eq!(uri, format!("{}/v1beta/files/{id}", up.base_url()));
    for field in ["createTime", "updateTime", "expirationTime", "sha256Hash"] {
        assert!(file[field].is_string(), "{field}");
    }

    // files.get: owner only; unknown ids are 404.
    let (s, v) = json(get(&up, &format!("/v1beta/{name}"), "ka").await).await;
    assert_eq!((s, v["name"].as_str()), (200, Some(name)));
    let (s, v) = json(get(&up, &format!("/v1beta/{name}"), "kb").await).await;
    assert_eq!(s, 403);
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains(&format!("File {id}")), "{msg}");
    assert!(v["error"].get("details").is_none(), "resource-level 403 carries no key reason");
    assert_eq!(get(&up, "/v1beta/files/nope", "ka").await.status(), 404);
    let (_, v) = json(get(&up, "/v1beta/files", "ka").await).await;
    assert_eq!(v["files"].as_array().unwrap().len(), 1);
    let (_, v) = json(get(&up, "/v1beta/files", "kb").await).await;
    assert_eq!(v["files"].as_array().unwrap().len(), 0);

    // generateContent naming the file: owner fine, other key 403 (camel and snake case).
    let camel = format!(
        r#"{{"contents":[{{"parts":[{{"text":"sum up"}},{{"fileData":{{"fileUri":"{uri}","mimeType":"text/plain"}}}}]}}]}}"#
    );
    let snake = camel.replace("fileData", "file_data").replace("fileUri", "file_uri");
    assert_eq!(post(&up, GEN, "ka", &camel).await.status(), 200);
    assert_eq!(post(&up, GEN, "kb", &camel).await.status(), 403);
    assert_eq!(post(&up, &format!("{STREAM}?alt=sse"), "kb", &snake).await.status(), 403);

    // delete: other key refused, owner deletes.
    let c = client();
    let del =
        |key: &'static str| c.delete(format!("{}/v1beta/{name}", up.base_url())).header("x-goog-api-key", key).send();
    assert_eq!(del("kb").await.unwrap().status(), 403);
    assert_eq!(del("ka").await.unwrap().status(), 200);
    assert_eq!(get(&up, &format!("/v1beta/{name}"), "ka").await.status(), 404);
}

#[tokio::test]
async fn keyless_upload_continuation_is_authorized_by_the_upload_id() {
    let up = MockServer::spawn(Script::default()).await;
    let url = start_upload(&up, "ka", 2).await;
    let rsp = send_chunk(&url, None, "upload, finalize", 0, "hi").await;
    assert_eq!(rsp.status(), 200);
    let (_, v) = json(rsp).await;
    let name = v["file"]["name"].as_str().unwrap().to_owned();
    // The file belongs to the key that started the upload.
    assert_eq!(get(&up, &format!("/v1beta/{name}"), "ka").await.status(), 200);
}

#[tokio::test]
async fn batches_and_cached_contents_are_scoped_to_their_key() {
    let up = MockServer::spawn(Script::default()).await;
    let body = r#"{"batch":{"display_name":"b","input_config":{"requests":{"requests":[
        {"request":{"contents":[{"parts":[{"text":"a"}]}]}},{"request":{"contents":[{"parts":[{"text":"b"}]}]}}]}}}}"#;
    let (s, op) = json(post(&up, "/v1beta/models/gemini-2.5-flash:batchGenerateContent", "ka", body).await).await;
    assert_eq!(s, 200);
    let name = op["name"].as_str().unwrap();
    assert!(name.starts_with("batches/"));
    assert_eq!(op["metadata"]["state"], "BATCH_STATE_PENDING");
    assert_eq!(op["metadata"]["model"], "models/gemini-2.5-flash");
    assert!(op["metadata"]["@type"].as_str().unwrap().ends_with("GenerateContentBatch"));
    let (s, done) = json(get(&up, &format!("/v1beta/{name}"), "ka").await).await;
    assert_eq!(s, 200);
    assert_eq!(done["done"], true);
    assert_eq!(done["metadata"]["state"], "BATCH_STATE_SUCCEEDED");
    assert_eq!(done["metadata"]["output"]["inlinedResponses"]["inlinedResponses"].as_array().unwrap().len(), 2);
    assert_eq!(get(&up, &format!("/v1beta/{name}"), "kb").await.status(), 403);
    assert_eq!(post(&up, &format!("/v1beta/{name}:cancel"), "kb", "").await.status(), 403);
    let (s, v) = json(post(&up, &format!("/v1beta/{name}:cancel"), "ka", "").await).await;
    assert_eq!((s, v), (200, Value::Object(Default::default())));

    let cache =
        r#"{"model":"models/gemini-2.5-flash","contents":[{"parts":[{"text":"a long context"}]}],"ttl":"600s"}"#;
    let (s, c) = json(post(&up, "/v1beta/cachedContents", "ka", cache).await).await;
    assert_eq!(s, 200);
    let cname = c["name"].as_str().unwrap();
    assert!(cname.starts_with("cachedContents/"));
    assert_eq!(c["model"], "models/gemini-2.5-flash");
    assert!(c["expireTime"].is_string());
    assert_eq!(get(&up, &format!("/v1beta/{cname}"), "ka").await.status(), 200);
    assert_eq!(get(&up, &format!("/v1beta/{cname}"), "kb").await.status(), 403);
    let using = format!(r#"{{"cachedContent":"{cname}","contents":[{{"parts":[{{"text":"q"}}]}}]}}"#);
    assert_eq!(post(&up, GEN, "ka", &using).await.status(), 200);
    let (s, v) = json(post(&up, GEN, "kb", &using).await).await;
    assert_eq!((s, v["error"]["status"].as_str()), (403, Some("PERMISSION_DENIED")));
    let (_, v) = json(get(&up, "/v1beta/cachedContents", "ka").await).await;
    assert_eq!(v["cachedContents"].as_array().unwrap().len(), 1);
}

const LIVE: &str = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent";

async fn next_json<S>(ws: &mut S) -> Value
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    match ws.next().await.unwrap().unwrap() {
        Message::Text(t) => serde_json::from_str(t.as_str()).unwrap(),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn live_session_answers_turns_and_is_recorded() {
    let up = MockServer::spawn(Script::default()).await;
    let url = format!("ws://{}{LIVE}?key=live-key", up.addr());
    let (mut ws, rsp) = tokio_tungstenite::connect_async(url).await.unwrap();
    assert_eq!(rsp.status(), 101);
    ws.send(Message::text(r#"{"setup":{"model":"models/gemini-2.0-flash-live-001"}}"#)).await.unwrap();
    assert_eq!(next_json(&mut ws).await, serde_json::json!({ "setupComplete": {} }));
    ws.send(Message::text(
        r#"{"clientContent":{"turns":[{"role":"user","parts":[{"text":"hi"}]}],"turnComplete":true}}"#,
    ))
    .await
    .unwrap();
    let answer = next_json(&mut ws).await;
    assert_eq!(answer["serverContent"]["modelTurn"]["parts"][0]["text"], "mock live answer");
    let done = next_json(&mut ws).await;
    assert_eq!(done["serverContent"]["turnComplete"], true);
    assert!(done["usageMetadata"]["totalTokenCount"].as_u64().unwrap() > 0);
    ws.close(None).await.unwrap();

    let rec = up.last().unwrap();
    assert_eq!(rec.method, "GET");
    assert_eq!(rec.path, LIVE);
    assert_eq!(rec.key.as_deref(), Some("live-key"));
    assert_eq!(rec.header("upgrade"), Some("websocket"));
}

#[tokio::test]
async fn live_with_invalid_key_is_closed_with_1008() {
    let up = MockServer::spawn(Script::default().reject_key("bad")).await;
    let url = format!("ws://{}{LIVE}?key=bad", up.addr());
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    match ws.next().await.unwrap().unwrap() {
        Message::Close(Some(frame)) => assert_eq!(u16::from(frame.code), 1008),
        other => panic!("expected close, got {other:?}"),
    }
    // Scripted invalid keys too.
    up.set_script(Script::default().with_key("inv", KeyScript::default().invalid()));
    let url = format!("ws://{}{LIVE}?key=inv", up.addr());
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    assert!(matches!(ws.next().await.unwrap().unwrap(), Message::Close(Some(f)) if u16::from(f.code) == 1008));
}
