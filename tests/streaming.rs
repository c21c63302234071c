//! Streaming (SPEC 2): SSE, the JSON-array stream and OpenAI `stream: true` are relayed
//! chunk by chunk as they arrive; a stream that breaks upstream, or goes silent past
//! `upstream.stream_idle_timeout`, reaches the client as a broken stream, never a clean
//! end; a client that goes away ends the upstream call.

mod support;

use bytes::Bytes;
use mock_gemini::{KeyScript, Script};
use std::time::Duration;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::time::{timeout, Instant};

const SSE_PATH: &str = "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse";
const ARRAY_PATH: &str = "/v1beta/models/gemini-2.5-flash:streamGenerateContent";
const CHAT_PATH: &str = "/v1beta/openai/chat/completions";
const CHAT_STREAM: &str =
    r#"{"model":"gemini-2.5-flash","stream":true,"messages":[{"role":"user","content":"Say hello"}]}"#;
const INTERVAL: Duration = Duration::from_millis(300);

/// Every key streams `chunks` chunks, `interval` apart.
fn paced(chunks: usize, interval: Duration) -> Script {
    Script::default().with_default(KeyScript::default().chunks(chunks).chunk_interval(interval))
}

/// A body read chunk by chunk: what had arrived when `done` first held, and when.
struct Timed {
    first: String,
    first_at: Duration,
    all: String,
    end_at: Duration,
    /// The read error that ended the body, if it did not end cleanly.
    error: Option<reqwest::Error>,
}

/// Reads `rsp` to its end (or error), noting the moment `first_done` first holds for the
/// text received so far.
async fn read_timed(mut rsp: reqwest::Response, started: Instant, first_done: impl Fn(&str) -> bool) -> Timed {
    let mut all = String::new();
    let mut first = None;
    let error = loop {
        match rsp.chunk().await {
            Ok(Some(chunk)) => {
                all.push_str(std::str::from_utf8(&chunk).expect("utf-8 chunk"));
                if first.is_none() && first_done(&all) {
                    first = Some((all.clone(), started.elapsed()));
                }
            }
            Ok(None) => break None,
            Err(e) => break Some(e),
        }
    };
    let (first, first_at) = first.unwrap_or_else(|| (all.clone(), started.elapsed()));
    Timed { first, first_at, all, end_at: started.elapsed(), error }
}

/// The `data:` payloads of an SSE body (`\n\n` or `\r\n\r\n` separated).
fn sse_events(body: &str) -> Vec<String> {
    body.replace("\r\n", "\n")
        .split("\n\n")
        .filter_map(|event| event.trim().strip_prefix("data: ").map(str::to_owned))
        .collect()
}

/// True once a whole SSE event has arrived.
fn one_event(body: &str) -> bool {
    body.contains("\n\n") || body.contains("\r\n\r\n")
}

fn gemini_text(chunk: &serde_json::Value) -> String {
    chunk["candidates"][0]["content"]["parts"][0]["text"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn sse_is_relayed_chunk_by_chunk() {
    let h = start(paced(4, INTERVAL), "").await;
    let started = Instant::now();
    let rsp = h.post(SSE_PATH, GENERATE).await;
    assert_eq!(rsp.status(), 200);
    assert!(rsp.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    assert_eq!(rsp.headers()["x-gemgate-key"], "key-a");
    let headers = rsp.headers().clone();
    let t = read_timed(rsp, started, one_event).await;
    assert!(t.error.is_none(), "clean end expected: {:?}", t.error);

    // The first event came alone, while the other three were still 3 intervals away.
    assert_eq!(sse_events(&t.first).len(), 1, "first read: {:?}", t.first);
    assert!(
        t.end_at - t.first_at >= INTERVAL * 5 / 2,
        "first event at {:?}, end at {:?}: the stream was buffered",
        t.first_at,
        t.end_at
    );
    let events = sse_events(&t.all);
    assert_eq!(events.len(), 4, "{}", t.all);
    let text: String =
        events.iter().map(|e| gemini_text(&serde_json::from_str(e).expect("each event is JSON"))).collect();
    assert!(text.starts_with("mock answer from gemini-2.5-flash"), "{text}");
    assert_eq!(h.mock.last().unwrap().query.as_deref(), Some("alt=sse"));
    h.assert_no_key_leak(&headers, &t.all);
}

#[tokio::test]
async fn json_array_stream_is_relayed_chunk_by_chunk() {
    let h = start(paced(3, INTERVAL), "").await;
    let started = Instant::now();
    let rsp = h.post(ARRAY_PATH, GENERATE).await;
    assert_eq!(rsp.status(), 200);
    assert!(rsp.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    let headers = rsp.headers().clone();
    let t = read_timed(rsp, started, |s| s.starts_with('[')).await;
    assert!(t.error.is_none(), "clean end expected: {:?}", t.error);
    assert!(!t.first.trim_end().ends_with(']'), "the array's end came with its start: {:?}", t.first);
    assert!(t.end_at - t.first_at >= INTERVAL * 3 / 2, "first at {:?}, end at {:?}", t.first_at, t.end_at);
    let chunks: Vec<serde_json::Value> = serde_json::from_str(&t.all).expect("the whole body is a JSON array");
    assert_eq!(chunks.len(), 3);
    assert!(chunks.iter().map(gemini_text).collect::<String>().starts_with("mock answer from"));
    h.assert_no_key_leak(&headers, &t.all);
}

#[tokio::test]
async fn openai_stream_is_relayed_chunk_by_chunk() {
    let h = start(paced(3, INTERVAL), "").await;
    let started = Instant::now();
    let rsp = h.post(CHAT_PATH, CHAT_STREAM).await;
    assert_eq!(rsp.status(), 200);
    assert!(rsp.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    assert_eq!(rsp.headers()["x-gemgate-model"], "gemini-2.5-flash");
    let headers = rsp.headers().clone();
    let t = read_timed(rsp, started, one_event).await;
    assert!(t.error.is_none(), "clean end expected: {:?}", t.error);
    assert_eq!(sse_events(&t.first).len(), 1, "first read: {:?}", t.first);
    assert!(t.end_at - t.first_at >= INTERVAL * 3 / 2, "first at {:?}, end at {:?}", t.first_at, t.end_at);
    let events = sse_events(&t.all);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"), "{}", t.all);
    let text: String = events[..events.len() - 1]
        .iter()
        .map(|e| {
            let v: serde_json::Value = serde_json::from_str(e).unwrap();
            assert_eq!(v["object"], "chat.completion.chunk");
            v["choices"][0]["delta"]["content"].as_str().unwrap_or_default().to_owned()
        })
        .collect();
    assert!(text.starts_with("mock answer from gemini-2.5-flash"), "{text}");
    assert_eq!(h.mock.last().unwrap().header("x-goog-api-key"), Some(KEY_A));
    h.assert_no_key_leak(&headers, &t.all);
}

#[tokio::test]
async fn an_upstream_break_reaches_the_client_as_a_broken_stream() {
    let script = Script::default().with_default(KeyScript::default().chunks(4).break_stream_after(1));
    let h = start(script, "").await;
    for path in [SSE_PATH, ARRAY_PATH] {
        let rsp = h.post(path, GENERATE).await;
        assert_eq!(rsp.status(), 200, "{path}: the head was already on its way");
        let headers = rsp.headers().clone();
        let t = read_timed(rsp, Instant::now(), |s| !s.is_empty()).await;
        assert!(t.error.is_some(), "{path}: the client saw a clean end of a broken stream: {:?}", t.all);
        assert!(!t.all.is_empty(), "{path}: the chunk sent before the break is relayed");
        if path == SSE_PATH {
            assert_eq!(sse_events(&t.all).len(), 1, "{}", t.all);
        } else {
            assert!(!t.all.trim_end().ends_with(']'), "{path}: a made-up end of the array: {}", t.all);
        }
        h.assert_no_key_leak(&headers, &t.all);
    }
    // The broken upstream connection does not poison the next request.
    let script = Script::default();
    h.mock.set_script(script);
    let rsp = h.post(SSE_PATH, GENERATE).await;
    assert_eq!(rsp.status(), 200);
    assert_eq!(sse_events(&rsp.text().await.unwrap()).len(), 3);
}

#[tokio::test]
async fn a_silent_stream_is_cut_off_after_the_idle_timeout() {
    let h = start_with(paced(3, Duration::from_secs(2)), "stream_idle_timeout: 200ms", "").await;
    let started = Instant::now();
    let rsp = h.post(SSE_PATH, GENERATE).await;
    assert_eq!(rsp.status(), 200);
    let headers = rsp.headers().clone();
    let t = read_timed(rsp, started, one_event).await;
    assert!(t.error.is_some(), "the client saw a clean end: {:?}", t.all);
    assert_eq!(sse_events(&t.all).len(), 1, "only the first event came before the silence");
    assert!(t.end_at < Duration::from_millis(1500), "cut off at {:?}, not after ~200ms of silence", t.end_at);
    assert!(t.end_at - t.first_at >= Duration::from_millis(150), "cut off too early: {:?}", t.end_at - t.first_at);
    h.assert_no_key_leak(&headers, &t.all);
}

#[tokio::test]
async fn a_client_dropping_a_stream_leaves_the_gateway_serving() {
    let h = start(paced(10, Duration::from_secs(1)), "").await;
    let mut rsp = h.post(SSE_PATH, GENERATE).await;
    assert_eq!(rsp.status(), 200);
    let first = timeout(Duration::from_secs(5), rsp.chunk()).await.expect("first chunk in time").unwrap();
    assert!(first.is_some_and(|c| c.starts_with(b"data: ")));
    drop(rsp);

    h.mock.set_script(Script::default());
    let started = Instant::now();
    let rsp = h.post(SSE_PATH, GENERATE).await;
    assert_eq!(rsp.status(), 200);
    let headers = rsp.headers().clone();
    let body = rsp.text().await.unwrap();
    assert_eq!(sse_events(&body).len(), 3);
    assert!(started.elapsed() < Duration::from_secs(2), "the next request waited on the dropped one");
    assert_eq!(h.mock.count(), 2);
    h.assert_no_key_leak(&headers, &body);
}

/// A bare HTTP/1.1 upstream for one streaming call: it answers with the head and a first
/// SSE event, then holds the stream open and reports when the connection is closed on it.
async fn holding_upstream() -> (String, oneshot::Receiver<String>, oneshot::Receiver<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (head_tx, head_rx) = oneshot::channel();
    let (closed_tx, closed_rx) = oneshot::channel();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = socket.read(&mut buf).await.unwrap();
            assert!(n > 0, "gemgate closed before sending its request");
            seen.extend_from_slice(&buf[..n]);
        }
        let _ = head_tx.send(String::from_utf8_lossy(&seen).into_owned());
        let event = b"data: {\"candidates\":[]}\n\n";
        let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
        socket.write_all(head.as_bytes()).await.unwrap();
        socket.write_all(format!("{:x}\r\n", event.len()).as_bytes()).await.unwrap();
        socket.write_all(event).await.unwrap();
        socket.write_all(b"\r\n").await.unwrap();
        // The rest of the request body, then nothing until gemgate closes the connection.
        loop {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        let _ = closed_tx.send(());
    });
    (url, head_rx, closed_rx)
}

#[tokio::test]
async fn a_client_dropping_a_stream_closes_the_upstream_call() {
    let (upstream, head, closed) = holding_upstream().await;
    let h = start_against(&upstream, "", "").await;
    let mut rsp = h.post(SSE_PATH, GENERATE).await;
    assert_eq!(rsp.status(), 200);
    let headers = rsp.headers().clone();
    let first: Bytes = timeout(Duration::from_secs(5), rsp.chunk()).await.expect("first chunk").unwrap().unwrap();
    assert!(first.starts_with(b"data: "));
    let head = head.await.unwrap();
    assert!(head.contains(KEY_A), "the upstream got the pool key");
    assert!(!head.contains("client-token"));
    drop(rsp);
    timeout(Duration::from_secs(5), closed)
        .await
        .expect("gemgate kept the upstream call open after its client left")
        .unwrap();
    h.assert_no_key_leak(&headers, std::str::from_utf8(&first).unwrap());
}
