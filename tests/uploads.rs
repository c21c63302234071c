//! Resumable uploads and project-bound resources (SPEC 2): the upload URL points back at
//! gemgate without a key, and every later step of an upload, and every request naming a
//! file, batch or cached content, goes out with the key that created it. With two keys in
//! round-robin an unpinned request would alternate, and the mock answers 403 to a key that
//! did not create the resource.

mod support;

use mock_gemini::{KeyScript, Script};
use reqwest::header::HeaderMap;
use support::*;

const UPLOAD_START: &str = "/upload/v1beta/files";

/// What one exchange left behind, for the key-leak check at the end.
#[derive(Default)]
struct Seen {
    headers: Vec<HeaderMap>,
    bodies: String,
}

impl Seen {
    /// Records the answer, asserts 200 and returns its JSON (Null when empty).
    async fn ok(&mut self, what: &str, rsp: reqwest::Response) -> (HeaderMap, serde_json::Value) {
        let status = rsp.status();
        let headers = rsp.headers().clone();
        let body = rsp.text().await.unwrap();
        assert_eq!(status, 200, "{what}: {body}");
        self.headers.push(headers.clone());
        self.bodies.push_str(&body);
        (headers, serde_json::from_str(&body).unwrap_or(serde_json::Value::Null))
    }

    fn assert_no_key_leak(&self, h: &Harness) {
        for headers in &self.headers {
            h.assert_no_key_leak(headers, &self.bodies);
        }
    }
}

/// Starts a resumable upload the way the google-genai SDKs do; returns the upload URL.
async fn start_upload(h: &Harness, seen: &mut Seen) -> String {
    let rsp = h
        .http
        .post(h.url(UPLOAD_START))
        .header("x-goog-api-key", "client-token")
        .header("x-goog-upload-protocol", "resumable")
        .header("x-goog-upload-command", "start")
        .header("x-goog-upload-header-content-length", "11")
        .header("x-goog-upload-header-content-type", "text/plain")
        .header("content-type", "application/json")
        .body(r#"{"file":{"display_name":"notes"}}"#)
        .send()
        .await
        .unwrap();
    let (headers, _) = seen.ok("upload start", rsp).await;
    headers["x-goog-upload-url"].to_str().unwrap().to_string()
}

/// One more step of an upload on `url`, as the SDKs send it (no credential of their own
/// is needed: gemgate adds the pinned key).
async fn upload_step(h: &Harness, url: &str, command: &str, offset: usize, data: &'static [u8]) -> reqwest::Response {
    h.http
        .post(url)
        .header("x-goog-api-key", "client-token")
        .header("x-goog-upload-command", command)
        .header("x-goog-upload-offset", offset.to_string())
        .body(data)
        .send()
        .await
        .unwrap()
}

/// A request no resource pins: it takes the next key of the round-robin.
async fn unpinned(h: &Harness, seen: &mut Seen) -> String {
    let (headers, _) = seen.ok("unpinned", h.post(GENERATE_PATH, GENERATE).await).await;
    headers["x-gemgate-key"].to_str().unwrap().to_string()
}

/// The pool key each upstream request went out with, by path.
fn keys_by_path(h: &Harness) -> Vec<(String, String)> {
    h.mock.requests().into_iter().map(|r| (r.path, r.key.unwrap_or_default())).collect()
}

#[tokio::test]
async fn a_resumable_upload_and_its_file_stay_on_one_key() {
    let h = start(Script::default(), "").await;
    let mut seen = Seen::default();
    let url = start_upload(&h, &mut seen).await;
    let gate = format!("http://{}/upload/v1beta/files?", h.gate.addr);
    assert!(url.starts_with(&gate), "the upload URL points back at gemgate: {url}");
    assert!(url.contains("upload_id="), "{url}");
    assert!(!url.contains("key="), "{url}");
    assert_eq!(h.mock.last().unwrap().key.as_deref(), Some(KEY_A));

    // From here on the round-robin's next key is key-b: every request below would take it,
    // and get 403 from the mock, if it were not pinned.
    let rsp = upload_step(&h, &url, "upload", 0, b"hello").await;
    let (headers, _) = seen.ok("upload", rsp).await;
    assert_eq!(headers["x-goog-upload-status"], "active");
    assert_eq!(headers["x-gemgate-key"], "key-a");
    let rsp = upload_step(&h, &url, "upload, finalize", 5, b" world").await;
    let (headers, file) = seen.ok("finalize", rsp).await;
    assert_eq!(headers["x-goog-upload-status"], "final");
    assert_eq!(headers["x-gemgate-key"], "key-a");
    assert_eq!(file["file"]["sizeBytes"], "11", "{file}");
    let name = file["file"]["name"].as_str().unwrap().to_string();
    let uri = file["file"]["uri"].as_str().unwrap().to_string();

    let rsp = h.http.get(h.url(&format!("/v1beta/{name}"))).header("x-goog-api-key", "client-token").send();
    let (headers, got) = seen.ok("files.get", rsp.await.unwrap()).await;
    assert_eq!(headers["x-gemgate-key"], "key-a");
    assert_eq!(got["name"], name.as_str());
    let with_file = format!(
        r#"{{"contents":[{{"role":"user","parts":[{{"fileData":{{"mimeType":"text/plain","fileUri":"{uri}"}}}},{{"text":"Summarize"}}]}}]}}"#
    );
    let (headers, _) = seen.ok("generate with the file", h.post(GENERATE_PATH, &with_file).await).await;
    assert_eq!(headers["x-gemgate-key"], "key-a");
    let rsp = h.http.delete(h.url(&format!("/v1beta/{name}"))).header("x-goog-api-key", "client-token").send();
    let (headers, _) = seen.ok("files.delete", rsp.await.unwrap()).await;
    assert_eq!(headers["x-gemgate-key"], "key-a");

    assert_eq!(unpinned(&h, &mut seen).await, "key-b", "pinned requests took no turn of the round-robin");
    let keys: Vec<String> = keys_by_path(&h).into_iter().map(|(_, key)| key).collect();
    let (a, b) = (KEY_A, KEY_B);
    // start, upload, finalize, get, generate, delete, unpinned
    assert_eq!(keys, [a, a, a, a, a, a, b], "{:?}", keys_by_path(&h));
    seen.assert_no_key_leak(&h);
}

#[tokio::test]
async fn batches_stay_on_the_key_that_created_them() {
    let h = start(Script::default(), "").await;
    let mut seen = Seen::default();
    assert_eq!(unpinned(&h, &mut seen).await, "key-a");
    let create = r#"{"batch":{"display_name":"nightly","input_config":{"requests":{"requests":[
        {"request":{"contents":[{"parts":[{"text":"one"}]}]},"metadata":{"key":"r1"}},
        {"request":{"contents":[{"parts":[{"text":"two"}]}]},"metadata":{"key":"r2"}}]}}}}"#;
    let rsp = h.post("/v1beta/models/gemini-2.5-flash:batchGenerateContent", create).await;
    let (headers, op) = seen.ok("batch create", rsp).await;
    assert_eq!(headers["x-gemgate-key"], "key-b");
    let name = op["name"].as_str().unwrap().to_string();
    assert!(name.starts_with("batches/"), "{op}");

    // The round-robin's next key is key-a now: unpinned, these would take it.
    for _ in 0..2 {
        let rsp = h.http.get(h.url(&format!("/v1beta/{name}"))).header("x-goog-api-key", "client-token").send();
        let (headers, got) = seen.ok("batches.get", rsp.await.unwrap()).await;
        assert_eq!(headers["x-gemgate-key"], "key-b");
        assert_eq!(got["metadata"]["state"], "BATCH_STATE_SUCCEEDED", "{got}");
    }
    let rsp = h.post(&format!("/v1beta/{name}:cancel"), "").await;
    let (headers, _) = seen.ok("batches.cancel", rsp).await;
    assert_eq!(headers["x-gemgate-key"], "key-b");
    assert_eq!(unpinned(&h, &mut seen).await, "key-a");

    let on_batch: Vec<_> = keys_by_path(&h).into_iter().filter(|(p, _)| p.contains("batch")).collect();
    assert_eq!(on_batch.len(), 4, "{on_batch:?}");
    assert!(on_batch.iter().all(|(_, k)| k == KEY_B), "{on_batch:?}");
    seen.assert_no_key_leak(&h);
}

#[tokio::test]
async fn cached_contents_stay_on_their_key_even_when_answers_are_gzipped() {
    // gzip: gemgate reads the created name from a decoded copy; reqwest asks for gzip.
    let h = start(Script::default().with_default(KeyScript::default().gzip()), "").await;
    let mut seen = Seen::default();
    let create = r#"{"model":"models/gemini-2.5-flash","ttl":"300s",
        "contents":[{"role":"user","parts":[{"text":"a long shared context"}]}]}"#;
    let (headers, cache) = seen.ok("cache create", h.post("/v1beta/cachedContents", create).await).await;
    assert_eq!(headers["x-gemgate-key"], "key-a");
    assert_eq!(h.mock.last().unwrap().header("accept-encoding").map(|v| v.contains("gzip")), Some(true));
    let name = cache["name"].as_str().unwrap().to_string();

    // The round-robin's next key is key-b now: unpinned, these would take it.
    let uses = format!(r#"{{"cachedContent":"{name}","contents":[{{"role":"user","parts":[{{"text":"Q?"}}]}}]}}"#);
    let (headers, _) = seen.ok("generate with the cache", h.post(GENERATE_PATH, &uses).await).await;
    assert_eq!(headers["x-gemgate-key"], "key-a");
    let rsp = h
        .http
        .patch(h.url(&format!("/v1beta/{name}")))
        .header("x-goog-api-key", "client-token")
        .body(r#"{"ttl":"600s"}"#)
        .send();
    let (headers, _) = seen.ok("cache update", rsp.await.unwrap()).await;
    assert_eq!(headers["x-gemgate-key"], "key-a");
    let rsp = h.http.delete(h.url(&format!("/v1beta/{name}"))).header("x-goog-api-key", "client-token").send();
    let (headers, _) = seen.ok("cache delete", rsp.await.unwrap()).await;
    assert_eq!(headers["x-gemgate-key"], "key-a");
    assert_eq!(unpinned(&h, &mut seen).await, "key-b");

    assert_eq!(h.mock.calls_for_key(KEY_A), 4);
    assert_eq!(h.mock.calls_for_key(KEY_B), 1);
    seen.assert_no_key_leak(&h);
}
