//! A Redis engine used in a child process forked after the engine was opened (a pre-fork
//! server) does not share its parent's connections: the child opens its own, and the parent's
//! go on working. On its own test binary: the child runs while no other test thread does.
#![cfg(feature = "redis")]
#![allow(unsafe_code, reason = "libc::fork, waitpid and _exit: the test forks a child")]

mod common;

use common::redis::{RedisServer, redis_available};
use sessiondb::{Engine, Error, NewSession, RedisEngine, Save};

/// Connections the server accepted so far, less the one this question opens.
fn accepted(server: &RedisServer) -> u64 {
    let stats = server.cli(&["info", "stats"]);
    let line = stats.lines().find(|l| l.starts_with("total_connections_received:")).unwrap();
    line.trim().rsplit(':').next().unwrap().parse::<u64>().unwrap() - 1
}

#[test]
fn a_forked_child_opens_its_own_connections_and_the_parents_keep_working() -> Result<(), Error> {
    if !redis_available() {
        return Ok(());
    }
    let server = RedisServer::start(&[]);
    let e = RedisEngine::builder(&server.url()).open()?;
    let c = e.create_with(NewSession::new(b"parent", b""))?;
    e.load(&c.id, &c.token)?; // a connection in the pool
    let before = accepted(&server);

    // SAFETY: the child runs while the test harness's other threads wait (one test in this
    // binary); it speaks to the server over connections of its own and then `_exit`s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let ok = e.load(&c.id, &c.token).is_ok_and(|got| got.session_data == b"parent");
        // SAFETY: `_exit` ends the child at once, without destructors or atexit handlers.
        unsafe { libc::_exit(i32::from(!ok)) };
    }
    let mut status = 0;
    // SAFETY: waits for the child forked above; `status` is a valid out-pointer.
    let waited = unsafe { libc::waitpid(pid, &raw mut status, 0) };
    assert_eq!(waited, pid);
    assert!(libc::WIFEXITED(status), "child did not exit normally: {status}");
    assert_eq!(libc::WEXITSTATUS(status), 0, "the child's load failed");
    // One connection more for this question, one for the child's load: its own.
    assert_eq!(accepted(&server) - before, 2, "the child did not open a connection of its own");

    // The parent's pooled connection goes on working.
    let got = e.load(&c.id, &c.token)?;
    let saved = e.store_state(&c.id, &c.token, Save::new(got.version, b"after", b""))?;
    assert_eq!(e.load(&c.id, &c.token)?.version, saved.version);
    Ok(())
}
