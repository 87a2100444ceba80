//! `examples/cgi_counter` on Redis: `SESSIONDB_URL` set, the same program serves the same
//! pages from a Redis server or Cluster instead of the file, run as a web server runs a CGI
//! program (`tests/common/cgi.rs`), then under lighttpd (`scripts/lighttpd-cgi.sh`, with
//! `REDIS=1` and with a Cluster's `SESSIONDB_URL`). The servers are real ones
//! (`tests/common/redis.rs`); without `redis-server` these tests return early, unless
//! `SESSIONDB_REQUIRE_REDIS` is set (as in CI).
//!
//! Each check also asserts that the file named by `SESSIONDB_PATH`, which the browsers still
//! pass, was never created: the sessions went to Redis. And a build without the `redis`
//! feature answers `500` to a request with `SESSIONDB_URL`, never serving it from the file.
//!
//! Needs the `redis` feature (the example is built with the tests' features).
#![cfg(feature = "redis")]

use std::path::Path;
use std::process::Command;

mod common;

use common::cgi::{Browser, COOKIE, id_of};
use common::redis::{RedisServer, redis_available, shared_cluster};

/// A browser of the demo on the sessions at `url`; `SESSIONDB_PATH` names `unused` (which the
/// demo must not create).
fn browser(url: &str, unused: &Path, n: usize) -> Browser {
    let mut b = Browser::new(unused, n);
    b.extra_env.push(("SESSIONDB_URL".into(), url.into()));
    b
}

/// The demo's checks, as on the file (`tests/cgi.rs`): the counter counts and the back button
/// shows, log-in moves the session to a new cookie and the old one is refused, log-out ends
/// the session, a forged cookie gets a fresh session.
fn the_demo_on(url: &str) {
    let dir = tempfile::tempdir().unwrap();
    let unused = dir.path().join("unused.redb");
    let mut b = browser(url, &unused, 1);
    for n in 1..=3 {
        let r = b.get("");
        r.assert_ok();
        assert_eq!((r.counter(), r.state(), r.total()), (n, n - 1, n), "{}", r.body);
        assert_eq!(r.outcome(), if n == 1 { "New" } else { "Resumed" });
    }
    let first = b.get("state=0");
    assert_eq!((first.state(), first.counter(), first.total()), (0, 1, 3), "views do not count");

    // Log-in: a new cookie under a new id, the counter kept; the old cookie is refused.
    let old = b.cookie().expect("a session cookie").to_owned();
    let planted = b.clone();
    let login = b.login();
    login.assert_ok();
    let new = b.cookie().expect("the new cookie").to_owned();
    assert_ne!(id_of(&new), id_of(&old), "log-in moves the session to a new id");
    assert_eq!((login.session(), login.counter(), login.user()), (id_of(&new), 4, "demo"));
    let r = planted.clone().get("");
    assert_eq!(r.status, "503 Service Unavailable", "the old cookie, just after: {}", r.body);
    assert_eq!(r.set_cookie(), None, "the new cookie is never sent to it");
    let after = b.get("");
    assert_eq!((after.outcome(), after.counter(), after.user()), ("Resumed", 5, "demo"));

    // Log-out ends the session: the cookie is removed; replayed, it starts a new session.
    let before_logout = b.clone();
    let logout = b.logout();
    logout.assert_ok();
    assert!(logout.set_cookie().is_some_and(|c| c.starts_with(&format!("{COOKIE}=;"))));
    assert_eq!((b.cookie(), logout.session()), (None, "none"));
    let replay = before_logout.clone().get("");
    assert_eq!((replay.outcome(), replay.counter(), replay.user()), ("Revoked", 1, "none"));
    let fresh = b.get("");
    assert_eq!((fresh.outcome(), fresh.counter()), ("New", 1));

    // A cookie that was never issued gets a fresh session, never its id.
    let mut forger = browser(url, &unused, 2);
    let fake_cookie = format!("{}.{}", "A".repeat(32), "B".repeat(43));
    forger.jar.insert(COOKIE.into(), fake_cookie.clone());
    let r = forger.get("");
    assert_eq!((r.outcome(), r.counter()), ("Unknown", 1), "{}", r.body);
    assert!(forger.cookie().is_some_and(|c| id_of(c) != id_of(&fake_cookie)));
    assert_ne!(r.session(), "A".repeat(32));
    assert_eq!(forger.get("").counter(), 2, "the fresh session counts on");

    assert!(!unused.exists(), "SESSIONDB_PATH was used: the sessions were not on Redis");
}

#[test]
fn the_demo_runs_on_a_standalone_server() {
    if !redis_available() {
        return;
    }
    let server = RedisServer::start(&[]);
    the_demo_on(&server.url());
    let keys: u64 = server.cli(&["DBSIZE"]).parse().expect("a number of keys");
    assert!(keys >= 4, "the sessions are on the server: {keys} keys");
}

#[test]
fn the_demo_runs_on_a_cluster() {
    if !redis_available() {
        return;
    }
    let cluster = shared_cluster();
    let nodes: Vec<String> =
        cluster.urls().iter().map(|u| u.trim_start_matches("redis://").to_owned()).collect();
    the_demo_on(&format!("redis+cluster://{}", nodes.join(",")));
}

#[test]
fn a_bad_url_or_a_server_that_is_down_is_a_500_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let unused = dir.path().join("unused.redb");
    for (url, says) in [
        ("http://127.0.0.1:6379", "is not a Redis address"),
        ("redis://127.0.0.1:1", "unreachable"),
    ] {
        let (_, r) = browser(url, &unused, 1).run("GET", "");
        assert_eq!(r.status, "500 Internal Server Error", "{url}: {}", r.body);
        assert_eq!(r.set_cookie(), None);
        assert!(r.marker("error").contains(says), "{url}: {}", r.body);
    }
    assert!(!unused.exists(), "never the file instead");
}

/// Built without the `redis` feature (the default demo build), the program refuses a request
/// with `SESSIONDB_URL` (`500`, saying to build with `--features redis`) rather than serve it
/// from the file at `SESSIONDB_PATH`. Builds that variant of the example (once).
#[test]
fn without_the_redis_feature_the_url_is_a_500_not_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let unused = dir.path().join("unused.redb");
    let mut b = browser("redis://127.0.0.1:6379", &unused, 1);
    b.program = Some(common::example_with("cgi_counter", &[]));
    let (_, r) = b.run("GET", "");
    assert_eq!(r.status, "500 Internal Server Error", "{}", r.body);
    assert!(r.marker("error").contains("--features redis"), "{}", r.body);
    assert_eq!(r.set_cookie(), None);
    assert!(!unused.exists(), "never the file instead");
}

/// lighttpd, with a redis-server the script starts itself (`REDIS=1`) and stops at the end.
#[test]
fn lighttpd_serves_the_counter_on_redis() {
    if !redis_available()
        || !common::cgi::lighttpd_available("lighttpd_serves_the_counter_on_redis")
    {
        return;
    }
    let log = common::cgi::run_lighttpd_script(&[("REDIS", "1")]);
    let pid: i32 = log
        .lines()
        .find_map(|l| l.strip_prefix("== redis-server (pid ")?.split(')').next()?.parse().ok())
        .unwrap_or_else(|| panic!("the script names its redis-server: {log}"));
    let gone = Command::new("kill").args(["-0", &pid.to_string()]).output().unwrap();
    assert!(!gone.status.success(), "the script's redis-server {pid} still runs");
}

/// lighttpd, on a Cluster given by `SESSIONDB_URL`.
#[test]
fn lighttpd_serves_the_counter_on_a_cluster() {
    if !redis_available()
        || !common::cgi::lighttpd_available("lighttpd_serves_the_counter_on_a_cluster")
    {
        return;
    }
    let cluster = shared_cluster();
    let nodes: Vec<String> =
        cluster.urls().iter().map(|u| u.trim_start_matches("redis://").to_owned()).collect();
    let url = format!("redis+cluster://{}", nodes.join(","));
    let log = common::cgi::run_lighttpd_script(&[("SESSIONDB_URL", &url)]);
    assert!(log.contains(&format!("sessions on {url}")), "{log}");
}
