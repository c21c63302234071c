//! Time for quotas, cooldowns and the wait queue: milliseconds since the Unix epoch from a
//! clock that production reads from the system and tests drive by hand (SPEC 4), so that
//! rolling windows, cooldowns and the Pacific-midnight reset are tested without waiting.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

/// Milliseconds since the Unix epoch.
pub type Millis = u64;

pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send>>;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Millis;
    /// Resolves once `now() >= at`.
    fn sleep_until(&self, at: Millis) -> Sleep;
}

pub type SharedClock = Arc<dyn Clock>;

/// The system's wall clock with tokio timers.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Millis {
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as Millis)
    }

    fn sleep_until(&self, at: Millis) -> Sleep {
        let wait = at.saturating_sub(self.now());
        Box::pin(tokio::time::sleep(Duration::from_millis(wait)))
    }
}

pub fn system() -> SharedClock {
    Arc::new(SystemClock)
}

/// A clock that moves only when told: tests advance it and every sleeper whose time has
/// come wakes up.
pub struct ManualClock {
    now: watch::Sender<Millis>,
}

impl ManualClock {
    pub fn starting_at(now: Millis) -> Arc<ManualClock> {
        Arc::new(ManualClock { now: watch::Sender::new(now) })
    }

    pub fn advance(&self, by: Duration) {
        self.now.send_modify(|t| *t += by.as_millis() as Millis);
    }

    pub fn set(&self, to: Millis) {
        self.now.send_replace(to);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Millis {
        *self.now.borrow()
    }

    fn sleep_until(&self, at: Millis) -> Sleep {
        let mut rx = self.now.subscribe();
        Box::pin(async move {
            let _ = rx.wait_for(|&t| t >= at).await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn manual_clock_wakes_sleepers_when_advanced() {
        let clock = ManualClock::starting_at(1_000);
        let sleeper = tokio::spawn(clock.sleep_until(6_000));
        tokio::task::yield_now().await;
        clock.advance(Duration::from_secs(2));
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished());
        clock.advance(Duration::from_secs(3));
        tokio::time::timeout(Duration::from_secs(1), sleeper).await.unwrap().unwrap();
        assert_eq!(clock.now(), 6_000);
    }
}
