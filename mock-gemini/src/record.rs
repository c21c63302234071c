//! What the mock saw: one `Recorded` per request (control paths excluded), and the
//! API-key extraction every recorded request goes through.

use bytes::Bytes;
use http::request::Parts;
use serde::Serialize;

/// One request as the mock received it.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// Header names are lowercase (as hyper delivers them); values lossy UTF-8.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    /// The API key used: `x-goog-api-key`, else the `key` query parameter, else
    /// `Authorization: Bearer` (the OpenAI-compatible paths).
    pub key: Option<String>,
}

impl Recorded {
    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The body as lossy UTF-8 text.
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON, if it is JSON.
    pub fn body_json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }

    pub(crate) fn from_parts(parts: &Parts, body: &Bytes, key: Option<String>) -> Recorded {
        Recorded {
            method: parts.method.as_str().to_owned(),
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().map(str::to_owned),
            headers: parts
                .headers
                .iter()
                .map(|(n, v)| (n.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
                .collect(),
            body: body.clone(),
            key,
        }
    }

    /// The JSON shape served by `GET /_mock/requests`.
    pub(crate) fn view(&self) -> RecordedView<'_> {
        RecordedView {
            method: &self.method,
            path: &self.path,
            query: self.query.as_deref(),
            headers: &self.headers,
            body: String::from_utf8_lossy(&self.body).into_owned(),
            key: self.key.as_deref(),
        }
    }
}

#[derive(Serialize)]
pub(crate) struct RecordedView<'a> {
    method: &'a str,
    path: &'a str,
    query: Option<&'a str>,
    headers: &'a [(String, String)],
    body: String,
    key: Option<&'a str>,
}

/// The value of query parameter `name`, undecoded (keys and ids need no decoding).
pub(crate) fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then_some(v)
    })
}

/// The API key of a request, in Google's order of precedence.
pub(crate) fn extract_key(parts: &Parts) -> Option<String> {
    if let Some(v) = parts.headers.get("x-goog-api-key") {
        if let Ok(s) = v.to_str() {
            if !s.is_empty() {
                return Some(s.to_owned());
            }
        }
    }
    if let Some(k) = query_param(parts.uri.query(), "key") {
        if !k.is_empty() {
            return Some(k.to_owned());
        }
    }
    let auth = parts.headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = auth.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut b = http::Request::builder().uri(uri);
        for (n, v) in headers {
            b = b.header(*n, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn key_sources_in_order() {
        assert_eq!(extract_key(&parts("/x?key=q", &[("x-goog-api-key", "h")])).as_deref(), Some("h"));
        assert_eq!(extract_key(&parts("/x?alt=sse&key=q", &[])).as_deref(), Some("q"));
        assert_eq!(extract_key(&parts("/x", &[("authorization", "Bearer b")])).as_deref(), Some("b"));
        assert_eq!(extract_key(&parts("/x", &[])), None);
    }

    #[test]
    fn header_lookup_is_case_insensitive() {
        let r = Recorded::from_parts(&parts("/x", &[("X-Goog-Api-Key", "k")]), &Bytes::new(), None);
        assert_eq!(r.header("x-goog-api-key"), Some("k"));
        assert_eq!(r.header("X-GOOG-API-KEY"), Some("k"));
    }
}
