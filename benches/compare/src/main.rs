//! Side-by-side comparison (issues 6 and 17): sessiondb (`MultiProcess`, `SingleProcess`)
//! against a plain SQLite session table (WAL, `synchronous=FULL` and `NORMAL`) and
//! tower-sessions' SQLite store, on the same request workloads, in one run.
//!
//! `cargo run --release -- [--secs S] [--sessions N] [--big N] [--cells 1x4,4x1,...]
//! [--cgi-procs 1,2,4] [--sweep-cells ...] [--scale-cells ...] [--procs 1,2,4 --threads T]
//! [--workloads read,web,write,churn,cgi,floor,sweep,scale] [--dir DIR] [--out DIR]
//! [--estimate]`; see run.sh and opts.rs. A cell P×T is P worker processes of T threads.
//!
//! The binary re-executes itself: `CMP_ROLE=worker` children run one workload with T threads,
//! `CMP_ROLE=sweeper` removes the expired sessions during `sweep`, `CMP_ROLE=cgi` opens the
//! store, handles one request and exits. The parent preloads one template file per system
//! (copied before each workload, and before each `sweep` cell), starts the P children of a cell
//! together, stops them after the cell's time, and merges their latency histograms and (for
//! sessiondb) their group commit counters.
//!
//! This file is the parent (the driver); opts.rs holds the command line, estimate.rs the run
//! time estimate, hist.rs the latency histogram, keys.rs the keys files, roles.rs the child
//! roles, floor.rs redb alone, systems.rs the systems compared, report.rs the tables and the
//! chart, targets.rs the targets tables.

mod estimate;
mod floor;
mod hist;
mod keys;
mod opts;
mod redis_report;
mod redis_run;
mod redis_sys;
mod report;
mod roles;
mod systems;
mod targets;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hist::Hist;
use keys::{Keys, write_keys};
use opts::{Opts, PxT, parse_opts};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use roles::{cgi_request, worker};
use sessiondb::{ManualClock, Sharing};
use systems::{
    Failure, GRACE_MS, IDLE_MS, Key, Kind, R, Sdb, System, Tower, now_ms, sql_connect, sql_insert,
    sql_new_key,
};

pub const DATA: usize = 512;
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

/// One measured cell.
#[derive(Clone)]
pub struct Cell {
    pub workload: String,
    pub kind: Kind,
    pub procs: usize,
    /// Threads per worker process (`cgi`: 1, one request per process).
    pub threads: usize,
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
    /// Requests that submitted a write (a save, create or delete), counted by the workers.
    pub writes: u64,
    /// sessiondb: `Store::stats().batches` `commits` and `operations`, summed over the cell's
    /// worker processes (`None` for the other systems).
    pub batches: Option<(u64, u64)>,
    /// The Redis workloads: what the server counted (`redis_run.rs`).
    pub redis: Option<redis_run::RedisStats>,
}

impl Cell {
    /// A cell with nothing measured yet.
    pub fn new(
        workload: impl Into<String>,
        kind: Kind,
        (procs, threads): PxT,
        sessions: usize,
    ) -> Cell {
        Cell {
            workload: workload.into(),
            kind,
            procs,
            threads,
            sessions,
            requests: 0,
            secs: 0.0,
            conflicts: 0,
            hist: Hist::new(),
            cpu_ms: 0,
            hwm_kb: 0,
            busy: f64::NAN,
            swept: None,
            writes: 0,
            batches: None,
            redis: None,
        }
    }
    pub fn rps(&self) -> f64 {
        self.requests as f64 / self.secs
    }
    pub fn pxt(&self) -> PxT {
        (self.procs, self.threads)
    }
    /// sessiondb: operations per commit as its stats count them (`BatchStats`: a process's
    /// `operations` are whatever its commits carried, its own writes or, with a shared
    /// commit, other processes' too); `None` without commits.
    pub fn mean_batch(&self) -> Option<f64> {
        self.batches.filter(|(c, _)| *c > 0).map(|(c, ops)| ops as f64 / c as f64)
    }
    /// sessiondb: the writes the cell's requests submitted (counted by the workers, not by
    /// the store) per commit of all its processes: what one commit carried, however the
    /// stats attribute it.
    pub fn writes_per_commit(&self) -> Option<f64> {
        self.batches.filter(|(c, _)| *c > 0).map(|(c, _)| self.writes as f64 / c as f64)
    }
}

/// The systems of one workload and cell, in an order rotated by the cell's index so that no
/// system always runs first. SingleProcess runs at P=1 only (ExclusiveWriter admits one
/// process).
fn systems_for(o: &Opts, procs: usize, order: usize) -> Vec<Kind> {
    let mut v: Vec<Kind> =
        o.systems.iter().copied().filter(|k| procs == 1 || *k != Kind::Single).collect();
    let n = v.len().max(1);
    v.rotate_left(order % n);
    v
}

fn parent() -> R<()> {
    let o = parse_opts()?;
    let est = estimate::run_time(&o);
    eprintln!("{}", est.text());
    if o.estimate_only {
        return Ok(());
    }
    let began = Instant::now();
    let dir = tempfile::Builder::new().prefix("sessiondb-compare-").tempdir_in(&o.dir)?;
    std::fs::create_dir_all(&o.out)?;
    let show = |cells: &[PxT]| cells.iter().map(|&c| opts::pxt(c)).collect::<Vec<_>>().join(", ");
    eprintln!(
        "compare: {} s per cell, {} sessions (big: {}), cells P×T {} (sweep {}, scale {}, redis {}), cgi P {:?}, files in {}",
        o.secs,
        o.sessions,
        o.big,
        show(&o.cells),
        show(&o.sweep_cells),
        show(&o.scale_cells),
        show(&o.redis_cells),
        o.cgi_procs,
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
        // One working copy per system and workload, reused across cells.
        let mut work = std::collections::HashMap::new();
        for &kind in &o.systems {
            let p = dir.path().join(format!("{w}-{}.{}", kind.name(), kind.ext()));
            copy_db(&tpl(kind.family(), "live"), &p)?;
            work.insert(kind.name(), p);
        }
        let todo: Vec<PxT> = if *w == "cgi" {
            o.cgi_procs.iter().map(|&p| (p, 1)).collect()
        } else {
            o.cells.clone()
        };
        for (ci, &pt) in todo.iter().enumerate() {
            for kind in systems_for(&o, pt.0, ci) {
                let path = &work[kind.name()];
                let keys = tpl(kind.family(), "live.keys");
                let cell = if *w == "cgi" {
                    run_cgi(&o, kind, pt.0, path, &keys)?
                } else {
                    run_cell(&o, w, kind, pt, path, &keys, o.sessions, false, &mut no_hook)?
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
        for (ci, &pt) in o.sweep_cells.iter().enumerate() {
            for kind in systems_for(&o, pt.0, ci) {
                let path = dir.path().join(format!("sweep-{}.{}", kind.name(), kind.ext()));
                copy_db(&tpl(kind.family(), "sweep"), &path)?;
                let keys = tpl(kind.family(), "sweep.keys");
                let cell =
                    run_cell(&o, "sweep", kind, pt, &path, &keys, o.sessions, true, &mut no_hook)?;
                eprintln!("{}", report::line(&cell));
                cells.push(cell);
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    if want("scale") && o.big > 0 {
        // sessiondb MultiProcess at `sessions` and at `big`, the two cells of each workload and
        // cell next to each other.
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
            for &pt in &o.scale_cells {
                for (path, keys, n) in
                    [(&a, tpl("sdb", "live.keys"), o.sessions), (&b, tpl("sdb", "big.keys"), o.big)]
                {
                    let mut cell =
                        run_cell(&o, w, Kind::Multi, pt, path, &keys, n, false, &mut no_hook)?;
                    cell.workload = format!("scale-{w}");
                    eprintln!("{}", report::line(&cell));
                    cells.push(cell);
                }
            }
            let _ = std::fs::remove_file(&a);
            let _ = std::fs::remove_file(&b);
        }
    }
    let mut redis_about = None;
    if o.workloads.iter().any(|w| w.starts_with("redis-")) {
        let (c, about) = redis_run::run(&o, dir.path())?;
        cells.extend(c);
        redis_about = Some(about);
    }
    report::write_all(&o, &cells, redis_about.as_deref())?;
    eprintln!(
        "compare: took {:.1} min (estimated {:.1} min)",
        began.elapsed().as_secs_f64() / 60.0,
        est.total_secs() / 60.0
    );
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

/// The hook of [`run_cell`] that does nothing.
fn no_hook(_started: bool) -> R<()> {
    Ok(())
}

/// Runs one cell; `around(true)` is called once its workers are ready (just before they are
/// told when to start), `around(false)` once they have all exited.
#[allow(clippy::too_many_arguments)]
pub(crate) fn run_cell(
    o: &Opts,
    workload: &str,
    kind: Kind,
    (procs, threads): PxT,
    path: &Path,
    keys: &Path,
    sessions: usize,
    sweep: bool,
    around: &mut dyn FnMut(bool) -> R<()>,
) -> R<Cell> {
    let mut workers = Vec::new();
    for p in 0..procs {
        // SingleProcess allows one process: its sweep runs in a thread of the worker instead.
        let wl = match (sweep, kind) {
            (true, Kind::Single) => "sweep-inproc",
            (true, _) => "web",
            _ => workload,
        };
        workers.push(spawn("worker", kind, wl, path, keys, threads, p as u64 * 7919 + 1)?);
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
    around(true)?;
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
    let mut cell = Cell::new(workload, kind, (procs, threads), sessions);
    cell.busy = busy_between(cpu0, cpu1);
    cell.swept = swept;
    let mut secs = Vec::new();
    for w in workers {
        secs.push(absorb(&mut cell, &finish(w)?)?);
    }
    cell.secs = secs.iter().sum::<f64>() / secs.len() as f64;
    around(false)?;
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
            "writes" => cell.writes += v.parse::<u64>()?,
            "batches" => {
                let (c, ops) = v.split_once('/').ok_or("bad batches")?;
                let (c0, ops0) = cell.batches.unwrap_or((0, 0));
                cell.batches = Some((c0 + c.parse::<u64>()?, ops0 + ops.parse::<u64>()?));
            }
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
    let mut cell = Cell::new("cgi", kind, (procs, 1), o.sessions);
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
