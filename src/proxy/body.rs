//! Bodies on both legs, never collected unless asked: the request body forwarded upstream
//! (buffered when small, streamed with the size limit otherwise) and the response body
//! relayed to the client chunk by chunk, with the idle/deadline timer and an optional
//! observer that sees each chunk (SPEC 2: streams are never buffered whole). A relay that
//! fails mid-way returns an error, so hyper cuts the client's response off instead of
//! ending it cleanly.

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A relayed body stopped: the client's response is cut off with this as the reason.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("upstream went silent for {0:?}")]
    Idle(Duration),
    #[error("upstream answer exceeded the request deadline of {0:?}")]
    Deadline(Duration),
}

/// Sees a relayed answer go by, chunk by chunk; told when it ended cleanly.
pub trait BodyObserver: Send {
    fn chunk(&mut self, data: &Bytes);
    fn end(&mut self);
}

pin_project! {
    /// The body of an upstream answer on its way to the client.
    pub struct RelayBody {
        #[pin]
        inner: Incoming,
        #[pin]
        timer: Sleep,
        // Some: reset the timer on every frame (streams); None: a fixed deadline.
        idle: Option<Duration>,
        limit: Duration,
        observer: Option<Box<dyn BodyObserver>>,
    }
}

impl RelayBody {
    /// A stream: each frame must come within `idle` of the last.
    pub fn streaming(inner: Incoming, idle: Duration) -> Self {
        RelayBody::new(inner, Some(idle), idle, Instant::now() + idle)
    }

    /// A whole answer: it must be complete by `deadline` (`limit` names it in errors).
    pub fn until(inner: Incoming, deadline: Instant, limit: Duration) -> Self {
        RelayBody::new(inner, None, limit, deadline)
    }

    fn new(inner: Incoming, idle: Option<Duration>, limit: Duration, at: Instant) -> Self {
        RelayBody { inner, timer: tokio::time::sleep_until(at), idle, limit, observer: None }
    }

    pub fn observe(mut self, observer: Box<dyn BodyObserver>) -> Self {
        self.observer = Some(observer);
        self
    }
}

impl Body for RelayBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        match this.inner.as_mut().poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(idle) = this.idle {
                    this.timer.reset(Instant::now() + *idle);
                }
                if let (Some(observer), Some(data)) = (this.observer.as_mut(), frame.data_ref()) {
                    observer.chunk(data);
                }
                // hyper stops polling once `is_end_stream` holds (a Content-Length body
                // after its last byte), so the clean end may never be seen as `None`.
                if this.inner.is_end_stream() {
                    if let Some(mut observer) = this.observer.take() {
                        observer.end();
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => {
                if let Some(mut observer) = this.observer.take() {
                    observer.end();
                }
                Poll::Ready(None)
            }
            Poll::Pending => {
                ready!(this.timer.poll(cx));
                let err = match this.idle {
                    Some(idle) => RelayError::Idle(*idle),
                    None => RelayError::Deadline(*this.limit),
                };
                Poll::Ready(Some(Err(err.into())))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project! {
    /// What gemgate answers the client with.
    #[project = GateBodyProj]
    pub enum GateBody {
        Full { data: Option<Bytes> },
        Relay { #[pin] inner: RelayBody },
        Replay { inner: super::cached::ReplayBody },
        Follow { inner: super::cached::FollowBody },
    }
}

impl GateBody {
    pub fn full(data: Bytes) -> Self {
        GateBody::Full { data: (!data.is_empty()).then_some(data) }
    }

    pub fn empty() -> Self {
        GateBody::Full { data: None }
    }

    pub fn relay(inner: RelayBody) -> Self {
        GateBody::Relay { inner }
    }
}

impl Body for GateBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project() {
            GateBodyProj::Full { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            GateBodyProj::Relay { inner } => inner.poll_frame(cx),
            GateBodyProj::Replay { inner } => Pin::new(inner).poll_frame(cx),
            GateBodyProj::Follow { inner } => Pin::new(inner).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            GateBody::Full { data } => data.is_none(),
            GateBody::Relay { inner } => inner.is_end_stream(),
            GateBody::Replay { inner } => inner.is_end_stream(),
            GateBody::Follow { inner } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            GateBody::Full { data } => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
            GateBody::Relay { inner } => inner.size_hint(),
            GateBody::Replay { inner } => inner.size_hint(),
            GateBody::Follow { inner } => inner.size_hint(),
        }
    }
}

pin_project! {
    /// The request body as it goes upstream.
    #[project = ForwardBodyProj]
    pub enum ForwardBody {
        Buffered { data: Option<Bytes> },
        Streaming { #[pin] inner: Limited<Incoming> },
        Unlimited { #[pin] inner: Incoming },
    }
}

impl ForwardBody {
    pub fn buffered(data: Bytes) -> Self {
        ForwardBody::Buffered { data: (!data.is_empty()).then_some(data) }
    }

    pub fn empty() -> Self {
        ForwardBody::Buffered { data: None }
    }

    /// The bytes when the body was read whole, shared (for sending again).
    pub fn shared_bytes(&self) -> Option<Bytes> {
        match self {
            ForwardBody::Buffered { data } => Some(data.clone().unwrap_or_default()),
            _ => None,
        }
    }

    /// The bytes when the body was read whole.
    pub fn bytes(&self) -> Option<&[u8]> {
        match self {
            ForwardBody::Buffered { data } => Some(data.as_deref().unwrap_or_default()),
            _ => None,
        }
    }
}

impl Body for ForwardBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project() {
            ForwardBodyProj::Buffered { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            ForwardBodyProj::Streaming { inner } => inner.poll_frame(cx),
            ForwardBodyProj::Unlimited { inner } => inner.poll_frame(cx).map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ForwardBody::Buffered { data } => data.is_none(),
            ForwardBody::Streaming { inner } => inner.is_end_stream(),
            ForwardBody::Unlimited { inner } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ForwardBody::Buffered { data } => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
            ForwardBody::Streaming { inner } => inner.size_hint(),
            ForwardBody::Unlimited { inner } => inner.size_hint(),
        }
    }
}

/// How a request body is to travel, decided from its length before reading it.
pub enum Intake {
    /// Over the limit by its declared length: refuse at once (SPEC 2, 413).
    TooLarge,
    /// Read it whole (up to the limit), then forward.
    Buffer,
    /// Forward as it arrives, aborting if it crosses the limit.
    Stream,
    /// Forward as it arrives, unlimited (uploads).
    StreamUnlimited,
}

/// Chooses how to take in a body of declared length `declared` (None: chunked); `keep`:
/// it is to be read whole (kept for retries and inspection).
pub fn intake(declared: Option<u64>, limit: u64, exempt: bool, keep: bool) -> Intake {
    match declared {
        _ if exempt => Intake::StreamUnlimited,
        Some(n) if n > limit => Intake::TooLarge,
        _ if keep => Intake::Buffer,
        _ => Intake::Stream,
    }
}

/// Reads a body whole, failing with `None` past `limit` bytes.
pub async fn read_limited(body: Incoming, limit: u64) -> Result<Bytes, ReadError> {
    match Limited::new(body, limit as usize).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => Err(ReadError::TooLarge),
        Err(e) => Err(ReadError::Client(e.to_string())),
    }
}

#[derive(Debug)]
pub enum ReadError {
    TooLarge,
    /// The client broke off or sent a malformed body.
    Client(String),
}

/// A decoded copy of a gzip body, at most `max` bytes of it (`None` if it is not gzip).
pub fn gunzip(data: &[u8], max: u64) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(data).take(max).read_to_end(&mut plain).ok()?;
    Some(plain)
}

/// True when `err`'s chain holds the request-body limit error (a streamed body crossed it).
pub fn is_body_limit(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(e) = next {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        next = e.source();
    }
    false
}
