//! The engine: a [`Store`] keeps sessions, their states and expiry indexes in one redb file.
//!
//! A `Store` is a thin handle on a shared [`Core`] (the redb handle, the settings, the group
//! committer and the lock files) plus the clean-up thread it owns. The thread holds only a weak
//! reference to the core, so it never keeps the store alive; dropping the `Store` stops and
//! joins it.

#[macro_use]
mod commit;
mod admin;
mod adopt;
mod expiry;
mod locking;
mod open;
mod record;
mod rotate;
mod save;
mod schedule;
mod session;
mod typed;
mod users;
mod verify;

pub use admin::{Contents, SessionInfo, SessionStatus, Sessions, StateInfo, StoreInfo};
pub use commit::BatchStats;
pub use expiry::{CleanupReport, CleanupStats};
pub use locking::SessionLock;
pub use save::{Save, Stored};
pub use session::{Created, Fetched, NewSession};
pub use typed::{decode, encode};
pub use verify::{MAX_LISTED_PROBLEMS, Problem, Verified};

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError, RwLock};

use redb::{Database, ReadOnlyDatabase, ReadTransaction, ReadableDatabase, WriteTransaction};

use crate::cleanup::Cleaner;
use crate::config::{Builder, Config};
use crate::error::{Error, Result};
use crate::lock::LockDir;
use crate::schema::WriteTables;
use commit::Committer;
pub(crate) use commit::panic_message;

/// Runs a read in the caller's thread, turning a panic inside it (redb on a damaged page, or a
/// bug) into [`Error::Panicked`] at `place`: no input reaches the caller as a panic.
pub(crate) fn guard<T>(place: &'static str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .unwrap_or_else(|panic| Err(Error::Panicked { place, message: panic_message(&*panic) }))
}
pub(crate) use record::decode_any_record;

/// The redb handle: read-write, or read-only for inspection.
enum Db {
    ReadWrite(Database),
    ReadOnly(ReadOnlyDatabase),
}

impl Db {
    fn begin_read(&self) -> Result<ReadTransaction> {
        Ok(match self {
            Db::ReadWrite(db) => db.begin_read()?,
            Db::ReadOnly(db) => db.begin_read()?,
        })
    }

    /// The read-write handle, or the error a read-only store gives for writes.
    fn read_write(&self) -> Result<&Database> {
        match self {
            Db::ReadWrite(db) => Ok(db),
            Db::ReadOnly(_) => Err(Error::InvalidInput(
                "this store was opened read-only: open it without read_only to write".into(),
            )),
        }
    }
}

/// A read transaction with the handle it came from: while any is alive, the handle is not
/// replaced by a reopen ([`Core::reopen`]).
pub(crate) struct Snapshot {
    txn: ReadTransaction,
    _db: Arc<Db>,
}

impl std::ops::Deref for Snapshot {
    type Target = ReadTransaction;
    fn deref(&self) -> &ReadTransaction {
        &self.txn
    }
}

/// A write transaction with the handle it came from, held by the group-commit leader until
/// the commit: while it is alive, the handle is not replaced by a reopen.
pub(crate) struct Writing {
    txn: WriteTransaction,
    db: Arc<Db>,
}

/// How long a reopen waits for the reads of the old handle to end.
const REOPEN_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// A session store on one file. `Send + Sync`: share it between threads with `Arc` or by
/// reference.
///
/// Open it with [`Store::builder`] (or [`Store::open`] for the defaults). With the default
/// [`Sharing::MultiProcess`](crate::Sharing::MultiProcess), any number of processes may open the
/// same file at once; each write is one durable redb transaction, shared by the concurrent
/// writes of this process's threads (group commit).
pub struct Store {
    core: Arc<Core>,
    cleaner: Option<Cleaner>,
}

/// What a store's operations share with its clean-up thread.
pub(crate) struct Core {
    /// The redb handle, shared with the reads and maintenance writes running on it. `None`
    /// after a failed reopen (the next call tries again) and once dropped.
    db: RwLock<Option<Arc<Db>>>,
    pub(crate) cfg: Config,
    pid: u32,
    committer: Committer,
    pub(crate) locks: LockDir,
    /// Set when the clean-up thread panicked; the message waits in `cleanup_panic`.
    cleanup_failed: AtomicBool,
    cleanup_panic: Mutex<Option<String>>,
    cleanup_stats: Mutex<CleanupStats>,
    /// Set when a call met a panic inside redb or a damaged file ([`Core::watch`]).
    suspect: AtomicBool,
    /// Set by [`Store::close_for_exit`]: the read-write handle is left to the OS, not closed.
    leave_to_exit: AtomicBool,
}

/// Counters of a store since it was opened, for monitoring. See [`Store::stats`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Whether group commit is on.
    pub group_commit: bool,
    /// How request writes were batched into write transactions.
    pub batches: BatchStats,
    /// What the clean-up sweeps did.
    pub cleanup: CleanupStats,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.core.cfg.path)
            .field("sharing", &self.core.cfg.sharing)
            .field("read_only", &self.core.cfg.read_only)
            .field("cleanup_thread", &self.cleaner.is_some())
            .finish_non_exhaustive()
    }
}

impl Store {
    /// A builder for a store on the file at `path`, with documented defaults.
    pub fn builder(path: impl AsRef<Path>) -> Builder {
        Builder::new(path.as_ref())
    }

    /// Opens (or creates) the file at `path` with the default settings.
    ///
    /// # Errors
    /// As [`Builder::open`].
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::builder(path).open()
    }

    pub(crate) fn open_with(cfg: Config) -> Result<Self> {
        let policy = (!cfg.read_only).then_some(cfg.files);
        let locks = LockDir::new(&cfg.path, cfg.lock_stripes, cfg.lock_poll_interval, policy);
        // The lock directory and the database's directory are checked before the file opens.
        locks.prepare_on_open()?;
        if cfg.sharing == crate::Sharing::MultiProcess && !cfg.read_only {
            // For `close_for_exit`: which process is the last one open. Before the open, so
            // that a process closing as the last one finishes first.
            locks.hold_open()?;
        }
        let db = guard("opening the file", || open::open_db(&cfg))?;
        let committer = Committer::new(cfg.group_commit, cfg.max_batch, cfg.company_wait);
        let core = Arc::new(Core {
            db: RwLock::new(Some(Arc::new(db))),
            cfg,
            pid: std::process::id(),
            committer,
            locks,
            cleanup_failed: AtomicBool::new(false),
            cleanup_panic: Mutex::new(None),
            cleanup_stats: Mutex::new(CleanupStats::default()),
            suspect: AtomicBool::new(false),
            leave_to_exit: AtomicBool::new(false),
        });
        core.watch(guard("opening the file", || open::check_or_init_meta(&core)))?;
        let cleaner = match core.cfg.cleanup_interval {
            Some(every) if core.cfg.cleanup_thread && !core.cfg.read_only => {
                Some(Cleaner::start(&core, every)?)
            }
            _ => None,
        };
        Ok(Self { core, cleaner })
    }

    /// The path of the database file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.core.cfg.path
    }

    /// Whether several processes may use the file at once (session2's `is_multiprocess_safe`):
    /// true for [`Sharing::MultiProcess`](crate::Sharing::MultiProcess).
    #[must_use]
    pub fn is_multiprocess_safe(&self) -> bool {
        self.core.cfg.sharing == crate::Sharing::MultiProcess
    }

    /// Whether several threads may use this handle at once (session2's `is_thread_safe`):
    /// always true.
    #[must_use]
    pub fn is_thread_safe(&self) -> bool {
        true
    }

    /// Counters since the store was opened: the batch sizes of group commit and what the
    /// clean-up sweeps removed.
    #[must_use]
    pub fn stats(&self) -> Stats {
        let c = &self.core;
        Stats {
            group_commit: c.committer.enabled(),
            batches: c.committer.stats(),
            cleanup: c.cleanup_stats.lock().unwrap_or_else(PoisonError::into_inner).clone(),
        }
    }

    /// Whether this store's clean-up thread is running: false when disabled, and after the
    /// thread ended on a panic.
    #[must_use]
    pub fn has_cleanup_thread(&self) -> bool {
        self.cleaner.as_ref().is_some_and(Cleaner::is_running)
    }
}

impl Core {
    /// The redb handle, refused in a process forked after open (its locks and cached state
    /// belong to the parent), and after a clean-up thread panic, which is reported once.
    fn db(&self) -> Result<Arc<Db>> {
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
    fn db_unreported(&self) -> Result<Arc<Db>> {
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
    fn reopen(&self, stale: Arc<Db>) -> Result<()> {
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
    fn read(&self) -> Result<Snapshot> {
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
    fn rw(&self) -> Result<Arc<Db>> {
        self.db()?;
        self.rw_unreported()
    }

    /// [`Core::rw`] without reporting a clean-up thread panic; see [`Core::db_unreported`].
    fn rw_unreported(&self) -> Result<Arc<Db>> {
        let db = self.db_unreported()?;
        db.read_write()?;
        Ok(db)
    }

    /// Begins a write transaction for the group committer. A handle redb stopped after an I/O
    /// error in an earlier commit ([`Error::NeedsReopen`]) is reopened once, so that a store
    /// goes on by itself when a full disk has room again or a failing device recovers.
    fn begin_write(&self) -> Result<Writing> {
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
    /// otherwise. For maintenance; request writes go through [`Core::submit`].
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

    /// Refuses a user key longer than [`session::MAX_USER_KEY`].
    fn check_user_key(user: Option<&[u8]>) -> Result<()> {
        if user.is_some_and(|u| u.len() > session::MAX_USER_KEY) {
            return Err(Error::InvalidInput(format!(
                "user key over {} bytes: use a shorter key, such as a user id",
                session::MAX_USER_KEY
            )));
        }
        Ok(())
    }

    /// Refuses data larger than the configured limit.
    fn check_size(&self, what: &str, data: &[u8]) -> Result<()> {
        if data.len() > self.cfg.max_data_size {
            return Err(Error::InvalidInput(format!(
                "{what} is {} bytes, over the limit of {}: store less or raise max_data_size",
                data.len(),
                self.cfg.max_data_size
            )));
        }
        Ok(())
    }
}

impl Drop for Store {
    /// Stops and joins the clean-up thread, except in a process forked after open, where that
    /// thread does not exist.
    fn drop(&mut self) {
        if let Some(cleaner) = self.cleaner.take() {
            if std::process::id() == self.core.pid {
                cleaner.stop();
            } else {
                std::mem::forget(cleaner);
            }
        }
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
