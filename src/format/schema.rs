//! The file's tables: the only module that names redb table definitions.
//!
//! See `docs/format.md` for what each table holds and why.

use redb::{ReadOnlyTable, ReadTransaction, Table, TableDefinition, WriteTransaction};

/// The format version this build reads and writes. Stored in `meta` under [`META_FORMAT`].
pub(crate) const FORMAT_VERSION: u32 = 2;

/// The value stored under [`META_MAGIC`]: marks a redb file as a sessiondb file.
pub(crate) const MAGIC: &[u8] = b"sessiondb";

/// `meta` key of the magic marker.
pub(crate) const META_MAGIC: &str = "magic";
/// `meta` key of the format version (u32 LE).
pub(crate) const META_FORMAT: &str = "format";
/// `meta` key of the creation time (u64 LE milliseconds).
pub(crate) const META_CREATED: &str = "created";
/// `meta` key of the shared clean-up schedule: when the last complete sweep ran (u64 LE
/// milliseconds, the sweeping process's clock), written in the transaction of the batch that
/// finished it. Absent until the first complete sweep. See `docs/format.md`.
pub(crate) const META_SWEPT: &str = "swept";
/// `meta` key of the size (u64 LE sessions) for the next single clean-up batch of a
/// short-lived process ([`Store::cleanup_if_due`](crate::Store::cleanup_if_due)), sized by the
/// time of the last one. Absent until a batch left a backlog. See `docs/format.md`.
pub(crate) const META_SWEEP_BATCH: &str = "sweep_batch";

/// A u64 `meta` value ([`META_CREATED`], [`META_SWEPT`], [`META_SWEEP_BATCH`]): exactly 8 bytes,
/// little-endian; anything else is `None`.
pub(crate) fn u64_of(bytes: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(bytes).ok().map(u64::from_le_bytes)
}

/// Names of the tables, as they appear in errors. `states` names the state entries of the
/// `sessions` table (every key but [`RECORD`]).
pub(crate) const SESSIONS_NAME: &str = "sessions";
pub(crate) const STATES_NAME: &str = "states";

/// The second half of a session record's key in `sessions`: `(sid, RECORD)` is the record,
/// `(sid, n)` for any other `n` is state `n`. A record sorts right after its newest state, so a
/// save that appends a state and rewrites the record dirties one leaf (`docs/format.md`). State
/// ids never reach it: a record whose `latest_state` is `u64::MAX` is refused as corrupted.
pub(crate) const RECORD: u64 = u64::MAX;
/// Short name of the `tombstones` table, for error messages.
pub(crate) const TOMBSTONES_NAME: &str = "tombstones";

/// File-wide settings and markers.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("sessiondb.meta");
/// (session id, [`RECORD`]) → session record; (session id, state id) → state record.
const SESSIONS: TableDefinition<(&[u8], u64), &[u8]> = TableDefinition::new("sessiondb.sessions");
/// (indexed removal time, session id) → (): sweeps and evictions are range scans. The indexed
/// time is at most the record's `remove_at` (a lazy index: early, never late).
const EXPIRY: TableDefinition<(u64, &[u8]), ()> = TableDefinition::new("sessiondb.expiry");
/// Retired session id → tombstone record (rotation and revocation).
const TOMBSTONES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("sessiondb.tombstones");
/// (user key, session id) → (): a user's sessions.
const USERS: TableDefinition<(&[u8], &[u8]), ()> = TableDefinition::new("sessiondb.users");
/// (handed at ms, nonce) → outcome: the writes one process committed for another (a shared
/// commit, `src/store/share.rs`), so that their owners read the results and no write runs twice.
const APPLIED: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("sessiondb.applied");

/// The names of every table above, to tell a sessiondb file from another redb file.
pub(crate) const ALL_TABLES: [&str; 6] = [
    "sessiondb.meta",
    "sessiondb.sessions",
    "sessiondb.expiry",
    "sessiondb.tombstones",
    "sessiondb.users",
    "sessiondb.applied",
];

/// Key of the `expiry` table: (indexed removal time, session id).
pub(crate) type ExpiryKey<'a> = (u64, &'a [u8]);

/// The tables of a write transaction, opened together.
pub(crate) struct WriteTables<'t> {
    pub(crate) meta: Table<'t, &'static str, &'static [u8]>,
    pub(crate) sessions: Table<'t, (&'static [u8], u64), &'static [u8]>,
    pub(crate) expiry: Table<'t, (u64, &'static [u8]), ()>,
    pub(crate) tombstones: Table<'t, &'static [u8], &'static [u8]>,
    pub(crate) users: Table<'t, (&'static [u8], &'static [u8]), ()>,
    pub(crate) applied: Table<'t, (u64, u64), &'static [u8]>,
}

impl<'t> WriteTables<'t> {
    /// Opens (creating where missing) every table in `txn`.
    ///
    /// The tables opened so far are held in [`Opening`] until all are open: on a damaged file
    /// redb can panic inside `open_table` while holding the transaction's table lock, poisoning
    /// it, and a `Table` dropped during that unwinding panics again on the poisoned lock, which
    /// aborts the process (`fuzz/regressions/dump-abort-open-table-poisoned.redb`). Dropped
    /// under `catch_unwind` instead, the first panic goes on to the group committer's
    /// `catch_unwind` and becomes `Error::Panicked`.
    pub(crate) fn open(txn: &'t WriteTransaction) -> Result<Self, redb::TableError> {
        let meta = Opening(Some(txn.open_table(META)?));
        let sessions = Opening(Some(txn.open_table(SESSIONS)?));
        let expiry = Opening(Some(txn.open_table(EXPIRY)?));
        let tombstones = Opening(Some(txn.open_table(TOMBSTONES)?));
        let users = Opening(Some(txn.open_table(USERS)?));
        let applied = txn.open_table(APPLIED)?;
        Ok(Self {
            meta: meta.done(),
            sessions: sessions.done(),
            expiry: expiry.done(),
            tombstones: tombstones.done(),
            users: users.done(),
            applied,
        })
    }
}

/// A table held while [`WriteTables::open`] opens the others. Dropped while the thread
/// panics, its own panic is caught (see there). Not leaked: it holds the write slot.
struct Opening<T>(Option<T>);

impl<T> Opening<T> {
    fn done(mut self) -> T {
        self.0.take().unwrap_or_else(|| unreachable!("an opened table is taken once"))
    }
}

impl<T> Drop for Opening<T> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let table = self.0.take();
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(table)));
        }
    }
}

/// A read-only table of a read transaction, with `K` and `V` its key and value types.
pub(crate) type ReadTable<K, V> = Result<ReadOnlyTable<K, V>, redb::TableError>;

/// Opens the `sessions` table (records and states) for reading. Readers open only the tables
/// they use: each open is a lookup in redb's table tree.
pub(crate) fn read_sessions(
    txn: &ReadTransaction,
) -> ReadTable<(&'static [u8], u64), &'static [u8]> {
    txn.open_table(SESSIONS)
}

/// Opens the `expiry` table for reading.
pub(crate) fn read_expiry(txn: &ReadTransaction) -> ReadTable<(u64, &'static [u8]), ()> {
    txn.open_table(EXPIRY)
}

/// Opens the `meta` table for reading.
pub(crate) fn read_meta(txn: &ReadTransaction) -> ReadTable<&'static str, &'static [u8]> {
    txn.open_table(META)
}

/// Opens the `tombstones` table for reading.
pub(crate) fn read_tombstones(txn: &ReadTransaction) -> ReadTable<&'static [u8], &'static [u8]> {
    txn.open_table(TOMBSTONES)
}

/// Opens the `users` table for reading.
pub(crate) fn read_users(txn: &ReadTransaction) -> ReadTable<(&'static [u8], &'static [u8]), ()> {
    txn.open_table(USERS)
}

/// Opens the `applied` table for reading (a shared commit's outcomes).
pub(crate) fn read_applied(txn: &ReadTransaction) -> ReadTable<(u64, u64), &'static [u8]> {
    txn.open_table(APPLIED)
}
