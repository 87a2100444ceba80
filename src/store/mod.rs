//! The engine: a [`Store`] keeps sessions, their states and expiry indexes in one redb file.

mod admin;
mod expiry;
mod open;
mod record;
mod session;
mod typed;

pub use admin::{SessionInfo, SessionStatus, Sessions, StateInfo, StoreInfo};
pub use expiry::CleanupReport;
pub use session::{Created, Fetched, Save, Stored};
pub use typed::{decode, encode};

use std::fmt;
use std::path::Path;

use redb::{Database, ReadOnlyDatabase, ReadTransaction, ReadableDatabase};

use crate::config::{Builder, Config};
use crate::error::{Error, Result};
use crate::schema::WriteTables;

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
/// same file at once; each write is one durable redb transaction.
pub struct Store {
    /// Always `Some` until dropped; see the `Drop` impl.
    db: Option<Db>,
    cfg: Config,
    pid: u32,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.cfg.path)
            .field("sharing", &self.cfg.sharing)
            .field("read_only", &self.cfg.read_only)
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
        let db = open::open_db(&cfg)?;
        let store = Self { db: Some(db), cfg, pid: std::process::id() };
        open::check_or_init_meta(&store)?;
        Ok(store)
    }

    /// The path of the database file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.cfg.path
    }

    /// Whether several processes may use the file at once (session2's `is_multiprocess_safe`):
    /// true for [`Sharing::MultiProcess`](crate::Sharing::MultiProcess).
    #[must_use]
    pub fn is_multiprocess_safe(&self) -> bool {
        self.cfg.sharing == crate::Sharing::MultiProcess
    }

    /// Whether several threads may use this handle at once (session2's `is_thread_safe`):
    /// always true.
    #[must_use]
    pub fn is_thread_safe(&self) -> bool {
        true
    }

    /// The redb handle, refused in a process forked after open: its locks and cached state
    /// belong to the parent.
    fn db(&self) -> Result<&Db> {
        if std::process::id() != self.pid {
            return Err(Error::Forked);
        }
        self.db.as_ref().ok_or_else(|| Error::InvalidInput("the store is closed".into()))
    }

    fn now(&self) -> u64 {
        self.cfg.clock.now_ms()
    }

    /// Begins a read transaction.
    fn read(&self) -> Result<ReadTransaction> {
        Ok(match self.db()? {
            Db::ReadWrite(db) => db.begin_read()?,
            Db::ReadOnly(db) => db.begin_read()?,
        })
    }

    /// Runs `f` in one write transaction, committing if it returns `Ok` and aborting otherwise.
    fn write<T>(&self, f: impl FnOnce(&mut WriteTables<'_>) -> Result<T>) -> Result<T> {
        let Db::ReadWrite(db) = self.db()? else {
            return Err(Error::InvalidInput(
                "this store was opened read-only: open it without read_only to write".into(),
            ));
        };
        let txn = db.begin_write()?;
        let out = {
            let mut tables = WriteTables::open(&txn)?;
            f(&mut tables)?
        };
        txn.commit()?;
        Ok(out)
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
    /// Closes the file, except in a process forked after open: there the redb handle shares its
    /// OFD byte-range locks with the parent and holds the parent's cached header, so closing it
    /// would release the parent's locks (and could write a stale header). It is leaked instead;
    /// the OS reclaims it when the child exits.
    fn drop(&mut self) {
        if std::process::id() != self.pid {
            std::mem::forget(self.db.take());
        }
    }
}
