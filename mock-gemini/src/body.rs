//! Response bodies: a whole buffer, or pre-built frames released one by one `interval`
//! apart (streams), optionally cut off with an error to break the connection. No task or
//! channel per stream: the body itself owns its timer.

use std::collections::VecDeque;
use std::future::Future;
use std::io::{self, Write};
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use flate2::write::GzEncoder;
use flate2::Compression;
use http::header::{HeaderValue, CONTENT_ENCODING, CONTENT_TYPE, SERVER, VARY};
use http::{Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use tokio::time::Sleep;

pub(crate) const JSON: &str = "application/json; charset=UTF-8";
pub(crate) const SSE: &str = "text/event-stream";

/// The body of every mock response.
#[derive(Debug)]
pub enum MockBody {
    Full(Option<Bytes>),
    Frames(Frames),
}

/// Frames of a stream, released with a pause between them.
#[derive(Debug)]
pub struct Frames {
    queue: VecDeque<Bytes>,
    interval: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
    sent: usize,
    /// After this many frames, fail the body so the connection is aborted mid-stream.
    break_after: Option<usize>,
    flushed: bool,
    broken: bool,
}

impl Frames {
    pub(crate) fn new(frames: Vec<Bytes>, interval: Duration, break_after: Option<usize>) -> Self {
        Frames { queue: frames.into(), interval, sleep: None, sent: 0, break_after, flushed: false, broken: false }
    }
}

impl Body for MockBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.get_mut() {
            MockBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            MockBody::Frames(f) => {
                if f.broken {
                    return Poll::Ready(None);
                }
                if f.break_after.is_some_and(|n| f.sent >= n) {
                    // Return Pending once first so hyper flushes the chunks already
                    // written; an error right away would drop them with the connection.
                    if !f.flushed {
                        f.flushed = true;
                        cx.waker().wake_by_ref();
                        return Poll::Pending;
                    }
                    f.broken = true;
                    return Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "mock-gemini: scripted stream break",
                    ))));
                }
                if f.queue.is_empty() {
                    return Poll::Ready(None);
                }
                if f.sent > 0 && !f.interval.is_zero() {
                    let interval = f.interval;
                    let sleep = f.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep(interval)));
                    ready!(sleep.as_mut().poll(cx));
                    f.sleep = None;
                }
                f.sent += 1;
                Poll::Ready(f.queue.pop_front().map(|b| Ok(Frame::data(b))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            MockBody::Full(b) => b.is_none(),
            MockBody::Frames(f) => f.queue.is_empty() && f.break_after.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            MockBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            MockBody::Full(None) => SizeHint::with_exact(0),
            MockBody::Frames(_) => SizeHint::default(),
        }
    }
}

/// A response with the mock's standard headers.
pub(crate) fn respond(status: StatusCode, content_type: &'static str, body: MockBody) -> Response<MockBody> {
    let mut rsp = Response::new(body);
    *rsp.status_mut() = status;
    let h = rsp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(SERVER, HeaderValue::from_static("mock-gemini"));
    rsp
}

/// A JSON response.
pub(crate) fn json(status: StatusCode, body: impl Into<Bytes>) -> Response<MockBody> {
    respond(status, JSON, MockBody::Full(Some(body.into())))
}

/// A 200 JSON response.
pub(crate) fn ok_json(body: impl Into<Bytes>) -> Response<MockBody> {
    json(StatusCode::OK, body)
}

/// A streamed response.
pub(crate) fn stream(content_type: &'static str, frames: Frames, gzipped: bool) -> Response<MockBody> {
    let mut rsp = respond(StatusCode::OK, content_type, MockBody::Frames(frames));
    if gzipped {
        mark_gzip(&mut rsp);
    }
    rsp
}

fn mark_gzip(rsp: &mut Response<MockBody>) {
    let h = rsp.headers_mut();
    h.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    h.insert(VARY, HeaderValue::from_static("Accept-Encoding"));
}

/// Gzips a whole-buffer body in place (streams are compressed when built).
pub(crate) fn gzip_full(rsp: &mut Response<MockBody>) {
    if rsp.headers().contains_key(CONTENT_ENCODING) {
        return;
    }
    let MockBody::Full(Some(b)) = rsp.body() else {
        return;
    };
    let mut enc = GzEncoder::new(Vec::with_capacity(b.len() / 2 + 32), Compression::fast());
    let Ok(compressed) = enc.write_all(b).and_then(|()| enc.finish()) else {
        return;
    };
    *rsp.body_mut() = MockBody::Full(Some(Bytes::from(compressed)));
    mark_gzip(rsp);
}

/// Gzips stream frames as one gzip member, sync-flushed after each frame so every frame
/// can be decoded as soon as it arrives; the trailer rides on the last frame.
pub(crate) fn gzip_frames(frames: Vec<Bytes>) -> Vec<Bytes> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
    let n = frames.len();
    let mut out = Vec::with_capacity(n);
    for (i, f) in frames.into_iter().enumerate() {
        if enc.write_all(&f).and_then(|()| enc.flush()).is_err() {
            return out;
        }
        if i + 1 == n {
            break;
        }
        out.push(Bytes::from(std::mem::take(enc.get_mut())));
    }
    match enc.finish() {
        Ok(rest) => out.push(Bytes::from(rest)),
        Err(_) => out.push(Bytes::new()),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn gzip_frames_decode_to_the_concatenation() {
        let frames = vec![Bytes::from("ab"), Bytes::from("cd"), Bytes::from("ef")];
        let z = gzip_frames(frames);
        assert_eq!(z.len(), 3);
        let all: Vec<u8> = z.iter().flat_map(|b| b.to_vec()).collect();
        let mut s = String::new();
        flate2::read::GzDecoder::new(&all[..]).read_to_string(&mut s).unwrap();
        assert_eq!(s, "abcdef");
    }
}
