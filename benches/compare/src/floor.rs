//! The redb floor: what redb 4.5 `MultiWriter` itself does on this machine, in the same run as
//! the systems compared, with none of sessiondb's work. Each figure is an upper bound (for
//! `floor-cgi`, a lower bound on the cost) for *any* store built on redb `MultiWriter`, however
//! it lays out its tables; the targets table sets each target beside its bound.
//!
//! The file holds one table of `rows` rows: a 32-byte key (a SHA-256 of the row's number, so
//! the keys are spread like random session ids) and a 512-byte value. What each cell does:
//!
//! - `floor-write`, P processes of one thread each: every write transaction durably overwrites
//!   K random rows and does nothing else: no read, no second table, no index, no record
//!   encoding, no threads to coordinate. K = T, the most a per-process group commit of T
//!   threads can put in one commit. Requests/s is rows/s: the most saves/s such a store can
//!   commit here.
//! - `floor-write-xp`, one process, K = P × T: what a commit shared by the writers of all P
//!   processes could reach (sessiondb's group commit is per process).
//! - `floor-web`, P processes of T threads: the `web` workload on this table. Each request
//!   reads a random row in its own read transaction and, with probability `WEB_SAVE`, durably
//!   overwrites it; the saves of a process's threads share commits through a minimal group
//!   commit (a leader commits everything queued, the others wait).
//! - `floor-cgi` and `floor-cgi-noclose`, P drivers: a fresh process opens the file, reads a
//!   row, durably overwrites it and exits, through redb's clean close or leaving the handle to
//!   the OS (the cheapest exit; it leaves the file for the next writer to recover, and a
//!   read-only open refuses it until then).
//! - `floor-sweep-B`: one process, alone on a file of 2 × `rows` rows, durably removes the
//!   `rows` rows known in advance (every other row number: spread over the whole key space),
//!   B per transaction (`floor-sweep-all`: all of them in one). A real sweep must also find
//!   them (an expiry index) and remove their
//!   other records; this one only removes. Requests/s is rows removed per second; the
//!   histogram holds each commit's duration, which is how long a request writer would wait.

use std::io::{BufRead, Write};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redb::{ConcurrencyMode, Database, ReadableDatabase, TableDefinition};
use sha2::{Digest, Sha256};

use crate::hist::Hist;
use crate::opts::Opts;
use crate::systems::{Kind, R};
use crate::{Cell, Running, busy_between, copy_db, expect_ready, finish, machine_cpu};

const TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("floor");
/// Rows per transaction in the `floor-sweep-B` cells.
/// The last removes everything in one transaction: the most redb removes per second at all.
pub const SWEEP_BATCHES: [u64; 5] = [250, 1_000, 4_000, 16_000, u64::MAX];

/// The key of row `i`.
fn key(i: u64) -> [u8; 32] {
    Sha256::digest(i.to_le_bytes()).into()
}

fn open(path: &Path, mode: ConcurrencyMode) -> R<Database> {
    let mut b = redb::Builder::new();
    b.set_concurrency_mode(mode);
    Ok(b.create(path)?)
}

/// Writes a file of `rows` rows, in one transaction.
fn preload(path: &Path, rows: u64) -> R<()> {
    let _ = std::fs::remove_file(path);
    let db = open(path, ConcurrencyMode::ExclusiveWriter)?;
    let w = db.begin_write()?;
    {
        let mut t = w.open_table(TABLE)?;
        let value = [b'f'; crate::DATA];
        for i in 0..rows {
            t.insert(&key(i)[..], &value[..])?;
        }
    }
    w.commit()?;
    Ok(())
}

/// A random row number below `rows` (xorshift: cheap enough not to show).
struct Rng(u64);

impl Rng {
    fn below(&mut self, rows: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % rows
    }
}

fn cell(workload: String, procs: usize, rows: u64) -> Cell {
    Cell::new(workload, Kind::Floor, (procs, 1), rows as usize)
}

fn spawn(role: &str, path: &Path, rows: u64, k: usize, seed: u64) -> R<Running> {
    let mut c = Command::new(std::env::current_exe()?);
    c.env("CMP_ROLE", role)
        .env("CMP_PATH", path)
        .env("CMP_ROWS", rows.to_string())
        .env("CMP_K", k.to_string())
        .env("CMP_SEED", seed.to_string());
    Running::start(c)
}

/// `procs` writer processes committing `k` rows per transaction (`floor-web`: of `k` threads
/// each), started together, for the cell's time.
fn write_cell(o: &Opts, name: &str, path: &Path, procs: usize, k: usize) -> R<Cell> {
    let rows = o.sessions as u64;
    let role = if name == "floor-web" { "floor-web" } else { "floor-writer" };
    let mut ws = (0..procs)
        .map(|p| spawn(role, path, rows, k, p as u64 * 7919 + 1))
        .collect::<R<Vec<_>>>()?;
    for w in &mut ws {
        expect_ready(w)?;
    }
    let cpu0 = machine_cpu();
    let start = SystemTime::now() + Duration::from_millis(200);
    let start_us = start.duration_since(UNIX_EPOCH)?.as_micros();
    for w in &mut ws {
        writeln!(w.stdin.as_mut().ok_or("stdin")?, "{start_us}")?;
    }
    let until = start + Duration::from_secs_f64(o.secs);
    std::thread::sleep(until.duration_since(SystemTime::now()).unwrap_or_default());
    for w in &mut ws {
        let _ = writeln!(w.stdin.as_mut().ok_or("stdin")?, "stop");
    }
    let mut c = cell(name.to_string(), procs, rows);
    c.busy = busy_between(cpu0, machine_cpu());
    let mut secs = Vec::new();
    for w in ws {
        secs.push(crate::absorb(&mut c, &finish(w)?)?);
    }
    c.secs = secs.iter().sum::<f64>() / secs.len() as f64;
    Ok(c)
}

/// What a floor child is given (`spawn`): the file, opened, its row count, `CMP_K` and its
/// seed.
struct Child {
    db: Database,
    rows: u64,
    k: u64,
    seed: u64,
}

impl Child {
    fn from_env() -> R<Child> {
        let path = crate::roles::env("CMP_PATH")?;
        Ok(Child {
            db: open(Path::new(&path), ConcurrencyMode::MultiWriter)?,
            rows: crate::roles::env("CMP_ROWS")?.parse()?,
            k: crate::roles::env("CMP_K")?.parse()?,
            seed: crate::roles::env("CMP_SEED")?.parse()?,
        })
    }
}

/// `floor-writer` child: commits `CMP_K` random overwrites per transaction until told to stop.
pub fn writer_role() -> R<()> {
    let Child { db, rows, k, seed } = Child::from_env()?;
    let stop = wait_for_start()?;
    let cpu0 = crate::roles::own_cpu_ms();
    let start = Instant::now();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ seed);
    let value = [b'w'; crate::DATA];
    let (mut h, mut written) = (Hist::new(), 0u64);
    while !stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        let w = db.begin_write()?;
        {
            let mut table = w.open_table(TABLE)?;
            for _ in 0..k {
                table.insert(&key(rng.below(rows))[..], &value[..])?;
            }
        }
        w.commit()?;
        h.record(t.elapsed().as_nanos() as u64);
        written += k;
    }
    print_result(written, start, cpu0, &h);
    Ok(())
}

/// The `result` line a child ends with, in the form `absorb` reads.
fn print_result(requests: u64, start: Instant, cpu0: u64, hist: &Hist) {
    println!(
        "result requests={requests} conflicts=0 secs={:.4} cpu_ms={} hwm_kb={} hist={}",
        start.elapsed().as_secs_f64(),
        crate::roles::own_cpu_ms() - cpu0,
        crate::roles::hwm_kb(),
        hist.encode()
    );
}

/// The shared part of a minimal group commit: savers queue their keys; one of them at a time
/// commits everything queued in one transaction while the others wait for it.
#[derive(Default)]
struct Queue {
    keys: Vec<[u8; 32]>,
    leading: bool,
    /// The number of the batch that keys queued now will join; batches below `done` are
    /// committed.
    open: u64,
    done: u64,
    failed: Option<String>,
}

/// Durably overwrites row `key`, sharing the transaction with the savers queued meanwhile.
fn save(db: &Database, q: &(Mutex<Queue>, Condvar), key: [u8; 32]) -> R<()> {
    let (lock, cv) = q;
    let mut g = lock.lock().map_err(|_| "floor queue poisoned")?;
    g.keys.push(key);
    let mine = g.open;
    loop {
        if let Some(e) = &g.failed {
            return Err(e.clone().into());
        }
        if g.done > mine {
            return Ok(());
        }
        if g.leading {
            g = cv.wait(g).map_err(|_| "floor queue poisoned")?;
            continue;
        }
        g.leading = true;
        let keys = std::mem::take(&mut g.keys);
        let this = g.open;
        g.open += 1;
        drop(g);
        let result = (|| -> R<()> {
            let w = db.begin_write()?;
            {
                let mut table = w.open_table(TABLE)?;
                for k in &keys {
                    table.insert(&k[..], &[b's'; crate::DATA][..])?;
                }
            }
            w.commit()?;
            Ok(())
        })();
        g = lock.lock().map_err(|_| "floor queue poisoned")?;
        g.leading = false;
        g.done = this + 1;
        if let Err(e) = result {
            g.failed = Some(e.to_string());
        }
        cv.notify_all();
    }
}

/// `floor-web` child: `CMP_K` threads, each request reads a random row and, with probability
/// `WEB_SAVE`, durably overwrites it through the group commit above.
pub fn web_role() -> R<()> {
    let Child { db, rows, k: threads, seed } = Child::from_env()?;
    let stop = wait_for_start()?;
    let cpu0 = crate::roles::own_cpu_ms();
    let start = Instant::now();
    let queue = (Mutex::new(Queue::default()), Condvar::new());
    let per_thread: Vec<R<(u64, Hist)>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|t| {
                let (db, queue, stop) = (&db, &queue, &stop);
                s.spawn(move || -> R<(u64, Hist)> {
                    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (seed * 1000 + t));
                    let (mut h, mut n) = (Hist::new(), 0u64);
                    while !stop.load(Ordering::Relaxed) {
                        let t0 = Instant::now();
                        let k = key(rng.below(rows));
                        {
                            let r = db.begin_read()?;
                            let table = r.open_table(TABLE)?;
                            let v = table.get(&k[..])?.ok_or("floor row missing")?;
                            std::hint::black_box(v.value().len());
                        }
                        // WEB_SAVE of the requests save: compare a uniform draw with it.
                        if (rng.below(1 << 20) as f64) < crate::WEB_SAVE * f64::from(1 << 20) {
                            save(db, queue, k)?;
                        }
                        h.record(t0.elapsed().as_nanos() as u64);
                        n += 1;
                    }
                    Ok((n, h))
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("floor web thread")).collect()
    });
    let (mut hist, mut n) = (Hist::new(), 0u64);
    for r in per_thread {
        let (a, h) = r?;
        n += a;
        hist.merge(&h);
    }
    print_result(n, start, cpu0, &hist);
    Ok(())
}

/// Says `ready`, waits for the start time on stdin, and returns the flag that the next line
/// (`stop`, or the parent going away) sets.
fn wait_for_start() -> R<Arc<AtomicBool>> {
    println!("ready");
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let start_us: u128 = line.trim().parse()?;
    let now_us = SystemTime::now().duration_since(UNIX_EPOCH)?.as_micros();
    std::thread::sleep(Duration::from_micros(start_us.saturating_sub(now_us) as u64));
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::spawn(move || {
        let mut l = String::new();
        let _ = std::io::stdin().lock().read_line(&mut l);
        flag.store(true, Ordering::SeqCst);
    });
    Ok(stop)
}

/// `floor-cgi` child: open, read a row, overwrite it durably, exit (`CMP_K`: 1 closes, 0 leaves
/// the handle to the OS).
pub fn cgi_role() -> R<()> {
    let Child { db, rows, k, seed } = Child::from_env()?;
    let close = k == 1;
    let k = key(Rng(0x9E37_79B9_7F4A_7C15 ^ (seed + 1)).below(rows));
    {
        let r = db.begin_read()?;
        let t = r.open_table(TABLE)?;
        let v = t.get(&k[..])?.ok_or("floor row missing")?;
        std::hint::black_box(v.value().len());
    }
    let w = db.begin_write()?;
    w.open_table(TABLE)?.insert(&k[..], &[b'c'; crate::DATA][..])?;
    w.commit()?;
    if close {
        drop(db);
    } else {
        std::mem::forget(db);
    }
    Ok(())
}

/// `procs` drivers running fresh `floor-cgi` processes back to back for the cell's time.
fn cgi_cell(o: &Opts, name: &str, path: &Path, procs: usize, close: bool) -> R<Cell> {
    let rows = o.sessions as u64;
    let exe = std::env::current_exe()?;
    let mut c = cell(name.to_string(), procs, rows);
    crate::drive(&mut c, o.secs, &|p, n| {
        let mut c = Command::new(&exe);
        c.env("CMP_ROLE", "floor-cgi")
            .env("CMP_PATH", path)
            .env("CMP_ROWS", rows.to_string())
            .env("CMP_K", if close { "1" } else { "0" })
            .env("CMP_SEED", (p as u64 * 1_000_003 + n).to_string());
        c
    })?;
    Ok(c)
}

/// Removes rows 0, 2, 4, ... of a fresh copy of the sweep template, `batch` per transaction.
fn sweep_cell(tpl: &Path, path: &Path, rows: u64, batch: u64) -> R<Cell> {
    copy_db(tpl, path)?;
    let db = open(path, ConcurrencyMode::MultiWriter)?;
    let name = if batch >= rows { "all".to_string() } else { batch.to_string() };
    let mut c = cell(format!("floor-sweep-{name}"), 1, rows);
    let t0 = Instant::now();
    let mut next = 0u64;
    while next < rows {
        let t = Instant::now();
        let w = db.begin_write()?;
        {
            let mut table = w.open_table(TABLE)?;
            for i in next..next.saturating_add(batch).min(rows) {
                table.remove(&key(2 * i)[..])?.ok_or("floor sweep: row missing")?;
            }
        }
        w.commit()?;
        c.hist.record(t.elapsed().as_nanos() as u64);
        next = next.saturating_add(batch);
    }
    let secs = t0.elapsed().as_secs_f64();
    c.requests = rows;
    c.secs = secs;
    c.swept = Some((rows, secs));
    drop(db);
    let _ = std::fs::remove_file(path);
    Ok(c)
}

/// Every floor cell: writes at each cell P×T of the request workloads (K = T, and K = P × T in
/// one process), CGI requests at each `cgi` P (closing, and leaving the handle), and the sweep
/// at each batch size.
pub fn run(o: &Opts, dir: &Path) -> R<Vec<Cell>> {
    let rows = o.sessions as u64;
    let t = Instant::now();
    let live = dir.join("tpl-floor-live");
    preload(&live, rows)?;
    eprintln!("  preloaded floor: {rows} rows in {:.1} s", t.elapsed().as_secs_f64());
    let work = dir.join("floor.redb");
    let mut cells = Vec::new();
    for &(procs, threads) in &o.cells {
        copy_db(&live, &work)?;
        let mut todo = vec![("floor-write", procs, threads), ("floor-web", procs, threads)];
        if procs > 1 {
            todo.push(("floor-write-xp", 1, procs * threads));
        }
        for (name, p, k) in todo {
            let mut c = write_cell(o, name, &work, p, k)?;
            (c.procs, c.threads) = (procs, threads);
            eprintln!("{}", crate::report::line(&c));
            cells.push(c);
        }
    }
    for &procs in &o.cgi_procs {
        for (name, close) in [("floor-cgi", true), ("floor-cgi-noclose", false)] {
            // Start each from a cleanly closed file: the no-close cell leaves it for repair.
            copy_db(&live, &work)?;
            let c = cgi_cell(o, name, &work, procs, close)?;
            eprintln!("{}", crate::report::line(&c));
            cells.push(c);
        }
    }
    let _ = std::fs::remove_file(&work);
    let _ = std::fs::remove_file(&live);
    let sweep_tpl = dir.join("tpl-floor-sweep");
    preload(&sweep_tpl, 2 * rows)?;
    // A batch of all the rows or more is the `all` cell: run it once.
    for batch in SWEEP_BATCHES.into_iter().filter(|&b| b < rows || b == u64::MAX) {
        let c = sweep_cell(&sweep_tpl, &dir.join("floor-sweep.redb"), rows, batch)?;
        eprintln!("{}", crate::report::line(&c));
        cells.push(c);
    }
    let _ = std::fs::remove_file(&sweep_tpl);
    Ok(cells)
}
