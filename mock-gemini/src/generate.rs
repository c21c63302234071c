//! The model methods of the native API: `generateContent`, `countTokens`, `embedContent`,
//! `batchEmbedContents`, and the request reading they share (prompt size, echo, and the
//! files / cached contents a body names).

use serde::{Deserialize, Serialize};

use crate::body::ok_json;
use crate::errors;
use crate::resources::{access, file_id, Access};
use crate::server::{Call, Reply};
use crate::util::{embedding, new_id, prefix_chars, tokens_for_chars};

/// How many characters of the last prompt text the answer echoes.
const ECHO_CHARS: usize = 32;

/// Just the parts of a GenerateContentRequest the mock looks at; everything else is
/// skipped by serde without allocation.
#[derive(Deserialize, Default)]
#[serde(default)]
struct GenerateRequest {
    contents: Vec<Content>,
    #[serde(rename = "systemInstruction", alias = "system_instruction")]
    system_instruction: Option<Content>,
    #[serde(rename = "cachedContent", alias = "cached_content")]
    cached_content: Option<String>,
    /// countTokens may wrap the whole request.
    #[serde(rename = "generateContentRequest", alias = "generate_content_request")]
    generate_content_request: Option<Box<GenerateRequest>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Content {
    parts: Vec<Part>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Part {
    text: Option<String>,
    #[serde(rename = "fileData", alias = "file_data")]
    file_data: Option<FileData>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct FileData {
    #[serde(rename = "fileUri", alias = "file_uri")]
    file_uri: Option<String>,
}

/// What the mock learned from a request body.
#[derive(Default, Debug)]
pub(crate) struct Prompt {
    /// Text characters in contents and system instruction.
    pub chars: usize,
    /// The start of the last text part, echoed in the answer.
    pub echo: String,
    /// File URIs referenced by `fileData`.
    pub files: Vec<String>,
    /// `cachedContents/{id}` referenced by the request.
    pub cached: Option<String>,
}

impl Prompt {
    fn add(&mut self, req: GenerateRequest) {
        let contents = req.system_instruction.into_iter().chain(req.contents);
        for part in contents.flat_map(|c| c.parts) {
            if let Some(t) = part.text {
                self.chars += t.chars().count();
                self.echo = prefix_chars(&t, ECHO_CHARS).to_owned();
            }
            if let Some(uri) = part.file_data.and_then(|f| f.file_uri) {
                self.files.push(uri);
            }
        }
        if req.cached_content.is_some() {
            self.cached = req.cached_content;
        }
        if let Some(inner) = req.generate_content_request {
            self.add(*inner);
        }
    }

    pub fn tokens(&self) -> u64 {
        tokens_for_chars(self.chars)
    }
}

/// Reads a GenerateContentRequest-like body: 400 if it is not JSON; a JSON body of an
/// unexpected shape is accepted with an empty prompt (the mock is lenient, not a validator).
pub(crate) fn read_prompt(body: &[u8]) -> Result<Prompt, serde_json::Error> {
    let mut prompt = Prompt::default();
    match serde_json::from_slice::<GenerateRequest>(body) {
        Ok(req) => prompt.add(req),
        Err(_) => {
            serde_json::from_slice::<serde::de::IgnoredAny>(body)?;
        }
    }
    Ok(prompt)
}

/// 403 when the prompt names a file or cached content this key did not create (Google
/// answers the same whether it belongs to another project or does not exist).
pub(crate) fn check_references(call: &Call<'_>, prompt: &Prompt) -> Option<Reply> {
    if prompt.files.is_empty() && prompt.cached.is_none() {
        return None;
    }
    let mut res = call.state.resources();
    for uri in &prompt.files {
        let Some(id) = file_id(uri) else { continue };
        if !matches!(access(&mut res.files, id, call.key), Access::Granted(_)) {
            return Some(errors::resource_denied("File", id));
        }
    }
    if let Some(name) = &prompt.cached {
        let id = name.strip_prefix("cachedContents/").unwrap_or(name);
        if !matches!(access(&mut res.caches, id, call.key), Access::Granted(_)) {
            return Some(errors::resource_denied("CachedContent", id));
        }
    }
    None
}

/// The deterministic answer text for a model and prompt.
pub(crate) fn answer_text(call: &Call<'_>, model: &str, echo: &str) -> String {
    match &call.behaviour.text {
        Some(t) => t.clone(),
        None if echo.is_empty() => format!("mock answer from {model}"),
        None => format!("mock answer from {model}: {echo}"),
    }
}

#[derive(Serialize, Clone, Copy)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Usage {
    pub prompt_token_count: u64,
    pub candidates_token_count: u64,
    pub total_token_count: u64,
}

impl Usage {
    pub fn new(prompt: u64, answer: u64) -> Usage {
        Usage { prompt_token_count: prompt, candidates_token_count: answer, total_token_count: prompt + answer }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GenerateResponse<'a> {
    candidates: [Candidate<'a>; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    usage_metadata: Option<Usage>,
    model_version: &'a str,
    response_id: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Candidate<'a> {
    content: ContentOut<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    finish_reason: Option<&'static str>,
    index: u32,
}

#[derive(Serialize)]
struct ContentOut<'a> {
    parts: [TextPart<'a>; 1],
    role: &'static str,
}

#[derive(Serialize)]
pub(crate) struct TextPart<'a> {
    pub text: &'a str,
}

/// One GenerateContentResponse (a whole answer, or one stream chunk).
pub(crate) fn response_json(text: &str, model: &str, response_id: &str, last: bool, usage: Usage) -> Vec<u8> {
    let rsp = GenerateResponse {
        candidates: [Candidate {
            content: ContentOut { parts: [TextPart { text }], role: "model" },
            finish_reason: last.then_some("STOP"),
            index: 0,
        }],
        usage_metadata: last.then_some(usage),
        model_version: model,
        response_id,
    };
    serde_json::to_vec(&rsp).unwrap_or_default()
}

/// A Google-style response id.
pub(crate) fn response_id() -> String {
    new_id(22)
}

/// `models/{m}:generateContent`.
pub(crate) fn generate_content(call: &Call<'_>, model: &str) -> Reply {
    let prompt = match read_prompt(call.body) {
        Ok(p) => p,
        Err(e) => return errors::bad_json(&e),
    };
    if let Some(denied) = check_references(call, &prompt) {
        return denied;
    }
    let text = answer_text(call, model, &prompt.echo);
    let usage = Usage::new(prompt.tokens(), tokens_for_chars(text.chars().count()));
    ok_json(response_json(&text, model, &response_id(), true, usage))
}

/// `models/{m}:countTokens`.
pub(crate) fn count_tokens(call: &Call<'_>) -> Reply {
    let prompt = match read_prompt(call.body) {
        Ok(p) => p,
        Err(e) => return errors::bad_json(&e),
    };
    if let Some(denied) = check_references(call, &prompt) {
        return denied;
    }
    ok_json(format!("{{\"totalTokens\":{}}}", prompt.tokens()))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct EmbedRequest {
    content: Content,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct BatchEmbedRequest {
    requests: Vec<EmbedRequest>,
}

#[derive(Serialize)]
struct Values {
    values: [f32; 8],
}

fn embed_text(req: &EmbedRequest) -> String {
    req.content.parts.iter().filter_map(|p| p.text.as_deref()).collect::<Vec<_>>().join("\n")
}

/// Parses a body into `T`: a JSON syntax error is the caller's 400; valid JSON of an
/// unexpected shape reads as `T::default()` (the mock is lenient, not a validator).
pub(crate) fn parse<T: for<'de> Deserialize<'de> + Default>(body: &[u8]) -> Result<T, serde_json::Error> {
    match serde_json::from_slice::<T>(body) {
        Ok(v) => Ok(v),
        Err(e) if e.is_syntax() || e.is_eof() => Err(e),
        Err(_) => Ok(T::default()),
    }
}

/// `models/{m}:embedContent`.
pub(crate) fn embed_content(call: &Call<'_>) -> Reply {
    let req: EmbedRequest = match parse(call.body) {
        Ok(r) => r,
        Err(e) => return errors::bad_json(&e),
    };
    #[derive(Serialize)]
    struct Out {
        embedding: Values,
    }
    let out = Out { embedding: Values { values: embedding(&embed_text(&req)) } };
    ok_json(serde_json::to_vec(&out).unwrap_or_default())
}

/// `models/{m}:batchEmbedContents`.
pub(crate) fn batch_embed(call: &Call<'_>) -> Reply {
    let req: BatchEmbedRequest = match parse(call.body) {
        Ok(r) => r,
        Err(e) => return errors::bad_json(&e),
    };
    #[derive(Serialize)]
    struct Out {
        embeddings: Vec<Values>,
    }
    let out = Out { embeddings: req.requests.iter().map(|r| Values { values: embedding(&embed_text(r)) }).collect() };
    ok_json(serde_json::to_vec(&out).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_reads_text_files_and_cache_in_both_spellings() {
        let p = read_prompt(
            br#"{"systemInstruction":{"parts":[{"text":"be brief"}]},
                 "contents":[{"role":"user","parts":[{"text":"hello world"},
                 {"file_data":{"file_uri":"http://h/v1beta/files/abc","mime_type":"text/plain"}}]}],
                 "cached_content":"cachedContents/c1","generationConfig":{"temperature":0}}"#,
        )
        .unwrap();
        assert_eq!(p.chars, 19);
        assert_eq!(p.tokens(), 5);
        assert_eq!(p.echo, "hello world");
        assert_eq!(p.files, vec!["http://h/v1beta/files/abc"]);
        assert_eq!(p.cached.as_deref(), Some("cachedContents/c1"));
    }

    #[test]
    fn count_tokens_wrapper_is_read() {
        let p = read_prompt(br#"{"generateContentRequest":{"contents":[{"parts":[{"text":"abcdefgh"}]}]}}"#).unwrap();
        assert_eq!(p.tokens(), 2);
    }

    #[test]
    fn invalid_json_is_refused_but_odd_shapes_are_not() {
        assert!(read_prompt(b"{nope").is_err());
        assert!(read_prompt(b"").is_err());
        assert_eq!(read_prompt(br#"{"contents":"text"}"#).unwrap().chars, 0);
    }
}
