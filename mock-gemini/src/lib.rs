//! mock-gemini: a scriptable imitation of the Gemini REST API (native, OpenAI-compatible,
//! Files/uploads, batches, cached contents, Live WebSocket) over real HTTP, for gemgate's
//! tests, benchmarks and demo. This file is wiring: the `MockServer` handle and re-exports.
//!
//! Behaviour per API key comes from a [`Script`]; every request is kept as a [`Recorded`].

#![forbid(unsafe_code)]

mod batches;
mod body;
mod caches;
mod control;
mod errors;
mod files;
mod generate;
mod live;
mod models;
mod openai;
mod record;
mod resources;
mod script;
mod server;
mod state;
mod stream;
mod util;

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use tokio::net::TcpListener;

pub use record::Recorded;
pub use script::{KeyScript, Script, ScriptError};

use state::State;

/// A running mock server. Cheap to clone; every clone drives the same server. The server
/// runs until [`MockServer::shutdown`] or until its tokio runtime ends.
#[derive(Clone)]
pub struct MockServer {
    state: Arc<State>,
    addr: SocketAddr,
}

impl std::fmt::Debug for MockServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockServer").field("addr", &self.addr).finish()
    }
}

/// "http://ADDR" for a listen address; a wildcard address is reached via loopback.
fn base_url_for(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, addr.port()))
}

impl MockServer {
    /// Binds 127.0.0.1:0 and serves on a spawned tokio task.
    ///
    /// # Panics
    /// If no loopback port can be bound (startup only).
    pub async fn spawn(script: Script) -> MockServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("mock-gemini: cannot bind 127.0.0.1:0");
        MockServer::start(listener, script).expect("mock-gemini: listener has no local address")
    }

    /// Serves on an already bound listener from a spawned task and returns the handle
    /// (for `gemgate demo`, which wants both a chosen address and the handle).
    pub fn start(listener: TcpListener, script: Script) -> io::Result<MockServer> {
        let addr = listener.local_addr()?;
        let state = Arc::new(State::new(script, base_url_for(addr)));
        tokio::spawn(server::run(listener, Arc::clone(&state), std::future::pending()));
        Ok(MockServer { state, addr })
    }

    /// Serves on a bound listener until `shutdown` resolves, then lets open connections
    /// finish briefly (for `gemgate mock` and the `mock-gemini` binary).
    pub async fn serve(
        listener: TcpListener,
        script: Script,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> io::Result<()> {
        let addr = listener.local_addr()?;
        let state = Arc::new(State::new(script, base_url_for(addr)));
        server::run(listener, state, shutdown).await
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// "http://127.0.0.1:PORT".
    pub fn base_url(&self) -> String {
        self.state.base_url.clone()
    }

    /// Replaces the behaviour live; counters and resources are kept.
    pub fn set_script(&self, script: Script) {
        self.state.set_script(script);
    }

    /// The current script.
    pub fn script(&self) -> Script {
        self.state.plan().source.clone()
    }

    /// Every request received (control paths excluded), oldest first; bounded by
    /// `Script::max_recorded`.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.requests()
    }

    pub fn last(&self) -> Option<Recorded> {
        self.state.last()
    }

    /// Requests received since start or the last `reset`.
    pub fn count(&self) -> usize {
        self.state.count()
    }

    /// Requests received with this API key since start or the last `reset`.
    pub fn calls_for_key(&self, key: &str) -> usize {
        self.state.calls_for_key(key)
    }

    /// Forgets recorded requests, per-key counters (quota, rpm, fail_first) and resources.
    pub fn reset(&self) {
        self.state.reset();
    }

    /// Stops accepting, ends hanging requests and Live sessions, lets others finish.
    pub fn shutdown(&self) {
        self.state.shutdown.send_replace(true);
    }
}

/// Same as [`MockServer::spawn`].
pub async fn spawn(script: Script) -> MockServer {
    MockServer::spawn(script).await
}

/// Same as [`MockServer::serve`].
pub async fn serve(
    listener: TcpListener,
    script: Script,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    MockServer::serve(listener, script, shutdown).await
}
