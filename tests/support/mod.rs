//! Shared test harness: a real mock-gemini upstream and a real gemgate, both in-process on
//! 127.0.0.1:0, a reqwest client, captured logs, and the key-hygiene check every test that
//! handles keys runs.
#![allow(dead_code)]

pub mod redis;

use gemgate::config::Config;
use gemgate::quota::clock::ManualClock;
use gemgate::Running;
use mock_gemini::{MockServer, Script};
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

/// The pool keys every harness uses; tests assert they never leak.
pub const KEY_A: &str = "test-key-a-5ecret";
pub const KEY_B: &str = "test-key-b-5ecret";
pub const KEYS: [&str; 2] = [KEY_A, KEY_B];
/// Extra keys for harnesses with more than two (`start_setup`).
pub const KEY_C: &str = "test-key-c-5ecret";
pub const KEY_D: &str = "test-key-d-5ecret";
/// Every key any harness may use; `assert_no_key_leak` checks them all.
pub const ALL_KEYS: [&str; 4] = [KEY_A, KEY_B, KEY_C, KEY_D];

pub struct Harness {
    pub mock: MockServer,
    pub gate: Running,
    pub http: reqwest::Client,
}

/// Mock with `script`, gemgate with the two test keys plus `extra` YAML (top-level
/// sections, e.g. `clients:` or `upstream:` fields via `upstream_extra`).
pub async fn start(script: Script, extra: &str) -> Harness {
    start_with(script, "", extra).await
}

/// Like `start`, with extra lines inside the `upstream:` section.
pub async fn start_with(script: Script, upstream_extra: &str, extra: &str) -> Harness {
    capture_logs();
    let mock = MockServer::spawn(script).await;
    let yaml = config_yaml(&mock.base_url(), upstream_extra, extra);
    let config = Config::from_yaml(&yaml, Path::new("test.yaml")).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    let gate = Running::start(config).await.expect("gemgate starts");
    Harness { mock, gate, http: client() }
}

/// gemgate in front of `upstream` (a closed port, a hand-written server) instead of the
/// mock; the harness still carries an idle mock so tests read alike.
pub async fn start_against(upstream: &str, upstream_extra: &str, extra: &str) -> Harness {
    capture_logs();
    let mock = MockServer::spawn(Script::default()).await;
    let yaml = config_yaml(upstream, upstream_extra, extra);
    let config = Config::from_yaml(&yaml, Path::new("test.yaml")).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    let gate = Running::start(config).await.expect("gemgate starts");
    Harness { mock, gate, http: client() }
}

/// What `start_setup` builds: a gemgate in front of the mock, its quotas, cooldowns and
/// probes on a hand-driven clock.
pub struct Setup<'a> {
    /// (id, key, project) of each key of pool `default`.
    pub keys: &'a [(&'a str, &'a str, Option<&'a str>)],
    /// Lines inside `pools.default` (e.g. `strategy: random`, `limits: { ... }`).
    pub pool: &'a str,
    /// Extra fields inside the `admin: { listen: ... }` flow map (e.g. `token: { env: X }`).
    pub admin: &'a str,
    /// Top-level sections (`queue:`, `retry:`, `health:` ...).
    pub extra: &'a str,
}

/// The two test keys, each its own project.
pub const TWO_KEYS: [(&str, &str, Option<&str>); 2] = [("key-a", KEY_A, None), ("key-b", KEY_B, None)];

impl Default for Setup<'_> {
    fn default() -> Self {
        Setup { keys: &TWO_KEYS, pool: "", admin: "", extra: "" }
    }
}

/// 2026-06-01T12:00:00Z: where manual clocks start unless a test needs another instant.
pub const CLOCK_START: u64 = 1_780_315_200_000;

/// Like `start`, with quotas, cooldowns and probes on `clock`.
pub async fn start_clocked(script: Script, extra: &str, clock: Arc<ManualClock>) -> Harness {
    start_setup(script, Setup { extra, ..Setup::default() }, clock).await
}

/// A harness from a `Setup`, on `clock`.
pub async fn start_setup(script: Script, setup: Setup<'_>, clock: Arc<ManualClock>) -> Harness {
    capture_logs();
    let mock = MockServer::spawn(script).await;
    let mut yaml = format!(
        "listen: 127.0.0.1:0\nadmin: {{ listen: 127.0.0.1:0{}{} }}\nupstream:\n  base_url: {}\npools:\n  default:\n    keys:\n",
        if setup.admin.is_empty() { "" } else { ", " },
        setup.admin,
        mock.base_url()
    );
    for (id, key, project) in setup.keys {
        let project = project.map(|p| format!(", project: {p}")).unwrap_or_default();
        yaml.push_str(&format!("      - {{ id: {id}, key: {key}{project} }}\n"));
    }
    for line in setup.pool.lines().filter(|l| !l.trim().is_empty()) {
        yaml.push_str(&format!("    {}\n", line.trim()));
    }
    yaml.push_str(setup.extra);
    yaml.push_str(&no_cache_unless_asked(setup.extra));
    let config = Config::from_yaml(&yaml, Path::new("test.yaml")).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    let gate = Running::start_with_clock(config, clock).await.expect("gemgate starts");
    Harness { mock, gate, http: client() }
}

/// Milliseconds since the epoch of an RFC 3339 instant.
pub fn ms(rfc3339: &str) -> u64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339).expect("an RFC 3339 instant").timestamp_millis() as u64
}

pub fn config_yaml(upstream: &str, upstream_extra: &str, extra: &str) -> String {
    let mut upstream_lines = format!("  base_url: {upstream}\n");
    for line in upstream_extra.lines().filter(|l| !l.trim().is_empty()) {
        upstream_lines.push_str(&format!("  {}\n", line.trim()));
    }
    format!(
        "listen: 127.0.0.1:0\nadmin: {{ listen: 127.0.0.1:0 }}\nupstream:\n{upstream_lines}\
         pools:\n  default:\n    keys:\n      - {{ id: key-a, key: {KEY_A} }}\n      - {{ id: key-b, key: {KEY_B} }}\n{extra}{}",
        no_cache_unless_asked(extra)
    )
}

/// Tests of other features send identical requests on purpose and count upstream calls:
/// they run without the cache unless their config speaks of it.
fn no_cache_unless_asked(extra: &str) -> String {
    if extra.contains("cache:") {
        String::new()
    } else {
        "\ncache: { backend: none }\n".to_string()
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().timeout(std::time::Duration::from_secs(20)).build().expect("reqwest client")
}

impl Harness {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.gate.base_url())
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.gate.admin_addr)
    }

    /// POSTs JSON with a client credential in `x-goog-api-key`.
    pub async fn post(&self, path: &str, body: &str) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .header("x-goog-api-key", "client-token")
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("request reaches gemgate")
    }

    /// Asserts no pool key appears in the response's headers or `body`, in the upstream's
    /// view of the client's credential, or in the logs so far.
    pub fn assert_no_key_leak(&self, headers: &reqwest::header::HeaderMap, body: &str) {
        for key in ALL_KEYS {
            for (name, value) in headers {
                assert!(
                    !value.as_bytes().windows(key.len()).any(|w| w == key.as_bytes()),
                    "key leaked in header {name}"
                );
            }
            assert!(!body.contains(key), "key leaked in a body");
            assert!(!logs().contains(key), "key leaked in the logs");
        }
    }
}

impl Harness {
    /// `GET /admin/keys` (no admin token), parsed.
    pub async fn admin_keys(&self) -> serde_json::Value {
        let rsp = self.http.get(self.admin_url("/admin/keys")).send().await.expect("admin answers");
        assert_eq!(rsp.status(), 200);
        let headers = rsp.headers().clone();
        let body = rsp.text().await.expect("admin body");
        self.assert_no_key_leak(&headers, &body);
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
    }

    /// One key's entry of `/admin/keys`.
    pub async fn admin_key(&self, id: &str) -> serde_json::Value {
        let all = self.admin_keys().await;
        all["keys"]
            .as_array()
            .and_then(|keys| keys.iter().find(|k| k["id"] == id))
            .cloned()
            .unwrap_or_else(|| panic!("no key {id} in {all}"))
    }

    /// Polls `/admin/keys` until key `id` is in `state` (at most ~3 s of real time).
    pub async fn wait_for_state(&self, id: &str, state: &str) -> serde_json::Value {
        for _ in 0..300 {
            let key = self.admin_key(id).await;
            if key["state"] == state {
                return key;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("key {id} never became {state}: {}", self.admin_key(id).await);
    }

    /// Status of `GET /readyz`.
    pub async fn readyz(&self) -> u16 {
        self.http.get(self.admin_url("/readyz")).send().await.expect("admin answers").status().as_u16()
    }
}

/// A generateContent body.
pub const GENERATE: &str = r#"{"contents":[{"role":"user","parts":[{"text":"Say hello"}]}]}"#;
pub const GENERATE_PATH: &str = "/v1beta/models/gemini-2.5-flash:generateContent";

#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

static LOGS: OnceLock<LogBuffer> = OnceLock::new();

/// Routes every log line of this test binary (debug and up) into a buffer.
pub fn capture_logs() {
    LOGS.get_or_init(|| {
        let buffer = LogBuffer::default();
        let writer = buffer.clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter("debug,hyper=info,hyper_util=info,h2=info,rustls=info")
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .try_init();
        buffer
    });
}

/// Everything logged so far by this test binary.
pub fn logs() -> String {
    LOGS.get()
        .map(|b| String::from_utf8_lossy(&b.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned())
        .unwrap_or_default()
}
