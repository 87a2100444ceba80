//! Micro-benchmarks of the core operations, in both sharing modes.
//!
//! `cargo bench --bench ops`. Every write is a durable commit, so write numbers measure the
//! disk's sync rate as much as sessiondb; compare modes and operations within one run.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};
use sessiondb::web::{ClientInfo, ManagerConfig, SessionManager};
use sessiondb::{Created, Error, Save, Sharing, Store};

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

/// What the lock a lockless `SessionManager::handle` takes around its save costs
/// (`cargo bench --bench ops -- handle/`): the uncontended session lock alone, in a store that
/// has its lock file open and in a fresh store (a CGI process's one lock), and a writing and
/// a read-only `handle` request next to the same request through `begin` + `finish`, which
/// take no lock. The requests run on an in-memory image (no disk sync), so that the lock's
/// cost is not lost in the sync's noise; the session locks are the files beside the path.
fn handle(c: &mut Criterion) {
    let mut group = c.benchmark_group("handle");
    group.sample_size(20).measurement_time(Duration::from_secs(3));
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir, Sharing::MultiProcess);
    let made = store.create(&[1; 8], b"").expect("create");
    let wait = Duration::from_secs(1);
    group.bench_function("session_lock", |b| {
        b.iter(|| drop(black_box(store.lock(&made.id, wait).expect("lock"))));
    });
    group.bench_function("session_lock_fresh_store", |b| {
        b.iter_batched(
            || open(&dir, Sharing::MultiProcess),
            |fresh| {
                drop(black_box(fresh.lock(&made.id, wait).expect("lock")));
                fresh // dropped (closed) outside the timing
            },
            BatchSize::PerIteration,
        );
    });
    let memory = Store::builder(dir.path().join("memory.redb"))
        .backend(redb::backends::InMemoryBackend::new())
        .sharing(Sharing::SingleProcess)
        .group_commit(false)
        .idle_timeout(None)
        .open()
        .expect("open in memory");
    let manager = SessionManager::new(memory, ManagerConfig::default()).expect("manager");
    let made = manager.store().create(&[1; 8], b"").expect("create");
    let client = ClientInfo::with_cookie(format!("sessiondb={}.{}", made.id, made.token.as_str()));
    let count = |data: &[u8]| u64::from_le_bytes(data.try_into().expect("counter"));
    group.bench_function("write/handle", |b| {
        b.iter(|| {
            let handled = manager.handle(&client, |req| {
                req.set_data((count(req.data()) + 1).to_le_bytes().to_vec());
                Ok::<_, Error>(())
            });
            black_box(handled.expect("handle"));
        });
    });
    group.bench_function("write/begin_finish", |b| {
        b.iter(|| {
            let mut req = manager.begin(&client).expect("begin");
            req.set_data((count(req.data()) + 1).to_le_bytes().to_vec());
            black_box(manager.finish(req).expect("finish"));
        });
    });
    group.bench_function("read/handle", |b| {
        b.iter(|| black_box(manager.handle(&client, |req| Ok::<_, Error>(count(req.data())))));
    });
    group.bench_function("read/begin_finish", |b| {
        b.iter(|| {
            let req = manager.begin(&client).expect("begin");
            black_box(count(req.data()));
            black_box(manager.finish(req).expect("finish"));
        });
    });
    group.finish();
}

criterion_group!(benches, ops, codec, handle);
criterion_main!(benches);
