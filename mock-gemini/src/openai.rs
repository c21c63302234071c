//! The OpenAI-compatible surface (`/v1beta/openai/...`): chat completions (whole and
//! `stream: true`), embeddings and the model list, in OpenAI's shapes.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::body::{ok_json, SSE};
use crate::errors;
use crate::generate::parse;
use crate::models;
use crate::server::{Call, Reply};
use crate::stream::{frames_reply, split_text};
use crate::util::{embedding, new_id, prefix_chars, tokens_for_chars, unix_now};

#[derive(Deserialize, Default)]
#[serde(default)]
struct ChatRequest {
    model: String,
    messages: Vec<Message>,
    stream: bool,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Message {
    content: Option<MessageContent>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum MessageContent {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ContentPart {
    text: Option<String>,
}

#[derive(Serialize, Clone, Copy)]
struct ChatUsage {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
}

#[derive(Serialize)]
struct Completion<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [Choice<'a>; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<ChatUsage>,
}

#[derive(Serialize)]
struct Choice<'a> {
    index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<ChatMessage<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    delta: Option<ChatMessage<'a>>,
    finish_reason: Option<&'static str>,
}

#[derive(Serialize)]
struct ChatMessage<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    content: &'a str,
}

fn bare_model(model: &str) -> &str {
    let m = model.strip_prefix("models/").unwrap_or(model);
    if m.is_empty() {
        "gemini-2.5-flash"
    } else {
        m
    }
}

/// `POST /v1beta/openai/chat/completions`.
pub(crate) fn chat(call: &Call<'_>) -> Reply {
    let req: ChatRequest = match parse(call.body) {
        Ok(r) => r,
        Err(e) => return errors::bad_json(&e),
    };
    let mut chars = 0;
    let mut echo = "";
    for m in &req.messages {
        let texts: Vec<&str> = match &m.content {
            Some(MessageContent::Text(t)) => vec![t.as_str()],
            Some(MessageContent::Parts(p)) => p.iter().filter_map(|p| p.text.as_deref()).collect(),
            None => Vec::new(),
        };
        for t in texts {
            chars += t.chars().count();
            echo = t;
        }
    }
    let model = bare_model(&req.model);
    let echo = prefix_chars(echo, 32);
    let text = match &call.behaviour.text {
        Some(t) => t.clone(),
        None if echo.is_empty() => format!("mock answer from {model}"),
        None => format!("mock answer from {model}: {echo}"),
    };
    let prompt_tokens = tokens_for_chars(chars);
    let completion_tokens = tokens_for_chars(text.chars().count());
    let usage = ChatUsage { prompt_tokens, completion_tokens, total_tokens: prompt_tokens + completion_tokens };
    let id = format!("chatcmpl-{}", new_id(24));
    let created = unix_now();
    let completion = |content: &str, whole: bool, first: bool, last: bool| {
        let msg = ChatMessage { role: (whole || first).then_some("assistant"), content };
        let c = Completion {
            id: &id,
            object: if whole { "chat.completion" } else { "chat.completion.chunk" },
            created,
            model,
            choices: [Choice {
                index: 0,
                message: whole.then_some(ChatMessage { role: msg.role, content }),
                delta: (!whole).then_some(msg),
                finish_reason: last.then_some("stop"),
            }],
            usage: last.then_some(usage),
        };
        serde_json::to_vec(&c).unwrap_or_default()
    };
    if !req.stream {
        return ok_json(completion(&text, true, true, true));
    }
    let pieces = split_text(&text, call.behaviour.chunks);
    let n = pieces.len();
    let mut frames: Vec<Bytes> = pieces
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            let json = completion(p, false, i == 0, i + 1 == n);
            let mut f = Vec::with_capacity(json.len() + 8);
            f.extend_from_slice(b"data: ");
            f.extend_from_slice(&json);
            f.extend_from_slice(b"\n\n");
            Bytes::from(f)
        })
        .collect();
    frames.push(Bytes::from_static(b"data: [DONE]\n\n"));
    frames_reply(call, SSE, frames, n)
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct EmbeddingsRequest {
    model: String,
    input: Option<Input>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Input {
    One(String),
    Many(Vec<String>),
}

/// `POST /v1beta/openai/embeddings`.
pub(crate) fn embeddings(call: &Call<'_>) -> Reply {
    let req: EmbeddingsRequest = match parse(call.body) {
        Ok(r) => r,
        Err(e) => return errors::bad_json(&e),
    };
    let inputs = match req.input {
        Some(Input::One(s)) => vec![s],
        Some(Input::Many(v)) => v,
        None => Vec::new(),
    };
    let tokens: u64 = inputs.iter().map(|s| tokens_for_chars(s.chars().count())).sum();
    let data: Vec<_> = inputs
        .iter()
        .enumerate()
        .map(|(i, s)| json!({ "object": "embedding", "index": i, "embedding": embedding(s) }))
        .collect();
    let out = json!({
        "object": "list",
        "data": data,
        "model": bare_model(&req.model),
        "usage": { "prompt_tokens": tokens, "total_tokens": tokens },
    });
    ok_json(out.to_string())
}

fn model_entry(id: &str) -> serde_json::Value {
    json!({ "id": format!("models/{id}"), "object": "model", "created": 0, "owned_by": "google" })
}

/// `GET /v1beta/openai/models`.
pub(crate) fn list_models() -> Reply {
    let data: Vec<_> = models::ids().map(model_entry).collect();
    ok_json(json!({ "object": "list", "data": data }).to_string())
}

/// `GET /v1beta/openai/models/{m}`.
pub(crate) fn get_model(id: &str) -> Reply {
    ok_json(model_entry(bare_model(id)).to_string())
}
