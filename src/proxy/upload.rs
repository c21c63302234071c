//! Resumable uploads (SPEC 2): the upstream's `x-goog-upload-url` points at itself; it is
//! rewritten to point back at gemgate (the request's own `Host`, any `key=` removed) so the
//! upload's next steps come through gemgate, and the session id is returned for pinning so
//! they go out with the same key.

use super::headers::{query_param, strip_key_param, X_GOOG_UPLOAD_URL};
use http::{HeaderMap, HeaderValue, Uri};

/// Rewrites the header in place; returns the upload session id, if the URL has one.
pub fn rewrite_upload_url(headers: &mut HeaderMap, host: &str, upstream_prefix: &str) -> Option<String> {
    let original = headers.get(&X_GOOG_UPLOAD_URL)?.to_str().ok()?;
    let uri: Uri = original.parse().ok()?;
    let path = uri.path();
    let path = path.strip_prefix(upstream_prefix).filter(|p| p.starts_with('/')).unwrap_or(path);
    let query = uri.query().map(strip_key_param);
    let upload_id = uri.query().and_then(|q| query_param(q, "upload_id")).map(|id| id.into_owned());
    let rewritten = match query.as_deref() {
        Some(q) if !q.is_empty() => format!("http://{host}{path}?{q}"),
        _ => format!("http://{host}{path}"),
    };
    match HeaderValue::from_str(&rewritten) {
        Ok(value) => {
            headers.insert(&X_GOOG_UPLOAD_URL, value);
        }
        Err(_) => {
            headers.remove(&X_GOOG_UPLOAD_URL);
        }
    }
    upload_id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_back_at_gemgate_without_the_key() {
        let mut h = HeaderMap::new();
        h.insert(
            &X_GOOG_UPLOAD_URL,
            HeaderValue::from_static(
                "https://generativelanguage.googleapis.com/upload/v1beta/files?key=SECRET&upload_id=AB-12&upload_protocol=resumable",
            ),
        );
        let id = rewrite_upload_url(&mut h, "127.0.0.1:8080", "");
        assert_eq!(id.as_deref(), Some("AB-12"));
        assert_eq!(
            h[&X_GOOG_UPLOAD_URL],
            "http://127.0.0.1:8080/upload/v1beta/files?upload_id=AB-12&upload_protocol=resumable"
        );
    }

    #[test]
    fn strips_the_upstream_prefix() {
        let mut h = HeaderMap::new();
        h.insert(&X_GOOG_UPLOAD_URL, HeaderValue::from_static("http://mock:1/base/upload/v1beta/files?upload_id=x"));
        rewrite_upload_url(&mut h, "gate:8080", "/base");
        assert_eq!(h[&X_GOOG_UPLOAD_URL], "http://gate:8080/upload/v1beta/files?upload_id=x");
    }
}
