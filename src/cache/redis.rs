//! The Redis backend (SPEC 5, for a fleet): answers live in Redis under `prefix + key.hex()`
//! as `CachedAnswer::encode` bytes, with their time to live set in Redis (`SET .. PX`),
//! optionally behind a memory tier (`front_max_bytes`) that is read first and filled on
//! every Redis hit and store.
//!
//! Redis is never allowed to fail or stall a request (SPEC 5): every call is bounded by
//! `timeout` and every fault comes back as a `CacheError` for the caller to count and
//! bypass. The connection is made lazily, on first use, by a background task that keeps
//! trying (with a pause) while Redis is down, so a gemgate started before its Redis works
//! once Redis is there; after that the redis crate's `ConnectionManager` reconnects by
//! itself when the connection drops. A connection that only ever fails (a peer gone
//! without closing the socket never errors, it only times out) is replaced after
//! `REPLACE_AFTER_FAILURES` failed calls in a row. `rediss://` URLs speak TLS, checking
//! the server's certificate against the system's trust roots (`SSL_CERT_FILE` is honoured).
//!
//! Values are never logged; the URL (it may hold a password) is never logged either.

use super::memory::MemoryCache;
use super::{Cache, CacheError, CacheKey, CachedAnswer};
use bytes::Bytes;
use futures_util::future::BoxFuture;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::watch;

/// Pause between two connection attempts of the background connector (each attempt is a
/// few quick retries inside the redis crate).
const RECONNECT_PAUSE: Duration = Duration::from_millis(250);
/// The redis crate's own retries, for the first connection and for its reconnections:
/// delays from `RETRY_MIN_DELAY`, doubling, at most `RETRY_MAX_DELAY`.
const CONNECT_RETRIES: usize = 4;
const RETRY_MIN_DELAY: Duration = Duration::from_millis(50);
const RETRY_MAX_DELAY: Duration = Duration::from_secs(1);
/// The shortest connect and response timeouts inside the redis crate (they bound
/// background work; requests are bounded by `timeout` on our side).
const MIN_CONNECTION_PATIENCE: Duration = Duration::from_secs(1);
/// Failed calls in a row after which the connection is dropped and made anew.
const REPLACE_AFTER_FAILURES: u32 = 64;

pub struct RedisCache {
    link: Arc<Link>,
    prefix: String,
    timeout: Duration,
    ttl_ms: u64,
    front: Option<MemoryCache>,
}

/// The connection to Redis, shared with the background connector (which holds it weakly,
/// so dropping the `RedisCache`, e.g. on a reload, ends the connector).
struct Link {
    client: redis::Client,
    config: ConnectionManagerConfig,
    /// `None` until the connector has connected (and again after a replacement).
    manager: watch::Sender<Option<ConnectionManager>>,
    /// A connector task is running.
    connecting: AtomicBool,
    /// Calls that failed (timeout or backend error) since the last one that worked.
    failures: AtomicU32,
}

impl RedisCache {
    /// Parses `url` now (an invalid URL is an error, e.g. for `gemgate check`) but
    /// connects only on first use. `timeout` bounds each call (connecting included);
    /// `ttl` is set on every stored answer in Redis; `front` is the memory tier, if any.
    pub fn new(
        url: &str,
        prefix: &str,
        timeout: Duration,
        ttl: Duration,
        front: Option<MemoryCache>,
    ) -> Result<RedisCache, CacheError> {
        // The redis crate's parse errors never repeat the URL, so no password leaks here.
        let client = redis::Client::open(url).map_err(|e| CacheError::Backend(format!("invalid redis url: {e}")))?;
        if let redis::ConnectionAddr::TcpTls { insecure: true, .. } = client.get_connection_info().addr() {
            // This build verifies certificates: say so now rather than fail every connect.
            return Err(CacheError::Backend(
                "invalid redis url: `#insecure` (no certificate check) is not supported".into(),
            ));
        }
        let patience = timeout.max(MIN_CONNECTION_PATIENCE);
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(patience))
            .set_response_timeout(Some(patience))
            .set_number_of_retries(CONNECT_RETRIES)
            .set_min_delay(RETRY_MIN_DELAY)
            .set_max_delay(RETRY_MAX_DELAY);
        let link = Arc::new(Link {
            client,
            config,
            manager: watch::Sender::new(None),
            connecting: AtomicBool::new(false),
            failures: AtomicU32::new(0),
        });
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        Ok(RedisCache { link, prefix: prefix.to_string(), timeout, ttl_ms, front })
    }

    /// The Redis key an answer is stored under: the prefix, then the key in hex.
    pub fn redis_key(&self, key: &CacheKey) -> String {
        format!("{}{}", self.prefix, key.hex())
    }

    /// The memory tier in front of Redis, if any.
    pub fn front(&self) -> Option<&MemoryCache> {
        self.front.as_ref()
    }

    /// Runs one command within `timeout` (waiting for the connection included).
    async fn call<T: redis::FromRedisValue>(&self, cmd: redis::Cmd) -> Result<T, CacheError> {
        let attempt = async {
            let mut manager = self.link.manager().await?;
            cmd.query_async::<T>(&mut manager).await.map_err(|e| {
                if e.is_timeout() {
                    CacheError::Timeout(self.timeout)
                } else {
                    CacheError::Backend(e.to_string())
                }
            })
        };
        let result = match tokio::time::timeout(self.timeout, attempt).await {
            Ok(result) => result,
            Err(_) => Err(CacheError::Timeout(self.timeout)),
        };
        self.link.record(&result);
        result
    }
}

impl std::fmt::Debug for RedisCache {
    // By hand: the client holds the URL's password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCache")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("ttl_ms", &self.ttl_ms)
            .field("front", &self.front.is_some())
            .finish_non_exhaustive()
    }
}

impl Cache for RedisCache {
    fn get<'a>(&'a self, key: &'a CacheKey) -> BoxFuture<'a, Result<Option<Arc<CachedAnswer>>, CacheError>> {
        Box::pin(async move {
            if let Some(hit) = self.front.as_ref().and_then(|front| front.lookup(key)) {
                return Ok(Some(hit));
            }
            let mut cmd = redis::cmd("GET");
            cmd.arg(self.redis_key(key));
            let Some(value) = self.call::<Option<Vec<u8>>>(cmd).await? else {
                return Ok(None);
            };
            let answer = Arc::new(CachedAnswer::decode(Bytes::from(value)).inspect_err(|e| {
                tracing::debug!(key = %key.hex(), error = %e, "redis cache: stored value does not decode");
            })?);
            if let Some(front) = &self.front {
                front.store(*key, answer.clone());
            }
            Ok(Some(answer))
        })
    }

    fn put<'a>(&'a self, key: &'a CacheKey, answer: Arc<CachedAnswer>) -> BoxFuture<'a, Result<(), CacheError>> {
        Box::pin(async move {
            let value = answer.encode();
            if let Some(front) = &self.front {
                front.store(*key, answer);
            }
            let mut cmd = redis::cmd("SET");
            cmd.arg(self.redis_key(key)).arg(value.as_ref()).arg("PX").arg(self.ttl_ms);
            self.call::<()>(cmd).await
        })
    }
}

impl Link {
    /// The connection, once there is one: starts the connector if none is running and
    /// waits for it (the caller bounds the wait).
    async fn manager(self: &Arc<Self>) -> Result<ConnectionManager, CacheError> {
        let current = self.manager.borrow().clone();
        if let Some(manager) = current {
            return Ok(manager);
        }
        let mut ready = self.manager.subscribe();
        self.connect();
        let found = ready
            .wait_for(Option::is_some)
            .await
            .map_err(|_| CacheError::Backend("redis connection closed".into()))?
            .clone();
        found.ok_or_else(|| CacheError::Backend("redis not connected".into()))
    }

    /// Starts the background connector unless one is running (or no Tokio runtime is).
    fn connect(self: &Arc<Self>) {
        if self.connecting.swap(true, Ordering::AcqRel) {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(connect_loop(Arc::downgrade(self)));
            }
            Err(_) => self.connecting.store(false, Ordering::Release),
        }
    }

    /// Counts a failed call; too many in a row replace the connection.
    fn record<T>(self: &Arc<Self>, result: &Result<T, CacheError>) {
        match result {
            // A bad value came through a working connection.
            Ok(_) | Err(CacheError::Corrupt(_)) => self.failures.store(0, Ordering::Relaxed),
            Err(error) => {
                let failed = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::debug!(%error, failed, "redis cache call failed");
                if failed >= REPLACE_AFTER_FAILURES && self.manager.borrow().is_some() {
                    self.failures.store(0, Ordering::Relaxed);
                    tracing::debug!(failed, "redis cache: replacing the connection after failures in a row");
                    self.manager.send_replace(None);
                    self.connect();
                }
            }
        }
    }
}

/// Connects until it works (or the cache is gone), then hands the connection over.
async fn connect_loop(link: Weak<Link>) {
    /// However the connector ends (even by a panic), the next call may start another.
    struct Done(Weak<Link>);
    impl Drop for Done {
        fn drop(&mut self) {
            if let Some(link) = self.0.upgrade() {
                link.connecting.store(false, Ordering::Release);
            }
        }
    }
    let _done = Done(link.clone());
    loop {
        let Some(strong) = link.upgrade() else { return };
        let (client, config) = (strong.client.clone(), strong.config.clone());
        drop(strong);
        match ConnectionManager::new_with_config(client, config).await {
            Ok(manager) => {
                if let Some(strong) = link.upgrade() {
                    strong.failures.store(0, Ordering::Relaxed);
                    strong.manager.send_replace(Some(manager));
                    tracing::debug!("redis cache connected");
                }
                return;
            }
            Err(error) => tracing::debug!(%error, "redis cache: cannot connect yet, retrying"),
        }
        tokio::time::sleep(RECONNECT_PAUSE).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn cache(url: &str, front: Option<MemoryCache>) -> Result<RedisCache, CacheError> {
        RedisCache::new(url, "gemgate:v1:", Duration::from_millis(50), Duration::from_secs(3600), front)
    }

    fn answer() -> Arc<CachedAnswer> {
        Arc::new(CachedAnswer {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            chunks: vec![Bytes::from_static(b"{\"ok\":true}")],
        })
    }

    #[test]
    fn parses_urls_without_connecting() {
        for url in [
            "redis://127.0.0.1:6379/0",
            "redis://127.0.0.1",
            "redis://:pw@redis.internal:6380/3",
            "redis://user:pw@localhost/1?protocol=resp3",
            "rediss://redis.example:6380/0",
            "unix:///run/redis/redis.sock",
        ] {
            assert!(cache(url, None).is_ok(), "{url} is a valid redis url");
        }
        for url in [
            "",
            "127.0.0.1:6379",
            "http://127.0.0.1:6379",
            "redis://127.0.0.1:6379/zero",
            "redis://0.0.0.0:6379",
            "rediss://127.0.0.1:6379/#unchecked",
            "rediss://127.0.0.1:6379/#insecure",
        ] {
            let error = cache(url, None).expect_err(url);
            assert!(matches!(error, CacheError::Backend(_)), "{url}: {error}");
            assert!(error.to_string().contains("invalid redis url"), "{url}: {error}");
        }
        let error = cache("redis://user:hunter2@127.0.0.1:6379/x", None).expect_err("a bad db");
        assert!(!error.to_string().contains("hunter2"), "the error repeats no password: {error}");
        let debug = format!("{:?}", cache("redis://:hunter2@127.0.0.1/0", None).unwrap());
        assert!(!debug.contains("hunter2"), "{debug}");
    }

    #[test]
    fn keys_are_prefix_then_hex() {
        let cache = cache("redis://127.0.0.1/0", None).unwrap();
        let key = CacheKey([0xab; 32]);
        assert_eq!(cache.redis_key(&key), format!("gemgate:v1:{}", "ab".repeat(32)));
        let other =
            RedisCache::new("redis://127.0.0.1/0", "", Duration::from_millis(50), Duration::ZERO, None).unwrap();
        assert_eq!(other.redis_key(&key), key.hex());
        assert_eq!(other.ttl_ms, 1, "a zero ttl still expires (PX needs a positive value)");
        assert_eq!(cache.ttl_ms, 3_600_000);
    }

    /// A port nothing listens on.
    fn closed_port() -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    }

    #[tokio::test]
    async fn redis_down_fails_fast_and_the_front_tier_still_serves() {
        let url = format!("redis://127.0.0.1:{}/0", closed_port());
        let front = MemoryCache::new(1 << 20, Duration::from_secs(60));
        let cache = cache(&url, Some(front)).unwrap();
        let key = CacheKey([1; 32]);
        for _ in 0..3 {
            let started = Instant::now();
            let error = cache.get(&key).await.expect_err("no redis: an error, not a miss");
            assert!(matches!(error, CacheError::Timeout(_) | CacheError::Backend(_)), "{error}");
            assert!(started.elapsed() < Duration::from_millis(500), "bounded by the timeout: {:?}", started.elapsed());
        }
        let started = Instant::now();
        assert!(cache.put(&key, answer()).await.is_err(), "the store in redis failed");
        assert!(started.elapsed() < Duration::from_millis(500));
        let hit = cache.get(&key).await.expect("the front tier answers").expect("a hit");
        assert_eq!(*hit, *answer());
        assert!(cache.get(&CacheKey([2; 32])).await.is_err(), "other keys still go to redis");
    }

    #[tokio::test]
    async fn many_failures_in_a_row_do_not_panic_or_leak_tasks() {
        let url = format!("redis://127.0.0.1:{}/0", closed_port());
        let cache = RedisCache::new(&url, "p:", Duration::from_millis(1), Duration::from_secs(1), None).unwrap();
        for i in 0..(REPLACE_AFTER_FAILURES + 5) {
            assert!(cache.get(&CacheKey([i as u8; 32])).await.is_err());
        }
        assert!(cache.link.connecting.load(Ordering::Acquire), "the connector keeps trying");
        let link = Arc::downgrade(&cache.link);
        drop(cache);
        assert!(link.upgrade().is_none(), "the connector holds the link weakly");
    }
}
