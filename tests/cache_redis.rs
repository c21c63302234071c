//! The Redis cache backend (SPEC 5) against a real redis-server (tests/support/redis.rs):
//! what is stored where, the TTL set in Redis, the memory tier in front, a fleet sharing
//! one Redis, and outages, which never fail a call for longer than the timeout and end by
//! themselves when Redis is back. First `RedisCache` on its own, then gemgate with
//! `cache: { backend: redis }` in front of the mock: a Redis outage never fails a request.

mod support;

use bytes::Bytes;
use gemgate::cache::memory::MemoryCache;
use gemgate::cache::redis::RedisCache;
use gemgate::cache::{Cache, CacheError, CacheKey, CachedAnswer};
use mock_gemini::Script;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::redis::RedisServer;
use support::*;

const PREFIX: &str = "gemgate:v1:";
const TIMEOUT: Duration = Duration::from_millis(50);
const TTL: Duration = Duration::from_secs(3600);

fn backend(server: &RedisServer, front: Option<MemoryCache>) -> RedisCache {
    RedisCache::new(&server.url(), PREFIX, TIMEOUT, TTL, front).expect("a valid url")
}

fn front() -> Option<MemoryCache> {
    Some(MemoryCache::new(1 << 20, TTL))
}

fn answer(text: &str) -> Arc<CachedAnswer> {
    Arc::new(CachedAnswer {
        status: 200,
        headers: vec![("content-type".into(), "text/event-stream".into())],
        chunks: vec![Bytes::from(format!("data: {text}\r\n\r\n")), Bytes::from_static(b"data: end\r\n\r\n")],
    })
}

/// Polls `get` until it is answered without an error (Redis back), at most `within`.
async fn until_redis_answers(cache: &RedisCache, key: &CacheKey, within: Duration) -> Option<Arc<CachedAnswer>> {
    let deadline = Instant::now() + within;
    loop {
        match cache.get(key).await {
            Ok(found) => return found,
            Err(error) if Instant::now() < deadline => {
                assert!(matches!(error, CacheError::Timeout(_) | CacheError::Backend(_)), "{error}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(error) => panic!("redis is back but the cache still fails after {within:?}: {error}"),
        }
    }
}

/// A call that fails must fail within the timeout (plus scheduling slack), never hang.
async fn get_bounded(cache: &RedisCache, key: &CacheKey) -> Result<Option<Arc<CachedAnswer>>, CacheError> {
    let started = Instant::now();
    let result = cache.get(key).await;
    assert!(started.elapsed() < TIMEOUT + Duration::from_millis(250), "a get took {:?}", started.elapsed());
    result
}

#[tokio::test]
async fn a_miss_then_a_store_then_a_hit_with_the_ttl_set_in_redis() {
    let server = RedisServer::start();
    let cache = backend(&server, None);
    let key = CacheKey([7; 32]);
    assert_eq!(cache.get(&key).await.expect("redis answers"), None, "a miss");
    cache.put(&key, answer("hello")).await.expect("stored");

    let name = format!("{PREFIX}{}", key.hex());
    assert_eq!(server.keys(PREFIX), vec![name.clone()], "one key: prefix + hex");
    let stored: Vec<u8> = server.query(&["GET", &name]);
    assert_eq!(stored, answer("hello").encode().to_vec(), "the value is the answer's encoding");
    let pttl: i64 = server.query(&["PTTL", &name]);
    assert!(pttl > 3_590_000 && pttl <= 3_600_000, "the ttl is set in redis: {pttl} ms");

    let hit = cache.get(&key).await.expect("redis answers").expect("a hit");
    assert_eq!(*hit, *answer("hello"));
}

#[tokio::test]
async fn a_value_that_is_not_an_answer_is_corrupt_not_a_hit() {
    let server = RedisServer::start();
    let cache = backend(&server, front());
    let key = CacheKey([9; 32]);
    let _: () = server.query(&["SET", &cache.redis_key(&key), "not a cached answer"]);
    let error = cache.get(&key).await.expect_err("a bad value is an error");
    assert!(matches!(error, CacheError::Corrupt(_)), "{error}");
    assert!(cache.front().unwrap().lookup(&key).is_none(), "nothing bad reaches the front tier");
    cache.put(&key, answer("fixed")).await.expect("a store replaces it");
    cache.front().unwrap().sync();
    let fresh = backend(&server, None);
    assert_eq!(*fresh.get(&key).await.unwrap().expect("a hit"), *answer("fixed"));
}

#[tokio::test]
async fn the_front_tier_answers_while_redis_is_down() {
    let mut server = RedisServer::start();
    let cache = backend(&server, front());
    let stored = CacheKey([1; 32]);
    let filled = CacheKey([2; 32]);
    cache.put(&stored, answer("stored here")).await.expect("stored");
    // Stored by another gemgate: this one's front tier learns it on its first hit.
    backend(&server, None).put(&filled, answer("stored elsewhere")).await.expect("stored");
    assert_eq!(*cache.get(&filled).await.unwrap().expect("a redis hit"), *answer("stored elsewhere"));

    server.stop();
    assert_eq!(*get_bounded(&cache, &stored).await.unwrap().expect("front hit"), *answer("stored here"));
    assert_eq!(*get_bounded(&cache, &filled).await.unwrap().expect("front hit"), *answer("stored elsewhere"));
    let error = get_bounded(&cache, &CacheKey([3; 32])).await.expect_err("not in front: redis is asked, and is down");
    assert!(matches!(error, CacheError::Timeout(_) | CacheError::Backend(_)), "{error}");
}

#[tokio::test]
async fn two_gemgates_share_one_redis() {
    let server = RedisServer::start();
    let first = backend(&server, front());
    let second = backend(&server, front());
    let key = CacheKey([4; 32]);
    assert_eq!(second.get(&key).await.unwrap(), None);
    first.put(&key, answer("shared")).await.expect("stored");
    assert_eq!(*second.get(&key).await.unwrap().expect("the other's answer"), *answer("shared"));
}

#[tokio::test]
async fn redis_down_at_start_then_up_works_without_a_restart() {
    let mut server = RedisServer::start();
    server.stop();
    let cache = backend(&server, None);
    let key = CacheKey([5; 32]);
    for _ in 0..5 {
        get_bounded(&cache, &key).await.expect_err("no redis yet");
    }
    server.restart();
    assert_eq!(until_redis_answers(&cache, &key, Duration::from_secs(5)).await, None, "a miss once redis is up");
    cache.put(&key, answer("late")).await.expect("stored");
    assert_eq!(*cache.get(&key).await.unwrap().expect("a hit"), *answer("late"));
}

#[tokio::test]
async fn redis_killed_and_restarted_mid_run_recovers() {
    let mut server = RedisServer::start();
    let cache = backend(&server, None);
    let key = CacheKey([6; 32]);
    cache.put(&key, answer("before")).await.expect("stored");
    assert!(cache.get(&key).await.unwrap().is_some());

    server.stop();
    let mut failed = 0;
    for _ in 0..20 {
        if get_bounded(&cache, &key).await.is_err() {
            failed += 1;
        }
    }
    assert_eq!(failed, 20, "every call fails (bounded) while redis is down");

    server.restart();
    assert_eq!(until_redis_answers(&cache, &key, Duration::from_secs(5)).await, None, "the new redis is empty");
    cache.put(&key, answer("after")).await.expect("stored again");
    assert_eq!(*cache.get(&key).await.unwrap().expect("a hit"), *answer("after"));
}

/// `rediss://` checks the server's certificate against the system's trust roots, which
/// `SSL_CERT_FILE` extends; the check runs in a child test process so that variable is set
/// for it alone.
#[test]
fn rediss_urls_speak_tls_and_check_the_certificate() {
    let server = RedisServer::start_tls();
    let child = |cert: Option<&std::path::Path>| {
        let mut command = std::process::Command::new(std::env::current_exe().expect("this test binary"));
        command.args(["--exact", "tls_child", "--ignored", "--test-threads=1"]);
        command.env("GEMGATE_TEST_REDISS_URL", server.tls_url()).env_remove("SSL_CERT_DIR");
        match cert {
            Some(cert) => command.env("SSL_CERT_FILE", cert),
            None => command.env("SSL_CERT_FILE", "/nonexistent/no-roots.pem"),
        };
        let output = command.output().expect("the child test runs");
        let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        (output.status.success() && text.contains("1 passed"), text)
    };
    let (ok, text) = child(Some(&server.tls_cert()));
    assert!(ok, "trusting the server's certificate, rediss works:\n{text}");
    assert_eq!(server.keys(PREFIX).len(), 1, "the same server, seen in plain text");
    let (ok, text) = child(None);
    assert!(!ok && text.contains("TLS_CHILD_FAILED"), "an untrusted certificate is refused:\n{text}");
}

#[tokio::test]
#[ignore = "run by rediss_urls_speak_tls_and_check_the_certificate in a child process"]
async fn tls_child() {
    let Ok(url) = std::env::var("GEMGATE_TEST_REDISS_URL") else { return };
    let cache = RedisCache::new(&url, PREFIX, Duration::from_secs(2), TTL, None).expect("a valid url");
    let key = CacheKey([8; 32]);
    let result = async {
        assert_eq!(cache.get(&key).await?, None);
        cache.put(&key, answer("over tls")).await?;
        cache.get(&key).await
    }
    .await;
    match result {
        Ok(Some(hit)) => assert_eq!(*hit, *answer("over tls")),
        other => panic!("TLS_CHILD_FAILED: {other:?}"),
    }
}

// ------------------------------------------------------------------ gemgate over Redis

/// The `cache:` section for a gemgate on `server`, with `extra` lines inside it.
fn cache_yaml(server: &RedisServer, extra: &str) -> String {
    let mut yaml = format!("cache:\n  backend: redis\n  redis: {{ url: \"{}\" }}\n", server.url());
    for line in extra.lines().filter(|l| !l.trim().is_empty()) {
        yaml.push_str(&format!("  {}\n", line.trim()));
    }
    yaml
}

/// A generateContent body; each `n` is its own cache key.
fn prompt(n: usize) -> String {
    format!(r#"{{"contents":[{{"role":"user","parts":[{{"text":"Say hello, number {n}"}}]}}]}}"#)
}

/// POSTs `body` to `base` + GENERATE_PATH; (status, x-gemgate-cache, body).
async fn generate(http: &reqwest::Client, base: &str, body: &str) -> (u16, String, String) {
    let rsp = http
        .post(format!("{base}{GENERATE_PATH}"))
        .header("x-goog-api-key", "client-token")
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("gemgate answers");
    let status = rsp.status().as_u16();
    let cache = rsp.headers().get("x-gemgate-cache").and_then(|v| v.to_str().ok()).unwrap_or("-").to_string();
    (status, cache, rsp.text().await.expect("a body"))
}

/// The answer is stored after it was sent: waits (bounded) until Redis holds `n` answers.
async fn wait_for_keys(server: &RedisServer, n: usize) -> Vec<String> {
    for _ in 0..200 {
        let keys = server.keys(PREFIX);
        if keys.len() >= n {
            return keys;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("redis never held {n} answers: {:?}", server.keys(PREFIX));
}

#[tokio::test]
async fn gemgate_misses_then_hits_through_redis_with_the_ttl_in_redis() {
    let server = RedisServer::start();
    let h = start(Script::default(), &cache_yaml(&server, "ttl: 90s")).await;
    let base = h.gate.base_url();
    let (status, cache, first) = generate(&h.http, &base, GENERATE).await;
    assert_eq!((status, cache.as_str()), (200, "miss"));
    let keys = wait_for_keys(&server, 1).await;
    assert_eq!(keys.len(), 1);
    assert!(keys[0].starts_with(PREFIX) && keys[0].len() == PREFIX.len() + 64, "{keys:?}");
    let pttl: i64 = server.query(&["PTTL", &keys[0]]);
    assert!(pttl > 85_000 && pttl <= 90_000, "cache.ttl is set in redis: {pttl} ms");
    let stored: Vec<u8> = server.query(&["GET", &keys[0]]);
    let stored = CachedAnswer::decode(Bytes::from(stored)).expect("redis holds a cached answer");
    assert_eq!(stored.status, 200);

    let (status, cache, second) = generate(&h.http, &base, GENERATE).await;
    assert_eq!((status, cache.as_str()), (200, "hit"));
    assert_eq!(second, first, "the stored answer, byte for byte");
    assert_eq!(h.mock.count(), 1, "one upstream call");
    h.assert_no_key_leak(&reqwest::header::HeaderMap::new(), &second);
    let raw: Vec<u8> = server.query(&["GET", &keys[0]]);
    for key in ALL_KEYS {
        assert!(!raw.windows(key.len()).any(|w| w == key.as_bytes()), "no pool key is stored in redis");
    }
}

#[tokio::test]
async fn gemgate_front_tier_answers_while_redis_is_down() {
    let mut server = RedisServer::start();
    let h = start(Script::default(), &cache_yaml(&server, "front_max_bytes: 1MiB")).await;
    let base = h.gate.base_url();
    assert_eq!(generate(&h.http, &base, GENERATE).await.1, "miss");
    wait_for_keys(&server, 1).await;
    server.stop();
    let (status, cache, _) = generate(&h.http, &base, GENERATE).await;
    assert_eq!((status, cache.as_str()), (200, "hit"), "the memory tier in front answers");
    let (status, cache, _) = generate(&h.http, &base, &prompt(1)).await;
    assert_eq!((status, cache.as_str()), (200, "bypass"), "anything else goes around the cache");
    assert_eq!(h.mock.count(), 2);
}

#[tokio::test]
async fn two_gemgates_share_answers_through_one_redis() {
    let server = RedisServer::start();
    let extra = cache_yaml(&server, "");
    let h = start(Script::default(), &extra).await;
    let yaml = config_yaml(&h.mock.base_url(), "", &extra);
    let config = gemgate::config::Config::from_yaml(&yaml, Path::new("second.yaml")).expect("a valid config");
    let second = gemgate::Running::start(config).await.expect("the second gemgate starts");

    let (status, cache, first) = generate(&h.http, &h.gate.base_url(), GENERATE).await;
    assert_eq!((status, cache.as_str()), (200, "miss"));
    wait_for_keys(&server, 1).await;
    let (status, cache, body) = generate(&h.http, &second.base_url(), GENERATE).await;
    assert_eq!((status, cache.as_str()), (200, "hit"), "the second gemgate gets the first one's answer");
    assert_eq!(body, first);
    assert_eq!(h.mock.count(), 1, "one upstream call for the fleet");
    second.shutdown().await.expect("a clean shutdown");
}

#[tokio::test]
async fn redis_killed_and_restarted_mid_run_fails_no_request() {
    let mut server = RedisServer::start();
    let h = start(Script::default(), &cache_yaml(&server, "")).await;
    let base = h.gate.base_url();
    let mut seen: Vec<(usize, String)> = Vec::new();
    let mut failures = Vec::new();
    let mut i = 0;
    let mut send = |cache: String, status: u16, body: &str, phase: usize| {
        if status != 200 || !body.contains("candidates") {
            failures.push(format!("phase {phase}: {status} {body}"));
        }
        seen.push((phase, cache));
    };
    // Up: misses, then hits over four keys.
    while i < 30 {
        let (status, cache, body) = generate(&h.http, &base, &prompt(i % 4)).await;
        send(cache, status, &body, 1);
        i += 1;
        if i == 4 {
            wait_for_keys(&server, 4).await;
        }
    }
    server.stop();
    while i < 60 {
        let started = Instant::now();
        let (status, cache, body) = generate(&h.http, &base, &prompt(i % 4)).await;
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "a request took {:?} while redis was down",
            started.elapsed()
        );
        send(cache, status, &body, 2);
        i += 1;
    }
    server.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut hits_after = 0;
    while i < 100 || (hits_after == 0 && Instant::now() < deadline) {
        let (status, cache, body) = generate(&h.http, &base, &prompt(i % 4)).await;
        hits_after += usize::from(cache == "hit");
        send(cache, status, &body, 3);
        i += 1;
    }
    assert!(failures.is_empty(), "every request is answered: {failures:?}");
    let count = |phase: usize, cache: &str| seen.iter().filter(|(p, c)| *p == phase && c == cache).count();
    assert_eq!(count(1, "hit"), 26, "up: four misses, then hits: {seen:?}");
    assert_eq!(count(2, "bypass"), 30, "down: the cache is bypassed: {seen:?}");
    assert!(count(3, "hit") > 0, "back: hits again without a restart of gemgate: {seen:?}");
    assert_eq!(server.keys(PREFIX).len(), 4, "the new redis is filled again");
}

#[tokio::test]
async fn a_bad_value_in_redis_is_bypassed_not_a_failure() {
    let server = RedisServer::start();
    let h = start(Script::default(), &cache_yaml(&server, "")).await;
    let base = h.gate.base_url();
    assert_eq!(generate(&h.http, &base, GENERATE).await.1, "miss");
    let keys = wait_for_keys(&server, 1).await;
    // The call stays joinable until its store is done: wait for it to land, so the next
    // request reads Redis instead of joining it.
    for _ in 0..200 {
        let stats: serde_json::Value =
            h.http.get(h.admin_url("/admin/cache")).send().await.unwrap().json().await.unwrap();
        if stats["in_flight"] == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _: () = server.query(&["SET", &keys[0], "GARBAGE-VALUE-d41d8cd9"]);
    let (status, cache, body) = generate(&h.http, &base, GENERATE).await;
    assert_eq!((status, cache.as_str()), (200, "bypass"), "{body}");
    assert!(body.contains("candidates"), "a real answer from upstream: {body}");
    assert_eq!(h.mock.count(), 2);
    assert!(logs().contains("stored value is not a cached answer"), "the fault is logged");
    assert!(!logs().contains("GARBAGE-VALUE"), "values are never logged");
}

/// A `gemgate` OS process on fixed free ports (a child cannot say which port 0 became);
/// killed when dropped.
struct GateProcess {
    child: tokio::process::Child,
    port: u16,
}

impl GateProcess {
    async fn start(dir: &Path, name: &str, yaml: &str) -> GateProcess {
        let free = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let (port, admin_port) = (free(), free());
        let yaml = yaml.replacen("127.0.0.1:0", &format!("127.0.0.1:{port}"), 1).replacen(
            "127.0.0.1:0",
            &format!("127.0.0.1:{admin_port}"),
            1,
        );
        let path = dir.join(format!("{name}.yaml"));
        std::fs::write(&path, yaml).unwrap();
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_gemgate"))
            .arg("--config")
            .arg(&path)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("the gemgate binary starts");
        let http = client();
        for _ in 0..200 {
            let ready = http.get(format!("http://127.0.0.1:{admin_port}/readyz")).send().await;
            if ready.is_ok_and(|r| r.status() == 200) {
                return GateProcess { child, port };
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("gemgate process {name} never became ready");
    }

    fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

#[tokio::test]
async fn two_gemgate_processes_share_one_redis() {
    let server = RedisServer::start();
    let mock = mock_gemini::MockServer::spawn(Script::default()).await;
    let dir = std::env::temp_dir().join(format!("gemgate-two-processes-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let yaml = config_yaml(&mock.base_url(), "", &cache_yaml(&server, ""));
    let first = GateProcess::start(&dir, "first", &yaml).await;
    let second = GateProcess::start(&dir, "second", &yaml).await;
    let http = client();

    let (status, cache, answer) = generate(&http, &first.base_url(), GENERATE).await;
    assert_eq!((status, cache.as_str()), (200, "miss"), "{answer}");
    wait_for_keys(&server, 1).await;
    let (status, cache, body) = generate(&http, &second.base_url(), GENERATE).await;
    assert_eq!((status, cache.as_str()), (200, "hit"), "the other process answers from Redis");
    assert_eq!(body, answer);
    assert_eq!(mock.count(), 1, "one upstream call for the two processes");
    for key in KEYS {
        assert!(!body.contains(key) && !answer.contains(key));
    }
    drop((first.child, second.child));
    let _ = std::fs::remove_dir_all(dir);
}
