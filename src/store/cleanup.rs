//! The clean-up thread: sweeps expired sessions in the background, when the schedule shared
//! through the file says a sweep is due (`src/store/schedule.rs`).
//!
//! It holds only a weak reference to the store's core, upgraded for the length of one sweep,
//! so it never keeps a dropped store alive. Dropping the `Store` wakes it, and joins it; a
//! sweep in progress stops after its current batch. A panic in a sweep is caught, handed to
//! the store (the next call returns [`Error::Panicked`](crate::error::Error::Panicked)) and ends the
//! thread: it would most likely recur.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Condvar, Mutex, PoisonError, Weak};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::commit::panic_message;
use super::shared::Core;
use crate::error::{Error, Result};

/// The name of the clean-up thread, as `ps -L` and `/proc/*/task/*/comm` show it.
pub const CLEANUP_THREAD_NAME: &str = "sessiondb-sweep";

/// The shortest wait between two looks at the schedule (unless the interval is shorter).
const MIN_WAIT: Duration = Duration::from_millis(100);

/// The stop flag, and the condition variable that wakes the thread when it is set.
type StopSignal = Arc<(Mutex<bool>, Condvar)>;

/// A running clean-up thread.
pub(crate) struct Cleaner {
    stop: StopSignal,
    handle: JoinHandle<()>,
}

impl Cleaner {
    /// Starts the thread; its first sweep is one `every` after the start.
    pub(crate) fn start(core: &Arc<Core>, every: Duration) -> Result<Self> {
        let stop: StopSignal = Arc::new((Mutex::new(false), Condvar::new()));
        let weak = Arc::downgrade(core);
        let signal = Arc::clone(&stop);
        let handle = thread::Builder::new()
            .name(CLEANUP_THREAD_NAME.into())
            .spawn(move || run(&weak, &signal, every))?;
        Ok(Self { stop, handle })
    }

    /// Whether the thread still runs (it ends after a panic).
    pub(crate) fn is_running(&self) -> bool {
        !self.handle.is_finished()
    }

    /// Asks the thread to stop and waits for it.
    pub(crate) fn stop(self) {
        let (flag, wake) = &*self.stop;
        *flag.lock().unwrap_or_else(PoisonError::into_inner) = true;
        wake.notify_all();
        // The thread catches its panics, so join only fails if that machinery itself failed;
        // there is nothing left to clean up then.
        let _ = self.handle.join();
    }
}

fn stopped(signal: &StopSignal) -> bool {
    *signal.0.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Waits `every` or until stopped; returns whether to go on.
fn sleep(signal: &StopSignal, every: Duration) -> bool {
    let (flag, wake) = &**signal;
    // An interval too long for the clock to represent: wait until stopped.
    let deadline = Instant::now().checked_add(every);
    let mut stop = flag.lock().unwrap_or_else(PoisonError::into_inner);
    while !*stop {
        let Some(deadline) = deadline else {
            stop = wake.wait(stop).unwrap_or_else(PoisonError::into_inner);
            continue;
        };
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            return true;
        };
        stop = wake.wait_timeout(stop, left).unwrap_or_else(PoisonError::into_inner).0;
    }
    false
}

fn run(core: &Weak<Core>, signal: &StopSignal, every: Duration) {
    // The first look one interval after the start; then as the shared schedule says: when the
    // next sweep is due (another process may have swept meanwhile), soon after a sweep left
    // unfinished or found another sweeper, never longer than the interval.
    let mut wait = every;
    while sleep(signal, wait) {
        let Some(core) = core.upgrade() else {
            return;
        };
        let turn = catch_unwind(AssertUnwindSafe(|| core.sweep_if_due(true, &|| stopped(signal))));
        wait = every;
        match turn {
            Ok(Ok(turn)) => {
                if let Some(report) = &turn.report {
                    core.record_cleanup(report);
                }
                wait = turn.next.clamp(MIN_WAIT.min(every), every);
            }
            // A batch runs through the group committer, which turns a panic into this error.
            Ok(Err(Error::Panicked { message, .. })) => {
                core.report_cleanup_panic(message);
                return;
            }
            Ok(Err(e)) => core.record_cleanup_error(&e),
            Err(panic) => {
                core.report_cleanup_panic(panic_message(panic.as_ref()));
                return;
            }
        }
    }
}
