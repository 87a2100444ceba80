//! `examples/cgi_counter` on Redis, attacked (issue 18's security review): a forged cookie that
//! names a logged-in victim's id, duplicate cookies, and cookies with text that matters to Redis
//! keys never reach the victim's session nor write into it (its hash, generation `g` included,
//! is byte for byte the same); and the `500` page a misconfigured `SESSIONDB_URL` gives every
//! visitor never shows the URL's password.
#![cfg(feature = "redis")]

mod common;

use common::cgi::{Browser, COOKIE, id_of};
use common::redis::{RedisServer, redis_available};

const SECRET: &str = "s3cret-in-the-url";

fn browser(url: &str, dir: &tempfile::TempDir, n: usize) -> Browser {
    let mut b = Browser::new(&dir.path().join("unused.redb"), n);
    b.extra_env.push(("SESSIONDB_URL".into(), url.into()));
    b
}

/// A session's hash on `server`, every field (its generation `g` first), in an order that does
/// not depend on the server's.
fn hash(server: &RedisServer, id: &str) -> String {
    let key = format!("sessiondb:{{{id}}}");
    let all = server.cli(&["hgetall", &key]);
    let mut lines: Vec<&str> = all.lines().collect();
    lines.sort_unstable();
    format!("g={} {}", server.cli(&["hget", &key, "g"]), lines.join("\n"))
}

#[test]
fn forged_duplicate_and_hostile_cookies_never_reach_a_logged_in_session() {
    if !redis_available() {
        return;
    }
    let server = RedisServer::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let mut victim = browser(&server.url(), &dir, 1);
    victim.get("").assert_ok();
    victim.login().assert_ok();
    let cookie = victim.cookie().expect("the victim's cookie").to_owned();
    let id = id_of(&cookie).to_owned();
    let before = hash(&server, &id);
    assert!(before.contains('g'), "{before}");

    let mut attacker = browser(&server.url(), &dir, 2);
    attacker.get("").assert_ok();
    let own = attacker.cookie().unwrap().to_owned();
    let wrong = "W".repeat(43);
    let long = "i".repeat(5000);
    for header in [
        format!("{COOKIE}={id}.{wrong}"),
        format!("{COOKIE}={id}.{wrong}; {COOKIE}={own}"),
        format!("{COOKIE}={own}; {COOKIE}={id}.{wrong}"),
        format!("{COOKIE}={id}; {COOKIE}={id}.{wrong}"),
        format!("{COOKIE}={{{id}}}.{wrong}"),
        format!("{COOKIE}={id}}}.{wrong}"),
        format!("{COOKIE}={id}:t.{wrong}"),
        format!("{COOKIE}={id}:lock.{wrong}"),
        format!("{COOKIE}={id} .{wrong}"),
        format!("{COOKIE}={id}\n.{wrong}"),
        format!("{COOKIE}={long}.{wrong}"),
        format!("{COOKIE}={id}.{long}"),
    ] {
        for (method, form) in
            [("GET", None), ("POST", Some("action=login")), ("POST", Some("action=logout"))]
        {
            let mut b = attacker.clone();
            b.extra_env.push(("HTTP_COOKIE".into(), header.clone()));
            let (_, r) = b.run_with(method, "", form);
            assert_ne!(r.status, "500 Internal Server Error", "{header:?}: {}", r.body);
            if r.status.starts_with("200") {
                assert_ne!(r.session(), id, "{header:?} {method} {form:?} reached the victim's id");
                // The demo logs anyone in as `demo` with the button: a fresh session, then.
                if form.is_none() {
                    assert_ne!(r.user(), "demo", "{header:?} {method} is logged in");
                }
            }
            assert_eq!(hash(&server, &id), before, "{header:?} {method} {form:?} wrote");
        }
    }
    // The victim is still logged in, on the same id, counting on.
    let r = victim.get("");
    assert_eq!((r.outcome(), r.session(), r.user()), ("Resumed", id.as_str(), "demo"));
}

#[test]
fn a_bad_url_never_shows_its_password_to_visitors() {
    if !redis_available() {
        return;
    }
    let server = RedisServer::start(&[]);
    assert_eq!(server.cli(&["config", "set", "requirepass", "the-right-one"]), "OK");
    let dir = tempfile::tempdir().unwrap();
    let port = server.port();
    for (url, says) in [
        (format!("http://:{SECRET}@127.0.0.1:{port}"), "is not a Redis address"),
        (format!("redis://:{SECRET}@127.0.0.1:notaport"), "Redis address"),
        (format!("redis+cluster://:{SECRET}@"), "Redis address"),
        (format!("redis://:{SECRET}@127.0.0.1:{port}"), "password"),
        (format!("redis://admin:{SECRET}@127.0.0.1:{port}"), "password"),
    ] {
        let (out, r) = browser(&url, &dir, 1).run("GET", "");
        assert_eq!(r.status, "500 Internal Server Error", "{url}: {}", r.body);
        assert!(r.marker("error").contains(says), "{url}: {}", r.body);
        assert!(!r.body.contains(SECRET), "{url}: the page shows the password: {}", r.body);
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(!log.contains(SECRET), "{url}: the server's log shows the password: {log}");
    }
}
