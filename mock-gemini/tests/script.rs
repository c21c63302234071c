//! Wire tests of scripted behaviour per key: quota 429s, rpm window, key-level errors,
//! scripted statuses, latency, reset, hang, live script replacement.

mod support;

use std::time::{Duration, Instant};

use mock_gemini::{KeyScript, MockServer, Script};
use support::*;

#[tokio::test]
async fn quota_after_answers_429_with_quota_failure_and_retry_info() {
    let script = Script::default()
        .with_key("a", KeyScript::default().quota_after(2).retry_delay(Duration::from_secs(30)))
        .with_key("b", KeyScript::default().quota_after(1));
    let up = MockServer::spawn(script).await;
    for _ in 0..2 {
        assert_eq!(post(&up, GEN, "a", BODY).await.status(), 200);
    }
    // Non-model calls do not count.
    assert_eq!(get(&up, "/v1beta/models", "a").await.status(), 200);
    let (s, v) = json(post(&up, GEN, "a", BODY).await).await;
    assert_eq!(s, 429);
    assert_eq!(v["error"]["code"], 429);
    assert_eq!(v["error"]["status"], "RESOURCE_EXHAUSTED");
    assert_eq!(detail_types(&v), ["QuotaFailure", "Help", "RetryInfo"]);
    let violation = &v["error"]["details"][0]["violations"][0];
    assert_eq!(violation["quotaId"], "GenerateRequestsPerMinutePerProjectPerModel-FreeTier");
    assert_eq!(violation["quotaDimensions"]["model"], "gemini-2.5-flash");
    assert_eq!(violation["quotaValue"], "2");
    assert_eq!(v["error"]["details"][2]["retryDelay"], "30s");

    // Without retry_delay: no RetryInfo.
    assert_eq!(post(&up, GEN, "b", BODY).await.status(), 200);
    let (s, v) = json(post(&up, GEN, "b", BODY).await).await;
    assert_eq!(s, 429);
    assert_eq!(detail_types(&v), ["QuotaFailure", "Help"]);
    // Other keys are unaffected.
    assert_eq!(post(&up, GEN, "c", BODY).await.status(), 200);
}

#[tokio::test]
async fn daily_quota_id_is_reported() {
    let id = "GenerateRequestsPerDayPerProjectPerModel-FreeTier";
    let up = MockServer::spawn(Script::default().with_default(KeyScript::default().quota_after(0).quota_id(id))).await;
    let (s, v) = json(post(&up, GEN, "k", BODY).await).await;
    assert_eq!(s, 429);
    assert_eq!(v["error"]["details"][0]["violations"][0]["quotaId"], id);
}

#[tokio::test]
async fn rpm_is_a_rolling_window() {
    let script = Script::default().rpm_window(Duration::from_millis(400)).with_key("r", KeyScript::default().rpm(2));
    let up = MockServer::spawn(script).await;
    let t0 = Instant::now();
    assert_eq!(post(&up, GEN, "r", BODY).await.status(), 200);
    assert_eq!(post(&up, GEN, "r", BODY).await.status(), 200);
    let (s, v) = json(post(&up, GEN, "r", BODY).await).await;
    assert_eq!(s, 429);
    assert_eq!(detail_types(&v), ["QuotaFailure", "Help", "RetryInfo"]);
    assert_eq!(v["error"]["details"][0]["violations"][0]["quotaValue"], "2");
    // The window frees as the first call ages out.
    tokio::time::sleep(Duration::from_millis(420).saturating_sub(t0.elapsed())).await;
    assert_eq!(post(&up, GEN, "r", BODY).await.status(), 200);
    // OpenAI chat is a model call too: it fills the window, then is refused.
    let chat = || {
        client()
            .post(format!("{}/v1beta/openai/chat/completions", up.base_url()))
            .bearer_auth("r")
            .body(r#"{"model":"gemini-2.5-pro","messages":[]}"#)
            .send()
    };
    assert_eq!(chat().await.unwrap().status(), 200);
    let (s, v) = json(chat().await.unwrap()).await;
    assert_eq!(s, 429);
    assert_eq!(v["error"]["details"][0]["violations"][0]["quotaDimensions"]["model"], "gemini-2.5-pro");
    assert_eq!(up.calls_for_key("r"), 6);
}

#[tokio::test]
async fn key_level_errors() {
    let script = Script::default()
        .with_key("inv", KeyScript::default().invalid())
        .with_key("blk", KeyScript::default().blocked())
        .reject_key("sk-perf-client-0001");
    let up = MockServer::spawn(script).await;
    for key in ["inv", "sk-perf-client-0001"] {
        let (s, v) = json(post(&up, GEN, key, BODY).await).await;
        assert_eq!(s, 400);
        assert_eq!(v["error"]["status"], "INVALID_ARGUMENT");
        assert_eq!(v["error"]["message"], "API key not valid. Please pass a valid API key.");
        let info = &v["error"]["details"][0];
        assert_eq!(info["@type"], "type.googleapis.com/google.rpc.ErrorInfo");
        assert_eq!(info["reason"], "API_KEY_INVALID");
        assert_eq!(info["domain"], "googleapis.com");
        assert_eq!(info["metadata"]["service"], "generativelanguage.googleapis.com");
    }
    // Key-level errors apply to every call, not only model methods.
    let (s, v) = json(get(&up, "/v1beta/models/gemini-2.5-flash", "blk").await).await;
    assert_eq!(s, 403);
    assert_eq!(v["error"]["status"], "PERMISSION_DENIED");
    assert_eq!(v["error"]["details"][0]["reason"], "API_KEY_SERVICE_BLOCKED");
}

#[tokio::test]
async fn status_and_fail_first() {
    let script = Script::default()
        .with_key("s", KeyScript::default().status(503))
        .with_key("f", KeyScript::default().status(500).fail_first(2));
    let up = MockServer::spawn(script).await;
    for _ in 0..2 {
        let (s, v) = json(post(&up, GEN, "s", BODY).await).await;
        assert_eq!(s, 503);
        assert_eq!(v["error"]["status"], "UNAVAILABLE");
    }
    let (s, v) = json(post(&up, GEN, "f", BODY).await).await;
    assert_eq!((s, v["error"]["status"].as_str()), (500, Some("INTERNAL")));
    assert_eq!(post(&up, GEN, "f", BODY).await.status(), 500);
    assert_eq!(post(&up, GEN, "f", BODY).await.status(), 200);
    assert_eq!(post(&up, GEN, "f", BODY).await.status(), 200);
}

#[tokio::test]
async fn latency_delays_the_head() {
    let up =
        MockServer::spawn(Script::default().with_key("slow", KeyScript::default().latency(Duration::from_millis(150))))
            .await;
    let t = Instant::now();
    assert_eq!(post(&up, GEN, "slow", BODY).await.status(), 200);
    assert!(t.elapsed() >= Duration::from_millis(150));
}

#[tokio::test]
async fn reset_closes_and_hang_never_answers() {
    let script =
        Script::default().with_key("rst", KeyScript::default().reset()).with_key("hang", KeyScript::default().hang());
    let up = MockServer::spawn(script).await;
    let c = client();
    let err =
        c.post(format!("{}{GEN}", up.base_url())).header("x-goog-api-key", "rst").body(BODY).send().await.unwrap_err();
    assert!(!err.is_timeout(), "{err:?}");
    let err = c
        .post(format!("{}{GEN}", up.base_url()))
        .header("x-goog-api-key", "hang")
        .body(BODY)
        .timeout(Duration::from_millis(200))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    // Both were read and recorded.
    assert_eq!(up.calls_for_key("rst"), 1);
    assert_eq!(up.calls_for_key("hang"), 1);
    up.shutdown();
}

#[tokio::test]
async fn set_script_replaces_behaviour_live_and_reset_forgets_counters() {
    let up = MockServer::spawn(Script::default()).await;
    assert_eq!(post(&up, GEN, "k", BODY).await.status(), 200);
    up.set_script(Script::default().with_key("k", KeyScript::default().quota_after(1)));
    // The key already made one model call.
    assert_eq!(post(&up, GEN, "k", BODY).await.status(), 429);
    up.reset();
    assert_eq!(up.calls_for_key("k"), 0);
    assert_eq!(post(&up, GEN, "k", BODY).await.status(), 200);
    assert_eq!(post(&up, GEN, "k", BODY).await.status(), 429);
    assert_eq!(up.requests().len(), 2);
}

#[test]
fn script_from_yaml_file() {
    let dir = std::env::temp_dir().join(format!("mock-gemini-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("script.yaml");
    std::fs::write(
        &path,
        "default: { chunks: 2 }\nkeys:\n  test-key-a: { latency: 10ms, rpm: 15, retry_delay: 30s }\nreject_keys: [x]\n",
    )
    .unwrap();
    let s = Script::from_yaml_file(&path).unwrap();
    assert_eq!(s.default.chunks, Some(2));
    assert_eq!(s.keys["test-key-a"].latency, Some(Duration::from_millis(10)));
    assert_eq!(s.reject_keys, ["x"]);
    assert!(Script::from_yaml_file(&dir.join("missing.yaml")).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn max_recorded_bounds_the_log_but_not_the_counts() {
    let up = MockServer::spawn(Script::default().max_recorded(2)).await;
    for key in ["a", "b", "c"] {
        assert_eq!(post(&up, GEN, key, BODY).await.status(), 200);
    }
    let keys: Vec<_> = up.requests().into_iter().map(|r| r.key.unwrap()).collect();
    assert_eq!(keys, ["b", "c"]);
    assert_eq!(up.count(), 3);
    up.set_script(Script::default().max_recorded(0));
    assert_eq!(post(&up, GEN, "d", BODY).await.status(), 200);
    assert_eq!(up.count(), 4);
    assert_eq!(up.calls_for_key("d"), 1);
    assert_eq!(up.requests().len(), 2);
}
