//! gemgate: a transparent gateway for the Gemini API. `run` wires the parts together (config
//! snapshot → gateway → proxy and admin listeners → drain on shutdown); the request path
//! itself lives in `proxy::service`.
#![forbid(unsafe_code)]

pub mod admin;
pub mod auth;
pub mod cache;
pub mod config;
pub mod error;
pub mod gemini;
pub mod glob;
pub mod pool;
pub mod proxy;
pub mod quota;
pub mod snapshot;
pub mod telemetry;

use config::Config;
use pool::state::GateState;
use proxy::service::Gateway;
use quota::clock::{self, SharedClock};
use snapshot::Snapshot;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("{0}")]
    Init(String),
}

/// The two bound listeners; binding apart from `run` lets tests use port 0.
pub struct Listeners {
    pub proxy: TcpListener,
    pub admin: TcpListener,
}

impl Listeners {
    pub async fn bind(config: &Config) -> Result<Listeners, RunError> {
        let bind = |addr: SocketAddr| async move {
            TcpListener::bind(addr).await.map_err(|source| RunError::Bind { addr, source })
        };
        Ok(Listeners { proxy: bind(config.listen).await?, admin: bind(config.admin.listen).await? })
    }
}

/// Serves until `shutdown` resolves, then drains within `shutdown_grace` (SPEC 7).
pub async fn run(listeners: Listeners, config: Config, shutdown: impl Future<Output = ()>) -> Result<(), RunError> {
    let grace = config.shutdown_grace;
    let gateway = build_gateway(config, clock::system())?;
    serve(listeners, gateway, grace, shutdown).await;
    Ok(())
}

fn build_gateway(config: Config, clock: SharedClock) -> Result<Arc<Gateway>, RunError> {
    let state = Arc::new(GateState::new(clock));
    let snapshot = Snapshot::build(config, &state).map_err(RunError::Init)?;
    Ok(Gateway::new(snapshot, state))
}

async fn serve(listeners: Listeners, gateway: Arc<Gateway>, grace: Duration, shutdown: impl Future<Output = ()>) {
    let stop_probes = tokio_util::sync::CancellationToken::new();
    let probes = tokio::spawn(pool::probe::run(gateway.clone(), stop_probes.clone()));
    let (stop_admin, admin_stopped) = oneshot::channel::<()>();
    let admin = tokio::spawn(admin::serve(listeners.admin, gateway.clone(), async {
        let _ = admin_stopped.await;
    }));
    let draining = gateway.clone();
    let shutdown = async move {
        shutdown.await;
        draining.start_draining();
    };
    proxy::server::serve(listeners.proxy, gateway, shutdown, grace).await;
    let _ = stop_admin.send(());
    let _ = admin.await;
    stop_probes.cancel();
    let _ = probes.await;
}

/// A gemgate running on a spawned task: for tests, benchmarks and `gemgate demo`.
pub struct Running {
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Running {
    /// Binds the config's addresses (port 0 allowed) and starts serving.
    pub async fn start(config: Config) -> Result<Running, RunError> {
        Running::start_with_clock(config, clock::system()).await
    }

    /// Like `start`, with quotas, cooldowns and probes on `clock` (tests drive it).
    pub async fn start_with_clock(config: Config, clock: SharedClock) -> Result<Running, RunError> {
        let grace = config.shutdown_grace;
        let gateway = build_gateway(config.clone(), clock)?;
        let listeners = Listeners::bind(&config).await?;
        let addr = listeners.proxy.local_addr().map_err(|e| RunError::Init(e.to_string()))?;
        let admin_addr = listeners.admin.local_addr().map_err(|e| RunError::Init(e.to_string()))?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listeners, gateway, grace, async {
            let _ = stopped.await;
        }));
        Ok(Running { addr, admin_addr, stop: Some(stop), task })
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Starts the graceful shutdown and waits for it to finish.
    pub async fn shutdown(mut self) -> Result<(), RunError> {
        self.begin_shutdown();
        self.task.await.map_err(|e| RunError::Init(e.to_string()))
    }

    /// Starts the graceful shutdown without waiting.
    pub fn begin_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
