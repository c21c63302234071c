//! Selection cases: strategies, exclusions, health, in-flight caps, shared projects.

use super::*;
use crate::config::KeyConfig;
use crate::quota::clock::ManualClock;
use crate::quota::limits::{Limit, LimitTable};
use crate::quota::queue::Try;

fn pools_with(strategy: Strategy, cap: u32, rpm: Option<u64>, projects: [Option<&str>; 3]) -> (Pools, GateState) {
    let state = GateState::new(ManualClock::starting_at(1_800_000_000_000));
    let keys = ["a", "b", "c"]
        .iter()
        .zip(projects)
        .map(|(id, project)| KeyConfig {
            id: id.to_string(),
            secret: Secret::new(format!("secret-{id}")),
            project: project.map(str::to_string),
        })
        .collect();
    let limits = LimitTable { default: Limit { rpm, ..Limit::default() }, rules: vec![] };
    let config = PoolConfig { name: "default".into(), keys, strategy, max_in_flight_per_key: cap, limits };
    (Pools::new(&[config], &state).unwrap(), state)
}

fn demand(model: Option<&str>) -> Demand<'_> {
    Demand { model, tokens: &|| 1 }
}

fn take(pool: &KeyPool, d: &Demand, exclude: &[Arc<str>]) -> Permit {
    match pool.try_acquire(d, exclude) {
        Try::Ready(p) => p,
        Try::Wait(at) => panic!("no key, wait until {at:?}"),
        Try::Fail(e) => panic!("no key: {e:?}"),
    }
}

#[test]
fn round_robin_visits_every_key_in_turn() {
    let (p, _s) = pools_with(Strategy::RoundRobin, 64, None, [None; 3]);
    let pool = p.get("default").unwrap();
    let ids: Vec<_> = (0..6).map(|_| take(pool, &demand(Some("m")), &[]).key.id.to_string()).collect();
    assert_eq!(ids, ["a", "b", "c", "a", "b", "c"]);
}

#[test]
fn least_loaded_prefers_fewest_in_flight() {
    let (p, _s) = pools_with(Strategy::LeastLoaded, 64, None, [None; 3]);
    let pool = p.get("default").unwrap();
    let held: Vec<Permit> = (0..3).map(|_| take(pool, &demand(None), &[])).collect();
    let mut ids: Vec<_> = held.iter().map(|p| p.key.id.to_string()).collect();
    ids.sort();
    assert_eq!(ids, ["a", "b", "c"], "three calls spread over three idle keys");
    let b_index = held.iter().position(|p| &*p.key.id == "b").unwrap();
    let mut held = held;
    held.remove(b_index);
    assert_eq!(&*take(pool, &demand(None), &[]).key.id, "b", "b is the only idle key");
}

#[test]
fn random_spreads_over_all_keys() {
    let (p, _s) = pools_with(Strategy::Random, 64, None, [None; 3]);
    let pool = p.get("default").unwrap();
    let mut counts = std::collections::HashMap::new();
    for _ in 0..300 {
        *counts.entry(take(pool, &demand(None), &[]).key.id.to_string()).or_insert(0) += 1;
    }
    assert_eq!(counts.len(), 3);
    assert!(counts.values().all(|&c| c > 50), "{counts:?}");
}

#[test]
fn in_flight_cap_holds_and_releases() {
    let (p, _s) = pools_with(Strategy::RoundRobin, 1, None, [None; 3]);
    let pool = p.get("default").unwrap();
    let held: Vec<Permit> = (0..3).map(|_| take(pool, &demand(Some("m")), &[])).collect();
    assert!(matches!(pool.try_acquire(&demand(Some("m")), &[]), Try::Wait(None)));
    drop(held);
    assert_eq!(pool.keys().iter().map(|k| k.health.in_flight()).sum::<u32>(), 0);
    take(pool, &demand(Some("m")), &[]);
}

#[test]
fn keys_of_one_project_share_its_rpm() {
    let (p, _s) = pools_with(Strategy::RoundRobin, 64, Some(2), [Some("proj"), Some("proj"), None]);
    let pool = p.get("default").unwrap();
    let ids: Vec<_> = (0..4).map(|_| take(pool, &demand(Some("m")), &[]).key.id.to_string()).collect();
    // a, b share "proj" (2 rpm); c has its own 2.
    assert_eq!(ids.iter().filter(|i| *i == "a" || *i == "b").count(), 2, "{ids:?}");
    assert_eq!(ids.iter().filter(|i| *i == "c").count(), 2, "{ids:?}");
    match pool.try_acquire(&demand(Some("m")), &[]) {
        Try::Wait(Some(at)) => assert_eq!(at, 1_800_000_000_000 + 60_100),
        _ => panic!("expected a known wait"),
    }
    assert!(matches!(pool.try_acquire(&demand(None), &[]), Try::Ready(_)), "non-model calls take no quota");
}

#[test]
fn exclusions_and_disabled_keys() {
    let (p, _s) = pools_with(Strategy::RoundRobin, 64, None, [None; 3]);
    let pool = p.get("default").unwrap();
    let tried: Vec<Arc<str>> = vec!["a".into(), "b".into()];
    assert_eq!(&*take(pool, &demand(None), &tried).key.id, "c");
    let all: Vec<Arc<str>> = vec!["a".into(), "b".into(), "c".into()];
    assert!(matches!(pool.try_acquire(&demand(None), &all), Try::Fail(Unavailable::NoOtherKey)));
    for k in pool.keys() {
        k.health.disable("API_KEY_INVALID", 0, 5_000);
    }
    match pool.try_acquire(&demand(None), &[]) {
        Try::Fail(Unavailable::AllDisabled { reasons, next_probe }) => {
            assert_eq!(reasons, ["API_KEY_INVALID"]);
            assert_eq!(next_probe, Some(5_000));
        }
        _ => panic!("expected all disabled"),
    }
    assert!(!pool.has_usable_key());
}

#[test]
fn keys_never_print_their_value() {
    let (p, _s) = pools_with(Strategy::RoundRobin, 64, None, [None; 3]);
    let shown = format!("{:?}", p.key("a").unwrap());
    assert!(!shown.contains("secret-a"), "{shown}");
    assert!(p.key("b").unwrap().auth_header().is_sensitive());
    assert_eq!(&*p.key("c").unwrap().project, "c");
}
