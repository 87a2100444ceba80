//! Group commit: concurrent writes from the threads of one process share one redb write
//! transaction, so that the commit's fsyncs are paid once per batch.
//!
//! Leader/follower, no extra thread: a writer queues its job, and if no batch is running it
//! becomes the leader, takes every queued job (up to `max_batch`), runs them in one transaction
//! and commits; the others wait for their results. Writers arriving while a batch commits queue
//! up for the next one, so batches grow with the load.
//!
//! Waiting for company: when a batch of n jobs commits, its n writers come back at about the
//! same time, and the first of them would otherwise lead a batch of one while the rest queue
//! behind it. So a leader that finds fewer jobs queued than the last batch held waits for the
//! others before it begins: by default at most a quarter of the last commit's duration, and
//! never more than [`MAX_COMPANY_WAIT`] (`Builder::company_wait` sets a fixed bound instead). A
//! lone writer (last batch: 1) never waits.
//!
//! A job is one write operation, a value (`WriteOp` in `op.rs`), queued type-erased as a
//! [`Pending`]: the operation with the slot its typed result goes to, which the writer that
//! queued it reads once the batch is over. The committer knows nothing of the operations, nor
//! of the store: it runs jobs against a [`Context`] that begins write transactions.
//!
//! Each operation's result is split in two: an outer `Err` (or a panic) means the job may have
//! written part of its change, so the transaction is abandoned, that job gets its error and
//! the others run again in a new transaction (their results of the abandoned run are
//! overwritten); an inner `Err` is a refusal decided before the job wrote anything (a version
//! conflict, a wrong token...), so the others in the batch go on. The one exception is
//! deliberate: `create` refused by the session cap keeps the sweep it did to make room, which
//! stands on its own. A failed commit is never retried (it may have reached the disk all the
//! same): every job of the batch gets the error. A panic outside the jobs (in redb's commit,
//! say) becomes [`Error::Panicked`] for every job of the batch. Jobs run on the leader's
//! thread; a writer sees its result only once its batch is over, so never one of a transaction
//! that was abandoned or did not commit.

use std::collections::{HashSet, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::open::Writing;
use crate::error::{Error, Result};
use crate::format::schema::WriteTables;

/// Inside a write operation: returns a refusal decided before anything was written, so that
/// the other jobs of the batch go on.
macro_rules! refuse_unless {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => return Ok(Err(e)),
        }
    };
}

/// What the committer runs its jobs against: `C` of [`Committer`], the store's core.
pub(crate) trait Context: Sized {
    /// Begins a write transaction for a batch.
    fn begin_write(&self) -> Result<Writing>;

    /// Runs one batch: begins its transaction, then takes the batch (`take`: writers arriving
    /// while the transaction waited to begin join it) and runs it (`run`, which [`run`]s it).
    /// A context that shares commits across processes (`share.rs`) overrides it: it adds the
    /// writes of other processes to the batch, or hands the batch to another process.
    fn commit_batch(&self, take: &mut dyn FnMut() -> Batch<Self>) -> Done {
        let txn = begin(self);
        let batch = take();
        run(self, txn, batch)
    }
}

/// A batch of jobs, each with the ticket its writer waits on.
pub(crate) type Batch<C> = VecDeque<(u64, Job<C>)>;

/// A queued write, type-erased: an operation and the slot of its result. Jobs own their data
/// and may run more than once (after an abandoned transaction); each run overwrites the result.
pub(crate) trait Pending<C>: Send + Sync {
    /// Runs the operation in `tables` and keeps its result, a refusal included. `Err`: it failed
    /// part-way, and the transaction must be abandoned.
    fn apply(&self, ctx: &C, tables: &mut WriteTables<'_>) -> Result<()>;
    /// Makes `error` the job's result: it failed part-way or panicked, or its transaction did
    /// not begin or commit.
    fn fail(&self, error: Error);

    /// The operation as bytes another process can run, with its kind (`share.rs`); `None`
    /// if it stays in this process.
    fn encode_op(&self) -> Option<(&'static str, Vec<u8>)> {
        None
    }

    /// The job's result as bytes to record for its owner (`outcome.rs`), tokens sealed with
    /// `secret`; `None` before it ran, or if the result is an error that is not a refusal.
    fn outcome(&self, _secret: &crate::id::SecureToken) -> Option<Vec<u8>> {
        None
    }

    /// Sets the job's result from a recorded outcome; `false` if it does not decode.
    fn set_outcome(&self, _bytes: &[u8], _secret: &crate::id::SecureToken) -> bool {
        false
    }
}

/// A queued job: shared with the writer that queued it, which reads its result.
pub(crate) type Job<C> = Arc<dyn Pending<C>>;

/// Turns the bytes of an operation of one kind, from another process, into a job.
pub(crate) type Decoder<C> = fn(&[u8]) -> Option<Job<C>>;

/// How batches were formed, since the store was opened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BatchStats {
    /// Write transactions committed through the committer (request writes and clean-up
    /// batches).
    pub commits: u64,
    /// Writes that went through them: requests (create, save, touch, delete) and clean-up
    /// batches.
    pub operations: u64,
    /// Transactions abandoned because a job failed part-way (the other jobs ran again).
    pub retries: u64,
    /// `sizes[k]` counts commits whose batch held `2^k ..= 2^(k+1) - 1` operations
    /// (`sizes[0]`: 1, `sizes[1]`: 2–3, `sizes[2]`: 4–7, ... the last bucket: everything larger).
    pub sizes: [u64; 8],
    /// The largest batch committed.
    pub largest: u64,
    /// Writes of this process that another process committed for it (a shared commit,
    /// docs/concurrency.md); they are in the other process's `operations`, not in these.
    pub handed_off: u64,
    /// Writes of other processes that this process ran and committed for them; they are in
    /// `operations`, as are the (rare) ones it found already run by an earlier commit, whose
    /// spool file was not yet removed, and ran no more.
    pub taken_in: u64,
}

impl BatchStats {
    fn record(&mut self, size: usize) {
        let size = size as u64;
        self.commits += 1;
        self.operations += size;
        self.largest = self.largest.max(size);
        let bucket = size.max(1).ilog2() as usize;
        self.sizes[bucket.min(self.sizes.len() - 1)] += 1;
    }

    fn account(&mut self, done: &Done) {
        self.retries += done.retries;
        self.handed_off += done.handed_off;
        self.taken_in += done.taken_in;
        for size in &done.commits {
            self.record(*size);
        }
    }

    /// The mean number of operations per commit (0 before the first commit).
    #[must_use]
    #[allow(clippy::cast_precision_loss)]
    pub fn mean(&self) -> f64 {
        if self.commits == 0 { 0.0 } else { self.operations as f64 / self.commits as f64 }
    }
}

/// The longest a leader waits for the writers of the last batch to queue again, by default.
pub(crate) const MAX_COMPANY_WAIT: Duration = Duration::from_micros(500);

struct Queue<C> {
    jobs: VecDeque<(u64, Job<C>)>,
    /// The tickets of jobs whose batch is over: their results are final.
    finished: HashSet<u64>,
    leading: bool,
    next_ticket: u64,
    stats: BatchStats,
    /// How many jobs the last batch held, and how long its transaction took (begin to commit).
    last_batch: usize,
    last_commit: Duration,
    /// A leader is waiting for this many jobs to be queued (0: none is waiting).
    awaited: usize,
}

impl<C> Default for Queue<C> {
    fn default() -> Self {
        Self {
            jobs: VecDeque::new(),
            finished: HashSet::new(),
            leading: false,
            next_ticket: 0,
            stats: BatchStats::default(),
            last_batch: 0,
            last_commit: Duration::ZERO,
            awaited: 0,
        }
    }
}

/// The group committer of one store, running jobs against a `C` ([`Context`]).
pub(crate) struct Committer<C> {
    enabled: bool,
    max_batch: usize,
    /// A fixed bound on the wait for company (`None`: from the last commit's duration).
    company_wait: Option<Duration>,
    queue: Mutex<Queue<C>>,
    finished: Condvar,
    /// Wakes a leader waiting for company.
    arrived: Condvar,
    /// The kinds of operation this process can run for another (a shared commit, `share.rs`):
    /// each registers when first submitted here, so no module has to list them all.
    decoders: Mutex<Vec<(&'static str, Decoder<C>)>>,
}

impl<C: Context> Committer<C> {
    pub(crate) fn new(enabled: bool, max_batch: usize, company_wait: Option<Duration>) -> Self {
        Self {
            enabled,
            max_batch: max_batch.max(1),
            company_wait,
            queue: Mutex::new(Queue::default()),
            finished: Condvar::new(),
            arrived: Condvar::new(),
            decoders: Mutex::new(Vec::new()),
        }
    }

    /// Registers the decoder of operations of `kind`, once.
    pub(crate) fn register(&self, kind: &'static str, decoder: Decoder<C>) {
        let mut decoders = self.decoders.lock().unwrap_or_else(PoisonError::into_inner);
        if !decoders.iter().any(|(k, _)| *k == kind) {
            decoders.push((kind, decoder));
        }
    }

    /// Another process's operation of `kind` as a job, if this process registered the kind.
    pub(crate) fn decode(&self, kind: &str, bytes: &[u8]) -> Option<Job<C>> {
        let decoder = {
            let decoders = self.decoders.lock().unwrap_or_else(PoisonError::into_inner);
            decoders.iter().find(|(k, _)| *k == kind).map(|(_, d)| *d)?
        };
        decoder(bytes)
    }

    /// Our own code never panics while holding the queue lock, so a poisoned lock is safe to
    /// take over.
    fn lock(&self) -> MutexGuard<'_, Queue<C>> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn stats(&self) -> BatchStats {
        self.lock().stats.clone()
    }

    pub(crate) fn enabled(&self) -> bool {
        self.enabled
    }

    /// Runs `job` in a write transaction, shared with other threads' jobs when group commit is
    /// on, and returns once that transaction committed (or failed): the job's result is then
    /// final.
    pub(crate) fn submit(&self, ctx: &C, job: Job<C>) {
        if !self.enabled {
            let done = run(ctx, begin(ctx), VecDeque::from([(0, job)]));
            self.lock().stats.account(&done);
            return;
        }
        let mut q = self.lock();
        let ticket = q.next_ticket;
        q.next_ticket += 1;
        q.jobs.push_back((ticket, job));
        if q.awaited != 0 && q.jobs.len() >= q.awaited {
            self.arrived.notify_one();
        }
        loop {
            if q.finished.remove(&ticket) {
                return;
            }
            if q.leading {
                q = self.finished.wait(q).unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            q.leading = true;
            q = self.await_company(q);
            drop(q);
            // Begin first, take the batch after: in MultiWriter mode `begin_write` waits for
            // the other processes' write transactions, and what queues up meanwhile joins this
            // batch instead of waiting for the next one.
            let started = Instant::now();
            let mut tickets = Vec::new();
            let done = ctx.commit_batch(&mut || {
                let mut q = self.lock();
                let take = q.jobs.len().min(self.max_batch);
                let batch: Batch<C> = q.jobs.drain(..take).collect();
                tickets.extend(batch.iter().map(|(t, _)| *t));
                batch
            });
            q = self.lock();
            q.leading = false;
            q.last_batch = tickets.len();
            q.last_commit = started.elapsed();
            q.stats.account(&done);
            q.finished.extend(tickets);
            self.finished.notify_all();
        }
    }
}

impl<C> Committer<C> {
    /// Called by a new leader: waits until as many jobs are queued as the last batch held, or
    /// the wait's bound has passed.
    fn await_company<'a>(&'a self, mut q: MutexGuard<'a, Queue<C>>) -> MutexGuard<'a, Queue<C>> {
        let wanted = q.last_batch.min(self.max_batch);
        let bound = self.company_wait.unwrap_or((q.last_commit / 4).min(MAX_COMPANY_WAIT));
        if q.jobs.len() >= wanted || bound.is_zero() {
            return q;
        }
        // A bound too far to represent waits for company without a deadline in practice.
        let deadline = Instant::now().checked_add(bound);
        q.awaited = wanted;
        while q.jobs.len() < wanted {
            q = match deadline {
                Some(deadline) => {
                    let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                        break;
                    };
                    self.arrived.wait_timeout(q, left).unwrap_or_else(PoisonError::into_inner).0
                }
                None => self.arrived.wait(q).unwrap_or_else(PoisonError::into_inner),
            };
        }
        q.awaited = 0;
        q
    }
}

/// The error of a job whose batch ended without giving it a result: a bug.
pub(crate) fn lost() -> Error {
    Error::Panicked { place: "group commit", message: "a job's result was lost".into() }
}

/// What running one batch produced (the results are in the jobs' slots).
#[derive(Default)]
pub(crate) struct Done {
    /// The size of each committed transaction.
    pub(crate) commits: Vec<usize>,
    pub(crate) retries: u64,
    /// Jobs of this process that another process committed (`share.rs`).
    pub(crate) handed_off: u64,
    /// Jobs of other processes committed here.
    pub(crate) taken_in: u64,
}

/// Begins a write transaction. A panic becomes an error: the leader must never unwind while
/// followers wait for it.
pub(crate) fn begin<C: Context>(ctx: &C) -> Result<Writing> {
    catch_unwind(AssertUnwindSafe(|| ctx.begin_write())).unwrap_or_else(|panic| {
        Err(Error::Panicked { place: "a write transaction", message: panic_message(&*panic) })
    })
}

/// Runs `batch`, the first time in `txn`, splitting it as jobs fail, until every job has a
/// final result.
pub(crate) fn run<C: Context>(ctx: &C, txn: Result<Writing>, batch: Batch<C>) -> Done {
    let mut done = Done::default();
    let mut groups = VecDeque::from([batch]);
    let mut first = Some(txn);
    while let Some(mut group) = groups.pop_front() {
        let txn = first.take().unwrap_or_else(|| begin(ctx));
        let attempt = catch_unwind(AssertUnwindSafe(|| attempt(ctx, txn, &group)));
        match attempt {
            Ok(Ok(())) => done.commits.push(group.len()),
            Ok(Err((Some(failed), e))) => {
                done.retries += 1;
                if let Some((_, job)) = group.remove(failed) {
                    job.fail(e);
                }
                if !group.is_empty() {
                    groups.push_front(group);
                }
            }
            // The transaction failed as a whole: it did not begin, or its commit failed. A
            // failed commit may still have reached the disk (an fsync error says nothing of
            // what was written), so no job runs again: each gets the error, and a caller must
            // treat the write as possibly done, as with any database.
            Ok(Err((None, e))) => {
                for (_, job) in group.iter().skip(1) {
                    job.fail(e.duplicate());
                }
                group[0].1.fail(e);
            }
            Err(panic) => {
                let message = panic_message(panic.as_ref());
                for (_, job) in group {
                    let place = "a write transaction";
                    job.fail(Error::Panicked { place, message: message.clone() });
                }
            }
        }
    }
    done
}

/// One transaction over `group`, leaving each job's result in its slot; `Err` if it did not
/// commit: the index of the job that failed part-way (`None`: the transaction itself failed)
/// and the error.
fn attempt<C>(
    ctx: &C,
    txn: Result<Writing>,
    group: &VecDeque<(u64, Job<C>)>,
) -> Result<(), (Option<usize>, Error)> {
    let Writing { txn, db } = txn.map_err(|e| (None, e))?;
    {
        let mut tables = WriteTables::open(&txn).map_err(|e| (None, e.into()))?;
        for (i, (_, job)) in group.iter().enumerate() {
            // A panicking job is taken out like one that failed part-way; the others run again.
            let result = catch_unwind(AssertUnwindSafe(|| job.apply(ctx, &mut tables)))
                .unwrap_or_else(|panic| {
                    let message = panic_message(panic.as_ref());
                    Err(Error::Panicked { place: "a write transaction", message })
                });
            result.map_err(|e| (Some(i), e))?;
        }
    }
    #[cfg(feature = "testing")]
    crate::faults::phase("before-commit");
    txn.commit().map_err(|e| (None, e.into()))?;
    drop(db);
    Ok(())
}

/// The text of a panic payload.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(ToString::to_string)
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}
