//! Real Redis servers for the tests of the Redis engine: a standalone server or a 3-master
//! Cluster, each on 127.0.0.1, free ports and a temporary directory of its own. No mocks: these
//! are Debian's `redis-server` and `redis-cli` (7.0), which `.ci/run` installs.
//!
//! Every server runs beside a watchdog that kills it once the test process is gone, so a test
//! binary that panics or whose statics are never dropped ([`shared_server`],
//! [`shared_cluster`]) leaves no server behind.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long a server may take to answer `PING` with `PONG` after it starts (or reloads its
/// append-only file after a restart).
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// One `redis-server` process on 127.0.0.1.
pub struct RedisServer {
    port: u16,
    dir: tempfile::TempDir,
    /// The settings it was started with, besides the port and the directory.
    settings: Vec<(String, String)>,
    child: Option<Child>,
    watchdog: Option<Child>,
}

impl RedisServer {
    /// Starts a server with `settings` (redis.conf directives, e.g. `("appendfsync",
    /// "always")`) on a free port, in a fresh directory. Without settings it keeps nothing on
    /// disk (`save ""`, `appendonly no`); a setting given here overrides those.
    pub fn start(settings: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("a directory for redis-server");
        let settings = settings.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let mut server =
            RedisServer { port: free_port(false), dir, settings, child: None, watchdog: None };
        server.spawn();
        server
    }

    /// The server's URL, `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's working directory (its append-only file, its log `redis.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Kills the server with SIGKILL (a crash: nothing flushed that was not already) and waits
    /// for it to be gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(mut dog) = self.watchdog.take() {
            let _ = dog.kill();
            let _ = dog.wait();
        }
    }

    /// Starts the server again on the same port and directory (after [`RedisServer::kill`]),
    /// and waits until it answers (its append-only file, if any, loaded).
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "the server is still running: kill it first");
        self.spawn();
    }

    /// Starts the server again (after [`RedisServer::kill`]) without waiting for it to answer:
    /// it may still be loading its data (`LOADING`). [`RedisServer::wait_until_ready`] waits.
    pub fn start_again_no_wait(&mut self) {
        assert!(self.child.is_none(), "the server is still running: kill it first");
        self.spawn_process();
    }

    /// [`RedisServer::kill`] then [`RedisServer::start_again`]: a crash and a restart.
    pub fn restart(&mut self) {
        self.kill();
        self.start_again();
    }

    /// Runs `redis-cli` against this server with `args`; its standard output, trimmed.
    pub fn cli(&self, args: &[&str]) -> String {
        cli(self.port, args)
    }

    fn spawn(&mut self) {
        self.spawn_process();
        self.wait_until_ready();
    }

    fn spawn_process(&mut self) {
        let mut cmd = Command::new("redis-server");
        cmd.arg("--port").arg(self.port.to_string());
        cmd.args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]);
        cmd.arg("--dir").arg(self.dir.path());
        cmd.arg("--logfile").arg(self.log_path());
        for (k, v) in &self.settings {
            cmd.arg(format!("--{k}")).arg(v);
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot run redis-server ({e}): install it (`apt-get install redis-server`; \
                 .ci/run does)"
            )
        });
        self.watchdog = Some(watchdog(child.id()));
        self.child = Some(child);
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    /// Waits until the server answers `PING` with `PONG` (its data loaded).
    pub fn wait_until_ready(&mut self) {
        let start = Instant::now();
        loop {
            if ping(self.port) {
                return;
            }
            if let Some(child) = &mut self.child
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("redis-server exited ({status}); its log:\n{}", self.log());
            }
            assert!(
                start.elapsed() < START_TIMEOUT,
                "redis-server on port {} did not answer PING within {START_TIMEOUT:?}; log:\n{}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A Redis Cluster of three masters (no replicas), slots spread by `redis-cli --cluster create`.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts three cluster-enabled servers and joins them into one Cluster; returns once every
    /// node says `cluster_state:ok`.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// [`RedisCluster::start`] with more settings for every node (they override the
    /// defaults, `cluster-node-timeout` 5000 among them).
    pub fn start_with(extra: &[(&str, &str)]) -> Self {
        let nodes: Vec<RedisServer> = (0..3)
            .map(|_| {
                let dir = tempfile::tempdir().expect("a directory for redis-server");
                let conf = dir.path().join("nodes.conf");
                let settings = vec![
                    ("cluster-enabled".to_owned(), "yes".to_owned()),
                    ("cluster-config-file".to_owned(), conf.to_string_lossy().into_owned()),
                    ("cluster-node-timeout".to_owned(), "5000".to_owned()),
                ];
                let mut settings = settings;
                settings.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
                let mut server = RedisServer {
                    port: free_port(true),
                    dir,
                    settings,
                    child: None,
                    watchdog: None,
                };
                server.spawn();
                server
            })
            .collect();
        let addrs: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("run redis-cli (apt-get install redis-tools)");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let cluster = RedisCluster { nodes };
        let start = Instant::now();
        while !cluster
            .nodes
            .iter()
            .all(|n| n.cli(&["cluster", "info"]).contains("cluster_state:ok"))
        {
            assert!(start.elapsed() < START_TIMEOUT, "the cluster did not reach cluster_state:ok");
            std::thread::sleep(Duration::from_millis(50));
        }
        cluster
    }

    /// The nodes' URLs, `redis://127.0.0.1:PORT` each.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// The nodes themselves (to restart one, or read its log).
    pub fn nodes(&mut self) -> &mut [RedisServer] {
        &mut self.nodes
    }
}

/// Whether `redis-server` and `redis-cli` can be run here. Without them a Redis test returns
/// early, saying so on stderr, as the lighttpd test does; with `SESSIONDB_REQUIRE_REDIS=1` (set
/// by `.ci/run`, which installs them) their absence fails the test instead.
pub fn redis_available() -> bool {
    let found = ["redis-server", "redis-cli"].iter().all(|bin| {
        Command::new(bin)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    if !found {
        assert!(
            std::env::var_os("SESSIONDB_REQUIRE_REDIS").is_none(),
            "SESSIONDB_REQUIRE_REDIS is set but redis-server or redis-cli cannot be run: \
             apt-get install redis-server redis-tools"
        );
        eprintln!("skipped: redis-server or redis-cli not found (apt-get install redis-server)");
    }
    found
}

/// One standalone server for the whole test binary (no persistence), started on first use.
/// Tests keep their keys apart by prefix.
pub fn shared_server() -> &'static RedisServer {
    static SERVER: OnceLock<RedisServer> = OnceLock::new();
    SERVER.get_or_init(|| RedisServer::start(&[]))
}

/// One 3-master Cluster for the whole test binary, started on first use.
pub fn shared_cluster() -> &'static RedisCluster {
    static CLUSTER: OnceLock<RedisCluster> = OnceLock::new();
    CLUSTER.get_or_init(RedisCluster::start)
}

/// Runs `redis-cli -p port args...`; its standard output, trimmed.
pub fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .expect("run redis-cli (apt-get install redis-tools)");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Whether a server answers `PING` with `PONG` on `port` (not `LOADING`, not refused).
fn ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    matches!(stream.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG"))
}

/// A port free on 127.0.0.1; with `bus`, one whose cluster bus port (port + 10000) is free too.
fn free_port(bus: bool) -> u16 {
    for _ in 0..1000 {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
        let port = listener.local_addr().expect("its address").port();
        if !bus {
            return port;
        }
        if port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
    panic!("no free port pair for a cluster node");
}

/// A process that kills `pid` (with SIGKILL) once this test process is gone.
fn watchdog(pid: u32) -> Child {
    let me = std::process::id();
    Command::new("sh")
        .arg("-c")
        .arg(format!(
            "while kill -0 {me} 2>/dev/null && kill -0 {pid} 2>/dev/null; do sleep 0.2; done; \
             kill -9 {pid} 2>/dev/null"
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start a watchdog shell")
}
