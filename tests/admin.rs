//! `GET /admin/keys` (SPEC 7, issue 3): every key's id, pool, project, state, in-flight
//! calls and usage per model, never a key's value; behind `Authorization: Bearer` when
//! `admin.token` is set (`/healthz` and `/readyz` stay open for probes).

mod support;

use gemgate::quota::clock::ManualClock;
use mock_gemini::Script;
use support::*;

#[tokio::test]
async fn admin_keys_lists_every_key_with_its_usage_and_no_secret() {
    let clock = ManualClock::starting_at(CLOCK_START);
    let keys = [("key-a", KEY_A, Some("proj-1")), ("key-b", KEY_B, None)];
    let setup = Setup {
        keys: &keys,
        pool: "limits: { default: { rpm: 10, tpm: 100000, rpd: 100 } }\nmax_in_flight_per_key: 8",
        ..Setup::default()
    };
    let h = start_setup(Script::default(), setup, clock).await;
    for _ in 0..2 {
        let rsp = h.post(GENERATE_PATH, GENERATE).await;
        assert_eq!(rsp.status(), 200);
        let headers = rsp.headers().clone();
        h.assert_no_key_leak(&headers, &rsp.text().await.unwrap());
    }
    let rsp = h.http.get(h.admin_url("/admin/keys")).send().await.unwrap();
    assert_eq!(rsp.status(), 200);
    assert!(rsp.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    let headers = rsp.headers().clone();
    let body = rsp.text().await.unwrap();
    h.assert_no_key_leak(&headers, &body);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let list = v["keys"].as_array().expect("a list of keys");
    let ids: Vec<&str> = list.iter().map(|k| k["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["key-a", "key-b"]);
    for (key, project) in list.iter().zip(["proj-1", "key-b"]) {
        assert_eq!(key["pool"], "default", "{key}");
        assert_eq!(key["project"], project, "a key without project is its own: {key}");
        assert_eq!(key["state"], "active", "{key}");
        assert_eq!(key["in_flight"], 0, "{key}");
        assert_eq!(key["max_in_flight"], 8, "{key}");
        assert!(key["disabled"].is_null(), "{key}");
        let models = key["models"].as_array().unwrap();
        assert_eq!(models.len(), 1, "{key}");
        let m = &models[0];
        assert_eq!(m["model"], "gemini-2.5-flash");
        // Round-robin: one call per key.
        assert_eq!(m["requests_this_minute"], 1, "{m}");
        assert_eq!(m["requests_today"], 1, "{m}");
        assert_eq!(m["rpm"], 10, "{m}");
        assert_eq!(m["tpm"], 100000, "{m}");
        assert_eq!(m["rpd"], 100, "{m}");
        assert_eq!(m["remaining_this_minute"], 9, "{m}");
        assert_eq!(m["remaining_today"], 99, "{m}");
        assert!(m["tokens_this_minute"].as_u64().unwrap() > 0, "{m}");
        assert!(m["cooldown_until"].is_null(), "{m}");
    }
    // Neither the value nor a hint of it (the mock's view of the keys is the reference).
    for key in ALL_KEYS {
        assert!(!body.contains(&key[..12]), "a key prefix in {body}");
    }
}

#[tokio::test]
async fn admin_keys_needs_the_admin_token_when_one_is_set() {
    const TOKEN: &str = "admin-5ecret-for-tests";
    std::env::set_var("GEMGATE_TEST_ADMIN_TOKEN", TOKEN);
    let clock = ManualClock::starting_at(CLOCK_START);
    let setup = Setup { admin: "token: { env: GEMGATE_TEST_ADMIN_TOKEN }", ..Setup::default() };
    let h = start_setup(Script::default(), setup, clock).await;
    let url = h.admin_url("/admin/keys");
    assert_eq!(h.http.get(&url).send().await.unwrap().status(), 401, "no token");
    assert_eq!(h.http.get(&url).bearer_auth("wrong").send().await.unwrap().status(), 401, "wrong token");
    let tampered = format!("{TOKEN}x");
    assert_eq!(h.http.get(&url).bearer_auth(tampered).send().await.unwrap().status(), 401, "longer token");
    assert_eq!(h.http.get(&url).header("authorization", TOKEN).send().await.unwrap().status(), 401, "not Bearer");
    let rsp = h.http.get(&url).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(rsp.status(), 200);
    let headers = rsp.headers().clone();
    let body = rsp.text().await.unwrap();
    h.assert_no_key_leak(&headers, &body);
    assert!(!body.contains(TOKEN));
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["keys"].as_array().unwrap().len(), 2);
    // Probes stay open.
    assert_eq!(h.http.get(h.admin_url("/healthz")).send().await.unwrap().status(), 200);
    assert_eq!(h.readyz().await, 200);
    assert!(!logs().contains(TOKEN), "the admin token is never logged");
}
