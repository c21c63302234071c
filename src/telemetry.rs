//! Logs: the subscriber (text or JSON, `RUST_LOG` filter, default `info`) and the access
//! log, one line per request (SPEC 7). Fields are filled as the request goes; nothing is
//! copied when the access log is filtered out, to keep the hot path free.

use http::{HeaderValue, Method, StatusCode};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tracing::Level;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Installs the global subscriber; logs go to stderr. Safe to call more than once.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only for a person at a terminal; files and collectors get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// One request's access-log line, filled in as the request goes.
pub struct AccessLog {
    enabled: bool,
    started: Instant,
    request_id: String,
    method: Method,
    path: String,
    pub client: Option<Arc<str>>,
    pub model: Option<String>,
    pub key: Option<Arc<str>>,
    pub attempts: u32,
    pub error: Option<&'static str>,
    /// `hit`, `miss` or `bypass` (SPEC 5), `-` before the cache was asked.
    pub cache: &'static str,
}

impl AccessLog {
    pub fn start(request_id: &HeaderValue, method: &Method, path: &str) -> AccessLog {
        let enabled = tracing::enabled!(target: "gemgate::access", Level::INFO);
        AccessLog {
            enabled,
            started: Instant::now(),
            request_id: if enabled {
                String::from_utf8_lossy(request_id.as_bytes()).into_owned()
            } else {
                String::new()
            },
            method: if enabled { method.clone() } else { Method::GET },
            path: if enabled { path.to_string() } else { String::new() },
            client: None,
            model: None,
            key: None,
            attempts: 0,
            error: None,
            cache: "-",
        }
    }

    /// A log that writes nothing: for work done on behalf of other requests (a shared
    /// upstream call), whose own lines are written by those requests.
    pub fn detached() -> AccessLog {
        AccessLog { enabled: false, ..AccessLog::start(&HeaderValue::from_static("-"), &Method::GET, "") }
    }

    /// Records the model asked for; copied only when the line will be written.
    pub fn set_model(&mut self, model: &str) {
        if self.enabled {
            self.model = Some(model.to_string());
        }
    }

    pub fn started(&self) -> Instant {
        self.started
    }

    /// Writes the line once the answer's head is ready.
    pub fn finish(self, status: StatusCode, elapsed: Duration) {
        if !self.enabled {
            return;
        }
        tracing::info!(
            target: "gemgate::access",
            request_id = %self.request_id,
            method = %self.method,
            path = %self.path,
            client = self.client.as_deref().unwrap_or("-"),
            model = self.model.as_deref().unwrap_or("-"),
            key = self.key.as_deref().unwrap_or("-"),
            status = status.as_u16(),
            attempts = self.attempts,
            cache = self.cache,
            latency_ms = elapsed.as_secs_f64() * 1000.0,
            error = self.error.unwrap_or("-"),
            "request"
        );
    }
}
