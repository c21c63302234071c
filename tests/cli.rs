//! The command line (SPEC 1): `--version`, `--help`, `check` with every problem as
//! `file:line: field: message`, a refused start with a one-line reason, `GEMINI_API_KEYS`
//! in place of pools, and a real run that exits 0 on SIGTERM (SPEC 7).

mod support;

use mock_gemini::{MockServer, Script};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;
use support::{GENERATE, GENERATE_PATH, KEYS, KEY_A};
use tokio::io::AsyncReadExt;
use tokio::process::Command;
use tokio::time::{sleep, timeout};

/// A scratch directory for one test's files (under Cargo's per-target test tmp dir).
fn scratch(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli").join(test);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// The binary, run from `dir` with none of the environment that would change its mind.
fn gemgate(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gemgate"));
    cmd.current_dir(dir)
        .env_remove("GEMGATE_CONFIG")
        .env_remove("GEMINI_API_KEYS")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

/// Runs to the end (bounded) and returns the output.
async fn run(cmd: &mut Command) -> (Output, String, String) {
    let output = timeout(Duration::from_secs(20), cmd.output()).await.expect("gemgate exits in time").unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output, stdout, stderr)
}

const VALID: &str = "\
listen: 127.0.0.1:0
upstream:
  base_url: http://127.0.0.1:9
pools:
  default:
    keys:
      - { id: a, key: key-value-1 }
";

/// Two problems, on lines 1 and 4.
const TWO_PROBLEMS: &str = "\
listen: nowhere
upstream:
  base_url: http://127.0.0.1:9
  request_timeout: soon
pools:
  default:
    keys:
      - { id: a, key: key-value-1 }
";

#[tokio::test]
async fn version_and_help() {
    let dir = scratch("version_and_help");
    let (out, stdout, _) = run(gemgate(&dir).arg("--version")).await;
    assert!(out.status.success());
    assert_eq!(stdout.trim(), format!("gemgate {}", env!("CARGO_PKG_VERSION")));
    let (out, stdout, _) = run(gemgate(&dir).arg("--help")).await;
    assert!(out.status.success());
    for expected in ["Usage", "--config", "check", "--version"] {
        assert!(stdout.contains(expected), "--help lacks {expected}: {stdout}");
    }
}

#[tokio::test]
async fn check_prints_ok_for_a_valid_config() {
    let dir = scratch("check_ok");
    let path = write(&dir, "valid.yaml", VALID);
    let (out, stdout, _) = run(gemgate(&dir).arg("check").arg("--config").arg(&path)).await;
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert_eq!(stdout.trim(), "ok");
    // GEMGATE_CONFIG names the file too.
    let (out, stdout, _) = run(gemgate(&dir).arg("check").env("GEMGATE_CONFIG", &path)).await;
    assert_eq!(out.status.code(), Some(0), "{stdout}");
}

#[tokio::test]
async fn check_prints_every_problem_with_file_line_and_field() {
    let dir = scratch("check_problems");
    let path = write(&dir, "bad.yaml", TWO_PROBLEMS);
    let (out, stdout, _) = run(gemgate(&dir).arg("check").arg("--config").arg(&path)).await;
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let file = path.display().to_string();
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(lines[0].starts_with(&format!("{file}:1: listen: ")), "{stdout}");
    assert!(lines[1].starts_with(&format!("{file}:4: upstream.request_timeout: ")), "{stdout}");
    assert!(!stdout.contains("key-value-1"), "a key value in the output");
}

#[tokio::test]
async fn an_invalid_config_refuses_to_start_with_one_line() {
    let dir = scratch("refused_start");
    let path = write(&dir, "bad.yaml", TWO_PROBLEMS);
    let (out, stdout, stderr) = run(gemgate(&dir).arg("--config").arg(&path)).await;
    assert!(!out.status.success());
    assert!(stdout.trim().is_empty(), "{stdout}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    let file = path.display().to_string();
    assert!(lines[0].contains(&format!("{file}:1: listen: ")), "{stderr}");

    // The default file name is used, and named, when no --config is given.
    let (out, _, stderr) = run(&mut gemgate(&dir)).await;
    assert!(!out.status.success());
    assert!(stderr.contains("proxy.yaml"), "{stderr}");
    assert_eq!(stderr.lines().filter(|l| !l.trim().is_empty()).count(), 1, "{stderr}");
}

#[tokio::test]
async fn no_pools_and_no_gemini_api_keys_is_refused_by_name() {
    let dir = scratch("no_keys");
    let path = write(&dir, "nokeys.yaml", "upstream: { base_url: http://127.0.0.1:9 }\n");
    let (out, _, stderr) = run(gemgate(&dir).arg("--config").arg(&path)).await;
    assert!(!out.status.success());
    assert!(stderr.contains("GEMINI_API_KEYS") && stderr.contains("pools"), "{stderr}");
    assert_eq!(stderr.lines().filter(|l| !l.trim().is_empty()).count(), 1, "{stderr}");
    let (out, stdout, _) = run(gemgate(&dir).arg("check").arg("--config").arg(&path)).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout.contains("GEMINI_API_KEYS"), "{stdout}");

    // With the variable set, the same file is accepted.
    let (out, stdout, _) =
        run(gemgate(&dir).arg("check").arg("--config").arg(&path).env("GEMINI_API_KEYS", "key-one,key-two")).await;
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert_eq!(stdout.trim(), "ok");
    assert!(!stdout.contains("key-one"));
}

/// A port that was free a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test]
async fn runs_against_the_mock_and_exits_0_on_sigterm() {
    let mock = MockServer::spawn(Script::default()).await;
    let dir = scratch("sigterm");
    let (port, admin_port) = (free_port(), free_port());
    // The harness's config (keys key-a and key-b), on fixed ports: the child cannot say
    // which port 0 became.
    let config = support::config_yaml(&mock.base_url(), "", "shutdown_grace: 5s\n")
        .replacen("127.0.0.1:0", &format!("127.0.0.1:{port}"), 1)
        .replacen("127.0.0.1:0", &format!("127.0.0.1:{admin_port}"), 1);
    let path = write(&dir, "proxy.yaml", &config);
    let mut child = gemgate(&dir)
        .arg("--config")
        .arg(&path)
        .env("RUST_LOG", "debug,hyper=info,hyper_util=info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let logs = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        text
    });

    let http = support::client();
    let mut ready = false;
    for _ in 0..200 {
        if let Ok(rsp) = http.get(format!("http://127.0.0.1:{admin_port}/readyz")).send().await {
            if rsp.status() == 200 {
                ready = true;
                break;
            }
        }
        assert!(child.try_wait().unwrap().is_none(), "gemgate exited early: {}", logs.await.unwrap());
        sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "/readyz never answered 200");

    let rsp = http
        .post(format!("http://127.0.0.1:{port}{GENERATE_PATH}"))
        .header("x-goog-api-key", "client-token")
        .body(GENERATE)
        .send()
        .await
        .unwrap();
    assert_eq!(rsp.status(), 200);
    assert_eq!(rsp.headers()["x-gemgate-key"], "key-a");
    let headers = rsp.headers().clone();
    let body = rsp.text().await.unwrap();
    assert_eq!(mock.last().unwrap().key.as_deref(), Some(KEY_A));

    let pid = child.id().expect("still running").to_string();
    let killed = Command::new("kill").arg("-TERM").arg(&pid).status().await.unwrap();
    assert!(killed.success());
    let status = timeout(Duration::from_secs(10), child.wait()).await.expect("exits after SIGTERM").unwrap();
    let logs = logs.await.unwrap();
    assert_eq!(status.code(), Some(0), "{logs}");
    assert!(logs.contains("SIGTERM"), "{logs}");
    for key in KEYS {
        assert!(headers.iter().all(|(_, v)| !v.as_bytes().windows(key.len()).any(|w| w == key.as_bytes())));
        assert!(!body.contains(key), "key leaked in a body");
        assert!(!logs.contains(key), "key leaked in the logs");
    }
}
