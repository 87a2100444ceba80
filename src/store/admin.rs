//! Inspection for admin tools: counts, a paginated walk over sessions, one session's states.

use std::collections::VecDeque;
use std::ops::Bound;

use redb::{ReadTransaction, ReadableTableMetadata};

use super::handle::Store;
use super::record::{SessionsTable, decode_session, get_session, get_state, printable};
use super::shared::Core;
use crate::error::{Error, Result};
use crate::format::schema::{self, META_CREATED, META_FORMAT, META_SWEPT, RECORD, SESSIONS_NAME};
use crate::id::SessionId;

pub use crate::engine::SessionStatus;

/// A session's metadata, without its data.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionInfo {
    /// The id.
    pub id: SessionId,
    /// Creation time, ms since the epoch.
    pub created: u64,
    /// Last access persisted, ms since the epoch.
    pub last_access: u64,
    /// Expiry, ms since the epoch (`u64::MAX`: never).
    pub expires_at: u64,
    /// End of the grace window, after which clean-up may remove the session, ms since the
    /// epoch (`u64::MAX`: never).
    pub remove_at: u64,
    /// When the `expiry` index has the session filed, ms since the epoch: clean-up and
    /// eviction look at it then. At most `remove_at`: the index is lazy, and a save or touch
    /// that moves `remove_at` later leaves it where it was (`docs/format.md`).
    pub indexed_remove_at: u64,
    /// Version: incremented by every save.
    pub version: u64,
    /// Newest state id.
    pub latest_state: u64,
    /// Oldest state id kept.
    pub oldest_state: u64,
    /// Size of the session data in bytes.
    pub data_len: u64,
    /// Status at the time of reading, judged like a load by this handle: by the stricter of
    /// the stored deadlines and this handle's timeouts. Open with `idle_timeout(None)` (and no
    /// absolute lifetime) to judge by the stored deadlines alone, as `examples/dump.rs` does.
    pub status: SessionStatus,
}

/// One stored state, as an admin sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct StateInfo {
    /// The state id.
    pub id: u64,
    /// Size of the stored record in bytes: the state data plus 13 bytes of header and length.
    pub size: u64,
}

/// File-wide facts.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreInfo {
    /// The file format version.
    pub format_version: u32,
    /// When the file was initialised, ms since the epoch.
    pub created: u64,
    /// Sessions stored, including expired ones not yet swept. Counted by their `expiry`
    /// entries, one per session (constant time; [`Store::verify`] checks the invariant).
    pub sessions: u64,
    /// States stored: the entries of the `sessions` table other than the session records.
    pub states: u64,
    /// Entries in the expiry index (`sessions` counts them).
    pub expiry_entries: u64,
    /// Tombstones of rotated and revoked ids not yet swept.
    pub tombstones: u64,
    /// Entries in the per-user index (sessions filed under a user).
    pub user_entries: u64,
    /// Size of the file (or of the [`Builder::backend`](crate::Builder::backend)) in bytes.
    pub file_size: u64,
    /// When the last complete clean-up sweep ran, ms since the epoch (the shared schedule, see
    /// [`Store::cleanup_if_due`]); `None` before the first.
    pub last_swept: Option<u64>,
}

/// What a session holds: its data and every stored state, for admin tools. See
/// [`Store::contents`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Contents {
    /// The session data.
    pub session_data: Vec<u8>,
    /// Every stored state, oldest first: its id and data.
    pub states: Vec<(u64, Vec<u8>)>,
}

const PAGE: usize = 256;

/// An iterator over every session's metadata, in id order. See [`Store::sessions`].
///
/// It reads pages of sessions, each in its own short read transaction, so it never pins old
/// pages of the file for long; sessions created or deleted during the walk may or may not
/// appear. A damaged record yields an `Err` item and the walk goes on.
#[derive(Debug)]
pub struct Sessions<'s> {
    store: &'s Store,
    after: Option<Vec<u8>>,
    buf: VecDeque<Result<SessionInfo>>,
    done: bool,
}

impl Sessions<'_> {
    fn fill(&mut self) -> Result<()> {
        {
            let store = self.store;
            store.core.reading(|| self.fill_page())
        }
    }

    fn fill_page(&mut self) -> Result<()> {
        let txn = self.store.core.read()?;
        let sessions = schema::read_sessions(&txn)?;
        // Records and states share the table: after the last record listed comes the next
        // session's first state.
        let lower = match &self.after {
            Some(after) => Bound::Excluded((after.as_slice(), RECORD)),
            None => Bound::Unbounded,
        };
        let now = self.store.core.now();
        let mut n = 0;
        self.done = true;
        for entry in sessions.range::<(&[u8], u64)>((lower, Bound::Unbounded))? {
            let (k, v) = entry?;
            let (sid, state) = k.value();
            if state != RECORD {
                continue;
            }
            n += 1;
            self.after = Some(sid.to_vec());
            self.buf.push_back(self.store.core.info_of(sid, v.value(), now));
            if n == PAGE {
                self.done = false;
                break;
            }
        }
        Ok(())
    }
}

impl Iterator for Sessions<'_> {
    type Item = Result<SessionInfo>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.buf.is_empty()
            && !self.done
            && let Err(e) = self.fill()
        {
            self.done = true;
            return Some(Err(e));
        }
        self.buf.pop_front()
    }
}

fn states_of(states: &impl SessionsTable, id: &SessionId) -> Result<Vec<StateInfo>> {
    let sid = id.as_bytes();
    let mut out = Vec::new();
    for entry in states.range((sid, 0)..=(sid, RECORD - 1))? {
        let (k, v) = entry?;
        out.push(StateInfo { id: k.value().1, size: v.value().len() as u64 });
    }
    Ok(out)
}

impl Core {
    /// One session's metadata as `txn` sees it, `None` if there is no record.
    fn info_in(&self, txn: &ReadTransaction, id: &SessionId) -> Result<Option<SessionInfo>> {
        let sessions = schema::read_sessions(txn)?;
        let Some(guard) = sessions.get((id.as_bytes(), RECORD))? else {
            return Ok(None);
        };
        self.info_of(id.as_bytes(), guard.value(), self.now()).map(Some)
    }

    fn info_of(&self, sid: &[u8], bytes: &[u8], now: u64) -> Result<SessionInfo> {
        let rec = decode_session(sid, bytes)?;
        let id = std::str::from_utf8(sid)
            .ok()
            .and_then(|s| SessionId::parse(s).ok())
            .ok_or_else(|| Error::Corrupted { table: SESSIONS_NAME, key: printable(sid) })?;
        let status = self.status(&rec, now);
        Ok(SessionInfo {
            id,
            created: rec.created,
            last_access: rec.last_access,
            expires_at: rec.expires_at,
            remove_at: rec.remove_at,
            indexed_remove_at: rec.indexed,
            version: rec.version,
            latest_state: rec.latest_state,
            oldest_state: rec.oldest_state,
            data_len: rec.data.len() as u64,
            status,
        })
    }
}

impl Store {
    /// Closes the store for a process that exits right after: a CGI program at the end of its
    /// request. Every commit is already durable, so nothing is lost; what this skips is redb's
    /// clean close, which writes the allocator state and a shutdown header (a commit and two
    /// more syncs, four `fdatasync`s in all). While another process has the file open
    /// read-write, the handle is left to the OS instead, as if this process had been killed
    /// after its last commit: the file needs no repair while a writer is live, and the next
    /// writer to close cleanly (or the next open) settles it from the allocator snapshot that
    /// every `MultiProcess` commit records. The last process open closes cleanly, so a file
    /// left by CGI programs opens read-only (`dump`) without a repair. Which process is last is
    /// decided with a shared lock on `open.lock` in the lock directory, which every read-write
    /// `MultiProcess` store holds while open. What skipping the close saves, measured with a
    /// build that left every handle (300 requests in a row): 3.5–3.8 ms per CGI request, open
    /// to exit, became 3.0–3.3 ms (BENCHMARKS.md, `cgi`). A lone, sequential CGI process is
    /// always the last one open, so it closes and gains nothing.
    ///
    /// Only in [`Sharing::MultiProcess`](crate::store::config::Sharing::MultiProcess), whose commits record
    /// that snapshot: any other store is simply dropped, since a `SingleProcess` file left
    /// open would need a full repair. A left handle keeps its file descriptor and locks until
    /// the process exits, so call this last, and not in a process that goes on serving.
    ///
    /// Returns whether the handle was left open (`false`: it closed cleanly, as the last one
    /// open or in another sharing mode; `true` also in a process forked after open, where a
    /// store never closes the parent's handle).
    pub fn close_for_exit(mut self) -> bool {
        let c = &self.core;
        if std::process::id() != c.pid {
            return true; // A forked child never closes the parent's handle (see `Drop`).
        }
        if c.cfg.sharing != crate::store::config::Sharing::MultiProcess || c.cfg.read_only {
            return false;
        }
        // The clean-up thread first: it may be writing.
        if let Some(cleaner) = self.cleaner.take() {
            cleaner.stop();
        }
        let leave = !c.locks.last_open();
        c.leave_to_exit.store(leave, std::sync::atomic::Ordering::Relaxed);
        leave
    }

    /// Every session's metadata, for admin tools (session2's `iter_sessions`). Needs no tokens.
    #[must_use]
    pub fn sessions(&self) -> Sessions<'_> {
        Sessions { store: self, after: None, buf: VecDeque::new(), done: false }
    }

    /// A session's metadata and its stored states (oldest first, with their sizes), read in one
    /// transaction so that they agree even while other processes write. `None` if there is no
    /// record, whatever its status. Needs no token.
    ///
    /// # Errors
    /// [`Error::Corrupted`] for a damaged record, [`Error::Storage`] from redb.
    pub fn inspect(&self, id: &SessionId) -> Result<Option<(SessionInfo, Vec<StateInfo>)>> {
        self.core.reading(|| self.inspect_unguarded(id))
    }

    fn inspect_unguarded(&self, id: &SessionId) -> Result<Option<(SessionInfo, Vec<StateInfo>)>> {
        let txn = self.core.read()?;
        let Some(info) = self.core.info_in(&txn, id)? else {
            return Ok(None);
        };
        Ok(Some((info, states_of(&schema::read_sessions(&txn)?, id)?)))
    }

    /// Everything a session holds: its data and every stored state, read in one transaction,
    /// whatever its status; `None` if there is no record. For admin tools (`dump --session`).
    /// Needs no token: whoever can read the file can read this.
    ///
    /// # Errors
    /// [`Error::Corrupted`] for a damaged record or state, [`Error::Storage`] from redb.
    pub fn contents(&self, id: &SessionId) -> Result<Option<Contents>> {
        self.core.reading(|| {
            let txn = self.core.read()?;
            let sid = id.as_bytes();
            let Some(rec) = get_session(&schema::read_sessions(&txn)?, sid)? else {
                return Ok(None);
            };
            let table = schema::read_sessions(&txn)?;
            let states = (rec.oldest_state..=rec.latest_state)
                .map(|n| Ok((n, get_state(&table, sid, n)?)))
                .collect::<Result<_>>()?;
            Ok(Some(Contents { session_data: rec.data, states }))
        })
    }

    /// How many sessions the file holds, including expired ones not yet swept. Constant time:
    /// counted by their `expiry` entries, one per session.
    ///
    /// # Errors
    /// [`Error::Storage`] from redb.
    pub fn count(&self) -> Result<u64> {
        self.core.reading(|| Ok(schema::read_expiry(&*self.core.read()?)?.len()?))
    }

    /// File-wide facts: format, counts, size.
    ///
    /// # Errors
    /// [`Error::Storage`] from redb, [`Error::Io`] if the file size cannot be read.
    pub fn info(&self) -> Result<StoreInfo> {
        self.core.reading(|| self.info_unguarded())
    }

    fn info_unguarded(&self) -> Result<StoreInfo> {
        let txn = self.core.read()?;
        let meta = schema::read_meta(&txn)?;
        let read = |key: &'static str| -> Result<Vec<u8>> {
            let value = meta
                .get(key)?
                .ok_or_else(|| Error::Corrupted { table: "meta", key: key.into() })?;
            Ok(value.value().to_vec())
        };
        let bad = |key: &'static str| Error::Corrupted { table: "meta", key: key.into() };
        let format_version = <[u8; 4]>::try_from(read(META_FORMAT)?.as_slice())
            .map(u32::from_le_bytes)
            .map_err(|_| bad(META_FORMAT))?;
        let created = schema::u64_of(&read(META_CREATED)?).ok_or_else(|| bad(META_CREATED))?;
        let sessions = schema::read_expiry(&txn)?.len()?;
        Ok(StoreInfo {
            format_version,
            created,
            sessions,
            states: schema::read_sessions(&txn)?.len()?.saturating_sub(sessions),
            expiry_entries: sessions,
            tombstones: schema::read_tombstones(&txn)?.len()?,
            user_entries: schema::read_users(&txn)?.len()?,
            file_size: match &self.core.cfg.backend {
                Some(backend) => redb::StorageBackend::len(backend)?,
                None => std::fs::metadata(self.path())?.len(),
            },
            last_swept: meta.get(META_SWEPT)?.and_then(|v| schema::u64_of(v.value())),
        })
    }
}
