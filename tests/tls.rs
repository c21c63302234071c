//! The upstream over HTTPS (SPEC 2/3): rustls with the `ring` provider, extra trust roots
//! from `upstream.ca_file`, HTTP/2 when the upstream offers it via ALPN. A TLS front made
//! here from a self-signed certificate relays to the plain mock.

mod support;

use mock_gemini::{MockServer, Script};
use std::path::Path;
use std::sync::Arc;
use support::*;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls;

type Negotiated = Arc<std::sync::Mutex<Vec<Option<Vec<u8>>>>>;

/// Terminates TLS on a loopback port and relays each connection to `backend`; returns the
/// port, the certificate (PEM) clients must trust, and the ALPN protocol of each connection.
async fn tls_front(backend: std::net::SocketAddr) -> (u16, String, Negotiated) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert_pem = certified.cert.pem();
    let cert_der = certified.cert.der().clone();
    let key_der = rustls::pki_types::PrivateKeyDer::try_from(certified.signing_key.serialize_der()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert_der], key_der)
        .unwrap();
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let negotiated = Negotiated::default();
    let seen = negotiated.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let seen = seen.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                seen.lock().unwrap().push(tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec));
                let Ok(mut plain) = TcpStream::connect(backend).await else { return };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    (port, cert_pem, negotiated)
}

async fn gate_over_tls(mock: &MockServer, ca_file: Option<&Path>) -> (gemgate::Running, Negotiated) {
    capture_logs();
    let (port, pem, negotiated) = tls_front(mock.addr()).await;
    let mut upstream_extra = String::new();
    if let Some(path) = ca_file {
        std::fs::write(path, pem).unwrap();
        upstream_extra = format!("ca_file: {}\nconnect_timeout: 2s", path.display());
    }
    let yaml = config_yaml(&format!("https://localhost:{port}"), &upstream_extra, "");
    let config = gemgate::config::Config::from_yaml(&yaml, Path::new("tls.yaml")).unwrap();
    (gemgate::Running::start(config).await.unwrap(), negotiated)
}

#[tokio::test]
async fn https_upstream_with_an_extra_ca_negotiates_http2() {
    let mock = MockServer::spawn(Script::default()).await;
    let ca = std::env::temp_dir().join(format!("gemgate-test-ca-{}.pem", std::process::id()));
    let (gate, negotiated) = gate_over_tls(&mock, Some(&ca)).await;
    let http = client();
    for _ in 0..3 {
        let rsp = http
            .post(format!("{}{GENERATE_PATH}", gate.base_url()))
            .header("x-goog-api-key", "client")
            .body(GENERATE)
            .send()
            .await
            .unwrap();
        assert_eq!(rsp.status(), 200);
    }
    assert_eq!(mock.last().unwrap().key.as_deref(), Some(KEY_A));
    assert_eq!(mock.count(), 3);
    let negotiated = negotiated.lock().unwrap().clone();
    assert_eq!(negotiated, vec![Some(b"h2".to_vec())], "one pooled HTTP/2 connection carries all three");
    let _ = std::fs::remove_file(ca);
}

#[tokio::test]
async fn an_untrusted_upstream_certificate_is_unreachable() {
    let mock = MockServer::spawn(Script::default()).await;
    let (gate, _) = gate_over_tls(&mock, None).await;
    let rsp = client()
        .post(format!("{}{GENERATE_PATH}", gate.base_url()))
        .header("x-goog-api-key", "client")
        .body(GENERATE)
        .send()
        .await
        .unwrap();
    assert_eq!(rsp.status(), 503);
    let v: serde_json::Value = rsp.json().await.unwrap();
    assert_eq!(v["error"]["status"], "UNAVAILABLE");
    assert_eq!(mock.count(), 0);
}
