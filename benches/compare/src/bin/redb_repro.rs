//! A minimal reproduction using redb alone (no sessiondb code): what a read transaction and a
//! durable commit cost in redb, and how redb's durable write throughput compares with SQLite's
//! at equal durability. Everything runs in one process, on files in one temporary directory.
//!
//! `cargo run --release --bin redb_repro [ROWS] [SECS]` (default 100000 rows of 512 bytes,
//! 2 s per measurement). Both stores are preloaded with ROWS rows (u64 key, 512-byte value),
//! each in a single transaction.
//!
//! 1. Reads and single-row commits, redb `ExclusiveWriter` and `MultiWriter`: each read is
//!    `begin_read`, `open_table`, one `get` of a random key (1 and 4 threads); each write is
//!    `begin_write`, one `insert` of 512 bytes, `commit` (durable, the default).
//! 2. Batched durable writes, one thread, K in {1, 4, 16} rows per transaction, the systems
//!    interleaved per K so that drift hits all of them:
//!    - redb `ExclusiveWriter` and `MultiWriter`: `begin_write`, K inserts (overwrites) of
//!      512 bytes at random existing keys, `commit()` (default durability: fsynced);
//!    - SQLite (rusqlite, bundled), table `t(k INTEGER PRIMARY KEY, v BLOB)`,
//!      `journal_mode=WAL`, `synchronous=FULL` (every COMMIT fsyncs the WAL, so equally
//!      durable), default `wal_autocheckpoint`: `BEGIN IMMEDIATE`, K `UPDATE`s, `COMMIT`.
//!      A `synchronous=NORMAL` line (not durable on power loss) is shown for reference.
//!
//!    It prints commits/s, rows/s, µs per commit and per row, then for each K the ratios of
//!    redb's rows/s to SQLite FULL's rows/s.
//!
//! `redb_repro ROWS SECS MODE`, MODE one of `multi-read`, `multi-write`, `exclusive-read`,
//! `exclusive-write`, runs only that line of part 1 (1 thread) and prints the operation
//! count: run it under `strace -f -c` to count the syscalls behind each (fcntl locks, preads,
//! fdatasyncs).

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redb::{ConcurrencyMode, Database, ReadableDatabase, TableDefinition};

const T: TableDefinition<u64, &[u8]> = TableDefinition::new("t");
/// Row counts per write transaction in the batched section.
const BATCHES: [u64; 3] = [1, 4, 16];

/// Xorshift64 generator: cheap enough not to show in the measurements.
struct Rng(u64);

impl Rng {
    /// A generator whose stream depends on `seed`.
    fn new(seed: u64) -> Self {
        Rng(0x9E37_79B9_7F4A_7C15u64 ^ (seed + 1))
    }

    /// The next key in `0..rows`.
    fn key(&mut self, rows: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % rows
    }
}

/// Opens (or creates) the redb file at `path` in concurrency mode `mode`.
fn open(path: &Path, mode: ConcurrencyMode) -> Database {
    let mut b = redb::Builder::new();
    b.set_concurrency_mode(mode);
    b.create(path).expect("open redb database")
}

/// Part 1: `threads` threads doing reads (or single-row durable commits) for `secs` seconds;
/// returns operations per second over all threads.
fn run(db: &Database, threads: usize, secs: f64, rows: u64, write: bool) -> f64 {
    let stop = AtomicBool::new(false);
    let done = AtomicU64::new(0);
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let (db, stop, done) = (db, &stop, &done);
            s.spawn(move || {
                let mut rng = Rng::new(t as u64);
                let data = [5u8; 512];
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let k = rng.key(rows);
                    if write {
                        let w = db.begin_write().expect("begin_write");
                        w.open_table(T).expect("open table").insert(k, &data[..]).expect("insert");
                        w.commit().expect("commit");
                    } else {
                        let r = db.begin_read().expect("begin_read");
                        let v = r.open_table(T).expect("open table").get(k).expect("get");
                        std::hint::black_box(v.map(|g| g.value().len()));
                    }
                    n += 1;
                }
                done.fetch_add(n, Ordering::Relaxed);
            });
        }
        std::thread::sleep(Duration::from_secs_f64(secs));
        stop.store(true, Ordering::Relaxed);
    });
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

/// Calls `commit_one` (one transaction) repeatedly for `secs` seconds; returns commits/s.
fn timed(secs: f64, mut commit_one: impl FnMut()) -> f64 {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        commit_one();
        n += 1;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// Part 2, redb: durable transactions of `k` random overwrites each; returns commits/s.
fn redb_batch(path: &Path, mode: ConcurrencyMode, k: u64, secs: f64, rows: u64) -> f64 {
    let db = open(path, mode);
    let mut rng = Rng::new(k);
    let data = [6u8; 512];
    timed(secs, || {
        let w = db.begin_write().expect("redb begin_write");
        {
            let mut t = w.open_table(T).expect("redb open table");
            for _ in 0..k {
                t.insert(rng.key(rows), &data[..]).expect("redb insert");
            }
        }
        w.commit().expect("redb commit");
    })
}

/// Opens the SQLite file at `path` in WAL mode with `PRAGMA synchronous=<sync>`.
fn sqlite_open(path: &Path, sync: &str) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).expect("open sqlite database");
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .expect("PRAGMA journal_mode=WAL");
    assert_eq!(mode, "wal", "SQLite refused WAL mode");
    conn.execute_batch(&format!("PRAGMA synchronous={sync}")).expect("PRAGMA synchronous");
    conn
}

/// Creates table `t` in the SQLite file at `path` and fills it with `rows` rows of 512 bytes
/// in one transaction.
fn sqlite_preload(path: &Path, rows: u64) {
    let mut conn = sqlite_open(path, "FULL");
    conn.execute_batch("CREATE TABLE t(k INTEGER PRIMARY KEY, v BLOB NOT NULL)")
        .expect("CREATE TABLE");
    let tx = conn.transaction().expect("sqlite begin");
    {
        let mut ins = tx.prepare("INSERT INTO t(k, v) VALUES (?1, ?2)").expect("prepare insert");
        for k in 0..rows {
            ins.execute(rusqlite::params![k as i64, &[1u8; 512][..]]).expect("sqlite insert");
        }
    }
    tx.commit().expect("sqlite preload commit");
}

/// Part 2, SQLite: `BEGIN IMMEDIATE`, `k` random `UPDATE`s, `COMMIT`; returns commits/s.
fn sqlite_batch(path: &Path, sync: &str, k: u64, secs: f64, rows: u64) -> f64 {
    let conn = sqlite_open(path, sync);
    let mut upd = conn.prepare("UPDATE t SET v = ?1 WHERE k = ?2").expect("prepare update");
    let mut rng = Rng::new(k);
    let data = [6u8; 512];
    timed(secs, || {
        conn.execute_batch("BEGIN IMMEDIATE").expect("sqlite BEGIN IMMEDIATE");
        for _ in 0..k {
            let key = rng.key(rows) as i64;
            let n = upd.execute(rusqlite::params![&data[..], key]).expect("sqlite update");
            assert_eq!(n, 1, "sqlite update missed key {key}");
        }
        conn.execute_batch("COMMIT").expect("sqlite COMMIT");
    })
}

fn main() {
    let mut args = std::env::args().skip(1);
    let rows: u64 = args.next().map_or(100_000, |a| a.parse().expect("ROWS: a row count"));
    let secs: f64 = args.next().map_or(2.0, |a| a.parse().expect("SECS: seconds"));
    assert!(rows > 0, "ROWS must be positive");
    // Optional: `multi-read`, `multi-write`, `exclusive-read`, `exclusive-write` runs that one
    // line only (1 thread) and prints the operation count, for `strace -c`.
    let only = args.next();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("repro.redb");
    {
        let db = open(&path, ConcurrencyMode::ExclusiveWriter);
        let w = db.begin_write().expect("begin_write");
        {
            let mut t = w.open_table(T).expect("open table");
            for k in 0..rows {
                t.insert(k, &[1u8; 512][..]).expect("insert");
            }
        }
        w.commit().expect("commit");
    }
    if let Some(only) = only {
        let (mode, write) = match only.as_str() {
            "multi-read" => (ConcurrencyMode::MultiWriter, false),
            "multi-write" => (ConcurrencyMode::MultiWriter, true),
            "exclusive-read" => (ConcurrencyMode::ExclusiveWriter, false),
            "exclusive-write" => (ConcurrencyMode::ExclusiveWriter, true),
            other => panic!("unknown MODE {other}"),
        };
        let db = open(&path, mode);
        let rate = run(&db, 1, secs, rows, write);
        println!("{only}: {:.0} operations", rate * secs);
        return;
    }
    println!("redb_repro: {rows} rows of 512 B, {secs} s per line, one process");
    for mode in [ConcurrencyMode::ExclusiveWriter, ConcurrencyMode::MultiWriter] {
        let db = open(&path, mode);
        for threads in [1, 4] {
            let reads = run(&db, threads, secs, rows, false);
            println!(
                "{mode:?} threads={threads}: {reads:>9.0} reads/s ({:.2} µs each, per thread)",
                threads as f64 * 1e6 / reads
            );
        }
        let writes = run(&db, 1, secs, rows, true);
        println!(
            "{mode:?} threads=1: {writes:>9.0} durable commits/s ({:.0} µs each)",
            1e6 / writes
        );
    }

    let sqlite = dir.path().join("repro.sqlite");
    sqlite_preload(&sqlite, rows);
    println!("\nBatched durable writes: 1 thread, K random 512 B overwrites per transaction");
    println!(
        "{:<24} {:>3} {:>10} {:>10} {:>9} {:>8}",
        "system", "K", "commits/s", "rows/s", "µs/commit", "µs/row"
    );
    // (K, commits/s of redb exclusive, redb multi, SQLite FULL) for the ratios.
    let mut ratios = Vec::new();
    for k in BATCHES {
        let excl = redb_batch(&path, ConcurrencyMode::ExclusiveWriter, k, secs, rows);
        let multi = redb_batch(&path, ConcurrencyMode::MultiWriter, k, secs, rows);
        let full = sqlite_batch(&sqlite, "FULL", k, secs, rows);
        let normal = sqlite_batch(&sqlite, "NORMAL", k, secs, rows);
        for (name, cps) in [
            ("redb ExclusiveWriter", excl),
            ("redb MultiWriter", multi),
            ("SQLite WAL FULL", full),
            ("SQLite WAL NORMAL (*)", normal),
        ] {
            let rps = cps * k as f64;
            println!(
                "{name:<24} {k:>3} {cps:>10.0} {rps:>10.0} {:>9.1} {:>8.1}",
                1e6 / cps,
                1e6 / rps
            );
        }
        ratios.push((k, excl, multi, full));
    }
    println!(
        "(*) synchronous=NORMAL does not fsync per commit: not equally durable, reference only"
    );
    println!("\nrows/s ratio, redb ÷ SQLite WAL synchronous=FULL (equal durability):");
    for (k, excl, multi, full) in ratios {
        // Same K on both sides, so the commits/s ratio is the rows/s ratio.
        println!("K={k:>2}: MultiWriter {:.2}x, ExclusiveWriter {:.2}x", multi / full, excl / full);
    }
}
