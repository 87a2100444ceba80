//! Simulated disks that fail on purpose: power loss at a chosen sync, I/O errors after a chosen
//! number of operations, a disk that fills up. For testing what a crash or a failing device
//! does to a store (`tests/faults.rs`, `fuzz/`), and for testing programs built on sessiondb.
//!
//! A [`FaultyDisk`] is a handle on one simulated disk; [`FaultyDisk::backend`] gives the redb
//! storage backend a store runs on ([`Builder::backend`](crate::Builder::backend), with
//! [`Sharing::SingleProcess`](crate::store::config::Sharing::SingleProcess): the simulated disk has no
//! byte-range locks). The disk keeps two images:
//!
//! - the **live** image: what reads see, every write applied at once;
//! - the **durable** image: what survives a power loss, as of the last completed sync.
//!
//! Writes since the last sync wait in order; at a power loss a chosen prefix of them ([`Torn`])
//! reaches the durable image, as on a disk that writes in order but was cut off part-way.
//!
//! ```
//! use sessiondb::faults::{FaultyDisk, Torn};
//! use sessiondb::{Sharing, Store};
//! # let dir = tempfile::tempdir().unwrap();
//! # let path = dir.path().join("sessions.redb");
//! let disk = FaultyDisk::new();
//! let open = |disk: &FaultyDisk| {
//!     Store::builder(&path)
//!         .sharing(Sharing::SingleProcess)
//!         .backend(disk.backend())
//!         .open()
//! };
//! let store = open(&disk)?;
//! let kept = store.create(b"ann", b"")?;
//! disk.power_loss_at_sync(1); // the next sync loses power
//! assert!(store.create(b"bob", b"").is_err());
//! drop(store);
//! let store = open(&disk.after_power_loss(Torn::None))?;
//! assert!(store.exists(&kept.id)?);
//! # Ok::<_, sessiondb::Error>(())
//! ```

use std::fmt;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use redb::StorageBackend;

/// Whether an injected I/O error happens once or goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    /// Only the one operation fails; the next ones succeed (a flaky cable).
    Transient,
    /// That operation and every later one fails until [`FaultyDisk::heal`] (a dead device).
    Persistent,
}

/// Which of the writes made since the last sync reach the durable image at a power loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Torn {
    /// None of them.
    None,
    /// The first `n` of them, in the order they were made.
    Prefix(usize),
    /// All of them.
    All,
}

/// One change made since the last sync.
#[derive(Debug, Clone)]
enum Change {
    Write(u64, Vec<u8>),
    SetLen(u64),
}

#[derive(Default)]
struct Disk {
    live: Vec<u8>,
    durable: Vec<u8>,
    pending: Vec<Change>,
    /// Operations counted so far (reads, writes, resizes and syncs).
    ops: u64,
    syncs: u64,
    /// The operation number that fails next, and how.
    fail_at: Option<(u64, Persistence)>,
    /// A persistent fault is on.
    failing: bool,
    /// The sync number that loses power.
    power_loss_at: Option<u64>,
    /// Power was lost: every operation fails.
    dead: bool,
    capacity: Option<u64>,
}

impl Disk {
    /// Counts an operation and decides whether it fails.
    fn check(&mut self) -> io::Result<()> {
        if self.dead {
            return Err(io::Error::other("the simulated disk lost power"));
        }
        self.ops += 1;
        if let Some((at, how)) = self.fail_at
            && self.ops >= at
        {
            self.fail_at = None;
            self.failing = how == Persistence::Persistent;
            return Err(io::Error::other("injected i/o error"));
        }
        if self.failing {
            return Err(io::Error::other("injected i/o error (persistent)"));
        }
        Ok(())
    }

    fn check_room(&self, end: u64) -> io::Result<()> {
        match self.capacity {
            Some(cap) if end > cap => {
                Err(io::Error::new(io::ErrorKind::StorageFull, "the simulated disk is full"))
            }
            _ => Ok(()),
        }
    }
}

fn apply(image: &mut Vec<u8>, change: &Change) {
    match change {
        Change::Write(offset, data) => {
            let start = to_usize(*offset);
            let end = start + data.len();
            if image.len() < end {
                image.resize(end, 0);
            }
            image[start..end].copy_from_slice(data);
        }
        Change::SetLen(len) => image.resize(to_usize(*len), 0),
    }
}

/// Offsets and lengths are checked against the live image (a `Vec`) before they are stored, so
/// they fit in `usize`.
fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

fn out_of_range() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, "offset past the end of the simulated disk")
}

/// A handle on one simulated disk; clones share it. See the [module docs](self).
#[derive(Clone, Default)]
pub struct FaultyDisk {
    disk: Arc<Mutex<Disk>>,
}

impl fmt::Debug for FaultyDisk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.lock();
        f.debug_struct("FaultyDisk")
            .field("len", &d.live.len())
            .field("ops", &d.ops)
            .field("syncs", &d.syncs)
            .field("pending", &d.pending.len())
            .field("dead", &d.dead)
            .finish_non_exhaustive()
    }
}

impl FaultyDisk {
    /// An empty disk that does not fail.
    pub fn new() -> Self {
        Self::default()
    }

    /// A disk holding `image`, both live and durable (a file copied from elsewhere).
    pub fn with_image(image: Vec<u8>) -> Self {
        let disk = Disk { durable: image.clone(), live: image, ..Disk::default() };
        Self { disk: Arc::new(Mutex::new(disk)) }
    }

    fn lock(&self) -> MutexGuard<'_, Disk> {
        // A panic while holding the lock leaves whole images behind: go on with them.
        self.disk.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The storage backend to open a store on. Every backend of a disk shares it.
    pub fn backend(&self) -> FaultyBackend {
        FaultyBackend { disk: self.clone() }
    }

    /// The `n`th sync from now (1: the next) loses power: it fails, and so does every later
    /// operation. [`FaultyDisk::after_power_loss`] then gives the disk a restart would see.
    pub fn power_loss_at_sync(&self, n: u64) {
        let mut d = self.lock();
        d.power_loss_at = Some(d.syncs + n.max(1));
    }

    /// Cuts the power now: every later operation fails.
    pub fn pull_plug(&self) {
        self.lock().dead = true;
    }

    /// The `n`th operation from now (1: the next; reads, writes, resizes and syncs count)
    /// fails with an I/O error, once or from then on.
    pub fn fail_after(&self, n: u64, how: Persistence) {
        let mut d = self.lock();
        d.fail_at = Some((d.ops + n.max(1), how));
    }

    /// Ends injected I/O errors (not a power loss): the device works again.
    pub fn heal(&self) {
        let mut d = self.lock();
        d.fail_at = None;
        d.failing = false;
    }

    /// Caps the disk at `bytes` (`None`: no cap). Growing past it fails with
    /// [`io::ErrorKind::StorageFull`], as a full disk does.
    pub fn set_capacity(&self, bytes: Option<u64>) {
        self.lock().capacity = bytes;
    }

    /// Operations so far: reads, writes, resizes and syncs.
    pub fn ops(&self) -> u64 {
        self.lock().ops
    }

    /// Syncs so far, the failed ones included.
    pub fn syncs(&self) -> u64 {
        self.lock().syncs
    }

    /// Whether the disk lost power.
    pub fn is_dead(&self) -> bool {
        self.lock().dead
    }

    /// The live image: what reads see now.
    pub fn live_image(&self) -> Vec<u8> {
        self.lock().live.clone()
    }

    /// The durable image: what the last completed sync made safe.
    pub fn durable_image(&self) -> Vec<u8> {
        self.lock().durable.clone()
    }

    /// The disk as a restart finds it after a power loss (now, or at the injected sync): the
    /// durable image plus the writes `torn` lets through. A new disk, without faults.
    #[must_use]
    pub fn after_power_loss(&self, torn: Torn) -> FaultyDisk {
        let d = self.lock();
        let through = match torn {
            Torn::None => 0,
            Torn::Prefix(n) => n.min(d.pending.len()),
            Torn::All => d.pending.len(),
        };
        let mut image = d.durable.clone();
        for change in &d.pending[..through] {
            apply(&mut image, change);
        }
        FaultyDisk::with_image(image)
    }

    /// Writes made since the last completed sync.
    pub fn unsynced_writes(&self) -> usize {
        self.lock().pending.len()
    }

    /// Frees the disk's images and unsynced writes; every later operation fails, as after a
    /// power loss, and the images read as empty.
    ///
    /// For long test runs: a store that met a storage error leaks its redb handle on drop
    /// rather than risk closing it (closing a damaged file can abort inside redb; see
    /// docs/reliability.md), and with it the backend, which on a real file holds a descriptor
    /// but here holds the whole simulated disk, twice. Discarding the disk once it is no
    /// longer needed gives that memory back.
    pub fn discard(&self) {
        let mut d = self.lock();
        d.dead = true;
        d.live = Vec::new();
        d.durable = Vec::new();
        d.pending = Vec::new();
    }
}

/// The redb storage backend of a [`FaultyDisk`].
#[derive(Debug, Clone)]
pub struct FaultyBackend {
    disk: FaultyDisk,
}

impl StorageBackend for FaultyBackend {
    fn len(&self) -> io::Result<u64> {
        let d = self.disk.lock();
        if d.dead {
            return Err(io::Error::other("the simulated disk lost power"));
        }
        Ok(d.live.len() as u64)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        let mut d = self.disk.lock();
        d.check()?;
        let start = usize::try_from(offset).map_err(|_| out_of_range())?;
        let src = start
            .checked_add(out.len())
            .and_then(|end| d.live.get(start..end))
            .ok_or_else(out_of_range)?;
        out.copy_from_slice(src);
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut d = self.disk.lock();
        d.check()?;
        if len > d.live.len() as u64 {
            d.check_room(len)?;
        }
        usize::try_from(len).map_err(|_| out_of_range())?;
        let change = Change::SetLen(len);
        apply(&mut d.live, &change);
        d.pending.push(change);
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut d = self.disk.lock();
        d.check()?;
        d.syncs += 1;
        if d.power_loss_at == Some(d.syncs) {
            d.dead = true;
            return Err(io::Error::other("the simulated disk lost power during a sync"));
        }
        let pending = std::mem::take(&mut d.pending);
        for change in &pending {
            apply(&mut d.durable, change);
        }
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut d = self.disk.lock();
        d.check()?;
        let end = offset.checked_add(data.len() as u64).ok_or_else(out_of_range)?;
        if end > d.live.len() as u64 {
            // redb sizes the file before writing into it; a write past the end is a bug.
            return Err(out_of_range());
        }
        let change = Change::Write(offset, data.to_vec());
        apply(&mut d.live, &change);
        d.pending.push(change);
        Ok(())
    }
}

/// Test hook at a named phase of a shared commit (`src/store/share.rs`, `commit.rs`), for
/// the tests that stop or kill the leading process there (`tests/shared_commit.rs`). Set in
/// the environment of the process under test: `SESSIONDB_TEST_STOP=phase,...` prints
/// `at PHASE` on stdout and sleeps until the process is killed; `SESSIONDB_TEST_PAUSE=phase,...`
/// prints `at PHASE` and waits until a file named PHASE exists in the directory
/// `SESSIONDB_TEST_GO`. Phases:
/// `lead` (holds `commit.lock`, before its transaction begins), `taken` (in its transaction,
/// the spool read), `before-commit`, `after-commit` (`commit.lock` still held, the spool files
/// not yet removed) and `after-release` (`commit.lock` let go, the files not yet removed).
pub(crate) fn phase(name: &str) {
    use std::io::Write;
    let listed = |var: &str| std::env::var(var).is_ok_and(|v| v.split(',').any(|p| p == name));
    let announce = || {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "at {name}");
        let _ = out.flush();
    };
    if listed("SESSIONDB_TEST_STOP") {
        announce();
        loop {
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
    }
    if listed("SESSIONDB_TEST_PAUSE") {
        announce();
        let go = std::env::var_os("SESSIONDB_TEST_GO").map(|d| std::path::Path::new(&d).join(name));
        while go.as_ref().is_some_and(|go| !go.exists()) {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
}
