//! A minimal reproduction using redb alone (no sessiondb): what a read transaction and a
//! durable commit cost in `ConcurrencyMode::MultiWriter` against `ExclusiveWriter`, in one
//! process, with 1 and 4 threads.
//!
//! `cargo run --release --bin redb_repro [ROWS] [SECS]` (default 100000 rows of 512 bytes,
//! 2 s per measurement). Each read: `begin_read`, `open_table`, one `get` of a random key.
//! Each write: `begin_write`, one `insert` of 512 bytes, `commit` (durable, the default).
//! Run it under `strace -f -c` to count the syscalls behind each (fcntl locks, preads,
//! fdatasyncs).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redb::{ConcurrencyMode, Database, ReadableDatabase, TableDefinition};

const T: TableDefinition<u64, &[u8]> = TableDefinition::new("t");

fn open(path: &std::path::Path, mode: ConcurrencyMode) -> Database {
    let mut b = redb::Builder::new();
    b.set_concurrency_mode(mode);
    b.create(path).expect("open")
}

fn run(db: &Database, threads: usize, secs: f64, rows: u64, write: bool) -> f64 {
    let stop = AtomicBool::new(false);
    let done = AtomicU64::new(0);
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let (db, stop, done) = (db, &stop, &done);
            s.spawn(move || {
                let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ (t as u64 + 1);
                let data = [5u8; 512];
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let k = x % rows;
                    if write {
                        let w = db.begin_write().expect("begin_write");
                        w.open_table(T).expect("table").insert(k, &data[..]).expect("insert");
                        w.commit().expect("commit");
                    } else {
                        let r = db.begin_read().expect("begin_read");
                        let v = r.open_table(T).expect("table").get(k).expect("get");
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

fn main() {
    let mut args = std::env::args().skip(1);
    let rows: u64 = args.next().map_or(100_000, |a| a.parse().expect("ROWS"));
    let secs: f64 = args.next().map_or(2.0, |a| a.parse().expect("SECS"));
    // Optional: `multi-read`, `multi-write`, `exclusive-read`, `exclusive-write` runs that one
    // line only (1 thread) and prints the operation count, for `strace -c`.
    let only = args.next();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("repro.redb");
    {
        let db = open(&path, ConcurrencyMode::ExclusiveWriter);
        let w = db.begin_write().expect("begin_write");
        {
            let mut t = w.open_table(T).expect("table");
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
            other => panic!("unknown {other}"),
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
}
