//! Wire tests of the mock's endpoints over loopback: response shapes, stream framing,
//! the OpenAI-compatible surface, gzip, HTTP/2, the control endpoint and shutdown.

mod support;

use std::io::Read;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use mock_gemini::{KeyScript, MockServer, Script};
use serde_json::Value;
use support::*;

#[tokio::test]
async fn generate_content_has_googles_shape_and_is_recorded() {
    let up = MockServer::spawn(Script::default()).await;
    let rsp = post(&up, GEN, "test-key-a", BODY).await;
    assert_eq!(rsp.headers()["content-type"], "application/json; charset=UTF-8");
    assert_eq!(rsp.headers()["server"], "mock-gemini");
    let (status, v) = json(rsp).await;
    assert_eq!(status, 200);
    let c = &v["candidates"][0];
    assert_eq!(c["content"]["role"], "model");
    assert_eq!(c["finishReason"], "STOP");
    assert_eq!(c["index"], 0);
    let text = c["content"]["parts"][0]["text"].as_str().unwrap();
    assert_eq!(text, "mock answer from gemini-2.5-flash: Hello there, mock");
    let u = &v["usageMetadata"];
    assert_eq!(u["promptTokenCount"], 5); // 17 chars / 4, rounded up
    assert_eq!(
        u["totalTokenCount"].as_u64().unwrap(),
        u["promptTokenCount"].as_u64().unwrap() + u["candidatesTokenCount"].as_u64().unwrap()
    );
    assert_eq!(v["modelVersion"], "gemini-2.5-flash");
    assert!(v["responseId"].as_str().is_some_and(|s| !s.is_empty()));

    let last = up.last().unwrap();
    assert_eq!(last.method, "POST");
    assert_eq!(last.path, GEN);
    assert_eq!(last.key.as_deref(), Some("test-key-a"));
    assert_eq!(last.header("X-Goog-Api-Key"), Some("test-key-a"));
    assert_eq!(last.body, BODY.as_bytes());
    assert_eq!(up.count(), 1);
    assert_eq!(up.calls_for_key("test-key-a"), 1);
    assert_eq!(up.calls_for_key("other"), 0);
}

#[tokio::test]
async fn key_in_query_and_missing_key_and_bad_json() {
    let up = MockServer::spawn(Script::default()).await;
    let rsp = client()
        .post(format!("{}/v1/models/gemini-2.0-flash:generateContent?key=qk", up.base_url()))
        .body(BODY)
        .send()
        .await
        .unwrap();
    assert_eq!(rsp.status(), 200);
    assert_eq!(up.last().unwrap().key.as_deref(), Some("qk"));

    let rsp = client().post(format!("{}{GEN}", up.base_url())).body(BODY).send().await.unwrap();
    let (status, v) = json(rsp).await;
    assert_eq!(status, 403);
    assert_eq!(v["error"]["status"], "PERMISSION_DENIED");
    assert!(v["error"]["message"].as_str().unwrap().contains("unregistered callers"));

    let (status, v) = json(post(&up, GEN, "k", "{not json").await).await;
    assert_eq!(status, 400);
    assert_eq!(v["error"]["status"], "INVALID_ARGUMENT");

    let (status, v) = json(post(&up, "/v1beta/nothing/here", "k", "{}").await).await;
    assert_eq!(status, 404);
    assert_eq!(v["error"]["status"], "NOT_FOUND");
    assert!(v["error"]["message"].as_str().unwrap().contains("POST /v1beta/nothing/here"));
    assert_eq!(up.count(), 4);
}

/// Reads a streamed body, returning each received chunk with its arrival time.
async fn frames(rsp: reqwest::Response) -> Vec<(Instant, String)> {
    let mut out = Vec::new();
    let mut s = rsp.bytes_stream();
    while let Some(chunk) = s.next().await {
        out.push((Instant::now(), String::from_utf8(chunk.unwrap().to_vec()).unwrap()));
    }
    out
}

#[tokio::test]
async fn sse_stream_sends_each_chunk_as_its_own_frame() {
    let script =
        Script::default().with_default(KeyScript::default().chunks(3).chunk_interval(Duration::from_millis(60)));
    let up = MockServer::spawn(script).await;
    let rsp = post(&up, &format!("{STREAM}?alt=sse"), "k", BODY).await;
    assert_eq!(rsp.headers()["content-type"], "text/event-stream");
    let got = frames(rsp).await;
    assert_eq!(got.len(), 3, "{got:?}");
    let mut text = String::new();
    for (i, (_, f)) in got.iter().enumerate() {
        assert!(f.starts_with("data: ") && f.ends_with("\r\n\r\n"), "{f:?}");
        let v: Value = serde_json::from_str(&f[6..f.len() - 4]).unwrap();
        text.push_str(v["candidates"][0]["content"]["parts"][0]["text"].as_str().unwrap());
        let last = i == 2;
        assert_eq!(v.get("usageMetadata").is_some(), last);
        assert_eq!(v["candidates"][0].get("finishReason").is_some(), last);
    }
    assert_eq!(text, "mock answer from gemini-2.5-flash: Hello there, mock");
    assert!(got[2].0 - got[0].0 >= Duration::from_millis(100));
}

#[tokio::test]
async fn json_array_stream_is_framed_like_google() {
    let script =
        Script::default().with_default(KeyScript::default().chunks(2).chunk_interval(Duration::from_millis(40)));
    let up = MockServer::spawn(script).await;
    let rsp = post(&up, STREAM, "k", BODY).await;
    assert_eq!(rsp.headers()["content-type"], "application/json; charset=UTF-8");
    let got: Vec<String> = frames(rsp).await.into_iter().map(|(_, f)| f).collect();
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(got[0].starts_with("[{"));
    assert!(got[1].starts_with(",\r\n{"));
    assert_eq!(got[2], "]");
    let whole: Value = serde_json::from_str(&got.concat()).unwrap();
    assert_eq!(whole.as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn break_stream_after_aborts_without_clean_end() {
    let script = Script::default().with_default(KeyScript::default().chunks(4).break_stream_after(2));
    let up = MockServer::spawn(script).await;
    let rsp = post(&up, &format!("{STREAM}?alt=sse"), "k", BODY).await;
    let mut s = rsp.bytes_stream();
    let mut received = Vec::new();
    let mut failed = false;
    while let Some(chunk) = s.next().await {
        match chunk {
            Ok(b) => received.extend_from_slice(&b),
            Err(_) => failed = true,
        }
    }
    assert!(failed, "stream must end with an error");
    let text = String::from_utf8(received).unwrap();
    assert_eq!(text.matches("data: ").count(), 2, "{text}");
}

#[tokio::test]
async fn count_tokens_embeddings_and_models() {
    let up = MockServer::spawn(Script::default()).await;
    let (s, v) = json(post(&up, "/v1beta/models/gemini-2.5-flash:countTokens", "k", BODY).await).await;
    assert_eq!((s, v["totalTokens"].as_u64()), (200, Some(5)));
    let wrapped = format!(r#"{{"generateContentRequest":{BODY}}}"#);
    let (_, v) = json(post(&up, "/v1beta/models/gemini-2.5-flash:countTokens", "k", &wrapped).await).await;
    assert_eq!(v["totalTokens"], 5);

    let embed = r#"{"content":{"parts":[{"text":"hi"}]}}"#;
    let (s, a) = json(post(&up, "/v1beta/models/text-embedding-004:embedContent", "k", embed).await).await;
    assert_eq!(s, 200);
    assert_eq!(a["embedding"]["values"].as_array().unwrap().len(), 8);
    let (_, b) = json(post(&up, "/v1beta/models/text-embedding-004:embedContent", "k", embed).await).await;
    assert_eq!(a, b, "embeddings are deterministic");
    let batch = format!(r#"{{"requests":[{embed},{embed},{embed}]}}"#);
    let (_, v) = json(post(&up, "/v1beta/models/text-embedding-004:batchEmbedContents", "k", &batch).await).await;
    assert_eq!(v["embeddings"].as_array().unwrap().len(), 3);

    let (s, v) = json(get(&up, "/v1beta/models", "k").await).await;
    assert_eq!(s, 200);
    let names: Vec<&str> = v["models"].as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"models/gemini-2.5-pro") && names.contains(&"models/gemini-embedding-001"));
    let (s, v) = json(get(&up, "/v1beta/models/gemini-2.5-flash", "k").await).await;
    assert_eq!(s, 200);
    assert_eq!(v["name"], "models/gemini-2.5-flash");
    assert!(v["supportedGenerationMethods"].as_array().unwrap().iter().any(|m| m == "generateContent"));
}

#[tokio::test]
async fn openai_chat_embeddings_and_models() {
    let up = MockServer::spawn(Script::default()).await;
    let chat = r#"{"model":"gemini-2.5-flash","messages":[{"role":"user","content":"Say hi"}]}"#;
    let c = client();
    let url = |p: &str| format!("{}/v1beta/openai/{p}", up.base_url());
    let rsp = c.post(url("chat/completions")).bearer_auth("bk").body(chat).send().await.unwrap();
    let (s, v) = json(rsp).await;
    assert_eq!(s, 200);
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(v["choices"][0]["message"]["content"], "mock answer from gemini-2.5-flash: Say hi");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["prompt_tokens"], 2);
    assert_eq!(up.last().unwrap().key.as_deref(), Some("bk"));

    let stream = chat.replace("\"messages\"", "\"stream\":true,\"messages\"");
    let rsp = c.post(url("chat/completions")).bearer_auth("bk").body(stream).send().await.unwrap();
    assert_eq!(rsp.headers()["content-type"], "text/event-stream");
    let body = rsp.text().await.unwrap();
    let events: Vec<&str> = body.split("\n\n").filter(|e| !e.is_empty()).collect();
    assert_eq!(events.len(), 4, "{body}");
    assert_eq!(events[3], "data: [DONE]");
    let first: Value = serde_json::from_str(&events[0][6..]).unwrap();
    assert_eq!(first["object"], "chat.completion.chunk");
    assert_eq!(first["choices"][0]["delta"]["role"], "assistant");

    let rsp = c
        .post(url("embeddings"))
        .bearer_auth("bk")
        .body(r#"{"model":"text-embedding-004","input":["a","b"]}"#)
        .send()
        .await
        .unwrap();
    let (s, v) = json(rsp).await;
    assert_eq!(s, 200);
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"][1]["index"], 1);
    assert_eq!(v["data"][0]["embedding"].as_array().unwrap().len(), 8);

    let (s, v) = json(c.get(url("models")).bearer_auth("bk").send().await.unwrap()).await;
    assert_eq!(s, 200);
    assert_eq!(v["data"][0]["object"], "model");
}

#[tokio::test]
async fn gzip_when_scripted_and_accepted() {
    let up = MockServer::spawn(Script::default().with_key("z", KeyScript::default().gzip())).await;
    let send = |key: &'static str, accept: bool| {
        let mut r = client().post(format!("{}{GEN}", up.base_url())).header("x-goog-api-key", key).body(BODY);
        if accept {
            r = r.header("accept-encoding", "gzip");
        }
        r.send()
    };
    let rsp = send("z", true).await.unwrap();
    assert_eq!(rsp.headers()["content-encoding"], "gzip");
    let raw = rsp.bytes().await.unwrap();
    let mut text = String::new();
    flate2::read::GzDecoder::new(&raw[..]).read_to_string(&mut text).unwrap();
    assert!(text.contains("mock answer"));
    let rsp = send("z", false).await.unwrap();
    assert!(rsp.headers().get("content-encoding").is_none());
    let rsp = send("plain", true).await.unwrap();
    assert!(rsp.headers().get("content-encoding").is_none());
}

#[tokio::test]
async fn http2_prior_knowledge_is_served() {
    use http_body_util::{BodyExt, Full};
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let up = MockServer::spawn(Script::default()).await;
    let tcp = tokio::net::TcpStream::connect(up.addr()).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp)).await.unwrap();
    tokio::spawn(conn);
    let req = http::Request::post(format!("{}{GEN}", up.base_url()))
        .header("x-goog-api-key", "h2")
        .body(Full::new(bytes::Bytes::from_static(BODY.as_bytes())))
        .unwrap();
    let rsp = send.send_request(req).await.unwrap();
    assert_eq!(rsp.status(), 200);
    assert_eq!(rsp.version(), http::Version::HTTP_2);
    let body = rsp.into_body().collect().await.unwrap().to_bytes();
    assert!(std::str::from_utf8(&body).unwrap().contains("mock answer"));
    assert_eq!(up.calls_for_key("h2"), 1);
}

#[tokio::test]
async fn control_endpoint_scripts_lists_and_resets() {
    let up = MockServer::spawn(Script::default()).await;
    let c = client();
    let base = up.base_url();
    let yaml = "keys:\n  bad: { invalid: true }\n";
    let rsp = c.post(format!("{base}/_mock/script")).body(yaml).send().await.unwrap();
    assert_eq!(rsp.status(), 200);
    assert_eq!(up.script().keys["bad"].invalid, Some(true));
    let rsp = c.post(format!("{base}/_mock/script")).body(r#"{"keys":{"bad":{"status":500}}}"#).send().await.unwrap();
    assert_eq!(rsp.status(), 200);
    let (s, _) = json(post(&up, GEN, "bad", BODY).await).await;
    assert_eq!(s, 500);
    let rsp = c.post(format!("{base}/_mock/script")).body("keys: [").send().await.unwrap();
    assert_eq!(rsp.status(), 400);

    let (s, v) = json(c.get(format!("{base}/_mock/requests")).send().await.unwrap()).await;
    assert_eq!(s, 200);
    let list = v.as_array().unwrap();
    assert_eq!(list.len(), 1, "control requests are not recorded");
    assert_eq!(list[0]["key"], "bad");
    assert_eq!(list[0]["body"], BODY);
    assert_eq!(list[0]["path"], GEN);

    let rsp = c.post(format!("{base}/_mock/reset")).send().await.unwrap();
    assert_eq!(rsp.status(), 200);
    assert_eq!(up.count(), 0);
    assert!(up.requests().is_empty());
}

#[tokio::test]
async fn serve_stops_when_shutdown_resolves() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(mock_gemini::serve(listener, Script::default(), async {
        let _ = rx.await;
    }));
    let rsp = client().get(format!("http://{addr}/v1beta/models")).header("x-goog-api-key", "k").send().await.unwrap();
    assert_eq!(rsp.status(), 200);
    tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task).await.unwrap().unwrap().unwrap();
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn binary_prints_its_address_first_and_serves_the_script() {
    use std::io::BufRead;
    let dir = std::env::temp_dir().join(format!("mock-gemini-bin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("s.yaml");
    std::fs::write(&script, "keys: { bad: { invalid: true } }\n").unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mock-gemini"))
        .args(["--listen", "127.0.0.1:0", "--script"])
        .arg(&script)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line.trim().strip_prefix("mock-gemini listening on ").unwrap().to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{line}");
    let rsp = client().post(format!("{url}{GEN}")).header("x-goog-api-key", "bad").body(BODY).send().await;
    child.kill().unwrap();
    child.wait().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(rsp.unwrap().status(), 400);
}
