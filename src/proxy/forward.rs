//! The upstream leg: one pooled hyper-util client (HTTPS with rustls and the `ring`
//! provider, HTTP/2 where ALPN offers it, plain HTTP for mocks), upstream URIs, and the
//! mapping of transport failures to `GateError` (SPEC 2: unreachable 503, broken 502,
//! no answer in time 504, a streamed body over the limit 413).

use super::body::{is_body_limit, ForwardBody};
use crate::config::UpstreamConfig;
use crate::error::GateError;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::sync::Arc;
use std::time::Duration;

type HttpsClient = Client<HttpsConnector<HttpConnector>, ForwardBody>;

pub struct Upstream {
    client: HttpsClient,
    /// HTTP/1.1 only: WebSocket upgrades cannot ride an HTTP/2 connection.
    upgrade_client: HttpsClient,
    scheme: Scheme,
    authority: Authority,
    /// A path prefix of `base_url`, without its trailing slash ("" for none).
    prefix: Box<str>,
    pub request_timeout: Duration,
    pub stream_idle_timeout: Duration,
    pub max_request_body: u64,
}

impl Upstream {
    pub fn new(config: &UpstreamConfig) -> Result<Upstream, String> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(config.connect_timeout));
        http.set_keepalive(Some(Duration::from_secs(60)));
        let tls = tls_config(config)?;
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls.clone())
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http.clone());
        let client = Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(90)).build(https);
        let https_h1 = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let upgrade_client = Client::builder(TokioExecutor::new()).build(https_h1);
        let base = &config.base_url;
        let scheme = base.scheme().cloned().unwrap_or(Scheme::HTTPS);
        Ok(Upstream {
            client,
            upgrade_client,
            authority: base.authority().cloned().ok_or("upstream.base_url has no host")?,
            prefix: base.path().trim_end_matches('/').into(),
            scheme,
            request_timeout: config.request_timeout,
            stream_idle_timeout: config.stream_idle_timeout,
            max_request_body: config.max_request_body,
        })
    }

    /// The path prefix of `base_url` ("" for none).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The upstream URI for a client's path and (already key-free) query.
    pub fn uri(&self, path: &str, query: Option<&str>) -> Result<Uri, GateError> {
        let mut pq = String::with_capacity(self.prefix.len() + path.len() + query.map_or(0, |q| q.len() + 1));
        pq.push_str(&self.prefix);
        pq.push_str(path);
        if let Some(q) = query.filter(|q| !q.is_empty()) {
            pq.push('?');
            pq.push_str(q);
        }
        let pq = PathAndQuery::from_maybe_shared(pq)
            .map_err(|_| GateError::BadRequest("the request path is not valid".into()))?;
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(pq)
            .build()
            .map_err(|_| GateError::BadRequest("the request path is not valid".into()))
    }

    /// Sends the request and waits for the answer's head, within `request_timeout`.
    pub async fn send(&self, request: Request<ForwardBody>) -> Result<Response<Incoming>, GateError> {
        self.send_with(&self.client, request).await
    }

    /// Sends a WebSocket upgrade over HTTP/1.1.
    pub async fn send_upgrade(&self, request: Request<ForwardBody>) -> Result<Response<Incoming>, GateError> {
        self.send_with(&self.upgrade_client, request).await
    }

    async fn send_with(
        &self,
        client: &HttpsClient,
        request: Request<ForwardBody>,
    ) -> Result<Response<Incoming>, GateError> {
        match tokio::time::timeout(self.request_timeout, client.request(request)).await {
            Err(_) => Err(GateError::UpstreamTimeout(self.request_timeout)),
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) => Err(self.classify_error(&e)),
        }
    }

    fn classify_error(&self, e: &hyper_util::client::legacy::Error) -> GateError {
        if is_body_limit(e) {
            // Only streamed bodies get here; buffered ones were refused before sending.
            return GateError::BodyTooLarge { limit: self.max_request_body };
        }
        let detail = error_chain(e);
        if e.is_connect() {
            GateError::UpstreamUnreachable(detail)
        } else {
            GateError::UpstreamBroken(detail)
        }
    }
}

/// The error and its sources on one line (no URIs: they could carry a `key=`).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        out.push_str(": ");
        out.push_str(&s.to_string());
        next = s.source();
    }
    out
}

fn tls_config(config: &UpstreamConfig) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = &config.ca_file {
        let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let mut found = 0;
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            let cert = cert.map_err(|e| format!("{}: {e}", path.display()))?;
            roots.add(cert).map_err(|e| format!("{}: {e}", path.display()))?;
            found += 1;
        }
        if found == 0 {
            return Err(format!("{} holds no PEM certificates", path.display()));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tls)
}
