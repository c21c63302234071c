//! Shared test harness: a real mock-gemini upstream and a real gemgate, both in-process on
//! 127.0.0.1:0, a reqwest client, captured logs, and the key-hygiene check every test that
//! handles keys runs.
#![allow(dead_code)]

use gemgate::config::Config;
use gemgate::Running;
use mock_gemini::{MockServer, Script};
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

/// The pool keys every harness uses; tests assert they never leak.
pub const KEY_A: &str = "test-key-a-5ecret";
pub const KEY_B: &str = "test-key-b-5ecret";
pub const KEYS: [&str; 2] = [KEY_A, KEY_B];

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

pub fn config_yaml(upstream: &str, upstream_extra: &str, extra: &str) -> String {
    let mut upstream_lines = format!("  base_url: {upstream}\n");
    for line in upstream_extra.lines().filter(|l| !l.trim().is_empty()) {
        upstream_lines.push_str(&format!("  {}\n", line.trim()));
    }
    format!(
        "listen: 127.0.0.1:0\nadmin: {{ listen: 127.0.0.1:0 }}\nupstream:\n{upstream_lines}\
         pools:\n  default:\n    keys:\n      - {{ id: key-a, key: {KEY_A} }}\n      - {{ id: key-b, key: {KEY_B} }}\n{extra}"
    )
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
        for key in KEYS {
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
