//! The admin listener (SPEC 7): `/healthz` (alive) and `/readyz` (config loaded, a key
//! usable, not shutting down). Metrics and `/admin/*` join with later issues.

use crate::proxy::body::GateBody;
use crate::proxy::service::Gateway;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
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
    let (status, text) = match (request.method(), request.uri().path()) {
        (&Method::GET, "/healthz") => (StatusCode::OK, "ok\n"),
        (&Method::GET, "/readyz") if gateway.is_ready() => (StatusCode::OK, "ready\n"),
        (&Method::GET, "/readyz") => (StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
        _ => (StatusCode::NOT_FOUND, "not found\n"),
    };
    let mut response = Response::new(GateBody::full(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response
}
