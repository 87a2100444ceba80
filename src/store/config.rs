//! Store configuration: the settings a store runs with ([`Config`]) and the consuming
//! [`Builder`] that sets them, with documented defaults.
//!
//! A setting is a field of [`Config`] (or of one of its tuning groups), its default in
//! [`Config::new`] (or the group's `Default`), and a [`Builder`] setter that writes it, clamped
//! or converted to milliseconds as needed. Settings derived from others (the automatic touch
//! resolution, the states kept without history) are computed by an accessor of [`Config`].

use std::io;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use redb::StorageBackend;

use crate::engine::rules::Rules;
use crate::id::IdSpec;
use crate::time::{Clock, SystemClock};

/// How processes share the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sharing {
    /// Any number of processes open the file read-write at once (redb
    /// `ConcurrencyMode::MultiWriter`). Every commit is durable. The default.
    #[default]
    MultiProcess,
    /// One process owns the file (redb `ConcurrencyMode::ExclusiveWriter`); any other process
    /// that tries to open it gets an error while it is open.
    SingleProcess,
}

/// What `create` does when `max_sessions` is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CapPolicy {
    /// Refuse the new session with [`Error::MaxSessionsExceeded`](crate::error::Error::MaxSessionsExceeded).
    /// The default.
    #[default]
    Reject,
    /// Delete the session closest to removal (the end of its grace window; ties: by id) to make
    /// room. With one grace period for all processes that is the session closest to expiry.
    /// Found through the lazy expiry index, which may file a used session early: see
    /// "Eviction order" in `docs/format.md`.
    EvictOldest,
}

/// The settings a store runs with. Durations compared with stored timestamps are in
/// milliseconds.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) path: PathBuf,
    pub(crate) sharing: Sharing,
    pub(crate) read_only: bool,
    pub(crate) idle_timeout: Option<u64>,
    pub(crate) absolute_lifetime: Option<u64>,
    pub(crate) grace: u64,
    /// As set; `None`: automatic. Read through [`Config::touch_resolution`].
    touch_resolution: Option<u64>,
    /// As set; read through [`Config::max_states`], which applies `states_history`.
    max_states: u64,
    pub(crate) states_history: bool,
    pub(crate) max_sessions: Option<u64>,
    pub(crate) cap_policy: CapPolicy,
    pub(crate) max_data_size: usize,
    pub(crate) id_spec: IdSpec,
    pub(crate) cache_size: usize,
    pub(crate) commit: CommitTuning,
    pub(crate) lock: LockTuning,
    pub(crate) sweep: SweepTuning,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) backend: Option<SharedBackend>,
    pub(crate) files: crate::store::files::Policy,
}

/// Group commit and merging (docs/concurrency.md, "Group commit").
#[derive(Debug, Clone, Copy)]
pub(crate) struct CommitTuning {
    pub(crate) group_commit: bool,
    pub(crate) max_batch: usize,
    /// `None`: a quarter of the last commit's duration, with a fixed upper bound.
    pub(crate) company_wait: Option<Duration>,
    pub(crate) max_merge_attempts: u32,
    /// The shared commit across processes (`share.rs`): how long a write handed to another
    /// process waits for its commit before this process commits it itself. `None`: off.
    pub(crate) share_wait: Option<Duration>,
}

impl Default for CommitTuning {
    fn default() -> Self {
        Self {
            group_commit: true,
            max_batch: 64,
            company_wait: None,
            max_merge_attempts: 8,
            share_wait: Some(Duration::from_secs(1)),
        }
    }
}

/// The session locks (docs/concurrency.md, "The session lock").
#[derive(Debug, Clone, Copy)]
pub(crate) struct LockTuning {
    pub(crate) stripes: usize,
    pub(crate) poll_interval: Duration,
}

impl Default for LockTuning {
    fn default() -> Self {
        Self { stripes: 64, poll_interval: Duration::from_millis(5) }
    }
}

/// Clean-up: the shared schedule and the batches (docs/concurrency.md, "Clean-up shared by
/// every process" and "The clean-up thread").
#[derive(Debug, Clone, Copy)]
pub(crate) struct SweepTuning {
    pub(crate) batch: usize,
    pub(crate) batch_time: Option<Duration>,
    pub(crate) interval: Option<Duration>,
    pub(crate) thread: bool,
}

impl Default for SweepTuning {
    fn default() -> Self {
        Self {
            batch: 1000,
            batch_time: Some(Duration::from_millis(15)),
            interval: Some(Duration::from_secs(60)),
            thread: true,
        }
    }
}

impl Config {
    /// The defaults, for the file at `path`.
    pub(crate) fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            sharing: Sharing::MultiProcess,
            read_only: false,
            idle_timeout: Some(30 * 60 * 1000),
            absolute_lifetime: None,
            grace: 10 * 60 * 1000,
            touch_resolution: None,
            max_states: 16,
            states_history: true,
            max_sessions: None,
            cap_policy: CapPolicy::Reject,
            max_data_size: 1 << 20,
            id_spec: IdSpec::default(),
            cache_size: 16 << 20,
            commit: CommitTuning::default(),
            lock: LockTuning::default(),
            sweep: SweepTuning::default(),
            clock: Arc::new(SystemClock),
            backend: None,
            files: crate::store::files::Policy::default(),
        }
    }

    /// The touch resolution in milliseconds: as set but at most 1% of the idle timeout; unset,
    /// 1% of the idle timeout, or 1 minute without one.
    pub(crate) fn touch_resolution(&self) -> u64 {
        crate::engine::rules::touch_resolution(self.idle_timeout, self.touch_resolution)
    }

    /// The expiry settings, for the rules every engine shares.
    pub(crate) fn rules(&self) -> Rules {
        Rules {
            idle_timeout: self.idle_timeout,
            absolute_lifetime: self.absolute_lifetime,
            grace: self.grace,
        }
    }

    /// How many numbered states a session keeps: as set, or 1 without `states_history`.
    pub(crate) fn max_states(&self) -> u64 {
        if self.states_history { self.max_states } else { 1 }
    }
}

/// A storage backend given to [`Builder::backend`], shared so that the resolved settings stay
/// `Clone`. It forwards every call, the lock calls included, to the backend.
#[derive(Debug, Clone)]
pub(crate) struct SharedBackend(pub(crate) Arc<dyn StorageBackend>);

impl StorageBackend for SharedBackend {
    fn len(&self) -> io::Result<u64> {
        self.0.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        self.0.read(offset, out)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.0.write(offset, data)
    }
    fn close(&self) -> io::Result<()> {
        self.0.close()
    }
    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> LockResult<bool> {
        self.0.try_lock_range(start, end)
    }
    fn try_lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> LockResult<bool> {
        self.0.try_lock_shared_range(start, end)
    }
    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> LockResult<()> {
        self.0.lock_range(start, end)
    }
    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> LockResult<()> {
        self.0.lock_shared_range(start, end)
    }
    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> LockResult<()> {
        self.0.unlock_range(start, end)
    }
    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> LockResult<bool> {
        self.0.query_lock_range(start, end)
    }
}

type LockResult<T> = std::result::Result<T, redb::BackendError>;

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Builds a [`Store`](crate::Store). Start from [`Store::builder`](crate::Store::builder).
#[derive(Debug, Clone)]
#[must_use]
pub struct Builder {
    cfg: Config,
}

impl Builder {
    pub(crate) fn new(path: &Path) -> Self {
        Self { cfg: Config::new(path) }
    }

    /// How processes share the file. Default = [`Sharing::MultiProcess`].
    pub fn sharing(mut self, sharing: Sharing) -> Self {
        self.cfg.sharing = sharing;
        self
    }

    /// Open without write access: for inspection beside live writers. Every write returns
    /// [`Error::InvalidInput`](crate::error::Error::InvalidInput), and loads do not record access
    /// times. The file must already be a sessiondb file. Default = `false`.
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.cfg.read_only = read_only;
        self
    }

    /// A session expires when it was not used for this long; `None` disables idle expiry.
    /// Default = 30 minutes.
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.cfg.idle_timeout = timeout.map(millis);
        self
    }

    /// A session expires this long after its creation, however active; `None` disables it.
    /// Default = `None`.
    pub fn absolute_lifetime(mut self, lifetime: Option<Duration>) -> Self {
        self.cfg.absolute_lifetime = lifetime.map(millis);
        self
    }

    /// For this long after expiry a load returns [`Error::Expired`](crate::error::Error::Expired)
    /// carrying the data; after it the session reads as unknown and is swept. Default = 10 minutes.
    pub fn grace_period(mut self, grace: Duration) -> Self {
        self.cfg.grace = millis(grace);
        self
    }

    /// Loads (and, with an idle timeout, saves) record a new last-access time only when it
    /// moved by at least this much, so idle expiry can come up to this much early, never late.
    /// Clamped to at most 1% of the idle timeout. Default = 1% of the idle timeout (18 s for
    /// 30 minutes), or 1 minute without an idle timeout. See docs/concurrency.md, "Touch
    /// coalescing".
    pub fn touch_resolution(mut self, resolution: Duration) -> Self {
        self.cfg.touch_resolution = Some(millis(resolution));
        self
    }

    /// How many numbered states a session keeps; the oldest is evicted beyond it. Clamped to
    /// at least 1. Default = 16.
    pub fn max_states(mut self, n: u64) -> Self {
        self.cfg.max_states = n.max(1);
        self
    }

    /// With `false`, every save overwrites the latest state, as if `use_same_state` were always
    /// set, and older states are evicted: a session keeps exactly one state (id 0 for sessions
    /// created this way). Default = `true`.
    pub fn states_history(mut self, enabled: bool) -> Self {
        self.cfg.states_history = enabled;
        self
    }

    /// The most sessions the file may hold, or `None` for no cap. Expired sessions past their
    /// grace window do not count: `create` removes some before checking. Default = `None`.
    pub fn max_sessions(mut self, max: Option<u64>) -> Self {
        self.cfg.max_sessions = max;
        self
    }

    /// What `create` does at the cap. Default = [`CapPolicy::Reject`].
    pub fn cap_policy(mut self, policy: CapPolicy) -> Self {
        self.cfg.cap_policy = policy;
        self
    }

    /// The largest session data or state data accepted, in bytes; larger is
    /// [`Error::InvalidInput`](crate::error::Error::InvalidInput) and writes nothing. Clamped to
    /// 64 MiB minus record overhead. Default = 1 MiB.
    pub fn max_data_size(mut self, bytes: usize) -> Self {
        self.cfg.max_data_size = bytes.min(crate::format::codec::HARD_LIMIT - 4096);
        self
    }

    /// Length and alphabet of new session ids. Default = 32 base64url characters (192 bits).
    pub fn id_spec(mut self, spec: IdSpec) -> Self {
        self.cfg.id_spec = spec;
        self
    }

    /// redb's page cache, in bytes. Default = 16 MiB.
    pub fn cache_size(mut self, bytes: usize) -> Self {
        self.cfg.cache_size = bytes;
        self
    }

    /// How many sessions one clean-up write transaction removes at most. Clamped to at least 1.
    /// Default = 1000. See docs/concurrency.md, "The clean-up thread".
    pub fn cleanup_batch(mut self, n: usize) -> Self {
        self.cfg.sweep.batch = n.max(1);
        self
    }

    /// How long one clean-up write transaction should hold the file (every other writer waits
    /// for it): a sweep sizes its batches by time, up to [`cleanup_batch`](Self::cleanup_batch).
    /// `None`: every batch is `cleanup_batch` sessions. Default = 15 ms. See
    /// docs/concurrency.md, "The clean-up thread" ("Bounded batches, sized by time").
    pub fn cleanup_batch_time(mut self, budget: Option<Duration>) -> Self {
        self.cfg.sweep.batch_time = budget;
        self
    }

    /// How often the file is swept of expired sessions, by whichever process finds a sweep due
    /// (the clean-up thread or [`Store::cleanup_if_due`](crate::Store::cleanup_if_due)).
    /// `None`: never automatically (no thread, and `cleanup_if_due` does nothing); sweep with
    /// [`Store::cleanup`](crate::Store::cleanup), or let other processes do it. Default = 60
    /// seconds. See docs/concurrency.md, "Clean-up shared by every process".
    pub fn cleanup_interval(mut self, every: Option<Duration>) -> Self {
        self.cfg.sweep.interval = every;
        self
    }

    /// Whether this process runs the clean-up thread, which sweeps when the shared schedule
    /// ([`cleanup_interval`](Self::cleanup_interval)) says a sweep is due. A short-lived process
    /// (a CGI program) opens with `false` and calls
    /// [`Store::cleanup_if_due`](crate::Store::cleanup_if_due) after its response. Read-only
    /// stores and stores without a `cleanup_interval` start no thread. Default = `true`. See
    /// docs/concurrency.md, "The clean-up thread".
    pub fn cleanup_thread(mut self, enabled: bool) -> Self {
        self.cfg.sweep.thread = enabled;
        self
    }

    /// Whether concurrent writes from this process's threads share one write transaction
    /// (and its fsyncs). Each write still gets its own result. Default = `true`. See
    /// docs/concurrency.md, "Group commit".
    pub fn group_commit(mut self, enabled: bool) -> Self {
        self.cfg.commit.group_commit = enabled;
        self
    }

    /// Whether processes share commits ([`Sharing::MultiProcess`] only): when several
    /// processes write at once, one commits the writes of all, so that a commit's two syncs
    /// are paid once for many writes, as group commit does for the threads of one process.
    /// `Some(wait)`: a write handed to another process waits at most `wait` (clamped to
    /// 10 ms ..= 60 s) for that process's commit, then this process commits it itself;
    /// `None`: this process commits its own writes only. Default = `Some(1 s)`. Nothing
    /// changes for the caller: each write gets its own result, committed before the call
    /// returns. Only processes with the same settings and build share commits; stores with a
    /// test clock or storage backend, and stores without group commit, never do. See
    /// docs/concurrency.md, "Shared commit".
    pub fn shared_commit(mut self, wait: Option<Duration>) -> Self {
        self.cfg.commit.share_wait =
            wait.map(|w| w.clamp(Duration::from_millis(10), Duration::from_secs(60)));
        self
    }

    /// The most writes one group commit holds. Clamped to at least 1. Default = 64.
    pub fn max_batch(mut self, n: usize) -> Self {
        self.cfg.commit.max_batch = n.max(1);
        self
    }

    /// The longest a group-commit leader waits for the writers of the last batch before it
    /// begins. Default (`None`): a quarter of the last commit's duration, at most 500 µs.
    /// `Some(Duration::ZERO)` never waits. A fixed bound is clamped to at most 5 s. See
    /// docs/concurrency.md, "Group commit" ("Waiting for company").
    pub fn company_wait(mut self, wait: Option<Duration>) -> Self {
        self.cfg.commit.company_wait = wait.map(|w| w.min(Duration::from_secs(5)));
        self
    }

    /// How many times [`Store::store_state_merging`](crate::Store::store_state_merging) merges
    /// and retries after a conflict before returning it. Default = 8. See docs/concurrency.md,
    /// "No lost updates".
    pub fn max_merge_attempts(mut self, n: u32) -> Self {
        self.cfg.commit.max_merge_attempts = n;
        self
    }

    /// How many lock files the session locks are spread over
    /// ([`Store::lock`](crate::Store::lock)). Every process sharing a file must use the same
    /// number. Clamped to 1..=1024. Default = 64. See docs/concurrency.md, "The session lock".
    pub fn lock_stripes(mut self, n: usize) -> Self {
        self.cfg.lock.stripes = n.clamp(1, 1024);
        self
    }

    /// How often a waiting [`Store::lock`](crate::Store::lock) retries the OS lock (Nagare's
    /// `poll_time`). Clamped to at least 1 ms. Default = 5 ms. See docs/concurrency.md, "The
    /// session lock".
    pub fn lock_poll_interval(mut self, every: Duration) -> Self {
        self.cfg.lock.poll_interval = every.max(Duration::from_millis(1));
        self
    }

    /// The clock the store reads time from. Default = the system clock.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.cfg.clock = clock;
        self
    }

    /// Keeps the database on `backend` instead of the file at the path: an in-memory image, or
    /// a simulated disk that fails on purpose (`sessiondb::faults`, feature `testing`). The path still names the
    /// session lock files (`<path>.locks/`). Default = the file at the path.
    ///
    /// A backend without redb's byte-range locks (like those of `sessiondb::faults`) needs
    /// [`Sharing::SingleProcess`]; opening it with [`Sharing::MultiProcess`] fails with
    /// [`Error::Storage`](crate::error::Error::Storage). Open one store per backend.
    pub fn backend(mut self, backend: impl StorageBackend) -> Self {
        self.cfg.backend = Some(SharedBackend(Arc::new(backend)));
        self
    }

    /// Who besides the owner may use the database, the lock directory and the lock files: the
    /// modes they are created with (0600/0700, or 0660/2770 for
    /// [`FileAccess::Group`](crate::store::files::FileAccess::Group)), whatever the umask, and whose files a
    /// read-write open accepts. Read-only stores create and check nothing. Default =
    /// [`FileAccess::Owner`](crate::store::files::FileAccess::Owner). See docs/reliability.md ("Private
    /// files").
    pub fn file_access(mut self, access: crate::store::files::FileAccess) -> Self {
        self.cfg.files.access = access;
        self
    }

    /// With `true`, a read-write open accepts a database, lock directory or lock file that
    /// belongs to another user (outside the group of [`FileAccess::Group`](crate::store::files::FileAccess::Group))
    /// or that other users can write, a symbolic link of another user, and a directory every
    /// user can write: for an administrator who opens a service's store as root on purpose.
    /// New files still get the private modes. Default = `false`: such files are refused with
    /// [`Error::UnsafeFile`](crate::error::Error::UnsafeFile).
    pub fn trust_foreign_files(mut self, trust: bool) -> Self {
        self.cfg.files.trust_foreign = trust;
        self
    }

    /// The settings to open the store with.
    pub(crate) fn into_config(self) -> Config {
        self.cfg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builder() -> Builder {
        Builder::new(Path::new("unused.db"))
    }

    #[test]
    fn the_touch_resolution_follows_the_idle_timeout_whatever_the_setter_order() {
        let res = |b: Builder| b.into_config().touch_resolution();
        assert_eq!(res(builder()), 18_000);
        assert_eq!(res(builder().idle_timeout(None)), 60_000);
        assert_eq!(res(builder().touch_resolution(Duration::from_secs(5))), 5_000);
        assert_eq!(res(builder().touch_resolution(Duration::from_secs(60))), 18_000);
        let short = Some(Duration::from_secs(100));
        assert_eq!(
            res(builder().touch_resolution(Duration::from_secs(5)).idle_timeout(short)),
            1_000
        );
        assert_eq!(
            res(builder().idle_timeout(short).touch_resolution(Duration::from_secs(5))),
            1_000
        );
    }

    #[test]
    fn without_history_a_session_keeps_one_state_whatever_the_setter_order() {
        let states = |b: Builder| b.into_config().max_states();
        assert_eq!(states(builder()), 16);
        assert_eq!(states(builder().max_states(5)), 5);
        assert_eq!(states(builder().max_states(0)), 1);
        assert_eq!(states(builder().max_states(5).states_history(false)), 1);
        assert_eq!(states(builder().states_history(false).max_states(5)), 1);
    }

    #[test]
    fn setters_write_their_group_clamped_and_in_milliseconds() {
        let cfg = builder()
            .grace_period(Duration::from_secs(2))
            .absolute_lifetime(Some(Duration::from_millis(1500)))
            .cleanup_batch(0)
            .cleanup_interval(None)
            .max_batch(0)
            .company_wait(Some(Duration::from_secs(60)))
            .lock_stripes(5000)
            .lock_poll_interval(Duration::ZERO)
            .into_config();
        assert_eq!((cfg.grace, cfg.absolute_lifetime), (2_000, Some(1_500)));
        assert_eq!((cfg.sweep.batch, cfg.sweep.interval), (1, None));
        assert_eq!(cfg.commit.max_batch, 1);
        assert_eq!(cfg.commit.company_wait, Some(Duration::from_secs(5)));
        assert_eq!(cfg.lock.stripes, 1024);
        assert_eq!(cfg.lock.poll_interval, Duration::from_millis(1));
        let defaults = builder().into_config();
        assert_eq!(defaults.idle_timeout, Some(30 * 60 * 1000));
        assert_eq!(defaults.sweep.batch_time, Some(Duration::from_millis(15)));
    }
}
