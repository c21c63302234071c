//! A stored answer: status, the headers that describe its body, and the body as the frames
//! it arrived in, so a stream is replayed as the same kind of stream, chunk for chunk
//! (SPEC 5). The encoding (`Content-Encoding`) is kept as it came; a client that did not
//! accept it gets a decoded copy. A small length-prefixed format serves Redis.

use super::CacheError;
use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Response headers worth keeping with the body; everything else is per exchange.
pub const KEPT_HEADERS: [&str; 4] = ["content-type", "content-encoding", "x-gemgate-model", "vary"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedAnswer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub chunks: Vec<Bytes>,
}

const MAGIC: &[u8; 4] = b"GGC1";

impl CachedAnswer {
    /// Bytes this answer takes (for size limits and the memory backend's weigher).
    pub fn size(&self) -> usize {
        let headers: usize = self.headers.iter().map(|(n, v)| n.len() + v.len()).sum();
        headers + self.chunks.iter().map(Bytes::len).sum::<usize>() + 64
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn is_gzip(&self) -> bool {
        self.header("content-encoding").is_some_and(|v| v.eq_ignore_ascii_case("gzip"))
    }

    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.size() + 16);
        out.put_slice(MAGIC);
        out.put_u16(self.status);
        out.put_u32(self.headers.len() as u32);
        for (name, value) in &self.headers {
            put_field(&mut out, name.as_bytes());
            put_field(&mut out, value.as_bytes());
        }
        out.put_u32(self.chunks.len() as u32);
        for chunk in &self.chunks {
            put_field(&mut out, chunk);
        }
        out.freeze()
    }

    pub fn decode(mut data: Bytes) -> Result<CachedAnswer, CacheError> {
        if data.len() < 10 || &data[..4] != MAGIC {
            return Err(CacheError::Corrupt("bad magic"));
        }
        data.advance(4);
        let status = data.get_u16();
        let n = take_u32(&mut data)?;
        let mut headers = Vec::with_capacity(n.min(64) as usize);
        for _ in 0..n {
            let name =
                String::from_utf8(take_field(&mut data)?.to_vec()).map_err(|_| CacheError::Corrupt("header name"))?;
            let value =
                String::from_utf8(take_field(&mut data)?.to_vec()).map_err(|_| CacheError::Corrupt("header value"))?;
            headers.push((name, value));
        }
        let n = take_u32(&mut data)?;
        let mut chunks = Vec::with_capacity(n.min(4096) as usize);
        for _ in 0..n {
            chunks.push(take_field(&mut data)?);
        }
        if !data.is_empty() {
            return Err(CacheError::Corrupt("trailing bytes"));
        }
        Ok(CachedAnswer { status, headers, chunks })
    }
}

fn put_field(out: &mut BytesMut, field: &[u8]) {
    out.put_u32(field.len() as u32);
    out.put_slice(field);
}

fn take_u32(data: &mut Bytes) -> Result<u32, CacheError> {
    if data.len() < 4 {
        return Err(CacheError::Corrupt("truncated"));
    }
    Ok(data.get_u32())
}

fn take_field(data: &mut Bytes) -> Result<Bytes, CacheError> {
    let len = take_u32(data)? as usize;
    if data.len() < len {
        return Err(CacheError::Corrupt("truncated"));
    }
    Ok(data.split_to(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_garbage() {
        let answer = CachedAnswer {
            status: 200,
            headers: vec![("content-type".into(), "text/event-stream".into())],
            chunks: vec![Bytes::from_static(b"data: a\r\n\r\n"), Bytes::from_static(b"data: b\r\n\r\n")],
        };
        let decoded = CachedAnswer::decode(answer.encode()).unwrap();
        assert_eq!(decoded, answer);
        assert!(CachedAnswer::decode(Bytes::from_static(b"nonsense")).is_err());
        let mut cut = answer.encode().to_vec();
        cut.truncate(cut.len() - 3);
        assert!(CachedAnswer::decode(Bytes::from(cut)).is_err());
    }
}
