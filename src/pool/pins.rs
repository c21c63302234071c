//! Resource pins (SPEC 2): a file, cached content, batch, tuned model, operation or upload
//! session lives in the Google project of the key that created it, so later requests that
//! name it must use that same key. Pins are remembered by key id (never the value), expire
//! with the resource, and their number is capped. In memory for now; the fleet issue moves
//! them to shared state behind the same methods.

use moka::sync::Cache;
use moka::Expiry;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most pins kept at once; the least recently used go first beyond it.
pub const MAX_PINS: u64 = 100_000;

#[derive(Clone)]
struct Pin {
    key_id: Arc<str>,
    ttl: Duration,
}

struct PinExpiry;

impl Expiry<String, Pin> for PinExpiry {
    fn expire_after_create(&self, _key: &String, pin: &Pin, _now: Instant) -> Option<Duration> {
        Some(pin.ttl)
    }
}

pub struct PinStore {
    pins: Cache<String, Pin>,
    /// Lets the hot path skip scanning bodies until the first pin exists.
    used: AtomicBool,
}

impl Default for PinStore {
    fn default() -> Self {
        PinStore::with_capacity(MAX_PINS)
    }
}

impl PinStore {
    pub fn with_capacity(capacity: u64) -> Self {
        PinStore {
            pins: Cache::builder().max_capacity(capacity).expire_after(PinExpiry).build(),
            used: AtomicBool::new(false),
        }
    }

    /// How long a pin on `resource` lives: files expire after 48 h (SPEC 2); cached content
    /// and tuned models can be extended or live long, so they are kept longer.
    pub fn ttl_for(resource: &str) -> Duration {
        const HOUR: u64 = 3600;
        match resource.split('/').next() {
            Some("tunedModels") | Some("cachedContents") => Duration::from_secs(30 * 24 * HOUR),
            Some("upload") => Duration::from_secs(7 * 24 * HOUR),
            _ => Duration::from_secs(48 * HOUR),
        }
    }

    /// Remembers that `resource` (e.g. `files/abc`, `upload/ID`) belongs to `key_id`.
    pub fn pin(&self, resource: String, key_id: Arc<str>) {
        let ttl = Self::ttl_for(&resource);
        self.pins.insert(resource, Pin { key_id, ttl });
        self.used.store(true, Ordering::Relaxed);
    }

    pub fn lookup(&self, resource: &str) -> Option<Arc<str>> {
        self.pins.get(resource).map(|p| p.key_id)
    }

    /// The key of the first pinned resource among `resources`.
    pub fn lookup_any<'a>(&self, resources: impl IntoIterator<Item = &'a String>) -> Option<Arc<str>> {
        resources.into_iter().find_map(|r| self.lookup(r))
    }

    /// False until something was ever pinned: requests then need no scan.
    pub fn in_use(&self) -> bool {
        self.used.load(Ordering::Relaxed)
    }

    /// Pin key for an upload session id.
    pub fn upload_resource(upload_id: &str) -> String {
        format!("upload/{upload_id}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_and_looks_up() {
        let store = PinStore::default();
        assert!(!store.in_use());
        store.pin("files/abc".into(), "key-a".into());
        assert!(store.in_use());
        assert_eq!(store.lookup("files/abc").as_deref(), Some("key-a"));
        assert_eq!(store.lookup("files/zzz"), None);
        let wanted = ["files/zzz".to_string(), "files/abc".to_string()];
        assert_eq!(store.lookup_any(&wanted).as_deref(), Some("key-a"));
    }

    #[test]
    fn ttls_follow_the_resource() {
        assert_eq!(PinStore::ttl_for("files/x"), Duration::from_secs(48 * 3600));
        assert!(PinStore::ttl_for("tunedModels/x") > PinStore::ttl_for("batches/y"));
    }

    #[test]
    fn capacity_is_capped() {
        let store = PinStore::with_capacity(10);
        for i in 0..100 {
            store.pin(format!("files/{i}"), "k".into());
        }
        store.pins.run_pending_tasks();
        assert!(store.pins.entry_count() <= 10, "{}", store.pins.entry_count());
    }
}
