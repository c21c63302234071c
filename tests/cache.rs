//! The response cache, memory backend (SPEC 5): hits, misses and bypasses; canonical keys;
//! time to live, size bound and entry cap; streams replayed chunk for chunk; Cache-Control;
//! gzip for clients that do and do not accept it; single flight and its cancellation;
//! per-client scope; only clean 2xx answers stored.

mod support;

use bytes::Bytes;
use mock_gemini::{KeyScript, Script};
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;
use support::*;
use tokio::time::{sleep, timeout, Instant};

const CACHE: &str = "cache: { backend: memory }\n";
const SSE_PATH: &str = "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse";
const ARRAY_PATH: &str = "/v1beta/models/gemini-2.5-flash:streamGenerateContent";
const COUNT_PATH: &str = "/v1beta/models/gemini-2.5-flash:countTokens";

/// An answer as the client saw it.
struct Seen {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Seen {
    async fn read(rsp: reqwest::Response) -> Seen {
        let status = rsp.status().as_u16();
        let headers = rsp.headers().clone();
        let body = rsp.text().await.expect("a whole body");
        Seen { status, headers, body }
    }

    /// `x-gemgate-cache`.
    fn cache(&self) -> &str {
        self.headers.get("x-gemgate-cache").map_or("<none>", |v| v.to_str().unwrap_or("<bad>"))
    }

    fn key(&self) -> Option<&str> {
        self.headers.get("x-gemgate-key").and_then(|v| v.to_str().ok())
    }
}

/// POSTs `body` to `path` and reads the answer, checking it leaks no key.
async fn send(h: &Harness, path: &str, body: &str) -> Seen {
    let seen = Seen::read(h.post(path, body).await).await;
    h.assert_no_key_leak(&seen.headers, &seen.body);
    seen
}

/// Like `send`, with one extra request header.
async fn send_with(h: &Harness, path: &str, body: &str, header: (&str, &str)) -> Seen {
    let rsp = h
        .http
        .post(h.url(path))
        .header("x-goog-api-key", "client-token")
        .header("content-type", "application/json")
        .header(header.0, header.1)
        .body(body.to_string())
        .send()
        .await
        .expect("request reaches gemgate");
    let seen = Seen::read(rsp).await;
    h.assert_no_key_leak(&seen.headers, &seen.body);
    seen
}

/// A generateContent body asking about `text`.
fn prompt(text: &str) -> String {
    serde_json::json!({ "contents": [{ "role": "user", "parts": [{ "text": text }] }] }).to_string()
}

/// Requests of every key today, by `/admin/keys` (what quota the calls took).
async fn requests_today(h: &Harness) -> u64 {
    let all = h.admin_keys().await;
    all["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .flat_map(|k| k["models"].as_array().cloned().unwrap_or_default())
        .map(|m| m["requests_today"].as_u64().unwrap_or(0))
        .sum()
}

/// `/admin/cache` counters.
async fn cache_stats(h: &Harness) -> serde_json::Value {
    let rsp = h.http.get(h.admin_url("/admin/cache")).send().await.expect("admin answers");
    assert_eq!(rsp.status(), 200);
    rsp.json().await.expect("JSON counters")
}

#[tokio::test]
async fn a_repeat_is_a_hit_without_a_key_or_quota() {
    let h = start(Script::default(), CACHE).await;
    let first = send(&h, GENERATE_PATH, GENERATE).await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.cache(), "miss");
    assert!(first.key().is_some(), "a miss names the key that served it");
    for _ in 0..2 {
        let again = send(&h, GENERATE_PATH, GENERATE).await;
        assert_eq!(again.status, 200);
        assert_eq!(again.cache(), "hit");
        assert_eq!(again.key(), None, "a hit used no key");
        assert!(again.headers.get("x-gemgate-attempts").is_none(), "a hit made no attempt");
        assert_eq!(again.headers["x-gemgate-model"], "gemini-2.5-flash");
        assert_eq!(again.headers["content-type"], first.headers["content-type"]);
        assert_eq!(again.body, first.body, "the stored answer, byte for byte");
    }
    assert_eq!(h.mock.count(), 1);
    assert_eq!(requests_today(&h).await, 1, "hits take no key quota");
    let stats = cache_stats(&h).await;
    assert_eq!(stats["misses"], 1, "{stats}");
    assert_eq!(stats["hits"], 2, "{stats}");
    assert_eq!(stats["stores"], 1, "{stats}");
}

#[tokio::test]
async fn without_a_cache_section_the_harness_bypasses() {
    // The harness turns the cache off for tests of other features; this pins that down.
    let h = start(Script::default(), "").await;
    for _ in 0..2 {
        assert_eq!(send(&h, GENERATE_PATH, GENERATE).await.cache(), "bypass");
    }
    assert_eq!(h.mock.count(), 2);
}

#[tokio::test]
async fn keys_are_canonical_json_but_numbers_as_written() {
    let h = start(Script::default(), CACHE).await;
    let base = r#"{"contents":[{"role":"user","parts":[{"text":"hi é"}]}],"generationConfig":{"temperature":0.5}}"#;
    let first = send(&h, GENERATE_PATH, base).await;
    assert_eq!(first.cache(), "miss");
    let respelled = "{ \"generationConfig\": { \"temperature\": 0.5 },\n  \"contents\": [ { \"parts\": [ { \"text\": \"hi \\u00e9\" } ],\n \"role\": \"user\" } ] }";
    let same = send(&h, GENERATE_PATH, respelled).await;
    assert_eq!(same.cache(), "hit", "key order, whitespace and escapes are spelling, not content");
    assert_eq!(same.body, first.body);
    assert_eq!(h.mock.count(), 1);

    let other_number = base.replace("0.5", "0.50");
    assert_eq!(send(&h, GENERATE_PATH, &other_number).await.cache(), "miss", "numbers are kept as written");
    assert_eq!(h.mock.count(), 2);

    let path_with = |query: &str| format!("{GENERATE_PATH}?{query}");
    assert_eq!(send(&h, &path_with("foo=bar"), base).await.cache(), "miss", "another query is another request");
    assert_eq!(send(&h, &path_with("foo=bar"), base).await.cache(), "hit");
    assert_eq!(h.mock.count(), 3);

    // `key=` is a credential, never part of the key: the query-key spelling shares the cache.
    let rsp = h
        .http
        .post(h.url(&path_with("key=another-client-token")))
        .header("content-type", "application/json")
        .body(base)
        .send()
        .await
        .unwrap();
    let seen = Seen::read(rsp).await;
    h.assert_no_key_leak(&seen.headers, &seen.body);
    assert_eq!(seen.status, 200, "{}", seen.body);
    assert_eq!(seen.cache(), "hit");
    assert_eq!(seen.body, first.body);
    let rsp = h
        .http
        .post(h.url(&path_with("key=x&foo=bar")))
        .header("content-type", "application/json")
        .body(base)
        .send()
        .await
        .unwrap();
    assert_eq!(Seen::read(rsp).await.cache(), "hit", "`key=` is dropped, the rest sorted");
    assert_eq!(h.mock.count(), 3);
}

#[tokio::test]
async fn entries_expire_after_their_ttl() {
    let h = start(Script::default(), "cache: { ttl: 1s }\n").await;
    assert_eq!(send(&h, GENERATE_PATH, GENERATE).await.cache(), "miss");
    assert_eq!(send(&h, GENERATE_PATH, GENERATE).await.cache(), "hit");
    sleep(Duration::from_millis(1_200)).await;
    assert_eq!(send(&h, GENERATE_PATH, GENERATE).await.cache(), "miss", "expired");
    assert_eq!(send(&h, GENERATE_PATH, GENERATE).await.cache(), "hit", "stored anew");
    assert_eq!(h.mock.count(), 2);
}

#[tokio::test]
async fn the_size_bound_evicts() {
    const MAX_BYTES: u64 = 4 * 1024;
    const DISTINCT: usize = 40;
    let h = start(Script::default(), "cache: { max_bytes: 4KiB }\n").await;
    let mut smallest = usize::MAX;
    for i in 0..DISTINCT {
        let seen = send(&h, GENERATE_PATH, &prompt(&format!("row {i:03} to clean"))).await;
        assert_eq!(seen.status, 200);
        assert_eq!(seen.cache(), "miss");
        smallest = smallest.min(seen.body.len());
    }
    // An entry weighs at least its body; the cache holds at most this many at once, so no
    // more of the repeats below can be hits (each body is asked for once more only).
    let fits = MAX_BYTES as usize / smallest;
    assert!(fits < DISTINCT / 2, "the test needs answers large enough: {smallest} bytes");
    let mut hits = 0;
    for i in 0..DISTINCT {
        let seen = send(&h, GENERATE_PATH, &prompt(&format!("row {i:03} to clean"))).await;
        assert_eq!(seen.status, 200);
        if seen.cache() == "hit" {
            hits += 1;
        } else {
            assert_eq!(seen.cache(), "miss");
        }
    }
    assert!(hits > 0, "the cache keeps what fits");
    assert!(hits <= fits, "{hits} hits, but only {fits} answers fit in {MAX_BYTES} bytes");
    assert_eq!(h.mock.count(), 2 * DISTINCT - hits);
}

#[tokio::test]
async fn answers_over_the_entry_cap_are_not_stored() {
    let h = start(Script::default(), "cache: { max_entry_bytes: 100B }\n").await;
    for _ in 0..2 {
        let seen = send(&h, GENERATE_PATH, GENERATE).await;
        assert_eq!(seen.status, 200);
        assert!(seen.body.len() > 100, "the answer is over the cap");
        assert_eq!(seen.cache(), "miss");
    }
    assert_eq!(h.mock.count(), 2);
    assert_eq!(cache_stats(&h).await["stores"], 0);
}

/// Reads a body frame by frame (each `chunk()` as it came).
async fn frames(rsp: reqwest::Response) -> Result<Vec<Bytes>, reqwest::Error> {
    let mut rsp = rsp;
    let mut out = Vec::new();
    while let Some(chunk) = rsp.chunk().await? {
        out.push(chunk);
    }
    Ok(out)
}

async fn stream_replays_chunk_for_chunk(path: &str, content_type: &str) {
    let script =
        Script::default().with_default(KeyScript::default().chunks(4).chunk_interval(Duration::from_millis(20)));
    let h = start(script, CACHE).await;
    let mut seen = Vec::new();
    for expected in ["miss", "hit"] {
        let rsp = h.post(path, GENERATE).await;
        assert_eq!(rsp.status(), 200);
        assert_eq!(rsp.headers()["x-gemgate-cache"], expected);
        assert!(rsp.headers()["content-type"].to_str().unwrap().starts_with(content_type));
        let headers = rsp.headers().clone();
        let chunks = frames(rsp).await.expect("a clean stream");
        let text: Vec<u8> = chunks.concat();
        h.assert_no_key_leak(&headers, &String::from_utf8_lossy(&text));
        seen.push(chunks);
    }
    assert!(seen[0].len() >= 4, "the miss came in the upstream's chunks: {:?}", seen[0]);
    assert_eq!(seen[1], seen[0], "the hit replays the same frames, chunk for chunk");
    assert_eq!(h.mock.count(), 1);
}

#[tokio::test]
async fn sse_streams_are_replayed_chunk_for_chunk() {
    stream_replays_chunk_for_chunk(SSE_PATH, "text/event-stream").await;
}

#[tokio::test]
async fn json_array_streams_are_replayed_chunk_for_chunk() {
    stream_replays_chunk_for_chunk(ARRAY_PATH, "application/json").await;
}

#[tokio::test]
async fn a_broken_stream_is_not_stored() {
    let h = start(Script::default().with_default(KeyScript::default().chunks(4).break_stream_after(2)), CACHE).await;
    for _ in 0..2 {
        let rsp = h.post(SSE_PATH, GENERATE).await;
        assert_eq!(rsp.status(), 200);
        assert_eq!(rsp.headers()["x-gemgate-cache"], "miss");
        h.assert_no_key_leak(rsp.headers(), "");
        assert!(frames(rsp).await.is_err(), "the client sees the break");
    }
    assert_eq!(h.mock.count(), 2, "nothing was stored");
    assert_eq!(cache_stats(&h).await["stores"], 0);
}

#[tokio::test]
async fn no_store_skips_the_cache() {
    let h = start(Script::default(), CACHE).await;
    for _ in 0..2 {
        let seen = send_with(&h, GENERATE_PATH, GENERATE, ("cache-control", "no-store")).await;
        assert_eq!(seen.status, 200);
        assert_eq!(seen.cache(), "bypass");
        assert!(seen.key().is_some());
    }
    assert_eq!(send(&h, GENERATE_PATH, GENERATE).await.cache(), "miss", "no-store stored nothing");
    let seen = send_with(&h, GENERATE_PATH, GENERATE, ("cache-control", "max-age=0, No-Store")).await;
    assert_eq!(seen.cache(), "bypass", "no-store reads nothing either");
    assert_eq!(h.mock.count(), 4);
}

#[tokio::test]
async fn no_cache_fetches_fresh_and_stores_it() {
    let h = start(Script::default(), CACHE).await;
    let first = send(&h, GENERATE_PATH, GENERATE).await;
    assert_eq!(first.cache(), "miss");
    let fresh = send_with(&h, GENERATE_PATH, GENERATE, ("cache-control", "no-cache")).await;
    assert_eq!(fresh.status, 200);
    assert_eq!(fresh.cache(), "miss", "no-cache does not read the cache");
    assert!(fresh.key().is_some());
    assert_ne!(fresh.body, first.body, "a fresh upstream answer (the mock's response ids differ)");
    assert_eq!(h.mock.count(), 2);
    let third = send(&h, GENERATE_PATH, GENERATE).await;
    assert_eq!(third.cache(), "hit");
    assert_eq!(third.body, fresh.body, "the fresh answer replaced the stored one");
    assert_eq!(h.mock.count(), 2);
}

#[tokio::test]
async fn methods_not_listed_bypass() {
    let h = start(Script::default(), "cache: { methods: [generateContent] }\n").await;
    for _ in 0..2 {
        let seen = send(&h, COUNT_PATH, GENERATE).await;
        assert_eq!(seen.status, 200, "{}", seen.body);
        assert_eq!(seen.cache(), "bypass");
    }
    assert_eq!(h.mock.count(), 2);
    assert_eq!(send(&h, GENERATE_PATH, GENERATE).await.cache(), "miss");
    assert_eq!(send(&h, GENERATE_PATH, GENERATE).await.cache(), "hit");
    assert_eq!(h.mock.count(), 3);
}

#[tokio::test]
async fn listed_methods_other_than_generate_are_cached() {
    let h = start(Script::default(), CACHE).await;
    assert_eq!(send(&h, COUNT_PATH, GENERATE).await.cache(), "miss");
    let seen = send(&h, COUNT_PATH, GENERATE).await;
    assert_eq!(seen.cache(), "hit");
    assert!(seen.body.contains("totalTokens"), "{}", seen.body);
    assert_eq!(send(&h, GENERATE_PATH, GENERATE).await.cache(), "miss", "the method is part of the key");
    assert_eq!(h.mock.count(), 2);
}

#[tokio::test]
async fn non_2xx_answers_are_never_stored() {
    let h =
        start(Script::default().with_default(KeyScript::default().status(500)), "retry: { attempts: 1 }\ncache: {}\n")
            .await;
    for n in 1..=3 {
        let seen = send(&h, GENERATE_PATH, GENERATE).await;
        assert_eq!(seen.status, 500);
        assert_eq!(seen.cache(), "miss");
        assert_eq!(h.mock.count(), n, "every request reaches the upstream");
    }
    assert_eq!(cache_stats(&h).await["stores"], 0);
}

#[tokio::test]
async fn bodies_that_are_not_json_bypass() {
    let h = start(Script::default(), CACHE).await;
    for _ in 0..2 {
        let seen = send(&h, GENERATE_PATH, "this is not json").await;
        assert_eq!(seen.status, 400, "the upstream's answer: {}", seen.body);
        assert_eq!(seen.cache(), "bypass");
    }
    assert_eq!(h.mock.count(), 2);
}

/// A client that shows the bytes as sent (no automatic gzip).
fn raw_client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().no_gzip().timeout(Duration::from_secs(20)).build().unwrap()
}

/// POSTs `body` with a raw client, accepting gzip or not; returns cache state, content
/// encoding and the raw body bytes.
async fn raw_post(h: &Harness, body: &str, gzip: bool) -> (String, Option<String>, Vec<u8>) {
    let mut request = raw_client()
        .post(h.url(GENERATE_PATH))
        .header("x-goog-api-key", "client-token")
        .header("content-type", "application/json")
        .body(body.to_string());
    if gzip {
        request = request.header("accept-encoding", "gzip");
    }
    let rsp = request.send().await.unwrap();
    assert_eq!(rsp.status(), 200);
    let headers = rsp.headers().clone();
    let cache = headers["x-gemgate-cache"].to_str().unwrap().to_string();
    let encoding = headers.get("content-encoding").map(|v| v.to_str().unwrap().to_string());
    let bytes = rsp.bytes().await.unwrap().to_vec();
    h.assert_no_key_leak(&headers, &String::from_utf8_lossy(&bytes));
    (cache, encoding, bytes)
}

fn gunzip(bytes: &[u8]) -> String {
    let mut text = String::new();
    flate2::read::GzDecoder::new(bytes).read_to_string(&mut text).expect("gzip bytes");
    text
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[tokio::test]
async fn gzip_answers_reach_each_client_in_the_encoding_it_accepts() {
    let h = start(Script::default().with_default(KeyScript::default().gzip()), CACHE).await;
    let body = prompt("gzip me");

    // A miss for a client that accepts gzip: the upstream's gzip bytes, as they came.
    let (cache, encoding, zipped) = raw_post(&h, &body, true).await;
    assert_eq!((cache.as_str(), encoding.as_deref()), ("miss", Some("gzip")));
    let plain = gunzip(&zipped);
    assert!(json(&plain)["candidates"].is_array());
    assert_eq!(h.mock.last().unwrap().header("accept-encoding"), Some("gzip"));

    // A hit for a client that does not: the same answer, decoded, without content-encoding.
    let (cache, encoding, bytes) = raw_post(&h, &body, false).await;
    assert_eq!((cache.as_str(), encoding), ("hit", None));
    assert_eq!(String::from_utf8(bytes).unwrap(), plain);

    // A hit for a client that does: the stored gzip bytes.
    let (cache, encoding, bytes) = raw_post(&h, &body, true).await;
    assert_eq!((cache.as_str(), encoding.as_deref()), ("hit", Some("gzip")));
    assert_eq!(gunzip(&bytes), plain);
    assert_eq!(h.mock.count(), 1);

    // A miss for a client that does not accept gzip: the upstream was not asked for it.
    let other = prompt("plain me");
    let (cache, encoding, bytes) = raw_post(&h, &other, false).await;
    assert_eq!((cache.as_str(), encoding), ("miss", None));
    let plain = String::from_utf8(bytes).unwrap();
    assert!(json(&plain)["candidates"].is_array());
    // ...and that plain answer serves a gzip-accepting client as plain JSON.
    let (cache, encoding, bytes) = raw_post(&h, &other, true).await;
    assert_eq!((cache.as_str(), encoding), ("hit", None));
    assert_eq!(String::from_utf8(bytes).unwrap(), plain);
    assert_eq!(h.mock.count(), 2);
}

#[tokio::test]
async fn a_shared_gzip_call_is_decoded_for_the_client_that_needs_it() {
    let script = Script::default().with_default(KeyScript::default().gzip().latency(Duration::from_millis(300)));
    let h = Arc::new(start(script, CACHE).await);
    let body = prompt("share me");
    let leader = {
        let (h, body) = (h.clone(), body.clone());
        tokio::spawn(async move { raw_post(&h, &body, true).await })
    };
    sleep(Duration::from_millis(100)).await;
    let (cache, encoding, bytes) = raw_post(&h, &body, false).await;
    assert_eq!((cache.as_str(), encoding), ("hit", None), "joined the leader's call");
    let (cache, encoding, zipped) = leader.await.unwrap();
    assert_eq!((cache.as_str(), encoding.as_deref()), ("miss", Some("gzip")));
    assert_eq!(String::from_utf8(bytes).unwrap(), gunzip(&zipped));
    assert_eq!(h.mock.count(), 1);
}

/// A request sent on its own task: (status, x-gemgate-cache, body).
fn spawn_post(h: &Harness, path: &str, body: &str) -> tokio::task::JoinHandle<(u16, String, String)> {
    let (http, url, body) = (h.http.clone(), h.url(path), body.to_string());
    tokio::spawn(async move {
        let rsp = http
            .post(url)
            .header("x-goog-api-key", "client-token")
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request reaches gemgate");
        let status = rsp.status().as_u16();
        let cache = rsp.headers().get("x-gemgate-cache").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
        (status, cache, rsp.text().await.expect("a whole body"))
    })
}

#[tokio::test]
async fn identical_requests_in_flight_make_one_upstream_call() {
    let h =
        start(Script::default().with_default(KeyScript::default().latency(Duration::from_millis(500))), CACHE).await;
    let tasks: Vec<_> = (0..50).map(|_| spawn_post(&h, GENERATE_PATH, GENERATE)).collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(timeout(Duration::from_secs(10), task).await.expect("bounded").unwrap());
    }
    assert!(answers.iter().all(|(status, _, _)| *status == 200));
    let first = &answers[0].2;
    assert!(answers.iter().all(|(_, _, body)| body == first), "everyone got the one answer");
    let misses = answers.iter().filter(|(_, cache, _)| cache == "miss").count();
    let hits = answers.iter().filter(|(_, cache, _)| cache == "hit").count();
    assert_eq!((misses, hits), (1, 49));
    assert_eq!(h.mock.count(), 1);
    assert_eq!(requests_today(&h).await, 1);
    let stats = cache_stats(&h).await;
    assert_eq!(stats["joined"], 49, "{stats}");
    h.assert_no_key_leak(&Default::default(), first);
}

#[tokio::test]
async fn the_first_client_leaving_does_not_cancel_the_others() {
    let h =
        start(Script::default().with_default(KeyScript::default().latency(Duration::from_millis(600))), CACHE).await;
    let leader = spawn_post(&h, GENERATE_PATH, GENERATE);
    sleep(Duration::from_millis(100)).await;
    let others: Vec<_> = (0..10).map(|_| spawn_post(&h, GENERATE_PATH, GENERATE)).collect();
    sleep(Duration::from_millis(100)).await;
    leader.abort();
    assert!(leader.await.unwrap_err().is_cancelled());
    for task in others {
        let (status, cache, body) = timeout(Duration::from_secs(10), task).await.expect("bounded").unwrap();
        assert_eq!(status, 200, "{body}");
        assert_eq!(cache, "hit");
        h.assert_no_key_leak(&Default::default(), &body);
    }
    assert_eq!(h.mock.count(), 1, "the leader's call went on for the others");
    assert_eq!(send(&h, GENERATE_PATH, GENERATE).await.cache(), "hit", "and was stored");
}

#[tokio::test]
async fn the_shared_call_ends_when_every_client_has_gone() {
    let h = start(Script::default().with_default(KeyScript::default().hang()), CACHE).await;
    let tasks: Vec<_> = (0..3).map(|_| spawn_post(&h, GENERATE_PATH, GENERATE)).collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    while h.mock.count() == 0 {
        assert!(Instant::now() < deadline, "the call never reached the mock");
        sleep(Duration::from_millis(10)).await;
    }
    sleep(Duration::from_millis(100)).await;
    for task in tasks {
        task.abort();
        assert!(task.await.unwrap_err().is_cancelled());
    }
    // gemgate logs the cancellation of a shared call whose clients all left.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !logs().contains("every client of a shared call left") {
        assert!(Instant::now() < deadline, "the shared call was not cancelled");
        sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(h.mock.count(), 1, "one shared call");
    // The gateway is healthy, and the cancelled call is neither joined nor stored.
    assert_eq!(h.http.get(h.admin_url("/healthz")).send().await.unwrap().status(), 200);
    h.mock.set_script(Script::default());
    let seen = timeout(Duration::from_secs(10), send(&h, GENERATE_PATH, GENERATE)).await.expect("bounded");
    assert_eq!(seen.status, 200);
    assert_eq!(seen.cache(), "miss");
    assert_eq!(h.mock.count(), 2);
    assert_eq!(send(&h, GENERATE_PATH, GENERATE).await.cache(), "hit");
}

const TWO_CLIENTS: &str =
    "clients:\n  mode: tokens\n  tokens:\n    - { name: bot, token: tok-bot }\n    - { name: etl, token: tok-etl }\n";

async fn as_client(h: &Harness, token: &str) -> Seen {
    let rsp = h
        .http
        .post(h.url(GENERATE_PATH))
        .header("x-goog-api-key", token)
        .header("content-type", "application/json")
        .body(GENERATE)
        .send()
        .await
        .unwrap();
    let seen = Seen::read(rsp).await;
    h.assert_no_key_leak(&seen.headers, &seen.body);
    assert_eq!(seen.status, 200, "{}", seen.body);
    seen
}

#[tokio::test]
async fn client_scope_keeps_clients_apart() {
    let h = start(Script::default(), &format!("{TWO_CLIENTS}cache: {{ scope: client }}\n")).await;
    assert_eq!(as_client(&h, "tok-bot").await.cache(), "miss");
    assert_eq!(as_client(&h, "tok-etl").await.cache(), "miss", "another client's answer is not shared");
    assert_eq!(as_client(&h, "tok-bot").await.cache(), "hit");
    assert_eq!(as_client(&h, "tok-etl").await.cache(), "hit");
    assert_eq!(h.mock.count(), 2);
}

#[tokio::test]
async fn shared_scope_shares_between_clients() {
    let h = start(Script::default(), &format!("{TWO_CLIENTS}cache: {{ scope: shared }}\n")).await;
    let first = as_client(&h, "tok-bot").await;
    assert_eq!(first.cache(), "miss");
    let second = as_client(&h, "tok-etl").await;
    assert_eq!(second.cache(), "hit");
    assert_eq!(second.body, first.body);
    assert_eq!(h.mock.count(), 1);
}
