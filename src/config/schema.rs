//! The config file as written: serde structs mirroring SPEC 3 for the sections this build
//! implements. Scalars with units stay strings here so that `validate` can report every bad
//! value at once instead of serde stopping at the first. Unknown fields are collected by
//! `serde_ignored` in `mod.rs` and reported as errors (same effect as `deny_unknown_fields`,
//! but all of them, with their lines).

use super::secret::SecretSource;
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Default, Deserialize)]
pub struct RawConfig {
    pub listen: Option<String>,
    pub upstream: Option<RawUpstream>,
    pub shutdown_grace: Option<String>,
    pub clients: Option<RawClients>,
    /// Ordered by name; the order of pools never changes behaviour.
    pub pools: Option<BTreeMap<String, RawPool>>,
    pub admin: Option<RawAdmin>,
    pub queue: Option<RawQueue>,
    pub retry: Option<RawRetry>,
    pub health: Option<RawHealth>,
    pub cache: Option<RawCache>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawCache {
    pub backend: Option<String>,
    pub ttl: Option<String>,
    pub max_bytes: Option<String>,
    pub max_entry_bytes: Option<String>,
    pub front_max_bytes: Option<String>,
    pub scope: Option<String>,
    pub redis: Option<RawRedis>,
    pub methods: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawRedis {
    pub url: Option<SecretSource>,
    pub prefix: Option<String>,
    pub timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawQueue {
    pub max_wait: Option<String>,
    pub max_waiting: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawRetry {
    pub attempts: Option<u32>,
    pub on: Option<Vec<u16>>,
    pub max_body: Option<String>,
    pub buffer_budget: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawHealth {
    pub probe_interval: Option<String>,
    pub cooldown_default: Option<String>,
}

/// `{ rpm, tpm, rpd }`; an omitted one is unlimited.
#[derive(Debug, Default, Deserialize)]
pub struct RawLimit {
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub rpd: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawUpstream {
    pub base_url: Option<String>,
    pub connect_timeout: Option<String>,
    pub request_timeout: Option<String>,
    pub stream_idle_timeout: Option<String>,
    pub max_request_body: Option<String>,
    pub ca_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawClients {
    pub mode: Option<String>,
    pub tokens: Option<Vec<RawClientToken>>,
}

#[derive(Debug, Deserialize)]
pub struct RawClientToken {
    pub name: Option<String>,
    pub token: Option<SecretSource>,
    pub models: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawPool {
    pub keys: Option<Vec<RawKeyEntry>>,
    pub strategy: Option<String>,
    pub max_in_flight_per_key: Option<u32>,
    /// `default` and model names or globs.
    pub limits: Option<BTreeMap<String, RawLimit>>,
}

/// One entry of `pools.*.keys`, in any of SPEC 3's forms: `{ id, key, project }` (one key),
/// `{ env }` (one key, id derived) or `{ file }` (one key per line).
#[derive(Debug, Default, Deserialize)]
pub struct RawKeyEntry {
    pub id: Option<String>,
    pub key: Option<SecretSource>,
    pub project: Option<String>,
    pub env: Option<String>,
    pub file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawAdmin {
    pub listen: Option<String>,
    pub token: Option<SecretSource>,
}
