//! The test servers of the Redis engine's tests (tests/common/redis.rs) do what those tests
//! rely on: a standalone server that keeps an acknowledged write across a crash with
//! `appendfsync always`, and a 3-master Cluster that spreads slots and redirects.

mod common;

use common::redis::{RedisCluster, RedisServer, cli, redis_available};

#[test]
fn a_crashed_server_with_appendfsync_always_restarts_with_its_writes() {
    if !redis_available() {
        return;
    }
    let mut server = RedisServer::start(&[("appendonly", "yes"), ("appendfsync", "always")]);
    assert_eq!(server.cli(&["set", "k", "v1"]), "OK");
    server.restart();
    assert_eq!(server.cli(&["get", "k"]), "v1");
    // Without persistence a crash loses it: the restart is a real one.
    let mut bare = RedisServer::start(&[]);
    assert_eq!(bare.cli(&["set", "k", "v1"]), "OK");
    bare.restart();
    assert_eq!(bare.cli(&["get", "k"]), "");
}

#[test]
fn a_cluster_of_three_masters_serves_every_slot() {
    if !redis_available() {
        return;
    }
    let mut cluster = RedisCluster::start();
    assert_eq!(cluster.urls().len(), 3);
    let port = cluster.nodes()[0].port();
    let info = cli(port, &["cluster", "info"]);
    assert!(info.contains("cluster_slots_assigned:16384"), "{info}");
    assert!(info.contains("cluster_known_nodes:3"), "{info}");
    // Keys of one hash tag share a slot; `-c` follows the redirections.
    let out = cli(port, &["-c", "mset", "{a}x", "1", "{a}y", "2"]);
    assert_eq!(out, "OK");
    let slot_a = cli(port, &["cluster", "keyslot", "{a}x"]);
    assert_eq!(slot_a, cli(port, &["cluster", "keyslot", "{a}y"]));
}
