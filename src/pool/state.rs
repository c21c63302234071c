//! What outlives a config snapshot (SPEC 6: "quota and health state of keys that remain
//! are kept"): key health by key id, project quotas, the wait queues per (pool, model),
//! resource pins, and the clock they all read. A snapshot's keys and pools point into it.

use super::health::KeyHealth;
use super::pins::PinStore;
use crate::quota::clock::SharedClock;
use crate::quota::queue::WaitQueue;
use crate::quota::QuotaBook;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

pub struct GateState {
    pub clock: SharedClock,
    pub quotas: QuotaBook,
    pub pins: PinStore,
    keys: Mutex<HashMap<Arc<str>, Arc<KeyHealth>>>,
    queues: Mutex<HashMap<Arc<str>, Arc<PoolQueues>>>,
    /// A key was disabled: the prober looks sooner than its next round.
    pub health_changed: tokio::sync::Notify,
}

impl GateState {
    pub fn new(clock: SharedClock) -> GateState {
        GateState {
            quotas: QuotaBook::new(clock.clone()),
            clock,
            pins: PinStore::default(),
            keys: Mutex::new(HashMap::new()),
            queues: Mutex::new(HashMap::new()),
            health_changed: tokio::sync::Notify::new(),
        }
    }

    pub fn key_health(&self, id: &str) -> Arc<KeyHealth> {
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        keys.entry(id.into()).or_default().clone()
    }

    pub fn pool_queues(&self, pool: &str) -> Arc<PoolQueues> {
        let mut queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        queues.entry(pool.into()).or_default().clone()
    }
}

/// The FIFO wait queues of one pool, one per model (`""` for calls that name none).
#[derive(Default)]
pub struct PoolQueues {
    by_model: RwLock<HashMap<Box<str>, Arc<WaitQueue>>>,
}

impl PoolQueues {
    pub fn queue(&self, model: &str) -> Arc<WaitQueue> {
        if let Some(q) = self.by_model.read().unwrap_or_else(|e| e.into_inner()).get(model) {
            return q.clone();
        }
        let mut by_model = self.by_model.write().unwrap_or_else(|e| e.into_inner());
        by_model.entry(model.into()).or_default().clone()
    }

    /// A key of this pool freed a slot or came back: every line may move.
    pub fn notify_all(&self) {
        for q in self.by_model.read().unwrap_or_else(|e| e.into_inner()).values() {
            q.notify();
        }
    }
}
