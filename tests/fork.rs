//! A store used in a child process forked after open refuses with `Error::Forked`.
//!
//! The child only calls the store (which checks the process id before touching redb) and then
//! `_exit`s, without running destructors: the redb handle belongs to the parent.

#![allow(unsafe_code, reason = "libc::fork, waitpid and _exit: the test forks a child")]

use sessiondb::{Error, Sharing, Store};

#[test]
fn a_forked_child_gets_forked_errors_and_the_parent_is_unaffected() -> Result<(), Error> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path().join("fork.redb"))?;
    let c = store.create(b"parent data", b"")?;

    // SAFETY: every store call in the child returns `Error::Forked` from a process-id check made
    // before it allocates, draws randomness or touches redb; the results become an exit code.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let refused = [
            matches!(store.count(), Err(Error::Forked)),
            matches!(store.load(&c.id, &c.token), Err(Error::Forked)),
            matches!(store.create(b"", b""), Err(Error::Forked)),
            matches!(store.delete(&c.id), Err(Error::Forked)),
            matches!(store.cleanup(), Err(Error::Forked)),
            matches!(store.touch(&c.id, &c.token), Err(Error::Forked)),
            matches!(
                store.store_state(&c.id, &c.token, sessiondb::Save::new(1, b"", b"")),
                Err(Error::Forked)
            ),
            matches!(store.lock(&c.id, std::time::Duration::from_secs(1)), Err(Error::Forked)),
        ];
        let code = i32::from(!refused.iter().all(|&r| r));
        // SAFETY: `_exit` ends the child at once, without destructors or atexit handlers.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waits for the child forked above; `status` is a valid out-pointer.
    let waited = unsafe { libc::waitpid(pid, &raw mut status, 0) };
    assert_eq!(waited, pid);
    assert!(libc::WIFEXITED(status), "child did not exit normally: {status}");
    assert_eq!(libc::WEXITSTATUS(status), 0, "the child was not refused with Error::Forked");

    assert_eq!(store.load(&c.id, &c.token)?.session_data, b"parent data");
    store.create(b"after fork", b"")?;
    assert_eq!(store.count()?, 2);
    assert!(Error::Forked.to_string().contains("open a new store"));
    Ok(())
}

#[test]
fn a_forked_child_dropping_the_store_keeps_the_parents_locks() -> Result<(), Error> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("fork.redb");
    let store = Store::builder(&path).sharing(Sharing::SingleProcess).open()?;
    let c = store.create(b"parent data", b"")?;
    let second_open = || Store::builder(&path).sharing(Sharing::SingleProcess).open();
    assert!(matches!(second_open(), Err(Error::Storage(_))), "sanity: the file is locked");

    // SAFETY: the child drops the store (which, forked, only leaks the redb handle: no I/O, no
    // locks) and `_exit`s without running anything else.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        drop(store);
        // SAFETY: ends the child at once.
        unsafe { libc::_exit(0) };
    }
    let mut status = 0;
    // SAFETY: waits for the child forked above; `status` is a valid out-pointer.
    assert_eq!(unsafe { libc::waitpid(pid, &raw mut status, 0) }, pid);
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);

    // Had the child closed the redb handle, it would have released these shared OFD locks.
    assert!(matches!(second_open(), Err(Error::Storage(_))), "the parent lost its lock");
    assert_eq!(store.load(&c.id, &c.token)?.session_data, b"parent data");
    drop(store);
    let reopened = Store::open(&path)?;
    assert_eq!(reopened.load(&c.id, &c.token)?.session_data, b"parent data");
    Ok(())
}

#[test]
fn a_forked_child_dropping_a_lock_guard_keeps_the_parents_lock() -> Result<(), Error> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("fork.redb");
    let store = Store::builder(&path).cleanup_interval(None).open()?;
    let c = store.create(b"", b"")?;
    let guard = store.lock(&c.id, std::time::Duration::from_secs(1))?;

    // SAFETY: the child only drops its copy of the guard (no allocation, no redb) and `_exit`s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // The child's copy of the guard shares the parent's lock file description: dropping it
        // must not unlock the parent's lock.
        drop(guard);
        // SAFETY: ends the child at once.
        unsafe { libc::_exit(0) };
    }
    let mut status = 0;
    // SAFETY: waits for the child forked above; `status` is a valid out-pointer.
    assert_eq!(unsafe { libc::waitpid(pid, &raw mut status, 0) }, pid);
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);

    // Another handle (own open file descriptions, like another process) still cannot take it.
    let other = Store::builder(&path).cleanup_interval(None).open()?;
    let res = other.lock(&c.id, std::time::Duration::from_millis(50));
    assert!(matches!(res, Err(Error::LockTimeout { .. })), "the parent lost its lock: {res:?}");
    drop(guard);
    let _relocked = other.lock(&c.id, std::time::Duration::from_secs(5))?;
    Ok(())
}
