//! Cross-process locks on small files beside the database, never on the database file itself.
//! The only module that uses fs4.
//!
//! Layout: for a database `sessions.redb`, the directory `sessions.redb.locks/` holds
//! `stripe-000` … (one per stripe; a session's stripe is a CRC-32 of its id) and
//! `cleanup.lock`, and `open.lock`, which every read-write `MultiProcess` store holds shared
//! while it is open (see [`LockDir::last_open`]). The files stay empty; only their `flock`
//! locks matter, and the OS releases
//! those when the holding process dies, however it dies.
//!
//! The directory is created 0700 and the files 0600 (0770/0660 with `FileAccess::Group`), and
//! a read-write store refuses a directory or file of another user, or one that others can
//! write (src/store/files.rs): anyone who can open a lock file can `flock` it and stall the store.
//! A read-only store creates nothing: it opens existing lock files for reading, unchecked.
//!
//! An OS file lock is held by an open file description, which every thread of a process
//! shares, so each lock has an in-process mutex in front of it: threads of one process queue
//! on the mutex, processes on the OS lock.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock, PoisonError, TryLockError};
use std::thread;
use std::time::{Duration, Instant};

use fs4::fs_std::FileExt;

use crate::error::{Error, Result};
use crate::store::files::{self, Policy};

/// The directory of lock files for the database at `db`.
pub(crate) fn lock_dir_for(db: &Path) -> PathBuf {
    let mut name = db.file_name().map(std::ffi::OsStr::to_os_string).unwrap_or_default();
    name.push(".locks");
    db.with_file_name(name)
}

/// The in-process side of a stripe.
#[derive(Default)]
struct Local {
    /// Whether a thread of this process holds the stripe.
    held: bool,
    /// How many threads of this process wait for it.
    waiting: usize,
    /// When a thread of this process last released it while others of this process waited
    /// for it: a hand-over, which the next taker makes fair to other processes.
    handed_over: Option<Instant>,
}

/// One stripe: its in-process state, and its lock file.
struct Stripe {
    local: Mutex<Local>,
    freed: Condvar,
    file: OnceLock<File>,
}

/// The lock files of one store.
pub(crate) struct LockDir {
    dir: PathBuf,
    /// The process that opened the lock files: a forked child shares their open file
    /// descriptions, so a guard dropped there must not unlock the parent's lock.
    pid: u32,
    stripes: Vec<Stripe>,
    poll: Duration,
    cleanup_file: OnceLock<File>,
    cleanup_held: Mutex<()>,
    open_file: OnceLock<File>,
    lead_file: OnceLock<File>,
    /// How files are created and checked; `None` for a read-only store, which creates and
    /// checks nothing.
    policy: Option<Policy>,
    /// Set once the directory was created or checked ([`LockDir::prepare`]).
    prepared: OnceLock<()>,
}

impl LockDir {
    pub(crate) fn new(db: &Path, stripes: usize, poll: Duration, policy: Option<Policy>) -> Self {
        let stripes = (0..stripes.max(1))
            .map(|_| Stripe {
                local: Mutex::new(Local::default()),
                freed: Condvar::new(),
                file: OnceLock::new(),
            })
            .collect();
        // Absolute now, so that a later change of working directory cannot split the locks.
        let db = std::path::absolute(db).unwrap_or_else(|_| db.to_path_buf());
        Self {
            dir: lock_dir_for(&db),
            pid: std::process::id(),
            stripes,
            poll: poll.max(Duration::from_millis(1)),
            cleanup_file: OnceLock::new(),
            cleanup_held: Mutex::new(()),
            open_file: OnceLock::new(),
            lead_file: OnceLock::new(),
            policy,
            prepared: OnceLock::new(),
        }
    }

    /// Creates the directory if needed (never its parents: the database's own directory must
    /// already exist) and checks it and the directory it is in: once per store, on open, so
    /// that an unsafe directory fails the open with [`Error::UnsafeFile`]. Nothing for a
    /// read-only store.
    pub(crate) fn prepare(&self) -> Result<()> {
        let Some(policy) = self.policy else {
            return Ok(());
        };
        if self.prepared.get().is_none() {
            files::prepare_dir(policy, &self.dir)?;
            let _ = self.prepared.set(());
        }
        Ok(())
    }

    /// [`LockDir::prepare`] when a store opens: a directory of another user or one others can
    /// write fails the open; one that cannot be created (the database's directory is not
    /// writable) fails only the first lock, as before the checks existed.
    pub(crate) fn prepare_on_open(&self) -> Result<()> {
        match self.prepare() {
            Err(e @ Error::UnsafeFile { .. }) => Err(e),
            _ => Ok(()),
        }
    }

    /// Opens (creating and checking it, unless read-only) a lock file, once per store.
    fn file<'a>(&self, cell: &'a OnceLock<File>, name: &str) -> Result<&'a File> {
        if let Some(file) = cell.get() {
            return Ok(file);
        }
        self.prepare()?;
        let path = self.dir.join(name);
        let file = match self.policy {
            Some(policy) => files::open_lock_file(policy, &path)?,
            None => files::open_existing(&path).map_err(|e| lock_io(&path, &e))?,
        };
        Ok(cell.get_or_init(|| file))
    }

    /// The stripe of `key`: keys of one stripe share a lock.
    pub(crate) fn stripe_of(&self, key: &[u8]) -> usize {
        crc32fast::hash(key) as usize % self.stripes.len()
    }

    /// Takes the lock of the stripe of `key`, waiting at most `max_wait`.
    pub(crate) fn lock(&self, key: &[u8], max_wait: Duration) -> Result<StripeGuard<'_>> {
        let start = Instant::now();
        let index = self.stripe_of(key);
        let stripe = &self.stripes[index];
        let file = self.file(&stripe.file, &format!("stripe-{index:03}"))?;
        let timeout = || Error::LockTimeout { waited: start.elapsed() };
        // First among the threads of this process...
        let handed_over = {
            let mut local = stripe.local.lock().unwrap_or_else(PoisonError::into_inner);
            while local.held {
                let left = max_wait.checked_sub(start.elapsed()).ok_or_else(timeout)?;
                local.waiting += 1;
                local = stripe
                    .freed
                    .wait_timeout(local, left)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
                local.waiting -= 1;
            }
            local.held = true;
            local.handed_over.take()
        };
        let mut guard = StripeGuard { dir: self, stripe, file, locked: false };
        // Handed over by a thread of this process less than a poll interval ago (others of
        // this process were waiting): give other processes, which poll, the rest of that
        // interval to take the OS lock first; otherwise this process's threads could pass it
        // among themselves forever. A lock that was released with no thread of this process
        // waiting is taken at once: a thread that locks again and again alone (sequential
        // requests) leaves gaps that a polling process finds.
        if let Some(at) = handed_over {
            let fair = (at + self.poll).saturating_duration_since(Instant::now());
            thread::sleep(fair.min(max_wait.saturating_sub(start.elapsed())));
        }
        // ...then among processes, polling: a blocking flock could not be given up in time.
        loop {
            if FileExt::try_lock_exclusive(file).map_err(|e| lock_io(&self.dir, &e))? {
                guard.locked = true;
                return Ok(guard);
            }
            let left = max_wait.checked_sub(start.elapsed()).ok_or_else(timeout)?;
            thread::sleep(self.poll.min(left));
        }
    }

    /// Takes the clean-up lock if no other thread or process holds it.
    pub(crate) fn try_cleanup(&self) -> Result<Option<CleanupGuard<'_>>> {
        let held = match self.cleanup_held.try_lock() {
            Ok(held) => held,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => return Ok(None),
        };
        let file = self.file(&self.cleanup_file, "cleanup.lock")?;
        if !FileExt::try_lock_exclusive(file).map_err(|e| lock_io(&self.dir, &e))? {
            return Ok(None);
        }
        Ok(Some(CleanupGuard { dir: self, file, _held: held }))
    }
}

impl LockDir {
    /// The directory of the lock files.
    pub(crate) fn path(&self) -> &Path {
        &self.dir
    }

    /// Takes `commit.lock`, held by the process leading a shared commit (`share.rs`) from
    /// before its transaction begins until the writes it took are settled, if no other process
    /// holds it. Only the group committer's leader thread calls this, one at a time per store.
    pub(crate) fn try_lead(&self) -> Result<Option<LeadGuard<'_>>> {
        let file = self.file(&self.lead_file, "commit.lock")?;
        if !FileExt::try_lock_exclusive(file).map_err(|e| lock_io(&self.dir, &e))? {
            return Ok(None);
        }
        Ok(Some(LeadGuard { dir: self, file }))
    }
}

/// The held `commit.lock` ([`LockDir::try_lead`]); released on drop.
pub(crate) struct LeadGuard<'a> {
    dir: &'a LockDir,
    file: &'a File,
}

impl Drop for LeadGuard<'_> {
    fn drop(&mut self) {
        if std::process::id() == self.dir.pid {
            let _ = FileExt::unlock(self.file);
        }
    }
}

/// How long [`LockDir::hold_open`] waits for the last process open to finish closing.
const HOLD_OPEN_WAIT: Duration = Duration::from_secs(2);

impl LockDir {
    /// Takes a shared lock on `open.lock`, held until the store closes: it tells other
    /// processes that this one has the database open read-write. Waits (at most 2 s, polling)
    /// while another process, the last one open, closes the file. Best effort: if the lock
    /// file cannot be used or the wait runs out, this store is not counted, which only makes
    /// another process's `close_for_exit` close cleanly where it could have skipped it.
    ///
    /// # Errors
    /// Only [`Error::UnsafeFile`]: a lock file of another user is refused, not skipped.
    pub(crate) fn hold_open(&self) -> Result<()> {
        let file = match self.file(&self.open_file, "open.lock") {
            Ok(file) => file,
            Err(e @ Error::UnsafeFile { .. }) => return Err(e),
            Err(_) => return Ok(()),
        };
        let start = Instant::now();
        while matches!(FileExt::try_lock_shared(file), Ok(false)) {
            if start.elapsed() >= HOLD_OPEN_WAIT {
                return Ok(());
            }
            thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }

    /// Whether this is the last store with the database open read-write. Gives up this store's
    /// shared lock on `open.lock`, then tries to take it exclusively, kept until the store's
    /// lock directory is dropped, after the database closed: a process opening meanwhile waits
    /// in [`LockDir::hold_open`] before it opens the database. Unlock first, then try: of
    /// several stores closing at once, the last to try finds no shared lock left and answers
    /// `true`. Also `true` when this store never held the lock (it cannot tell, so it must
    /// close), and `false` in a process forked after open.
    pub(crate) fn last_open(&self) -> bool {
        let Some(file) = self.open_file.get() else {
            return true;
        };
        if std::process::id() != self.pid {
            return false;
        }
        let _ = FileExt::unlock(file);
        FileExt::try_lock_exclusive(file).unwrap_or(true)
    }
}

impl Drop for LockDir {
    /// Releases `open.lock` explicitly, not only by closing the file: a process forked without
    /// exec holds a copy of the descriptor, which would keep the lock.
    fn drop(&mut self) {
        if std::process::id() == self.pid
            && let Some(file) = self.open_file.get()
        {
            let _ = FileExt::unlock(file);
        }
    }
}

fn lock_io(path: &Path, e: &std::io::Error) -> Error {
    Error::Io(std::io::Error::new(
        e.kind(),
        format!("lock file {}: {e}; check that its directory is writable", path.display()),
    ))
}

/// A held stripe lock; released (OS lock first, then the in-process one) on drop.
pub(crate) struct StripeGuard<'a> {
    dir: &'a LockDir,
    stripe: &'a Stripe,
    file: &'a File,
    locked: bool,
}

impl Drop for StripeGuard<'_> {
    fn drop(&mut self) {
        // In a forked child the lock file's open file description is the parent's: unlocking
        // it would release the parent's lock.
        if self.locked && std::process::id() == self.dir.pid {
            // If unlocking fails the descriptor stays locked until the store closes: nothing
            // better can be done in a destructor, and no data depends on it.
            let _ = FileExt::unlock(self.file);
        }
        let mut local = self.stripe.local.lock().unwrap_or_else(PoisonError::into_inner);
        local.held = false;
        local.handed_over = (local.waiting > 0).then(Instant::now);
        drop(local);
        self.stripe.freed.notify_one();
    }
}

/// The held clean-up lock; released on drop.
pub(crate) struct CleanupGuard<'a> {
    dir: &'a LockDir,
    file: &'a File,
    _held: MutexGuard<'a, ()>,
}

impl Drop for CleanupGuard<'_> {
    fn drop(&mut self) {
        if std::process::id() == self.dir.pid {
            let _ = FileExt::unlock(self.file);
        }
    }
}
