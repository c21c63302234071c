//! `models/{m}:streamGenerateContent`: SSE (`?alt=sse`) and the JSON-array stream, each
//! chunk its own body frame; plus the frame plumbing OpenAI streams share (text split,
//! interval, scripted break, gzip).

use bytes::Bytes;

use crate::body::{gzip_frames, stream, Frames, JSON, SSE};
use crate::errors;
use crate::generate::{answer_text, check_references, read_prompt, response_id, response_json, Usage};
use crate::record::query_param;
use crate::server::{Call, Reply};
use crate::util::tokens_for_chars;

/// Splits `text` into `n` consecutive pieces of about equal length (some may be empty
/// when the text is shorter than `n`); their concatenation is `text`.
pub(crate) fn split_text(text: &str, n: usize) -> Vec<&str> {
    let n = n.max(1);
    let bounds: Vec<usize> = text.char_indices().map(|(i, _)| i).chain([text.len()]).collect();
    let chars = bounds.len() - 1;
    (0..n).map(|i| &text[bounds[i * chars / n]..bounds[(i + 1) * chars / n]]).collect()
}

/// A streamed reply from pre-built frames: `chunk_frames` are the chunks (counted by
/// `break_stream_after`), `tail` the clean end (`]`, `[DONE]`) if any.
pub(crate) fn frames_reply(
    call: &Call<'_>,
    content_type: &'static str,
    mut frames: Vec<Bytes>,
    chunk_count: usize,
) -> Reply {
    let b = call.behaviour;
    let break_after = b.break_stream_after.map(|n| n.min(chunk_count));
    let gzipped = call.gzip();
    if gzipped {
        frames = gzip_frames(frames);
    }
    stream(content_type, Frames::new(frames, b.chunk_interval, break_after), gzipped)
}

/// `models/{m}:streamGenerateContent`, SSE with `alt=sse`, else a JSON array.
pub(crate) fn stream_generate(call: &Call<'_>, model: &str) -> Reply {
    let prompt = match read_prompt(call.body) {
        Ok(p) => p,
        Err(e) => return errors::bad_json(&e),
    };
    if let Some(denied) = check_references(call, &prompt) {
        return denied;
    }
    let sse = query_param(call.parts.uri.query(), "alt") == Some("sse");
    let text = answer_text(call, model, &prompt.echo);
    let usage = Usage::new(prompt.tokens(), tokens_for_chars(text.chars().count()));
    let rid = response_id();
    let pieces = split_text(&text, call.behaviour.chunks);
    let n = pieces.len();
    let mut frames = Vec::with_capacity(n + 1);
    for (i, piece) in pieces.into_iter().enumerate() {
        let json = response_json(piece, model, &rid, i + 1 == n, usage);
        let mut f = Vec::with_capacity(json.len() + 8);
        if sse {
            f.extend_from_slice(b"data: ");
            f.extend_from_slice(&json);
            f.extend_from_slice(b"\r\n\r\n");
        } else {
            f.extend_from_slice(if i == 0 { b"[" } else { b",\r\n" });
            f.extend_from_slice(&json);
        }
        frames.push(Bytes::from(f));
    }
    if sse {
        frames_reply(call, SSE, frames, n)
    } else {
        frames.push(Bytes::from_static(b"]"));
        frames_reply(call, JSON, frames, n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_keeps_text_and_count() {
        let p = split_text("mock answer", 3);
        assert_eq!(p.len(), 3);
        assert_eq!(p.concat(), "mock answer");
        let p = split_text("ab", 4);
        assert_eq!(p.len(), 4);
        assert_eq!(p.concat(), "ab");
        assert_eq!(split_text("héé", 2).concat(), "héé");
    }
}
