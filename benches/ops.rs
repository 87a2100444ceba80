//! Micro-benchmarks of the core operations, in both sharing modes.
//!
//! `cargo bench --bench ops`. Every write is a durable commit, so write numbers measure the
//! disk's sync rate as much as sessiondb; compare modes and operations within one run.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use sessiondb::{Created, Save, Sharing, Store};

const SESSIONS: usize = 10_000;
const DATA: usize = 512;

fn open(dir: &tempfile::TempDir, sharing: Sharing) -> Store {
    Store::builder(dir.path().join("bench.redb"))
        .sharing(sharing)
        .idle_timeout(None)
        .open()
        .expect("open")
}

/// A store holding `SESSIONS` sessions of `DATA` bytes (one durable commit each).
fn populated(sharing: Sharing) -> (tempfile::TempDir, Store, Vec<Created>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir, sharing);
    let data = vec![7u8; DATA];
    let made = (0..SESSIONS).map(|_| store.create(&data, &data).expect("create")).collect();
    (dir, store, made)
}

fn modes() -> [(Sharing, &'static str); 2] {
    [(Sharing::MultiProcess, "multi_process"), (Sharing::SingleProcess, "single_process")]
}

fn ops(c: &mut Criterion) {
    let data = vec![9u8; DATA];
    let mut group = c.benchmark_group("ops");
    group.sample_size(20).measurement_time(Duration::from_secs(3));
    for (sharing, name) in modes() {
        let (_dir, store, made) = populated(sharing);
        // Each session's current version: every save states it, so none is a conflict.
        let mut versions: Vec<u64> = made.iter().map(|s| s.version).collect();
        let mut i = 0usize;
        let mut next = || {
            i = (i + 7919) % made.len();
            i
        };
        group.bench_function(BenchmarkId::new("load", name), |b| {
            b.iter(|| {
                let s = &made[next()];
                black_box(store.load(&s.id, &s.token).expect("load"));
            });
        });
        group.bench_function(BenchmarkId::new("store_state", name), |b| {
            b.iter(|| {
                let k = next();
                let s = &made[k];
                let save = Save::new(versions[k], &data, &data);
                let stored = store.store_state(&s.id, &s.token, save).expect("save");
                versions[k] = stored.version;
                black_box(stored);
            });
        });
        group.bench_function(BenchmarkId::new("create", name), |b| {
            b.iter(|| black_box(store.create(&data, &data).expect("create")));
        });
    }
    group.finish();
}

fn codec(c: &mut Criterion) {
    let value: (String, Vec<u32>, [u8; 32]) = ("user=ann".into(), (0..64).collect(), [1; 32]);
    let bytes = sessiondb::encode(&value).expect("encode");
    c.bench_function("codec/encode", |b| b.iter(|| sessiondb::encode(black_box(&value))));
    c.bench_function("codec/decode", |b| {
        b.iter(|| sessiondb::decode::<(String, Vec<u32>, [u8; 32])>(black_box(&bytes)));
    });
}

criterion_group!(benches, ops, codec);
criterion_main!(benches);
