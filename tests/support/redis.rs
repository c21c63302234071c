//! A real redis-server for the Redis tests: each test starts its own on a free loopback
//! port, with no persistence and a throwaway directory, and can stop and restart it (same
//! port) to play an outage. The binary comes from PATH: `scripts/test` installs Debian's
//! redis-server when it is missing.

use std::io::ErrorKind;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const NOT_FOUND: &str = "redis-server not found: run scripts/test (it installs it from Debian's packages) \
                         or apt-get install redis-server";
/// How long a starting server may take to answer PING.
const READY_WITHIN: Duration = Duration::from_secs(5);

pub struct RedisServer {
    pub port: u16,
    /// `start_tls`: the TLS port (a self-signed certificate; `port` stays plain).
    pub tls_port: Option<u16>,
    child: Option<Child>,
    dir: PathBuf,
}

impl RedisServer {
    /// A fresh, empty redis-server on 127.0.0.1, answering PING.
    pub fn start() -> RedisServer {
        RedisServer::launch(false)
    }

    /// Like `start`, also serving TLS on `tls_port` with a self-signed certificate.
    pub fn start_tls() -> RedisServer {
        RedisServer::launch(true)
    }

    fn launch(tls: bool) -> RedisServer {
        // A free port can be taken between probing and binding: try a few.
        let mut last_error = String::new();
        for _ in 0..5 {
            let port = free_port();
            let dir = std::env::temp_dir().join(format!("gemgate-redis-{}-{port}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
            let tls_port = tls.then(|| {
                let certified =
                    rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("a self-signed certificate");
                std::fs::write(dir.join("tls.crt"), certified.cert.pem()).expect("writing tls.crt");
                std::fs::write(dir.join("tls.key"), certified.signing_key.serialize_pem()).expect("writing tls.key");
                free_port()
            });
            let mut server = RedisServer { port, tls_port, child: None, dir };
            match server.spawn() {
                Ok(()) => return server,
                Err(error) => last_error = error,
            }
        }
        panic!("redis-server did not start: {last_error}");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// `start_tls`: the TLS URL; clients must trust `tls_cert()` (e.g. `SSL_CERT_FILE`).
    pub fn tls_url(&self) -> String {
        format!("rediss://localhost:{}/0", self.tls_port.expect("a server from start_tls"))
    }

    /// `start_tls`: the server's self-signed certificate (PEM), for `localhost`.
    pub fn tls_cert(&self) -> PathBuf {
        self.dir.join("tls.crt")
    }

    /// Kills the server (an outage: clients see their connections drop). Idempotent.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server if it runs, then starts a fresh, empty one on the same port.
    pub fn restart(&mut self) {
        self.stop();
        // The port was ours a moment ago; redis-server binds with SO_REUSEADDR, but give a
        // slow machine a few tries all the same.
        let mut last_error = String::new();
        for _ in 0..10 {
            match self.spawn() {
                Ok(()) => return,
                Err(error) => last_error = error,
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("redis-server did not restart on port {}: {last_error}", self.port);
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// A plain (blocking) connection, for checking or planting what is stored.
    pub fn connection(&self) -> redis::Connection {
        let client = redis::Client::open(self.url()).expect("a valid redis url");
        client
            .get_connection_with_timeout(Duration::from_secs(2))
            .unwrap_or_else(|e| panic!("connecting to the test redis-server on port {}: {e}", self.port))
    }

    /// Runs one command, e.g. `query::<i64>(&["PTTL", key])`.
    pub fn query<T: redis::FromRedisValue>(&self, args: &[&str]) -> T {
        let (name, rest) = args.split_first().expect("a command");
        let mut cmd = redis::cmd(name);
        for arg in rest {
            cmd.arg(*arg);
        }
        cmd.query(&mut self.connection()).unwrap_or_else(|e| panic!("redis {name}: {e}"))
    }

    /// Every key whose name starts with `prefix`, sorted.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        let mut keys: Vec<String> = self.query(&["KEYS", &format!("{prefix}*")]);
        keys.sort();
        keys
    }

    /// Empties the server.
    pub fn flushall(&self) {
        let _: () = self.query(&["FLUSHALL"]);
    }

    fn spawn(&mut self) -> Result<(), String> {
        let log = self.dir.join("redis.log");
        let port = self.port.to_string();
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .arg("--logfile")
            .arg(&log);
        if let Some(tls_port) = self.tls_port {
            command
                .args(["--tls-port", &tls_port.to_string(), "--tls-auth-clients", "no"])
                .arg("--tls-cert-file")
                .arg(self.dir.join("tls.crt"))
                .arg("--tls-key-file")
                .arg(self.dir.join("tls.key"));
        }
        command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        let mut child = command.spawn().unwrap_or_else(|e| match e.kind() {
            ErrorKind::NotFound => panic!("{NOT_FOUND}"),
            _ => panic!("running redis-server: {e}"),
        });
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                return Err(format!("redis-server exited ({status}) on port {port}:\n{log}"));
            }
            if ping(self.port) {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("redis-server did not answer PING on port {port} within {READY_WITHIN:?}"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
    listener.local_addr().expect("its address").port()
}

fn ping(port: u16) -> bool {
    let Ok(client) = redis::Client::open(format!("redis://127.0.0.1:{port}/0")) else { return false };
    let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_millis(200)) else { return false };
    redis::cmd("PING").query::<String>(&mut conn).is_ok_and(|pong| pong == "PONG")
}
