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
use std::sync::{Mutex, PoisonError};

use redb::{Database, ReadOnlyDatabase, ReadTransaction, ReadableDatabase};

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
    /// Always `Some` until dropped; see the `Drop` impl.
    db: Option<Db>,
    pub(crate) cfg: Config,
    pid: u32,
    committer: Committer,
    pub(crate) locks: LockDir,
    /// Set when the clean-up thread panicked; the message waits in `cleanup_panic`.
    cleanup_failed: AtomicBool,
    cleanup_panic: Mutex<Option<String>>,
    cleanup_stats: Mutex<CleanupStats>,
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
        let db = guard("opening the file", || open::open_db(&cfg))?;
        let locks = LockDir::new(&cfg.path, cfg.lock_stripes, cfg.lock_poll_interval);
        let committer = Committer::new(cfg.group_commit, cfg.max_batch);
        let core = Arc::new(Core {
            db: Some(db),
            cfg,
            pid: std::process::id(),
            committer,
            locks,
            cleanup_failed: AtomicBool::new(false),
            cleanup_panic: Mutex::new(None),
            cleanup_stats: Mutex::new(CleanupStats::default()),
        });
        guard("opening the file", || open::check_or_init_meta(&core))?;
        let cleaner = match core.cfg.cleanup_interval {
            Some(every) if !core.cfg.read_only => Some(Cleaner::start(&core, every)?),
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
    fn db(&self) -> Result<&Db> {
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
    fn db_unreported(&self) -> Result<&Db> {
        if std::process::id() != self.pid {
            return Err(Error::Forked);
        }
        self.db.as_ref().ok_or_else(|| Error::InvalidInput("the store is closed".into()))
    }

    /// Records a panic of the clean-up thread, for the next call to report.
    pub(crate) fn report_cleanup_panic(&self, message: String) {
        *self.cleanup_panic.lock().unwrap_or_else(PoisonError::into_inner) = Some(message);
        self.cleanup_failed.store(true, Ordering::Relaxed);
    }

    pub(crate) fn now(&self) -> u64 {
        self.cfg.clock.now_ms()
    }

    /// Begins a read transaction.
    fn read(&self) -> Result<ReadTransaction> {
        Ok(match self.db()? {
            Db::ReadWrite(db) => db.begin_read()?,
            Db::ReadOnly(db) => db.begin_read()?,
        })
    }

    /// The read-write redb handle, or the error a read-only store gives for writes.
    fn rw(&self) -> Result<&Database> {
        self.db()?;
        self.rw_unreported()
    }

    /// [`Core::rw`] without reporting a clean-up thread panic; see [`Core::db_unreported`].
    fn rw_unreported(&self) -> Result<&Database> {
        match self.db_unreported()? {
            Db::ReadWrite(db) => Ok(db),
            Db::ReadOnly(_) => Err(Error::InvalidInput(
                "this store was opened read-only: open it without read_only to write".into(),
            )),
        }
    }

    /// Runs `f` in one write transaction of its own, committing if it returns `Ok` and aborting
    /// otherwise. For maintenance; request writes go through [`Core::submit`].
    pub(crate) fn write<T>(&self, f: impl FnOnce(&mut WriteTables<'_>) -> Result<T>) -> Result<T> {
        let txn = self.rw()?.begin_write()?;
        let out = {
            let mut tables = WriteTables::open(&txn)?;
            f(&mut tables)?
        };
        txn.commit()?;
        Ok(out)
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
    /// Closing writes redb's allocator state, which on a damaged file can panic inside redb;
    /// that panic is caught: a drop never panics.
    fn drop(&mut self) {
        let db = self.db.take();
        if std::process::id() == self.pid {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(db)));
        } else {
            std::mem::forget(db);
        }
    }
}
