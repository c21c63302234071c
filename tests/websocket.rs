//! The Live API over WebSocket (SPEC 2): the upgrade goes upstream with the pool key as
//! the `key` query parameter in place of the client's, messages are relayed both ways, and
//! a client outside its model allow-list gets the session closed with 1008
//! PERMISSION_DENIED.

mod support;

use futures_util::{SinkExt, StreamExt};
use mock_gemini::Script;
use std::time::Duration;
use support::*;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{connect_async, MaybeTlsStream, WebSocketStream};

const LIVE_PATH: &str = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent";
const CLIENT_CONTENT: &str =
    r#"{"clientContent":{"turns":[{"role":"user","parts":[{"text":"Hello there"}]}],"turnComplete":true}}"#;

type Socket = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

fn setup(model: &str) -> String {
    format!(r#"{{"setup":{{"model":"models/{model}","generationConfig":{{"responseModalities":["TEXT"]}}}}}}"#)
}

/// Opens a Live session through gemgate with `token` as the client's key.
async fn connect(h: &Harness, token: &str) -> Result<(Socket, reqwest::header::HeaderMap), WsError> {
    let url = format!("ws://{}{LIVE_PATH}?key={token}", h.gate.addr);
    let (socket, response) = timeout(Duration::from_secs(5), connect_async(url)).await.expect("handshake in time")?;
    Ok((socket, response.headers().clone()))
}

/// The next data message as text (pings skipped), within a bound.
async fn next_text(socket: &mut Socket) -> Message {
    loop {
        let message = timeout(Duration::from_secs(5), socket.next()).await.expect("a message in time");
        match message.expect("the socket is open").expect("a valid frame") {
            Message::Ping(_) | Message::Pong(_) => continue,
            other => return other,
        }
    }
}

async fn next_json(socket: &mut Socket, transcript: &mut String) -> serde_json::Value {
    match next_text(socket).await {
        Message::Text(t) => {
            transcript.push_str(t.as_str());
            serde_json::from_str(t.as_str()).expect("JSON message")
        }
        Message::Binary(b) => {
            transcript.push_str(&String::from_utf8_lossy(&b));
            serde_json::from_slice(&b).expect("JSON message")
        }
        other => panic!("expected a data message, got {other:?}"),
    }
}

#[tokio::test]
async fn a_live_session_is_relayed_with_the_pool_key() {
    let h = start(Script::default(), "").await;
    let (mut socket, headers) = connect(&h, "client-token").await.expect("the upgrade succeeds");
    assert_eq!(headers["x-gemgate-key"], "key-a");
    let mut transcript = String::new();

    socket.send(Message::text(setup("gemini-2.5-flash-live"))).await.unwrap();
    let v = next_json(&mut socket, &mut transcript).await;
    assert!(v.get("setupComplete").is_some(), "{v}");
    socket.send(Message::text(CLIENT_CONTENT)).await.unwrap();
    let v = next_json(&mut socket, &mut transcript).await;
    assert_eq!(v["serverContent"]["modelTurn"]["parts"][0]["text"], "mock live answer", "{v}");
    let v = next_json(&mut socket, &mut transcript).await;
    assert_eq!(v["serverContent"]["turnComplete"], true, "{v}");
    assert!(v["usageMetadata"]["totalTokenCount"].as_u64().is_some_and(|n| n > 0), "{v}");
    socket.close(None).await.unwrap();

    let up = h.mock.requests().into_iter().find(|r| r.path == LIVE_PATH).expect("the upgrade reached the mock");
    assert_eq!(up.key.as_deref(), Some(KEY_A));
    let query = up.query.clone().unwrap_or_default();
    assert!(query.split('&').any(|p| p == format!("key={KEY_A}")), "{query}");
    assert!(!query.contains("client-token"), "the client's key went upstream: {query}");
    assert_eq!(up.header("x-goog-api-key"), None, "on WebSocket the key goes in the query");
    assert!(up.headers.iter().all(|(_, v)| !v.contains("client-token")));
    assert!(up.header("upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket")));
    h.assert_no_key_leak(&headers, &transcript);
}

const CLIENTS: &str = r#"clients:
  mode: tokens
  tokens:
    - { name: bot, token: tok-bot, models: ["gemini-2.5-*"] }
    - { name: etl, token: tok-etl }
"#;

#[tokio::test]
async fn a_setup_for_a_model_outside_the_allow_list_is_closed_with_1008() {
    let h = start(Script::default(), CLIENTS).await;
    let (mut socket, headers) = connect(&h, "tok-bot").await.expect("the upgrade succeeds");
    socket.send(Message::text(setup("gemini-2.0-flash-live"))).await.unwrap();
    let Message::Close(Some(frame)) = next_text(&mut socket).await else {
        panic!("expected a close frame with a reason");
    };
    assert_eq!(frame.code, CloseCode::Policy, "{frame:?}");
    assert!(frame.reason.starts_with("PERMISSION_DENIED"), "{frame:?}");
    h.assert_no_key_leak(&headers, &frame.reason);

    // The allowed model, and a client without an allow-list, get their sessions.
    for (token, model) in [("tok-bot", "gemini-2.5-flash-live"), ("tok-etl", "gemini-2.0-flash-live")] {
        let (mut socket, headers) = connect(&h, token).await.expect("the upgrade succeeds");
        socket.send(Message::text(setup(model))).await.unwrap();
        let mut transcript = String::new();
        let v = next_json(&mut socket, &mut transcript).await;
        assert!(v.get("setupComplete").is_some(), "{token}: {v}");
        socket.close(None).await.unwrap();
        h.assert_no_key_leak(&headers, &transcript);
    }
    for r in h.mock.requests() {
        let query = r.query.unwrap_or_default();
        assert!(!query.contains("tok-"), "a client token went upstream: {query}");
    }
}

#[tokio::test]
async fn an_unknown_token_cannot_open_a_session() {
    let h = start(Script::default(), CLIENTS).await;
    match connect(&h, "tok-nobody").await {
        Err(WsError::Http(response)) => {
            assert_eq!(response.status(), 401);
            let body = String::from_utf8_lossy(response.body().as_deref().unwrap_or_default()).into_owned();
            assert!(body.contains("UNAUTHENTICATED"), "{body}");
            h.assert_no_key_leak(response.headers(), &body);
        }
        Err(e) => panic!("expected a 401, got {e}"),
        Ok(_) => panic!("an unknown token opened a Live session"),
    }
    assert_eq!(h.mock.count(), 0);
}
