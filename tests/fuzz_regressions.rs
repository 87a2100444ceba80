//! Inputs the fuzz targets (`fuzz/`) found crashing, run through the same public API as the
//! target that found them: each must give values or typed errors, never a panic that escapes,
//! an abort or a hang.
//!
//! The inputs live in `fuzz/regressions/`, each with the stack trace of the original crash
//! (`*.trace.txt`).

use std::path::{Path, PathBuf};

use sessiondb::faults::FaultyDisk;
use sessiondb::{Error, SecureToken, Sharing, Store};

fn regression(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn copy_to(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Whether an error is one a caller can act on: every variant is typed, but a damaged file
/// must not come back as, say, a wrong token.
fn damaged_file_error(e: &Error) -> bool {
    matches!(
        e,
        Error::Corrupted { .. }
            | Error::Damaged { .. }
            | Error::Panicked { .. }
            | Error::Storage(_)
            | Error::Io(_)
            | Error::NeedsReopen
            | Error::NotSessionDb { .. }
            | Error::UnsupportedFormat { .. }
    )
}

/// The `dump` fuzz target's read-write pass: list, read with a wrong token, delete, revoke,
/// clean up, create. Returns how many calls failed.
fn read_write_pass(path: &Path) -> usize {
    let store =
        match Store::builder(path).sharing(Sharing::SingleProcess).cleanup_interval(None).open() {
            Ok(store) => store,
            Err(e) => {
                assert!(damaged_file_error(&e), "open: {e:?}");
                return 1;
            }
        };
    let token = SecureToken::parse("not-the-token").unwrap();
    let mut failed = 0;
    let mut check = |what: &str, r: Result<(), Error>| {
        if let Err(e) = r {
            // A wrong token or an unknown session is a fine answer for a listed session.
            let answer = matches!(e, Error::Security | Error::NotFound | Error::Expired { .. });
            assert!(answer || damaged_file_error(&e), "{what}: {e:?}");
            failed += usize::from(!answer);
        }
    };
    let mut ids = Vec::new();
    for item in store.sessions().take(10_000) {
        match item {
            Ok(info) => ids.push(info.id),
            Err(e) => check("sessions()", Err(e)),
        }
    }
    for id in &ids {
        check("exists", store.exists(id).map(drop));
        check("inspect", store.inspect(id).map(drop));
        check("load", store.load(id, &token).map(drop));
    }
    if let Some(id) = ids.first() {
        check("delete", store.delete(id).map(drop));
    }
    if let Some(id) = ids.last() {
        check("revoke", store.revoke(id).map(drop));
    }
    check("cleanup", store.cleanup().map(drop));
    check("create", store.create(b"after", b"damage").map(drop));
    check("info", store.info().map(drop));
    check("verify", store.verify().map(drop));
    failed
}

/// The `dump` fuzz target's read-only pass, as `examples/dump/main.rs` opens the file.
fn read_only_pass(path: &Path) {
    let store = match Store::builder(path).read_only(true).idle_timeout(None).open() {
        Ok(store) => store,
        Err(e) => {
            assert!(damaged_file_error(&e), "open: {e:?}");
            return;
        }
    };
    if let Err(e) = store.info() {
        assert!(damaged_file_error(&e), "info: {e:?}");
    }
    if let Err(e) = store.verify() {
        assert!(damaged_file_error(&e), "verify: {e:?}");
    }
    for item in store.sessions().take(10_000) {
        match item {
            Ok(info) => {
                if let Err(e) = store.inspect(&info.id) {
                    assert!(damaged_file_error(&e), "inspect: {e:?}");
                }
            }
            Err(e) => assert!(damaged_file_error(&e), "sessions(): {e:?}"),
        }
    }
}

/// Runs the regression input `name` through the read-only pass, then the read-write pass, each
/// on its own copy; returns how many read-write calls failed. In a thread with a 60 s deadline:
/// a hang fails the test rather than stalling the run.
fn both_passes(name: &str) -> usize {
    let bytes = regression(name);
    let dir = tempfile::tempdir().unwrap();
    let (ro, rw) = (copy_to(dir.path(), "ro.redb", &bytes), copy_to(dir.path(), "rw.redb", &bytes));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        read_only_pass(&ro);
        let _ = tx.send(read_write_pass(&rw));
    });
    rx.recv_timeout(std::time::Duration::from_secs(60))
        .expect("the passes finish within 60 s without panicking")
}

/// A damaged page made redb panic inside `open_table` of a write transaction while holding
/// the transaction's table lock; the tables already opened then panicked again in their
/// destructors during the unwinding, on the poisoned lock, and the process aborted ("panic in
/// a destructor during cleanup"). Now the panic becomes `Error::Panicked` (and the next
/// write does not hang on the write slot).
#[test]
fn damaged_table_tree_in_a_write_transaction_is_an_error_not_an_abort() {
    // The deadline matters here: leaking the opened tables instead (an earlier fix) kept the
    // write slot taken, and the next write waited for ever.
    let failed = both_passes("dump-abort-open-table-poisoned.redb");
    assert!(failed > 0, "the damage should show as errors");
}

/// redb panicked on a damaged allocator page (`bitmap.rs` index out of bounds), then on its
/// poisoned locks while the store closed the file; the unwinding leaked a panic message (53
/// bytes, found by `LeakSanitizer`). Every call still gives a typed error or a value.
#[test]
fn damaged_allocator_state_gives_typed_errors() {
    both_passes("dump-leak-after-redb-panic.redb");
}

/// redb panics while the store closes a damaged file (`Database::drop` writes the allocator
/// state: `btree_base.rs` "range end index out of range"), and a destructor inside redb panics
/// again during that unwinding: the process aborted, which no `catch_unwind` can stop. A redb
/// bug (trace in `fuzz/regressions/dump-abort-close-damaged-allocator.trace.txt`), worked
/// around: a store whose calls met a panic or a damaged file leaks its handle on drop instead
/// of closing it (`Core::watch`).
#[test]
fn closing_a_damaged_file_does_not_abort() {
    both_passes("dump-abort-close-damaged-allocator.redb");
}

/// redb panicked inside `extract_from_if` on a damaged `states` page while a revocation
/// removed the session's states, and the iterator's destructor panicked again during that
/// unwinding: the process aborted. States are now collected by a range read and removed one
/// by one (`record::remove_states`), so the first panic reaches the group committer.
#[test]
fn damaged_states_page_under_a_revocation_is_an_error_not_an_abort() {
    both_passes("damaged-writes-abort-remove-session.redb");
}

/// A damaged table tree gave `TableTypeMismatch` for sessiondb's own `expiry` table (an
/// `Error::Storage`, no panic), and closing the file then panicked inside redb twice: abort.
/// Any storage error now marks the handle, which is leaked rather than closed on drop.
#[test]
fn a_table_type_mismatch_then_close_does_not_abort() {
    both_passes("damaged-writes-abort-close-type-mismatch.redb");
}

/// What the `damaged_writes` fuzz target runs on the input: every listed session read, one
/// deleted, one revoked, a sweep, a create, `info` and `verify`, then the store dropped. Once on
/// a `FaultyDisk` with a 64 KiB cache, as the target runs now, and once on a real file, as it
/// ran before. Typed errors only, in a thread with a 60 s deadline; an abort ends the test
/// process.
fn damaged_writes_pass(name: &str) {
    let bytes = regression(name);
    let dir = tempfile::tempdir().unwrap();
    let path = copy_to(dir.path(), "rw.redb", &bytes);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for simulated in [true, false] {
            let disk = FaultyDisk::with_image(bytes.clone());
            let mut builder = Store::builder(&path);
            builder = builder.sharing(Sharing::SingleProcess).cleanup_interval(None);
            if simulated {
                builder = builder.backend(disk.backend()).cache_size(64 << 10);
            }
            match builder.open() {
                Ok(store) => damaged_writes_calls(&store),
                Err(e) => assert!(damaged_file_error(&e), "open: {e:?}"),
            }
            disk.discard();
        }
        let _ = tx.send(());
    });
    rx.recv_timeout(std::time::Duration::from_secs(60))
        .expect("the pass finishes within 60 s without panicking");
}

fn damaged_writes_calls(store: &Store) {
    let token = SecureToken::parse("not-the-token").unwrap();
    let mut ids = Vec::new();
    for info in store.sessions().take(10_000).flatten() {
        let _ = store.exists(&info.id);
        let _ = store.inspect(&info.id);
        let _ = store.load(&info.id, &token);
        let _ = store.fetch_state(&info.id, &token, Some(info.oldest_state));
        ids.push(info.id);
    }
    if let Some(id) = ids.first() {
        let _ = store.delete(id);
    }
    if let Some(id) = ids.last() {
        let _ = store.revoke(id);
    }
    let _ = store.cleanup();
    if let Ok(c) = store.create(b"fuzz", b"state") {
        let _ = store.load(&c.id, &c.token);
    }
    let _ = store.info();
    let _ = store.verify();
}

/// The `damaged_writes` target on redb 4.6: a damaged allocator handed out a page that was
/// already in redb's write buffer; closing the store (whose calls had met no error, so its
/// handle was closed rather than leaked) panicked inside redb while holding the buffer's lock
/// (`cached_file.rs` `take_value`), and a `WritablePage` destructor panicked again on the
/// poisoned lock during that unwinding: the process aborted. Nothing sessiondb could see
/// beforehand; fixed in the patched redb (`vendor/redb/PATCHES.md`): that destructor no longer
/// panics while unwinding, so the first panic is caught at close.
#[test]
fn a_double_allocated_page_at_close_does_not_abort() {
    damaged_writes_pass("damaged-writes-abort-close-poisoned-write-buffer.redb");
    both_passes("damaged-writes-abort-close-poisoned-write-buffer.redb");
}

/// The `damaged_writes` target on redb 4.6: a delete's commit walked redb's freed-pages table with
/// `extract_from_if`, which panicked on a damaged page (`btree_cursor.rs`); while that unwound,
/// the iterator's destructor closed the extraction, walked the same page and panicked again:
/// abort. Fixed in the patched redb (`vendor/redb/PATCHES.md`): the extraction iterators'
/// destructors do not close while unwinding (the transaction is poisoned instead).
#[test]
fn a_damaged_freed_pages_table_at_commit_does_not_abort() {
    damaged_writes_pass("damaged-writes-abort-commit-freed-pages.redb");
    both_passes("damaged-writes-abort-commit-freed-pages.redb");
}
