//! Just enough of the Gemini API's shape for the gateway: which API version and surface a
//! path belongs to, the model and method it calls, and the project-bound resources
//! (`files/*`, `cachedContents/*`, `batches/*`, `tunedModels/*`, operations, upload
//! sessions) a request names or a response creates (SPEC 2). Nothing here sees keys or
//! hyper types.

use memchr::memmem;

/// The surface a path belongs to; anything else is not forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    /// `/v1/`, `/v1beta/`, `/v1alpha/` REST.
    Rest,
    /// `/v1beta/openai/...`, the OpenAI-compatible endpoint.
    OpenAi,
    /// `/upload/...`, media and resumable uploads.
    Upload,
    /// `/ws/...`, the Live API over WebSocket.
    Live,
}

/// What one request is, as far as routing, pinning and accounting care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallInfo {
    pub surface: Surface,
    /// The model named in the path (`gemini-2.5-flash`, or `tunedModels/x` for a tuned
    /// model), without the `models/` prefix.
    pub model: Option<String>,
    /// The method after `:` (`generateContent`), or the OpenAI operation (`chat/completions`).
    pub method: Option<String>,
    /// A project-bound resource named in the path, e.g. `files/abc`.
    pub resource: Option<String>,
}

const REST_VERSIONS: [&str; 3] = ["/v1beta/", "/v1/", "/v1alpha/"];

/// Classifies a request path, or `None` when gemgate does not forward it. Dot segments
/// are refused: an allow-list check on `models/allowed/../other` must not be fooled.
pub fn classify(path: &str) -> Option<CallInfo> {
    if path.split('/').any(is_dot_segment) {
        return None;
    }
    if let Some(rest) = path.strip_prefix("/v1beta/openai/") {
        return Some(CallInfo {
            surface: Surface::OpenAi,
            model: None,
            method: Some(rest.trim_end_matches('/').to_string()),
            resource: None,
        });
    }
    if let Some(rest) = path.strip_prefix("/upload/") {
        let rest = REST_VERSIONS.iter().find_map(|v| rest.strip_prefix(&v[1..])).unwrap_or(rest);
        let mut info = rest_call(rest);
        info.surface = Surface::Upload;
        return Some(info);
    }
    if path.starts_with("/ws/") {
        return Some(CallInfo { surface: Surface::Live, model: None, method: None, resource: None });
    }
    let rest = REST_VERSIONS.iter().find_map(|v| path.strip_prefix(v))?;
    Some(rest_call(rest))
}

/// `models/m:method`, `tunedModels/t:method`, `files/f`, `batches/b:cancel`, ...
fn rest_call(rest: &str) -> CallInfo {
    let (resource_path, method) = match rest.rsplit_once(':') {
        Some((p, m)) if !m.contains('/') => (p, Some(m.to_string())),
        _ => (rest, None),
    };
    let mut segments = resource_path.split('/');
    let collection = segments.next().unwrap_or("");
    let id = segments.next().filter(|s| !s.is_empty());
    let model = match (collection, id) {
        ("models", Some(m)) => Some(m.to_string()),
        ("tunedModels", Some(t)) => Some(format!("tunedModels/{t}")),
        _ => None,
    };
    let resource = match (collection, id) {
        (c, Some(id)) if PINNED_COLLECTIONS.contains(&c) => Some(format!("{c}/{id}")),
        _ => None,
    };
    CallInfo { surface: Surface::Rest, model, method, resource }
}

/// Collections whose members live in one Google project (SPEC 2).
pub const PINNED_COLLECTIONS: [&str; 5] = ["files", "cachedContents", "batches", "tunedModels", "operations"];

/// Methods that generate from a model and never create a resource: their answers need no
/// inspection for pins, and they are the hot path.
pub fn is_generation(method: &str) -> bool {
    matches!(
        method,
        "generateContent"
            | "streamGenerateContent"
            | "countTokens"
            | "embedContent"
            | "batchEmbedContents"
            | "chat/completions"
            | "embeddings"
    )
}

/// True when the answer to this call is a stream to be relayed with the idle timeout rather
/// than the whole-exchange deadline.
pub fn is_streaming_method(method: Option<&str>) -> bool {
    matches!(method, Some("streamGenerateContent") | Some("BidiGenerateContent"))
}

/// Resource names a request body refers to (`fileUri: ".../files/abc"`,
/// `cachedContent: "cachedContents/x"`, `model: "tunedModels/t"`), in order, deduplicated.
pub fn referenced_resources(body: &[u8]) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    for collection in PINNED_COLLECTIONS {
        let needle = format!("{collection}/");
        for at in memmem::find_iter(body, needle.as_bytes()) {
            // `models/` must not match inside `tunedModels/` etc.: require a boundary.
            if at > 0 && body[at - 1].is_ascii_alphanumeric() {
                continue;
            }
            let start = at + needle.len();
            let len = body[start..].iter().take_while(|&&c| is_id_char(c)).count();
            if len > 0 {
                let name = format!("{collection}/{}", String::from_utf8_lossy(&body[start..start + len]));
                if !found.contains(&name) {
                    found.push(name);
                }
            }
        }
    }
    found
}

/// `.`, `..`, or either spelled with `%2e` (any case).
fn is_dot_segment(segment: &str) -> bool {
    let dot = |s: &str| s == "." || s.eq_ignore_ascii_case("%2e");
    match segment.len() {
        1 | 3 => dot(segment),
        2 => segment == "..",
        4 | 6 => {
            (1..segment.len()).any(|cut| segment.is_char_boundary(cut) && dot(&segment[..cut]) && dot(&segment[cut..]))
        }
        _ => false,
    }
}

fn is_id_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'.'
}

/// Resource names an answer created: `name`, `file.name`, `metadata.tunedModel`.
pub fn created_resources(body: &[u8]) -> Vec<String> {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Vec::new();
    };
    let candidates = [
        value.get("name"),
        value.get("file").and_then(|f| f.get("name")),
        value.get("metadata").and_then(|m| m.get("tunedModel")),
        value.get("cachedContent").and_then(|c| c.get("name")),
    ];
    candidates
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str())
        .filter(|name| name.split_once('/').is_some_and(|(c, id)| PINNED_COLLECTIONS.contains(&c) && !id.is_empty()))
        .map(|name| {
            // `tunedModels/t/operations/o` pins its model; `batches/b` stays as is.
            let mut parts = name.splitn(3, '/');
            format!("{}/{}", parts.next().unwrap_or(""), parts.next().unwrap_or(""))
        })
        .collect()
}

/// The `model` of an OpenAI-compatible request body (`"gemini-2.5-flash"`, possibly
/// `"models/gemini-2.5-flash"`), for allow-lists.
pub fn openai_model(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct WithModel {
        model: Option<String>,
    }
    let parsed: WithModel = serde_json::from_slice(body).ok()?;
    parsed.model.map(|m| m.strip_prefix("models/").map(str::to_string).unwrap_or(m))
}

/// The model of a Live API session, from its first message `{"setup":{"model":"models/x"}}`.
pub fn live_setup_model(message: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(message).ok()?;
    let model = value.get("setup")?.get("model")?.as_str()?;
    Some(model.strip_prefix("models/").unwrap_or(model).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_paths() {
        let c = classify("/v1beta/models/gemini-2.5-flash:generateContent").unwrap();
        assert_eq!(
            (c.surface, c.model.as_deref(), c.method.as_deref()),
            (Surface::Rest, Some("gemini-2.5-flash"), Some("generateContent"))
        );
        let c = classify("/v1/tunedModels/my-tune:generateContent").unwrap();
        assert_eq!(c.model.as_deref(), Some("tunedModels/my-tune"));
        assert_eq!(c.resource.as_deref(), Some("tunedModels/my-tune"));
        let c = classify("/v1beta/files/abc-123").unwrap();
        assert_eq!(c.resource.as_deref(), Some("files/abc-123"));
        let c = classify("/v1beta/batches/b1:cancel").unwrap();
        assert_eq!((c.resource.as_deref(), c.method.as_deref()), (Some("batches/b1"), Some("cancel")));
        let c = classify("/v1beta/openai/chat/completions").unwrap();
        assert_eq!((c.surface, c.method.as_deref()), (Surface::OpenAi, Some("chat/completions")));
        let c = classify("/upload/v1beta/files").unwrap();
        assert_eq!(c.surface, Surface::Upload);
        assert_eq!(
            classify("/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent").unwrap().surface,
            Surface::Live
        );
        assert_eq!(classify("/v1beta/models").unwrap().model, None);
        assert!(classify("/v2/models").is_none());
        assert!(classify("/admin/keys").is_none());
        assert!(classify("/").is_none());
        assert!(classify("/v1beta/models/gemini-2.5-flash/../gemini-2.0-flash:generateContent").is_none());
        assert!(classify("/v1beta/models/x/%2E%2e/y").is_none());
    }

    #[test]
    fn finds_referenced_and_created_resources() {
        let body = br#"{"contents":[{"parts":[{"fileData":{"fileUri":"https://x/v1beta/files/abc-1"}}]}],"cachedContent":"cachedContents/cc9"}"#;
        assert_eq!(referenced_resources(body), vec!["files/abc-1", "cachedContents/cc9"]);
        assert!(referenced_resources(br#"{"text":"profiles/abc"}"#).is_empty());
        assert_eq!(created_resources(br#"{"file":{"name":"files/f1","uri":"u"}}"#), vec!["files/f1"]);
        assert_eq!(created_resources(br#"{"name":"batches/b2","metadata":{}}"#), vec!["batches/b2"]);
        assert_eq!(created_resources(br#"{"name":"tunedModels/t/operations/o"}"#), vec!["tunedModels/t"]);
        assert!(created_resources(b"not json").is_empty());
    }

    #[test]
    fn reads_models_from_bodies() {
        assert_eq!(openai_model(br#"{"model":"gemini-2.5-pro","messages":[]}"#).as_deref(), Some("gemini-2.5-pro"));
        assert_eq!(live_setup_model(br#"{"setup":{"model":"models/gemini-live"}}"#).as_deref(), Some("gemini-live"));
        assert_eq!(live_setup_model(br#"{"clientContent":{}}"#), None);
    }
}

/// What an upstream error body says about keys and quota (SPEC 4): the ErrorInfo reason,
/// the RetryInfo delay, and the QuotaFailure quota ids.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ErrorFacts {
    pub reason: Option<String>,
    pub retry_delay: Option<std::time::Duration>,
    pub quota_ids: Vec<String>,
}

impl ErrorFacts {
    pub fn parse(body: &[u8]) -> ErrorFacts {
        let mut facts = ErrorFacts::default();
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
            return facts;
        };
        // The OpenAI-compatible surface wraps errors in a one-element array.
        let error = value.get("error").or_else(|| value.get(0).and_then(|v| v.get("error")));
        let details = error.and_then(|e| e.get("details")).and_then(|d| d.as_array());
        for detail in details.into_iter().flatten() {
            let kind = detail.get("@type").and_then(|t| t.as_str()).unwrap_or("");
            if kind.ends_with("google.rpc.ErrorInfo") {
                facts.reason = detail.get("reason").and_then(|r| r.as_str()).map(str::to_string);
            } else if kind.ends_with("google.rpc.RetryInfo") {
                facts.retry_delay = detail.get("retryDelay").and_then(|d| d.as_str()).and_then(parse_proto_duration);
            } else if kind.ends_with("google.rpc.QuotaFailure") {
                let violations = detail.get("violations").and_then(|v| v.as_array());
                for v in violations.into_iter().flatten() {
                    if let Some(id) = v.get("quotaId").and_then(|q| q.as_str()) {
                        facts.quota_ids.push(id.to_string());
                    }
                }
            }
        }
        facts
    }

    /// A per-day quota ran out (the cooldown lasts until the Pacific midnight).
    pub fn is_per_day(&self) -> bool {
        self.quota_ids.iter().any(|id| id.contains("PerDay"))
    }

    /// The key itself is bad (SPEC 4): 400 API_KEY_INVALID or a key- or project-level 403.
    /// A 403 about one resource carries no such reason and leaves the key alone.
    pub fn is_key_level(&self, status: u16) -> bool {
        let Some(reason) = self.reason.as_deref() else { return false };
        match status {
            400 => reason == "API_KEY_INVALID",
            403 => {
                reason.starts_with("API_KEY_")
                    || matches!(
                        reason,
                        "SERVICE_DISABLED"
                            | "CONSUMER_SUSPENDED"
                            | "BILLING_DISABLED"
                            | "ACCESS_TOKEN_TYPE_UNSUPPORTED"
                    )
            }
            _ => false,
        }
    }
}

/// `"12s"`, `"1.5s"`, `"0.250s"` (protobuf Duration JSON).
fn parse_proto_duration(text: &str) -> Option<std::time::Duration> {
    let secs: f64 = text.strip_suffix('s')?.parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| std::time::Duration::from_secs_f64(secs))
}

/// Input tokens a request is likely to cost, for charging TPM before the call (SPEC 4);
/// settled later from `usageMetadata`. A scan, not a parse (this runs on every metered
/// call): about 4 bytes a token for the text, and Google's flat 258 tokens for each inline
/// media blob (`"data": "<base64>"`, OpenAI's `;base64,` data URLs), whose bytes would
/// otherwise count a thousand times over.
pub fn estimate_input_tokens(body: &[u8]) -> u64 {
    static MEDIA: std::sync::LazyLock<[memmem::Finder<'static>; 3]> = std::sync::LazyLock::new(|| {
        [memmem::Finder::new(b"\"data\":\""), memmem::Finder::new(b"\"data\": \""), memmem::Finder::new(b";base64,")]
    });
    let mut media_bytes = 0usize;
    let mut media_parts = 0u64;
    for finder in MEDIA.iter() {
        for at in finder.find_iter(body) {
            let start = at + finder.needle().len();
            let len = memchr::memchr(b'"', &body[start..]).unwrap_or(body.len() - start);
            media_bytes += len;
            media_parts += 1;
        }
    }
    let text = body.len().saturating_sub(media_bytes) as u64;
    (text / 4 + media_parts * 258).max(1)
}

/// Finds the input-token count of an answer as it streams by: Gemini's
/// `"promptTokenCount": N` or OpenAI's `"prompt_tokens": N` (the last one seen wins; a
/// stream repeats it). Keeps a short tail so a number split across chunks is still read.
#[derive(Default)]
pub struct UsageScan {
    tail: Vec<u8>,
    pub prompt_tokens: Option<u64>,
}

impl UsageScan {
    const TAIL: usize = 64;

    fn fields() -> &'static [memmem::Finder<'static>; 2] {
        static FIELDS: std::sync::LazyLock<[memmem::Finder<'static>; 2]> = std::sync::LazyLock::new(|| {
            [memmem::Finder::new(b"\"promptTokenCount\""), memmem::Finder::new(b"\"prompt_tokens\"")]
        });
        &FIELDS
    }

    pub fn feed(&mut self, chunk: &[u8]) {
        let found = if self.tail.is_empty() {
            Self::scan(chunk)
        } else {
            self.tail.extend_from_slice(chunk);
            Self::scan(&self.tail)
        };
        if found.is_some() {
            self.prompt_tokens = found;
        }
        // Keep the last bytes (in the same buffer) for a field split across chunks.
        if self.tail.is_empty() {
            self.tail.extend_from_slice(&chunk[chunk.len() - chunk.len().min(Self::TAIL)..]);
        } else {
            let cut = self.tail.len() - self.tail.len().min(Self::TAIL);
            self.tail.drain(..cut);
        }
    }

    /// The last complete count in `data`.
    fn scan(data: &[u8]) -> Option<u64> {
        let mut found = None;
        for field in Self::fields() {
            for at in field.find_iter(data) {
                let rest = &data[at + field.needle().len()..];
                let Some(start) = rest.iter().position(|c| !matches!(c, b':' | b' ' | b'\n' | b'\r' | b'\t')) else {
                    continue;
                };
                let rest = &rest[start..];
                let digits = rest.iter().take_while(|c| c.is_ascii_digit()).count();
                // A number that runs to the end of the data may continue in the next chunk.
                if digits > 0 && digits < rest.len() {
                    found = std::str::from_utf8(&rest[..digits]).ok().and_then(|d| d.parse().ok()).or(found);
                }
            }
        }
        found
    }
}

#[cfg(test)]
mod quota_facts_tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn reads_error_details() {
        let body = br#"{"error":{"code":429,"status":"RESOURCE_EXHAUSTED","details":[
            {"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[{"quotaId":"GenerateRequestsPerDayPerProjectPerModel-FreeTier"}]},
            {"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"37s"}]}}"#;
        let f = ErrorFacts::parse(body);
        assert_eq!(f.retry_delay, Some(Duration::from_secs(37)));
        assert!(f.is_per_day());
        let invalid = br#"{"error":{"code":400,"details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID"}]}}"#;
        assert!(ErrorFacts::parse(invalid).is_key_level(400));
        let blocked = br#"{"error":{"code":403,"details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_SERVICE_BLOCKED"}]}}"#;
        assert!(ErrorFacts::parse(blocked).is_key_level(403));
        let foreign_file = br#"{"error":{"code":403,"message":"You do not have permission to access the File x","status":"PERMISSION_DENIED"}}"#;
        assert!(!ErrorFacts::parse(foreign_file).is_key_level(403));
        assert_eq!(parse_proto_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(ErrorFacts::parse(b"<html>"), ErrorFacts::default());
    }

    #[test]
    fn estimates_tokens() {
        let text = format!(r#"{{"contents":[{{"parts":[{{"text":"{}"}}]}}]}}"#, "a".repeat(400));
        let t = estimate_input_tokens(text.as_bytes());
        assert!((100..=115).contains(&t), "{t}");
        let blob = "QUJD".repeat(250_000);
        let image =
            format!(r#"{{"contents":[{{"parts":[{{"inlineData":{{"mimeType":"image/png","data":"{blob}"}}}}]}}]}}"#);
        let t = estimate_input_tokens(image.as_bytes());
        assert!((258..300).contains(&t), "a 1 MB image costs a flat 258, not {t}");
        let openai = format!(
            r#"{{"model":"m","messages":[{{"content":[{{"type":"image_url","image_url":{{"url":"data:image/png;base64,{blob}"}}}}]}}]}}"#
        );
        assert!(estimate_input_tokens(openai.as_bytes()) < 300);
        assert_eq!(estimate_input_tokens(b""), 1);
    }

    #[test]
    fn scans_usage_across_chunks() {
        let mut scan = UsageScan::default();
        scan.feed(br#"data: {"candidates":[],"usageMetadata":{"promptTokenCo"#);
        scan.feed(br#"unt": 12"#);
        scan.feed(br#"34,"candidatesTokenCount":5}}"#);
        assert_eq!(scan.prompt_tokens, Some(1234));
        let mut openai = UsageScan::default();
        openai.feed(br#"{"usage":{"prompt_tokens":7,"completion_tokens":3}}"#);
        assert_eq!(openai.prompt_tokens, Some(7));
    }
}
