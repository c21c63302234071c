//! The memory backend (SPEC 5, the default): moka with a time-to-live and a size bound
//! (`max_bytes`, entries weighed by their bytes).

use super::{Cache, CacheError, CacheKey, CachedAnswer};
use futures_util::future::BoxFuture;
use moka::sync::Cache as Moka;
use std::sync::Arc;
use std::time::Duration;

pub struct MemoryCache {
    entries: Moka<CacheKey, Arc<CachedAnswer>>,
}

impl MemoryCache {
    pub fn new(max_bytes: u64, ttl: Duration) -> MemoryCache {
        let entries = Moka::builder()
            .max_capacity(max_bytes)
            .weigher(|_, answer: &Arc<CachedAnswer>| u32::try_from(answer.size()).unwrap_or(u32::MAX))
            .time_to_live(ttl)
            .build();
        MemoryCache { entries }
    }

    pub fn lookup(&self, key: &CacheKey) -> Option<Arc<CachedAnswer>> {
        self.entries.get(key)
    }

    pub fn store(&self, key: CacheKey, answer: Arc<CachedAnswer>) {
        self.entries.insert(key, answer);
        // moka applies the size bound lazily, after up to 64 writes: with large entries
        // that is far over `max_bytes`. Stores follow an upstream call, so apply it now.
        self.entries.run_pending_tasks();
    }

    /// Runs moka's pending evictions now (tests read sizes right after inserts).
    pub fn sync(&self) {
        self.entries.run_pending_tasks();
    }

    pub fn weighted_size(&self) -> u64 {
        self.entries.weighted_size()
    }
}

impl Cache for MemoryCache {
    fn get<'a>(&'a self, key: &'a CacheKey) -> BoxFuture<'a, Result<Option<Arc<CachedAnswer>>, CacheError>> {
        let found = self.lookup(key);
        Box::pin(async move { Ok(found) })
    }

    fn put<'a>(&'a self, key: &'a CacheKey, answer: Arc<CachedAnswer>) -> BoxFuture<'a, Result<(), CacheError>> {
        self.store(*key, answer);
        Box::pin(async { Ok(()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn answer(bytes: usize) -> Arc<CachedAnswer> {
        Arc::new(CachedAnswer { status: 200, headers: vec![], chunks: vec![Bytes::from(vec![b'x'; bytes])] })
    }

    #[test]
    fn evicts_by_size() {
        let cache = MemoryCache::new(10_000, Duration::from_secs(60));
        for i in 0..50u8 {
            cache.store(CacheKey([i; 32]), answer(1_000));
        }
        cache.sync();
        assert!(cache.weighted_size() <= 10_000, "{}", cache.weighted_size());
        assert!(cache.entries.entry_count() > 0, "the cache keeps what fits");
    }
}
