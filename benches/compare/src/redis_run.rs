//! The Redis workloads (`redis-read`, `redis-web`; REDIS.md): one `redis-server` that the
//! harness starts itself (127.0.0.1, a free port, a directory in the run's temp dir,
//! `appendonly yes`, `appendfsync` from `--redis-fsync`), the same for every Redis system of
//! the run. Before each system's cell the data is flushed, that system's sessions preloaded and
//! the append-only file rewritten (so that every cell starts from a compact file; automatic
//! rewrites are off, so none lands inside a cell).
//!
//! For each cell it also counts the commands the server ran (`INFO commandstats`, the sum of
//! `calls` after the cell minus before, over the requests; the commands a script runs are
//! counted there too) and, in a short untimed probe after the cell (one thread, `PROBE`
//! requests, `MONITOR` on), the commands the clients sent, a script call (`EVALSHA`) counting
//! as one: the round trips per request, if nothing is pipelined.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::SmallRng;

use crate::hist::Hist;
use crate::keys::{Keys, write_keys};
use crate::opts::Opts;
use crate::redis_sys::{self, connect, preload_data};
use crate::systems::{Failure, Kind, R, System};
use crate::{Cell, DATA, report, run_cell};

/// Requests of the untimed `MONITOR` probe after each cell.
pub const PROBE: u64 = 1000;
/// Commands that are not a request's: the harness's own and connection setup.
const NOT_REQUESTS: [&str; 7] = ["info", "hello", "client|", "select", "quit", "echo", "monitor"];

/// What the server counted for one cell.
#[derive(Clone, Debug, Default)]
pub struct RedisStats {
    /// Commands the server ran per request (`INFO commandstats`; a script's commands included).
    pub commands: f64,
    /// The same, by command: `get 1.00, set 0.30`.
    pub mix: String,
    /// The server's CPU time over the cell, ms.
    pub server_cpu_ms: u64,
    /// Commands the clients sent per request (`MONITOR`, `EVALSHA` = 1), from the probe.
    pub sent: f64,
    /// The same, by command.
    pub sent_mix: String,
}

/// The `redis-server` of a run, killed when dropped (and by a watchdog if the harness dies).
pub struct Server {
    child: Child,
    watchdog: Child,
    port: u16,
    dir: PathBuf,
    /// `redis_version` and the settings, for the report.
    pub about: String,
}

impl Server {
    pub fn start(dir: &Path, fsync: &str) -> R<Server> {
        let version = Command::new("redis-server").arg("--version").output().map_err(|e| {
            format!(
                "cannot run redis-server ({e}): the Redis workloads need it (apt-get install \
                 redis-server); the other workloads do not"
            )
        })?;
        let version = String::from_utf8_lossy(&version.stdout);
        let version = version
            .split_whitespace()
            .find_map(|f| f.strip_prefix("v="))
            .map_or_else(|| version.trim().to_string(), |v| format!("redis-server {v}"));
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let dir = dir.join("redis");
        std::fs::create_dir_all(&dir)?;
        let settings: [(&str, &str); 6] = [
            ("bind", "127.0.0.1"),
            ("save", ""),
            ("appendonly", "yes"),
            ("appendfsync", fsync),
            ("auto-aof-rewrite-percentage", "0"),
            ("logfile", "redis.log"),
        ];
        let mut cmd = Command::new("redis-server");
        cmd.arg("--port").arg(port.to_string()).arg("--dir").arg(&dir);
        for (k, v) in settings {
            cmd.arg(format!("--{k}")).arg(v);
        }
        let child = cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn()?;
        let watchdog = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "while kill -0 {me} 2>/dev/null && kill -0 {pid} 2>/dev/null; do sleep 0.5; done; \
                 kill -9 {pid} 2>/dev/null",
                me = std::process::id(),
                pid = child.id()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let shown: Vec<String> = settings[..5]
            .iter()
            .map(|(k, v)| format!("{k} {}", if v.is_empty() { "\"\"" } else { v }))
            .collect();
        let about = format!("{version}; {}", shown.join(", "));
        let mut server = Server { child, watchdog, port, dir, about };
        server.wait_ready()?;
        Ok(server)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn wait_ready(&mut self) -> R<()> {
        let t = Instant::now();
        loop {
            if let Ok(mut c) = connect(&self.url())
                && redis::cmd("PING").query::<String>(&mut c).is_ok_and(|p| p == "PONG")
            {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                let log = std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default();
                return Err(format!("redis-server exited ({status}); its log:\n{log}").into());
            }
            if t.elapsed() > Duration::from_secs(20) {
                return Err(
                    format!("redis-server on port {} did not answer PING", self.port).into()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's CPU time so far, ms (`/proc`, 100 ticks a second).
    pub fn cpu_ms(&self) -> u64 {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())) else {
            return 0;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else { return 0 };
        let f: Vec<u64> =
            rest.split_whitespace().skip(11).take(2).filter_map(|x| x.parse().ok()).collect();
        f.iter().sum::<u64>() * 10
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = self.watchdog.kill();
        let _ = self.watchdog.wait();
    }
}

/// `INFO commandstats`: calls by command.
pub fn commandstats(c: &mut redis::Connection) -> R<BTreeMap<String, u64>> {
    parse_commandstats(&redis::cmd("INFO").arg("commandstats").query::<String>(c)?)
}

/// `cmdstat_get:calls=3,usec=...` lines: calls by command (`get`, `client|setinfo`).
fn parse_commandstats(text: &str) -> R<BTreeMap<String, u64>> {
    let mut m = BTreeMap::new();
    for l in text.lines() {
        let Some((name, rest)) = l.strip_prefix("cmdstat_").and_then(|l| l.split_once(':')) else {
            continue;
        };
        let calls = rest.split(',').find_map(|f| f.strip_prefix("calls="));
        m.insert(name.to_string(), calls.ok_or("commandstats: no calls=")?.trim().parse()?);
    }
    Ok(m)
}

/// The command of a `MONITOR` line, lower case, if a client sent it:
/// `1733150000.123456 [0 127.0.0.1:5555] "GET" "key"` → `get`; a script's own commands
/// (`[0 lua] ...`) → `None`.
fn monitor_command(line: &str) -> Option<String> {
    let (origin, rest) = line.split_once("] \"")?;
    if origin.ends_with(" lua") {
        return None;
    }
    Some(rest.split('"').next()?.to_lowercase())
}

fn is_request_command(name: &str) -> bool {
    !NOT_REQUESTS.iter().any(|n| if n.ends_with('|') { name.starts_with(n) } else { name == *n })
}

/// Per request: the commands counted, and the same by command (most first).
fn per_request(counts: &BTreeMap<String, u64>, requests: u64) -> (f64, String) {
    let n = requests.max(1) as f64;
    let mut v: Vec<(&String, &u64)> =
        counts.iter().filter(|(k, c)| **c > 0 && is_request_command(k)).collect();
    v.sort_by(|a, b| b.1.cmp(a.1));
    let total: u64 = v.iter().map(|(_, c)| **c).sum();
    let mix: Vec<String> = v.iter().map(|(k, c)| format!("{k} {:.2}", **c as f64 / n)).collect();
    (total as f64 / n, mix.join(", "))
}

fn diff(a: &BTreeMap<String, u64>, b: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    b.iter().map(|(k, v)| (k.clone(), v - a.get(k).copied().unwrap_or(0).min(*v))).collect()
}

/// Waits until no append-only file rewrite is running or scheduled.
fn wait_rewrite(c: &mut redis::Connection) -> R<()> {
    let t = Instant::now();
    loop {
        let info: String = redis::cmd("INFO").arg("persistence").query(c)?;
        let busy = |f: &str| info.lines().any(|l| l.trim() == format!("{f}:1"));
        if !busy("aof_rewrite_in_progress") && !busy("aof_rewrite_scheduled") {
            return Ok(());
        }
        if t.elapsed() > Duration::from_secs(300) {
            return Err("redis-server: the append-only file rewrite did not end in 300 s".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Flushes the server, opens `kind`, creates `n` sessions (32 threads) and writes their keys
/// to `keys`, then rewrites the append-only file; returns the opened system (for the probe).
fn preload(
    c: &mut redis::Connection,
    kind: Kind,
    url: &str,
    n: usize,
    keys: &Path,
) -> R<Box<dyn System>> {
    let t = Instant::now();
    wait_rewrite(c)?;
    let () = redis::cmd("FLUSHALL").arg("SYNC").query(c)?;
    let sys = redis_sys::open(kind, url)?;
    let left = AtomicU64::new(n as u64);
    let made = Mutex::new(Vec::with_capacity(n));
    let data = preload_data();
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..32)
            .map(|_| {
                s.spawn(|| -> R<()> {
                    while left
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1))
                        .is_ok()
                    {
                        let k = sys.create(&data)?;
                        made.lock().map_err(|_| "poisoned")?.push(k);
                    }
                    Ok(())
                })
            })
            .collect();
        hs.into_iter().try_for_each(|h| h.join().map_err(|_| "a preload thread panicked")?)
    })?;
    write_keys(keys, &made.into_inner().map_err(|_| "poisoned")?)?;
    let () = redis::cmd("BGREWRITEAOF").query(c)?;
    std::thread::sleep(Duration::from_millis(50));
    wait_rewrite(c)?;
    eprintln!("  preloaded {}: {n} sessions in {:.1} s", kind.name(), t.elapsed().as_secs_f64());
    Ok(sys)
}

/// The untimed probe: `PROBE` requests of `workload` from one thread with `MONITOR` on; the
/// commands sent per request (a script's own commands, shown as `lua`, not counted).
fn probe(sys: &dyn System, workload: &str, keys: &Path, url: &str) -> R<(f64, String)> {
    let keys = Keys::open(keys)?;
    let mut rng = SmallRng::seed_from_u64(4242);
    let data = vec![b'q'; DATA];
    let (mut h, mut conflicts, mut writes) = (Hist::new(), 0, 0);
    let mut one = |rng: &mut SmallRng| {
        crate::roles::one_request(
            sys,
            workload,
            &keys,
            rng,
            &data,
            &mut h,
            &mut conflicts,
            &mut writes,
        )
    };
    one(&mut rng)?; // connections made, scripts loaded
    let mut monitor = connect(url)?;
    monitor.send_packed_command(&redis::cmd("MONITOR").get_packed_command())?;
    monitor.recv_response()?;
    let mut marks = connect(url)?;
    let _: String = redis::cmd("ECHO").arg("cmp-probe-start").query(&mut marks)?;
    for _ in 0..PROBE {
        one(&mut rng)?;
    }
    let _: String = redis::cmd("ECHO").arg("cmp-probe-end").query(&mut marks)?;
    let (mut counts, mut started) = (BTreeMap::<String, u64>::new(), false);
    loop {
        let line = match monitor.recv_response()? {
            redis::Value::SimpleString(s) => s,
            redis::Value::Okay => continue,
            other => return Err(format!("MONITOR: unexpected {other:?}").into()),
        };
        if line.contains("\"cmp-probe-start\"") {
            started = true;
            continue;
        }
        if line.contains("\"cmp-probe-end\"") {
            break;
        }
        if let Some(name) = monitor_command(&line).filter(|_| started) {
            *counts.entry(name).or_default() += 1;
        }
    }
    Ok(per_request(&counts, PROBE))
}

/// Runs the Redis workloads of `o`; the cells, and what the server was (for the report).
pub fn run(o: &Opts, dir: &Path) -> R<(Vec<Cell>, String)> {
    if o.redis_systems.is_empty() {
        return Err("no Redis system to run".into());
    }
    let server = Server::start(dir, &o.redis_fsync)?;
    let url = server.url();
    eprintln!("  redis-server at {url}: {}", server.about);
    let mut con = connect(&url)?;
    let mut cells = Vec::new();
    for w in ["redis-read", "redis-web"] {
        if !o.workloads.iter().any(|x| x == w) {
            continue;
        }
        let base = &w["redis-".len()..];
        for (ci, &pt) in o.redis_cells.iter().enumerate() {
            let mut kinds = o.redis_systems.clone();
            let n = kinds.len();
            kinds.rotate_left(ci % n);
            for kind in kinds {
                let keys = dir.join(format!("{w}-{}.keys", kind.name()));
                let sys = preload(&mut con, kind, &url, o.sessions, &keys)?;
                let mut snaps = Vec::new();
                let mut around = |_started: bool| -> R<()> {
                    snaps.push((commandstats(&mut con)?, server.cpu_ms()));
                    Ok(())
                };
                let path = PathBuf::from(&url);
                let mut cell =
                    run_cell(o, base, kind, pt, &path, &keys, o.sessions, false, &mut around)?;
                cell.workload = w.to_string();
                let [(c0, cpu0), (c1, cpu1)] = <[_; 2]>::try_from(snaps)
                    .map_err(|_| Failure::from("the cell did not take its two snapshots"))?;
                let (commands, mix) = per_request(&diff(&c0, &c1), cell.requests);
                let (sent, sent_mix) = probe(&*sys, base, &keys, &url)?;
                cell.redis = Some(RedisStats {
                    commands,
                    mix,
                    server_cpu_ms: cpu1.saturating_sub(cpu0),
                    sent,
                    sent_mix,
                });
                eprintln!("{}", report::line(&cell));
                cells.push(cell);
                let _ = std::fs::remove_file(&keys);
            }
        }
    }
    let mut about = server.about.clone();
    let _ = write!(about, "; {} sessions preloaded per system and cell", o.sessions);
    Ok((cells, about))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commandstats_lines() {
        let text = "# Commandstats\r\ncmdstat_get:calls=3,usec=9,usec_per_call=3.00,rejected_calls=0\r\n\
                    cmdstat_client|setinfo:calls=2,usec=1\r\ncmdstat_info:calls=1,usec=40\r\n";
        let m = parse_commandstats(text).unwrap();
        assert_eq!(m["get"], 3);
        assert_eq!(m["client|setinfo"], 2);
        // Setup and the harness's own commands are not a request's.
        let (n, mix) = per_request(&m, 3);
        assert_eq!((n, mix.as_str()), (1.0, "get 1.00"));
        assert!(parse_commandstats("cmdstat_get:usec=1").is_err());
    }

    #[test]
    fn monitor_lines() {
        let sent = r#"1733150000.123456 [0 127.0.0.1:5555] "EVALSHA" "abc" "1" "k""#;
        assert_eq!(monitor_command(sent).as_deref(), Some("evalsha"));
        assert_eq!(monitor_command(r#"1733150000.1 [0 lua] "hget" "k" "f""#), None);
        assert_eq!(monitor_command("OK"), None);
    }

    #[test]
    fn counts_after_minus_before() {
        let a: BTreeMap<String, u64> = [("get".into(), 5)].into();
        let b: BTreeMap<String, u64> = [("get".into(), 9), ("set".into(), 2)].into();
        let d = diff(&a, &b);
        assert_eq!((d["get"], d["set"]), (4, 2));
    }
}
