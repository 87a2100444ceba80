//! The redb engine: a [`Store`] keeps sessions, their states and expiry indexes in one redb
//! file.
//!
//! This file only declares the engine's modules and names what it exports; each module
//! imports the siblings it needs (`super::shared::Core`, ...), never this one, so no import
//! goes in a circle (`scripts/module-cycles.py`).
//!
//! - [`handle`]: the public [`Store`] handle, opening and closing it;
//! - [`shared`]: the core shared with the clean-up thread: the redb handle (reopened after an
//!   I/O error), the settings, the group committer and the lock files;
//! - [`commit`]: group commit, which runs write operations without knowing them; [`op`]: what
//!   a write operation is (a value with a typed result) and how one is submitted; the
//!   operations, one file per concern ([`session`], [`save`], [`rotate`], [`adopt`], [`users`],
//!   [`expiry`]); [`admin`] and [`verify`] for inspection; [`stats`]: what sweeps report;
//! - [`config`], [`open`], [`cleanup`], [`schedule`], [`lock`], [`locking`], [`files`]:
//!   settings, opening the file, clean-up, session locks and the files' owners and modes.

pub(crate) mod cleanup;
pub(crate) mod config;
pub(crate) mod files;
pub(crate) mod lock;

#[macro_use]
mod commit;
mod admin;
mod adopt;
mod engine;
mod expiry;
mod handle;
mod locking;
mod op;
mod open;
mod outcome;
mod record;
mod rotate;
mod save;
mod schedule;
mod session;
mod share;
mod shared;
mod stats;
mod typed;
mod users;
mod verify;

pub use admin::{Contents, SessionInfo, SessionStatus, Sessions, StateInfo, StoreInfo};
pub use cleanup::CLEANUP_THREAD_NAME;
pub use commit::BatchStats;
pub use config::{Builder, CapPolicy, Sharing};
pub use files::FileAccess;
pub use handle::{Stats, Store};
pub use locking::SessionLock;
pub use stats::CleanupStats;
pub use typed::{decode, encode};
pub use verify::{MAX_LISTED_PROBLEMS, Problem, Verified};

#[cfg(feature = "testing")]
pub(crate) use record::decode_any_record;
