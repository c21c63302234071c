//! Bodies that do not come straight from the upstream (SPEC 5): a stored answer replayed
//! chunk for chunk, and a share of an identical call in flight. Both decode gzip for a
//! client that did not accept it, chunk by chunk, so a stream stays a stream.

use super::body::BoxError;
use crate::cache::flight::{End, Next, Subscriber};
use crate::cache::CachedAnswer;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::future::Future;
use std::io::Write;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// Decodes a gzip stream as it goes.
pub struct Gunzip(flate2::write::GzDecoder<Vec<u8>>);

impl Default for Gunzip {
    fn default() -> Self {
        Gunzip(flate2::write::GzDecoder::new(Vec::new()))
    }
}

impl Gunzip {
    fn feed(&mut self, chunk: &[u8]) -> Result<Bytes, BoxError> {
        self.0.write_all(chunk)?;
        self.0.flush()?;
        Ok(Bytes::from(std::mem::take(self.0.get_mut())))
    }

    fn finish(&mut self) -> Result<Bytes, BoxError> {
        self.0.try_finish()?;
        Ok(Bytes::from(std::mem::take(self.0.get_mut())))
    }
}

/// A chunk as the client gets it: as stored, or decoded (`None`: nothing decoded yet).
fn client_chunk(gunzip: &mut Option<Gunzip>, chunk: Bytes) -> Option<Result<Bytes, BoxError>> {
    match gunzip.as_mut() {
        None => Some(Ok(chunk)),
        Some(g) => match g.feed(&chunk) {
            Ok(plain) if plain.is_empty() => None,
            other => Some(other),
        },
    }
}

/// The end of a body: the decoder's last bytes, if any.
fn last_frame(gunzip: Option<Gunzip>) -> Option<Result<Frame<Bytes>, BoxError>> {
    match gunzip.map(|mut g| g.finish()) {
        Some(Ok(rest)) if !rest.is_empty() => Some(Ok(Frame::data(rest))),
        Some(Err(e)) => Some(Err(e)),
        _ => None,
    }
}

/// Whether the client's `Accept-Encoding` takes gzip (`gzip;q=0` refuses it).
pub fn accepts_gzip(headers: &http::HeaderMap) -> bool {
    headers.get_all(http::header::ACCEPT_ENCODING).iter().filter_map(|v| v.to_str().ok()).any(|v| {
        v.split(',').any(|item| {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| matches!(p.trim(), "q=0" | "q=0.0" | "q=0.00" | "q=0.000"));
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !refused
        })
    })
}

/// A stored answer, replayed.
pub struct ReplayBody {
    answer: Arc<CachedAnswer>,
    next: usize,
    gunzip: Option<Gunzip>,
}

impl ReplayBody {
    pub fn new(answer: Arc<CachedAnswer>, decode: bool) -> Self {
        ReplayBody { answer, next: 0, gunzip: decode.then(Gunzip::default) }
    }
}

impl Body for ReplayBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            let Some(chunk) = this.answer.chunks.get(this.next).cloned() else {
                return Poll::Ready(last_frame(this.gunzip.take()));
            };
            this.next += 1;
            if let Some(data) = client_chunk(&mut this.gunzip, chunk) {
                return Poll::Ready(Some(data.map(Frame::data)));
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.gunzip.is_none() && self.next >= self.answer.chunks.len()
    }

    fn size_hint(&self) -> SizeHint {
        // An exact size makes hyper send Content-Length, and the client then reads the
        // frames of a stream run together: only a single-frame answer gets one, so a stream
        // goes out chunked, one chunk per stored frame (SPEC 5: chunk for chunk).
        if self.gunzip.is_some() || self.answer.chunks.len() > 1 {
            return SizeHint::default();
        }
        SizeHint::with_exact(
            self.answer.chunks[self.next.min(self.answer.chunks.len())..].iter().map(|c| c.len() as u64).sum(),
        )
    }
}

/// A share of an identical call in flight: its chunks from the start, as they arrive.
pub struct FollowBody {
    subscriber: Subscriber,
    wait: Option<Pin<Box<tokio::sync::futures::OwnedNotified>>>,
    gunzip: Option<Gunzip>,
    done: bool,
}

impl FollowBody {
    pub fn new(subscriber: Subscriber, decode: bool) -> Self {
        FollowBody { subscriber, wait: None, gunzip: decode.then(Gunzip::default), done: false }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the shared upstream answer broke off")]
struct FlightBroken;

impl Body for FollowBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        loop {
            if let Some(wait) = this.wait.as_mut() {
                if wait.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                this.wait = None;
            }
            // Register for the next change before looking, so none is missed.
            let mut wait = Box::pin(this.subscriber.changed());
            wait.as_mut().enable();
            match this.subscriber.next() {
                Next::Chunk(chunk) => {
                    if let Some(data) = client_chunk(&mut this.gunzip, chunk) {
                        return Poll::Ready(Some(data.map(Frame::data)));
                    }
                }
                Next::End(End::Clean) => {
                    this.done = true;
                    return Poll::Ready(last_frame(this.gunzip.take()));
                }
                Next::End(End::Broken) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(FlightBroken.into())));
                }
                Next::Pending => this.wait = Some(wait),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use http_body_util::BodyExt;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn reads_accept_encoding() {
        let mut h = http::HeaderMap::new();
        assert!(!accepts_gzip(&h));
        h.insert(http::header::ACCEPT_ENCODING, HeaderValue::from_static("br, gzip;q=0.8"));
        assert!(accepts_gzip(&h));
        h.insert(http::header::ACCEPT_ENCODING, HeaderValue::from_static("gzip;q=0, identity"));
        assert!(!accepts_gzip(&h));
    }

    #[tokio::test]
    async fn replays_chunk_for_chunk_and_decodes_on_demand() {
        let one = CachedAnswer { status: 200, headers: vec![], chunks: vec![Bytes::from("ab")] };
        assert_eq!(ReplayBody::new(Arc::new(one), false).size_hint().exact(), Some(2));
        let plain = CachedAnswer { status: 200, headers: vec![], chunks: vec![Bytes::from("a"), Bytes::from("b")] };
        let mut body = ReplayBody::new(Arc::new(plain), false);
        assert_eq!(body.size_hint().exact(), None, "a stream goes out chunked");
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(&first[..], b"a");
        let packed = gzip(b"hello, world");
        let (one, two) = packed.split_at(packed.len() / 2);
        let zipped = CachedAnswer {
            status: 200,
            headers: vec![("content-encoding".into(), "gzip".into())],
            chunks: vec![Bytes::copy_from_slice(one), Bytes::copy_from_slice(two)],
        };
        let body = ReplayBody::new(Arc::new(zipped), true);
        let text = body.collect().await.unwrap().to_bytes();
        assert_eq!(&text[..], b"hello, world");
    }
}
