//! Typed faults of the Redis engine on real servers, beyond those of `tests/redis_engine.rs`
//! (down, out of memory, read-only): a standalone engine on one node of a Cluster meets
//! `MOVED`; a Cluster that lost a master answers `CLUSTERDOWN`; a server restarting answers
//! `LOADING`. Each error says what to do, and a request retried once the server is back sees
//! every acknowledged save. Each test runs servers of its own (it kills nodes).
#![cfg(feature = "redis")]

mod common;

use std::time::{Duration, Instant};

use common::redis::{RedisCluster, RedisServer, redis_available};
use sessiondb::{Engine, Error, NewSession, RedisEngine, Save, ServerErrorKind};

/// Calls `f` until it succeeds or `limit` passes; what it returned last.
fn retry<T>(limit: Duration, mut f: impl FnMut() -> Result<T, Error>) -> Result<T, Error> {
    let start = Instant::now();
    loop {
        match f() {
            Err(_) if start.elapsed() < limit => {
                std::thread::sleep(Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

#[test]
fn a_standalone_engine_on_one_cluster_node_is_told_to_use_the_cluster() -> Result<(), Error> {
    if !redis_available() {
        return Ok(());
    }
    let cluster = RedisCluster::start();
    let e = RedisEngine::builder(&cluster.urls()[0]).open()?;
    // A drawn id lands on another node's slot two times in three.
    let moved = (0..40).find_map(|_| e.create_with(NewSession::new(b"x", b"")).err());
    match moved {
        Some(err @ Error::Server { kind: ServerErrorKind::Moved, .. }) => {
            assert!(!err.is_refusal());
            let msg = err.to_string();
            assert!(msg.contains("cluster_builder") && msg.contains("redis+cluster://"), "{msg}");
        }
        other => panic!("expected Moved, got {other:?}"),
    }
    Ok(())
}

#[test]
fn a_cluster_that_lost_a_master_is_cluster_down_and_loses_nothing_once_whole() -> Result<(), Error>
{
    if !redis_available() {
        return Ok(());
    }
    let mut cluster = RedisCluster::start_with(&[
        ("appendonly", "yes"),
        ("appendfsync", "always"),
        ("cluster-node-timeout", "1000"),
    ]);
    let urls = cluster.urls();
    let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
    let e = RedisEngine::cluster_builder(&urls).open()?;
    let sessions: Vec<_> = (0..12)
        .map(|i| {
            let c = e.create_with(NewSession::new(b"v1", b""))?;
            let data = format!("saved {i}");
            e.store_state(&c.id, &c.token, Save::session_only(c.version, data.as_bytes()))?;
            Ok((c, data))
        })
        .collect::<Result<_, Error>>()?;

    cluster.nodes()[2].kill();
    // Once the others mark it failed (after the node timeout), they refuse every key.
    let start = Instant::now();
    // Keys of its slots are unreachable; the others' are refused with CLUSTERDOWN.
    let down = 'wait: loop {
        for (c, _) in &sessions {
            match e.load(&c.id, &c.token) {
                Err(err @ Error::Server { kind: ServerErrorKind::ClusterDown, .. }) => {
                    break 'wait err;
                }
                Ok(_) | Err(Error::Server { .. }) => {}
                Err(other) => panic!("{other:?}"),
            }
        }
        assert!(start.elapsed() < Duration::from_secs(15), "no CLUSTERDOWN within 15 s");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(!down.is_refusal());
    assert!(down.to_string().contains("retry once it is whole"), "{down}");

    cluster.nodes()[2].start_again();
    for (c, data) in &sessions {
        let got = retry(Duration::from_secs(15), || e.load(&c.id, &c.token))?;
        assert_eq!(got.session_data, data.as_bytes(), "an acknowledged save was lost");
    }
    Ok(())
}

#[test]
fn a_server_loading_its_data_says_retry_and_a_retry_loses_nothing() -> Result<(), Error> {
    if !redis_available() {
        return Ok(());
    }
    // Loading takes a while: 20 000 keys, 50 µs each, answering meanwhile.
    let mut server = RedisServer::start(&[
        ("appendonly", "yes"),
        ("appendfsync", "always"),
        ("key-load-delay", "50"),
        ("loading-process-events-interval-bytes", "1024"),
    ]);
    server.cli(&["eval", "for i = 1, 20000 do redis.call('SET', 'filler' .. i, 'x') end", "0"]);
    let e = RedisEngine::builder(&server.url()).open()?;
    let c = e.create_with(NewSession::new(b"v1", b"s0"))?;
    let saved = e.store_state(&c.id, &c.token, Save::new(c.version, b"v2", b"s1"))?;

    server.kill();
    server.start_again_no_wait();
    let start = Instant::now();
    let loading = loop {
        match e.load(&c.id, &c.token) {
            Err(err @ Error::Server { kind: ServerErrorKind::Loading, .. }) => break err,
            Err(Error::Server { kind: ServerErrorKind::Unreachable, .. }) => {}
            other => panic!("expected Loading, got {other:?}"),
        }
        assert!(start.elapsed() < Duration::from_secs(10), "no LOADING within 10 s");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!loading.is_refusal());
    assert!(loading.to_string().contains("retry in a moment"), "{loading}");

    server.wait_until_ready();
    let got = retry(Duration::from_secs(5), || e.load(&c.id, &c.token))?;
    assert_eq!((got.version, got.session_data.as_slice()), (saved.version, &b"v2"[..]));
    assert_eq!(got.state_data, b"s1");
    Ok(())
}
