//! Turns the raw file into a `Config`: applies SPEC 3's defaults, resolves secrets, checks
//! every value and cross-field rule, and records each problem with its field path and line
//! instead of stopping at the first.

use super::locate::LineIndex;
use super::schema::{RawConfig, RawKeyEntry, RawPool};
use super::secret::{Secret, SecretSource};
use super::units::{parse_duration, parse_size};
use super::*;
use crate::quota::limits::{Limit, LimitTable};
use std::collections::{HashMap, HashSet};
use std::net::ToSocketAddrs;

pub struct Errors<'a> {
    index: &'a LineIndex,
    items: Vec<ConfigError>,
}

impl<'a> Errors<'a> {
    pub fn new(index: &'a LineIndex) -> Self {
        Errors { index, items: Vec::new() }
    }

    pub fn push(&mut self, field: &str, message: String) {
        self.items.push(ConfigError { line: self.index.line_of(field), field: field.to_string(), message });
    }

    /// The errors in file order (errors without a line first).
    pub fn into_vec(mut self) -> Vec<ConfigError> {
        self.items.sort_by_key(|e| e.line);
        self.items
    }

    /// Records a failed conversion and yields the fallback so validation can go on.
    fn check<T>(&mut self, field: &str, result: Result<T, String>, fallback: T) -> T {
        result.unwrap_or_else(|message| {
            self.push(field, message);
            fallback
        })
    }

    fn duration(&mut self, field: &str, value: Option<String>, default: Duration) -> Duration {
        match value {
            Some(v) => self.check(field, parse_duration(&v), default),
            None => default,
        }
    }
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9090";
pub const DEFAULT_BASE_URL: &str = "https://generativelanguage.googleapis.com";

pub fn validate(raw: RawConfig, base_dir: &Path, errors: &mut Errors) -> Option<Config> {
    let listen = parse_addr(errors, "listen", raw.listen.as_deref().unwrap_or(DEFAULT_LISTEN));
    let upstream = validate_upstream(raw.upstream.unwrap_or_default(), base_dir, errors);
    let shutdown_grace = errors.duration("shutdown_grace", raw.shutdown_grace, Duration::from_secs(30));
    let clients = validate_clients(raw.clients.unwrap_or_default(), listen, errors);
    let pools = validate_pools(raw.pools, base_dir, errors);
    let default_pool = choose_default_pool(&pools, errors);
    let admin = validate_admin(raw.admin.unwrap_or_default(), errors);
    let raw_queue = raw.queue.unwrap_or_default();
    let queue = QueueConfig {
        max_wait: errors.duration("queue.max_wait", raw_queue.max_wait, Duration::from_secs(10)),
        max_waiting: raw_queue.max_waiting.unwrap_or(1000),
    };
    let retry = validate_retry(raw.retry.unwrap_or_default(), errors);
    let raw_health = raw.health.unwrap_or_default();
    let health = HealthConfig {
        probe_interval: errors.duration("health.probe_interval", raw_health.probe_interval, Duration::from_secs(300)),
        cooldown_default: errors.duration(
            "health.cooldown_default",
            raw_health.cooldown_default,
            Duration::from_secs(60),
        ),
    };
    if health.probe_interval.is_zero() {
        errors.push("health.probe_interval", "must be longer than 0".into());
    }
    let cache = validate_cache(raw.cache.unwrap_or_default(), errors);
    Some(Config { listen, upstream, shutdown_grace, clients, pools, default_pool, admin, queue, retry, health, cache })
}

/// The methods cached by default (SPEC 3).
pub const CACHED_METHODS: [&str; 7] = [
    "generateContent",
    "streamGenerateContent",
    "countTokens",
    "embedContent",
    "batchEmbedContents",
    "chat.completions",
    "embeddings",
];

fn validate_cache(raw: super::schema::RawCache, errors: &mut Errors) -> CacheConfig {
    let size = |errors: &mut Errors, field: &str, value: Option<String>, default: u64| match value {
        Some(v) => errors.check(field, parse_size(&v), default),
        None => default,
    };
    let backend = match raw.backend.as_deref() {
        None | Some("memory") => CacheBackend::Memory,
        Some("redis") => CacheBackend::Redis,
        Some("none") => CacheBackend::None,
        Some(other) => {
            errors.push("cache.backend", format!("`{other}` is not one of: memory, redis, none"));
            CacheBackend::None
        }
    };
    let per_client = match raw.scope.as_deref() {
        None | Some("shared") => false,
        Some("client") => true,
        Some(other) => {
            errors.push("cache.scope", format!("`{other}` is not one of: shared, client"));
            false
        }
    };
    let raw_redis = raw.redis.unwrap_or_default();
    let url = match raw_redis.url {
        Some(source) => resolve(errors, "cache.redis.url", &source).unwrap_or_else(|| Secret::new("")),
        None => Secret::new("redis://127.0.0.1:6379/0"),
    };
    if backend == CacheBackend::Redis {
        let scheme_ok =
            ["redis://", "rediss://", "redis+unix://", "unix://"].iter().any(|s| url.expose().starts_with(s));
        if !scheme_ok {
            errors.push("cache.redis.url", "must start with redis:// or rediss://".into());
        } else if let Err(e) = redis::Client::open(url.expose()) {
            // The redis crate's message never repeats the URL, so no password leaks here.
            errors.push("cache.redis.url", format!("not a valid Redis URL: {e}"));
        }
    }
    let methods = raw.methods.unwrap_or_else(|| CACHED_METHODS.iter().map(|m| m.to_string()).collect());
    for (i, m) in methods.iter().enumerate() {
        if !CACHED_METHODS.contains(&m.as_str()) {
            errors.push(
                &format!("cache.methods[{i}]"),
                format!("`{m}` is not a cacheable method ({})", CACHED_METHODS.join(", ")),
            );
        }
    }
    CacheConfig {
        backend,
        ttl: errors.duration("cache.ttl", raw.ttl, Duration::from_secs(3600)),
        max_bytes: size(errors, "cache.max_bytes", raw.max_bytes, 256 << 20),
        max_entry_bytes: size(errors, "cache.max_entry_bytes", raw.max_entry_bytes, 8 << 20),
        front_max_bytes: size(errors, "cache.front_max_bytes", raw.front_max_bytes, 0),
        per_client,
        redis: RedisConfig {
            url,
            prefix: raw_redis.prefix.unwrap_or_else(|| "gemgate:v1:".into()),
            timeout: errors.duration("cache.redis.timeout", raw_redis.timeout, Duration::from_millis(50)),
        },
        methods,
    }
}

fn validate_admin(raw: super::schema::RawAdmin, errors: &mut Errors) -> AdminConfig {
    let listen = parse_addr(errors, "admin.listen", raw.listen.as_deref().unwrap_or(DEFAULT_ADMIN_LISTEN));
    let token = raw.token.and_then(|source| resolve(errors, "admin.token", &source));
    if token.is_none() && !listen.ip().is_loopback() {
        errors.push("admin.token", format!("a token is required when the admin listener ({listen}) is not loopback"));
    }
    AdminConfig { listen, token }
}

fn validate_retry(raw: super::schema::RawRetry, errors: &mut Errors) -> RetryConfig {
    let size = |errors: &mut Errors, field: &str, value: Option<String>, default: u64| match value {
        Some(v) => errors.check(field, parse_size(&v), default),
        None => default,
    };
    let attempts = raw.attempts.unwrap_or(3);
    if attempts == 0 {
        errors.push("retry.attempts", "must be at least 1 (the first attempt counts)".into());
    }
    let on = raw.on.unwrap_or_else(|| vec![429, 500, 503]);
    for (i, status) in on.iter().enumerate() {
        if !(400..600).contains(status) {
            errors.push(&format!("retry.on[{i}]"), format!("{status} is not an error status (400-599)"));
        }
    }
    RetryConfig {
        attempts: attempts.max(1),
        on,
        max_body: size(errors, "retry.max_body", raw.max_body, 20 << 20),
        buffer_budget: size(errors, "retry.buffer_budget", raw.buffer_budget, 512 << 20),
    }
}

fn validate_limits(
    field: &str,
    raw: Option<std::collections::BTreeMap<String, super::schema::RawLimit>>,
    errors: &mut Errors,
) -> LimitTable {
    let mut table = LimitTable::default();
    for (pattern, l) in raw.unwrap_or_default() {
        for (name, value) in [("rpm", l.rpm), ("tpm", l.tpm), ("rpd", l.rpd)] {
            if value == Some(0) {
                errors.push(
                    &format!("{field}.{pattern}.{name}"),
                    "0 would refuse every call: omit it for unlimited".into(),
                );
            }
        }
        let limit = Limit { rpm: l.rpm, tpm: l.tpm, rpd: l.rpd };
        if pattern == "default" {
            table.default = limit;
        } else {
            table.rules.push((pattern, limit));
        }
    }
    table
}

fn parse_addr(errors: &mut Errors, field: &str, text: &str) -> SocketAddr {
    let parsed = text
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| format!("`{text}` is not an address like 127.0.0.1:8080"));
    errors.check(field, parsed, SocketAddr::from(([127, 0, 0, 1], 0)))
}

fn validate_upstream(raw: super::schema::RawUpstream, base_dir: &Path, errors: &mut Errors) -> UpstreamConfig {
    let base_text = raw.base_url.unwrap_or_else(|| DEFAULT_BASE_URL.to_string());
    let base_url = errors.check("upstream.base_url", parse_base_url(&base_text), Uri::from_static(DEFAULT_BASE_URL));
    let max_request_body = match raw.max_request_body {
        Some(v) => errors.check("upstream.max_request_body", parse_size(&v), 32 << 20),
        None => 32 << 20,
    };
    let ca_file = raw.ca_file.map(|p| base_dir.join(p));
    if let Some(path) = &ca_file {
        if !path.is_file() {
            errors.push("upstream.ca_file", format!("{} is not a readable file", path.display()));
        }
    }
    UpstreamConfig {
        base_url,
        connect_timeout: errors.duration("upstream.connect_timeout", raw.connect_timeout, Duration::from_secs(5)),
        request_timeout: errors.duration("upstream.request_timeout", raw.request_timeout, Duration::from_secs(600)),
        stream_idle_timeout: errors.duration(
            "upstream.stream_idle_timeout",
            raw.stream_idle_timeout,
            Duration::from_secs(120),
        ),
        max_request_body,
        ca_file,
    }
}

fn parse_base_url(text: &str) -> Result<Uri, String> {
    let uri: Uri = text.parse().map_err(|e| format!("`{text}` is not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => return Err(format!("`{text}` must start with https:// (or http:// for a mock)")),
    }
    if uri.authority().is_none() {
        return Err(format!("`{text}` has no host"));
    }
    if uri.query().is_some() {
        return Err(format!("`{text}` must not have a query"));
    }
    Ok(uri)
}

fn validate_clients(raw: super::schema::RawClients, listen: SocketAddr, errors: &mut Errors) -> ClientsConfig {
    let mode = match raw.mode.as_deref() {
        None | Some("open") => ClientMode::Open,
        Some("tokens") => ClientMode::Tokens,
        Some(other) => {
            errors.push("clients.mode", format!("`{other}` is not one of: open, tokens"));
            ClientMode::Open
        }
    };
    if mode == ClientMode::Open && !listen.ip().is_loopback() {
        errors.push(
            "clients.mode",
            format!("mode open is refused on the non-loopback listen address {listen}: use mode tokens"),
        );
    }
    let mut tokens = Vec::new();
    let mut names = HashSet::new();
    let mut values = HashSet::new();
    for (i, t) in raw.tokens.unwrap_or_default().into_iter().enumerate() {
        let field = format!("clients.tokens[{i}]");
        let Some(name) = t.name.filter(|n| !n.is_empty()) else {
            errors.push(&format!("{field}.name"), "every client token needs a name".into());
            continue;
        };
        if !names.insert(name.clone()) {
            errors.push(&format!("{field}.name"), format!("client name `{name}` is used twice"));
        }
        let Some(source) = t.token else {
            errors.push(&format!("{field}.token"), "missing (give { env: NAME } or { file: PATH })".into());
            continue;
        };
        let Some(token) = resolve(errors, &format!("{field}.token"), &source) else { continue };
        if !values.insert(token.clone()) {
            errors.push(&format!("{field}.token"), "the same token is given to two clients".into());
        }
        tokens.push(ClientToken { name, token, models: t.models });
    }
    if mode == ClientMode::Tokens && tokens.is_empty() && errors.items.is_empty() {
        errors.push("clients.tokens", "mode tokens needs at least one token".into());
    }
    ClientsConfig { mode, tokens }
}

fn resolve(errors: &mut Errors, field: &str, source: &SecretSource) -> Option<Secret> {
    match source.resolve() {
        Ok(secret) => Some(secret),
        Err(message) => {
            errors.push(field, message);
            None
        }
    }
}

fn validate_pools(
    raw: Option<std::collections::BTreeMap<String, RawPool>>,
    base_dir: &Path,
    errors: &mut Errors,
) -> Vec<PoolConfig> {
    let raw = match raw {
        Some(pools) if !pools.is_empty() => pools,
        _ => return pools_from_env(errors),
    };
    let mut pools = Vec::new();
    for (name, pool) in raw {
        let field = format!("pools.{name}");
        let strategy = match pool.strategy.as_deref() {
            None | Some("round_robin") => Strategy::RoundRobin,
            Some("least_loaded") => Strategy::LeastLoaded,
            Some("random") => Strategy::Random,
            Some(other) => {
                errors.push(
                    &format!("{field}.strategy"),
                    format!("`{other}` is not one of: round_robin, least_loaded, random"),
                );
                Strategy::RoundRobin
            }
        };
        let max_in_flight_per_key = pool.max_in_flight_per_key.unwrap_or(64);
        if max_in_flight_per_key == 0 {
            errors.push(&format!("{field}.max_in_flight_per_key"), "must be at least 1".into());
        }
        let limits = validate_limits(&format!("{field}.limits"), pool.limits, errors);
        let entries = pool.keys.unwrap_or_default();
        let written = entries.len();
        let mut keys = Vec::new();
        for (i, entry) in entries.into_iter().enumerate() {
            keys.extend(key_entry(&format!("{field}.keys[{i}]"), entry, base_dir, errors));
        }
        if written == 0 {
            errors.push(&format!("{field}.keys"), format!("pool `{name}` has no keys"));
        }
        pools.push(PoolConfig { name, keys, strategy, max_in_flight_per_key: max_in_flight_per_key.max(1), limits });
    }
    check_unique_keys(&pools, errors);
    pools
}

fn pools_from_env(errors: &mut Errors) -> Vec<PoolConfig> {
    let list = std::env::var("GEMINI_API_KEYS").unwrap_or_default();
    let keys: Vec<KeyConfig> =
        list.split(',').map(str::trim).filter(|k| !k.is_empty()).map(|k| derived_key(Secret::new(k), None)).collect();
    if keys.is_empty() {
        errors.push(
            "pools",
            "no pools are configured and GEMINI_API_KEYS is not set: give keys one way or the other".into(),
        );
        return Vec::new();
    }
    let pools = vec![PoolConfig {
        name: "default".into(),
        keys,
        strategy: Strategy::RoundRobin,
        max_in_flight_per_key: 64,
        limits: LimitTable::default(),
    }];
    check_unique_keys(&pools, errors);
    pools
}

fn derived_key(secret: Secret, project: Option<String>) -> KeyConfig {
    KeyConfig { id: format!("key-{}", secret.fingerprint()), secret, project }
}

fn key_entry(field: &str, e: RawKeyEntry, base_dir: &Path, errors: &mut Errors) -> Vec<KeyConfig> {
    match (e.key, e.env, e.file) {
        (Some(source), None, None) => {
            let Some(secret) = resolve(errors, &format!("{field}.key"), &source) else { return vec![] };
            let mut key = derived_key(secret, e.project);
            if let Some(id) = e.id {
                key.id = id;
            }
            vec![key]
        }
        (None, Some(env), None) => {
            let Some(secret) = resolve(errors, &format!("{field}.env"), &SecretSource::Env(env)) else {
                return vec![];
            };
            let mut key = derived_key(secret, e.project);
            if let Some(id) = e.id {
                key.id = id;
            }
            vec![key]
        }
        (None, None, Some(file)) => {
            if e.id.is_some() || e.project.is_some() {
                errors.push(field, "a key file gives ids and projects per line (`id key project`), not here".into());
            }
            let path = base_dir.join(file);
            match read_key_file(&path) {
                Ok(keys) if keys.is_empty() => {
                    errors.push(&format!("{field}.file"), format!("{} holds no keys", path.display()));
                    vec![]
                }
                Ok(keys) => keys,
                Err(message) => {
                    errors.push(&format!("{field}.file"), message);
                    vec![]
                }
            }
        }
        (None, None, None) => {
            errors.push(field, "a key entry needs `key`, `env` or `file`".into());
            vec![]
        }
        _ => {
            errors.push(field, "give only one of `key`, `env` or `file`".into());
            vec![]
        }
    }
}

/// One key per line: `key`, `id key` or `id key project`; blank lines and `#` ignored.
pub fn read_key_file(path: &Path) -> Result<Vec<KeyConfig>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read key file {}: {e}", path.display()))?;
    let mut keys = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let parts: Vec<&str> = line.split_whitespace().collect();
        let key = match parts.as_slice() {
            [key] => derived_key(Secret::new(*key), None),
            [id, key] => KeyConfig { id: id.to_string(), secret: Secret::new(*key), project: None },
            [id, key, project] => {
                KeyConfig { id: id.to_string(), secret: Secret::new(*key), project: Some(project.to_string()) }
            }
            _ => return Err(format!("{}:{}: expected `key`, `id key` or `id key project`", path.display(), n + 1)),
        };
        keys.push(key);
    }
    Ok(keys)
}

/// Key ids name keys everywhere, so they must be unique across pools; a project (and so
/// its shared quota) belongs to one pool (SPEC 4).
fn check_unique_keys(pools: &[PoolConfig], errors: &mut Errors) {
    let mut ids: HashMap<&str, &str> = HashMap::new();
    let mut values: HashMap<&Secret, &str> = HashMap::new();
    let mut projects: HashMap<&str, &str> = HashMap::new();
    for pool in pools {
        let field = format!("pools.{}.keys", pool.name);
        for key in &pool.keys {
            if let Some(other) = ids.insert(&key.id, &pool.name) {
                errors.push(&field, format!("key id `{}` is used twice (also in pool `{other}`)", key.id));
            }
            if let Some(other) = values.insert(&key.secret, &key.id) {
                errors.push(&field, format!("key `{}` has the same value as key `{other}`", key.id));
            }
            if let Some(project) = &key.project {
                if let Some(other) = projects.insert(project, &pool.name) {
                    if other != pool.name {
                        errors.push(
                            &field,
                            format!("project `{project}` is declared in pools `{other}` and `{}`", pool.name),
                        );
                    }
                }
            }
        }
    }
}

fn choose_default_pool(pools: &[PoolConfig], errors: &mut Errors) -> String {
    if pools.iter().any(|p| p.name == "default") {
        return "default".into();
    }
    match pools {
        [only] => only.name.clone(),
        [] => String::new(),
        _ => {
            errors.push(
                "pools",
                "several pools and none named `default`: name one `default` (routing.default_pool comes with routing)"
                    .into(),
            );
            String::new()
        }
    }
}
