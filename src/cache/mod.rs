//! The response cache (SPEC 5): identical requests are answered from a stored copy instead
//! of a second upstream call. `key` makes the cache key from the request (canonical JSON);
//! the backends (`memory`, `redis`, or none) store `CachedAnswer`s; `flight` makes
//! identical requests in flight at once share one upstream call. The cache never sees
//! hyper types: the service hands it keys and answers and asks it for a `Decision`.

pub mod answer;
pub mod flight;
pub mod key;
pub mod memory;
pub mod redis;

pub use answer::CachedAnswer;
pub use key::CacheKey;

use futures_util::future::BoxFuture;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cache backend timed out after {0:?}")]
    Timeout(std::time::Duration),
    #[error("cache backend failed: {0}")]
    Backend(String),
    #[error("stored value is not a cached answer: {0}")]
    Corrupt(&'static str),
}

/// A store of answers by key. Errors are reported, never fatal: the caller bypasses the
/// cache for that request (SPEC 5: a Redis outage never fails a request).
pub trait Cache: Send + Sync {
    fn get<'a>(&'a self, key: &'a CacheKey) -> BoxFuture<'a, Result<Option<Arc<CachedAnswer>>, CacheError>>;
    fn put<'a>(&'a self, key: &'a CacheKey, answer: Arc<CachedAnswer>) -> BoxFuture<'a, Result<(), CacheError>>;
}

/// How one request uses the cache. Routing rules (a later issue) can force `Bypass`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Read, and store a fresh answer.
    Use,
    /// `Cache-Control: no-cache`: do not read, but store the fresh answer.
    Refresh,
    /// Neither read nor store (`no-store`, a method not cached, the backend `none`).
    Bypass,
}

/// Counters of what the cache did, for logs, metrics and `/admin/cache`.
#[derive(Debug, Default)]
pub struct CacheStats {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub bypasses: AtomicU64,
    /// Answers served by joining an identical call already in flight.
    pub joined: AtomicU64,
    pub stores: AtomicU64,
    /// Backend errors, timeouts and bad values (each one bypassed the cache).
    pub faults: AtomicU64,
}

impl CacheStats {
    pub fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn to_json(&self) -> serde_json::Value {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        serde_json::json!({
            "hits": get(&self.hits),
            "misses": get(&self.misses),
            "bypasses": get(&self.bypasses),
            "joined": get(&self.joined),
            "stores": get(&self.stores),
            "faults": get(&self.faults),
        })
    }
}
