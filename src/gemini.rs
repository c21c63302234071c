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

fn is_dot_segment(segment: &str) -> bool {
    let decoded = segment.to_ascii_lowercase().replace("%2e", ".");
    decoded == "." || decoded == ".."
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
