//! 4 processes × 4 threads increment counters in 3 hot sessions for a few seconds, three ways:
//! optimistic versions with reload-and-retry, the merge function, and the session lock. The
//! final counters must equal the number of acknowledged increments, exactly.
//!
//! The children are this test binary, re-run with `--ignored --exact stress_child`.

use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use sessiondb::{Error, Save, SecureToken, SessionId, Store};

mod common;
use common::counter_of;

const PROCESSES: usize = 4;
const THREADS: usize = 4;
const HOT: usize = 3;
const RUN_FOR: Duration = Duration::from_millis(1500);

/// One increment of `id`'s counter by `mode`; `Ok` means the increment is committed.
fn increment(store: &Store, mode: &str, id: &SessionId, token: &SecureToken) -> Result<(), Error> {
    match mode {
        "optimistic" => loop {
            let got = store.load(id, token)?;
            let next = (counter_of(&got.session_data) + 1).to_le_bytes();
            match store.store_state(id, token, Save::new(got.version, &next, b"").same_state(true))
            {
                Ok(_) => return Ok(()),
                Err(Error::Conflict { .. }) => {}
                Err(e) => return Err(e),
            }
        },
        "merge" => loop {
            let got = store.load(id, token)?;
            let next = (counter_of(&got.session_data) + 1).to_le_bytes();
            let save = Save::new(got.version, &next, b"").same_state(true);
            // Ours is their counter + 1, whatever theirs has become.
            let merge =
                |_ours: &[u8], theirs: &[u8]| (counter_of(theirs) + 1).to_le_bytes().to_vec();
            match store.store_state_merging(id, token, save, merge) {
                Ok(_) => return Ok(()),
                Err(Error::Conflict { .. }) => {} // every merge attempt lost: start over
                Err(e) => return Err(e),
            }
        },
        "lock" => {
            let _lock = store.lock(id, Duration::from_secs(20))?;
            let got = store.load(id, token)?;
            let next = (counter_of(&got.session_data) + 1).to_le_bytes();
            // Under the lock nobody else saves this session: a conflict here is a failure.
            store.store_state(id, token, Save::new(got.version, &next, b"").same_state(true))?;
            Ok(())
        }
        other => panic!("unknown mode {other}"),
    }
}

#[test]
#[ignore = "child process of the stress tests; run by them"]
fn stress_child() {
    let path = std::env::var("SESSIONDB_STRESS_PATH").expect("run by the parent test");
    let mode = std::env::var("SESSIONDB_STRESS_MODE").unwrap();
    let sessions: Vec<(SessionId, SecureToken)> = std::env::var("SESSIONDB_STRESS_SESSIONS")
        .unwrap()
        .split(',')
        .map(|pair| {
            let (id, token) = pair.split_once(':').unwrap();
            (SessionId::parse(id).unwrap(), SecureToken::parse(token).unwrap())
        })
        .collect();
    let store = Store::builder(&path).cleanup_interval(None).open().expect("open");
    let deadline = Instant::now() + RUN_FOR;
    let acks: Vec<Vec<u64>> = thread::scope(|s| {
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let (store, mode, sessions) = (&store, &mode, &sessions);
                s.spawn(move || {
                    let mut acks = vec![0u64; sessions.len()];
                    let mut i = t;
                    while Instant::now() < deadline {
                        let (id, token) = &sessions[i % sessions.len()];
                        increment(store, mode, id, token).expect("increment");
                        acks[i % sessions.len()] += 1;
                        i += 1;
                    }
                    acks
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("worker")).collect()
    });
    for (k, _) in sessions.iter().enumerate() {
        println!("acks {k} {}", acks.iter().map(|a| a[k]).sum::<u64>());
    }
    let b = store.stats().batches;
    println!("batches commits={} ops={} largest={}", b.commits, b.operations, b.largest);
}

fn stress(mode: &str) {
    let db = common::temp_db();
    let store = Store::builder(&db.path).cleanup_interval(None).open().expect("open");
    let hot: Vec<_> =
        (0..HOT).map(|_| store.create(&0u64.to_le_bytes(), b"").expect("create")).collect();
    let arg =
        hot.iter().map(|c| format!("{}:{}", c.id, c.token.as_str())).collect::<Vec<_>>().join(",");
    let children: Vec<_> = (0..PROCESSES)
        .map(|_| {
            Command::new(std::env::current_exe().unwrap())
                .args(["--ignored", "--exact", "stress_child", "--nocapture", "--test-threads=1"])
                .env("SESSIONDB_STRESS_PATH", &db.path)
                .env("SESSIONDB_STRESS_MODE", mode)
                .env("SESSIONDB_STRESS_SESSIONS", &arg)
                .stdout(Stdio::piped())
                .spawn()
                .expect("spawn child")
        })
        .collect();
    let mut acked = [0u64; HOT];
    for child in children {
        let out = child.wait_with_output().expect("child output");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "child failed ({mode}): {text}");
        // libtest prints "test stress_child ... " before the child's first line.
        for line in
            text.lines().filter_map(|l| l.find("acks ").or(l.find("batches ")).map(|i| &l[i..]))
        {
            let mut words = line.split_whitespace();
            match words.next() {
                Some("acks") => {
                    let k: usize = words.next().unwrap().parse().unwrap();
                    acked[k] += words.next().unwrap().parse::<u64>().unwrap();
                }
                Some("batches") => eprintln!("{mode}: {line}"),
                _ => {}
            }
        }
    }
    let mut total = 0;
    for (k, c) in hot.iter().enumerate() {
        let got = store.load(&c.id, &c.token).expect("load");
        assert_eq!(counter_of(&got.session_data), acked[k], "{mode}: session {k}");
        // Each increment was one save: one version step.
        assert_eq!(got.version, 1 + acked[k], "{mode}: session {k} version");
        total += acked[k];
    }
    assert!(total > 0, "{mode}: no increment was acknowledged");
    eprintln!("{mode}: {total} increments by {PROCESSES} processes x {THREADS} threads");
}

#[test]
fn optimistic_versions_lose_no_increment() {
    stress("optimistic");
}

#[test]
fn merge_function_loses_no_increment() {
    stress("merge");
}

#[test]
fn session_lock_loses_no_increment() {
    stress("lock");
}
