//! Configuration: `proxy.yaml` as SPEC 3 defines it, loaded and validated whole. A
//! `Config` exists only when every field is valid; otherwise `ConfigErrors` lists every
//! problem with its file, line and field path (SPEC 1: `gemgate check` prints them all).

mod locate;
mod schema;
pub mod secret;
pub mod units;
mod validate;

pub use secret::{Secret, SecretSource};

use http::Uri;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A validated configuration. Every field has its SPEC 3 default applied.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the proxy accepts application traffic; loopback by default (a sidecar).
    pub listen: SocketAddr,
    pub upstream: UpstreamConfig,
    /// How long in-flight requests and streams may run on after SIGTERM.
    pub shutdown_grace: Duration,
    pub clients: ClientsConfig,
    /// Named key pools, sorted by name.
    pub pools: Vec<PoolConfig>,
    /// The pool that takes traffic until routing rules exist: `default`, or the only pool.
    pub default_pool: String,
    pub admin: AdminConfig,
    pub queue: QueueConfig,
    pub retry: RetryConfig,
    pub health: HealthConfig,
    pub cache: CacheConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheBackend {
    Memory,
    Redis,
    None,
}

#[derive(Debug, Clone)]
pub struct CacheConfig {
    pub backend: CacheBackend,
    pub ttl: Duration,
    /// Memory backend: all entries together.
    pub max_bytes: u64,
    /// Larger answers are not stored.
    pub max_entry_bytes: u64,
    /// Redis backend: a memory tier in front (0 = off).
    pub front_max_bytes: u64,
    /// `client`: one cache per client token, answers are not shared between clients.
    pub per_client: bool,
    pub redis: RedisConfig,
    /// Methods whose answers are cached (`generateContent`, `chat.completions`, ...).
    pub methods: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// May hold a password, so it is a secret.
    pub url: Secret,
    pub prefix: String,
    /// Bound on each Redis call; past it the cache is bypassed.
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct QueueConfig {
    /// How long a request waits for a key with capacity before its 429.
    pub max_wait: Duration,
    /// Requests waiting at once; beyond it, 429 at once.
    pub max_waiting: usize,
}

#[derive(Debug, Clone)]
pub struct RetryConfig {
    /// Upstream attempts in all (the first included).
    pub attempts: u32,
    /// Upstream statuses retried on another key.
    pub on: Vec<u16>,
    /// Larger request bodies stream and are not retried.
    pub max_body: u64,
    /// All bodies kept for retries together.
    pub buffer_budget: u64,
}

#[derive(Debug, Clone)]
pub struct HealthConfig {
    /// How often disabled keys are probed.
    pub probe_interval: Duration,
    /// Cooldown after a 429 that sent no RetryInfo.
    pub cooldown_default: Duration,
}

#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// Scheme and authority of the Gemini API (or a mock); a path prefix is kept.
    pub base_url: Uri,
    pub connect_timeout: Duration,
    /// Bound on a whole non-streaming exchange.
    pub request_timeout: Duration,
    /// Longest silence allowed inside a streamed answer.
    pub stream_idle_timeout: Duration,
    /// Larger request bodies get 413 (uploads are exempt).
    pub max_request_body: u64,
    /// Extra trust roots (corporate TLS, test CAs) on top of the built-in ones.
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientMode {
    /// Any caller is served; allowed only on a loopback listener.
    Open,
    /// Callers present a token from `clients.tokens` as their API key.
    Tokens,
}

#[derive(Debug, Clone)]
pub struct ClientsConfig {
    pub mode: ClientMode,
    pub tokens: Vec<ClientToken>,
}

#[derive(Debug, Clone)]
pub struct ClientToken {
    pub name: String,
    pub token: Secret,
    /// Globs of the models this client may call; `None` allows every model.
    pub models: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    RoundRobin,
    /// Fewest requests in flight.
    LeastLoaded,
    Random,
}

#[derive(Debug, Clone)]
pub struct PoolConfig {
    pub name: String,
    pub keys: Vec<KeyConfig>,
    pub strategy: Strategy,
    /// Concurrent upstream calls per key.
    pub max_in_flight_per_key: u32,
    pub limits: crate::quota::limits::LimitTable,
}

#[derive(Debug, Clone)]
pub struct KeyConfig {
    /// Names the key everywhere a key must be named (headers, logs, admin).
    pub id: String,
    pub secret: Secret,
    /// Google project the key belongs to; keys of one project share its quota.
    pub project: Option<String>,
}

#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    /// Bearer token for `/admin/*`; required on a non-loopback listener.
    pub token: Option<Secret>,
}

/// One problem in a config file.
#[derive(Debug, Clone)]
pub struct ConfigError {
    pub line: Option<usize>,
    /// Dotted field path, e.g. `pools.free.keys[0].key`; empty for the whole file.
    pub field: String,
    pub message: String,
}

/// Every problem found in one config file.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigErrors {
    pub file: PathBuf,
    pub errors: Vec<ConfigError>,
}

impl ConfigErrors {
    fn single(file: &Path, message: String) -> Self {
        ConfigErrors {
            file: file.to_path_buf(),
            errors: vec![ConfigError { line: None, field: String::new(), message }],
        }
    }

    /// `file:line: field: message` for one error.
    pub fn describe(&self, e: &ConfigError) -> String {
        let mut out = self.file.display().to_string();
        if let Some(line) = e.line {
            out.push_str(&format!(":{line}"));
        }
        if !e.field.is_empty() {
            out.push_str(&format!(": {}", e.field));
        }
        out.push_str(&format!(": {}", e.message));
        out
    }

    /// The first error on one line, with a count of the rest (for a refused start).
    pub fn one_line(&self) -> String {
        let first = self.errors.first().map(|e| self.describe(e)).unwrap_or_default();
        match self.errors.len() {
            0 | 1 => first,
            n => format!("{first} (and {} more; run `gemgate check`)", n - 1),
        }
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            f.write_str(&self.describe(e))?;
        }
        Ok(())
    }
}

impl Config {
    /// Reads and validates a config file; `GEMINI_API_KEYS` fills the `default` pool when
    /// the file names none (SPEC 3).
    pub fn from_file(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigErrors::single(path, format!("cannot read config: {e}")))?;
        Config::from_yaml(&text, path)
    }

    /// Validates config text; `file` names it in errors and anchors relative key files.
    pub fn from_yaml(text: &str, file: &Path) -> Result<Config, ConfigErrors> {
        let index = locate::LineIndex::new(text);
        let mut unknown = Vec::new();
        let raw: schema::RawConfig = if text.trim().is_empty() {
            schema::RawConfig::default()
        } else {
            let de = serde_yaml::Deserializer::from_str(text);
            match serde_ignored::deserialize(de, |p| unknown.push(path_string(&p))) {
                Ok(Some(raw)) => raw,
                Ok(None) => schema::RawConfig::default(),
                Err(e) => {
                    let e: serde_yaml::Error = e;
                    let line = e.location().map(|l| l.line());
                    let message = e.to_string();
                    let message = match message.rfind(" at line ") {
                        Some(cut) => message[..cut].to_string(),
                        None => message,
                    };
                    return Err(ConfigErrors {
                        file: file.to_path_buf(),
                        errors: vec![ConfigError { line, field: String::new(), message }],
                    });
                }
            }
        };
        let mut errors = validate::Errors::new(&index);
        for field in unknown {
            errors.push(&field, "unknown field (not supported by this build)".into());
        }
        let base_dir = file.parent().unwrap_or(Path::new("."));
        let config = validate::validate(raw, base_dir, &mut errors);
        match (config, errors.into_vec()) {
            (Some(config), errs) if errs.is_empty() => Ok(config),
            (_, errs) => Err(ConfigErrors { file: file.to_path_buf(), errors: errs }),
        }
    }
}

/// `serde_ignored`'s path as `a.b[0].c` (its own display uses `?` for options).
fn path_string(path: &serde_ignored::Path) -> String {
    use serde_ignored::Path as P;
    match path {
        P::Root => String::new(),
        P::Seq { parent, index } => format!("{}[{index}]", path_string(parent)),
        P::Map { parent, key } => {
            let parent = path_string(parent);
            if parent.is_empty() {
                key.clone()
            } else {
                format!("{parent}.{key}")
            }
        }
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => path_string(parent),
    }
}

#[cfg(test)]
mod tests;
