//! The mock's script: what each API key experiences (latency, chunking, quota, failures).
//!
//! `Script` is the user-facing, serde-friendly description (YAML or JSON); `Plan` is the
//! resolved form the server reads on every request, built once per `set_script` so the hot
//! path only does a map lookup.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Default length of the rolling window `rpm` is enforced over (Google counts per minute).
const DEFAULT_RPM_WINDOW: Duration = Duration::from_secs(60);
/// Default number of recorded requests kept, so long benchmarks stay bounded in memory.
const DEFAULT_MAX_RECORDED: usize = 100_000;
/// Chunks per streamed answer when the script says nothing.
const DEFAULT_CHUNKS: usize = 3;
/// Quota id reported in `QuotaFailure` when the script names none.
pub(crate) const DEFAULT_QUOTA_ID: &str = "GenerateRequestsPerMinutePerProjectPerModel-FreeTier";

/// The whole behaviour of a mock server, replaceable live (`MockServer::set_script`,
/// `POST /_mock/script`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Script {
    /// Behaviour of keys not listed in `keys`, and the fallback for fields a listed key
    /// leaves unset.
    pub default: KeyScript,
    /// Behaviour per API key; an unset field falls back to `default`, then to built-ins.
    pub keys: BTreeMap<String, KeyScript>,
    /// Keys answered 400 `API_KEY_INVALID`: a client credential that leaked through a gateway.
    pub reject_keys: Vec<String>,
    /// Window over which `rpm` is enforced (default 60s); tests shorten it to stay fast.
    #[serde(with = "duration")]
    pub rpm_window: Duration,
    /// Most requests kept by `requests()` (oldest dropped first; 0 keeps none, for
    /// benchmarks); `count()` and `calls_for_key()` still count all.
    pub max_recorded: usize,
}

impl Default for Script {
    fn default() -> Self {
        Script {
            default: KeyScript::default(),
            keys: BTreeMap::new(),
            reject_keys: Vec::new(),
            rpm_window: DEFAULT_RPM_WINDOW,
            max_recorded: DEFAULT_MAX_RECORDED,
        }
    }
}

/// Behaviour of one API key. Every field is optional; see `Script` for the fallback order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KeyScript {
    /// Delay before the response head (every call, errors included).
    #[serde(with = "opt_duration", skip_serializing_if = "Option::is_none")]
    pub latency: Option<Duration>,
    /// Chunks per streamed answer (default 3).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chunks: Option<usize>,
    /// Pause between streamed chunks (default 0).
    #[serde(with = "opt_duration", skip_serializing_if = "Option::is_none")]
    pub chunk_interval: Option<Duration>,
    /// At most this many model-method calls in any rolling `rpm_window`, else 429.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rpm: Option<u64>,
    /// Model-method calls 1..=N succeed, later ones get 429 RESOURCE_EXHAUSTED.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota_after: Option<u64>,
    /// `RetryInfo.retryDelay` in the 429; unset: `quota_after` sends no RetryInfo and `rpm`
    /// sends the time until its window frees.
    #[serde(with = "opt_duration", skip_serializing_if = "Option::is_none")]
    pub retry_delay: Option<Duration>,
    /// `QuotaFailure` quotaId (a `...PerDay...` id marks a daily quota).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota_id: Option<String>,
    /// Every call: 400 INVALID_ARGUMENT, ErrorInfo reason API_KEY_INVALID.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invalid: Option<bool>,
    /// Every call: 403 PERMISSION_DENIED, ErrorInfo reason API_KEY_SERVICE_BLOCKED.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocked: Option<bool>,
    /// Every call (or the first `fail_first`) answers this status with a Gemini error body.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Only the first N calls of the key fail with `status` (503 when `status` is unset).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fail_first: Option<u64>,
    /// Close the connection without answering.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reset: Option<bool>,
    /// Read the request and never answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hang: Option<bool>,
    /// Streams: send N chunks, then abort the connection without a clean end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub break_stream_after: Option<usize>,
    /// Gzip bodies when the request sends `Accept-Encoding: gzip`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gzip: Option<bool>,
    /// Answer text instead of the default `mock answer from {model}: {prompt start}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// Why a script could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    #[error("cannot read script {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("invalid script: {0}")]
    Parse(String),
}

impl Script {
    /// Loads a YAML (or JSON) script file.
    pub fn from_yaml_file(path: &Path) -> Result<Script, ScriptError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ScriptError::Io { path: path.display().to_string(), source })?;
        Script::from_yaml_str(&text)
    }

    /// Parses a YAML script (JSON is accepted too).
    pub fn from_yaml_str(text: &str) -> Result<Script, ScriptError> {
        if text.trim().is_empty() {
            return Ok(Script::default());
        }
        serde_yaml::from_str(text).map_err(|e| ScriptError::Parse(e.to_string()))
    }

    /// Parses a JSON or YAML body (the control endpoint accepts both).
    pub fn from_slice(body: &[u8]) -> Result<Script, ScriptError> {
        match serde_json::from_slice(body) {
            Ok(s) => Ok(s),
            Err(json_err) => match std::str::from_utf8(body) {
                Ok(text) if !text.trim_start().starts_with('{') => Script::from_yaml_str(text),
                _ => Err(ScriptError::Parse(json_err.to_string())),
            },
        }
    }

    /// Sets the behaviour of keys not listed under `keys`.
    pub fn with_default(mut self, ks: KeyScript) -> Script {
        self.default = ks;
        self
    }

    /// Sets the behaviour of one key.
    pub fn with_key(mut self, key: impl Into<String>, ks: KeyScript) -> Script {
        self.keys.insert(key.into(), ks);
        self
    }

    /// Adds a key answered with 400 API_KEY_INVALID.
    pub fn reject_key(mut self, key: impl Into<String>) -> Script {
        self.reject_keys.push(key.into());
        self
    }

    /// Sets how many requests are kept for `requests()` (0: none, for benchmarks).
    pub fn max_recorded(mut self, n: usize) -> Script {
        self.max_recorded = n;
        self
    }

    /// Sets the rolling window `rpm` is enforced over.
    pub fn rpm_window(mut self, window: Duration) -> Script {
        self.rpm_window = window;
        self
    }
}

/// Builder helpers so tests read `KeyScript::default().quota_after(5).retry_delay(..)`.
impl KeyScript {
    pub fn latency(mut self, d: Duration) -> Self {
        self.latency = Some(d);
        self
    }
    pub fn chunks(mut self, n: usize) -> Self {
        self.chunks = Some(n);
        self
    }
    pub fn chunk_interval(mut self, d: Duration) -> Self {
        self.chunk_interval = Some(d);
        self
    }
    pub fn rpm(mut self, n: u64) -> Self {
        self.rpm = Some(n);
        self
    }
    pub fn quota_after(mut self, n: u64) -> Self {
        self.quota_after = Some(n);
        self
    }
    pub fn retry_delay(mut self, d: Duration) -> Self {
        self.retry_delay = Some(d);
        self
    }
    pub fn quota_id(mut self, id: impl Into<String>) -> Self {
        self.quota_id = Some(id.into());
        self
    }
    pub fn invalid(mut self) -> Self {
        self.invalid = Some(true);
        self
    }
    pub fn blocked(mut self) -> Self {
        self.blocked = Some(true);
        self
    }
    pub fn status(mut self, code: u16) -> Self {
        self.status = Some(code);
        self
    }
    pub fn fail_first(mut self, n: u64) -> Self {
        self.fail_first = Some(n);
        self
    }
    pub fn reset(mut self) -> Self {
        self.reset = Some(true);
        self
    }
    pub fn hang(mut self) -> Self {
        self.hang = Some(true);
        self
    }
    pub fn break_stream_after(mut self, n: usize) -> Self {
        self.break_stream_after = Some(n);
        self
    }
    pub fn gzip(mut self) -> Self {
        self.gzip = Some(true);
        self
    }
    pub fn text(mut self, text: impl Into<String>) -> Self {
        self.text = Some(text.into());
        self
    }
}

/// The resolved behaviour of one key: every fallback applied.
#[derive(Debug, Clone)]
pub(crate) struct Behaviour {
    pub latency: Duration,
    pub chunks: usize,
    pub chunk_interval: Duration,
    pub rpm: Option<u64>,
    pub quota_after: Option<u64>,
    pub retry_delay: Option<Duration>,
    pub quota_id: String,
    pub invalid: bool,
    pub blocked: bool,
    pub status: Option<u16>,
    pub fail_first: Option<u64>,
    pub reset: bool,
    pub hang: bool,
    pub break_stream_after: Option<usize>,
    pub gzip: bool,
    pub text: Option<String>,
}

impl Behaviour {
    fn resolve(k: &KeyScript, d: &KeyScript) -> Behaviour {
        Behaviour {
            latency: k.latency.or(d.latency).unwrap_or_default(),
            chunks: k.chunks.or(d.chunks).unwrap_or(DEFAULT_CHUNKS).max(1),
            chunk_interval: k.chunk_interval.or(d.chunk_interval).unwrap_or_default(),
            rpm: k.rpm.or(d.rpm),
            quota_after: k.quota_after.or(d.quota_after),
            retry_delay: k.retry_delay.or(d.retry_delay),
            quota_id: k.quota_id.clone().or_else(|| d.quota_id.clone()).unwrap_or_else(|| DEFAULT_QUOTA_ID.to_owned()),
            invalid: k.invalid.or(d.invalid).unwrap_or(false),
            blocked: k.blocked.or(d.blocked).unwrap_or(false),
            status: k.status.or(d.status),
            fail_first: k.fail_first.or(d.fail_first),
            reset: k.reset.or(d.reset).unwrap_or(false),
            hang: k.hang.or(d.hang).unwrap_or(false),
            break_stream_after: k.break_stream_after.or(d.break_stream_after),
            gzip: k.gzip.or(d.gzip).unwrap_or(false),
            text: k.text.clone().or_else(|| d.text.clone()),
        }
    }

    /// The scripted failure status for the key's `call_no`-th call, if it fails.
    pub fn failing_status(&self, call_no: u64) -> Option<u16> {
        match (self.status, self.fail_first) {
            (Some(code), None) => Some(code),
            (status, Some(n)) if call_no <= n => Some(status.unwrap_or(503)),
            _ => None,
        }
    }
}

/// A `Script` resolved for lookups on the hot path.
#[derive(Debug)]
pub(crate) struct Plan {
    pub source: Script,
    default: Arc<Behaviour>,
    keys: HashMap<String, Arc<Behaviour>>,
    reject: HashSet<String>,
}

impl Plan {
    pub fn new(source: Script) -> Plan {
        let default = Arc::new(Behaviour::resolve(&source.default, &KeyScript::default()));
        let keys =
            source.keys.iter().map(|(k, ks)| (k.clone(), Arc::new(Behaviour::resolve(ks, &source.default)))).collect();
        let reject = source.reject_keys.iter().cloned().collect();
        Plan { source, default, keys, reject }
    }

    pub fn behaviour(&self, key: Option<&str>) -> &Arc<Behaviour> {
        key.and_then(|k| self.keys.get(k)).unwrap_or(&self.default)
    }

    pub fn rejects(&self, key: &str) -> bool {
        self.reject.contains(key)
    }
}

/// Parses "250ms", "2s", "1.5s", "5m", "1h" (or a bare number of milliseconds).
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (num, unit_ms) = if let Some(n) = t.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1_000.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60_000.0)
    } else if let Some(n) = t.strip_suffix('h') {
        (n, 3_600_000.0)
    } else {
        (t, 1.0)
    };
    let value: f64 =
        num.trim().parse().map_err(|_| format!("invalid duration {text:?} (use e.g. \"250ms\", \"2s\")"))?;
    if !value.is_finite() || value < 0.0 {
        return Err(format!("invalid duration {text:?}"));
    }
    Ok(Duration::from_micros((value * unit_ms * 1_000.0).round() as u64))
}

/// Formats a duration the way scripts write it: "2s" when whole seconds, else "250ms".
pub(crate) fn format_duration(d: Duration) -> String {
    if d.as_millis().is_multiple_of(1000) {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// serde for a `Duration` written as a string ("250ms") or integer milliseconds.
mod duration {
    use std::fmt;
    use std::time::Duration;

    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_duration(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        d.deserialize_any(DurationVisitor)
    }

    pub(super) struct DurationVisitor;

    impl Visitor<'_> for DurationVisitor {
        type Value = Duration;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a duration like \"250ms\" or \"2s\", or integer milliseconds")
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
            Ok(Duration::from_millis(v))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
            u64::try_from(v).map(Duration::from_millis).map_err(|_| E::custom("negative duration"))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
            if v.is_finite() && v >= 0.0 {
                Ok(Duration::from_micros((v * 1000.0) as u64))
            } else {
                Err(E::custom("invalid duration"))
            }
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
            super::parse_duration(v).map_err(E::custom)
        }
    }
}

/// serde for an optional `Duration` (same spellings as `duration`).
mod opt_duration {
    use std::time::Duration;

    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::duration::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        d.deserialize_any(super::duration::DurationVisitor).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_with_every_field_parses_and_falls_back_to_default() {
        let s = Script::from_yaml_str(
            r#"
default: { latency: 0ms, chunks: 5, chunk_interval: 20 }
keys:
  a: { latency: 10ms, rpm: 15, quota_after: 5, retry_delay: 30s,
       quota_id: GenerateRequestsPerDayPerProjectPerModel-FreeTier }
  b: { invalid: true, blocked: true, status: 503, fail_first: 2, reset: true,
       hang: true, break_stream_after: 2, gzip: true, text: hi }
reject_keys: [sk-perf-client-0001]
rpm_window: 1s
"#,
        )
        .unwrap();
        let plan = Plan::new(s.clone());
        let a = plan.behaviour(Some("a"));
        assert_eq!(a.latency, Duration::from_millis(10));
        assert_eq!(a.chunks, 5);
        assert_eq!(a.chunk_interval, Duration::from_millis(20));
        assert_eq!(a.retry_delay, Some(Duration::from_secs(30)));
        assert!(plan.rejects("sk-perf-client-0001"));
        assert_eq!(s.rpm_window, Duration::from_secs(1));
        assert_eq!(plan.behaviour(Some("zz")).chunks, 5);
        // Round trip through JSON keeps everything.
        let json = serde_json::to_vec(&s).unwrap();
        assert_eq!(Script::from_slice(&json).unwrap(), s);
    }

    #[test]
    fn unknown_fields_are_rejected() {
        assert!(Script::from_yaml_str("keys: { a: { latencyy: 1s } }").is_err());
    }

    #[test]
    fn fail_first_defaults_to_503() {
        let b = Behaviour::resolve(&KeyScript::default().fail_first(2), &KeyScript::default());
        assert_eq!(b.failing_status(1), Some(503));
        assert_eq!(b.failing_status(2), Some(503));
        assert_eq!(b.failing_status(3), None);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
        assert!(parse_duration("fast").is_err());
    }
}
