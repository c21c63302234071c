//! Choosing a key for one call (SPEC 4): the pool's strategy gives the order, and the first
//! key that is healthy, under its in-flight cap, not excluded (already tried), and whose
//! project has quota for the model wins. When none can, the caller learns the earliest
//! time one could (for the wait queue and `Retry-After`), or that waiting cannot help.

use super::{Key, KeyPool, Permit};
use crate::config::Strategy;
use crate::quota::clock::Millis;
use crate::quota::queue::Try;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// What a call needs: the model its quota is counted against (`None`: no quota, SPEC 4),
/// and its input tokens, estimated only if a TPM limit asks.
pub struct Demand<'a> {
    pub model: Option<&'a str>,
    pub tokens: &'a (dyn Fn() -> u64 + Sync),
}

/// Waiting for capacity cannot help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unavailable {
    /// Every key of the pool is disabled: the reasons, and the next probe.
    AllDisabled { reasons: Vec<String>, next_probe: Option<Millis> },
    /// Every key that could serve has been tried already.
    NoOtherKey,
}

impl KeyPool {
    /// One pass over the keys in strategy order.
    pub fn try_acquire(&self, demand: &Demand, exclude: &[Arc<str>]) -> Try<Permit, Unavailable> {
        let n = self.keys.len();
        let mut order: Vec<usize>;
        let order: &mut dyn Iterator<Item = usize> = match self.strategy {
            Strategy::RoundRobin => {
                let start = self.next.fetch_add(1, Ordering::Relaxed);
                &mut (0..n).map(move |i| (start + i) % n)
            }
            Strategy::Random => {
                let start = fastrand::usize(..n);
                &mut (0..n).map(move |i| (start + i) % n)
            }
            Strategy::LeastLoaded => {
                order = (0..n).collect();
                // Ties go round-robin so equal keys share the load.
                let start = self.next.fetch_add(1, Ordering::Relaxed);
                order.sort_by_key(|&i| (self.keys[i].health.in_flight(), (i + n - start % n) % n));
                &mut order.into_iter()
            }
        };
        let mut earliest: Option<Millis> = None;
        let mut busy = false;
        let mut disabled = 0;
        let mut candidates = 0;
        for i in order {
            let key = &self.keys[i];
            if exclude.iter().any(|id| *id == key.id) {
                continue;
            }
            candidates += 1;
            if key.health.is_disabled() {
                disabled += 1;
                continue;
            }
            if !key.enter() {
                busy = true;
                continue;
            }
            let Some(model) = demand.model else {
                return Try::Ready(Permit { key: key.clone(), charge: None });
            };
            match key.quota.try_charge(model, demand.tokens) {
                Ok(charge) => return Try::Ready(Permit { key: key.clone(), charge: Some(charge) }),
                Err(no_room) => {
                    key.health.leave();
                    earliest = Some(earliest.map_or(no_room.retry_at, |e: Millis| e.min(no_room.retry_at)));
                }
            }
        }
        if candidates == 0 {
            return Try::Fail(Unavailable::NoOtherKey);
        }
        if disabled == candidates {
            return Try::Fail(self.all_disabled());
        }
        // A key busy with in-flight calls frees on a release, at no known time.
        Try::Wait(if busy { None } else { earliest })
    }

    /// Every key's reason for being disabled, and the next probe (call when none is usable).
    pub fn all_disabled(&self) -> Unavailable {
        let mut reasons: Vec<String> = Vec::new();
        let mut next_probe: Option<Millis> = None;
        for d in self.keys.iter().filter_map(|k| k.health.disabled()) {
            if !reasons.contains(&d.reason) {
                reasons.push(d.reason.clone());
            }
            next_probe = Some(next_probe.map_or(d.next_probe_ms, |p| p.min(d.next_probe_ms)));
        }
        Unavailable::AllDisabled { reasons, next_probe }
    }
}

/// A pinned call must use its key (SPEC 2): it takes the key's in-flight slot and quota, or
/// says when it could.
pub fn try_acquire_key(key: &Arc<Key>, demand: &Demand) -> Try<Permit, Unavailable> {
    if key.health.is_disabled() {
        let reasons = key.health.disabled().map(|d| vec![d.reason]).unwrap_or_default();
        let next_probe = key.health.disabled().map(|d| d.next_probe_ms);
        return Try::Fail(Unavailable::AllDisabled { reasons, next_probe });
    }
    if !key.enter() {
        return Try::Wait(None);
    }
    let Some(model) = demand.model else {
        return Try::Ready(Permit { key: key.clone(), charge: None });
    };
    match key.quota.try_charge(model, demand.tokens) {
        Ok(charge) => Try::Ready(Permit { key: key.clone(), charge: Some(charge) }),
        Err(no_room) => {
            key.health.leave();
            Try::Wait(Some(no_room.retry_at))
        }
    }
}
