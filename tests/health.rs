//! Key health (SPEC 4, issue 3): an upstream 429 cools the key's project for the model
//! (for Google's RetryInfo, or until the Pacific midnight for a per-day quota); a key-level
//! 400/403 disables the key until a probe finds it answering again; a 403 about one
//! resource changes nothing; with every key disabled gemgate answers 503 and is not ready.
//! Cooldowns and probes run on a ManualClock.

mod support;

use gemgate::quota::clock::{Clock, ManualClock};
use mock_gemini::{KeyScript, Script};
use reqwest::header::HeaderMap;
use std::time::Duration;
use support::*;

/// One finished exchange: status, headers, body.
type Answer = (u16, HeaderMap, String);

async fn generate(h: &Harness) -> Answer {
    let rsp = h.post(GENERATE_PATH, GENERATE).await;
    let status = rsp.status().as_u16();
    let headers = rsp.headers().clone();
    let body = rsp.text().await.expect("a body");
    h.assert_no_key_leak(&headers, &body);
    (status, headers, body)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers.get(name).map_or("", |v| v.to_str().unwrap())
}

/// The flash model's entry of a key in `/admin/keys`.
fn flash(key: &serde_json::Value) -> &serde_json::Value {
    key["models"]
        .as_array()
        .and_then(|models| models.iter().find(|m| m["model"] == "gemini-2.5-flash"))
        .unwrap_or_else(|| panic!("no flash usage in {key}"))
}

/// Polls `/admin/keys` (bounded) until key `id`'s next probe is due at `at`.
async fn wait_for_next_probe(h: &Harness, id: &str, at: u64) -> serde_json::Value {
    for _ in 0..300 {
        let key = h.admin_key(id).await;
        if key["disabled"]["next_probe"].as_str().is_some_and(|t| ms(t) == at) {
            return key;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{id}'s next probe never moved to {at}: {}", h.admin_key(id).await);
}

/// Requests until one is answered after a retry; returns it.
async fn first_retried(h: &Harness) -> Answer {
    for _ in 0..4 {
        let answer = generate(h).await;
        if header(&answer.1, "x-gemgate-attempts") == "2" {
            return answer;
        }
        assert_eq!(answer.0, 200, "{}", answer.2);
    }
    panic!("no request was retried");
}

#[tokio::test]
async fn an_upstream_429_with_retry_info_cools_the_key_for_that_long() {
    let clock = ManualClock::starting_at(CLOCK_START);
    let script =
        Script::default().with_key(KEY_A, KeyScript::default().quota_after(1).retry_delay(Duration::from_secs(30)));
    let h = start_clocked(script, "", clock.clone()).await;
    // key-a serves its one call, then answers 429: that call is retried on key-b.
    let (status, headers, body) = first_retried(&h).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(header(&headers, "x-gemgate-key"), "key-b");
    let cooled_at = clock.now();
    let calls_a = h.mock.calls_for_key(KEY_A);
    assert_eq!(calls_a, 2, "one served, one 429");
    let key = h.admin_key("key-a").await;
    assert_eq!(key["state"], "cooling", "{key}");
    assert_eq!(ms(flash(&key)["cooldown_until"].as_str().unwrap()), cooled_at + 30_000, "{key}");
    assert_eq!(flash(&key)["cooldown_cause"], "per_minute");
    assert_eq!(h.admin_key("key-b").await["state"], "active");
    // Not used while cooling.
    for _ in 0..4 {
        let (status, headers, _) = generate(&h).await;
        assert_eq!((status, header(&headers, "x-gemgate-key")), (200, "key-b"));
        assert_eq!(header(&headers, "x-gemgate-attempts"), "1");
    }
    clock.advance(Duration::from_millis(29_900));
    assert_eq!(generate(&h).await.0, 200);
    assert_eq!(h.mock.calls_for_key(KEY_A), calls_a, "still cooling at 29.9 s");
    assert_eq!(h.admin_key("key-a").await["state"], "cooling");
    // The quota is back upstream; once the cooldown ends key-a is used again.
    h.mock.set_script(Script::default());
    clock.advance(Duration::from_millis(100));
    assert_eq!(h.admin_key("key-a").await["state"], "active");
    let mut used = Vec::new();
    for _ in 0..2 {
        let (status, headers, _) = generate(&h).await;
        assert_eq!(status, 200);
        used.push(header(&headers, "x-gemgate-key").to_string());
    }
    assert!(used.contains(&"key-a".to_string()), "{used:?}");
    assert_eq!(h.mock.calls_for_key(KEY_A), calls_a + 1);
}

#[tokio::test]
async fn a_per_day_quota_cools_until_the_pacific_midnight() {
    // 23:30 UTC on 4 December is 15:30 PST: the Pacific day ends at 08:00 UTC.
    let clock = ManualClock::starting_at(ms("2026-12-04T23:30:00Z"));
    let per_day = KeyScript::default()
        .quota_after(0)
        .retry_delay(Duration::from_secs(30))
        .quota_id("GenerateRequestsPerDayPerProjectPerModel-FreeTier");
    let h = start_clocked(Script::default().with_key(KEY_A, per_day), "", clock.clone()).await;
    let (status, headers, body) = first_retried(&h).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(header(&headers, "x-gemgate-key"), "key-b");
    let key = h.admin_key("key-a").await;
    assert_eq!(key["state"], "cooling", "{key}");
    assert_eq!(ms(flash(&key)["cooldown_until"].as_str().unwrap()), ms("2026-12-05T08:00:00Z"), "{key}");
    assert_eq!(flash(&key)["cooldown_cause"], "per_day");
    // Past the RetryInfo delay and past UTC midnight: still the same Pacific day.
    clock.set(ms("2026-12-05T07:59:59Z"));
    assert_eq!(h.admin_key("key-a").await["state"], "cooling");
    let calls_a = h.mock.calls_for_key(KEY_A);
    for _ in 0..2 {
        assert_eq!(header(&generate(&h).await.1, "x-gemgate-key"), "key-b");
    }
    assert_eq!(h.mock.calls_for_key(KEY_A), calls_a);
    clock.set(ms("2026-12-05T08:00:00Z"));
    assert_eq!(h.admin_key("key-a").await["state"], "active");
}

#[tokio::test]
async fn an_invalid_key_is_disabled_and_probed_back() {
    let clock = ManualClock::starting_at(CLOCK_START);
    let script = Script::default().with_key(KEY_A, KeyScript::default().invalid());
    let h = start_clocked(script, "health: { probe_interval: 1m }\n", clock.clone()).await;
    let (status, headers, body) = generate(&h).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(header(&headers, "x-gemgate-attempts"), "2", "retried after key-a's 400");
    assert_eq!(header(&headers, "x-gemgate-key"), "key-b");
    let disabled_at = clock.now();
    let key = h.admin_key("key-a").await;
    assert_eq!(key["state"], "disabled", "{key}");
    assert_eq!(key["disabled"]["reason"], "API_KEY_INVALID");
    assert_eq!(ms(key["disabled"]["next_probe"].as_str().unwrap()), disabled_at + 60_000);
    assert_eq!(h.readyz().await, 200, "key-b is usable");
    for _ in 0..3 {
        let (status, headers, _) = generate(&h).await;
        assert_eq!((status, header(&headers, "x-gemgate-key")), (200, "key-b"));
    }
    assert_eq!(h.mock.calls_for_key(KEY_A), 1);
    // A probe while the key is still invalid keeps it disabled and schedules the next.
    clock.advance(Duration::from_secs(60));
    for _ in 0..300 {
        if h.mock.calls_for_key(KEY_A) == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let probe = h.mock.requests().into_iter().filter(|r| r.key.as_deref() == Some(KEY_A)).nth(1).expect("a probe");
    assert_eq!((probe.method.as_str(), probe.path.as_str()), ("GET", "/v1beta/models/gemini-2.5-flash"));
    let key = wait_for_next_probe(&h, "key-a", disabled_at + 120_000).await;
    assert_eq!(key["state"], "disabled");
    // The key works again: the next probe brings it back, and it serves.
    h.mock.set_script(Script::default());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(h.admin_key("key-a").await["state"], "disabled", "not before the probe is due");
    clock.advance(Duration::from_secs(60));
    h.wait_for_state("key-a", "active").await;
    let mut used = Vec::new();
    for _ in 0..2 {
        let (status, headers, _) = generate(&h).await;
        assert_eq!(status, 200);
        used.push(header(&headers, "x-gemgate-key").to_string());
    }
    assert!(used.contains(&"key-a".to_string()), "{used:?}");
}

#[tokio::test]
async fn a_blocked_key_is_disabled_with_its_reason() {
    let clock = ManualClock::starting_at(CLOCK_START);
    let h = start_clocked(Script::default().with_key(KEY_A, KeyScript::default().blocked()), "", clock).await;
    let (status, headers, body) = generate(&h).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(header(&headers, "x-gemgate-attempts"), "2");
    let key = h.admin_key("key-a").await;
    assert_eq!(key["state"], "disabled", "{key}");
    assert_eq!(key["disabled"]["reason"], "API_KEY_SERVICE_BLOCKED");
}

#[tokio::test]
async fn a_403_without_a_key_level_reason_does_not_disable_the_key() {
    let clock = ManualClock::starting_at(CLOCK_START);
    let h = start_clocked(Script::default().with_key(KEY_A, KeyScript::default().status(403)), "", clock).await;
    // Round-robin starts at key-a: its 403 (no ErrorInfo) is the answer, not retried.
    let (status, headers, body) = generate(&h).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(header(&headers, "x-gemgate-key"), "key-a");
    assert_eq!(header(&headers, "x-gemgate-attempts"), "1");
    assert_eq!(h.admin_key("key-a").await["state"], "active");
    assert_eq!(h.mock.calls_for_key(KEY_A), 1);
}

#[tokio::test]
async fn a_403_about_a_foreign_file_does_not_disable_the_key() {
    let clock = ManualClock::starting_at(CLOCK_START);
    let h = start_clocked(Script::default(), "", clock).await;
    // A file of key-b's project, uploaded straight to the mock: gemgate holds no pin for it.
    let start = h
        .http
        .post(format!("{}/upload/v1beta/files", h.mock.base_url()))
        .header("x-goog-api-key", KEY_B)
        .header("x-goog-upload-protocol", "resumable")
        .header("x-goog-upload-command", "start")
        .header("content-type", "application/json")
        .body(r#"{"file":{"display_name":"foreign"}}"#)
        .send()
        .await
        .unwrap();
    let url = start.headers()["x-goog-upload-url"].to_str().unwrap().to_string();
    let done = h
        .http
        .post(url)
        .header("x-goog-upload-command", "upload, finalize")
        .header("x-goog-upload-offset", "0")
        .body("hello world")
        .send()
        .await
        .unwrap();
    let file: serde_json::Value = done.json().await.unwrap();
    let name = file["file"]["name"].as_str().unwrap().to_string();
    // Round-robin: one GET goes out with key-a (403 from the mock), one with key-b.
    let mut seen = Vec::new();
    for _ in 0..2 {
        let rsp =
            h.http.get(h.url(&format!("/v1beta/{name}"))).header("x-goog-api-key", "client").send().await.unwrap();
        let (status, headers) = (rsp.status().as_u16(), rsp.headers().clone());
        let body = rsp.text().await.unwrap();
        h.assert_no_key_leak(&headers, &body);
        seen.push((header(&headers, "x-gemgate-key").to_string(), status));
    }
    seen.sort();
    assert_eq!(seen, [("key-a".to_string(), 403), ("key-b".to_string(), 200)]);
    for id in ["key-a", "key-b"] {
        assert_eq!(h.admin_key(id).await["state"], "active", "{id}");
    }
    // key-a still serves.
    let mut used = Vec::new();
    for _ in 0..2 {
        let (status, headers, _) = generate(&h).await;
        assert_eq!(status, 200);
        used.push(header(&headers, "x-gemgate-key").to_string());
    }
    assert!(used.contains(&"key-a".to_string()), "{used:?}");
}

#[tokio::test]
async fn with_every_key_disabled_the_answer_is_503_and_readyz_fails() {
    let clock = ManualClock::starting_at(CLOCK_START);
    let script = Script::default().with_default(KeyScript::default().invalid());
    let h = start_clocked(script, "health: { probe_interval: 2m }\n", clock.clone()).await;
    assert_eq!(h.readyz().await, 200);
    for round in 0..2 {
        let (status, headers, body) = generate(&h).await;
        assert_eq!(status, 503, "round {round}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"]["status"], "UNAVAILABLE", "{body}");
        assert!(v["error"]["message"].as_str().unwrap().contains("API_KEY_INVALID"), "{body}");
        assert_eq!(header(&headers, "retry-after"), "120", "the next probe is 2 min away");
        assert_eq!(h.mock.count(), 2, "one call per key, then none");
    }
    assert_eq!(h.readyz().await, 503, "no key is usable");
    // The keys work again: probes bring them back.
    h.mock.set_script(Script::default());
    clock.advance(Duration::from_secs(120));
    h.wait_for_state("key-a", "active").await;
    h.wait_for_state("key-b", "active").await;
    assert_eq!(h.readyz().await, 200);
    assert_eq!(generate(&h).await.0, 200);
}

#[tokio::test]
async fn every_key_cooling_gives_a_429_with_the_earliest_end() {
    let clock = ManualClock::starting_at(CLOCK_START);
    let cool = |secs| KeyScript::default().quota_after(0).retry_delay(Duration::from_secs(secs));
    let script = Script::default().with_key(KEY_A, cool(30)).with_key(KEY_B, cool(45));
    let h = start_clocked(script, "", clock.clone()).await;
    let (status, headers, body) = generate(&h).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(h.mock.count(), 2, "one attempt on each key, then no key has capacity");
    // Not the upstream's last 429 (45 s on key-b) but gemgate's: the earliest key back.
    assert_eq!(header(&headers, "retry-after"), "30", "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["status"], "RESOURCE_EXHAUSTED");
    assert_eq!(v["error"]["details"][0]["retryDelay"], "30s");
    assert!(v["error"]["message"].as_str().unwrap().contains("no key of pool"), "{body}");
}
