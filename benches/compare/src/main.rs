//! Side-by-side comparison (issue 6): sessiondb (`MultiProcess`, `SingleProcess`) against a
//! plain SQLite session table (WAL, `synchronous=FULL` and `NORMAL`) and tower-sessions' SQLite
//! store, on the same request workloads, in one run.
//!
//! `cargo run --release -- [--secs S] [--sessions N] [--big N] [--procs 1,2,4] [--threads T]
//! [--workloads read,web,write,churn,cgi,floor,sweep,scale] [--dir DIR] [--out DIR]`; see run.sh.
//!
//! The binary re-executes itself: `CMP_ROLE=worker` children run one workload with T threads,
//! `CMP_ROLE=sweeper` removes the expired sessions during `sweep`, `CMP_ROLE=cgi` opens the
//! store, handles one request and exits. The parent preloads one template file per system
//! (copied before each workload, and before each `sweep` cell), starts the P children of a cell
//! together, stops them after the cell's time, and merges their latency histograms.

mod floor;
mod report;
mod systems;

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use sessiondb::{ManualClock, Sharing};
use systems::{
    Failure, GRACE_MS, IDLE_MS, Key, Kind, R, Sdb, System, Tower, now_ms, sql_connect, sql_insert,
    sql_new_key,
};

pub const DATA: usize = 512;
/// A keys file holds one session per fixed-width line, read with `pread` at a random index, so
/// a worker's memory holds no list of keys (its peak RSS is the store's).
const KEY_LINE: usize = 96;
/// Probability that a `web` request saves a new state.
const WEB_SAVE: f64 = 0.3;

fn main() {
    let role = std::env::var("CMP_ROLE").unwrap_or_default();
    let result = match role.as_str() {
        "worker" => worker(false),
        "sweeper" => worker(true),
        "cgi" => cgi_request(),
        "floor-writer" => floor::writer_role(),
        "floor-cgi" => floor::cgi_role(),
        "floor-web" => floor::web_role(),
        _ => parent(),
    };
    if let Err(e) = result {
        eprintln!("compare ({role}): {e}");
        std::process::exit(1);
    }
}

fn env(name: &str) -> R<String> {
    std::env::var(name).map_err(|e| format!("{name}: {e}").into())
}

// ---------------------------------------------------------------------------------------------
// Latency histogram: 16 buckets per power of two of nanoseconds (about 4.4% wide).

const PER_OCTAVE: f64 = 16.0;
const BUCKETS: usize = 64 * 16;

#[derive(Clone)]
pub struct Hist {
    pub counts: Vec<u64>,
    pub max_ns: u64,
}

impl Default for Hist {
    fn default() -> Self {
        Self::new()
    }
}

impl Hist {
    pub fn new() -> Self {
        Self { counts: vec![0; BUCKETS], max_ns: 0 }
    }
    pub fn record(&mut self, ns: u64) {
        let i = ((ns.max(1) as f64).log2() * PER_OCTAVE) as usize;
        self.counts[i.min(BUCKETS - 1)] += 1;
        self.max_ns = self.max_ns.max(ns);
    }
    pub fn merge(&mut self, o: &Hist) {
        for (a, b) in self.counts.iter_mut().zip(&o.counts) {
            *a += b;
        }
        self.max_ns = self.max_ns.max(o.max_ns);
    }
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }
    /// The upper edge of the bucket holding quantile `q`, in ns (capped at the maximum seen).
    pub fn quantile(&self, q: f64) -> u64 {
        let total = self.total();
        if total == 0 {
            return 0;
        }
        let rank = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let edge = 2f64.powf((i + 1) as f64 / PER_OCTAVE) as u64;
                return edge.min(self.max_ns);
            }
        }
        self.max_ns
    }
    fn encode(&self) -> String {
        let parts: Vec<String> = self
            .counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(i, c)| format!("{i}:{c}"))
            .collect();
        format!("{};{}", self.max_ns, parts.join(","))
    }
    fn decode(s: &str) -> R<Hist> {
        let mut h = Hist::new();
        let (max, rest) = s.split_once(';').ok_or("bad histogram")?;
        h.max_ns = max.parse()?;
        for p in rest.split(',').filter(|p| !p.is_empty()) {
            let (i, c) = p.split_once(':').ok_or("bad bucket")?;
            h.counts[i.parse::<usize>()?] = c.parse()?;
        }
        Ok(h)
    }
}

// ---------------------------------------------------------------------------------------------
// Keys files

fn write_keys(path: &Path, keys: &[Key]) -> R<()> {
    let mut out = std::io::BufWriter::new(File::create(path)?);
    for k in keys {
        let line = format!("{} {}", k.id, k.token);
        if line.len() >= KEY_LINE {
            return Err("key too long".into());
        }
        out.write_all(format!("{line:<width$}\n", width = KEY_LINE - 1).as_bytes())?;
    }
    out.flush()?;
    Ok(())
}

struct Keys {
    file: File,
    n: u64,
}

impl Keys {
    fn open(path: &Path) -> R<Keys> {
        let file = File::open(path)?;
        let n = file.metadata()?.len() / KEY_LINE as u64;
        if n == 0 {
            return Err("empty keys file".into());
        }
        Ok(Keys { file, n })
    }
    fn get(&self, i: u64) -> R<Key> {
        let mut buf = [0u8; KEY_LINE];
        self.file.read_exact_at(&mut buf, (i % self.n) * KEY_LINE as u64)?;
        let line = std::str::from_utf8(&buf)?.trim_end();
        let (id, token) = line.split_once(' ').unwrap_or((line, ""));
        Ok(Key { id: id.to_string(), token: token.to_string() })
    }
}

// ---------------------------------------------------------------------------------------------
// Preloading templates

/// Creates `n` sessions from 64 threads (their creates share group commits), with `clock` set
/// if given; returns the keys when `keep`.
fn sdb_fill(path: &Path, n: usize, clock: Option<ManualClock>, keep: bool) -> R<Vec<Key>> {
    let sys = Sdb::open(path, Sharing::SingleProcess, clock)?;
    let left = AtomicU64::new(n as u64);
    let keys = Mutex::new(Vec::with_capacity(if keep { n } else { 0 }));
    let data = vec![b'p'; DATA];
    std::thread::scope(|s| {
        let mut hs = Vec::new();
        for _ in 0..64 {
            hs.push(s.spawn(|| -> R<()> {
                while left
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1))
                    .is_ok()
                {
                    let k = sys.create(&data)?;
                    if keep {
                        keys.lock().unwrap().push(k);
                    }
                }
                Ok(())
            }));
        }
        for h in hs {
            h.join().expect("preload thread")?;
        }
        Ok::<_, Failure>(())
    })?;
    Ok(keys.into_inner().unwrap())
}

fn expired_clock() -> ManualClock {
    ManualClock::new(now_ms() - IDLE_MS - GRACE_MS - 3_600_000)
}

fn preload(family: &str, path: &Path, keys_path: &Path, live: usize, expired: usize) -> R<()> {
    let t = Instant::now();
    let _ = std::fs::remove_file(path);
    let keys = match family {
        "sdb" => {
            if expired > 0 {
                sdb_fill(path, expired, Some(expired_clock()), false)?;
            }
            sdb_fill(path, live, None, true)?
        }
        "sql" => {
            let mut c = sql_connect(path, "NORMAL")?;
            c.execute_batch(systems::SQL_SCHEMA)?;
            let tx = c.transaction()?;
            let data = vec![b'p'; DATA];
            let old = now_ms() - IDLE_MS - GRACE_MS - 3_600_000;
            for _ in 0..expired {
                sql_insert(&tx, &sql_new_key(), &data, old)?;
            }
            let mut keys = Vec::with_capacity(live);
            let now = now_ms();
            for _ in 0..live {
                let k = sql_new_key();
                sql_insert(&tx, &k, &data, now)?;
                keys.push(k);
            }
            tx.commit()?;
            c.pragma_update(None, "wal_checkpoint", "TRUNCATE")?;
            keys
        }
        "tower" => {
            let tower = Tower::open(path)?;
            let data = vec![b'p'; DATA];
            let keys = tower.rt.block_on(async {
                let pool = sqlx::sqlite::SqlitePoolOptions::new()
                    .max_connections(1)
                    .connect_with(tower.opts.clone())
                    .await?;
                let mut tx = pool.begin().await?;
                let insert = "insert into tower_sessions (id, data, expiry_date) values (?, ?, ?)";
                let mut keys = Vec::with_capacity(live);
                let past = time::OffsetDateTime::now_utc() - time::Duration::days(1);
                for i in 0..expired + live {
                    let id = tower_sessions_core::session::Id::default();
                    let exp = if i < expired { past } else { Tower::expiry() };
                    let rec = Tower::record(id, &data, exp);
                    sqlx::query(insert)
                        .bind(id.to_string())
                        .bind(rmp_serde::to_vec(&rec)?)
                        .bind(exp)
                        .execute(&mut *tx)
                        .await?;
                    if i >= expired {
                        keys.push(Key { id: id.to_string(), token: String::new() });
                    }
                }
                tx.commit().await?;
                sqlx::query("pragma wal_checkpoint(TRUNCATE)").execute(&pool).await?;
                pool.close().await;
                Ok::<_, Failure>(keys)
            })?;
            drop(tower);
            keys
        }
        _ => return Err(format!("family {family}").into()),
    };
    write_keys(keys_path, &keys)?;
    let size = std::fs::metadata(path)?.len();
    eprintln!(
        "  preloaded {family}: {live} live + {expired} expired sessions in {:.1} s, file {:.0} MiB",
        t.elapsed().as_secs_f64(),
        size as f64 / 1048576.0
    );
    Ok(())
}

/// Copies a database file (its WAL and shm are empty or absent: templates are checkpointed).
fn copy_db(from: &Path, to: &Path) -> R<()> {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", to.display()));
    }
    let _ = std::fs::remove_dir_all(format!("{}.locks", to.display()));
    std::fs::copy(from, to)?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Parent

#[derive(Clone)]
pub struct Opts {
    pub secs: f64,
    pub sessions: usize,
    pub big: usize,
    pub procs: Vec<usize>,
    pub threads: usize,
    pub workloads: Vec<String>,
    pub dir: PathBuf,
    pub out: PathBuf,
    pub systems: Vec<Kind>,
}

fn parse_opts() -> R<Opts> {
    let mut o = Opts {
        secs: 3.0,
        sessions: 100_000,
        big: 1_000_000,
        procs: vec![1, 2, 4],
        threads: 4,
        workloads: "read,web,write,churn,cgi,floor,sweep,scale"
            .split(',')
            .map(String::from)
            .collect(),
        dir: std::env::temp_dir(),
        out: PathBuf::from("results"),
        systems: systems::ALL.to_vec(),
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut v = || it.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--secs" => o.secs = v()?.parse()?,
            "--sessions" => o.sessions = v()?.parse()?,
            "--big" => o.big = v()?.parse()?,
            "--threads" => o.threads = v()?.parse()?,
            "--procs" => o.procs = v()?.split(',').map(str::parse).collect::<Result<_, _>>()?,
            "--workloads" => o.workloads = v()?.split(',').map(String::from).collect(),
            "--dir" => o.dir = PathBuf::from(v()?),
            "--out" => o.out = PathBuf::from(v()?),
            "--systems" => {
                o.systems = v()?.split(',').map(Kind::parse).collect::<Result<_, _>>()?;
            }
            "--bench" => {}
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    Ok(o)
}

/// One measured cell.
#[derive(Clone)]
pub struct Cell {
    pub workload: String,
    pub kind: Kind,
    pub procs: usize,
    pub sessions: usize,
    pub requests: u64,
    pub secs: f64,
    pub conflicts: u64,
    pub hist: Hist,
    pub cpu_ms: u64,
    pub hwm_kb: u64,
    pub busy: f64,
    /// `sweep`: sessions removed and the seconds the removal took.
    pub swept: Option<(u64, f64)>,
}

impl Cell {
    /// A cell with nothing measured yet.
    pub fn new(workload: impl Into<String>, kind: Kind, procs: usize, sessions: usize) -> Cell {
        Cell {
            workload: workload.into(),
            kind,
            procs,
            sessions,
            requests: 0,
            secs: 0.0,
            conflicts: 0,
            hist: Hist::new(),
            cpu_ms: 0,
            hwm_kb: 0,
            busy: f64::NAN,
            swept: None,
        }
    }
    pub fn rps(&self) -> f64 {
        self.requests as f64 / self.secs
    }
}

/// The systems of one workload and P, in an order rotated by P's index so that no system
/// always runs first. SingleProcess runs at P=1 only (ExclusiveWriter admits one process).
fn systems_for(o: &Opts, procs: usize, order: usize) -> Vec<Kind> {
    let mut v: Vec<Kind> =
        o.systems.iter().copied().filter(|k| procs == 1 || *k != Kind::Single).collect();
    let n = v.len().max(1);
    v.rotate_left(order % n);
    v
}

fn parent() -> R<()> {
    let o = parse_opts()?;
    let dir = tempfile::Builder::new().prefix("sessiondb-compare-").tempdir_in(&o.dir)?;
    std::fs::create_dir_all(&o.out)?;
    eprintln!(
        "compare: {} s per cell, {} sessions (big: {}), P = {:?} × T = {}, files in {}",
        o.secs,
        o.sessions,
        o.big,
        o.procs,
        o.threads,
        dir.path().display()
    );
    let want = |w: &str| o.workloads.iter().any(|x| x == w);
    let tpl = |fam: &str, what: &str| dir.path().join(format!("tpl-{fam}-{what}"));
    let families = ["sdb", "sql", "tower"];
    let mut cells: Vec<Cell> = Vec::new();

    let plain = ["read", "web", "write", "churn", "cgi"];
    if plain.iter().any(|w| want(w)) {
        for fam in families.iter().filter(|f| o.systems.iter().any(|k| k.family() == **f)) {
            preload(fam, &tpl(fam, "live"), &tpl(fam, "live.keys"), o.sessions, 0)?;
        }
    }
    for w in plain.iter().filter(|w| want(w)) {
        // One working copy per system and workload, reused across P.
        let mut work = std::collections::HashMap::new();
        for &kind in &o.systems {
            let p = dir.path().join(format!("{w}-{}.{}", kind.name(), kind.ext()));
            copy_db(&tpl(kind.family(), "live"), &p)?;
            work.insert(kind.name(), p);
        }
        for (pi, &procs) in o.procs.iter().enumerate() {
            for kind in systems_for(&o, procs, pi) {
                let path = &work[kind.name()];
                let keys = tpl(kind.family(), "live.keys");
                let cell = if *w == "cgi" {
                    run_cgi(&o, kind, procs, path, &keys)?
                } else {
                    run_cell(&o, w, kind, procs, path, &keys, o.sessions, false)?
                };
                eprintln!("{}", report::line(&cell));
                cells.push(cell);
            }
        }
        for p in work.values() {
            let _ = std::fs::remove_file(p);
        }
    }
    if want("floor") {
        // redb alone, right after the cells it bounds (see floor.rs).
        cells.extend(floor::run(&o, dir.path())?);
    }
    if want("sweep") {
        for fam in families.iter().filter(|f| o.systems.iter().any(|k| k.family() == **f)) {
            preload(fam, &tpl(fam, "sweep"), &tpl(fam, "sweep.keys"), o.sessions, o.sessions)?;
        }
        for (pi, &procs) in o.procs.iter().enumerate() {
            for kind in systems_for(&o, procs, pi) {
                let path = dir.path().join(format!("sweep-{}.{}", kind.name(), kind.ext()));
                copy_db(&tpl(kind.family(), "sweep"), &path)?;
                let keys = tpl(kind.family(), "sweep.keys");
                let cell = run_cell(&o, "sweep", kind, procs, &path, &keys, o.sessions, true)?;
                eprintln!("{}", report::line(&cell));
                cells.push(cell);
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    if want("scale") && o.big > 0 {
        // sessiondb MultiProcess at `sessions` and at `big`, the two cells of each workload and
        // P next to each other.
        let small = tpl("sdb", "live");
        if !small.exists() {
            preload("sdb", &small, &tpl("sdb", "live.keys"), o.sessions, 0)?;
        }
        preload("sdb", &tpl("sdb", "big"), &tpl("sdb", "big.keys"), o.big, 0)?;
        for w in ["read", "web"] {
            let a = dir.path().join(format!("scale-{w}-small.redb"));
            let b = dir.path().join(format!("scale-{w}-big.redb"));
            copy_db(&small, &a)?;
            copy_db(&tpl("sdb", "big"), &b)?;
            for &procs in &o.procs {
                for (path, keys, n) in
                    [(&a, tpl("sdb", "live.keys"), o.sessions), (&b, tpl("sdb", "big.keys"), o.big)]
                {
                    let mut cell = run_cell(&o, w, Kind::Multi, procs, path, &keys, n, false)?;
                    cell.workload = format!("scale-{w}");
                    eprintln!("{}", report::line(&cell));
                    cells.push(cell);
                }
            }
            let _ = std::fs::remove_file(&a);
            let _ = std::fs::remove_file(&b);
        }
    }
    report::write_all(&o, &cells)?;
    Ok(())
}

fn machine_cpu() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let ticks: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|t| t.parse().ok())
        .collect();
    let total: u64 = ticks.iter().sum();
    let idle = ticks.get(3)? + ticks.get(4)?;
    Some((total - idle, total))
}

fn busy_between(a: Option<(u64, u64)>, b: Option<(u64, u64)>) -> f64 {
    match (a, b) {
        (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => (b1 - b0) as f64 / (t1 - t0) as f64,
        _ => f64::NAN,
    }
}

struct Running {
    child: Child,
    stdin: Option<ChildStdin>,
    out: BufReader<ChildStdout>,
}

fn spawn(
    role: &str,
    kind: Kind,
    workload: &str,
    path: &Path,
    keys: &Path,
    threads: usize,
    seed: u64,
) -> R<Running> {
    let mut c = Command::new(std::env::current_exe()?);
    c.env("CMP_ROLE", role)
        .env("CMP_SYS", kind.name())
        .env("CMP_WORKLOAD", workload)
        .env("CMP_PATH", path)
        .env("CMP_KEYS", keys)
        .env("CMP_THREADS", threads.to_string())
        .env("CMP_SEED", seed.to_string());
    Running::start(c)
}

impl Running {
    /// Starts a child with its stdin and stdout piped to this process.
    fn start(mut c: Command) -> R<Running> {
        let mut child =
            c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn()?;
        let stdin = child.stdin.take();
        let out = BufReader::new(child.stdout.take().ok_or("stdout")?);
        Ok(Running { child, stdin, out })
    }
}

fn expect_ready(r: &mut Running) -> R<()> {
    let mut line = String::new();
    r.out.read_line(&mut line)?;
    if line.trim() != "ready" {
        let _ = r.child.kill();
        return Err(format!("a child did not get ready: {line:?}").into());
    }
    Ok(())
}

fn finish(mut r: Running) -> R<String> {
    drop(r.stdin.take());
    let mut text = String::new();
    r.out.read_to_string(&mut text)?;
    let status = r.child.wait()?;
    if !status.success() {
        return Err(format!("a child failed: {status}").into());
    }
    text.lines()
        .find(|l| l.starts_with("result "))
        .map(String::from)
        .ok_or_else(|| format!("no result line in {text:?}").into())
}

#[allow(clippy::too_many_arguments)]
fn run_cell(
    o: &Opts,
    workload: &str,
    kind: Kind,
    procs: usize,
    path: &Path,
    keys: &Path,
    sessions: usize,
    sweep: bool,
) -> R<Cell> {
    let mut workers = Vec::new();
    for p in 0..procs {
        // SingleProcess allows one process: its sweep runs in a thread of the worker instead.
        let wl = match (sweep, kind) {
            (true, Kind::Single) => "sweep-inproc",
            (true, _) => "web",
            _ => workload,
        };
        workers.push(spawn("worker", kind, wl, path, keys, o.threads, p as u64 * 7919 + 1)?);
    }
    for w in &mut workers {
        expect_ready(w)?;
    }
    let mut sweeper = None;
    if sweep && kind != Kind::Single {
        let mut s = spawn("sweeper", kind, "sweep", path, keys, 0, 0)?;
        expect_ready(&mut s)?;
        sweeper = Some(s);
    }
    let cpu0 = machine_cpu();
    let start = SystemTime::now() + Duration::from_millis(200);
    let start_us = start.duration_since(UNIX_EPOCH)?.as_micros();
    for w in workers.iter_mut().chain(sweeper.iter_mut()) {
        writeln!(w.stdin.as_mut().ok_or("stdin")?, "{start_us}")?;
    }
    let mut swept = None;
    if let Some(s) = sweeper {
        let line = finish(s)?;
        swept = Some(parse_sweep(&line)?);
        std::thread::sleep(Duration::from_millis(300));
    } else if !sweep {
        let until = start + Duration::from_secs_f64(o.secs);
        std::thread::sleep(until.duration_since(SystemTime::now()).unwrap_or_default());
    }
    // (A SingleProcess `sweep` worker stops itself after its in-process sweep.)
    if !(sweep && kind == Kind::Single) {
        for w in &mut workers {
            let _ = writeln!(w.stdin.as_mut().ok_or("stdin")?, "stop");
        }
    }
    let cpu1 = machine_cpu();
    let mut cell = Cell::new(workload, kind, procs, sessions);
    cell.busy = busy_between(cpu0, cpu1);
    cell.swept = swept;
    let mut secs = Vec::new();
    for w in workers {
        secs.push(absorb(&mut cell, &finish(w)?)?);
    }
    cell.secs = secs.iter().sum::<f64>() / secs.len() as f64;
    Ok(cell)
}

/// Adds a child's `result` line to `cell`; returns the child's own measured seconds.
fn absorb(cell: &mut Cell, line: &str) -> R<f64> {
    let mut secs = f64::NAN;
    for f in line.split_whitespace().skip(1) {
        let (k, v) = f.split_once('=').ok_or("bad field")?;
        match k {
            "requests" => cell.requests += v.parse::<u64>()?,
            "conflicts" => cell.conflicts += v.parse::<u64>()?,
            "secs" => secs = v.parse::<f64>()?,
            "cpu_ms" => cell.cpu_ms += v.parse::<u64>()?,
            "hwm_kb" => cell.hwm_kb = cell.hwm_kb.max(v.parse()?),
            "hist" => cell.hist.merge(&Hist::decode(v)?),
            "swept" => cell.swept = Some(parse_sweep(&format!("result swept={v}"))?),
            _ => return Err(format!("unknown field {k}").into()),
        }
    }
    Ok(secs)
}

fn parse_sweep(line: &str) -> R<(u64, f64)> {
    let v =
        line.split_whitespace().find_map(|f| f.strip_prefix("swept=")).ok_or("no swept field")?;
    let (n, s) = v.split_once('/').ok_or("bad swept")?;
    Ok((n.parse()?, s.parse()?))
}

/// `cgi`: P driver threads, each starting one fresh process per request and waiting for it;
/// the latency is the wall time from spawn to exit.
fn run_cgi(o: &Opts, kind: Kind, procs: usize, path: &Path, keys: &Path) -> R<Cell> {
    let exe = std::env::current_exe()?;
    let nkeys = Keys::open(keys)?.n;
    let mut cell = Cell::new("cgi", kind, procs, o.sessions);
    drive(&mut cell, o.secs, &|p, n| {
        let seed = p as u64 * 1_000_003 + n + 99;
        let mut c = Command::new(&exe);
        c.env("CMP_ROLE", "cgi")
            .env("CMP_SYS", kind.name())
            .env("CMP_PATH", path)
            .env("CMP_KEYS", keys)
            .env("CMP_INDEX", SmallRng::seed_from_u64(seed).random_range(0..nkeys).to_string());
        c
    })?;
    Ok(cell)
}

/// Runs `cell.procs` driver threads for `secs`, each starting fresh processes back to back and
/// waiting for each (`command(p, n)` builds driver p's n-th); adds to `cell` the requests, their
/// latencies (spawn to exit), the wall time and how busy the machine was.
fn drive(cell: &mut Cell, secs: f64, command: &(dyn Fn(usize, u64) -> Command + Sync)) -> R<()> {
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let cpu0 = machine_cpu();
    let t0 = Instant::now();
    let results: Vec<R<(u64, Hist)>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..cell.procs)
            .map(|p| {
                s.spawn(move || -> R<(u64, Hist)> {
                    let (mut h, mut n) = (Hist::new(), 0);
                    while Instant::now() < end {
                        let t = Instant::now();
                        let status =
                            command(p, n).stdin(Stdio::null()).stdout(Stdio::null()).status()?;
                        if !status.success() {
                            return Err(format!("a request process failed: {status}").into());
                        }
                        h.record(t.elapsed().as_nanos() as u64);
                        n += 1;
                    }
                    Ok((n, h))
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("request driver")).collect()
    });
    cell.secs = t0.elapsed().as_secs_f64();
    cell.busy = busy_between(cpu0, machine_cpu());
    for r in results {
        let (n, h) = r?;
        cell.requests += n;
        cell.hist.merge(&h);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Children

fn own_cpu_ms() -> u64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return 0 };
    let Some((_, rest)) = stat.rsplit_once(')') else { return 0 };
    let f: Vec<u64> =
        rest.split_whitespace().skip(11).take(2).filter_map(|x| x.parse().ok()).collect();
    f.iter().sum::<u64>() * 10
}

/// Peak resident set size of this process (`VmHWM`), in KiB.
fn hwm_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn one_request(
    sys: &dyn System,
    workload: &str,
    keys: &Keys,
    rng: &mut SmallRng,
    data: &[u8],
    h: &mut Hist,
    conflicts: &mut u64,
) -> R<u64> {
    let mut timed = |f: &mut dyn FnMut() -> R<bool>| -> R<()> {
        let t = Instant::now();
        let ok = f()?;
        h.record(t.elapsed().as_nanos() as u64);
        if !ok {
            *conflicts += 1;
        }
        Ok(())
    };
    match workload {
        "read" | "web" | "write" => {
            let k = keys.get(rng.random_range(0..keys.n))?;
            let save = match workload {
                "read" => false,
                "write" => true,
                _ => rng.random_bool(WEB_SAVE),
            };
            timed(&mut || sys.request(&k, save.then_some(data)))?;
            Ok(1)
        }
        "churn" => {
            // create, three requests (the second saves), delete: five requests.
            let mut k = None;
            timed(&mut || {
                k = Some(sys.create(data)?);
                Ok(true)
            })?;
            let k = k.expect("created");
            timed(&mut || sys.request(&k, None))?;
            timed(&mut || sys.request(&k, Some(data)))?;
            timed(&mut || sys.request(&k, None))?;
            timed(&mut || sys.delete(&k).map(|()| true))?;
            Ok(5)
        }
        other => Err(format!("unknown workload {other}").into()),
    }
}

fn worker(sweeper: bool) -> R<()> {
    let kind = Kind::parse(&env("CMP_SYS")?)?;
    let workload = env("CMP_WORKLOAD")?;
    let path = PathBuf::from(env("CMP_PATH")?);
    let keys = Keys::open(Path::new(&env("CMP_KEYS")?))?;
    let threads: usize = env("CMP_THREADS")?.parse()?;
    let seed: u64 = env("CMP_SEED")?.parse()?;
    let sys = systems::open(kind, &path)?;
    println!("ready");
    std::io::stdout().flush()?;
    let mut stdin = std::io::stdin().lock();
    let mut line = String::new();
    stdin.read_line(&mut line)?;
    let start_us: u128 = line.trim().parse()?;
    let now_us = SystemTime::now().duration_since(UNIX_EPOCH)?.as_micros();
    let start = Instant::now() + Duration::from_micros(start_us.saturating_sub(now_us) as u64);
    std::thread::sleep(start.saturating_duration_since(Instant::now()));

    if sweeper {
        std::thread::sleep(Duration::from_millis(300));
        let (n, took) = sys.sweep()?;
        println!("result swept={n}/{:.6}", took.as_secs_f64());
        return Ok(());
    }
    let cpu0 = own_cpu_ms();
    let stop = Arc::new(AtomicBool::new(false));
    let inproc_sweep = workload == "sweep-inproc";
    // The parent says `stop` (or goes away); an in-process sweep stops the workers itself.
    if !inproc_sweep {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut l = String::new();
            let _ = std::io::stdin().lock().read_line(&mut l);
            stop.store(true, Ordering::SeqCst);
        });
    }
    drop(stdin);
    let workload = if inproc_sweep { "web".to_string() } else { workload };
    let data = vec![b'd'; DATA];
    let mut swept = None;
    let per_thread: Vec<R<(u64, u64, Hist)>> = std::thread::scope(|s| {
        let mut hs = Vec::new();
        for t in 0..threads {
            let (sys, keys, data, stop, workload) = (&*sys, &keys, &data, &stop, &workload);
            hs.push(s.spawn(move || -> R<(u64, u64, Hist)> {
                let mut rng = SmallRng::seed_from_u64(seed * 1000 + t as u64);
                let mut h = Hist::new();
                let (mut n, mut conflicts) = (0, 0);
                while !stop.load(Ordering::Relaxed) {
                    n += one_request(sys, workload, keys, &mut rng, data, &mut h, &mut conflicts)?;
                }
                Ok((n, conflicts, h))
            }));
        }
        // SingleProcess `sweep`: one process only, so the sweep runs here, in one more thread,
        // which stops the workers 300 ms after it finished.
        let sweep = inproc_sweep.then(|| {
            let (sys, stop) = (&*sys, &stop);
            s.spawn(move || {
                std::thread::sleep(Duration::from_millis(300));
                let r = sys.sweep();
                std::thread::sleep(Duration::from_millis(300));
                stop.store(true, Ordering::SeqCst);
                r
            })
        });
        let r = hs.into_iter().map(|h| h.join().expect("worker thread")).collect();
        swept = sweep.map(|sw| sw.join().expect("sweep thread"));
        r
    });
    let secs = start.elapsed().as_secs_f64();
    let mut hist = Hist::new();
    let (mut n, mut c) = (0, 0);
    for r in per_thread {
        let (a, b, h) = r?;
        n += a;
        c += b;
        hist.merge(&h);
    }
    let swept = match swept {
        Some(r) => {
            let (n, took) = r?;
            format!(" swept={n}/{:.6}", took.as_secs_f64())
        }
        None => String::new(),
    };
    let diag = sys.diagnostics();
    if !diag.is_empty() {
        eprintln!("{} {workload}: {diag}", kind.name());
    }
    println!(
        "result requests={n} conflicts={c} secs={secs:.4} cpu_ms={} hwm_kb={} hist={}{swept}",
        own_cpu_ms() - cpu0,
        hwm_kb(),
        hist.encode()
    );
    Ok(())
}

fn cgi_request() -> R<()> {
    let kind = Kind::parse(&env("CMP_SYS")?)?;
    let path = PathBuf::from(env("CMP_PATH")?);
    let keys = Keys::open(Path::new(&env("CMP_KEYS")?))?;
    let k = keys.get(env("CMP_INDEX")?.parse()?)?;
    let data = vec![b'c'; DATA];
    let sys: Box<dyn System> = match kind {
        Kind::Tower => Box::new(Tower::open_with(&path, systems::tower_runtime(1)?)?),
        other => systems::open(other, &path)?,
    };
    // One CGI request: load the session, save a new state (what examples/cgi_counter does).
    let mut tries = 0;
    while !sys.request(&k, Some(&data))? {
        tries += 1;
        if tries > 100 {
            return Err("conflicts".into());
        }
    }
    // What a CGI program does last (sessiondb: `Store::close_for_exit`).
    sys.exit();
    Ok(())
}
