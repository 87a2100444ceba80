//! The one error type of sessiondb.

use std::fmt;

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in sessiondb.
///
/// Messages are short and say what to do next; the underlying cause, where there is one, is
/// available through [`std::error::Error::source`].
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// No live session has this id: it never existed, was deleted, or expired and was removed.
    NotFound,
    /// The session expired, but is still inside its grace window: its data is returned so that
    /// the caller can carry it into a new session. After the grace window the session reads as
    /// [`Error::NotFound`].
    Expired {
        /// The session data as last saved.
        data: Vec<u8>,
    },
    /// The session exists but the requested state id was never stored in it.
    StateNotFound {
        /// The state id that was asked for.
        requested: u64,
        /// The latest state id of the session.
        latest: u64,
    },
    /// The requested state was stored once but has been evicted by the `max_states` cap.
    StateEvicted {
        /// The state id that was asked for.
        requested: u64,
        /// The oldest state id still kept.
        oldest: u64,
    },
    /// A save stated a version that is no longer current: someone else saved in between.
    /// Nothing was written.
    Conflict {
        /// The version the caller read and expected to replace.
        expected: u64,
        /// The version currently stored.
        found: u64,
    },
    /// The secure token given does not match the session's (Nagare's `SessionSecurityError`).
    Security,
    /// The session moved to a new id ([`Store::regenerate`](crate::Store::regenerate)) a short
    /// while ago, and this request still carries the old one (its response was probably lost).
    /// Continue with the successor, and send its id and token to the client again.
    Rotated {
        /// The session's new id.
        successor: crate::id::types::SessionId,
        /// The session's new secure token.
        token: crate::id::types::SecureToken,
    },
    /// This id was retired on purpose: revoked at log-out, or rotated longer ago than the
    /// forwarding window. Not the same as [`Error::NotFound`] (an id never issued, or expired).
    Revoked,
    /// The session cap was reached and the policy is to refuse new sessions.
    MaxSessionsExceeded {
        /// The configured cap.
        max: u64,
    },
    /// No unused session id was found after a bounded number of attempts, or the operating
    /// system's random source failed.
    GenerateId {
        /// What went wrong.
        reason: String,
    },
    /// A stored record failed its checksum, its size limit or its decoding.
    Corrupted {
        /// The table holding the bad record.
        table: &'static str,
        /// The record's key, printable.
        key: String,
    },
    /// The file is a sessiondb database of a format version this build cannot read. A file of
    /// an earlier format (`found < expected`) was written by an earlier sessiondb: nothing
    /// released reads both, so delete it to start afresh (its sessions are created again).
    UnsupportedFormat {
        /// The version found in the file.
        found: u32,
        /// The version this build reads and writes.
        expected: u32,
    },
    /// The file exists but is not a sessiondb database.
    NotSessionDb {
        /// Why the file was not recognised.
        reason: String,
    },
    /// Session data could not be converted to or from the caller's type.
    Serde {
        /// The message of the serializer.
        reason: String,
    },
    /// An argument was refused: oversize data, a malformed id, a bad configuration, or a write
    /// on a read-only store. Nothing was written.
    InvalidInput(String),
    /// The process was forked after the store was opened; open a new store in the child.
    Forked,
    /// A session lock was not acquired within its maximum wait: another request of the same
    /// session (or of a session sharing its lock stripe) held it the whole time.
    LockTimeout {
        /// How long the caller waited.
        waited: std::time::Duration,
    },
    /// sessiondb panicked (a bug, or a damaged file redb could not read). A panic in a read is
    /// caught and returned by that call; one in the clean-up thread is reported once, to the
    /// next call.
    Panicked {
        /// Where: the clean-up thread, or a write transaction run for several threads.
        place: &'static str,
        /// The panic message.
        message: String,
    },
    /// The disk is full (or the storage refused to grow). The write was not committed; every
    /// committed session is intact. Retry once space is free: the store reopens the file by
    /// itself.
    DiskFull(std::io::Error),
    /// An earlier I/O error (a full disk, a failing device) stopped redb's handle on the file,
    /// and the store could not reopen it yet: reads of the old handle outlasted the wait.
    /// Retry; the next write tries the reopen again, which recovers the last committed
    /// transaction.
    NeedsReopen,
    /// redb found the file itself damaged: a page or a tree that does not hold together.
    /// Run `dump --verify` on it, and restore a backup or move it aside.
    Damaged {
        /// What redb found.
        reason: String,
    },
    /// A file or directory of the store belongs to another user, or other users can write it,
    /// or a file has a second name (a hard link) or is another user's and readable by all (or
    /// the directory the database is in belongs to another user, or others can write it
    /// without the sticky bit), so they could read, change, replace or block the store. The
    /// refused file was not used: from `open` nothing was opened; a lock file refused later (a
    /// stripe, `cleanup.lock`) fails only that call of an open store. See
    /// [`Builder::file_access`] and [`Builder::trust_foreign_files`], and docs/reliability.md
    /// ("Private files").
    ///
    /// [`Builder::file_access`]: crate::Builder::file_access
    /// [`Builder::trust_foreign_files`]: crate::Builder::trust_foreign_files
    UnsafeFile {
        /// The file or directory refused.
        path: std::path::PathBuf,
        /// What is wrong with it, and how to fix it.
        problem: String,
    },
    /// An error from the redb storage engine.
    Storage(redb::Error),
    /// An I/O error outside redb.
    Io(std::io::Error),
    /// The request could not be stored in time: other requests of its session kept it busy
    /// past [`RunConfig`](crate::web::RunConfig)'s lock wait or overall bound
    /// ([`SessionManager::handle`](crate::web::SessionManager::handle)). Nothing of the
    /// request was stored. A web program answers `503 Service Unavailable` with `Retry-After`.
    Busy {
        /// How long the client should wait before trying again.
        retry_after: std::time::Duration,
    },
    /// A session was to be created under an id the caller chose, but the id is in use or
    /// retired ([`Store::create_under`](crate::Store::create_under)). Nothing was written.
    IdTaken,
    /// The session server (Redis, the `redis` feature) did not do what was asked: it is
    /// unreachable, loading, out of memory, read-only, moving slots or down. Its `kind` says
    /// what to do; the request wrote nothing it acknowledged, and a retry once the server is
    /// back loses nothing.
    Server {
        /// What went wrong, by what the operator does about it.
        kind: ServerErrorKind,
        /// The server's or the client library's message.
        message: String,
    },
}

/// The kinds of [`Error::Server`], by what to do about them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerErrorKind {
    /// No connection: the server is down, restarting, or not at the address given.
    Unreachable,
    /// The server is loading its data set after a restart.
    Loading,
    /// The server refused a write at its `maxmemory`.
    OutOfMemory,
    /// The server is a read-only replica.
    ReadOnly,
    /// A Cluster slot moved to another node.
    Moved,
    /// The Cluster is down, or a master of it is.
    ClusterDown,
    /// Any other error of the server or of the protocol.
    Other,
}

impl ServerErrorKind {
    /// What the operator or the caller should do.
    fn advice(self) -> &'static str {
        match self {
            ServerErrorKind::Unreachable => {
                "the session server is unreachable: is it up, and at this address? retry once it is"
            }
            ServerErrorKind::Loading => {
                "the session server is loading its data after a restart: retry in a moment"
            }
            ServerErrorKind::OutOfMemory => {
                "the session server is out of memory: raise its maxmemory (and use a noeviction policy)"
            }
            ServerErrorKind::ReadOnly => {
                "the session server is a read-only replica: point the engine at the master"
            }
            ServerErrorKind::Moved => {
                "a Cluster slot moved: retry; if it persists, give the engine the Cluster's nodes"
            }
            ServerErrorKind::ClusterDown => {
                "the session Cluster is down or lost a master: retry once it is whole again"
            }
            ServerErrorKind::Other => "the session server refused the request",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotFound => f.write_str("session not found: start a new session"),
            Error::Expired { .. } => {
                f.write_str("session expired: start a new session (the old data is attached)")
            }
            Error::StateNotFound { requested, latest } => write!(
                f,
                "state {requested} does not exist (latest is {latest}): fall back to the latest state"
            ),
            Error::StateEvicted { requested, oldest } => write!(
                f,
                "state {requested} was evicted (oldest kept is {oldest}): fall back to the latest state"
            ),
            Error::Conflict { expected, found } => write!(
                f,
                "conflicting save: expected version {expected}, found {found}; reload and retry"
            ),
            Error::Security => f.write_str("secure token does not match the session"),
            Error::Rotated { .. } => f.write_str(
                "session id was rotated: continue with its successor and send its cookie again",
            ),
            Error::Revoked => {
                f.write_str("session id was revoked (logged out or rotated): start a new session")
            }
            Error::MaxSessionsExceeded { max } => {
                write!(f, "session cap of {max} reached: retry later or raise max_sessions")
            }
            Error::GenerateId { reason } => write!(f, "could not generate a session id: {reason}"),
            Error::Corrupted { table, key } => write!(
                f,
                "corrupted record in table `{table}` at key {key}: delete the session or restore a backup"
            ),
            Error::UnsupportedFormat { found, expected } if found < expected => write!(
                f,
                "unsupported file format version {found}: the file was written by an earlier \
                 sessiondb, and this build reads format {expected} only (no released sessiondb \
                 reads both): delete the file to start afresh; its sessions are lost and are \
                 created again as users return"
            ),
            Error::UnsupportedFormat { found, expected } => write!(
                f,
                "unsupported file format version {found} (this build reads {expected}): \
                 the file was written by a newer sessiondb; use that version"
            ),
            Error::NotSessionDb { reason } => {
                write!(f, "not a sessiondb file ({reason}): check the path or move the file aside")
            }
            Error::Serde { reason } => write!(f, "session data type mismatch: {reason}"),
            Error::InvalidInput(msg) => write!(f, "invalid input: {msg}"),
            Error::Forked => {
                f.write_str("store used in a forked child process: open a new store after fork")
            }
            Error::LockTimeout { waited } => write!(
                f,
                "session lock not acquired after {} ms: another request holds it; retry later or wait longer",
                waited.as_millis()
            ),
            Error::Panicked { place, message } => write!(
                f,
                "sessiondb panicked in {place}: {message}; run `dump --verify` on the file and report the bug"
            ),
            Error::DiskFull(_) => f.write_str(
                "disk full: nothing was written; free space and retry (committed sessions are intact)",
            ),
            Error::NeedsReopen => f.write_str(
                "an earlier i/o error stopped the file handle and it could not be reopened yet: retry",
            ),
            Error::Damaged { reason } => write!(
                f,
                "the file is damaged ({reason}): run `dump --verify`, then restore a backup or move it aside"
            ),
            Error::UnsafeFile { path, problem } => {
                write!(f, "unsafe file {}: {problem}", path.display())
            }
            Error::Storage(_) => f.write_str("storage engine error"),
            Error::Io(_) => f.write_str("i/o error"),
            Error::IdTaken => f.write_str("session id in use or retired: choose another id"),
            Error::Server { kind, message } => write!(f, "{} ({message})", kind.advice()),
            Error::Busy { retry_after } => write!(
                f,
                "session busy with other requests, nothing stored: answer 503 and retry after {} s",
                retry_after.as_secs().max(1)
            ),
        }
    }
}

impl Error {
    /// Whether this is the engine refusing the session a caller named, rather than a failure:
    /// the session is unknown or gone ([`Error::NotFound`]), retired ([`Error::Revoked`]),
    /// moved to a new id ([`Error::Rotated`]), expired ([`Error::Expired`]), or the token is
    /// wrong ([`Error::Security`]). Nothing is wrong with the store and nothing was written:
    /// a web request goes on with a fresh session (what
    /// [`SessionManager::begin`](crate::web::SessionManager::begin) does), an adapter answers
    /// "no such session". Every other error is a failure to report (storage, input, limits) or
    /// a request to come back ([`Error::Conflict`], [`Error::Busy`], [`Error::LockTimeout`]).
    #[must_use]
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            Error::NotFound
                | Error::Revoked
                | Error::Expired { .. }
                | Error::Security
                | Error::Rotated { .. }
        )
    }

    /// A copy of a storage error, for each of the writes that shared a failed transaction:
    /// the variant is kept, the source becomes its text where it cannot be cloned.
    pub(crate) fn duplicate(&self) -> Error {
        let io = |e: &std::io::Error| std::io::Error::new(e.kind(), e.to_string());
        match self {
            Error::DiskFull(e) => Error::DiskFull(io(e)),
            Error::Io(e) => Error::Io(io(e)),
            Error::NeedsReopen => Error::NeedsReopen,
            Error::Damaged { reason } => Error::Damaged { reason: reason.clone() },
            Error::Panicked { place, message } => {
                Error::Panicked { place, message: message.clone() }
            }
            Error::Forked => Error::Forked,
            Error::InvalidInput(msg) => Error::InvalidInput(msg.clone()),
            other => Error::Io(std::io::Error::other(format!("{other}: {other:?}"))),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Storage(e) => Some(e),
            Error::Io(e) | Error::DiskFull(e) => Some(e),
            _ => None,
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::StorageFull { Error::DiskFull(e) } else { Error::Io(e) }
    }
}

/// Sorts redb's errors into the variants a caller acts on: a full disk, a handle stopped by an
/// earlier I/O error, a damaged file; everything else stays [`Error::Storage`].
fn from_redb(e: redb::Error) -> Error {
    match e {
        redb::Error::Io(io) if io.kind() == std::io::ErrorKind::StorageFull => Error::DiskFull(io),
        redb::Error::PreviousIo => Error::NeedsReopen,
        redb::Error::Corrupted(reason) => Error::Damaged { reason },
        other => Error::Storage(other),
    }
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Self {
                from_redb(e.into())
            }
        }
    )*};
}
from_redb!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);
