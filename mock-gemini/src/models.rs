//! `GET models` and `GET models/{m}`: a small fixed catalogue in Google's Model shape,
//! serialized once.

use std::sync::OnceLock;

use bytes::Bytes;
use serde_json::{json, Value};

use crate::body::ok_json;
use crate::server::Reply;

const GENERATE: &[&str] = &["generateContent", "countTokens", "createCachedContent", "batchGenerateContent"];
const EMBED: &[&str] = &["embedContent", "countTextTokens", "countTokens", "batchEmbedContents"];

/// (id, display name, input limit, output limit, embedding?)
const CATALOGUE: &[(&str, &str, u64, u64, bool)] = &[
    ("gemini-2.5-flash", "Gemini 2.5 Flash", 1_048_576, 65_536, false),
    ("gemini-2.5-pro", "Gemini 2.5 Pro", 1_048_576, 65_536, false),
    ("gemini-2.0-flash", "Gemini 2.0 Flash", 1_048_576, 8_192, false),
    ("text-embedding-004", "Text Embedding 004", 2_048, 1, true),
    ("gemini-embedding-001", "Gemini Embedding 001", 2_048, 1, true),
];

/// The Model resource for `id` (unknown ids get a generic generative model).
pub(crate) fn model_json(id: &str) -> Value {
    let entry = CATALOGUE.iter().find(|m| m.0 == id).copied();
    let (display, input, output, embed) = match entry {
        Some((_, d, i, o, e)) => (d.to_owned(), i, o, e),
        None => (id.to_owned(), 1_048_576, 65_536, id.contains("embedding")),
    };
    let mut m = json!({
        "name": format!("models/{id}"),
        "version": "001",
        "displayName": display,
        "description": format!("{display} (mock-gemini)"),
        "inputTokenLimit": input,
        "outputTokenLimit": output,
        "supportedGenerationMethods": if embed { EMBED } else { GENERATE },
    });
    if !embed {
        m["temperature"] = json!(1);
        m["topP"] = json!(0.95);
        m["topK"] = json!(64);
        m["maxTemperature"] = json!(2);
        m["thinking"] = json!(id.starts_with("gemini-2.5"));
    }
    m
}

/// `GET models`.
pub(crate) fn list() -> Reply {
    static BODY: OnceLock<Bytes> = OnceLock::new();
    let body = BODY.get_or_init(|| {
        let models: Vec<Value> = CATALOGUE.iter().map(|m| model_json(m.0)).collect();
        Bytes::from(json!({ "models": models }).to_string())
    });
    ok_json(body.clone())
}

/// `GET models/{m}`.
pub(crate) fn get(id: &str) -> Reply {
    ok_json(model_json(id).to_string())
}

/// Ids of the catalogue, for the OpenAI-compatible model list.
pub(crate) fn ids() -> impl Iterator<Item = &'static str> {
    CATALOGUE.iter().map(|m| m.0)
}
