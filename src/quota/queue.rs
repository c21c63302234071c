//! The wait queue of SPEC 4: requests that find no key with capacity wait in FIFO order per
//! (pool, model) up to `queue.max_wait`; only the head of the line tries for a key, so
//! nobody jumps ahead. The head sleeps until the earliest time capacity frees up (known
//! from the quota windows) or until a release wakes the line. A waiter whose client went
//! away is dropped from the line by its ticket's destructor and takes nothing.

use super::clock::{Millis, SharedClock};
use std::collections::VecDeque;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::Notify;

/// One try for capacity.
pub enum Try<T, E> {
    Ready(T),
    /// No capacity now; it frees up at this time if known (else on a release).
    Wait(Option<Millis>),
    /// Waiting cannot help.
    Fail(E),
}

/// Why the queue gave up.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused<E> {
    /// `max_waiting` requests were already waiting.
    Full {
        retry_at: Option<Millis>,
    },
    /// No capacity within `max_wait` (or it is known to come later).
    TimedOut {
        retry_at: Option<Millis>,
    },
    Failed(E),
}

#[derive(Default)]
pub struct WaitQueue {
    line: Mutex<Line>,
    changed: Notify,
    waiting: AtomicUsize,
}

#[derive(Default)]
struct Line {
    tickets: VecDeque<u64>,
    next: u64,
}

struct Ticket<'a> {
    queue: &'a WaitQueue,
    id: u64,
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        let mut line = self.queue.line.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = line.tickets.iter().position(|&t| t == self.id) {
            line.tickets.remove(i);
        }
        drop(line);
        self.queue.waiting.fetch_sub(1, Ordering::Relaxed);
        self.queue.changed.notify_waiters();
    }
}

impl WaitQueue {
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Capacity may have changed (a key was released or re-enabled): wake the line.
    pub fn notify(&self) {
        if self.waiting() > 0 {
            self.changed.notify_waiters();
        }
    }

    fn join(&self) -> Ticket<'_> {
        let mut line = self.line.lock().unwrap_or_else(|e| e.into_inner());
        let id = line.next;
        line.next += 1;
        line.tickets.push_back(id);
        self.waiting.fetch_add(1, Ordering::Relaxed);
        Ticket { queue: self, id }
    }

    fn is_head(&self, id: u64) -> bool {
        self.line.lock().unwrap_or_else(|e| e.into_inner()).tickets.front() == Some(&id)
    }

    /// Gets capacity through `attempt`, waiting in line when there is none.
    pub async fn acquire<T, E>(
        &self,
        clock: &SharedClock,
        max_wait: Duration,
        max_waiting: usize,
        mut attempt: impl FnMut() -> Try<T, E>,
    ) -> Result<T, Refused<E>> {
        let deadline = clock.now() + max_wait.as_millis() as Millis;
        let mut retry_at = None;
        if self.waiting() == 0 {
            match attempt() {
                Try::Ready(t) => return Ok(t),
                Try::Fail(e) => return Err(Refused::Failed(e)),
                Try::Wait(at) if at.is_some_and(|a| a > deadline) => return Err(Refused::TimedOut { retry_at: at }),
                Try::Wait(at) => retry_at = at,
            }
        }
        if self.waiting() >= max_waiting {
            return Err(Refused::Full { retry_at });
        }
        let ticket = self.join();
        loop {
            let mut notified = pin!(self.changed.notified());
            notified.as_mut().enable();
            let wake_at = if self.is_head(ticket.id) {
                match attempt() {
                    Try::Ready(t) => return Ok(t),
                    Try::Fail(e) => return Err(Refused::Failed(e)),
                    Try::Wait(at) => {
                        retry_at = at;
                        if at.is_some_and(|a| a > deadline) {
                            return Err(Refused::TimedOut { retry_at });
                        }
                        at.unwrap_or(deadline)
                    }
                }
            } else {
                deadline
            };
            if clock.now() >= deadline {
                return Err(Refused::TimedOut { retry_at });
            }
            tokio::select! {
                () = notified => {}
                () = clock.sleep_until(wake_at.min(deadline)) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::clock::ManualClock;
    use super::*;
    use std::sync::atomic::AtomicU32;
    use std::sync::Arc;

    const WAIT: Duration = Duration::from_secs(10);

    #[tokio::test]
    async fn serves_at_once_when_there_is_room() {
        let clock: SharedClock = ManualClock::starting_at(0);
        let q = WaitQueue::default();
        let got: Result<u32, Refused<()>> = q.acquire(&clock, WAIT, 10, || Try::Ready(7)).await;
        assert_eq!(got, Ok(7));
    }

    #[tokio::test]
    async fn waits_for_capacity_then_serves_in_fifo_order() {
        let manual = ManualClock::starting_at(0);
        let clock: SharedClock = manual.clone();
        let q = Arc::new(WaitQueue::default());
        let free_at = Arc::new(AtomicU32::new(5_000)); // capacity appears at t=5 s
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..3 {
            let (q, clock, free_at, order) = (q.clone(), clock.clone(), free_at.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let r: Result<(), Refused<()>> = q
                    .acquire(&clock, WAIT, 10, || {
                        let at = free_at.load(Ordering::SeqCst) as Millis;
                        if clock.now() >= at {
                            // One unit frees per second.
                            free_at.store((clock.now() + 1_000) as u32, Ordering::SeqCst);
                            Try::Ready(())
                        } else {
                            Try::Wait(Some(at))
                        }
                    })
                    .await;
                order.lock().unwrap().push((i, clock.now()));
                r
            }));
            // Make arrival order deterministic.
            for _ in 0..5 {
                tokio::task::yield_now().await;
            }
        }
        for _ in 0..10 {
            manual.advance(Duration::from_secs(1));
            for _ in 0..20 {
                tokio::task::yield_now().await;
            }
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), Ok(()));
        }
        let order = order.lock().unwrap().clone();
        assert_eq!(order.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(order.iter().map(|(_, t)| *t).collect::<Vec<_>>(), [5_000, 6_000, 7_000]);
    }

    #[tokio::test]
    async fn gives_up_at_the_deadline_or_at_once_when_capacity_comes_later() {
        let manual = ManualClock::starting_at(0);
        let clock: SharedClock = manual.clone();
        let q = WaitQueue::default();
        let later: Result<(), Refused<()>> = q.acquire(&clock, WAIT, 10, || Try::Wait(Some(60_000))).await;
        assert_eq!(later, Err(Refused::TimedOut { retry_at: Some(60_000) }));
        let q = Arc::new(WaitQueue::default());
        let q2 = q.clone();
        let clock2 = clock.clone();
        let waiter = tokio::spawn(async move {
            let r: Result<(), Refused<()>> = q2.acquire(&clock2, WAIT, 10, || Try::Wait(None)).await;
            r
        });
        tokio::task::yield_now().await;
        manual.advance(WAIT);
        assert_eq!(waiter.await.unwrap(), Err(Refused::TimedOut { retry_at: None }));
        assert_eq!(q.waiting(), 0);
    }

    #[tokio::test]
    async fn a_full_line_refuses_and_a_cancelled_waiter_leaves() {
        let clock: SharedClock = ManualClock::starting_at(0);
        let q = Arc::new(WaitQueue::default());
        let q2 = q.clone();
        let clock2 = clock.clone();
        let first = tokio::spawn(async move {
            let r: Result<(), Refused<()>> = q2.acquire(&clock2, WAIT, 1, || Try::Wait(None)).await;
            r
        });
        while q.waiting() == 0 {
            tokio::task::yield_now().await;
        }
        let full: Result<(), Refused<()>> = q.acquire(&clock, WAIT, 1, || Try::Wait(None)).await;
        assert_eq!(full, Err(Refused::Full { retry_at: None }));
        first.abort();
        let _ = first.await;
        assert_eq!(q.waiting(), 0, "the aborted waiter left the line");
        assert!(q.line.lock().unwrap().tickets.is_empty());
    }
}
