//! The proxy: the request pipeline (`service`), its two legs (`forward` upstream, `body`
//! both ways), header rules, WebSocket and upload specifics, and the accept loop.

pub mod attempt;
pub mod body;
pub mod cached;
pub mod caching;
pub mod forward;
pub mod headers;
pub mod server;
pub mod service;
pub mod upgrade;
pub mod upload;
