//! The public handle: a [`Store`] is a thin handle on a shared [`Core`] plus the clean-up thread
//! it owns. The thread holds only a weak reference to the core, so it never keeps the store
//! alive; dropping the `Store` stops and joins it.

use std::fmt;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use super::cleanup::Cleaner;
use super::commit::{BatchStats, Committer};
use super::config::{Builder, Config};
use super::lock::LockDir;
use super::open;
use super::shared::{Core, guard};
use super::stats::CleanupStats;
use crate::error::Result;

/// A session store on one file. `Send + Sync`: share it between threads with `Arc` or by
/// reference.
///
/// Open it with [`Store::builder`] (or [`Store::open`] for the defaults). With the default
/// [`Sharing::MultiProcess`](crate::store::config::Sharing::MultiProcess), any number of processes may open the
/// same file at once; each write is one durable redb transaction, shared by the concurrent
/// writes of this process's threads (group commit).
pub struct Store {
    pub(super) core: Arc<Core>,
    pub(super) cleaner: Option<Cleaner>,
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
        let locks = LockDir::new(&cfg.path, cfg.lock.stripes, cfg.lock.poll_interval, policy);
        // The lock directory and the database's directory are checked before the file opens.
        locks.prepare_on_open()?;
        if cfg.sharing == crate::store::config::Sharing::MultiProcess && !cfg.read_only {
            // For `close_for_exit`: which process is the last one open. Before the open, so
            // that a process closing as the last one finishes first.
            locks.hold_open()?;
        }
        let db = guard("opening the file", || open::open_db(&cfg))?;
        let share = super::share::Share::for_config(&cfg, &locks)?;
        let committer =
            Committer::new(cfg.commit.group_commit, cfg.commit.max_batch, cfg.commit.company_wait);
        let core = Arc::new(Core {
            db: RwLock::new(Some(Arc::new(db))),
            cfg,
            pid: std::process::id(),
            committer,
            share,
            locks,
            cleanup_failed: AtomicBool::new(false),
            cleanup_panic: Mutex::new(None),
            cleanup_stats: Mutex::new(CleanupStats::default()),
            suspect: AtomicBool::new(false),
            leave_to_exit: AtomicBool::new(false),
        });
        let db = core.db()?;
        core.watch(guard("opening the file", || {
            open::check_or_init_meta(&db, core.cfg.read_only, || core.now())
        }))?;
        drop(db);
        let cleaner = match core.cfg.sweep.interval {
            Some(every) if core.cfg.sweep.thread && !core.cfg.read_only => {
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
    /// true for [`Sharing::MultiProcess`](crate::store::config::Sharing::MultiProcess).
    #[must_use]
    pub fn is_multiprocess_safe(&self) -> bool {
        self.core.cfg.sharing == crate::store::config::Sharing::MultiProcess
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

impl Builder {
    /// Opens the file, creating it (and the database in it) if it does not exist or is empty.
    ///
    /// # Errors
    /// [`Error::NotSessionDb`](crate::error::Error::NotSessionDb) for a file that is not a sessiondb
    /// database, [`Error::UnsupportedFormat`](crate::error::Error::UnsupportedFormat) for another
    /// format version, [`Error::UnsafeFile`](crate::error::Error::UnsafeFile) for a file of another
    /// user or one that others can write ([`file_access`](Self::file_access)),
    /// [`Error::Storage`](crate::error::Error::Storage) or [`Error::Io`](crate::error::Error::Io) if the
    /// file cannot be opened.
    pub fn open(self) -> Result<Store> {
        Store::open_with(self.into_config())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::Store;
    use crate::error::Result;
    use crate::time::Clock;

    /// A clock that counts its readings.
    #[derive(Debug, Default)]
    struct Counting(AtomicU64);

    impl Clock for Counting {
        fn now_ms(&self) -> u64 {
            self.0.fetch_add(1, Ordering::SeqCst);
            1_000_000
        }
    }

    /// The file's creation time is read from the clock when the file is initialised, and only
    /// then: a user's clock is not read by opening an initialised file.
    #[test]
    fn opening_an_initialised_file_reads_no_clock() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("clock.redb");
        let clock = Arc::new(Counting::default());
        let open = |read_only| {
            Store::builder(&path)
                .clock(Arc::clone(&clock) as Arc<dyn Clock>)
                .cleanup_interval(None)
                .read_only(read_only)
                .open()
        };
        drop(open(false)?);
        assert!(clock.0.load(Ordering::SeqCst) >= 1, "a new file records when it was created");
        clock.0.store(0, Ordering::SeqCst);
        drop(open(false)?);
        drop(open(true)?);
        assert_eq!(clock.0.load(Ordering::SeqCst), 0);
        Ok(())
    }
}
