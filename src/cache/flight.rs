//! Single flight (SPEC 5): identical requests in flight at once make one upstream call. The
//! call runs on its own task and feeds a `Flight`: the answer's head, then its chunks as
//! they arrive. Every client of that key, the first included, is a `Subscriber` that reads
//! the chunks from the start at its own pace, so a stream reaches a late joiner too. The
//! call is cancelled only when the last subscriber has gone; a subscriber that leaves early
//! takes nothing from the others.

use super::CacheKey;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// How a flight ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    Clean,
    /// The upstream answer broke off: subscribers see their stream cut off too.
    Broken,
}

/// The answer's head as the call produced it.
#[derive(Debug, Clone)]
pub struct Head {
    pub status: http::StatusCode,
    pub headers: http::HeaderMap,
    /// Upstream attempts the call made (0 when gemgate refused it itself).
    pub attempts: u32,
    pub key: Option<Arc<str>>,
}

#[derive(Default)]
struct State {
    head: Option<Head>,
    /// Chunks from `base` on; earlier ones every subscriber has read (dropped once the
    /// answer is too large to be stored).
    chunks: Vec<Bytes>,
    base: usize,
    bytes: usize,
    end: Option<End>,
    /// Read positions of the subscribers, by slot.
    cursors: Vec<Option<usize>>,
    /// Still small enough to be stored, so chunks are kept whole.
    keep_all: bool,
}

pub struct Flight {
    key: CacheKey,
    state: Mutex<State>,
    changed: Arc<Notify>,
    /// Cancelled when the last subscriber leaves before the end.
    pub cancel: CancellationToken,
    max_keep: usize,
}

fn lock(m: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Flight {
    fn new(key: CacheKey, max_keep: usize) -> Arc<Flight> {
        Arc::new(Flight {
            key,
            state: Mutex::new(State { keep_all: true, ..State::default() }),
            changed: Arc::new(Notify::new()),
            cancel: CancellationToken::new(),
            max_keep,
        })
    }

    pub fn set_head(&self, head: Head) {
        lock(&self.state).head = Some(head);
        self.changed.notify_waiters();
    }

    /// Adds a chunk; returns false once the answer is too large to be stored.
    pub fn push(&self, chunk: Bytes) -> bool {
        let mut s = lock(&self.state);
        s.bytes += chunk.len();
        s.chunks.push(chunk);
        if s.keep_all && s.bytes > self.max_keep {
            s.keep_all = false;
        }
        if !s.keep_all {
            let oldest = s.cursors.iter().flatten().copied().min().unwrap_or(s.base + s.chunks.len());
            let drop = oldest.saturating_sub(s.base).min(s.chunks.len());
            s.chunks.drain(..drop);
            s.base += drop;
        }
        let keep = s.keep_all;
        drop(s);
        self.changed.notify_waiters();
        keep
    }

    /// Ends the flight (the first end stands).
    pub fn finish(&self, end: End) {
        lock(&self.state).end.get_or_insert(end);
        self.changed.notify_waiters();
    }

    /// The answer so far, if every chunk was kept (for storing, once the call ended
    /// cleanly: the caller knows, and stores before it ends the flight).
    pub fn whole(&self) -> Option<(Head, Vec<Bytes>)> {
        let s = lock(&self.state);
        (s.end != Some(End::Broken) && s.keep_all && s.base == 0)
            .then(|| (s.head.clone(), s.chunks.clone()))
            .and_then(|(head, chunks)| head.map(|h| (h, chunks)))
    }

    pub fn subscribe(self: &Arc<Self>) -> Subscriber {
        let mut s = lock(&self.state);
        let slot = match s.cursors.iter().position(Option::is_none) {
            Some(free) => free,
            None => {
                s.cursors.push(None);
                s.cursors.len() - 1
            }
        };
        let start = s.base;
        s.cursors[slot] = Some(start);
        Subscriber { flight: self.clone(), slot }
    }

    /// Waits for the head; `None` when the call ended without one.
    pub async fn head(&self) -> Option<Head> {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let s = lock(&self.state);
                if s.head.is_some() || s.end.is_some() {
                    return s.head.clone();
                }
            }
            notified.await;
        }
    }
}

/// Ends a flight as broken if its call stops without ending it (a panic, an abort), so no
/// client waits for it forever.
pub struct EndGuard(pub Arc<Flight>);

impl Drop for EndGuard {
    fn drop(&mut self) {
        self.0.finish(End::Broken);
    }
}

/// One client reading a flight.
pub struct Subscriber {
    flight: Arc<Flight>,
    slot: usize,
}

/// What a subscriber reads next.
pub enum Next {
    Chunk(Bytes),
    End(End),
    /// Nothing yet: wait for `changed` and ask again.
    Pending,
}

impl Subscriber {
    pub fn next(&self) -> Next {
        let mut s = lock(&self.flight.state);
        let Some(at) = s.cursors[self.slot] else { return Next::End(End::Broken) };
        let index = at - s.base;
        if let Some(chunk) = s.chunks.get(index).cloned() {
            s.cursors[self.slot] = Some(at + 1);
            return Next::Chunk(chunk);
        }
        match s.end {
            Some(end) => Next::End(end),
            None => Next::Pending,
        }
    }

    /// A future that resolves when the flight changes (create and enable it before
    /// calling `next`, so no change is missed).
    pub fn changed(&self) -> tokio::sync::futures::OwnedNotified {
        self.flight.changed.clone().notified_owned()
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let mut s = lock(&self.flight.state);
        s.cursors[self.slot] = None;
        let alone = s.cursors.iter().all(Option::is_none);
        let ended = s.end.is_some();
        drop(s);
        if alone && !ended {
            self.flight.cancel.cancel();
        }
    }
}

/// The flights in progress, by cache key.
#[derive(Default)]
pub struct Flights {
    map: Mutex<HashMap<CacheKey, Weak<Flight>>>,
}

impl Flights {
    /// Joins the flight for `key`, or starts one (`true`: the caller must run the call).
    pub fn join(&self, key: CacheKey, max_keep: usize) -> (Arc<Flight>, Subscriber, bool) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((flight, subscriber)) = open(&map, key) {
            return (flight, subscriber, false);
        }
        let flight = Flight::new(key, max_keep);
        map.insert(key, Arc::downgrade(&flight));
        let subscriber = flight.subscribe();
        (flight, subscriber, true)
    }

    /// Joins the flight for `key` if there is one to join.
    pub fn follow(&self, key: CacheKey) -> Option<(Arc<Flight>, Subscriber)> {
        open(&self.map.lock().unwrap_or_else(|e| e.into_inner()), key)
    }

    /// A flight of its own that nobody joins (`Cache-Control: no-cache`: a fresh answer).
    pub fn solo(&self, key: CacheKey, max_keep: usize) -> (Arc<Flight>, Subscriber, bool) {
        let flight = Flight::new(key, max_keep);
        let subscriber = flight.subscribe();
        (flight, subscriber, true)
    }

    /// Takes a flight out of the map once its call ended and its answer, if any, is stored
    /// (later requests read the cache).
    /// Calls in flight now (landed ones excluded).
    pub fn in_flight(&self) -> usize {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).values().filter(|w| w.strong_count() > 0).count()
    }

    pub fn land(&self, flight: &Flight) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.get(&flight.key).is_some_and(|w| w.upgrade().is_none_or(|f| std::ptr::eq(&*f, flight))) {
            map.remove(&flight.key);
        }
    }
}

/// A subscription to the flight for `key`, if it may be joined: still running (or ended
/// cleanly and not landed: its answer is being stored, and is read whole from the flight),
/// not cancelled, and small enough that every chunk is kept.
fn open(map: &HashMap<CacheKey, Weak<Flight>>, key: CacheKey) -> Option<(Arc<Flight>, Subscriber)> {
    let flight = map.get(&key).and_then(Weak::upgrade)?;
    let open = {
        let s = lock(&flight.state);
        s.keep_all && s.end.is_none_or(|end| end == End::Clean)
    };
    if !open || flight.cancel.is_cancelled() {
        return None;
    }
    let subscriber = flight.subscribe();
    Some((flight, subscriber))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head() -> Head {
        Head { status: http::StatusCode::OK, headers: http::HeaderMap::new(), attempts: 1, key: None }
    }

    #[test]
    fn joiners_read_from_the_start_and_the_last_leaver_cancels() {
        let flights = Flights::default();
        let key = CacheKey([7; 32]);
        let (flight, first, leader) = flights.join(key, 1 << 20);
        assert!(leader);
        flight.set_head(head());
        flight.push(Bytes::from_static(b"a"));
        let (_, second, leader) = flights.join(key, 1 << 20);
        assert!(!leader);
        assert!(matches!(second.next(), Next::Chunk(c) if &c[..] == b"a"));
        assert!(matches!(second.next(), Next::Pending));
        drop(first);
        assert!(!flight.cancel.is_cancelled(), "one subscriber is still there");
        drop(second);
        assert!(flight.cancel.is_cancelled());
    }

    #[test]
    fn a_clean_end_is_whole_and_large_answers_are_not_kept() {
        let flights = Flights::default();
        let (flight, reader, _) = flights.join(CacheKey([1; 32]), 4);
        flight.set_head(head());
        assert!(flight.push(Bytes::from_static(b"abc")));
        flight.finish(End::Clean);
        assert_eq!(flight.whole().unwrap().1.len(), 1);
        drop(reader);
        let (flight, reader, _) = flights.join(CacheKey([2; 32]), 4);
        flight.set_head(head());
        assert!(flight.push(Bytes::from_static(b"abc")));
        assert!(!flight.push(Bytes::from_static(b"def")), "over max_keep");
        assert!(matches!(reader.next(), Next::Chunk(_)));
        assert!(matches!(reader.next(), Next::Chunk(_)));
        flight.push(Bytes::from_static(b"g"));
        let base = lock(&flight.state).base;
        assert_eq!(base, 2, "chunks every subscriber read are dropped");
        assert!(matches!(reader.next(), Next::Chunk(c) if &c[..] == b"g"));
        flight.finish(End::Clean);
        assert!(flight.whole().is_none());
        assert!(matches!(reader.next(), Next::End(End::Clean)));
    }

    #[test]
    fn an_ended_flight_is_joined_only_while_its_answer_is_being_stored() {
        let flights = Flights::default();
        let key = CacheKey([3; 32]);
        let (flight, reader, _) = flights.join(key, 1 << 20);
        flight.set_head(head());
        flight.push(Bytes::from_static(b"whole"));
        flight.finish(End::Clean);
        drop(reader);
        assert!(!flight.cancel.is_cancelled(), "leaving an ended flight cancels nothing");
        let (_, late, leader) = flights.join(key, 1 << 20);
        assert!(!leader, "not landed yet: the answer is being stored");
        assert!(matches!(late.next(), Next::Chunk(c) if &c[..] == b"whole"));
        assert!(matches!(late.next(), Next::End(End::Clean)));
        assert!(flights.follow(key).is_some());
        flights.land(&flight);
        assert!(flights.follow(key).is_none(), "landed: the next request reads the cache");

        let key = CacheKey([4; 32]);
        let (flight, _reader, _) = flights.join(key, 1 << 20);
        flight.finish(End::Broken);
        assert!(flights.join(key, 1 << 20).2, "a broken flight is never joined");
    }
}
