//! The accept loop: HTTP/1.1 (and h2c) connections with upgrades, TCP_NODELAY, and the
//! graceful drain of SPEC 7: on shutdown stop accepting, let in-flight requests, streams and
//! WebSocket sessions finish within the grace period.

use super::service::Gateway;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tracing::{debug, info, warn};

pub async fn serve(listener: TcpListener, gateway: Arc<Gateway>, shutdown: impl Future<Output = ()>, grace: Duration) {
    let graceful = GracefulShutdown::new();
    let builder = auto::Builder::new(TokioExecutor::new());
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let gw = gateway.clone();
                    let service = service_fn(move |request| {
                        let gw = gw.clone();
                        async move { Ok::<_, Infallible>(gw.handle(request).await) }
                    });
                    let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned();
                    let connection = graceful.watch(connection);
                    let cutoff = gateway.cutoff.clone();
                    tokio::spawn(async move {
                        tokio::select! {
                            ended = connection => if let Err(e) = ended {
                                debug!(error = %e, "connection ended with an error");
                            },
                            () = cutoff.cancelled() => debug!("connection cut off: the shutdown grace elapsed"),
                        }
                    });
                }
                Err(e) => {
                    // Out of descriptors and the like: wait a little instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    info!(grace_s = grace.as_secs(), "draining in-flight requests");
    let sessions = gateway.sessions.clone();
    sessions.close();
    let drained = async {
        graceful.shutdown().await;
        sessions.wait().await;
    };
    if tokio::time::timeout(grace, drained).await.is_err() {
        warn!("shutdown grace elapsed with requests still in flight: cutting them off");
    }
    gateway.cutoff.cancel();
}
