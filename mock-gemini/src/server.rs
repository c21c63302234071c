//! The HTTP server: the accept loop (HTTP/1.1 with upgrades, or HTTP/2 prior knowledge),
//! graceful shutdown, and per request: read → record and admit (script) → latency →
//! scripted failure or route to the endpoint → gzip.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::ACCEPT_ENCODING;
use http::request::Parts;
use http::{Method, Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::body::{gzip_full, MockBody};
use crate::record::{extract_key, Recorded};
use crate::script::Behaviour;
use crate::state::{stopped, Admit, State, Verdict};
use crate::{batches, caches, control, errors, files, generate, live, models, openai, stream};

/// Every response the endpoints build.
pub(crate) type Reply = Response<MockBody>;

/// How long connections may finish in-flight work after shutdown starts.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// The service failed on purpose: hyper closes the connection without an answer.
#[derive(Debug, thiserror::Error)]
#[error("mock-gemini: connection closed by script")]
pub(crate) struct Abort;

/// One admitted request, as the endpoint handlers see it.
pub(crate) struct Call<'a> {
    pub state: &'a State,
    pub parts: &'a Parts,
    pub body: &'a Bytes,
    pub key: Option<&'a str>,
    pub behaviour: &'a Behaviour,
}

impl Call<'_> {
    /// Whether this response is gzipped: the script asks and the client accepts it.
    pub fn gzip(&self) -> bool {
        self.behaviour.gzip
            && self.parts.headers.get_all(ACCEPT_ENCODING).iter().any(|v| v.to_str().is_ok_and(|s| s.contains("gzip")))
    }
}

/// Where a request goes, from its method and path alone.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Route<'a> {
    Control(&'a str),
    Model { model: &'a str, method: &'a str },
    ListModels,
    GetModel(&'a str),
    OpenAiChat,
    OpenAiEmbeddings,
    OpenAiModels,
    OpenAiModel(&'a str),
    Upload,
    Files,
    File(&'a str),
    BatchList,
    Batch(&'a str),
    BatchCancel(&'a str),
    CacheList,
    CacheCreate,
    Cache(&'a str),
    Live,
    Unknown,
}

const MODEL_METHODS: &[&str] = &[
    "generateContent",
    "streamGenerateContent",
    "countTokens",
    "embedContent",
    "batchEmbedContents",
    "batchGenerateContent",
];

impl<'a> Route<'a> {
    fn parse(method: &Method, path: &'a str) -> Route<'a> {
        if let Some(rest) = path.strip_prefix("/_mock/") {
            return Route::Control(rest);
        }
        if path.starts_with("/ws/") && path.contains("BidiGenerateContent") {
            return Route::Live;
        }
        if let Some(rest) = path.strip_prefix("/upload/") {
            let versioned = ["v1beta/files", "v1/files", "v1alpha/files"].contains(&rest);
            return if versioned && method == Method::POST { Route::Upload } else { Route::Unknown };
        }
        let Some(rest) = ["/v1beta/", "/v1/", "/v1alpha/"].iter().find_map(|v| path.strip_prefix(v)) else {
            return Route::Unknown;
        };
        let get = method == Method::GET;
        let post = method == Method::POST;
        let delete = method == Method::DELETE;
        if let Some(oa) = rest.strip_prefix("openai/") {
            return match oa {
                "chat/completions" if post => Route::OpenAiChat,
                "embeddings" if post => Route::OpenAiEmbeddings,
                "models" if get => Route::OpenAiModels,
                _ if get && oa.starts_with("models/") => Route::OpenAiModel(&oa["models/".len()..]),
                _ => Route::Unknown,
            };
        }
        let (collection, tail) = rest.split_once('/').unwrap_or((rest, ""));
        match (collection, tail) {
            ("models", "") if get => Route::ListModels,
            ("models" | "tunedModels", t) if !t.is_empty() => match t.split_once(':') {
                Some((model, m)) if post && MODEL_METHODS.contains(&m) => Route::Model { model, method: m },
                None if get => Route::GetModel(t),
                _ => Route::Unknown,
            },
            ("files", "") if get => Route::Files,
            ("files", id) if (get || delete) && !id.contains('/') => Route::File(id),
            ("batches", "") if get => Route::BatchList,
            ("batches", t) => match t.split_once(':') {
                Some((id, "cancel")) if post => Route::BatchCancel(id),
                None if get || delete => Route::Batch(t),
                _ => Route::Unknown,
            },
            ("cachedContents", "") if get => Route::CacheList,
            ("cachedContents", "") if post => Route::CacheCreate,
            ("cachedContents", id) if !id.contains('/') && (get || delete || method == Method::PATCH) => {
                Route::Cache(id)
            }
            _ => Route::Unknown,
        }
    }

    /// Model methods count toward `rpm` and `quota_after`.
    fn is_model_call(&self) -> bool {
        matches!(self, Route::Model { .. } | Route::OpenAiChat | Route::OpenAiEmbeddings)
    }
}

/// The model named in an OpenAI-compatible body (only for the 429 text).
fn body_model(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct M {
        model: String,
    }
    let m = serde_json::from_slice::<M>(body).ok()?.model;
    Some(m.strip_prefix("models/").unwrap_or(&m).to_owned())
}

/// Serves one request.
pub(crate) async fn handle(state: Arc<State>, mut req: Request<Incoming>) -> Result<Reply, Abort> {
    let on_upgrade = req.extensions_mut().remove::<OnUpgrade>();
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map_err(|_| Abort)?.to_bytes();
    let route = Route::parse(&parts.method, parts.uri.path());
    if let Route::Control(rest) = route {
        return Ok(control::handle(&state, &parts, rest, &body));
    }
    let key = extract_key(&parts);
    let plan = state.plan();
    let behaviour = Arc::clone(plan.behaviour(key.as_deref()));
    let keep = plan.source.max_recorded > 0;
    let rec = keep.then(|| Recorded::from_parts(&parts, &body, key.clone()));
    let verdict = state.admit(
        &plan,
        rec,
        Admit {
            key: key.as_deref(),
            model_call: route.is_model_call(),
            keyless_ok: route == Route::Upload && parts.uri.query().is_some_and(|q| q.contains("upload_id=")),
        },
    );
    drop(plan);
    if !behaviour.latency.is_zero() {
        tokio::time::sleep(behaviour.latency).await;
    }
    let call = Call { state: &state, parts: &parts, body: &body, key: key.as_deref(), behaviour: &behaviour };
    let mut rsp = match verdict {
        Verdict::Reset => return Err(Abort),
        Verdict::Hang => {
            stopped(&mut state.shutdown.subscribe()).await;
            return Err(Abort);
        }
        v if route == Route::Live => live::upgrade(&call, on_upgrade, refusal(&v)),
        Verdict::Unregistered => errors::unregistered(),
        Verdict::Invalid => errors::api_key_invalid(),
        Verdict::Blocked => errors::blocked(),
        Verdict::Status(code) => errors::scripted(code),
        Verdict::Quota { limit, retry, quota_id } => {
            let model = match route {
                Route::Model { model, .. } => Some(model.to_owned()),
                _ => body_model(&body),
            };
            let model = model.as_deref().unwrap_or("gemini-2.5-flash");
            errors::quota_exceeded(model, &quota_id, limit, retry)
        }
        Verdict::Proceed => dispatch(&call, route),
    };
    if call.gzip() {
        gzip_full(&mut rsp);
    }
    Ok(rsp)
}

/// How a Live session refused by the script is closed.
fn refusal(v: &Verdict) -> Option<live::Refusal> {
    let (code, reason) = match v {
        Verdict::Proceed | Verdict::Reset | Verdict::Hang => return None,
        Verdict::Unregistered => (1008, "Method doesn't allow unregistered callers."),
        Verdict::Invalid => (1008, "API key not valid. Please pass a valid API key."),
        Verdict::Blocked => (1008, "Requests to this API are blocked."),
        Verdict::Quota { .. } => (1011, "You exceeded your current quota."),
        Verdict::Status(_) => (1011, "Internal error occurred."),
    };
    Some(live::Refusal { code, reason })
}

fn dispatch(call: &Call<'_>, route: Route<'_>) -> Reply {
    match route {
        Route::Model { model, method } => match method {
            "generateContent" => generate::generate_content(call, model),
            "streamGenerateContent" => stream::stream_generate(call, model),
            "countTokens" => generate::count_tokens(call),
            "embedContent" => generate::embed_content(call),
            "batchEmbedContents" => generate::batch_embed(call),
            "batchGenerateContent" => batches::create(call, model),
            _ => not_found(call),
        },
        Route::ListModels => models::list(),
        Route::GetModel(m) => models::get(m),
        Route::OpenAiChat => openai::chat(call),
        Route::OpenAiEmbeddings => openai::embeddings(call),
        Route::OpenAiModels => openai::list_models(),
        Route::OpenAiModel(m) => openai::get_model(m),
        Route::Upload => files::upload(call),
        Route::Files => files::list(call),
        Route::File(id) if call.parts.method == Method::DELETE => files::delete(call, id),
        Route::File(id) => files::get(call, id),
        Route::BatchList => batches::list(call),
        Route::Batch(id) if call.parts.method == Method::DELETE => batches::cancel_or_delete(call, id, true),
        Route::Batch(id) => batches::get(call, id),
        Route::BatchCancel(id) => batches::cancel_or_delete(call, id, false),
        Route::CacheList => caches::list(call),
        Route::CacheCreate => caches::create(call),
        Route::Cache(id) => caches::one(call, id),
        Route::Live | Route::Control(_) | Route::Unknown => not_found(call),
    }
}

fn not_found(call: &Call<'_>) -> Reply {
    errors::no_route(call.parts.method.as_str(), call.parts.uri.path())
}

/// Accepts connections until `shutdown` resolves (or `State::shutdown` is set), then lets
/// open connections finish for up to `SHUTDOWN_GRACE`.
pub(crate) async fn run(
    listener: TcpListener,
    state: Arc<State>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let builder = auto::Builder::new(TokioExecutor::new());
    // Every connection task holds a sender; `recv` returns None once all have ended.
    let (open_tx, mut open_rx) = mpsc::channel::<()>(1);
    let mut stop = state.shutdown.subscribe();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            () = stopped(&mut stop) => break,
            accepted = listener.accept() => accepted,
        };
        let tcp = match accepted {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                // Out of descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "mock-gemini: accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let builder = builder.clone();
        let state = Arc::clone(&state);
        let mut stop = state.shutdown.subscribe();
        let open = open_tx.clone();
        tokio::spawn(async move {
            let _open = open;
            let svc = service_fn(move |req| handle(Arc::clone(&state), req));
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(tcp), svc);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                () = stopped(&mut stop) => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(SHUTDOWN_GRACE, conn).await;
                }
            }
        });
    }
    state.shutdown.send_replace(true);
    drop(listener);
    drop(open_tx);
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, open_rx.recv()).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let p = |m: Method, path: &'static str| Route::parse(&m, path);
        assert_eq!(
            p(Method::POST, "/v1beta/models/gemini-2.5-flash:streamGenerateContent"),
            Route::Model { model: "gemini-2.5-flash", method: "streamGenerateContent" }
        );
        assert_eq!(p(Method::GET, "/v1/models"), Route::ListModels);
        assert_eq!(p(Method::GET, "/v1alpha/models/gemini-2.5-pro"), Route::GetModel("gemini-2.5-pro"));
        assert_eq!(p(Method::POST, "/v1beta/openai/chat/completions"), Route::OpenAiChat);
        assert_eq!(p(Method::POST, "/upload/v1beta/files"), Route::Upload);
        assert_eq!(p(Method::DELETE, "/v1beta/files/abc"), Route::File("abc"));
        assert_eq!(p(Method::POST, "/v1beta/batches/b1:cancel"), Route::BatchCancel("b1"));
        assert_eq!(p(Method::PATCH, "/v1beta/cachedContents/c1"), Route::Cache("c1"));
        assert_eq!(
            p(Method::GET, "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"),
            Route::Live
        );
        assert_eq!(p(Method::GET, "/_mock/requests"), Route::Control("requests"));
        assert_eq!(p(Method::POST, "/v1beta/models/x:bogus"), Route::Unknown);
        assert_eq!(p(Method::GET, "/nope"), Route::Unknown);
        assert!(p(Method::POST, "/v1beta/openai/embeddings").is_model_call());
        assert!(!p(Method::GET, "/v1beta/files").is_model_call());
    }
}
