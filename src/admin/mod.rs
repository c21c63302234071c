//! The admin listener (SPEC 7): `/healthz` (alive), `/readyz` (config loaded, a key
//! usable, not shutting down), `/admin/keys` and `/admin/cache` (counters of hits, misses,
//! bypasses, shared calls, stores and faults), both behind `admin.token` when set. Metrics
//! join with a later issue.

mod keys;

use crate::proxy::body::GateBody;
use crate::proxy::service::Gateway;
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;
use tracing::warn;

pub async fn serve(listener: TcpListener, gateway: Arc<Gateway>, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let gw = gateway.clone();
                    let service = service_fn(move |request| {
                        let gw = gw.clone();
                        async move { Ok::<_, Infallible>(answer(&gw, &request)) }
                    });
                    tokio::spawn(async move {
                        let _ = auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), service).await;
                    });
                }
                Err(e) => {
                    warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            () = &mut shutdown => return,
        }
    }
}

fn answer(gateway: &Gateway, request: &Request<Incoming>) -> Response<GateBody> {
    let path = request.uri().path();
    if path.starts_with("/admin/") && !authorized(gateway, request) {
        return text(StatusCode::UNAUTHORIZED, "admin token required: Authorization: Bearer <admin.token>\n");
    }
    match (request.method(), path) {
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n"),
        (&Method::GET, "/readyz") if gateway.is_ready() => text(StatusCode::OK, "ready\n"),
        (&Method::GET, "/readyz") => text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
        (&Method::GET, "/admin/keys") => json(keys::render(gateway)),
        (&Method::GET, "/admin/cache") => {
            let mut stats = gateway.cache_stats.to_json();
            stats["in_flight"] = gateway.flights.in_flight().into();
            json(stats.to_string())
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn json(body: String) -> Response<GateBody> {
    let mut response = Response::new(GateBody::full(Bytes::from(body)));
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn text(status: StatusCode, body: &'static str) -> Response<GateBody> {
    let mut response = Response::new(GateBody::full(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response
}

/// `Authorization: Bearer <admin.token>` when a token is set; compared in constant time.
fn authorized(gateway: &Gateway, request: &Request<Incoming>) -> bool {
    let snapshot = gateway.snapshot();
    let Some(token) = &snapshot.config.admin.token else { return true };
    let given = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let (a, b) = (given.as_bytes(), token.expose().as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
