//! Key pools: the real API keys, grouped in named pools, and which key serves a request
//! (SPEC 4): a key that is healthy, under `max_in_flight_per_key`, and whose project has
//! quota for the model, chosen by the pool's strategy. The pool never sees HTTP: the
//! service asks for a `Permit` and reports back through it.

pub mod health;
pub mod pins;
pub mod probe;
mod select;
pub mod state;

pub use select::{try_acquire_key, Demand, Unavailable};

use crate::config::{PoolConfig, Secret, Strategy};
use crate::quota::{Charge, ProjectQuota};
use health::KeyHealth;
use http::HeaderValue;
use state::{GateState, PoolQueues};
use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

/// One real API key. Its value is reachable only through `auth_header`/`expose`.
pub struct Key {
    pub id: Arc<str>,
    pub pool: Arc<str>,
    /// Keys of one project share its quota; a key without one is its own project.
    pub project: Arc<str>,
    secret: Secret,
    /// `x-goog-api-key` value, built once, marked sensitive (never logged by hyper/http).
    auth_header: HeaderValue,
    /// `x-gemgate-key` value, built once.
    id_header: HeaderValue,
    pub health: Arc<KeyHealth>,
    pub quota: Arc<ProjectQuota>,
    max_in_flight: u32,
    queues: Arc<PoolQueues>,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key").field("id", &self.id).field("pool", &self.pool).field("secret", &self.secret).finish()
    }
}

impl Key {
    pub fn auth_header(&self) -> &HeaderValue {
        &self.auth_header
    }

    pub fn id_header(&self) -> &HeaderValue {
        &self.id_header
    }

    /// The value itself, for the places it goes on the wire outside a header (the Live
    /// WebSocket's `key` parameter, SPEC 2).
    pub fn expose(&self) -> &str {
        self.secret.expose()
    }

    pub fn max_in_flight(&self) -> u32 {
        self.max_in_flight
    }

    /// Capacity came back (a slot freed, the key re-enabled): the pool's lines may move.
    pub fn release_waiters(&self) {
        self.queues.notify_all();
    }

    /// Takes an in-flight slot without quota (a pinned request that must use this key).
    fn enter(self: &Arc<Self>) -> bool {
        self.health.try_enter(self.max_in_flight)
    }
}

/// One admitted upstream call: holds the key's in-flight slot and the quota charge until
/// dropped. Dropping it wakes the pool's wait queues.
pub struct Permit {
    pub key: Arc<Key>,
    charge: Option<Charge>,
}

impl Permit {
    /// The call never reached the upstream (or Google refused it with 429): give the
    /// quota back.
    pub fn refund(&mut self) {
        if let Some(charge) = self.charge.take() {
            charge.refund();
        }
    }

    /// Whether the charge's tokens are limited, so worth settling.
    pub fn tracks_tokens(&self) -> bool {
        self.charge.as_ref().is_some_and(|c| c.tracks_tokens)
    }

    /// Replaces the token estimate with the counted input tokens.
    pub fn settle(&self, input_tokens: u64) {
        if let Some(charge) = &self.charge {
            charge.settle(input_tokens);
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.key.health.leave();
        self.key.release_waiters();
    }
}

/// One named pool and its selection state.
pub struct KeyPool {
    pub name: Arc<str>,
    keys: Vec<Arc<Key>>,
    strategy: Strategy,
    next: AtomicUsize,
    pub queues: Arc<PoolQueues>,
}

impl KeyPool {
    pub fn keys(&self) -> &[Arc<Key>] {
        &self.keys
    }

    /// True while at least one key is not disabled.
    pub fn has_usable_key(&self) -> bool {
        self.keys.iter().any(|k| !k.health.is_disabled())
    }
}

/// Every pool of one config snapshot, and every key by id (for pinned requests).
pub struct Pools {
    pools: HashMap<String, KeyPool>,
    by_id: HashMap<Arc<str>, Arc<Key>>,
}

impl Pools {
    pub fn new(configs: &[PoolConfig], state: &GateState) -> Result<Pools, String> {
        let mut pools = HashMap::new();
        let mut by_id = HashMap::new();
        for config in configs {
            let queues = state.pool_queues(&config.name);
            let limits = Arc::new(config.limits.clone());
            let mut keys = Vec::with_capacity(config.keys.len());
            for k in &config.keys {
                let mut auth_header = HeaderValue::from_str(k.secret.expose())
                    .map_err(|_| format!("key `{}` has characters that cannot go in a header", k.id))?;
                auth_header.set_sensitive(true);
                let id_header =
                    HeaderValue::from_str(&k.id).map_err(|_| format!("key id `{}` cannot go in a header", k.id))?;
                let project: Arc<str> = k.project.as_deref().unwrap_or(&k.id).into();
                let key = Arc::new(Key {
                    id: k.id.as_str().into(),
                    pool: config.name.as_str().into(),
                    quota: state.quotas.project(&project, limits.clone()),
                    project,
                    secret: k.secret.clone(),
                    auth_header,
                    id_header,
                    health: state.key_health(&k.id),
                    max_in_flight: config.max_in_flight_per_key,
                    queues: queues.clone(),
                });
                by_id.insert(key.id.clone(), key.clone());
                keys.push(key);
            }
            if keys.is_empty() {
                return Err(format!("pool `{}` has no keys", config.name));
            }
            let pool = KeyPool {
                name: config.name.as_str().into(),
                keys,
                strategy: config.strategy,
                next: AtomicUsize::new(0),
                queues,
            };
            pools.insert(config.name.clone(), pool);
        }
        Ok(Pools { pools, by_id })
    }

    pub fn get(&self, name: &str) -> Option<&KeyPool> {
        self.pools.get(name)
    }

    pub fn key(&self, id: &str) -> Option<&Arc<Key>> {
        self.by_id.get(id)
    }

    pub fn all_keys(&self) -> impl Iterator<Item = &Arc<Key>> {
        self.pools.values().flat_map(|p| p.keys.iter())
    }

    pub fn pools(&self) -> impl Iterator<Item = &KeyPool> {
        self.pools.values()
    }
}

#[cfg(test)]
mod tests;
