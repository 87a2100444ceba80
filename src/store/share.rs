//! Shared commits across processes: when several processes write at once, one of them commits
//! the writes of all, so that a commit's two syncs are paid once for many writes, with no
//! daemon and no server. The protocol, its failure cases and their tests are in
//! docs/concurrency.md ("Shared commit").
//!
//! - **Leading.** The group committer's leader of a process (`commit.rs`) first tries
//!   `commit.lock` ([`LockDir::try_lead`]). Holding it, the process begins its write
//!   transaction, takes its own batch, and then the writes other processes handed over: the
//!   files of its spool directory. Each of those runs with its *key* checked and recorded in
//!   the `applied` table, in the same transaction. After the commit it lets the lock go, then
//!   removes the files of the writes it settled.
//! - **Handing over.** A leader that finds `commit.lock` taken writes each job of its batch to
//!   a file of the spool (its operation, its key, a secret for sealing tokens) and waits,
//!   polling: once the file is gone, a leader committed it, and the outcome waits under its key
//!   in `applied`. If it gets `commit.lock` first, or its wait (`share_wait`) runs out, it
//!   removes its files and commits what is left itself, each write checked against `applied`:
//!   one that a leader committed before (and then died) is not run twice.
//! - **Exactly once.** A write's key is recorded in the transaction that applies it, and
//!   spool files are read only by a process holding redb's write transaction and removed only
//!   after their transaction committed, or by their owner before it begins its own. So any
//!   two runs of one write are serialised by redb, and the second finds the first's record.
//!
//! A leader runs another process's write only if it knows its kind: each kind of operation
//! registers with the group committer when this process first submits one (`op.rs`), so that
//! this module names no operation and no module lists them all (`scripts/module-cycles.py`). A
//! write of a kind the leader has not run stays in the spool: its owner leads next.
//!
//! Processes share commits only with processes of the same settings (the spool directory's
//! name is a digest of them) and the same build: a write is run by the settings of the process
//! that commits it.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use redb::ReadableTable;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::commit::{Batch, Context, Done, Job, Pending, begin, run};
use super::config::{Config, Sharing};
use super::files::{self, Policy};
use super::lock::{LeadGuard, LockDir};
use crate::error::{Error, Result};
use crate::format::codec;
use crate::format::schema::WriteTables;
use crate::id::SecureToken;

/// Bumped whenever the spool files or the operations change meaning: part of the digest that
/// names the spool, so builds that differ never share a commit.
const PROTOCOL: u32 = 1;
/// How long an outcome stays in `applied` (at least; keyed by the time its write was handed
/// over): longer than a leader takes spool files ([`Share::stale_ms`], at most 121 s with the
/// longest `share_wait`), so that an owner that runs its write itself finds the record of a
/// leader's run of it. An owner past it never runs its write ([`UNSURE_MS`]).
const RETAIN_MS: u64 = 180_000;
/// How long after handing a write over its owner may still run it itself: after that, the
/// record of a leader's run may have been pruned (the owner was stopped, or the clock jumped),
/// so a write with no record fails as possibly applied instead of running a second time.
const UNSURE_MS: u64 = RETAIN_MS - 30_000;
/// Outcomes are pruned once the oldest is this much older than [`RETAIN_MS`], in one range.
const PRUNE_SLACK_MS: u64 = 10_000;
/// A follower's first pause between looks, and the longest.
const FIRST_PAUSE: Duration = Duration::from_micros(100);
const MAX_PAUSE: Duration = Duration::from_millis(1);

/// What the shared commit needs of the store it runs in (the store's core): kept to a trait
/// so that this module names neither the core nor the operations.
pub(crate) trait Host: Context + 'static {
    /// The time, ms since the epoch.
    fn now(&self) -> u64;
    /// The lock files (`commit.lock`).
    fn locks(&self) -> &LockDir;
    /// The job of another process's operation of `kind`, or `None` if this process does not
    /// know the kind (it has not run one: operations register when first submitted) or the
    /// bytes do not decode.
    fn decode_job(&self, kind: &str, bytes: &[u8]) -> Option<Job<Self>>;
    /// The recorded outcome of each key, in a read transaction (`None`: no record).
    ///
    /// # Errors
    /// The read's.
    fn recorded(&self, keys: &[Key]) -> Result<Vec<Option<Vec<u8>>>>;
}

/// A spool file's content: one handed-over write.
#[derive(Serialize, Deserialize)]
struct Handed {
    kind: String,
    /// Seals any token in the outcome, so that only the owner reads it.
    /// As its text.
    secret: String,
    #[serde(with = "codec::bytes")]
    op: Vec<u8>,
}

/// A write's key in `applied`: when it was handed over (ms), and a random nonce.
pub(crate) type Key = (u64, u64);

/// The spool file name of `key`.
fn file_name((at, nonce): Key) -> String {
    format!("{at:016x}-{nonce:016x}")
}

/// The key a spool file name stands for; `None` for any other name.
fn key_of(name: &str) -> Option<Key> {
    let (at, nonce) = name.split_once('-')?;
    if at.len() != 16 || nonce.len() != 16 {
        return None;
    }
    Some((u64::from_str_radix(at, 16).ok()?, u64::from_str_radix(nonce, 16).ok()?))
}

/// The shared commit of one store: its spool directory and bounds.
pub(crate) struct Share {
    dir: PathBuf,
    policy: Policy,
    /// The longest a follower waits before it commits itself.
    wait: Duration,
    max_batch: usize,
    /// The largest spool file read: the largest write this build hands over, with room.
    max_file: u64,
}

impl Share {
    /// The shared commit of a store with `cfg`, or `None` where it does not apply: a
    /// single-process or read-only store, one without group commit or with `share_wait`
    /// off, a test clock or storage backend (in-process only), or a spool directory that
    /// cannot be created (it commits alone then).
    ///
    /// # Errors
    /// [`Error::UnsafeFile`]: the spool directory exists and is not safe to use.
    pub(crate) fn for_config(cfg: &Config, locks: &LockDir) -> Result<Option<Self>> {
        let Some(wait) = cfg.commit.share_wait else { return Ok(None) };
        let system_clock = format!("{:?}", cfg.clock) == "SystemClock";
        if cfg.sharing != Sharing::MultiProcess
            || cfg.read_only
            || !cfg.commit.group_commit
            || cfg.backend.is_some()
            || !system_clock
        {
            return Ok(None);
        }
        let dir = locks.path().join(format!("spool-{}", digest(cfg)));
        match files::prepare_dir(cfg.files, &dir) {
            Ok(()) => {}
            Err(e @ Error::UnsafeFile { .. }) => return Err(e),
            Err(_) => return Ok(None),
        }
        let max_file = 2 * cfg.max_data_size as u64 + 64 * 1024;
        Ok(Some(Self { dir, policy: cfg.files, wait, max_batch: cfg.commit.max_batch, max_file }))
    }
}

/// A digest of the settings a write is run by, and of the build: the spool's name.
fn digest(cfg: &Config) -> String {
    let described = format!(
        "{PROTOCOL} {} {:?} {:?} {} {:?} {} {} {:?} {:?} {:?} {} {:?} {:?}",
        env!("CARGO_PKG_VERSION"),
        cfg.idle_timeout,
        cfg.absolute_lifetime,
        cfg.grace,
        cfg.touch_resolution(),
        cfg.max_states(),
        cfg.states_history,
        cfg.max_sessions,
        cfg.cap_policy,
        cfg.id_spec,
        cfg.max_data_size,
        cfg.sweep,
        cfg.files,
    );
    let hash: [u8; 32] = Sha256::digest(described.as_bytes()).into();
    u64::from_be_bytes(hash[..8].try_into().unwrap_or_default()).to_string()
}

/// A write run with its key: checked against `applied` first (run already: its recorded
/// outcome is its result), recorded there once run. Another process's write (taken from the
/// spool), or this process's own once handed over (it may have been run by a leader since).
struct Keyed<C> {
    job: Job<C>,
    key: Key,
    secret: SecureToken,
    /// Prunes old outcomes before it runs: the first write of a batch taken from the spool.
    prune: bool,
    /// Whether its outcome is in `applied` as of its last run: its spool file may go.
    settled: AtomicBool,
    /// Whether its last run ran it here (not found recorded by an earlier run).
    ran: AtomicBool,
    /// When its owner (this process) handed it over; `None` for another process's write.
    handed: Option<Instant>,
}

impl<C> Keyed<C> {
    /// Whether a write of this process with no record may have been run and its record
    /// pruned since: too long since it was handed over, by the monotonic or the wall clock.
    fn unsure(&self, now: u64) -> bool {
        self.handed.is_some_and(|handed| {
            handed.elapsed() >= Duration::from_millis(UNSURE_MS)
                || now.saturating_sub(self.key.0) >= UNSURE_MS
        })
    }
}

impl<C: Host> Pending<C> for Keyed<C> {
    fn apply(&self, core: &C, t: &mut WriteTables<'_>) -> Result<()> {
        self.settled.store(false, Ordering::Relaxed);
        self.ran.store(false, Ordering::Relaxed);
        if self.prune {
            prune(t, core.now())?;
        }
        if let Some(recorded) = t.applied.get(self.key)? {
            if !self.job.set_outcome(recorded.value(), &self.secret) {
                let key = file_name(self.key);
                return Err(Error::Corrupted { table: "applied", key });
            }
            self.settled.store(true, Ordering::Relaxed);
            return Ok(());
        }
        if self.unsure(core.now()) {
            // Not run, not recorded: its result is this error, whatever the rest of the batch.
            self.job.fail(Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "a write handed over to another process {} s ago may have been applied, \
                     and its outcome is no longer recorded: read the session to see, then retry \
                     if needed",
                    UNSURE_MS / 1000
                ),
            )));
            return Ok(());
        }
        self.job.apply(core, t)?;
        self.ran.store(true, Ordering::Relaxed);
        // An error that is not a refusal is not recorded: nothing was written, and the owner
        // runs the write again itself.
        if let Some(outcome) = self.job.outcome(&self.secret) {
            t.applied.insert(self.key, outcome.as_slice())?;
            self.settled.store(true, Ordering::Relaxed);
        }
        Ok(())
    }

    fn fail(&self, error: Error) {
        self.settled.store(false, Ordering::Relaxed);
        self.ran.store(false, Ordering::Relaxed);
        self.job.fail(error);
    }
}

/// Removes the outcomes older than [`RETAIN_MS`], once the oldest is [`PRUNE_SLACK_MS`] past
/// that: one range removal every few seconds at most, and a lookup of the first key otherwise.
fn prune(t: &mut WriteTables<'_>, now: u64) -> Result<()> {
    let cutoff = now.saturating_sub(RETAIN_MS);
    let oldest = t.applied.first()?.map(|(key, _)| key.value().0);
    if oldest.is_some_and(|at| at.saturating_add(PRUNE_SLACK_MS) < cutoff) {
        t.applied.retain_in(..(cutoff, 0), |_, _| false)?;
    }
    Ok(())
}

/// A job of this process handed over: its file, its key and secret.
struct Spooled<C> {
    ticket: u64,
    job: Job<C>,
    key: Key,
    secret: SecureToken,
    path: PathBuf,
    /// When it was handed over.
    handed: Instant,
}

impl<C: Host> Spooled<C> {
    /// The job to run here, checked against `applied`.
    fn keyed(self) -> (u64, Job<C>) {
        let job = Keyed {
            job: self.job,
            key: self.key,
            secret: self.secret,
            prune: false,
            settled: AtomicBool::new(false),
            ran: AtomicBool::new(false),
            handed: Some(self.handed),
        };
        (self.ticket, Arc::new(job))
    }
}

impl Share {
    /// [`Context::commit_batch`] with the shared commit: leads if it can take `commit.lock`,
    /// hands the batch over otherwise.
    pub(crate) fn commit_batch<C: Host>(
        &self,
        core: &C,
        take: &mut dyn FnMut() -> Batch<C>,
    ) -> Done {
        match core.locks().try_lead() {
            Ok(Some(lead)) => {
                #[cfg(feature = "testing")]
                crate::faults::phase("lead");
                let txn = begin(core);
                let batch = take();
                self.lead(core, lead, txn, batch)
            }
            Ok(None) => self.follow(core, take()),
            // `commit.lock` cannot be used: commit alone.
            Err(_) => {
                let txn = begin(core);
                let batch = take();
                run(core, txn, batch)
            }
        }
    }
}

impl Share {
    /// Runs `batch` in `txn` with the writes waiting in the spool, holding `commit.lock`; then
    /// lets the lock go, and removes the files of the writes it settled. (Removing them after
    /// the lock shortens the part only one process at a time can do: a process that leads
    /// before they are gone finds their outcomes in `applied` and runs none of them again.)
    fn lead<C: Host>(
        &self,
        core: &C,
        lead: LeadGuard<'_>,
        txn: Result<super::open::Writing>,
        mut batch: Batch<C>,
    ) -> Done {
        let taken = self.take_spool(core, self.max_batch.saturating_sub(batch.len()));
        #[cfg(feature = "testing")]
        crate::faults::phase("taken");
        for (_, job) in &taken {
            batch.push_back((u64::MAX, Arc::clone(job) as Job<C>));
        }
        if batch.is_empty() {
            drop(txn);
            return Done::default();
        }
        let mut done = run(core, txn, batch);
        #[cfg(feature = "testing")]
        crate::faults::phase("after-commit");
        drop(lead);
        #[cfg(feature = "testing")]
        crate::faults::phase("after-release");
        for (path, job) in &taken {
            if job.settled.load(Ordering::Relaxed) {
                let _ = fs::remove_file(path);
            }
            if job.ran.load(Ordering::Relaxed) {
                done.taken_in += 1;
            }
        }
        done
    }

    /// The writes waiting in the spool, oldest first, at most `room`. Files older than any
    /// owner waits are removed unread (their owner is gone, or will run its write itself).
    fn take_spool<C: Host>(&self, core: &C, room: usize) -> Vec<(PathBuf, Arc<Keyed<C>>)> {
        let Ok(entries) = fs::read_dir(&self.dir) else { return Vec::new() };
        let mut keys: Vec<Key> =
            entries.flatten().filter_map(|e| e.file_name().to_str().and_then(key_of)).collect();
        keys.sort_unstable();
        let stale = core.now().saturating_sub(self.stale_ms());
        let mut taken = Vec::new();
        for key in keys {
            if taken.len() >= room {
                break;
            }
            let path = self.dir.join(file_name(key));
            if key.0 < stale {
                let _ = fs::remove_file(&path);
                continue;
            }
            // A file being written, or not one of ours: its owner deals with it.
            let Some(handed) = self.read(&path) else { continue };
            let Ok(secret) = SecureToken::parse(&handed.secret) else { continue };
            let Some(job) = core.decode_job(&handed.kind, &handed.op) else { continue };
            let prune = taken.is_empty();
            let keyed = Keyed {
                job,
                key,
                secret,
                prune,
                settled: AtomicBool::new(false),
                ran: AtomicBool::new(false),
                handed: None,
            };
            taken.push((path, Arc::new(keyed)));
        }
        taken
    }

    /// How old a spool file is when no owner can be waiting for it any more.
    fn stale_ms(&self) -> u64 {
        u64::try_from(self.wait.as_millis()).unwrap_or(u64::MAX / 4).saturating_mul(2) + 1_000
    }

    fn read(&self, path: &Path) -> Option<Handed> {
        let file = files::open_regular(path).ok()?;
        let mut bytes = Vec::new();
        file.take(self.max_file).read_to_end(&mut bytes).ok()?;
        codec::decode(&bytes).ok()
    }

    /// Writes `job` to the spool; `None` if it stays in this process (it does not travel, or
    /// its file could not be written).
    fn spool<C: Host>(&self, core: &C, ticket: u64, job: &Job<C>) -> Option<Spooled<C>> {
        let (kind, op) = job.encode_op()?;
        let secret = SecureToken::generate().ok()?;
        let handed = Handed { kind: kind.to_owned(), secret: secret.as_str().to_owned(), op };
        let bytes = codec::encode(&handed).ok()?;
        let key = (core.now(), rand::random::<u64>());
        let path = self.dir.join(file_name(key));
        let mut file = files::create_new(self.policy, &path).ok()?;
        if file.write_all(&bytes).is_err() {
            let _ = fs::remove_file(&path);
            return None;
        }
        let job = Arc::clone(job);
        Some(Spooled { ticket, job, key, secret, path, handed: Instant::now() })
    }

    /// Hands `batch` over to the process leading, and waits for the outcomes; what is left
    /// (not handed over, or not taken in time) runs here, after this process took the lead or
    /// its wait ran out.
    fn follow<C: Host>(&self, core: &C, batch: Batch<C>) -> Done {
        let mut rest = Batch::new();
        let mut waiting = Vec::new();
        for (ticket, job) in batch {
            match self.spool(core, ticket, &job) {
                Some(spooled) => waiting.push(spooled),
                None => rest.push_back((ticket, job)),
            }
        }
        let mut handed_off = 0;
        let start = Instant::now();
        let mut pause = FIRST_PAUSE;
        let lead = loop {
            if waiting.iter().any(|s| !s.path.exists()) {
                handed_off += collect(core, &mut waiting, &mut rest, false);
            }
            if waiting.is_empty() {
                break None;
            }
            match core.locks().try_lead() {
                Ok(Some(lead)) => {
                    // The last leader may have committed these and let the lock go before
                    // removing their files: their outcomes are in `applied` already.
                    handed_off += collect(core, &mut waiting, &mut rest, true);
                    break Some(lead);
                }
                Ok(None) if start.elapsed() < self.wait => {}
                _ => break None,
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(MAX_PAUSE);
        };
        // From here on no leader takes these files; `applied` tells whether one did before.
        for spooled in waiting {
            let _ = fs::remove_file(&spooled.path);
            rest.push_back(spooled.keyed());
        }
        let mut done = if rest.is_empty() {
            Done::default()
        } else {
            let txn = begin(core);
            match lead {
                Some(lead) => self.lead(core, lead, txn, rest),
                None => run(core, txn, rest),
            }
        };
        done.handed_off += handed_off;
        done
    }
}

/// For the waiting jobs whose file is gone (with `all`, every waiting job: this process holds
/// `commit.lock`, no leader is at work): sets the result recorded by the leader that ran it,
/// and removes its file if still there. A job with no record (its file was removed as stale,
/// `applied` could not be read, or no leader took it) moves to `rest`, its file removed, to run
/// here, checked against `applied`. Returns how many got a result.
fn collect<C: Host>(
    core: &C,
    waiting: &mut Vec<Spooled<C>>,
    rest: &mut Batch<C>,
    all: bool,
) -> u64 {
    let (gone, still): (Vec<_>, Vec<_>) = waiting.drain(..).partition(|s| all || !s.path.exists());
    *waiting = still;
    let keys: Vec<Key> = gone.iter().map(|s| s.key).collect();
    let read = core.recorded(&keys);
    let found = read.unwrap_or_else(|_| vec![None; gone.len()]);
    let mut got = 0;
    for (spooled, recorded) in gone.into_iter().zip(found) {
        if all {
            let _ = fs::remove_file(&spooled.path);
        }
        match recorded {
            Some(bytes) if spooled.job.set_outcome(&bytes, &spooled.secret) => got += 1,
            _ => rest.push_back(spooled.keyed()),
        }
    }
    got
}

#[cfg(test)]
mod tests {
    use super::{file_name, key_of};

    #[test]
    fn spool_names_round_trip_and_nothing_else_parses() {
        let key = (1_764_000_000_000, u64::MAX - 3);
        assert_eq!(key_of(&file_name(key)), Some(key));
        for junk in [
            "",
            "x",
            "0000000000000001-",
            "tmp-0000000000000001",
            "00000000000000010000000000000001",
        ] {
            assert_eq!(key_of(junk), None, "{junk}");
        }
    }
}
