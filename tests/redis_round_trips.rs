//! Round trips per operation of the Redis engine (feature `redis`), counted by the engine
//! ([`RedisEngine::round_trips`]), as docs/redis.md's table states them: a load is one round
//! trip, a save after a load one (the compare-and-set on what the load read), a save without
//! one two (read, compare-and-set), a touch two, a create one (two with a user).
//! The times printed are for information; nothing here asserts a speed.
#![cfg(feature = "redis")]

mod common;

use std::sync::Arc;
use std::time::Instant;

use common::redis::{redis_available, shared_server};
use sessiondb::{Engine, Error, ManualClock, NewSession, RedisEngine, Save};

fn counted<T>(e: &RedisEngine, f: impl FnOnce() -> Result<T, Error>) -> Result<(T, u64), Error> {
    let before = e.round_trips();
    let out = f()?;
    Ok((out, e.round_trips() - before))
}

#[test]
fn round_trips_per_operation() -> Result<(), Error> {
    if !redis_available() {
        return Ok(());
    }
    let clock = ManualClock::new(common::T0);
    let e = RedisEngine::builder(&shared_server().url())
        .prefix("round-trips")
        .clock(Arc::new(clock.clone()))
        .open()?;
    let (c, create) = counted(&e, || e.create_with(NewSession::new(b"data", b"state")))?;
    let (_, create_user) =
        counted(&e, || e.create_with(NewSession::new(b"data", b"state").user(b"ann")))?;
    let (got, load) = counted(&e, || e.load(&c.id, &c.token))?;
    let (s, save) =
        counted(&e, || e.store_state(&c.id, &c.token, Save::new(got.version, b"d2", b"s2")))?;
    let ((), touch) = counted(&e, || e.touch(&c.id, &c.token))?;
    clock.advance(60_000); // past the touch resolution: the load writes the access time
    let (_, load_touching) = counted(&e, || e.load(&c.id, &c.token))?;
    let (_, regenerate) =
        counted(&e, || e.regenerate(&c.id, &c.token, std::time::Duration::from_secs(5)))?;
    // A save that no load of this engine read before: it reads first.
    let other = RedisEngine::builder(&shared_server().url())
        .prefix("round-trips")
        .clock(Arc::new(clock.clone()))
        .open()?;
    let c2 = e.create_with(NewSession::new(b"data", b"state"))?;
    let (_, cold_save) =
        counted(&other, || other.store_state(&c2.id, &c2.token, Save::new(1, b"d2", b"s2")))?;
    println!(
        "round trips: create {create}, create with user {create_user}, load {load}, \
         load that touches {load_touching}, save after a load {save}, save without one \
         {cold_save}, touch {touch}, regenerate {regenerate}"
    );
    assert_eq!(
        (create, create_user, load, load_touching, save, cold_save, touch),
        (1, 2, 1, 2, 1, 2, 2),
        "docs/redis.md states these"
    );
    assert_eq!(s.version, 2);

    // What a load remembered is only a hint: another process's save in between makes the
    // compare-and-set fail, and the save reads again and is refused as stale.
    let got = e.load(&c2.id, &c2.token)?; // remembers version 2
    other.store_state(&c2.id, &c2.token, Save::new(got.version, b"theirs", b""))?;
    let (res, stale) =
        counted(&e, || Ok(e.store_state(&c2.id, &c2.token, Save::new(got.version, b"mine", b""))))?;
    assert!(matches!(res, Err(Error::Conflict { expected: 2, found: 3 })), "{res:?}");
    assert_eq!(stale, 2, "the failed compare-and-set, then the read");
    assert_eq!(e.load(&c2.id, &c2.token)?.session_data, b"theirs");
    // A touch by another process in between (no new version): the save goes through.
    let got = e.load(&c2.id, &c2.token)?;
    clock.advance(120_000);
    other.touch(&c2.id, &c2.token)?;
    let (res, after_touch) =
        counted(&e, || e.store_state(&c2.id, &c2.token, Save::new(got.version, b"mine", b"")))?;
    assert_eq!((res.version, after_touch), (got.version + 1, 3), "CAS, read, CAS");
    assert_eq!(e.load(&c2.id, &c2.token)?.session_data, b"mine");

    // Times on this machine's server, for information.
    let c = e.create_with(NewSession::new(b"data", b"state"))?;
    let n = 2000;
    let start = Instant::now();
    for _ in 0..n {
        e.load(&c.id, &c.token)?;
    }
    let load_us = start.elapsed().as_micros() / n;
    let mut version = e.load(&c.id, &c.token)?.version;
    let start = Instant::now();
    for _ in 0..n {
        version = e.store_state(&c.id, &c.token, Save::session_only(version, b"d"))?.version;
    }
    let save_us = start.elapsed().as_micros() / n;
    // A bare GET and SET of a value as large, on a connection of the redis crate, for the
    // engine's overhead.
    let client = redis::Client::open(shared_server().url()).expect("client");
    let mut con = client.get_connection().expect("connection");
    let value = vec![0u8; 200];
    redis::cmd("SET").arg("round-trips:bare").arg(&value).exec(&mut con).expect("SET");
    let start = Instant::now();
    for _ in 0..n {
        let _: Vec<u8> = redis::cmd("GET").arg("round-trips:bare").query(&mut con).expect("GET");
    }
    let get_us = start.elapsed().as_micros() / n;
    let start = Instant::now();
    for _ in 0..n {
        redis::cmd("SET").arg("round-trips:bare").arg(&value).exec(&mut con).expect("SET");
    }
    let set_us = start.elapsed().as_micros() / n;
    println!(
        "mean over {n}: load {load_us} µs, save {save_us} µs; bare GET {get_us} µs, SET {set_us} µs"
    );
    Ok(())
}
