//! Hostile entries in the spool of the shared commit (src/store/share.rs): something that is
//! not a regular file under a spool file's name must not stall the leader, which holds the
//! write transaction and `commit.lock` while it reads the spool.

#![cfg(unix)]
#![allow(unsafe_code, reason = "libc: mkfifo, flock, kill")]

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sessiondb::Store;

/// The spool directory of the store at `db` (`<db>.locks/spool-<digest>`).
fn spool_dir(db: &Path) -> PathBuf {
    let locks = PathBuf::from(format!("{}.locks", db.display()));
    std::fs::read_dir(&locks)
        .expect("lock directory")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("spool-")))
        .expect("a spool directory")
}

/// A spool file name of now: `{ms:016x}-{nonce:016x}`.
fn fresh_name(nonce: u64) -> String {
    let ms =
        u64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap();
    format!("{ms:016x}-{nonce:016x}")
}

fn mkfifo(path: &Path) {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
}

/// Opens the FIFO for writing without blocking, so that a reader stuck in `open()` goes on.
fn unblock(path: &Path) {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_WRONLY | libc::O_NONBLOCK) };
    if fd >= 0 {
        // SAFETY: fd was just opened here.
        unsafe { libc::close(fd) };
    }
}

fn write_returns_despite(place: impl FnOnce(&Path, &Path) -> PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("s.redb");
    let store = Store::builder(&db)
        .cleanup_interval(None)
        .shared_commit(Some(Duration::from_millis(200)))
        .open()
        .expect("open");
    let spool = spool_dir(&db);
    let fifo = place(dir.path(), &spool);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let created = store.create(b"", b"").map(|c| c.id);
        let _ = tx.send(created);
    });
    let got = rx.recv_timeout(Duration::from_secs(5));
    if got.is_err() {
        unblock(&fifo);
    }
    let created = got.expect("a write returns while a FIFO sits in the spool");
    created.expect("the write succeeds");
}

#[test]
fn a_fifo_in_the_spool_does_not_stall_the_leader() {
    write_returns_despite(|_, spool| {
        let fifo = spool.join(fresh_name(1));
        mkfifo(&fifo);
        fifo
    });
}

#[test]
fn a_link_to_a_fifo_in_the_spool_does_not_stall_the_leader() {
    write_returns_despite(|tmp, spool| {
        let fifo = tmp.join("elsewhere");
        mkfifo(&fifo);
        std::os::unix::fs::symlink(&fifo, spool.join(fresh_name(2))).unwrap();
        fifo
    });
}
