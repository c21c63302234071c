//! Quotas per (project, model) as Google counts them (SPEC 4): requests and input tokens in
//! any rolling 60 s, requests per Pacific day, and cooldowns after an upstream 429. The
//! state outlives config snapshots (a reload keeps the counts of projects that remain);
//! keys of one project share one `ProjectQuota`.

pub mod clock;
pub mod day;
pub mod limits;
pub mod queue;
pub mod window;

use clock::{Millis, SharedClock};
use day::DayCount;
use limits::{Limit, LimitTable};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use window::{RollingWindow, WindowCharge};

/// Why a project's model is cooling down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CooldownCause {
    /// Google's 429 named a per-minute quota or sent a RetryInfo delay.
    PerMinute,
    /// Google's 429 named a per-day quota: cool until the Pacific midnight.
    PerDay,
    /// A 429 without RetryInfo: `health.cooldown_default`.
    Unspecified,
}

#[derive(Debug, Clone, Copy)]
pub struct Cooldown {
    pub until: Millis,
    pub cause: CooldownCause,
}

struct ModelState {
    limit: Limit,
    window: RollingWindow,
    day: DayCount,
    cooldown: Option<Cooldown>,
}

/// Why a charge was refused: the earliest time it could succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoRoom {
    pub retry_at: Millis,
}

/// Quota state of one Google project.
pub struct ProjectQuota {
    pub name: Arc<str>,
    clock: SharedClock,
    limits: RwLock<Arc<LimitTable>>,
    models: RwLock<HashMap<Box<str>, Arc<Mutex<ModelState>>>>,
}

/// One admitted model call's share of the quota, to refund or settle.
pub struct Charge {
    /// A TPM limit applies: the estimate is worth settling.
    pub tracks_tokens: bool,
    state: Arc<Mutex<ModelState>>,
    window: WindowCharge,
    at: Millis,
    clock: SharedClock,
}

/// What the admin API shows of one model of a project.
#[derive(Debug, Clone, Serialize)]
pub struct ModelUsage {
    pub model: String,
    pub requests_this_minute: u64,
    pub tokens_this_minute: u64,
    pub requests_today: u64,
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub rpd: Option<u64>,
    pub remaining_this_minute: Option<u64>,
    pub remaining_today: Option<u64>,
    pub cooldown_until_ms: Option<Millis>,
    pub cooldown_cause: Option<CooldownCause>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ProjectQuota {
    pub fn now(&self) -> Millis {
        self.clock.now()
    }

    fn model(&self, model: &str) -> Arc<Mutex<ModelState>> {
        if let Some(state) = self.models.read().unwrap_or_else(|e| e.into_inner()).get(model) {
            return state.clone();
        }
        let limit = self.limits.read().unwrap_or_else(|e| e.into_inner()).for_model(model);
        let mut models = self.models.write().unwrap_or_else(|e| e.into_inner());
        models
            .entry(model.into())
            .or_insert_with(|| {
                Arc::new(Mutex::new(ModelState {
                    limit,
                    window: RollingWindow::default(),
                    day: DayCount::default(),
                    cooldown: None,
                }))
            })
            .clone()
    }

    /// Charges one call of `model` with an estimate of its input tokens (asked for only
    /// when a TPM limit needs it), or says when it could succeed.
    pub fn try_charge(&self, model: &str, estimate: &dyn Fn() -> u64) -> Result<Charge, NoRoom> {
        let now = self.clock.now();
        let state = self.model(model);
        let mut s = lock(&state);
        let tokens = if s.limit.tpm.is_some() { estimate() } else { 0 };
        if let Some(cooldown) = s.cooldown {
            if cooldown.until > now {
                return Err(NoRoom { retry_at: cooldown.until });
            }
            s.cooldown = None;
        }
        let limit = s.limit;
        if !s.day.has_room(now, limit.rpd) {
            return Err(NoRoom { retry_at: s.day.ends(now) });
        }
        if !s.window.has_room(now, limit.rpm, limit.tpm, tokens) {
            return Err(NoRoom { retry_at: s.window.next_room(now, limit.rpm, limit.tpm, tokens) });
        }
        let charged = limit.tpm.map_or(tokens, |t| tokens.min(t));
        let window = s.window.charge(now, charged);
        s.day.charge(now);
        drop(s);
        Ok(Charge { tracks_tokens: limit.tpm.is_some(), state, window, at: now, clock: self.clock.clone() })
    }

    /// Cools `model` for this project until `until` (SPEC 4: an upstream 429).
    pub fn cool(&self, model: &str, until: Millis, cause: CooldownCause) {
        let state = self.model(model);
        let mut s = lock(&state);
        if s.cooldown.is_none_or(|c| c.until < until) {
            s.cooldown = Some(Cooldown { until, cause });
        }
    }

    /// Applies a new limit table (a reload) to every model already tracked.
    pub fn set_limits(&self, table: Arc<LimitTable>) {
        for (model, state) in self.models.read().unwrap_or_else(|e| e.into_inner()).iter() {
            lock(state).limit = table.for_model(model);
        }
        *self.limits.write().unwrap_or_else(|e| e.into_inner()) = table;
    }

    pub fn usage(&self) -> Vec<ModelUsage> {
        let now = self.clock.now();
        let models = self.models.read().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<ModelUsage> = models
            .iter()
            .map(|(model, state)| {
                let mut s = lock(state);
                let (requests, tokens) = s.window.usage(now);
                let today = s.day.count(now);
                let cooldown = s.cooldown.filter(|c| c.until > now);
                ModelUsage {
                    model: model.to_string(),
                    requests_this_minute: requests,
                    tokens_this_minute: tokens,
                    requests_today: today,
                    rpm: s.limit.rpm,
                    tpm: s.limit.tpm,
                    rpd: s.limit.rpd,
                    remaining_this_minute: s.limit.rpm.map(|r| r.saturating_sub(requests)),
                    remaining_today: s.limit.rpd.map(|r| r.saturating_sub(today)),
                    cooldown_until_ms: cooldown.map(|c| c.until),
                    cooldown_cause: cooldown.map(|c| c.cause),
                }
            })
            .collect();
        out.sort_by(|a, b| a.model.cmp(&b.model));
        out
    }
}

impl Charge {
    /// The request never reached the upstream: take the charge back.
    pub fn refund(self) {
        let now = self.clock.now();
        let mut s = lock(&self.state);
        s.window.refund(now, self.window);
        s.day.refund(now, self.at);
    }

    /// Replaces the token estimate with the count from `usageMetadata`.
    pub fn settle(&self, actual_tokens: u64) {
        let now = self.clock.now();
        lock(&self.state).window.settle(now, self.window, actual_tokens);
    }
}

/// Every project's quota, kept across config reloads.
pub struct QuotaBook {
    clock: SharedClock,
    projects: Mutex<HashMap<Arc<str>, Arc<ProjectQuota>>>,
}

impl QuotaBook {
    pub fn new(clock: SharedClock) -> QuotaBook {
        QuotaBook { clock, projects: Mutex::new(HashMap::new()) }
    }

    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// The project's quota, created on first use; `limits` replaces its limit table.
    pub fn project(&self, name: &str, limits: Arc<LimitTable>) -> Arc<ProjectQuota> {
        let mut projects = lock(&self.projects);
        if let Some(p) = projects.get(name) {
            if **p.limits.read().unwrap_or_else(|e| e.into_inner()) != *limits {
                p.set_limits(limits);
            }
            return p.clone();
        }
        let project = Arc::new(ProjectQuota {
            name: name.into(),
            clock: self.clock.clone(),
            limits: RwLock::new(limits),
            models: RwLock::new(HashMap::new()),
        });
        projects.insert(project.name.clone(), project.clone());
        project
    }
}

#[cfg(test)]
mod tests {
    use super::clock::{Clock, ManualClock};
    use super::*;
    use std::time::Duration;

    fn book() -> (Arc<ManualClock>, QuotaBook) {
        let clock = ManualClock::starting_at(1_800_000_000_000);
        (clock.clone(), QuotaBook::new(clock))
    }

    fn table(rpm: u64, rpd: u64) -> Arc<LimitTable> {
        Arc::new(LimitTable { default: Limit { rpm: Some(rpm), tpm: Some(1_000), rpd: Some(rpd) }, rules: vec![] })
    }

    #[test]
    fn keys_of_one_project_share_its_limits() {
        let (_clock, book) = book();
        let a = book.project("p", table(2, 100));
        let b = book.project("p", table(2, 100));
        assert!(Arc::ptr_eq(&a, &b));
        a.try_charge("m", &|| 1).unwrap();
        b.try_charge("m", &|| 1).unwrap();
        assert!(a.try_charge("m", &|| 1).is_err());
        assert!(a.try_charge("other-model", &|| 1).is_ok(), "limits are per model");
    }

    #[test]
    fn cooldowns_block_until_they_end() {
        let (clock, book) = book();
        let p = book.project("p", Arc::new(LimitTable::default()));
        let until = clock.now() + 30_000;
        p.cool("m", until, CooldownCause::PerMinute);
        assert_eq!(p.try_charge("m", &|| 0).err(), Some(NoRoom { retry_at: until }));
        clock.advance(Duration::from_secs(30));
        assert!(p.try_charge("m", &|| 0).is_ok());
    }

    #[test]
    fn refunds_and_settles() {
        let (_clock, book) = book();
        let p = book.project("p", table(1, 1));
        let c = p.try_charge("m", &|| 900).unwrap();
        assert!(p.try_charge("m", &|| 1).is_err());
        c.refund();
        let c = p.try_charge("m", &|| 900).unwrap();
        c.settle(10);
        let usage = p.usage();
        assert_eq!(usage[0].tokens_this_minute, 10);
        assert_eq!(usage[0].requests_today, 1);
        assert_eq!(usage[0].remaining_today, Some(0));
    }

    #[test]
    fn a_reload_changes_limits_in_place() {
        let (_clock, book) = book();
        let p = book.project("p", table(1, 100));
        p.try_charge("m", &|| 1).unwrap();
        assert!(p.try_charge("m", &|| 1).is_err());
        book.project("p", table(5, 100));
        assert!(p.try_charge("m", &|| 1).is_ok(), "the new limit applies, the count is kept");
        assert_eq!(p.usage()[0].requests_this_minute, 2);
    }
}
