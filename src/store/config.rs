//! Store configuration: a consuming builder with documented defaults.

use std::io;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use redb::StorageBackend;

use crate::id::IdSpec;
use crate::time::{Clock, SystemClock};

/// How long one clean-up transaction should hold the file, by default
/// ([`Builder::cleanup_batch_time`]).
const DEFAULT_CLEANUP_BATCH_TIME: Duration = Duration::from_millis(15);

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
    /// Delete the session closest to removal (the end of its grace window; ties: least recently
    /// used) to make room. With one grace period for all processes that is the session closest
    /// to expiry.
    EvictOldest,
}

/// The resolved settings a store runs with.
#[derive(Debug, Clone)]
#[expect(clippy::struct_excessive_bools, reason = "independent switches, one per builder setter")]
pub(crate) struct Config {
    pub(crate) path: PathBuf,
    pub(crate) sharing: Sharing,
    pub(crate) read_only: bool,
    pub(crate) idle_timeout: Option<u64>,
    pub(crate) absolute_lifetime: Option<u64>,
    pub(crate) grace: u64,
    pub(crate) touch_resolution: u64,
    pub(crate) max_states: u64,
    pub(crate) states_history: bool,
    pub(crate) max_sessions: Option<u64>,
    pub(crate) cap_policy: CapPolicy,
    pub(crate) max_data_size: usize,
    pub(crate) id_spec: IdSpec,
    pub(crate) cache_size: usize,
    pub(crate) cleanup_batch: usize,
    pub(crate) cleanup_batch_time: Option<Duration>,
    pub(crate) cleanup_interval: Option<Duration>,
    pub(crate) cleanup_thread: bool,
    pub(crate) group_commit: bool,
    pub(crate) max_batch: usize,
    pub(crate) company_wait: Option<Duration>,
    pub(crate) max_merge_attempts: u32,
    pub(crate) lock_stripes: usize,
    pub(crate) lock_poll_interval: Duration,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) backend: Option<SharedBackend>,
    pub(crate) files: crate::store::files::Policy,
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

/// Builds a [`Store`]. Start from [`Store::builder`].
#[derive(Debug, Clone)]
#[must_use]
#[expect(clippy::struct_excessive_bools, reason = "independent switches, one per setter")]
pub struct Builder {
    path: PathBuf,
    sharing: Sharing,
    read_only: bool,
    idle_timeout: Option<Duration>,
    absolute_lifetime: Option<Duration>,
    grace: Duration,
    touch_resolution: Option<Duration>,
    max_states: u64,
    states_history: bool,
    max_sessions: Option<u64>,
    cap_policy: CapPolicy,
    max_data_size: usize,
    id_spec: IdSpec,
    cache_size: usize,
    cleanup_batch: usize,
    cleanup_batch_time: Option<Duration>,
    cleanup_interval: Option<Duration>,
    cleanup_thread: bool,
    group_commit: bool,
    max_batch: usize,
    company_wait: Option<Duration>,
    max_merge_attempts: u32,
    lock_stripes: usize,
    lock_poll_interval: Duration,
    clock: Arc<dyn Clock>,
    backend: Option<SharedBackend>,
    files: crate::store::files::Policy,
}

impl Builder {
    pub(crate) fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            sharing: Sharing::MultiProcess,
            read_only: false,
            idle_timeout: Some(Duration::from_secs(30 * 60)),
            absolute_lifetime: None,
            grace: Duration::from_secs(10 * 60),
            touch_resolution: None,
            max_states: 16,
            states_history: true,
            max_sessions: None,
            cap_policy: CapPolicy::Reject,
            max_data_size: 1 << 20,
            id_spec: IdSpec::default(),
            cache_size: 16 << 20,
            cleanup_batch: 1000,
            cleanup_batch_time: Some(DEFAULT_CLEANUP_BATCH_TIME),
            cleanup_interval: Some(Duration::from_secs(60)),
            cleanup_thread: true,
            group_commit: true,
            max_batch: 64,
            company_wait: None,
            max_merge_attempts: 8,
            lock_stripes: 64,
            lock_poll_interval: Duration::from_millis(5),
            clock: Arc::new(SystemClock),
            backend: None,
            files: crate::store::files::Policy::default(),
        }
    }

    /// How processes share the file. Default = [`Sharing::MultiProcess`].
    pub fn sharing(mut self, sharing: Sharing) -> Self {
        self.sharing = sharing;
        self
    }

    /// Open without write access: for inspection beside live writers. Every write returns
    /// [`Error::InvalidInput`](crate::error::Error::InvalidInput), and loads do not record access
    /// times. The file must already be a sessiondb file. Default = `false`.
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// A session expires when it was not used for this long; `None` disables idle expiry.
    /// Default = 30 minutes.
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// A session expires this long after its creation, however active; `None` disables it.
    /// Default = `None`.
    pub fn absolute_lifetime(mut self, lifetime: Option<Duration>) -> Self {
        self.absolute_lifetime = lifetime;
        self
    }

    /// For this long after expiry a load returns [`Error::Expired`](crate::error::Error::Expired)
    /// carrying the data; after it the session reads as unknown and is swept. Default = 10 minutes.
    pub fn grace_period(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// A load persists a new last-access time only when it moved by at least this much, so
    /// most loads stay read-only; with an idle timeout a save applies the same rule, so most
    /// saves leave the expiry index alone. Idle expiry can therefore happen up to this much
    /// early, never late.
    /// Clamped to at most 1% of the idle timeout. Default = 1% of the idle timeout (18 s for
    /// 30 minutes), or 1 minute without an idle timeout.
    pub fn touch_resolution(mut self, resolution: Duration) -> Self {
        self.touch_resolution = Some(resolution);
        self
    }

    /// How many numbered states a session keeps; the oldest is evicted beyond it. Clamped to
    /// at least 1. Default = 16.
    pub fn max_states(mut self, n: u64) -> Self {
        self.max_states = n.max(1);
        self
    }

    /// With `false`, every save overwrites the latest state, as if `use_same_state` were always
    /// set, and older states are evicted: a session keeps exactly one state (id 0 for sessions
    /// created this way). Default = `true`.
    pub fn states_history(mut self, enabled: bool) -> Self {
        self.states_history = enabled;
        self
    }

    /// The most sessions the file may hold, or `None` for no cap. Expired sessions past their
    /// grace window do not count: `create` removes some before checking. Default = `None`.
    pub fn max_sessions(mut self, max: Option<u64>) -> Self {
        self.max_sessions = max;
        self
    }

    /// What `create` does at the cap. Default = [`CapPolicy::Reject`].
    pub fn cap_policy(mut self, policy: CapPolicy) -> Self {
        self.cap_policy = policy;
        self
    }

    /// The largest session data or state data accepted, in bytes; larger is
    /// [`Error::InvalidInput`](crate::error::Error::InvalidInput) and writes nothing. Clamped to
    /// 64 MiB minus record overhead. Default = 1 MiB.
    pub fn max_data_size(mut self, bytes: usize) -> Self {
        self.max_data_size = bytes.min(crate::format::codec::HARD_LIMIT - 4096);
        self
    }

    /// Length and alphabet of new session ids. Default = 32 base64url characters (192 bits).
    pub fn id_spec(mut self, spec: IdSpec) -> Self {
        self.id_spec = spec;
        self
    }

    /// redb's page cache, in bytes. Default = 16 MiB.
    pub fn cache_size(mut self, bytes: usize) -> Self {
        self.cache_size = bytes;
        self
    }

    /// How many sessions one clean-up write transaction removes at most. Clamped to at least 1.
    /// Default = 1000.
    pub fn cleanup_batch(mut self, n: usize) -> Self {
        self.cleanup_batch = n.max(1);
        self
    }

    /// How long one clean-up write transaction should hold the file, which every other writer
    /// (of any process) waits for: a sweep starts with small batches and sizes the next batch
    /// from how long the last one took (from the start of its own work to its commit; redb's
    /// transaction start and request writes batched with it come on top), doubling or halving
    /// at most, never above [`cleanup_batch`](Self::cleanup_batch). Where a commit's fixed cost
    /// alone exceeds the budget (a slow disk: even the sweep's quickest commit took longer),
    /// batches aim at four times that commit instead, so the sweep keeps its pace. `None`: every
    /// batch is `cleanup_batch` sessions. Default = 15 ms. A larger value removes more sessions
    /// per second (fewer commits), with longer waits.
    pub fn cleanup_batch_time(mut self, budget: Option<Duration>) -> Self {
        self.cleanup_batch_time = budget;
        self
    }

    /// How often the file is swept of expired sessions: the shared schedule. The file records
    /// when it was last swept, and a sweep is due once this much time has passed since, whoever
    /// swept; the clean-up thread and [`Store::cleanup_if_due`] both follow it, so the
    /// processes sharing a file sweep about once an interval between them. `None`: never
    /// automatically (no thread, and `cleanup_if_due` does nothing); sweep with
    /// [`Store::cleanup`], or let other processes do it. Default = 60 seconds.
    pub fn cleanup_interval(mut self, every: Option<Duration>) -> Self {
        self.cleanup_interval = every;
        self
    }

    /// Whether this process runs the clean-up thread, which looks at the shared schedule (see
    /// [`cleanup_interval`](Self::cleanup_interval)) and sweeps when a sweep is due. Its first
    /// look comes one interval after open, so a short-lived process (a CGI program) never
    /// sweeps through it: open such a process with `false` and call
    /// [`Store::cleanup_if_due`] after its response. Read-only stores and stores without a
    /// `cleanup_interval` start no thread. Default = `true`.
    pub fn cleanup_thread(mut self, enabled: bool) -> Self {
        self.cleanup_thread = enabled;
        self
    }

    /// Whether concurrent writes from this process's threads share one write transaction
    /// (and its fsyncs). Each write still gets its own result. Default = `true`.
    pub fn group_commit(mut self, enabled: bool) -> Self {
        self.group_commit = enabled;
        self
    }

    /// The most writes one group commit holds. Clamped to at least 1. Default = 64.
    pub fn max_batch(mut self, n: usize) -> Self {
        self.max_batch = n.max(1);
        self
    }

    /// The longest a group-commit leader waits, before it begins, for the writers of the last
    /// batch to queue their next writes, so that they share one commit instead of the first
    /// one committing alone. It waits only when fewer writes are queued than the last batch
    /// held, so in steady state a lone writer never waits. Default (`None`): a quarter of the
    /// last commit's duration, at most 500 µs. `Some(Duration::ZERO)` never waits. A fixed
    /// bound is clamped to at most 5 s.
    pub fn company_wait(mut self, wait: Option<Duration>) -> Self {
        self.company_wait = wait.map(|w| w.min(Duration::from_secs(5)));
        self
    }

    /// How many times [`Store::store_state_merging`] merges and retries after a conflict
    /// before returning it. Default = 8.
    pub fn max_merge_attempts(mut self, n: u32) -> Self {
        self.max_merge_attempts = n;
        self
    }

    /// How many lock files the session locks are spread over ([`Store::lock`]). Every process
    /// sharing a file must use the same number. Clamped to 1..=1024. Default = 64.
    pub fn lock_stripes(mut self, n: usize) -> Self {
        self.lock_stripes = n.clamp(1, 1024);
        self
    }

    /// How often a waiting [`Store::lock`] retries the OS lock (Nagare's `poll_time`). Clamped
    /// to at least 1 ms. Default = 5 ms.
    pub fn lock_poll_interval(mut self, every: Duration) -> Self {
        self.lock_poll_interval = every.max(Duration::from_millis(1));
        self
    }

    /// The clock the store reads time from. Default = the system clock.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Keeps the database on `backend` instead of the file at the path: an in-memory image, or
    /// a simulated disk that fails on purpose ([`crate::faults`]). The path still names the
    /// session lock files (`<path>.locks/`). Default = the file at the path.
    ///
    /// A backend without redb's byte-range locks (like those of [`crate::faults`]) needs
    /// [`Sharing::SingleProcess`]; opening it with [`Sharing::MultiProcess`] fails with
    /// [`Error::Storage`](crate::error::Error::Storage). Open one store per backend.
    pub fn backend(mut self, backend: impl StorageBackend) -> Self {
        self.backend = Some(SharedBackend(Arc::new(backend)));
        self
    }

    /// Who besides the owner may use the database, the lock directory and the lock files: the
    /// modes they are created with (0600/0700, or 0660/2770 for
    /// [`FileAccess::Group`](crate::store::files::FileAccess::Group)), whatever the umask, and whose files a
    /// read-write open accepts. Read-only stores create and check nothing. Default =
    /// [`FileAccess::Owner`](crate::store::files::FileAccess::Owner). See docs/reliability.md ("Private
    /// files").
    pub fn file_access(mut self, access: crate::store::files::FileAccess) -> Self {
        self.files.access = access;
        self
    }

    /// With `true`, a read-write open accepts a database, lock directory or lock file that
    /// belongs to another user (outside the group of [`FileAccess::Group`](crate::store::files::FileAccess::Group))
    /// or that other users can write, a symbolic link of another user, and a directory every
    /// user can write: for an administrator who opens a service's store as root on purpose.
    /// New files still get the private modes. Default = `false`: such files are refused with
    /// [`Error::UnsafeFile`](crate::error::Error::UnsafeFile).
    pub fn trust_foreign_files(mut self, trust: bool) -> Self {
        self.files.trust_foreign = trust;
        self
    }

    pub(crate) fn resolve(self) -> Config {
        let idle_timeout = self.idle_timeout.map(millis);
        let auto = idle_timeout.map_or(60_000, |i| i / 100);
        let touch_resolution = self.touch_resolution.map_or(auto, |r| millis(r).min(auto));
        Config {
            path: self.path,
            sharing: self.sharing,
            read_only: self.read_only,
            idle_timeout,
            absolute_lifetime: self.absolute_lifetime.map(millis),
            grace: millis(self.grace),
            touch_resolution,
            max_states: if self.states_history { self.max_states } else { 1 },
            states_history: self.states_history,
            max_sessions: self.max_sessions,
            cap_policy: self.cap_policy,
            max_data_size: self.max_data_size,
            id_spec: self.id_spec,
            cache_size: self.cache_size,
            cleanup_batch: self.cleanup_batch,
            cleanup_batch_time: self.cleanup_batch_time,
            cleanup_interval: self.cleanup_interval,
            cleanup_thread: self.cleanup_thread,
            group_commit: self.group_commit,
            max_batch: self.max_batch,
            company_wait: self.company_wait,
            max_merge_attempts: self.max_merge_attempts,
            lock_stripes: self.lock_stripes,
            lock_poll_interval: self.lock_poll_interval,
            clock: self.clock,
            backend: self.backend,
            files: self.files,
        }
    }
}
