//! WebSocket passthrough for the Live API (SPEC 2): the upgrade goes upstream with the pool
//! key as the `key` query parameter, the upstream's `101` comes back to the client, and the
//! two sockets are relayed message by message. The first client message (`setup`) names the
//! model: a client outside its allow-list gets the session closed with 1008
//! PERMISSION_DENIED, the WebSocket form of the 403.

use super::body::{ForwardBody, GateBody, RelayBody};
use super::headers::{self, X_GEMGATE_KEY, X_GOOG_API_KEY};
use crate::auth::Client;
use crate::error::GateError;
use crate::gemini;
use crate::pool::Key;
use crate::snapshot::Snapshot;
use futures_util::{SinkExt, StreamExt};
use http::header::{AUTHORIZATION, CONNECTION, HOST, UPGRADE};
use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info};

/// Who a relayed session is for.
pub struct Session {
    pub client: Arc<Client>,
    pub key: Arc<Key>,
    pub request_id: HeaderValue,
}

pub fn is_websocket(request: &Request<Incoming>) -> bool {
    let upgrade = request.headers().get(UPGRADE).and_then(|v| v.to_str().ok());
    upgrade.is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

pub async fn proxy(
    snapshot: &Snapshot,
    mut request: Request<Incoming>,
    session: Session,
    sessions: &TaskTracker,
    cutoff: CancellationToken,
) -> Result<Response<GateBody>, GateError> {
    let client_upgrade = hyper::upgrade::on(&mut request);
    let (mut parts, _) = request.into_parts();
    let query = parts.uri.query().map(headers::strip_key_param);
    let mut query = query.map(|q| q.into_owned()).unwrap_or_default();
    if !query.is_empty() {
        query.push('&');
    }
    query.push_str("key=");
    query.push_str(&encode_query_value(session.key.expose()));
    parts.uri = snapshot.upstream.uri(parts.uri.path(), Some(&query))?;
    headers::remove_hop_by_hop(&mut parts.headers, true);
    parts.headers.remove(HOST);
    parts.headers.remove(AUTHORIZATION);
    parts.headers.remove(&X_GOOG_API_KEY);
    if !parts.headers.contains_key(CONNECTION) {
        parts.headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    }
    let mut response = snapshot.upstream.send_upgrade(Request::from_parts(parts, ForwardBody::empty())).await?;
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        // The upstream refused the session: its answer goes back as it is.
        let (mut parts, body) = response.into_parts();
        headers::remove_hop_by_hop(&mut parts.headers, false);
        parts.headers.insert(&X_GEMGATE_KEY, session.key.id_header().clone());
        let limit = snapshot.upstream.request_timeout;
        let relay = RelayBody::until(body, tokio::time::Instant::now() + limit, limit);
        return Ok(Response::from_parts(parts, GateBody::relay(relay)));
    }
    let upstream_upgrade = hyper::upgrade::on(&mut response);
    let (mut parts, _) = response.into_parts();
    parts.headers.insert(&X_GEMGATE_KEY, session.key.id_header().clone());
    sessions.spawn(async move {
        let (client_io, upstream_io) = match tokio::try_join!(client_upgrade, upstream_upgrade) {
            Ok(pair) => pair,
            Err(e) => {
                debug!(error = %e, "websocket upgrade did not complete");
                return;
            }
        };
        let client_ws = WebSocketStream::from_raw_socket(TokioIo::new(client_io), Role::Server, None).await;
        let upstream_ws = WebSocketStream::from_raw_socket(TokioIo::new(upstream_io), Role::Client, None).await;
        relay(client_ws, upstream_ws, &session, cutoff).await;
    });
    Ok(Response::from_parts(parts, GateBody::empty()))
}

/// Relays messages both ways until either side closes, or the shutdown grace elapses
/// (`cutoff`: the client gets 1001 going away). Pings are answered by each side's own
/// socket, so only data and close frames cross.
async fn relay<C, U>(
    client: WebSocketStream<C>,
    upstream: WebSocketStream<U>,
    session: &Session,
    cutoff: CancellationToken,
) where
    C: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    U: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut to_client, mut from_client) = client.split();
    let (mut to_upstream, mut from_upstream) = upstream.split();
    let mut checked = !session.client.is_restricted();
    let client_to_upstream = async {
        while let Some(Ok(message)) = from_client.next().await {
            if matches!(message, Message::Ping(_) | Message::Pong(_)) {
                continue;
            }
            if !checked {
                let model = match &message {
                    Message::Text(t) => gemini::live_setup_model(t.as_bytes()),
                    Message::Binary(b) => gemini::live_setup_model(b),
                    _ => None,
                };
                let refusal = match model {
                    Some(m) => session.client.check_model(&m).err(),
                    None => Some(GateError::BadRequest("the Live session's first message must be its setup".into())),
                };
                if let Some(e) = refusal {
                    let (_, status) = e.status();
                    info!(request_id = ?session.request_id, error = e.kind(), "live session refused");
                    return Some(CloseFrame { code: CloseCode::Policy, reason: format!("{status}: {e}").into() });
                }
                checked = true;
            }
            let closing = message.is_close();
            if to_upstream.send(message).await.is_err() || closing {
                break;
            }
        }
        None
    };
    let upstream_to_client = async {
        while let Some(Ok(message)) = from_upstream.next().await {
            if matches!(message, Message::Ping(_) | Message::Pong(_)) {
                continue;
            }
            let closing = message.is_close();
            if to_client.send(message).await.is_err() || closing {
                break;
            }
        }
    };
    let closing = tokio::select! {
        refusal = client_to_upstream => refusal,
        () = upstream_to_client => None,
        () = cutoff.cancelled() => {
            Some(CloseFrame { code: CloseCode::Away, reason: "gemgate is shutting down".into() })
        }
    };
    if let Some(frame) = closing {
        let _ = to_client.send(Message::Close(Some(frame))).await;
    }
    let _ = to_client.close().await;
    let _ = to_upstream.close().await;
}

/// Percent-encodes a query value (keys are URL-safe in practice; this keeps odd ones intact).
fn encode_query_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
