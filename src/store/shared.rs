//! The shared core of a store: the redb handle (reopened after an I/O error), the settings,
//! the group committer and the lock files, which the operations, the maintenance calls and
//! the clean-up thread share.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError, RwLock};

use redb::ReadTransaction;

use super::commit::{Batch, Committer, Context, Done, Job, begin, panic_message, run};
use super::config::Config;
use super::lock::LockDir;
use super::open::{self, Db, Writing};
use super::share::{Host, Key};
use super::stats::CleanupStats;
use crate::engine::rules;
use crate::error::{Error, Result};
use crate::format::schema::{self, WriteTables};

/// Runs a read in the caller's thread, turning a panic inside it (redb on a damaged page, or a
/// bug) into [`Error::Panicked`] at `place`: no input reaches the caller as a panic.
pub(crate) fn guard<T>(place: &'static str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .unwrap_or_else(|panic| Err(Error::Panicked { place, message: panic_message(&*panic) }))
}

/// A read transaction with the handle it came from: while any is alive, the handle is not
/// replaced by a reopen ([`Core::reopen`]).
pub(crate) struct Snapshot {
    pub(super) txn: ReadTransaction,
    pub(super) _db: Arc<Db>,
}

impl std::ops::Deref for Snapshot {
    type Target = ReadTransaction;
    fn deref(&self) -> &ReadTransaction {
        &self.txn
    }
}

/// How long a reopen waits for the reads of the old handle to end.
const REOPEN_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// What a store's operations share with its clean-up thread.
pub(crate) struct Core {
    /// The redb handle, shared with the reads and maintenance writes running on it. `None`
    /// after a failed reopen (the next call tries again) and once dropped.
    pub(super) db: RwLock<Option<Arc<Db>>>,
    pub(crate) cfg: Config,
    pub(super) pid: u32,
    pub(super) committer: Committer<Core>,
    /// The shared commit across processes, where it applies (`share.rs`).
    pub(super) share: Option<super::share::Share>,
    pub(crate) locks: LockDir,
    /// Set when the clean-up thread panicked; the message waits in `cleanup_panic`.
    pub(super) cleanup_failed: AtomicBool,
    pub(super) cleanup_panic: Mutex<Option<String>>,
    pub(super) cleanup_stats: Mutex<CleanupStats>,
    /// Set when a call met a panic inside redb or a damaged file ([`Core::watch`]).
    pub(super) suspect: AtomicBool,
    /// Set by [`Store::close_for_exit`]: the read-write handle is left to the OS, not closed.
    pub(super) leave_to_exit: AtomicBool,
}

impl Core {
    /// The redb handle, refused in a process forked after open (its locks and cached state
    /// belong to the parent), and after a clean-up thread panic, which is reported once.
    pub(super) fn db(&self) -> Result<Arc<Db>> {
        if self.cleanup_failed.load(Ordering::Relaxed) && std::process::id() == self.pid {
            let taken = self.cleanup_panic.lock().unwrap_or_else(PoisonError::into_inner).take();
            if let Some(message) = taken {
                return Err(Error::Panicked { place: "the clean-up thread", message });
            }
        }
        self.db_unreported()
    }

    /// The redb handle, refused in a forked child, leaving a clean-up thread panic for the
    /// next caller to see: for the group commit leader, which runs other callers' writes.
    pub(super) fn db_unreported(&self) -> Result<Arc<Db>> {
        if std::process::id() != self.pid {
            return Err(Error::Forked);
        }
        if let Some(db) = &*self.db.read().unwrap_or_else(PoisonError::into_inner) {
            return Ok(Arc::clone(db));
        }
        // A reopen failed (the disk was still full, say): try again.
        let mut slot = self.db.write().unwrap_or_else(PoisonError::into_inner);
        if slot.is_none() {
            *slot = Some(Arc::new(guard("opening the file", || open::open_db(&self.cfg))?));
        }
        Ok(Arc::clone(slot.as_ref().expect("just filled")))
    }

    /// Replaces `stale`, a handle redb stopped after an I/O error in a commit
    /// ([`Error::NeedsReopen`]), with a new one on the same file: redb recovers the last
    /// committed transaction. Waits up to [`REOPEN_WAIT`] for the reads still running on the
    /// old handle (and for the group-commit leader's transaction, see [`Writing`]); the next
    /// call tries again if they outlast it.
    pub(super) fn reopen(&self, stale: Arc<Db>) -> Result<()> {
        let mut slot = self.db.write().unwrap_or_else(PoisonError::into_inner);
        if !slot.as_ref().is_some_and(|cur| Arc::ptr_eq(cur, &stale)) {
            return Ok(()); // another thread reopened it already
        }
        // New reads wait on the lock; those running hold a clone each (`Snapshot`).
        let deadline = std::time::Instant::now() + REOPEN_WAIT;
        while Arc::strong_count(&stale) > 2 {
            if std::time::Instant::now() > deadline {
                return Err(Error::NeedsReopen);
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        // The old handle closes before the new one opens: a single-process file admits one.
        *slot = None;
        if self.suspect.load(Ordering::Relaxed) && matches!(*stale, Db::ReadWrite(_)) {
            // Closing a handle that met a damaged file can abort inside redb (see `Drop`).
            std::mem::forget(stale);
        } else {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(stale)));
        }
        let db = guard("opening the file", || open::open_db(&self.cfg))?;
        *slot = Some(Arc::new(db));
        Ok(())
    }

    /// Records a panic of the clean-up thread, for the next call to report.
    pub(crate) fn report_cleanup_panic(&self, message: String) {
        *self.cleanup_panic.lock().unwrap_or_else(PoisonError::into_inner) = Some(message);
        self.cleanup_failed.store(true, Ordering::Relaxed);
    }

    pub(crate) fn now(&self) -> u64 {
        self.cfg.clock.now_ms()
    }

    /// Runs a read of a public call: a panic inside it becomes [`Error::Panicked`] (see
    /// [`guard`]), and a read that met a handle redb stopped after an I/O error
    /// ([`Error::NeedsReopen`]) reopens the file and runs once more.
    pub(crate) fn reading<T>(&self, mut f: impl FnMut() -> Result<T>) -> Result<T> {
        // The handle the read runs on, weakly: a strong reference would hold up the reopen.
        let handle = Arc::downgrade(&self.db()?);
        let result = match guard("a read", &mut f) {
            Err(Error::NeedsReopen) => {
                // Unless another thread replaced (and dropped) that handle meanwhile: `reopen`
                // leaves a handle that is no longer the current one alone.
                if let Some(stale) = handle.upgrade() {
                    self.reopen(stale)?;
                }
                guard("a read", f)
            }
            other => other,
        };
        self.watch(result)
    }

    /// Passes `result` on, noting a panic caught inside redb, a damaged file or any other error
    /// of redb's (a table tree whose types no longer match, say): closing such a handle can
    /// abort the process (see the `Drop` impl).
    pub(crate) fn watch<T>(&self, result: Result<T>) -> Result<T> {
        if matches!(result, Err(Error::Panicked { .. } | Error::Damaged { .. } | Error::Storage(_)))
        {
            self.suspect.store(true, Ordering::Relaxed);
        }
        result
    }

    /// Begins a read transaction, reopening a handle redb stopped after an I/O error (see
    /// [`Core::begin_write`]).
    pub(super) fn read(&self) -> Result<Snapshot> {
        let db = self.db()?;
        match db.begin_read() {
            Err(Error::NeedsReopen) => {
                self.reopen(db)?;
                let db = self.db()?;
                Ok(Snapshot { txn: db.begin_read()?, _db: db })
            }
            Ok(txn) => Ok(Snapshot { txn, _db: db }),
            Err(e) => Err(e),
        }
    }

    /// The redb handle if it takes writes, or the error a read-only store gives.
    pub(super) fn rw(&self) -> Result<Arc<Db>> {
        self.db()?;
        self.rw_unreported()
    }

    /// [`Core::rw`] without reporting a clean-up thread panic; see [`Core::db_unreported`].
    pub(super) fn rw_unreported(&self) -> Result<Arc<Db>> {
        let db = self.db_unreported()?;
        db.read_write()?;
        Ok(db)
    }

    /// Begins a write transaction for the group committer. A handle redb stopped after an I/O
    /// error in an earlier commit ([`Error::NeedsReopen`]) is reopened once, so that a store
    /// goes on by itself when a full disk has room again or a failing device recovers.
    pub(super) fn begin_write(&self) -> Result<Writing> {
        // `rw_unreported`: a clean-up thread panic is for the callers to see, not for the leader.
        let db = self.rw_unreported()?;
        match db.read_write()?.begin_write().map_err(Error::from) {
            Err(Error::NeedsReopen) => {
                self.reopen(db)?;
                let db = self.rw_unreported()?;
                let txn = db.read_write()?.begin_write()?;
                Ok(Writing { txn, db })
            }
            Ok(txn) => Ok(Writing { txn, db }),
            Err(e) => Err(e),
        }
    }

    /// Runs `f` in one write transaction of its own, committing if it returns `Ok` and aborting
    /// otherwise. For maintenance; request writes go through `Core::submit` (`op.rs`).
    pub(crate) fn write<T>(&self, f: impl FnOnce(&mut WriteTables<'_>) -> Result<T>) -> Result<T> {
        let db = self.rw()?;
        self.watch(guard("a write transaction", || {
            let txn = db.read_write()?.begin_write()?;
            let out = {
                let mut tables = WriteTables::open(&txn)?;
                f(&mut tables)?
            };
            txn.commit()?;
            Ok(out)
        }))
    }

    /// Refuses a user key longer than [`MAX_USER_KEY`](crate::engine::rules::MAX_USER_KEY).
    pub(super) fn check_user_key(user: Option<&[u8]>) -> Result<()> {
        rules::check_user_key(user)
    }

    /// Refuses data larger than the configured limit.
    pub(super) fn check_size(&self, what: &str, data: &[u8]) -> Result<()> {
        rules::check_size(what, data, self.cfg.max_data_size)
    }
}

impl Context for Core {
    fn begin_write(&self) -> Result<Writing> {
        Core::begin_write(self)
    }

    fn commit_batch(&self, take: &mut dyn FnMut() -> Batch<Self>) -> Done {
        if let Some(share) = &self.share {
            return share.commit_batch(self, take);
        }
        let txn = begin(self);
        let batch = take();
        run(self, txn, batch)
    }
}

impl Host for Core {
    fn now(&self) -> u64 {
        Core::now(self)
    }

    fn locks(&self) -> &LockDir {
        &self.locks
    }

    fn decode_job(&self, kind: &str, bytes: &[u8]) -> Option<Job<Self>> {
        self.committer.decode(kind, bytes)
    }

    fn recorded(&self, keys: &[Key]) -> Result<Vec<Option<Vec<u8>>>> {
        let txn = self.read()?;
        let table = match schema::read_applied(&txn) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(vec![None; keys.len()]),
            Err(e) => return Err(e.into()),
        };
        keys.iter().map(|key| Ok(table.get(*key)?.map(|v| v.value().to_vec()))).collect()
    }
}

impl Drop for Core {
    /// Closes the file, except in a process forked after open: there the redb handle shares its
    /// OFD byte-range locks with the parent and holds the parent's cached header, so closing it
    /// would release the parent's locks (and could write a stale header). It is leaked instead;
    /// the OS reclaims it when the child exits.
    ///
    /// Closing writes redb's allocator state, which on a damaged file can panic inside redb.
    /// That panic is caught, but a destructor inside redb may panic again while it unwinds,
    /// which aborts the process (`fuzz/regressions/dump-abort-close-damaged-allocator.redb`).
    /// So a read-write handle that met a panic or a damaged file is leaked instead of closed
    /// (its file descriptor and memory, once per such store): the OS closes it at exit, and
    /// the next open of the file recovers as after a crash. So is the handle of a store closed
    /// with [`Store::close_for_exit`].
    fn drop(&mut self) {
        let db = self.db.get_mut().unwrap_or_else(PoisonError::into_inner).take();
        // A read-only handle writes nothing when it closes.
        let writes_on_close = db.as_deref().is_some_and(|db| matches!(db, Db::ReadWrite(_)));
        // `close_for_exit` decided to leave the handle (this was not the last store open).
        let leave = *self.suspect.get_mut() || *self.leave_to_exit.get_mut();
        if std::process::id() == self.pid && !(leave && writes_on_close) {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(db)));
        } else {
            std::mem::forget(db);
        }
    }
}
