//! Quotas (SPEC 4, issue 3): how requests are spread over the keys of a pool, the limits
//! keys of one project share, the rolling-minute bound, TPM settled from `usageMetadata`,
//! the FIFO wait queue and its 429s, and `max_in_flight_per_key`. Quota time comes from a
//! ManualClock: nothing here waits for a real minute.

mod support;

use gemgate::quota::clock::{Clock, ManualClock};
use mock_gemini::{KeyScript, Script};
use reqwest::header::HeaderMap;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::*;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// A generateContent body whose prompt is `text`.
fn prompt(text: &str) -> String {
    serde_json::json!({ "contents": [{ "role": "user", "parts": [{ "text": text }] }] }).to_string()
}

/// One finished exchange: status, headers, body.
type Answer = (u16, HeaderMap, String);

async fn generate(h: &Harness, text: &str) -> Answer {
    let rsp = h.post(GENERATE_PATH, &prompt(text)).await;
    let status = rsp.status().as_u16();
    let headers = rsp.headers().clone();
    let body = rsp.text().await.expect("a body");
    h.assert_no_key_leak(&headers, &body);
    (status, headers, body)
}

/// A generate request on its own task (it may wait in the queue).
fn spawn_generate(h: &Arc<Harness>, text: &str) -> JoinHandle<Answer> {
    let (h, text) = (h.clone(), text.to_string());
    tokio::spawn(async move { generate(&h, &text).await })
}

fn key_of(headers: &HeaderMap) -> String {
    headers["x-gemgate-key"].to_str().unwrap().to_string()
}

/// Waits (bounded) for a spawned request to finish.
async fn finished(task: JoinHandle<Answer>) -> Answer {
    tokio::time::timeout(Duration::from_secs(3), task).await.expect("the request finishes").expect("no panic")
}

/// Lets queued requests reach gemgate's queue (and prove they stay there).
async fn pause() {
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// The RetryInfo delay of a Gemini-shaped refusal.
fn retry_delay(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    let details = v["error"]["details"].as_array().unwrap_or_else(|| panic!("no details: {body}"));
    let info = details.iter().find(|d| d["@type"] == "type.googleapis.com/google.rpc.RetryInfo").expect("RetryInfo");
    info["retryDelay"].as_str().unwrap().to_string()
}

fn assert_exhausted(answer: &Answer) {
    let (status, headers, body) = answer;
    assert_eq!(*status, 429, "{body}");
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["error"]["status"], "RESOURCE_EXHAUSTED", "{body}");
    assert!(headers.contains_key("retry-after"), "a 429 carries Retry-After");
}

/// The model entry of a key in `/admin/keys`.
fn model_usage<'a>(key: &'a serde_json::Value, model: &str) -> &'a serde_json::Value {
    key["models"]
        .as_array()
        .and_then(|models| models.iter().find(|m| m["model"] == model))
        .unwrap_or_else(|| panic!("no usage of {model} in {key}"))
}

#[tokio::test]
async fn round_robin_alternates_between_the_keys() {
    let clock = ManualClock::starting_at(CLOCK_START);
    let h = start_setup(Script::default(), Setup { pool: "strategy: round_robin", ..Setup::default() }, clock).await;
    let mut keys = Vec::new();
    for i in 0..6 {
        let (status, headers, _) = generate(&h, &format!("rr {i}")).await;
        assert_eq!(status, 200);
        keys.push(key_of(&headers));
    }
    assert!(keys.windows(2).all(|w| w[0] != w[1]), "keys alternate: {keys:?}");
    assert_eq!(h.mock.calls_for_key(KEY_A), 3);
    assert_eq!(h.mock.calls_for_key(KEY_B), 3);
}

#[tokio::test]
async fn least_loaded_sends_work_to_the_idle_key() {
    let clock = ManualClock::starting_at(CLOCK_START);
    // key-a answers slowly; whichever key the first request takes stays busy meanwhile.
    let script = Script::default().with_key(KEY_A, KeyScript::default().latency(Duration::from_millis(800)));
    let h = Arc::new(start_setup(script, Setup { pool: "strategy: least_loaded", ..Setup::default() }, clock).await);
    // With both keys idle, ties go round-robin from the first key: key-a.
    let slow = spawn_generate(&h, "slow");
    for _ in 0..100 {
        if h.admin_key("key-a").await["in_flight"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(h.admin_key("key-a").await["in_flight"], 1, "the first request is on key-a");
    for i in 0..5 {
        let (status, headers, _) = generate(&h, &format!("while busy {i}")).await;
        assert_eq!(status, 200);
        assert_eq!(key_of(&headers), "key-b", "key-a has one in flight, key-b none");
    }
    let (status, headers, _) = finished(slow).await;
    assert_eq!((status, key_of(&headers).as_str()), (200, "key-a"));
    assert_eq!(h.mock.calls_for_key(KEY_A), 1);
    assert_eq!(h.mock.calls_for_key(KEY_B), 5);
}

#[tokio::test]
async fn random_spreads_over_every_key() {
    let clock = ManualClock::starting_at(CLOCK_START);
    let keys = [("key-a", KEY_A, None), ("key-b", KEY_B, None), ("key-c", KEY_C, None)];
    let h = start_setup(Script::default(), Setup { keys: &keys, pool: "strategy: random", ..Setup::default() }, clock)
        .await;
    let mut order = Vec::new();
    for i in 0..60 {
        let (status, headers, _) = generate(&h, &format!("random {i}")).await;
        assert_eq!(status, 200);
        order.push(key_of(&headers));
    }
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for k in &order {
        *counts.entry(k.as_str()).or_default() += 1;
    }
    for id in ["key-a", "key-b", "key-c"] {
        // Binomial(60, 1/3): fewer than 5 has a probability far below one in a million.
        assert!(counts.get(id).copied().unwrap_or(0) >= 5, "{id} barely used: {counts:?}");
    }
    let cyclic = order.windows(4).all(|w| w[0] == w[3] && w[0] != w[1] && w[1] != w[2] && w[0] != w[2]);
    assert!(!cyclic, "random is not a fixed rotation: {order:?}");
}

#[tokio::test]
async fn keys_of_one_project_share_its_limits() {
    let clock = ManualClock::starting_at(CLOCK_START);
    let keys = [("key-a", KEY_A, Some("shared")), ("key-b", KEY_B, Some("shared")), ("key-c", KEY_C, Some("own"))];
    let setup = Setup { keys: &keys, pool: "limits: { default: { rpm: 2 } }", ..Setup::default() };
    let h = start_setup(Script::default(), setup, clock).await;
    for i in 0..4 {
        let (status, _, body) = generate(&h, &format!("shared {i}")).await;
        assert_eq!(status, 200, "{body}");
    }
    // Two for project `shared` (whichever of its keys), two for project `own`.
    assert_eq!(h.mock.calls_for_key(KEY_A) + h.mock.calls_for_key(KEY_B), 2);
    assert_eq!(h.mock.calls_for_key(KEY_C), 2);
    assert_exhausted(&generate(&h, "one too many").await);
    assert_eq!(h.mock.count(), 4, "the refused request never reached the upstream");
    // Both keys of the project show the project's count.
    for id in ["key-a", "key-b"] {
        let key = h.admin_key(id).await;
        assert_eq!(key["project"], "shared");
        let usage = model_usage(&key, "gemini-2.5-flash");
        assert_eq!(usage["requests_this_minute"], 2, "{key}");
        assert_eq!(usage["remaining_this_minute"], 0, "{key}");
    }
    // Limits are per model: another model has its own count.
    let rsp = h.post("/v1beta/models/gemini-2.5-pro:generateContent", &prompt("other model")).await;
    assert_eq!(rsp.status(), 200);
}

/// Waits until every request that reached the mock has been answered and nothing moved for
/// a few milliseconds: then the requests the mock saw were all admitted at the clock's
/// current time.
async fn settle(h: &Harness, done: &AtomicUsize) {
    let mut last = (usize::MAX, usize::MAX);
    for _ in 0..400 {
        tokio::time::sleep(Duration::from_millis(4)).await;
        let now = (h.mock.count(), done.load(Ordering::SeqCst));
        if now == last && now.0 == now.1 {
            return;
        }
        last = now;
    }
    panic!("requests did not settle: mock saw {}, clients got {}", last.0, last.1);
}

#[tokio::test]
async fn never_more_than_rpm_in_any_rolling_minute_and_the_capacity_is_used() {
    const RPM: usize = 5;
    const TOTAL: usize = 30;
    let clock = ManualClock::starting_at(CLOCK_START);
    let setup =
        Setup { pool: "limits: { default: { rpm: 5 } }", extra: "queue: { max_wait: 10m }\n", ..Setup::default() };
    let h = Arc::new(start_setup(Script::default(), setup, clock.clone()).await);
    let done = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..TOTAL)
        .map(|i| {
            let (h, done) = (h.clone(), done.clone());
            tokio::spawn(async move {
                let answer = generate(&h, &format!("burst {i}")).await;
                done.fetch_add(1, Ordering::SeqCst);
                answer
            })
        })
        .collect();
    // The first minute's capacity (two projects of 5) goes out at once.
    for _ in 0..300 {
        if h.mock.count() >= 2 * RPM {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Drive the clock in half-second steps; note the clock's time of every request the
    // mock receives, per key (each key is its own project here).
    let mut seen: HashMap<String, Vec<u64>> = HashMap::new();
    let mut recorded = 0;
    let end = CLOCK_START + 200_000;
    loop {
        settle(&h, &done).await;
        let requests = h.mock.requests();
        for r in &requests[recorded..] {
            seen.entry(r.key.clone().expect("a pool key")).or_default().push(clock.now());
        }
        recorded = requests.len();
        if recorded == TOTAL || clock.now() >= end {
            break;
        }
        clock.advance(Duration::from_millis(500));
    }
    assert_eq!(recorded, TOTAL, "every request was served by {}", end - CLOCK_START);
    for task in tasks {
        let (status, _, body) = finished(task).await;
        assert_eq!(status, 200, "{body}");
    }
    for (key, times) in &seen {
        for (i, &t) in times.iter().enumerate() {
            let in_window = times[i..].iter().take_while(|&&u| u < t + 60_000).count();
            assert!(in_window <= RPM, "{key}: {in_window} requests in the minute from {t}: {times:?}");
            // Capacity is used: the next request goes out within a second of its slot
            // freeing (60 s plus the window's 100 ms granule, plus the test's 500 ms step).
            if let Some(&later) = times.get(i + RPM) {
                assert!(later - t <= 61_000, "{key}: slot free at {} used only at {later}: {times:?}", t + 60_000);
            }
        }
    }
    // Three bursts of 5 per key: 0 s, ~60.5 s, ~121 s.
    assert!(clock.now() - CLOCK_START <= 122_000, "served by {} ms", clock.now() - CLOCK_START);
}

/// A body whose gemgate estimate is large (each inline image counts 258 tokens) but which
/// the mock counts as 1 prompt token (it reads only text).
fn image_prompt(text: &str) -> String {
    let image = serde_json::json!({ "inlineData": { "mimeType": "image/png", "data": "QUJDRA==" } });
    serde_json::json!({ "contents": [{ "role": "user", "parts": [{ "text": text }, image, image, image] }] })
        .to_string()
}

#[tokio::test]
async fn tpm_is_settled_from_the_usage_the_upstream_reports() {
    let clock = ManualClock::starting_at(CLOCK_START);
    // One project, so every request counts against one TPM of 1000; each estimate is
    // 1 + 3 × 258 = 775: without settling, only one would fit a minute.
    let keys = [("key-a", KEY_A, Some("p")), ("key-b", KEY_B, Some("p"))];
    let setup = Setup { keys: &keys, pool: "limits: { default: { tpm: 1000 } }", ..Setup::default() };
    let h = start_setup(Script::default(), setup, clock).await;
    let mut settled = 0;
    for i in 0..5 {
        let rsp = h.post(GENERATE_PATH, &image_prompt(&format!("i{i}"))).await;
        let status = rsp.status();
        let headers = rsp.headers().clone();
        let body = rsp.text().await.unwrap();
        h.assert_no_key_leak(&headers, &body);
        assert_eq!(status, 200, "request {i}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        settled += v["usageMetadata"]["promptTokenCount"].as_u64().expect("usage");
    }
    assert_eq!(settled, 5, "the mock counts one token per prompt");
    let usage = model_usage(&h.admin_key("key-a").await, "gemini-2.5-flash").clone();
    assert_eq!(usage["tokens_this_minute"], settled, "{usage}");
    assert_eq!(usage["requests_this_minute"], 5, "{usage}");
    // A prompt whose real count is large settles large: 750 + 5 leaves no room for the
    // next estimate of 775.
    let big = prompt(&"x".repeat(3_000));
    assert_eq!(h.post(GENERATE_PATH, &big).await.status(), 200);
    let usage = model_usage(&h.admin_key("key-b").await, "gemini-2.5-flash").clone();
    assert_eq!(usage["tokens_this_minute"], 755, "{usage}");
    let rsp = h.post(GENERATE_PATH, &image_prompt("no room")).await;
    let answer = (rsp.status().as_u16(), rsp.headers().clone(), rsp.text().await.unwrap());
    assert_exhausted(&answer);
}

#[tokio::test]
async fn a_request_waits_for_the_window_and_is_served_when_it_frees() {
    let clock = ManualClock::starting_at(CLOCK_START);
    let setup =
        Setup { pool: "limits: { default: { rpm: 1 } }", extra: "queue: { max_wait: 2m }\n", ..Setup::default() };
    let h = Arc::new(start_setup(Script::default(), setup, clock.clone()).await);
    assert_eq!(generate(&h, "fill a").await.0, 200);
    assert_eq!(generate(&h, "fill b").await.0, 200);
    let waiter = spawn_generate(&h, "waiter");
    pause().await;
    assert!(!waiter.is_finished(), "no key has room: the request waits");
    assert_eq!(h.mock.count(), 2);
    clock.advance(Duration::from_secs(60));
    pause().await;
    assert!(!waiter.is_finished(), "60 s after the fills the window still holds them");
    assert_eq!(h.mock.count(), 2);
    clock.advance(Duration::from_secs(1));
    let (status, _, body) = finished(waiter).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(h.mock.count(), 3);
    assert!(h.mock.last().unwrap().body_text().contains("waiter"));
}

#[tokio::test]
async fn waiters_are_served_in_arrival_order() {
    let clock = ManualClock::starting_at(CLOCK_START);
    let keys = [("key-a", KEY_A, Some("p")), ("key-b", KEY_B, Some("p"))];
    let setup = Setup {
        keys: &keys,
        pool: "limits: { default: { rpm: 1 } }",
        extra: "queue: { max_wait: 10m }\n",
        ..Setup::default()
    };
    let h = Arc::new(start_setup(Script::default(), setup, clock.clone()).await);
    assert_eq!(generate(&h, "fill").await.0, 200);
    let mut waiters = Vec::new();
    for i in 0..4 {
        waiters.push(Some(spawn_generate(&h, &format!("waiter {i}"))));
        pause().await;
    }
    // One request a minute: each minute lets exactly the next in line through.
    for i in 0..4 {
        clock.advance(Duration::from_secs(61));
        let (status, _, body) = finished(waiters[i].take().unwrap()).await;
        assert_eq!(status, 200, "{body}");
        assert!(h.mock.last().unwrap().body_text().contains(&format!("waiter {i}")), "waiter {i} served {i}th");
        pause().await;
        for (j, later) in waiters.iter().enumerate().skip(i + 1) {
            assert!(!later.as_ref().unwrap().is_finished(), "waiter {j} went before its turn");
        }
        assert_eq!(h.mock.count(), i + 2);
    }
}

#[tokio::test]
async fn no_capacity_within_max_wait_is_429_with_the_earliest_free_time() {
    let clock = ManualClock::starting_at(CLOCK_START);
    let setup =
        Setup { pool: "limits: { default: { rpm: 1 } }", extra: "queue: { max_wait: 10s }\n", ..Setup::default() };
    let h = start_setup(Script::default(), setup, clock.clone()).await;
    assert_eq!(generate(&h, "fill first").await.0, 200); // frees at +60.1 s
    clock.advance(Duration::from_secs(5));
    assert_eq!(generate(&h, "fill second").await.0, 200); // frees at +65.1 s
    clock.advance(Duration::from_secs(15));
    // At +20 s the earliest key frees at +60.1 s: beyond max_wait, so 429 at once.
    let started = Instant::now();
    let answer = generate(&h, "too early").await;
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_exhausted(&answer);
    assert_eq!(answer.1["retry-after"], "41", "40.1 s rounded up");
    assert_eq!(retry_delay(&answer.2), "41s");
    assert_eq!(h.mock.count(), 2);
    // At that time a key is indeed free.
    clock.set(CLOCK_START + 60_100);
    let (status, headers, _) = generate(&h, "on time").await;
    assert_eq!(status, 200);
    assert_eq!(key_of(&headers), "key-a");
}

#[tokio::test]
async fn a_waiter_gives_up_when_max_wait_passes() {
    let clock = ManualClock::starting_at(CLOCK_START);
    // Both keys busy with one call each (cap 1): when they free up is unknown, so the
    // third request waits the whole max_wait.
    let script = Script::default().with_default(KeyScript::default().latency(Duration::from_millis(700)));
    let setup = Setup { pool: "max_in_flight_per_key: 1", extra: "queue: { max_wait: 5s }\n", ..Setup::default() };
    let h = Arc::new(start_setup(script, setup, clock.clone()).await);
    let busy = [spawn_generate(&h, "busy 1"), spawn_generate(&h, "busy 2")];
    for _ in 0..100 {
        if h.mock.count() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let waiter = spawn_generate(&h, "waiter");
    pause().await;
    assert!(!waiter.is_finished(), "the waiter waits for a slot");
    clock.advance(Duration::from_secs(5));
    let answer = finished(waiter).await;
    assert_exhausted(&answer);
    assert_eq!(answer.1["retry-after"], "5", "unknown free time: max_wait");
    assert_eq!(retry_delay(&answer.2), "5s");
    for task in busy {
        assert_eq!(finished(task).await.0, 200);
    }
    assert_eq!(h.mock.count(), 2, "the waiter never reached the upstream");
}

#[tokio::test]
async fn a_full_queue_is_429_at_once() {
    let clock = ManualClock::starting_at(CLOCK_START);
    let keys = [("key-a", KEY_A, Some("p")), ("key-b", KEY_B, Some("p"))];
    let setup = Setup {
        keys: &keys,
        pool: "limits: { default: { rpm: 1 } }",
        extra: "queue: { max_wait: 5m, max_waiting: 1 }\n",
        ..Setup::default()
    };
    let h = Arc::new(start_setup(Script::default(), setup, clock.clone()).await);
    assert_eq!(generate(&h, "fill").await.0, 200);
    let waiter = spawn_generate(&h, "waiter");
    pause().await;
    assert!(!waiter.is_finished());
    let started = Instant::now();
    let answer = generate(&h, "no place in line").await;
    assert!(started.elapsed() < Duration::from_secs(1), "refused at once");
    assert_exhausted(&answer);
    assert!(answer.2.contains("waiting"), "the message says the line is full: {}", answer.2);
    clock.advance(Duration::from_secs(61));
    assert_eq!(finished(waiter).await.0, 200, "the one in line is served");
    assert_eq!(h.mock.count(), 2);
}

#[tokio::test]
async fn a_client_that_leaves_the_queue_takes_nothing() {
    let clock = ManualClock::starting_at(CLOCK_START);
    let keys = [("key-a", KEY_A, Some("p")), ("key-b", KEY_B, Some("p"))];
    let setup = Setup {
        keys: &keys,
        pool: "limits: { default: { rpm: 1 } }",
        extra: "queue: { max_wait: 5m }\n",
        ..Setup::default()
    };
    let h = Arc::new(start_setup(Script::default(), setup, clock.clone()).await);
    assert_eq!(generate(&h, "fill").await.0, 200);
    let ghost = spawn_generate(&h, "ghost");
    pause().await;
    assert!(!ghost.is_finished(), "the ghost waits in line");
    ghost.abort();
    let _ = ghost.await;
    pause().await;
    let live = spawn_generate(&h, "live");
    pause().await;
    clock.advance(Duration::from_secs(61));
    let (status, _, body) = finished(live).await;
    assert_eq!(status, 200, "the request behind the ghost is served at the first free slot: {body}");
    assert!(h.mock.requests().iter().all(|r| !r.body_text().contains("ghost")), "the ghost never went upstream");
    let usage = model_usage(&h.admin_key("key-a").await, "gemini-2.5-flash").clone();
    assert_eq!(usage["requests_today"], 2, "fill and live, not the ghost: {usage}");
    assert_eq!(usage["requests_this_minute"], 1, "{usage}");
}

#[tokio::test]
async fn in_flight_is_capped_per_key() {
    let clock = ManualClock::starting_at(CLOCK_START);
    let script = Script::default().with_default(KeyScript::default().latency(Duration::from_millis(300)));
    let setup = Setup { pool: "max_in_flight_per_key: 1", ..Setup::default() };
    let h = Arc::new(start_setup(script, setup, clock).await);
    let done = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..4)
        .map(|i| {
            let (h, done) = (h.clone(), done.clone());
            tokio::spawn(async move {
                let answer = generate(&h, &format!("capped {i}")).await;
                done.fetch_add(1, Ordering::SeqCst);
                answer
            })
        })
        .collect();
    let (mut most_upstream, mut most_in_flight) = (0, 0);
    while done.load(Ordering::SeqCst) < 4 && started.elapsed() < Duration::from_secs(5) {
        // Requests the mock has received but the clients have not had answered yet.
        most_upstream = most_upstream.max(h.mock.count().saturating_sub(done.load(Ordering::SeqCst)));
        for key in h.admin_keys().await["keys"].as_array().unwrap() {
            let n = key["in_flight"].as_u64().unwrap();
            assert!(n <= 1, "over the cap: {key}");
            most_in_flight = most_in_flight.max(n);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut per_key: HashMap<String, usize> = HashMap::new();
    for task in tasks {
        let (status, headers, _) = finished(task).await;
        assert_eq!(status, 200);
        *per_key.entry(key_of(&headers)).or_default() += 1;
    }
    assert!(most_upstream <= 2, "{most_upstream} at the upstream at once");
    assert_eq!(most_in_flight, 1);
    assert!(started.elapsed() >= Duration::from_millis(550), "two rounds of 300 ms: {:?}", started.elapsed());
    assert_eq!(per_key.get("key-a"), Some(&2), "{per_key:?}");
    assert_eq!(per_key.get("key-b"), Some(&2), "{per_key:?}");
    assert_eq!(h.mock.count(), 4);
}
