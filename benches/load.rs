//! Load benchmark (not a test): a 1 KB generateContent through gemgate and, as the floor,
//! straight to the mock, at concurrency 1, 16 and 64, all in one process on loopback.
//! Prints req/s, p50/p99 latency and process CPU per request (mock and load generator
//! included, so read it as an upper bound), and the command that reproduces it.
//!
//!   cargo bench --bench load                 # 5 s per cell
//!   BENCH_SECS=10 BENCH_CONC="1 16 64" cargo bench --bench load
//!
//! The side-by-side comparison with nginx lives in ../shared/perf (see BENCHMARKS.md).

use bytes::Bytes;
use gemgate::config::Config;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::path::Path;
use std::time::{Duration, Instant};

fn request_body() -> String {
    let text = "Clean this record: name=Ada Lovelace; born=1815-12-10; notes=".to_string() + &"x".repeat(1000);
    format!(
        r#"{{"contents":[{{"role":"user","parts":[{{"text":"{text}"}}]}}],"generationConfig":{{"temperature":0}}}}"#
    )
}

struct Cell {
    requests: u64,
    errors: u64,
    elapsed: Duration,
    cpu: Duration,
    latencies_us: Vec<u32>,
}

fn cpu_time() -> Duration {
    // utime + stime of this process, in clock ticks (100 Hz on Linux).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields.get(11).and_then(|u| u.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|s| s.parse().ok()).unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

async fn measure(url: &str, concurrency: usize, secs: u64, body: Bytes) -> Cell {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let cpu_before = cpu_time();
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let client = client.clone();
        let url: hyper::Uri = url.parse().expect("url");
        let body = body.clone();
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            while Instant::now() < deadline {
                let request = hyper::Request::post(url.clone())
                    .header("x-goog-api-key", "bench-client-key")
                    .header("content-type", "application/json")
                    .body(Full::new(body.clone()))
                    .expect("request");
                let t = Instant::now();
                match client.request(request).await {
                    Ok(response) => {
                        let ok = response.status().is_success();
                        let drained = response.into_body().collect().await.is_ok();
                        if ok && drained {
                            latencies.push(t.elapsed().as_micros() as u32);
                        } else {
                            errors += 1;
                        }
                    }
                    Err(_) => errors += 1,
                }
            }
            (latencies, errors)
        }));
    }
    let mut cell =
        Cell { requests: 0, errors: 0, elapsed: Duration::ZERO, cpu: Duration::ZERO, latencies_us: Vec::new() };
    for w in workers {
        let (latencies, errors) = w.await.expect("worker");
        cell.requests += latencies.len() as u64;
        cell.errors += errors;
        cell.latencies_us.extend(latencies);
    }
    cell.elapsed = started.elapsed();
    cell.cpu = cpu_time().saturating_sub(cpu_before);
    cell.latencies_us.sort_unstable();
    cell
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let secs: u64 = std::env::var("BENCH_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    let conc: Vec<usize> = std::env::var("BENCH_CONC")
        .unwrap_or_else(|_| "1 16 64".into())
        .split_whitespace()
        .filter_map(|c| c.parse().ok())
        .collect();
    // Recording every request would measure the mock's bookkeeping, not the proxy.
    let mock = mock_gemini::MockServer::spawn(mock_gemini::Script::default().max_recorded(0)).await;
    let yaml = format!(
        "listen: 127.0.0.1:0\nadmin: {{ listen: 127.0.0.1:0 }}\nupstream: {{ base_url: {} }}\n\
         pools:\n  default:\n    keys:\n      - {{ id: k-a, key: bench-key-a }}\n      - {{ id: k-b, key: bench-key-b }}\n",
        mock.base_url()
    );
    let config = Config::from_yaml(&yaml, Path::new("<bench>")).expect("bench config");
    let gate = gemgate::Running::start(config).await.expect("gemgate starts");
    let body = Bytes::from(request_body());
    let path = "/v1beta/models/gemini-2.5-flash:generateContent";
    let targets = [("direct", format!("{}{path}", mock.base_url())), ("gemgate", format!("{}{path}", gate.base_url()))];

    println!("# gemgate load benchmark: {} B generateContent, {secs} s per cell, one process", body.len());
    println!("| target | c | req/s | p50 ms | p99 ms | errors | process CPU µs/req |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for &c in &conc {
        for (name, url) in &targets {
            let cell = measure(url, c, secs, body.clone()).await;
            let rps = cell.requests as f64 / cell.elapsed.as_secs_f64();
            let cpu_us = cell.cpu.as_micros() as f64 / cell.requests.max(1) as f64;
            println!(
                "| {name} | {c} | {rps:.0} | {:.2} | {:.2} | {} | {cpu_us:.0} |",
                percentile(&cell.latencies_us, 0.50),
                percentile(&cell.latencies_us, 0.99),
                cell.errors,
            );
        }
    }
    println!(
        "\nreproduce: BENCH_SECS={secs} BENCH_CONC=\"{}\" cargo bench --bench load",
        conc.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(" ")
    );
    let _ = gate.shutdown().await;
}
