//! Key pools: the real API keys, grouped in named pools, and which key serves a request.
//! This issue selects round-robin among all keys; quotas and health join the selection
//! later. The pool never sees HTTP: the service asks for a key and gets a `Key`.

pub mod pins;

use crate::config::{PoolConfig, Secret};
use http::HeaderValue;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// One real API key. Its value is reachable only through `secret`/`auth_header`.
#[derive(Debug)]
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
}

impl Key {
    fn new(pool: &str, id: &str, secret: Secret, project: Option<&str>) -> Result<Key, String> {
        let mut auth_header = HeaderValue::from_str(secret.expose())
            .map_err(|_| format!("key `{id}` has characters that cannot go in a header"))?;
        auth_header.set_sensitive(true);
        let id_header = HeaderValue::from_str(id).map_err(|_| format!("key id `{id}` cannot go in a header"))?;
        Ok(Key {
            id: id.into(),
            pool: pool.into(),
            project: project.unwrap_or(id).into(),
            secret,
            auth_header,
            id_header,
        })
    }

    pub fn auth_header(&self) -> &HeaderValue {
        &self.auth_header
    }

    pub fn id_header(&self) -> &HeaderValue {
        &self.id_header
    }

    /// The value itself, for the one place it goes on the wire as a query parameter
    /// (WebSocket, SPEC 2).
    pub fn expose(&self) -> &str {
        self.secret.expose()
    }
}

/// One named pool and its selection state.
#[derive(Debug)]
pub struct KeyPool {
    pub name: Arc<str>,
    keys: Vec<Arc<Key>>,
    next: AtomicUsize,
}

impl KeyPool {
    /// The next key in round-robin order.
    pub fn select(&self) -> Arc<Key> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        self.keys[n % self.keys.len()].clone()
    }

    pub fn keys(&self) -> &[Arc<Key>] {
        &self.keys
    }
}

/// Every pool of one config snapshot, and every key by id (for pinned requests).
#[derive(Debug)]
pub struct Pools {
    pools: HashMap<String, KeyPool>,
    by_id: HashMap<Arc<str>, Arc<Key>>,
}

impl Pools {
    pub fn new(configs: &[PoolConfig]) -> Result<Pools, String> {
        let mut pools = HashMap::new();
        let mut by_id = HashMap::new();
        for config in configs {
            let mut keys = Vec::with_capacity(config.keys.len());
            for k in &config.keys {
                let key = Arc::new(Key::new(&config.name, &k.id, k.secret.clone(), k.project.as_deref())?);
                by_id.insert(key.id.clone(), key.clone());
                keys.push(key);
            }
            if keys.is_empty() {
                return Err(format!("pool `{}` has no keys", config.name));
            }
            let pool = KeyPool { name: config.name.as_str().into(), keys, next: AtomicUsize::new(0) };
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::KeyConfig;

    fn pools() -> Pools {
        let keys = ["a", "b", "c"]
            .iter()
            .map(|id| KeyConfig { id: id.to_string(), secret: Secret::new(format!("secret-{id}")), project: None })
            .collect();
        Pools::new(&[PoolConfig { name: "default".into(), keys, strategy: crate::config::Strategy::RoundRobin }])
            .unwrap()
    }

    #[test]
    fn round_robin_visits_every_key_in_turn() {
        let p = pools();
        let pool = p.get("default").unwrap();
        let ids: Vec<_> = (0..6).map(|_| pool.select().id.to_string()).collect();
        assert_eq!(ids, ["a", "b", "c", "a", "b", "c"]);
    }

    #[test]
    fn keys_never_print_their_value() {
        let p = pools();
        let shown = format!("{:?}", p);
        assert!(!shown.contains("secret-a"), "{shown}");
        assert!(p.key("b").unwrap().auth_header().is_sensitive());
        assert_eq!(&*p.key("c").unwrap().project, "c");
    }
}
