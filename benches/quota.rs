//! Quota benchmark (issue 3, not a test): 10 keys × 15 RPM against a mock that enforces
//! 15 RPM per key in rolling 60 s windows, with 300 RPM offered (open loop, evenly spaced)
//! for 3 real minutes. Reports the upstream RPM achieved (target ≥ 98 % of 150), upstream
//! 429s (target 0), queue wait p50/p99 of served requests, and requests refused with 429.
//!
//!   cargo bench --bench quota                     # 3 minutes
//!   BENCH_MINUTES=1 cargo bench --bench quota     # a quicker look

use gemgate::config::Config;
use mock_gemini::{KeyScript, MockServer, Script};
use std::path::Path;
use std::time::{Duration, Instant};

const KEYS: usize = 10;
const RPM_PER_KEY: u64 = 15;
const OFFERED_RPM: u64 = 300;

#[tokio::main]
async fn main() {
    let minutes: u64 = std::env::var("BENCH_MINUTES").ok().and_then(|m| m.parse().ok()).unwrap_or(3);
    let mut script = Script::default().max_recorded(0);
    let mut keys_yaml = String::new();
    for i in 0..KEYS {
        let key = format!("quota-bench-key-{i:02}");
        script = script.with_key(key.clone(), KeyScript::default().rpm(RPM_PER_KEY));
        keys_yaml.push_str(&format!("      - {{ id: k{i:02}, key: {key} }}\n"));
    }
    let mock = MockServer::spawn(script).await;
    let yaml = format!(
        "listen: 127.0.0.1:0\nadmin: {{ listen: 127.0.0.1:0 }}\nupstream: {{ base_url: {} }}\n\
         queue: {{ max_wait: 10s, max_waiting: 1000 }}\n\
         pools:\n  default:\n    limits: {{ default: {{ rpm: {RPM_PER_KEY} }} }}\n    keys:\n{keys_yaml}",
        mock.base_url()
    );
    let config = Config::from_yaml(&yaml, Path::new("<quota bench>")).expect("bench config");
    let gate = gemgate::Running::start(config).await.expect("gemgate starts");
    let url = format!("{}/v1beta/models/gemini-2.5-flash:generateContent", gate.base_url());
    let client = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(30)).build().expect("client");

    let total = OFFERED_RPM * minutes;
    let spacing = Duration::from_millis(60_000 / OFFERED_RPM);
    println!("# quota benchmark: {KEYS} keys × {RPM_PER_KEY} RPM, {OFFERED_RPM} RPM offered for {minutes} min ({total} requests)");
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        tokio::time::sleep_until((started + spacing * i as u32).into()).await;
        let (client, url) = (client.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            let response = client
                .post(&url)
                .header("x-goog-api-key", "bench-client")
                .body(r#"{"contents":[{"parts":[{"text":"clean this row"}]}]}"#)
                .send()
                .await;
            let waited = sent.elapsed();
            let (status, key) = match response {
                Ok(r) => {
                    let key = r.headers().get("x-gemgate-key").and_then(|v| v.to_str().ok()).map(str::to_string);
                    (r.status().as_u16(), key)
                }
                Err(_) => (0, None),
            };
            (status, key, waited, sent.duration_since(started))
        }));
    }
    let mut served = Vec::new();
    let (mut refused, mut other) = (0u64, 0u64);
    let mut last_served = Duration::ZERO;
    let mut done_at: Vec<(String, Duration)> = Vec::new();
    for t in tasks {
        let (status, key, waited, at) = t.await.expect("task");
        match status {
            200 => {
                served.push(waited);
                last_served = last_served.max(at + waited);
                done_at.push((key.unwrap_or_default(), at + waited));
            }
            429 => refused += 1,
            _ => other += 1,
        }
    }
    let upstream_calls = mock.count() as u64;
    let upstream_429 = upstream_calls.saturating_sub(served.len() as u64);
    served.sort();
    let pct = |p: f64| served.get(((served.len() as f64 - 1.0) * p).round() as usize).map_or(0.0, |d| d.as_secs_f64());
    // Steady state: after the first minute's burst, answers completed per minute.
    let steady_from = Duration::from_secs(60);
    let steady_to = Duration::from_secs(60 * minutes);
    let steady = done_at.iter().filter(|(_, t)| *t >= steady_from && *t < steady_to).count() as f64;
    let steady_minutes = (minutes.saturating_sub(1)).max(1) as f64;
    let achieved = steady / steady_minutes;
    let ideal = (KEYS as u64 * RPM_PER_KEY) as f64;
    // The bound itself, as the client saw it: answers per key in any 60 s.
    done_at.sort_by_key(|(_, t)| *t);
    let mut worst_window = 0;
    for (i, (key, t)) in done_at.iter().enumerate() {
        let in_window = done_at[i..]
            .iter()
            .take_while(|(_, u)| *u < *t + Duration::from_secs(60))
            .filter(|(k, _)| k == key)
            .count();
        worst_window = worst_window.max(in_window);
    }
    println!("| metric | value |\n|---|---:|");
    println!("| requests offered | {total} |");
    println!(
        "| served in all ({:.1} min, first-minute burst included) | {} |",
        last_served.as_secs_f64() / 60.0,
        served.len()
    );
    println!(
        "| achieved upstream RPM, steady state (minutes 2..{minutes}) | {achieved:.1} ({:.1} % of {ideal}) |",
        achieved / ideal * 100.0
    );
    println!("| most answers of one key in any 60 s (limit {RPM_PER_KEY}) | {worst_window} |");
    println!("| upstream 429s | {upstream_429} |");
    println!("| refused by gemgate with 429 | {refused} |");
    println!("| other failures | {other} |");
    println!("| queue wait p50 / p99 (served) | {:.2} s / {:.2} s |", pct(0.50), pct(0.99));
    println!("| last answer at | {:.1} s |", last_served.as_secs_f64());
    println!("\nreproduce: BENCH_MINUTES={minutes} cargo bench --bench quota");
    let _ = gate.shutdown().await;
}
