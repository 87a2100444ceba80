//! The Redis engine across processes that share nothing but the server, as web servers on
//! several machines would: each in a working directory of its own, incrementing one session's
//! counter with the version it read, lose no update; and a server killed and restarted mid-run
//! with `appendfsync always` loses no acknowledged save, and with `everysec` loses at most the
//! saves acknowledged in the last two seconds before the kill.
#![cfg(feature = "redis")]

mod common;

use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::redis::{RedisServer, redis_available};
use sessiondb::{Engine, Error, NewSession, RedisEngine, Save, SecureToken, SessionId};

/// The counter a session holds.
fn count(data: &[u8]) -> u64 {
    u64::from_le_bytes(data.try_into().expect("8 bytes"))
}

/// One increment with the version read, retried on `Conflict` and, with `through_failures`,
/// on a server that is away. Whether a failed attempt may have been applied (its answer was
/// lost) is counted in `ambiguous`.
fn increment(
    e: &RedisEngine,
    id: &SessionId,
    token: &SecureToken,
    through_failures: bool,
    ambiguous: &AtomicU64,
) {
    loop {
        let got = match e.load(id, token) {
            Ok(got) => got,
            Err(Error::Server { .. }) if through_failures => {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            Err(other) => panic!("load: {other:?}"),
        };
        let next = (count(&got.session_data) + 1).to_le_bytes();
        match e.store_state(id, token, Save::session_only(got.version, &next)) {
            Ok(_) => return,
            Err(Error::Conflict { .. }) => {}
            Err(Error::Server { .. }) if through_failures => {
                ambiguous.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(other) => panic!("save: {other:?}"),
        }
    }
}

/// A worker process (run by `processes_in_their_own_directories_lose_no_update`).
#[test]
#[ignore = "a child process of another test"]
fn worker() -> Result<(), Error> {
    let var = |name: &str| std::env::var(name).expect(name);
    let e = RedisEngine::from_url(&var("SESSIONDB_URL"))?;
    let id = SessionId::parse(&var("SESSION_ID"))?;
    let token = SecureToken::parse(&var("SESSION_TOKEN"))?;
    let n: u64 = var("INCREMENTS").parse().expect("a number");
    let ambiguous = AtomicU64::new(0);
    for _ in 0..n {
        increment(&e, &id, &token, false, &ambiguous);
    }
    Ok(())
}

#[test]
fn processes_in_their_own_directories_lose_no_update() -> Result<(), Error> {
    if !redis_available() {
        return Ok(());
    }
    let server = RedisServer::start(&[("appendonly", "yes"), ("appendfsync", "always")]);
    let e = RedisEngine::from_url(&server.url())?;
    let c = e.create_with(NewSession::new(&0u64.to_le_bytes(), b""))?;
    let (processes, each) = (4, 25);
    let dirs: Vec<_> = (0..processes).map(|_| tempfile::tempdir().expect("a directory")).collect();
    let children: Vec<_> = dirs
        .iter()
        .map(|dir| {
            Command::new(std::env::current_exe().expect("the test binary"))
                .args(["--ignored", "--exact", "worker", "--test-threads=1"])
                .current_dir(dir.path())
                .env("SESSIONDB_URL", server.url())
                .env("SESSION_ID", c.id.as_str())
                .env("SESSION_TOKEN", c.token.as_str())
                .env("INCREMENTS", each.to_string())
                .stdout(Stdio::null())
                .spawn()
                .expect("spawn a worker")
        })
        .collect();
    for mut child in children {
        assert!(child.wait()?.success(), "a worker failed");
    }
    let got = e.load(&c.id, &c.token)?;
    assert_eq!(count(&got.session_data), processes * each, "an update was lost");
    assert_eq!(got.version, 1 + processes * each);
    Ok(())
}

#[test]
fn a_restart_mid_run_with_appendfsync_always_loses_no_acknowledged_save() -> Result<(), Error> {
    if !redis_available() {
        return Ok(());
    }
    let mut server = RedisServer::start(&[("appendonly", "yes"), ("appendfsync", "always")]);
    let e = RedisEngine::from_url(&server.url())?;
    let c = e.create_with(NewSession::new(&0u64.to_le_bytes(), b""))?;
    let (acked, ambiguous, done) = (AtomicU64::new(0), AtomicU64::new(0), AtomicBool::new(false));
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                while !done.load(Ordering::Relaxed) {
                    increment(&e, &c.id, &c.token, true, &ambiguous);
                    acked.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        std::thread::sleep(Duration::from_millis(300));
        server.restart(); // SIGKILL, then the same port and directory
        std::thread::sleep(Duration::from_millis(300));
        done.store(true, Ordering::Relaxed);
    });
    let got = e.load(&c.id, &c.token).or_else(|_| e.load(&c.id, &c.token))?;
    let (acked, ambiguous, stored) =
        (acked.into_inner(), ambiguous.into_inner(), count(&got.session_data));
    println!("acknowledged {acked}, unanswered {ambiguous}, stored {stored}");
    assert!(acked > 0);
    assert!(stored >= acked, "an acknowledged save was lost: {stored} < {acked}");
    assert!(stored <= acked + ambiguous, "{stored} > {acked} + {ambiguous}");
    Ok(())
}

/// How far before a kill an acknowledged save may be lost with `appendfsync everysec`: Redis
/// fsyncs the append-only file once a second, and postpones its writes for up to two seconds
/// while a slow fsync runs (docs/redis.md, "Durability").
const EVERYSEC_BOUND: Duration = Duration::from_secs(2);

#[test]
fn a_restart_mid_run_with_appendfsync_everysec_loses_at_most_the_last_two_seconds()
-> Result<(), Error> {
    if !redis_available() {
        return Ok(());
    }
    let mut server = RedisServer::start(&[("appendonly", "yes"), ("appendfsync", "everysec")]);
    let e = RedisEngine::from_url(&server.url())?;
    let c = e.create_with(NewSession::new(&0u64.to_le_bytes(), b""))?;
    // Every acknowledged save: the counter it stored, and when it was acknowledged.
    let acks: Mutex<Vec<(u64, Instant)>> = Mutex::new(Vec::new());
    let (ambiguous, done) = (AtomicU64::new(0), AtomicBool::new(false));
    let mut killed_at = None;
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                while let Some(n) = increment_acked(&e, &c.id, &c.token, &ambiguous, &done) {
                    acks.lock().expect("acks").push((n, Instant::now()));
                }
            });
        }
        std::thread::sleep(Duration::from_millis(1500)); // past a few fsyncs
        server.kill(); // mid-run: saves in flight
        killed_at = Some(Instant::now());
        done.store(true, Ordering::Relaxed); // the writers stop trying
    });
    server.start_again();
    let killed_at = killed_at.expect("killed");
    let got = e.load(&c.id, &c.token).or_else(|_| e.load(&c.id, &c.token))?;
    let stored = count(&got.session_data);
    let acks = acks.into_inner().expect("acks");
    // Acknowledged saves whose counter is past what survived were lost. (A save answered
    // just before the kill may be timed just after it: 0 before the kill.)
    let lost: Vec<Duration> = acks
        .iter()
        .filter(|(n, _)| *n > stored)
        .map(|(_, at)| killed_at.saturating_duration_since(*at))
        .collect();
    let oldest_lost = lost.iter().max().copied().unwrap_or_default();
    let acked_before = acks.len();
    println!(
        "everysec: acknowledged {acked_before}, stored {stored}, lost {} (the oldest \
         acknowledged {oldest_lost:?} before the kill)",
        lost.len()
    );
    assert!(acked_before > 0);
    assert!(
        oldest_lost <= EVERYSEC_BOUND,
        "a save acknowledged {oldest_lost:?} before the kill was lost (bound {EVERYSEC_BOUND:?})"
    );
    let max_acked = acks.iter().map(|(n, _)| *n).max().unwrap_or(0);
    assert!(stored <= max_acked + ambiguous.into_inner(), "{stored} > {max_acked} + unanswered");
    Ok(())
}

/// [`increment`] through failures, returning the counter it stored; `None` once `done`.
fn increment_acked(
    e: &RedisEngine,
    id: &SessionId,
    token: &SecureToken,
    ambiguous: &AtomicU64,
    done: &AtomicBool,
) -> Option<u64> {
    while !done.load(Ordering::Relaxed) {
        let Ok(got) = e.load(id, token) else {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        let next = count(&got.session_data) + 1;
        match e.store_state(id, token, Save::session_only(got.version, &next.to_le_bytes())) {
            Ok(_) => return Some(next),
            Err(Error::Conflict { .. }) => {}
            Err(Error::Server { .. }) => {
                ambiguous.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(other) => panic!("save: {other:?}"),
        }
    }
    None
}
