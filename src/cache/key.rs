//! The cache key (SPEC 5): a SHA-256 over the API version, the method, the effective model,
//! the body in canonical JSON (object keys sorted, no insignificant whitespace, string
//! escapes in one spelling, number literals exactly as written) and every query parameter
//! but `key`, sorted; with `scope: client`, the client's name too. Never the credential.

use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CacheKey(pub [u8; 32]);

impl CacheKey {
    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// What a key is made of; `body` must be JSON (anything else is not cached).
pub struct KeyParts<'a> {
    pub version: &'a str,
    pub method: &'a str,
    pub model: &'a str,
    pub body: &'a [u8],
    pub query: Option<&'a str>,
    /// `scope: client`: answers are not shared between clients.
    pub client: Option<&'a str>,
}

/// The key, or `None` when the body is not JSON.
pub fn cache_key(parts: &KeyParts) -> Option<CacheKey> {
    let canonical = canonical_json(parts.body)?;
    let mut query: Vec<&str> = parts
        .query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty() && *p != "key" && !p.starts_with("key="))
        .collect();
    query.sort_unstable();
    let mut hash = Sha256::new();
    // Each field is length-prefixed so no two different requests hash the same bytes.
    for field in [parts.version.as_bytes(), parts.method.as_bytes(), parts.model.as_bytes(), &canonical] {
        hash.update((field.len() as u64).to_be_bytes());
        hash.update(field);
    }
    hash.update((query.len() as u64).to_be_bytes());
    for q in query {
        hash.update((q.len() as u64).to_be_bytes());
        hash.update(q.as_bytes());
    }
    match parts.client {
        Some(client) => {
            hash.update([1]);
            hash.update(client.as_bytes());
        }
        None => hash.update([0]),
    }
    Some(CacheKey(hash.finalize().into()))
}

/// The canonical spelling of a JSON document (serde_json keeps object keys sorted and, with
/// `arbitrary_precision`, number literals as written; strings are re-escaped one way).
pub fn canonical_json(body: &[u8]) -> Option<Vec<u8>> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    serde_json::to_vec(&value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(body: &str, query: Option<&str>) -> Option<CacheKey> {
        cache_key(&KeyParts {
            version: "v1beta",
            method: "generateContent",
            model: "gemini-2.5-flash",
            body: body.as_bytes(),
            query,
            client: None,
        })
    }

    #[test]
    fn spelling_does_not_matter_content_does() {
        let a = key(r#"{"contents":[{"parts":[{"text":"hi é"}]}],"generationConfig":{"temperature":0.5}}"#, None);
        let b = key(
            "{ \"generationConfig\" : { \"temperature\" : 0.5 },\n \"contents\": [ { \"parts\": [ { \"text\": \"hi \\u00e9\" } ] } ] }",
            None,
        );
        assert!(a.is_some());
        assert_eq!(a, b, "key order, whitespace and escape spelling are not content");
        let c = key(r#"{"contents":[{"parts":[{"text":"hi é"}]}],"generationConfig":{"temperature":0.50}}"#, None);
        assert_ne!(a, c, "numbers are compared as written");
        let d = key(r#"{"contents":[{"parts":[{"text":"hi e"}]}],"generationConfig":{"temperature":0.5}}"#, None);
        assert_ne!(a, d);
    }

    #[test]
    fn query_is_sorted_and_never_holds_the_key() {
        let body = r#"{"contents":[]}"#;
        assert_eq!(key(body, Some("alt=sse&b=2")), key(body, Some("b=2&key=secret&alt=sse")));
        assert_ne!(key(body, Some("alt=sse")), key(body, None));
    }

    #[test]
    fn every_field_counts() {
        let base = KeyParts { version: "v1beta", method: "m", model: "x", body: b"{}", query: None, client: None };
        let k = cache_key(&base).unwrap();
        assert_ne!(k, cache_key(&KeyParts { version: "v1", ..base }).unwrap());
        assert_ne!(k, cache_key(&KeyParts { model: "y", ..base }).unwrap());
        assert_ne!(k, cache_key(&KeyParts { method: "n", ..base }).unwrap());
        assert_ne!(k, cache_key(&KeyParts { client: Some("bot"), ..base }).unwrap());
        assert!(cache_key(&KeyParts { body: b"not json", ..base }).is_none());
        assert_eq!(k.hex().len(), 64);
    }
}
