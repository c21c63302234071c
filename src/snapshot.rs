//! One immutable view of the configuration and everything built from it (client tokens,
//! key pools, the upstream client). A request loads the current snapshot once and holds it
//! to the end; a reload (later issue) builds a new one whole and swaps it in.

use crate::auth::ClientAuth;
use crate::cache::memory::MemoryCache;
use crate::cache::redis::RedisCache;
use crate::cache::Cache;
use crate::config::{CacheBackend, CacheConfig, Config};
use crate::error::GateError;
use crate::pool::state::GateState;
use crate::pool::{KeyPool, Pools};
use crate::proxy::forward::Upstream;
use std::sync::Arc;

pub struct Snapshot {
    pub config: Config,
    /// The response cache backend; `None` for `cache.backend: none`.
    pub cache: Option<Arc<dyn Cache>>,
    pub auth: ClientAuth,
    pub pools: Pools,
    pub upstream: Upstream,
}

impl Snapshot {
    /// Builds everything from `config`; keys and projects pick up their kept state.
    pub fn build(config: Config, state: &GateState) -> Result<Snapshot, String> {
        Ok(Snapshot {
            cache: build_cache(&config.cache)?,
            auth: ClientAuth::new(&config.clients),
            pools: Pools::new(&config.pools, state)?,
            upstream: Upstream::new(&config.upstream)?,
            config,
        })
    }

    /// The pool that serves requests until routing rules exist.
    pub fn default_pool(&self) -> Result<&KeyPool, GateError> {
        let name = &self.config.default_pool;
        self.pools.get(name).ok_or_else(|| GateError::BadRequest(format!("no pool named `{name}`")))
    }
}

fn build_cache(config: &CacheConfig) -> Result<Option<Arc<dyn Cache>>, String> {
    Ok(match config.backend {
        CacheBackend::None => None,
        CacheBackend::Memory => Some(Arc::new(MemoryCache::new(config.max_bytes, config.ttl))),
        CacheBackend::Redis => {
            let front = (config.front_max_bytes > 0).then(|| MemoryCache::new(config.front_max_bytes, config.ttl));
            let redis = &config.redis;
            let cache = RedisCache::new(redis.url.expose(), &redis.prefix, redis.timeout, config.ttl, front)
                .map_err(|e| format!("cache.redis: {e}"))?;
            Some(Arc::new(cache))
        }
    })
}
