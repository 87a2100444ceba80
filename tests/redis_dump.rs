//! `dump` on Redis, through the example binary on real servers (standalone and Cluster): the
//! summary, one session, JSON and `--verify` on a clean prefix (exit 0); after damage planted
//! with raw commands, `--verify` names it (exit 1), `--repair` fixes the indexes and leaves the
//! damaged record (exit 1) until it is gone (exit 0); a server that is not there is exit 2.
#![cfg(feature = "redis")]

mod common;

use std::process::Command;
use std::time::Duration;

use common::redis::{RedisServer, cli, redis_available, shared_cluster};
use sessiondb::{Engine, Error, NewSession, RedisEngine, Save};

/// Runs the dump with `args`; its exit code, stdout and stderr.
fn dump<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> (i32, String, String) {
    let out = Command::new(common::example("dump")).args(args).output().expect("run the dump");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().expect("an exit code, not a signal"), text(&out.stdout), text(&out.stderr))
}

/// One server or Cluster: the engine's URL, and a port that raw commands go to (`-c` follows
/// a Cluster's redirections).
struct Target {
    url: String,
    port: u16,
}

impl Target {
    fn raw(&self, args: &[&str]) -> String {
        let mut all = vec!["-c"];
        all.extend_from_slice(args);
        cli(self.port, &all)
    }
}

fn the_dump_reads_verifies_and_repairs(t: &Target) -> Result<(), Error> {
    let prefix = "dumped";
    let e = RedisEngine::builder_from_url(&t.url)?.prefix(prefix).max_sessions(Some(100)).open()?;
    let plain = e.create_with(NewSession::new(b"plain data", b"state 0"))?;
    e.store_state(&plain.id, &plain.token, Save::new(plain.version, b"plain v2", b"state 1"))?;
    let ann = e.create_with(NewSession::new(b"ann's", b"").user(b"ann"))?;
    let old = e.create_with(NewSession::new(b"to rotate", b""))?;
    let new = e.regenerate(&old.id, &old.token, Duration::from_secs(60))?;
    let p = ["--prefix", prefix];
    let with = |more: &[&str]| -> Vec<String> {
        p.iter().chain(more).chain([&t.url.as_str()]).map(|s| (*s).to_owned()).collect()
    };

    let (code, out, err) = dump(&with(&["--summary"]));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("sessions        3"), "{out}");
    assert!(out.contains("tombstones      1"), "{out}");
    assert!(out.contains("users           1 (1 index entries)"), "{out}");
    assert!(out.contains("cap entries     3"), "{out}");

    let (code, out, err) = dump(&with(&["--json"]));
    assert_eq!(code, 0, "{out}{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).expect("one JSON document");
    assert_eq!(doc["store"]["sessions"], 3, "{out}");
    let listed: Vec<&str> = doc["sessions"]
        .as_array()
        .expect("sessions")
        .iter()
        .filter_map(|s| s["id"].as_str())
        .collect();
    for id in [&plain.id, &ann.id, &new.id] {
        assert!(listed.contains(&id.as_str()), "{id} not in {out}");
    }

    let (code, out, err) = dump(&with(&["--session", plain.id.as_str()]));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("live, version 2") && out.contains("plain v2"), "{out}");
    assert!(out.contains("state 1:") && out.contains("state 0:"), "{out}");
    let (code, out, _) = dump(&with(&["--json", "--session", plain.id.as_str()]));
    assert_eq!(code, 0);
    let doc: serde_json::Value = serde_json::from_str(&out).expect("the session object");
    assert_eq!(doc["data"], "plain v2", "{out}");
    let (code, _, err) = dump(&with(&["--session", old.id.as_str()]));
    assert_eq!(code, 1, "a retired id is not a session: {err}");
    assert!(err.contains("was rotated to"), "{err}");

    let (code, out, err) = dump(&with(&["--verify"]));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("verified: clean"), "{out}");

    // Damage: the users index loses ann's entry and gains a stale one; the cap index loses
    // plain's entry; new's record is garbage.
    let users = format!("{prefix}:u:{{616e6e}}");
    let cap = format!("{prefix}:x");
    t.raw(&["zrem", &users, ann.id.as_str()]);
    t.raw(&["zadd", &users, "1", "NoSuchSessionIdAtAllXXXXXXXXXXXXX"]);
    t.raw(&["zrem", &cap, plain.id.as_str()]);
    t.raw(&["hset", &format!("{prefix}:{{{}}}", new.id), "r", "garbage"]);
    let (code, out, err) = dump(&with(&["--verify"]));
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("verified: 4 problem(s)"), "{out}");
    for what in [
        "session missing from its user's index",
        "stale entry: no session of this user",
        "session missing from the cap index",
        "record does not decode",
    ] {
        assert!(out.contains(what), "{what} not in {out}");
    }
    let (code, out, _) = dump(&with(&["--json", "--verify"]));
    assert_eq!(code, 1);
    let doc: serde_json::Value = serde_json::from_str(&out).expect("the report");
    assert_eq!(doc["problem_count"], 4, "{out}");

    // The dump wrote nothing: the same four are still there.
    assert_eq!(e.verify()?.problem_count, 4);
    let (code, out, err) = dump(&with(&["--repair"]));
    assert_eq!(code, 1, "the damaged record is left: {out}{err}");
    assert!(out.contains("repaired        3 index entries"), "{out}");
    assert!(out.contains("verified: 1 problem(s)"), "{out}");
    assert_eq!(e.user_sessions(b"ann")?, vec![ann.id.clone()]);

    assert!(e.revoke(&new.id)?, "a damaged session is removed by a revocation");
    let (code, out, err) = dump(&with(&["--verify"]));
    assert_eq!(code, 0, "{out}{err}");
    Ok(())
}

#[test]
fn dump_on_a_standalone_server() -> Result<(), Error> {
    if !redis_available() {
        return Ok(());
    }
    let server = RedisServer::start(&[]);
    the_dump_reads_verifies_and_repairs(&Target { url: server.url(), port: server.port() })?;
    // A prefix that begins with this one is not this one's problem, only counted.
    let other = RedisEngine::builder(&server.url()).prefix("dumped:v2").open()?;
    other.create_with(NewSession::new(b"elsewhere", b"").user(b"bob"))?;
    let (code, out, err) = dump(&["--prefix", "dumped", "--verify", &server.url()]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = dump(&["--prefix", "dumped", "--summary", &server.url()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("other keys      2"), "{out}");
    // Another prefix is empty and clean.
    let (code, out, err) = dump(&["--prefix", "nothing", "--summary", &server.url()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("sessions        0"), "{out}");
    Ok(())
}

#[test]
fn dump_on_a_cluster() -> Result<(), Error> {
    if !redis_available() {
        return Ok(());
    }
    let urls = shared_cluster().urls();
    let nodes: Vec<&str> = urls.iter().map(|u| u.trim_start_matches("redis://")).collect();
    let port = nodes[0].rsplit(':').next().and_then(|p| p.parse().ok()).expect("a port");
    let url = format!("redis+cluster://{}", nodes.join(","));
    the_dump_reads_verifies_and_repairs(&Target { url, port })
}

#[test]
fn a_server_that_is_not_there_is_exit_2() {
    let port =
        std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port());
    let url = format!("redis://127.0.0.1:{}", port.expect("a free port"));
    let (code, _, err) = dump(&["--summary", &url]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("is it up"), "{err}");
    let (code, _, err) = dump(&["--repair", "/nonexistent/file.db"]);
    assert_eq!(code, 2, "--repair is for Redis: {err}");
}
