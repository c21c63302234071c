//! The Live API WebSocket (`/ws/...BidiGenerateContent`): the upgrade, then a scripted
//! session (`setup` → `setupComplete`; each turn → model text, `turnComplete` with usage),
//! or an immediate close with 1008 for a key the script refuses.

use futures_util::{SinkExt, StreamExt};
use http::header::{HeaderValue, CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, UPGRADE};
use http::StatusCode;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::body::{respond, MockBody, JSON};
use crate::errors;
use crate::server::{Call, Reply};
use crate::state::stopped;
use crate::util::tokens_for_chars;

/// How a session ends before it starts, when the script refuses the key.
pub(crate) struct Refusal {
    pub code: u16,
    pub reason: &'static str,
}

type Socket = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// Answers the upgrade with 101 and runs the session on its own task.
pub(crate) fn upgrade(call: &Call<'_>, on_upgrade: Option<OnUpgrade>, refusal: Option<Refusal>) -> Reply {
    let is_ws = call
        .parts
        .headers
        .get(UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let (Some(on_upgrade), Some(ws_key), true) = (on_upgrade, call.parts.headers.get(SEC_WEBSOCKET_KEY), is_ws) else {
        return errors::invalid_argument("This endpoint requires a WebSocket upgrade.");
    };
    let accept = derive_accept_key(ws_key.as_bytes());
    let shutdown = call.state.shutdown.subscribe();
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        match refusal {
            Some(r) => close(ws, r.code, r.reason).await,
            None => session(ws, shutdown).await,
        }
    });
    let mut rsp = respond(StatusCode::SWITCHING_PROTOCOLS, JSON, MockBody::Full(None));
    let h = rsp.headers_mut();
    h.remove(http::header::CONTENT_TYPE);
    h.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(SEC_WEBSOCKET_ACCEPT, v);
    }
    rsp
}

async fn close(mut ws: Socket, code: u16, reason: &'static str) {
    let frame = CloseFrame { code: CloseCode::from(code), reason: reason.into() };
    if ws.close(Some(frame)).await.is_ok() {
        // Wait for the client's close reply so it sees a clean close handshake.
        while let Some(Ok(_)) = ws.next().await {}
    }
}

async fn session(mut ws: Socket, mut shutdown: watch::Receiver<bool>) {
    loop {
        let msg = tokio::select! {
            m = ws.next() => m,
            () = stopped(&mut shutdown) => {
                close(ws, 1001, "server shutting down").await;
                return;
            }
        };
        let data = match msg {
            Some(Ok(Message::Text(t))) => t.as_bytes().to_vec(),
            Some(Ok(Message::Binary(b))) => b.to_vec(),
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
        };
        let Ok(v) = serde_json::from_slice::<Value>(&data) else {
            close(ws, 1007, "Invalid JSON payload received.").await;
            return;
        };
        for reply in replies(&v, data.len()) {
            if ws.send(Message::text(reply)).await.is_err() {
                return;
            }
        }
    }
}

/// The server messages answering one client message.
fn replies(msg: &Value, len: usize) -> Vec<String> {
    if msg.get("setup").is_some() {
        return vec![json!({ "setupComplete": {} }).to_string()];
    }
    let turn = ["clientContent", "client_content", "realtimeInput", "realtime_input", "toolResponse", "tool_response"]
        .iter()
        .any(|k| msg.get(*k).is_some());
    if !turn {
        return Vec::new();
    }
    let answer = "mock live answer";
    let prompt = tokens_for_chars(len);
    let response = tokens_for_chars(answer.len());
    vec![
        json!({ "serverContent": { "modelTurn": { "parts": [{ "text": answer }] } } }).to_string(),
        json!({
            "serverContent": { "turnComplete": true },
            "usageMetadata": {
                "promptTokenCount": prompt,
                "responseTokenCount": response,
                "totalTokenCount": prompt + response
            }
        })
        .to_string(),
    ]
}
