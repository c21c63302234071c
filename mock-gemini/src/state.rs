//! Shared state of one mock server: the live plan, the request log, per-key counters
//! (calls, model calls, the rpm window) and the admission decision made from them.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::record::Recorded;
use crate::resources::Resources;
use crate::script::{Behaviour, Plan, Script};

/// Everything a server's connections share.
pub(crate) struct State {
    /// Swapped whole by `set_script`; readers clone the `Arc` and hold it for one request.
    plan: RwLock<Arc<Plan>>,
    /// The request log and the per-key counters, under one lock so a request is recorded
    /// and admitted atomically.
    book: Mutex<Book>,
    /// Files, uploads, batches and cached contents, each with the key that created it.
    pub resources: Mutex<Resources>,
    /// "http://ADDR" of this server, used in upload URLs and file URIs.
    pub base_url: String,
    /// `true` once the server is shutting down; connections, hangs and sockets watch it.
    pub shutdown: watch::Sender<bool>,
}

#[derive(Default)]
struct Book {
    log: VecDeque<Recorded>,
    total: usize,
    keys: HashMap<String, KeyCounters>,
}

#[derive(Default)]
struct KeyCounters {
    /// Every recorded request made with the key.
    calls: u64,
    /// Calls of model methods (`models/{m}:x`, OpenAI chat/embeddings).
    model_calls: u64,
    /// Arrival times of admitted model calls inside the rpm window.
    window: VecDeque<Instant>,
}

/// What the script says about one request, decided at arrival.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Verdict {
    Proceed,
    Unregistered,
    Reset,
    Hang,
    Invalid,
    Blocked,
    Status(u16),
    Quota { limit: u64, retry: Option<Duration>, quota_id: String },
}

/// How the request may be admitted.
pub(crate) struct Admit<'a> {
    pub key: Option<&'a str>,
    /// A model method: counts toward `rpm` and `quota_after`.
    pub model_call: bool,
    /// Keyless requests are fine (an upload continuation: the upload id authorizes it).
    pub keyless_ok: bool,
}

impl State {
    pub fn new(script: Script, base_url: String) -> State {
        State {
            plan: RwLock::new(Arc::new(Plan::new(script))),
            book: Mutex::new(Book::default()),
            resources: Mutex::new(Resources::default()),
            base_url,
            shutdown: watch::Sender::new(false),
        }
    }

    pub fn plan(&self) -> Arc<Plan> {
        match self.plan.read() {
            Ok(p) => p.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn set_script(&self, script: Script) {
        let next = Arc::new(Plan::new(script));
        match self.plan.write() {
            Ok(mut p) => *p = next,
            Err(poisoned) => *poisoned.into_inner() = next,
        }
    }

    fn book(&self) -> MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn resources(&self) -> MutexGuard<'_, Resources> {
        self.resources.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records the request and decides, from the plan and the key's counters, how it is
    /// answered. Precedence: no key, reset, hang, invalid/rejected, blocked, scripted
    /// status, then (model calls only) `quota_after` and `rpm`.
    /// `rec` is None when the script keeps no requests (`max_recorded: 0`, benchmarks).
    pub fn admit(&self, plan: &Plan, rec: Option<Recorded>, how: Admit<'_>) -> Verdict {
        let mut guard = self.book();
        let book = &mut *guard;
        book.total += 1;
        if let Some(rec) = rec {
            while book.log.len() >= plan.source.max_recorded.max(1) {
                book.log.pop_front();
            }
            book.log.push_back(rec);
        }
        let Some(key) = how.key else {
            return if how.keyless_ok { Verdict::Proceed } else { Verdict::Unregistered };
        };
        let b: &Behaviour = plan.behaviour(Some(key));
        if !book.keys.contains_key(key) {
            book.keys.insert(key.to_owned(), KeyCounters::default());
        }
        let Some(counters) = book.keys.get_mut(key) else {
            return Verdict::Proceed;
        };
        counters.calls += 1;
        if b.reset {
            return Verdict::Reset;
        }
        if b.hang {
            return Verdict::Hang;
        }
        if b.invalid || plan.rejects(key) {
            return Verdict::Invalid;
        }
        if b.blocked {
            return Verdict::Blocked;
        }
        if let Some(code) = b.failing_status(counters.calls) {
            return Verdict::Status(code);
        }
        if !how.model_call {
            return Verdict::Proceed;
        }
        counters.model_calls += 1;
        if let Some(limit) = b.quota_after {
            if counters.model_calls > limit {
                return Verdict::Quota {
                    limit: b.rpm.filter(|_| !is_daily(&b.quota_id)).unwrap_or(limit),
                    retry: b.retry_delay,
                    quota_id: b.quota_id.clone(),
                };
            }
        }
        if let Some(rpm) = b.rpm {
            let now = Instant::now();
            let window = plan.source.rpm_window;
            while counters.window.front().is_some_and(|t| now.duration_since(*t) >= window) {
                counters.window.pop_front();
            }
            if counters.window.len() as u64 >= rpm {
                let frees_at = counters.window.front().map_or(now, |t| *t + window).saturating_duration_since(now);
                return Verdict::Quota {
                    limit: rpm,
                    retry: Some(b.retry_delay.unwrap_or(frees_at)),
                    quota_id: b.quota_id.clone(),
                };
            }
            counters.window.push_back(now);
        }
        Verdict::Proceed
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.book().log.iter().cloned().collect()
    }

    pub fn last(&self) -> Option<Recorded> {
        self.book().log.back().cloned()
    }

    pub fn count(&self) -> usize {
        self.book().total
    }

    pub fn calls_for_key(&self, key: &str) -> usize {
        self.book().keys.get(key).map_or(0, |c| c.calls as usize)
    }

    /// Serializes the request log for `GET /_mock/requests`.
    pub fn requests_json(&self) -> Vec<u8> {
        let book = self.book();
        let views: Vec<_> = book.log.iter().map(Recorded::view).collect();
        serde_json::to_vec(&views).unwrap_or_else(|_| b"[]".to_vec())
    }

    pub fn reset(&self) {
        *self.book() = Book::default();
        *self.resources() = Resources::default();
    }
}

fn is_daily(quota_id: &str) -> bool {
    quota_id.contains("PerDay")
}

/// Resolves once the server is shutting down (the watch's guard never crosses an await).
pub(crate) async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|down| *down).await.map(|_| ());
}
