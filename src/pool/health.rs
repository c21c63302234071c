//! Key health (SPEC 4): how many calls a key has in flight (capped by
//! `max_in_flight_per_key`) and whether it is disabled after a key-level error. Kept across
//! config reloads by key id; cooldowns after a 429 belong to the project's quota instead,
//! since every key of the project shares them.

use crate::quota::clock::Millis;
use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Mutex;

/// Why and since when a key is disabled.
#[derive(Debug, Clone, Serialize)]
pub struct Disabled {
    /// The upstream's ErrorInfo reason, e.g. `API_KEY_INVALID`.
    pub reason: String,
    pub since_ms: Millis,
    /// When the next probe is due.
    pub next_probe_ms: Millis,
}

#[derive(Default)]
pub struct KeyHealth {
    in_flight: AtomicU32,
    disabled: AtomicBool,
    detail: Mutex<Option<Disabled>>,
}

impl KeyHealth {
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Takes one in-flight slot if fewer than `cap` are taken.
    pub fn try_enter(&self, cap: u32) -> bool {
        self.in_flight.fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| (n < cap).then_some(n + 1)).is_ok()
    }

    pub fn leave(&self) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }

    pub fn is_disabled(&self) -> bool {
        self.disabled.load(Ordering::Relaxed)
    }

    pub fn disabled(&self) -> Option<Disabled> {
        self.detail.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Disables the key; a later `disable` keeps the first reason and time.
    pub fn disable(&self, reason: &str, now: Millis, next_probe: Millis) {
        let mut detail = self.detail.lock().unwrap_or_else(|e| e.into_inner());
        if detail.is_none() {
            *detail = Some(Disabled { reason: reason.to_string(), since_ms: now, next_probe_ms: next_probe });
        }
        self.disabled.store(true, Ordering::Relaxed);
    }

    pub fn set_next_probe(&self, at: Millis) {
        if let Some(d) = self.detail.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            d.next_probe_ms = at;
        }
    }

    pub fn enable(&self) {
        *self.detail.lock().unwrap_or_else(|e| e.into_inner()) = None;
        self.disabled.store(false, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_flight_is_capped() {
        let h = KeyHealth::default();
        assert!(h.try_enter(2));
        assert!(h.try_enter(2));
        assert!(!h.try_enter(2));
        h.leave();
        assert!(h.try_enter(2));
        assert_eq!(h.in_flight(), 2);
    }

    #[test]
    fn disable_keeps_the_first_reason_until_enabled() {
        let h = KeyHealth::default();
        h.disable("API_KEY_INVALID", 10, 20);
        h.disable("OTHER", 11, 21);
        assert!(h.is_disabled());
        assert_eq!(h.disabled().unwrap().reason, "API_KEY_INVALID");
        h.enable();
        assert!(!h.is_disabled() && h.disabled().is_none());
    }
}
