//! sessiondb: an embedded, crash-safe web session store in one redb file shared by many
//! processes at once.
//!
//! It keeps sessions, numbered per-session state snapshots (a states history, so the back
//! button works), expiry indexes, tombstones of rotated and revoked ids and a per-user index in
//! one file that CGI programs, pre-fork workers and multi-threaded servers open together. Every
//! write is a durable redb transaction, shared by the concurrent writes of a process's threads
//! (group commit).
//!
//! [`Store`] is the engine. [`web::SessionManager`] is what a web program calls per request:
//! cookies, strict ids, lazy writes, rotation at log-in, log-out and cross-checks
//! (`docs/web.md`). The web layer and the tower-sessions adapter speak to the [`Engine`] trait,
//! which [`Store`] implements: another engine slots in beside it (`docs/engines.md`).
//!
//! It is not a cache (nothing is lost on restart) and not a network server: every process opens
//! the file itself.
//!
//! ```
//! use sessiondb::{Error, Save, Store};
//! # let dir = tempfile::tempdir().unwrap();
//! let store = Store::open(dir.path().join("sessions.redb"))?;
//!
//! // A new session: send `id` and `token` to the browser.
//! let created = store.create(b"user=ann", b"page 1")?;
//!
//! // A later request: load the latest state, then save a new one.
//! let got = store.load(&created.id, &created.token)?;
//! assert_eq!(got.state_data, b"page 1");
//! let saved = store.store_state(
//!     &created.id,
//!     &created.token,
//!     Save::new(got.version, b"user=ann", b"page 2"),
//! )?;
//! assert_eq!(saved.state_id, 1);
//!
//! // The back button: state 0 is still there.
//! let back = store.fetch_state(&created.id, &created.token, Some(0))?;
//! assert_eq!(back.state_data, b"page 1");
//! # Ok::<_, Error>(())
//! ```
//!
//! # Guarantees
//! Each is checked by the tests named; `docs/concurrency.md` explains the mechanisms.
//! - `is_multiprocess_safe` ([`Store::is_multiprocess_safe`]): with [`Sharing::MultiProcess`]
//!   (the default) any number of processes may open the file read-write at once; redb
//!   serialises their write transactions. Every write acknowledged to a caller survives a
//!   SIGKILL of its process (`tests/kill.rs`, `tests/multiprocess.rs`).
//! - `is_thread_safe` ([`Store::is_thread_safe`]): [`Store`] is `Send + Sync`; one per
//!   process, shared by its threads, whose concurrent writes share transactions (group
//!   commit, `tests/group_commit.rs`).
//! - No lost update: every save states the version it read ([`Save::new`]); a stale save is
//!   [`Error::Conflict`] or goes through [`Store::store_state_merging`]. 4 processes × 4
//!   threads incrementing shared counters lose nothing (`tests/stress.rs`).
//! - [`Store::lock`] serialises a session across processes with a bounded wait; a killed
//!   holder's lock is released by the OS (`tests/locks.rs`).
//! - An expired session is never returned as live, whether or not a clean-up has run
//!   (`tests/expiry.rs`).
//! - A damaged record is [`Error::Corrupted`], never a wrong value (`tests/corruption.rs`). A
//!   damaged file (truncated, bit flips, zeroed pages, another program's) gives typed errors,
//!   never a panic, a hang or a wrong value (`tests/damage.rs`); [`Store::verify`] checks every
//!   record and index of a file (`tests/verify.rs`).
//! - Every acknowledged write survives a power loss at any sync, and the write in flight is
//!   found whole or not at all; an I/O error or a full disk ([`Error::DiskFull`]) loses nothing
//!   committed (`tests/faults.rs`, on the simulated disks of `sessiondb::faults`, feature `testing`). `docs/reliability.md`
//!   lists every promise with its test.
//! - A store used in a process forked after open returns [`Error::Forked`] (`tests/fork.rs`).

// The shared lints (clippy::pedantic and its exceptions) are in Cargo.toml's `[lints]`, for
// every target; the library forbids what the tests may allow (`unsafe_code` is only `deny`
// there) and documents every public item.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod engine;
mod error;
#[cfg(feature = "testing")]
pub mod faults;
mod format;
#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod fuzzing;
mod id;
#[cfg(feature = "redis")]
pub mod redis_engine;
mod store;
mod time;
pub mod web;

pub use engine::{CleanupReport, Created, Engine, Fetched, Named, NewSession, Save, Stored};
pub use error::{Error, Result, ServerErrorKind};
pub use id::{BASE64URL, IdSpec, MAX_ID_LEN, MIN_ENTROPY_BITS, SecureToken, SessionId};
pub use store::{
    BatchStats, Builder, CLEANUP_THREAD_NAME, CapPolicy, CleanupStats, Contents, FileAccess,
    MAX_LISTED_PROBLEMS, Problem, SessionInfo, SessionLock, SessionStatus, Sessions, Sharing,
    StateInfo, Stats, Store, StoreInfo, Verified, decode, encode,
};
#[cfg(feature = "redis")]
pub use redis_engine::RedisEngine;
pub use time::{Clock, ManualClock, SystemClock};
