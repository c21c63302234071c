//! gemgate: a transparent gateway for the Gemini API. `run` wires the parts together; the
//! request path itself lives in `proxy::service`.
#![forbid(unsafe_code)]

pub mod config;
