//! A rolling 60-second window of requests and input tokens, exact in the direction that
//! matters: Google allows at most `rpm` requests (and `tpm` tokens) in *any* 60 s, so a
//! request is counted from its 100 ms granule's start until that granule's end plus 60 s.
//! It may therefore count up to 100 ms longer than needed, never shorter: the bound holds,
//! and the cost is constant memory (601 slots) whatever the limit. Unlike a GCRA (which
//! lets up to 2N−1 through in a window and cannot refund), charges here can be refunded
//! and settled to the real token count.

use super::clock::Millis;

pub const WINDOW_MS: Millis = 60_000;
const GRANULE_MS: Millis = 100;
const SLOTS: usize = (WINDOW_MS / GRANULE_MS) as usize + 1;

#[derive(Clone, Copy, Default)]
struct Slot {
    granule: u64,
    requests: u64,
    tokens: u64,
}

/// What a charge took, to refund or settle it later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowCharge {
    granule: u64,
    pub tokens: u64,
}

pub struct RollingWindow {
    slots: Box<[Slot]>,
    /// The oldest granule that may still be live.
    tail: u64,
    requests: u64,
    tokens: u64,
}

impl Default for RollingWindow {
    fn default() -> Self {
        RollingWindow { slots: vec![Slot::default(); SLOTS].into_boxed_slice(), tail: 0, requests: 0, tokens: 0 }
    }
}

fn granule_of(t: Millis) -> u64 {
    t / GRANULE_MS
}

/// When a charge made in `granule` stops counting.
fn expiry_of(granule: u64) -> Millis {
    (granule + 1) * GRANULE_MS + WINDOW_MS
}

impl RollingWindow {
    fn expire(&mut self, now: Millis) {
        let oldest_live = now.saturating_sub(WINDOW_MS) / GRANULE_MS;
        if oldest_live <= self.tail {
            return;
        }
        if oldest_live - self.tail >= SLOTS as u64 {
            self.slots.fill(Slot::default());
            self.requests = 0;
            self.tokens = 0;
        } else {
            for g in self.tail..oldest_live {
                let slot = &mut self.slots[(g % SLOTS as u64) as usize];
                if slot.granule == g {
                    self.requests -= slot.requests;
                    self.tokens -= slot.tokens;
                    *slot = Slot::default();
                }
            }
        }
        self.tail = oldest_live;
    }

    /// Requests and tokens counted at `now`.
    pub fn usage(&mut self, now: Millis) -> (u64, u64) {
        self.expire(now);
        (self.requests, self.tokens)
    }

    /// Whether one more request of `tokens` fits under the limits at `now`.
    pub fn has_room(&mut self, now: Millis, rpm: Option<u64>, tpm: Option<u64>, tokens: u64) -> bool {
        self.expire(now);
        rpm.is_none_or(|r| self.requests < r) && tpm.is_none_or(|t| self.tokens + tokens.min(t) <= t)
    }

    pub fn charge(&mut self, now: Millis, tokens: u64) -> WindowCharge {
        self.expire(now);
        let granule = granule_of(now);
        let slot = &mut self.slots[(granule % SLOTS as u64) as usize];
        if slot.granule != granule {
            *slot = Slot { granule, requests: 0, tokens: 0 };
        }
        slot.requests += 1;
        slot.tokens += tokens;
        self.requests += 1;
        self.tokens += tokens;
        WindowCharge { granule, tokens }
    }

    /// Takes a charge back whole (the request never reached the upstream).
    pub fn refund(&mut self, now: Millis, charge: WindowCharge) {
        self.expire(now);
        if let Some(slot) = self.live_slot(charge.granule) {
            slot.requests = slot.requests.saturating_sub(1);
            slot.tokens = slot.tokens.saturating_sub(charge.tokens);
            self.requests = self.requests.saturating_sub(1);
            self.tokens = self.tokens.saturating_sub(charge.tokens);
        }
    }

    /// Replaces a charge's estimated tokens with the counted ones.
    pub fn settle(&mut self, now: Millis, charge: WindowCharge, actual: u64) {
        self.expire(now);
        if let Some(slot) = self.live_slot(charge.granule) {
            slot.tokens = slot.tokens.saturating_sub(charge.tokens) + actual;
            self.tokens = self.tokens.saturating_sub(charge.tokens) + actual;
        }
    }

    fn live_slot(&mut self, granule: u64) -> Option<&mut Slot> {
        if granule < self.tail {
            return None;
        }
        let slot = &mut self.slots[(granule % SLOTS as u64) as usize];
        (slot.granule == granule).then_some(slot)
    }

    /// The earliest time one more request of `tokens` fits (now if it fits now).
    pub fn next_room(&mut self, now: Millis, rpm: Option<u64>, tpm: Option<u64>, tokens: u64) -> Millis {
        if self.has_room(now, rpm, tpm, tokens) {
            return now;
        }
        let (mut requests, mut used) = (self.requests, self.tokens);
        let current = granule_of(now);
        for g in self.tail..=current {
            let slot = self.slots[(g % SLOTS as u64) as usize];
            if slot.granule != g {
                continue;
            }
            requests -= slot.requests;
            used -= slot.tokens;
            let fits = rpm.is_none_or(|r| requests < r) && tpm.is_none_or(|t| used + tokens.min(t) <= t);
            if fits {
                return expiry_of(g);
            }
        }
        expiry_of(current)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_more_than_rpm_in_any_rolling_minute() {
        // Offer a request every 50 ms for 5 minutes; admit what fits; then check every
        // 60 s window over the admitted times.
        let mut w = RollingWindow::default();
        let mut admitted = Vec::new();
        let start = 1_000_000;
        for i in 0..6_000u64 {
            let now = start + i * 50;
            if w.has_room(now, Some(15), None, 0) {
                w.charge(now, 0);
                admitted.push(now);
            }
        }
        for (i, &t) in admitted.iter().enumerate() {
            let in_window = admitted[i..].iter().take_while(|&&u| u < t + WINDOW_MS).count();
            assert!(in_window <= 15, "{in_window} requests within 60 s of {t}");
        }
        // And the window is used: 5 minutes of 15 rpm, minus the granule slack.
        assert!(admitted.len() >= 74, "{}", admitted.len());
    }

    #[test]
    fn bursts_up_to_the_limit_then_wait() {
        let mut w = RollingWindow::default();
        for _ in 0..5 {
            assert!(w.has_room(0, Some(5), None, 0));
            w.charge(0, 0);
        }
        assert!(!w.has_room(30_000, Some(5), None, 0));
        assert_eq!(w.next_room(30_000, Some(5), None, 0), 60_100);
        assert!(!w.has_room(60_099, Some(5), None, 0));
        assert!(w.has_room(60_100, Some(5), None, 0));
    }

    #[test]
    fn tokens_are_charged_refunded_and_settled() {
        let mut w = RollingWindow::default();
        let c = w.charge(1_000, 800);
        assert!(!w.has_room(1_000, None, Some(1_000), 300));
        w.settle(2_000, c, 100);
        assert_eq!(w.usage(2_000), (1, 100));
        assert!(w.has_room(2_000, None, Some(1_000), 300));
        w.refund(2_000, WindowCharge { tokens: 100, ..c });
        assert_eq!(w.usage(2_000), (0, 0));
        // A settle after the charge expired changes nothing.
        let c = w.charge(3_000, 10);
        w.settle(100_000, c, 500);
        assert_eq!(w.usage(100_000), (0, 0));
    }

    #[test]
    fn next_room_waits_for_enough_tokens_to_expire() {
        let mut w = RollingWindow::default();
        w.charge(0, 600);
        w.charge(10_000, 300);
        assert_eq!(w.next_room(20_000, None, Some(1_000), 200), 60_100);
        assert_eq!(w.next_room(20_000, None, Some(1_000), 800), 70_100);
        assert_eq!(w.next_room(20_000, None, Some(1_000), 100), 20_000);
    }

    #[test]
    fn long_idle_resets() {
        let mut w = RollingWindow::default();
        w.charge(0, 5);
        assert_eq!(w.usage(10 * WINDOW_MS), (0, 0));
        w.charge(10 * WINDOW_MS, 1);
        assert_eq!(w.usage(10 * WINDOW_MS + 1), (1, 1));
    }
}
