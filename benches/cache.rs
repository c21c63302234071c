//! Cache benchmark (issue 4, not a test): a data-cleaning workload in which each request
//! repeats an earlier one with probability 0.8 (deterministic seed), sent through gemgate
//! at concurrency 16 against an in-process mock that takes 20 ms per call. Run with the
//! memory backend, the Redis backend (a redis-server the bench starts on a free loopback
//! port; skipped with a note when `redis-server` is not on PATH) and, as the floor, no
//! cache. Prints the hit rate (target: the repeat fraction, first-time bodies being the
//! only misses), req/s, p50/p99 latency of hits and of misses, and upstream calls saved;
//! then a second pass of the same requests on the warm cache (all hits).
//!
//!   cargo bench --bench cache
//!   BENCH_REQUESTS=5000 BENCH_CONC=32 BENCH_REPEAT=0.8 cargo bench --bench cache

use gemgate::config::Config;
use mock_gemini::{KeyScript, MockServer, Script};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SEED: u64 = 0x6e6d_6761_7465;
const UPSTREAM_LATENCY: Duration = Duration::from_millis(20);

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The workload: request `i` sends body `order[i]`; a body's first request is a new row,
/// every other request of it a repeat.
struct Workload {
    bodies: Vec<String>,
    order: Vec<usize>,
}

impl Workload {
    fn new(requests: usize, repeat: f64) -> Workload {
        let mut rng = fastrand::Rng::with_seed(SEED);
        let mut bodies = Vec::new();
        let mut order = Vec::with_capacity(requests);
        for i in 0..requests {
            if i > 0 && rng.f64() < repeat {
                // A repeat of an earlier request (popular rows come back more often).
                order.push(order[rng.usize(..i)]);
            } else {
                order.push(bodies.len());
                bodies.push(row(bodies.len(), &mut rng));
            }
        }
        Workload { bodies, order }
    }

    fn repeats(&self) -> usize {
        self.order.len() - self.bodies.len()
    }
}

/// A generateContent body that asks to clean one record (~400 bytes).
fn row(id: usize, rng: &mut fastrand::Rng) -> String {
    const NAMES: [&str; 6] =
        ["Ada Lovelace", "alan turing", "GRACE HOPPER", "Edsger  Dijkstra", "b. liskov", "K Thompson"];
    let text = format!(
        "Clean this record and answer with JSON only. id={id}; name={}; born={}-{:02}-{:02}; city= {} ; \
         email={}@example.COM ; notes: {}",
        NAMES[rng.usize(..NAMES.len())],
        rng.u32(1900..2010),
        rng.u32(1..13),
        rng.u32(1..29),
        ["london", "Paris ", "NEW YORK", "zürich"][rng.usize(..4)],
        rng.u64(..1 << 40),
        "lorem ipsum ".repeat(rng.usize(4..12)),
    );
    serde_json::json!({
        "contents": [{ "role": "user", "parts": [{ "text": text }] }],
        "generationConfig": { "temperature": 0, "responseMimeType": "application/json" }
    })
    .to_string()
}

#[derive(Default)]
struct Pass {
    elapsed: Duration,
    hits_us: Vec<u32>,
    misses_us: Vec<u32>,
    bypasses: usize,
    errors: usize,
    upstream_calls: usize,
}

impl Pass {
    fn requests(&self) -> usize {
        self.hits_us.len() + self.misses_us.len() + self.bypasses + self.errors
    }
}

fn pct(sorted: &[u32], p: f64) -> String {
    if sorted.is_empty() {
        return "-".into();
    }
    let us = sorted[((sorted.len() as f64 - 1.0) * p).round() as usize];
    format!("{:.2}", f64::from(us) / 1000.0)
}

/// Sends every request of `work` through `url` from `conc` workers, in order.
async fn run_pass(work: &Arc<Workload>, url: &str, conc: usize, mock: &MockServer) -> Pass {
    let client = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(30)).build().expect("client");
    let calls_before = mock.count();
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..conc)
        .map(|_| {
            let (work, next, client, url) = (work.clone(), next.clone(), client.clone(), url.to_string());
            tokio::spawn(async move {
                let mut seen = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&body) = work.order.get(i) else { break };
                    let sent = Instant::now();
                    let response = client
                        .post(&url)
                        .header("x-goog-api-key", "bench-client")
                        .header("content-type", "application/json")
                        .body(work.bodies[body].clone())
                        .send()
                        .await;
                    let outcome = match response {
                        Ok(r) if r.status() == 200 => {
                            let cache = r.headers().get("x-gemgate-cache").map(|v| v.as_bytes().to_vec());
                            match r.bytes().await {
                                Ok(_) => cache,
                                Err(_) => None,
                            }
                        }
                        _ => None,
                    };
                    let us = u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX);
                    seen.push((outcome, us));
                }
                seen
            })
        })
        .collect();
    let mut pass = Pass::default();
    for worker in workers {
        for (outcome, us) in worker.await.expect("worker") {
            match outcome.as_deref() {
                Some(b"hit") => pass.hits_us.push(us),
                Some(b"miss") => pass.misses_us.push(us),
                Some(_) => pass.bypasses += 1,
                None => pass.errors += 1,
            }
        }
    }
    pass.elapsed = started.elapsed();
    pass.upstream_calls = mock.count() - calls_before;
    pass.hits_us.sort_unstable();
    pass.misses_us.sort_unstable();
    pass
}

fn print_row(label: &str, pass: &Pass) {
    let n = pass.requests();
    let hit_rate = pass.hits_us.len() as f64 / n as f64 * 100.0;
    let saved = n.saturating_sub(pass.upstream_calls);
    println!(
        "| {label} | {n} | {hit_rate:.1} % | {:.0} | {} / {} | {} / {} | {} | {} ({:.1} %) | {} | {} |",
        n as f64 / pass.elapsed.as_secs_f64(),
        pct(&pass.hits_us, 0.50),
        pct(&pass.hits_us, 0.99),
        pct(&pass.misses_us, 0.50),
        pct(&pass.misses_us, 0.99),
        pass.upstream_calls,
        saved,
        saved as f64 / n as f64 * 100.0,
        pass.bypasses,
        pass.errors,
    );
}

/// Runs the workload through a fresh gemgate with this `cache:` block: the cold pass, then
/// (with a cache) the same requests again on the warm cache.
async fn bench(label: &str, cache_yaml: &str, work: &Arc<Workload>, conc: usize) -> Option<serde_json::Value> {
    let mock = MockServer::spawn(
        Script::default().max_recorded(0).with_default(KeyScript::default().latency(UPSTREAM_LATENCY)),
    )
    .await;
    let yaml = format!(
        "listen: 127.0.0.1:0\nadmin: {{ listen: 127.0.0.1:0 }}\nupstream: {{ base_url: {} }}\n\
         pools:\n  default:\n    keys:\n      - {{ id: k1, key: cache-bench-key-1 }}\n      - {{ id: k2, key: cache-bench-key-2 }}\n\
         cache: {cache_yaml}\n",
        mock.base_url()
    );
    let config = Config::from_yaml(&yaml, Path::new("<cache bench>")).expect("bench config");
    let gate = gemgate::Running::start(config).await.expect("gemgate starts");
    let url = format!("{}/v1beta/models/gemini-2.5-flash:generateContent", gate.base_url());
    let cold = run_pass(work, &url, conc, &mock).await;
    print_row(&format!("{label}, cold"), &cold);
    let cached = !cache_yaml.contains("none");
    if cached {
        let warm = run_pass(work, &url, conc, &mock).await;
        print_row(&format!("{label}, warm (second pass)"), &warm);
    }
    let stats = match reqwest::get(format!("http://{}/admin/cache", gate.admin_addr)).await {
        Ok(r) => r.json().await.ok(),
        Err(_) => None,
    };
    let _ = gate.shutdown().await;
    mock.shutdown();
    cached.then_some(stats).flatten()
}

#[tokio::main]
async fn main() {
    let requests: usize = env("BENCH_REQUESTS", 2000);
    let conc: usize = env("BENCH_CONC", 16);
    let repeat: f64 = env("BENCH_REPEAT", 0.8);
    let work = Arc::new(Workload::new(requests, repeat));
    let expected = work.repeats() as f64 / requests as f64 * 100.0;
    println!(
        "# cache benchmark: {requests} generateContent requests, {} distinct ({} repeats, p = {repeat}, seed {SEED:#x}), \
         concurrency {conc}, mock latency {} ms",
        work.bodies.len(),
        work.repeats(),
        UPSTREAM_LATENCY.as_millis()
    );
    println!("# target hit rate (cold pass): {expected:.1} % (first-time bodies are the only misses)\n");
    println!(
        "| run | requests | hit rate | req/s | hit p50 / p99 (ms) | miss p50 / p99 (ms) | upstream calls | calls saved | bypass | errors |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut notes = Vec::new();
    if let Some(stats) = bench("memory", "{ backend: memory }", &work, conc).await {
        notes.push(format!("memory /admin/cache: {stats}"));
    }
    match redis::RedisServer::start() {
        Ok(server) => {
            let yaml = format!("{{ backend: redis, redis: {{ url: \"redis://127.0.0.1:{}/0\" }} }}", server.port);
            if let Some(stats) = bench("redis", &yaml, &work, conc).await {
                notes.push(format!("redis /admin/cache: {stats}"));
            }
            let yaml = format!(
                "{{ backend: redis, front_max_bytes: 64MiB, redis: {{ url: \"redis://127.0.0.1:{}/0\", prefix: \"front:\" }} }}",
                server.port
            );
            if let Some(stats) = bench("redis + memory front", &yaml, &work, conc).await {
                notes.push(format!("redis + front /admin/cache: {stats}"));
            }
        }
        Err(why) => notes.push(format!("redis runs skipped: {why}")),
    }
    bench("no cache", "{ backend: none }", &work, conc).await;
    println!();
    for note in notes {
        println!("{note}");
    }
    println!(
        "\nreproduce: BENCH_REQUESTS={requests} BENCH_CONC={conc} BENCH_REPEAT={repeat} cargo bench --bench cache"
    );
}

/// A throwaway redis-server on a free loopback port (the start/stop of
/// tests/support/redis.rs, which benches cannot import).
mod redis {
    use std::io::ErrorKind;
    use std::net::TcpListener;
    use std::path::PathBuf;
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    pub struct RedisServer {
        pub port: u16,
        child: Child,
        dir: PathBuf,
    }

    impl RedisServer {
        pub fn start() -> Result<RedisServer, String> {
            let mut last_error = String::new();
            for _ in 0..5 {
                let port = TcpListener::bind("127.0.0.1:0")
                    .and_then(|l| l.local_addr())
                    .map_err(|e| format!("no free port: {e}"))?
                    .port();
                let dir = std::env::temp_dir().join(format!("gemgate-bench-redis-{}-{port}", std::process::id()));
                std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
                let child = Command::new("redis-server")
                    .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                    .arg("--dir")
                    .arg(&dir)
                    .arg("--logfile")
                    .arg(dir.join("redis.log"))
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn();
                let child = match child {
                    Ok(child) => child,
                    Err(e) if e.kind() == ErrorKind::NotFound => {
                        return Err("redis-server is not on PATH (apt-get install redis-server)".into())
                    }
                    Err(e) => return Err(format!("running redis-server: {e}")),
                };
                let mut server = RedisServer { port, child, dir };
                let deadline = Instant::now() + Duration::from_secs(5);
                loop {
                    if let Ok(Some(status)) = server.child.try_wait() {
                        last_error = format!("redis-server exited ({status}) on port {port}");
                        break;
                    }
                    if ping(port) {
                        return Ok(server);
                    }
                    if Instant::now() >= deadline {
                        last_error = format!("redis-server did not answer PING on port {port}");
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                drop(server);
            }
            Err(last_error)
        }
    }

    impl Drop for RedisServer {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn ping(port: u16) -> bool {
        let Ok(client) = ::redis::Client::open(format!("redis://127.0.0.1:{port}/0")) else { return false };
        let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_millis(200)) else { return false };
        ::redis::cmd("PING").query::<String>(&mut conn).is_ok_and(|pong| pong == "PONG")
    }
}
