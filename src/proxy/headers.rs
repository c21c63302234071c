//! Header work on both legs: the client's credential (SPEC 2's three forms) found and
//! removed, the pool key added, hop-by-hop headers dropped (RFC 9110 §7.6.1), and the
//! `x-gemgate-*` / `x-request-id` answers. Key values are only ever written into
//! sensitive header values.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use std::borrow::Cow;

pub static X_GOOG_API_KEY: HeaderName = HeaderName::from_static("x-goog-api-key");
pub static X_GEMGATE_KEY: HeaderName = HeaderName::from_static("x-gemgate-key");
pub static X_GEMGATE_MODEL: HeaderName = HeaderName::from_static("x-gemgate-model");
pub static X_GEMGATE_CACHE: HeaderName = HeaderName::from_static("x-gemgate-cache");
pub static X_GEMGATE_ATTEMPTS: HeaderName = HeaderName::from_static("x-gemgate-attempts");
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub static X_GOOG_UPLOAD_URL: HeaderName = HeaderName::from_static("x-goog-upload-url");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// The credential the client sent, in SPEC 2's order: `x-goog-api-key`, `Authorization:
/// Bearer`, then the `key` query parameter.
pub fn client_credential<'a>(headers: &'a HeaderMap, query: Option<&'a str>) -> Option<Cow<'a, str>> {
    if let Some(v) = headers.get(&X_GOOG_API_KEY).and_then(|v| v.to_str().ok()) {
        return Some(Cow::Borrowed(v));
    }
    if let Some(v) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        if let Some(token) = v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")) {
            return Some(Cow::Borrowed(token.trim()));
        }
    }
    query_param(query?, "key")
}

/// The decoded value of query parameter `name`.
pub fn query_param<'a>(query: &'a str, name: &str) -> Option<Cow<'a, str>> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| percent_decode(v))
    })
}

fn percent_decode(v: &str) -> Cow<'_, str> {
    if !v.contains(['%', '+']) {
        return Cow::Borrowed(v);
    }
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// The query without its `key` parameter (borrowed when there was none).
pub fn strip_key_param(query: &str) -> Cow<'_, str> {
    if !query.split('&').any(|p| p == "key" || p.starts_with("key=")) {
        return Cow::Borrowed(query);
    }
    let kept: Vec<&str> =
        query.split('&').filter(|p| !(p.is_empty() || *p == "key" || p.starts_with("key="))).collect();
    Cow::Owned(kept.join("&"))
}

/// Removes hop-by-hop headers: the fixed set and any named in `Connection`. An upgrade
/// keeps `Connection`/`Upgrade`, which the upstream needs to switch protocols.
pub fn remove_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    if let Some(connection) = headers.get(header::CONNECTION) {
        if let Ok(list) = connection.to_str() {
            // `keep-alive`, `close` and `upgrade` are the usual tokens: the first is removed
            // below anyway, the others name no header; only other names need removing.
            let named: Vec<HeaderName> = list
                .split(',')
                .map(str::trim)
                .filter(|t| !["keep-alive", "close", "upgrade"].iter().any(|k| t.eq_ignore_ascii_case(k)))
                .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
                .collect();
            for name in named {
                headers.remove(name);
            }
        }
    }
    if !keep_upgrade {
        headers.remove(header::CONNECTION);
        headers.remove(header::UPGRADE);
    }
    headers.remove(&KEEP_ALIVE);
    headers.remove(&PROXY_CONNECTION);
    headers.remove(header::TE);
    headers.remove(header::TRAILER);
    headers.remove(header::TRANSFER_ENCODING);
}

/// Prepares the client's headers for the upstream: hop-by-hop and credentials out, `Host`
/// out (the client sets the upstream's), the pool key in.
pub fn to_upstream(headers: &mut HeaderMap, key: &HeaderValue, upgrade: bool) {
    remove_hop_by_hop(headers, upgrade);
    headers.remove(header::HOST);
    headers.remove(header::AUTHORIZATION);
    headers.insert(X_GOOG_API_KEY.clone(), key.clone());
}

/// A fresh request id: 16 hex digits, written without a format string (every request
/// that brings none gets one).
pub fn new_request_id() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut n = fastrand::u64(..);
    let mut id = [0u8; 16];
    for digit in id.iter_mut().rev() {
        *digit = HEX[(n & 15) as usize];
        n >>= 4;
    }
    HeaderValue::from_bytes(&id).unwrap_or(HeaderValue::from_static("0"))
}

/// `x-gemgate-attempts` for `n`, static for the usual counts.
pub fn attempts_value(n: u32) -> HeaderValue {
    match n {
        1 => HeaderValue::from_static("1"),
        2 => HeaderValue::from_static("2"),
        3 => HeaderValue::from_static("3"),
        n => HeaderValue::from(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_credentials_in_all_three_forms() {
        let mut h = HeaderMap::new();
        assert_eq!(client_credential(&h, Some("alt=sse&key=abc%2Bd")).as_deref(), Some("abc+d"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer tok-1"));
        assert_eq!(client_credential(&h, Some("key=zzz")).as_deref(), Some("tok-1"));
        h.insert(X_GOOG_API_KEY.clone(), HeaderValue::from_static("hdr-key"));
        assert_eq!(client_credential(&h, None).as_deref(), Some("hdr-key"));
    }

    #[test]
    fn strips_key_param_only() {
        assert_eq!(strip_key_param("alt=sse&key=abc"), "alt=sse");
        assert_eq!(strip_key_param("key=abc"), "");
        assert_eq!(strip_key_param("keyword=x&key=y&z=1"), "keyword=x&z=1");
        assert!(matches!(strip_key_param("alt=sse"), Cow::Borrowed(_)));
    }

    #[test]
    fn removes_hop_by_hop_and_credentials() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive, x-private"));
        h.insert("x-private", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer client"));
        h.insert(X_GOOG_API_KEY.clone(), HeaderValue::from_static("client"));
        h.insert("x-goog-api-client", HeaderValue::from_static("genai-py"));
        to_upstream(&mut h, &HeaderValue::from_static("pool-key"), false);
        assert_eq!(h.len(), 2, "{h:?}");
        assert_eq!(h[&X_GOOG_API_KEY], "pool-key");
        assert_eq!(h["x-goog-api-client"], "genai-py");
    }

    #[test]
    fn upgrades_keep_upgrade_headers() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        remove_hop_by_hop(&mut h, true);
        assert_eq!(h[header::UPGRADE], "websocket");
        assert_eq!(h[header::CONNECTION], "Upgrade");
    }
}
