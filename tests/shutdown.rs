//! Graceful shutdown (SPEC 7): once shutdown begins `/readyz` fails and new connections
//! are refused, while requests and streams in flight finish within `shutdown_grace`;
//! `shutdown()` returns when they are done, or after the grace with what is left cut off.

mod support;

use mock_gemini::{KeyScript, Script};
use std::net::SocketAddr;
use std::time::Duration;
use support::*;
use tokio::net::TcpStream;
use tokio::time::{sleep, timeout, Instant};

const SSE_PATH: &str = "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse";

fn paced(chunks: usize, interval: Duration) -> Script {
    Script::default().with_default(KeyScript::default().chunks(chunks).chunk_interval(interval))
}

/// Reads until a whole SSE event has arrived; returns the text so far.
async fn first_event(rsp: &mut reqwest::Response) -> String {
    let mut text = String::new();
    while !text.contains("\r\n\r\n") {
        let chunk = timeout(Duration::from_secs(5), rsp.chunk()).await.expect("a chunk in time");
        text.push_str(std::str::from_utf8(&chunk.unwrap().expect("the stream goes on")).unwrap());
    }
    text
}

/// Polls `/readyz` until it answers `want` (bounded).
async fn wait_ready_status(h: &Harness, want: u16) {
    for _ in 0..100 {
        let rsp = h.http.get(h.admin_url("/readyz")).send().await.expect("the admin listener is up");
        if rsp.status() == want {
            return;
        }
        sleep(Duration::from_millis(20)).await;
    }
    panic!("/readyz never answered {want}");
}

/// Waits (bounded) until connecting to `addr` is refused.
async fn wait_refused(addr: SocketAddr) {
    for _ in 0..100 {
        if TcpStream::connect(addr).await.is_err() {
            return;
        }
        sleep(Duration::from_millis(20)).await;
    }
    panic!("{addr} still accepts connections");
}

#[tokio::test]
async fn a_stream_in_flight_finishes_while_new_connections_are_refused() {
    let mut h = start(paced(4, Duration::from_millis(300)), "shutdown_grace: 10s").await;
    wait_ready_status(&h, 200).await;
    let mut rsp = h.post(SSE_PATH, GENERATE).await;
    assert_eq!(rsp.status(), 200);
    let headers = rsp.headers().clone();
    let mut body = first_event(&mut rsp).await;

    h.gate.begin_shutdown();
    wait_ready_status(&h, 503).await;
    wait_refused(h.gate.addr).await;

    while let Some(chunk) = timeout(Duration::from_secs(5), rsp.chunk()).await.expect("chunks in time").unwrap() {
        body.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert_eq!(body.matches("data: ").count(), 4, "the stream finished whole: {body}");
    assert!(body.contains("\"finishReason\":\"STOP\""), "{body}");
    h.assert_no_key_leak(&headers, &body);

    let Harness { gate, .. } = h;
    let started = Instant::now();
    gate.shutdown().await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(2), "nothing was left to wait for: {:?}", started.elapsed());
}

#[tokio::test]
async fn idle_connections_do_not_hold_the_shutdown() {
    let h = start(Script::default(), "shutdown_grace: 10s").await;
    let rsp = h.post(GENERATE_PATH, GENERATE).await;
    assert_eq!(rsp.status(), 200);
    let headers = rsp.headers().clone();
    let body = rsp.text().await.unwrap();
    h.assert_no_key_leak(&headers, &body);
    // The client keeps its connection open in its pool.
    let Harness { gate, http, .. } = h;
    let started = Instant::now();
    gate.shutdown().await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(2), "waited {:?} on an idle connection", started.elapsed());
    drop(http);
}

#[tokio::test]
async fn a_hanging_stream_gets_the_grace_then_is_cut_off() {
    let h = start(paced(3, Duration::from_secs(20)), "shutdown_grace: 300ms").await;
    let mut rsp = h.post(SSE_PATH, GENERATE).await;
    assert_eq!(rsp.status(), 200);
    let headers = rsp.headers().clone();
    let body = first_event(&mut rsp).await;
    h.assert_no_key_leak(&headers, &body);

    let Harness { gate, .. } = h;
    let started = Instant::now();
    timeout(Duration::from_secs(5), gate.shutdown()).await.expect("shutdown returns").unwrap();
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(250), "shutdown did not wait for the stream: {waited:?}");
    assert!(waited < Duration::from_secs(2), "shutdown overran its grace: {waited:?}");

    // What the grace did not cover is cut off, never ended cleanly.
    let rest = timeout(Duration::from_secs(3), rsp.chunk()).await.expect("the stream was left running");
    assert!(rest.is_err(), "the cut-off stream ended cleanly: {rest:?}");
}

#[tokio::test]
async fn a_live_session_gets_the_grace_then_is_closed() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    use tokio_tungstenite::tungstenite::Message;

    let h = start(Script::default(), "shutdown_grace: 300ms").await;
    let url = format!(
        "ws://{}/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent?key=c",
        h.gate.addr
    );
    let (mut socket, response) = tokio_tungstenite::connect_async(url).await.expect("the upgrade succeeds");
    socket.send(Message::text(r#"{"setup":{"model":"models/gemini-2.5-flash-live"}}"#)).await.unwrap();
    let reply = timeout(Duration::from_secs(5), socket.next()).await.expect("setupComplete in time");
    let reply = reply.unwrap().unwrap().into_text().unwrap();
    assert!(reply.contains("setupComplete"), "{reply}");
    h.assert_no_key_leak(response.headers(), &reply);

    let Harness { gate, .. } = h;
    let started = Instant::now();
    timeout(Duration::from_secs(5), gate.shutdown()).await.expect("shutdown returns").unwrap();
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(250), "shutdown did not wait for the session: {waited:?}");
    assert!(waited < Duration::from_secs(2), "shutdown overran its grace: {waited:?}");

    // The session is over: the client is told the server is going away.
    let closed = timeout(Duration::from_secs(3), socket.next()).await.expect("the Live session was left running");
    match closed {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(frame.code, CloseCode::Away, "{frame:?}"),
        other => panic!("expected a close frame, got {other:?}"),
    }
}
