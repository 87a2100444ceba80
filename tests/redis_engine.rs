//! The Redis engine (feature `redis`) beyond the conformance suite, on real servers: damaged
//! values are `Corrupted`, never a panic; a server that is down is `Error::Server` with kind
//! `Unreachable`, and a request retried once it is back loses nothing (`appendfsync always`);
//! concurrent saves of one session lose no update; addresses and prefixes are checked.
#![cfg(feature = "redis")]

mod common;

use std::net::TcpListener;
use std::sync::Arc;
use std::thread;

use common::redis::{RedisServer, redis_available, shared_cluster, shared_server};
use sessiondb::{
    Engine, Error, ManualClock, NewSession, RedisEngine, Save, ServerErrorKind,
};

/// An engine on the shared standalone server, under a prefix of its own.
fn engine(prefix: &str) -> RedisEngine {
    RedisEngine::builder(&shared_server().url()).prefix(prefix).open().expect("open")
}

#[test]
fn a_damaged_record_state_or_tombstone_is_corrupted_never_a_panic() -> Result<(), Error> {
    if !redis_available() {
        return Ok(());
    }
    let server = shared_server();
    let e = engine("damaged");
    let c = e.create_with(NewSession::new(b"data", b"state"))?;
    let key = format!("damaged:{{{}}}", c.id);
    for garbage in ["", "x", "\u{1}abcdjunk"] {
        assert_eq!(server.cli(&["hset", &key, "r", garbage]), "0");
        let res = e.load(&c.id, &c.token);
        assert!(matches!(res, Err(Error::Corrupted { table: "sessions", .. })), "{res:?}");
        let res = e.store_state(&c.id, &c.token, Save::new(1, b"", b""));
        assert!(matches!(res, Err(Error::Corrupted { .. })), "{res:?}");
    }
    // A damaged record is removed by a revocation (with no tombstone: its token is unknown).
    assert!(e.revoke(&c.id)?);
    let res = e.load(&c.id, &c.token);
    assert!(matches!(res, Err(Error::NotFound)), "{res:?}");

    // A damaged state.
    let c = e.create_with(NewSession::new(b"data", b"state"))?;
    let key = format!("damaged:{{{}}}", c.id);
    server.cli(&["hset", &key, "s:0", "not a state"]);
    let res = e.load(&c.id, &c.token);
    assert!(matches!(res, Err(Error::Corrupted { table: "states", .. })), "{res:?}");
    // A counter that is not a number.
    server.cli(&["hset", &key, "l", "many"]);
    let res = e.load(&c.id, &c.token);
    assert!(matches!(res, Err(Error::Corrupted { .. })), "{res:?}");

    // A damaged tombstone.
    let c = e.create_with(NewSession::new(b"data", b"state"))?;
    assert!(e.revoke(&c.id)?);
    server.cli(&["set", &format!("damaged:{{{}}}:t", c.id), "junk"]);
    let res = e.load(&c.id, &c.token);
    assert!(matches!(res, Err(Error::Corrupted { table: "tombstones", .. })), "{res:?}");
    assert!(!e.revoke(&c.id)?, "a damaged tombstone ends the walk");
    Ok(())
}

#[test]
fn a_server_that_is_down_is_unreachable_and_a_retry_once_it_is_back_loses_nothing()
-> Result<(), Error> {
    if !redis_available() {
        return Ok(());
    }
    // Nobody listens on a port just released.
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let res = RedisEngine::builder(&format!("redis://127.0.0.1:{port}")).open();
    match res {
        Err(e @ Error::Server { kind: ServerErrorKind::Unreachable, .. }) => {
            assert!(!e.is_refusal());
            assert!(e.to_string().contains("is it up"), "{e}");
        }
        other => panic!("expected Unreachable, got {other:?}"),
    }

    let mut server = RedisServer::start(&[("appendonly", "yes"), ("appendfsync", "always")]);
    let e = RedisEngine::builder(&server.url()).open()?;
    let c = e.create_with(NewSession::new(b"v1", b"s0"))?;
    let saved = e.store_state(&c.id, &c.token, Save::new(c.version, b"v2", b"s1"))?;
    server.kill();
    for _ in 0..2 {
        let res = e.load(&c.id, &c.token);
        assert!(
            matches!(res, Err(Error::Server { kind: ServerErrorKind::Unreachable, .. })),
            "{res:?}"
        );
    }
    server.start_again();
    // The pooled connection died with the server: the first call may still meet it.
    let got = e.load(&c.id, &c.token).or_else(|_| e.load(&c.id, &c.token))?;
    assert_eq!((got.version, got.session_data.as_slice()), (saved.version, &b"v2"[..]));
    assert_eq!(got.state_data, b"s1");
    Ok(())
}

#[test]
fn concurrent_saves_of_one_session_lose_no_update() -> Result<(), Error> {
    if !redis_available() {
        return Ok(());
    }
    let e = Arc::new(engine("concurrent"));
    let c = e.create_with(NewSession::new(&0u64.to_le_bytes(), b""))?;
    let (threads, each) = (4, 25);
    thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                for _ in 0..each {
                    loop {
                        let got = e.load(&c.id, &c.token).expect("load");
                        let n = u64::from_le_bytes(got.session_data.try_into().expect("8 bytes"));
                        let next = (n + 1).to_le_bytes();
                        let save = Save::session_only(got.version, &next);
                        match e.store_state(&c.id, &c.token, save) {
                            Ok(_) => break,
                            Err(Error::Conflict { .. }) => {}
                            Err(other) => panic!("{other:?}"),
                        }
                    }
                }
            });
        }
    });
    let got = e.load(&c.id, &c.token)?;
    let n = u64::from_le_bytes(got.session_data.try_into().expect("8 bytes"));
    assert_eq!(n, threads * each);
    assert_eq!(got.version, 1 + threads * each);
    Ok(())
}

#[test]
fn addresses_and_prefixes_are_checked() -> Result<(), Error> {
    for bad in ["http://127.0.0.1:6379", "127.0.0.1:6379", "redis+cluster://"] {
        let res = RedisEngine::from_url(bad);
        assert!(matches!(res, Err(Error::InvalidInput(_))), "{bad}: {res:?}");
    }
    let res = RedisEngine::builder("redis://127.0.0.1:1").prefix("a{b}").open();
    assert!(matches!(res, Err(Error::InvalidInput(_))), "{res:?}");
    if !redis_available() {
        return Ok(());
    }
    // One variable names either kind of server.
    let clock = Arc::new(ManualClock::new(common::T0));
    let cluster = shared_cluster().urls();
    let nodes: Vec<&str> = cluster.iter().map(|u| u.trim_start_matches("redis://")).collect();
    for url in [shared_server().url(), format!("redis+cluster://{}", nodes.join(","))] {
        let e = RedisEngine::builder_from_url(&url)?.prefix("from-url").clock(clock.clone()).open()?;
        let c = e.create_with(NewSession::new(b"here", b""))?;
        assert_eq!(e.load(&c.id, &c.token)?.session_data, b"here", "{url}");
    }
    Ok(())
}
