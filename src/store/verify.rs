//! `Store::verify`: walks every record of the file, checks every checksum and that the indexes
//! agree with the sessions, and reports each problem with its table and key.
//!
//! It runs in one read transaction, so it sees one consistent snapshot while other processes
//! write, and it keeps no per-session state: every cross-check is a point lookup, so its memory
//! does not grow with the file.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};

use redb::{ReadTransaction, ReadableTable};

use super::commit::panic_message;
use super::handle::Store;
use super::record::{SessionRecord, StateRecord, Tombstone, decode_session, printable};
use super::shared::Core;
use crate::error::Result;
use crate::format::codec::{self, CodecError};
use crate::format::schema::{
    self, FORMAT_VERSION, MAGIC, META_CREATED, META_FORMAT, META_MAGIC, META_SWEEP_BATCH,
    META_SWEPT, RECORD,
};
use crate::id::SessionId;

/// The most problems [`Verified::problems`] lists; [`Verified::problem_count`] counts them all.
pub const MAX_LISTED_PROBLEMS: usize = 1000;

/// One thing wrong in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Problem {
    /// The table: `meta`, `sessions`, `states` (the state entries of the `sessions` table),
    /// `expiry`, `tombstones` or `users`.
    pub table: &'static str,
    /// The record's key, printable (hex when it is not ASCII text); empty for a whole table.
    pub key: String,
    /// What is wrong.
    pub what: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.table, self.what)
        } else {
            write!(f, "{} [{}]: {}", self.table, self.key, self.what)
        }
    }
}

/// What [`Store::verify`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Verified {
    /// Records read in each table.
    pub sessions: u64,
    /// States read.
    pub states: u64,
    /// Expiry index entries read.
    pub expiry_entries: u64,
    /// Tombstones read.
    pub tombstones: u64,
    /// User index entries read.
    pub user_entries: u64,
    /// The first [`MAX_LISTED_PROBLEMS`] problems, in the order found.
    pub problems: Vec<Problem>,
    /// How many problems were found in all.
    pub problem_count: u64,
}

impl Verified {
    /// Whether no problem was found.
    pub fn is_clean(&self) -> bool {
        self.problem_count == 0
    }

    pub(crate) fn problem(&mut self, table: &'static str, key: String, what: impl Into<String>) {
        self.problem_count += 1;
        if self.problems.len() < MAX_LISTED_PROBLEMS {
            self.problems.push(Problem { table, key, what: what.into() });
        }
    }
}

fn describe(e: &CodecError) -> String {
    match e {
        CodecError::Truncated => "record shorter than its header".into(),
        CodecError::Format(f) => format!("unknown record format byte {f}"),
        CodecError::Checksum => "checksum mismatch".into(),
        CodecError::TooLarge => "record larger than the hard limit".into(),
        CodecError::Payload(msg) => format!("payload does not decode: {msg}"),
        CodecError::TrailingBytes => "bytes after the payload".into(),
    }
}

/// Why a session record did not decode: the codec's reason, or the record's own checks.
fn session_fault(bytes: &[u8]) -> String {
    match codec::decode::<SessionRecord>(bytes) {
        Ok(rec) => format!(
            "impossible counters: states {}..={}, version {}",
            rec.oldest_state, rec.latest_state, rec.version
        ),
        Err(e) => describe(&e),
    }
}

fn state_key(sid: &[u8], state: u64) -> String {
    format!("{}/{state}", printable(sid))
}

fn valid_id(sid: &[u8]) -> bool {
    std::str::from_utf8(sid).is_ok_and(|s| SessionId::parse(s).is_ok())
}

/// A session's kept states, `oldest..=latest`; `None` when its record is unreadable.
type StateRange = (u64, u64);

/// The walk over one snapshot.
struct Walk<'t> {
    txn: &'t ReadTransaction,
    out: Verified,
}

/// A redb error met while walking a table stops that table's walk; the others go on.
type Step = std::result::Result<(), crate::error::Error>;

impl Walk<'_> {
    /// Runs one table's checks, turning a redb error or a panic into a problem of that table.
    fn table(&mut self, table: &'static str, check: impl FnOnce(&mut Self) -> Step) {
        match catch_unwind(AssertUnwindSafe(|| check(self))) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => self.out.problem(table, String::new(), format!("walk stopped: {e}")),
            Err(panic) => self.out.problem(
                table,
                String::new(),
                format!("walk stopped: the storage engine panicked: {}", panic_message(&*panic)),
            ),
        }
    }

    fn meta(&mut self) -> Step {
        let meta = schema::read_meta(self.txn)?;
        let get = |key| meta.get(key).map(|v| v.map(|g| g.value().to_vec()));
        match get(META_MAGIC)? {
            Some(m) if m == MAGIC => {}
            _ => self.out.problem("meta", META_MAGIC.into(), "missing or wrong marker"),
        }
        match get(META_FORMAT)?.map(|v| <[u8; 4]>::try_from(v.as_slice()).map(u32::from_le_bytes)) {
            Some(Ok(FORMAT_VERSION)) => {}
            Some(Ok(v)) => self.out.problem("meta", META_FORMAT.into(), format!("format {v}")),
            _ => self.out.problem("meta", META_FORMAT.into(), "missing or not 4 bytes"),
        }
        if get(META_CREATED)?.is_none_or(|v| schema::u64_of(&v).is_none()) {
            self.out.problem("meta", META_CREATED.into(), "missing or not 8 bytes");
        }
        // The clean-up schedule's optional keys (docs/format.md): the store reads a value that
        // is not 8 bytes as absent, which costs an early sweep at most, but it is still damage.
        for key in [META_SWEPT, META_SWEEP_BATCH] {
            if let Some(v) = get(key)?
                && schema::u64_of(&v).is_none()
            {
                let what = format!("not 8 bytes ({} bytes): read as absent", v.len());
                self.out.problem("meta", key.into(), what);
            }
        }
        Ok(())
    }

    /// Every session: its key, its record, its states, its expiry entry (filed no later than
    /// its removal time) and its user entry.
    fn sessions(&mut self) -> Step {
        let sessions = schema::read_sessions(self.txn)?;
        let expiry = schema::read_expiry(self.txn)?;
        let users = schema::read_users(self.txn)?;
        for entry in sessions.iter()? {
            let (k, v) = entry?;
            let (sid, n) = k.value();
            if n != RECORD {
                continue; // a state: see `states`
            }
            self.out.sessions += 1;
            if !valid_id(sid) {
                self.out.problem("sessions", printable(sid), "key is not a valid session id");
            }
            let Ok(rec) = decode_session(sid, v.value()) else {
                self.out.problem("sessions", printable(sid), session_fault(v.value()));
                continue;
            };
            for state in rec.oldest_state..=rec.latest_state {
                if sessions.get((sid, state))?.is_none() {
                    self.out.problem(
                        "states",
                        state_key(sid, state),
                        "missing: its session keeps it",
                    );
                }
            }
            if rec.indexed > rec.remove_at {
                let what = format!(
                    "filed late: at {}, after the session's removal time {} (the sweep would \
                     remove it late)",
                    rec.indexed, rec.remove_at
                );
                self.out.problem("expiry", printable(sid), what);
            }
            if expiry.get(rec.expiry_key(sid))?.is_none() {
                let what =
                    format!("no entry at {} (where the record says it is filed)", rec.indexed);
                self.out.problem("expiry", printable(sid), what);
            }
            if let Some(user) = &rec.user
                && users.get((user.as_slice(), sid))?.is_none()
            {
                let what = format!("no entry for this session's user {}", printable(user));
                self.out.problem("users", printable(sid), what);
            }
        }
        Ok(())
    }

    /// Every state: it decodes and its session keeps it.
    fn states(&mut self) -> Step {
        let sessions = schema::read_sessions(self.txn)?;
        // The states of one session are adjacent: look its record up once.
        let mut owner: Option<(Vec<u8>, Option<StateRange>)> = None;
        for entry in sessions.iter()? {
            let (k, v) = entry?;
            let (sid, state) = k.value();
            if state == RECORD {
                continue; // a record: see `sessions`
            }
            self.out.states += 1;
            if let Err(e) = codec::decode::<StateRecord>(v.value()) {
                self.out.problem("states", state_key(sid, state), describe(&e));
            }
            if owner.as_ref().is_none_or(|(s, _)| s.as_slice() != sid) {
                let range = match sessions.get((sid, RECORD))? {
                    Some(g) => decode_session(sid, g.value())
                        .ok()
                        .map(|r| (r.oldest_state, r.latest_state)),
                    // No session at all: the range is empty.
                    None => Some((1, 0)),
                };
                owner = Some((sid.to_vec(), range));
            }
            // A damaged session record was reported with the sessions.
            if let Some((_, Some((oldest, latest)))) = owner
                && !(oldest..=latest).contains(&state)
            {
                let what = if oldest > latest {
                    "no session owns it".to_owned()
                } else {
                    format!("outside its session's range {oldest}..={latest}")
                };
                self.out.problem("states", state_key(sid, state), what);
            }
        }
        Ok(())
    }

    /// Every expiry entry points at a session whose record says it is filed there: so no
    /// session has two.
    fn expiry(&mut self) -> Step {
        let expiry = schema::read_expiry(self.txn)?;
        let sessions = schema::read_sessions(self.txn)?;
        for entry in expiry.iter()? {
            let (k, _) = entry?;
            let (indexed, sid) = k.value();
            self.out.expiry_entries += 1;
            let key = format!("{indexed}/{}", printable(sid));
            match sessions.get((sid, RECORD))? {
                None => self.out.problem("expiry", key, "points at no session"),
                Some(g) => {
                    if let Ok(rec) = decode_session(sid, g.value())
                        && rec.indexed != indexed
                    {
                        let what = format!("its session's record is filed at {}", rec.indexed);
                        self.out.problem("expiry", key, what);
                    }
                }
            }
        }
        Ok(())
    }

    /// Every tombstone decodes and retires an id no live session has.
    fn tombstones(&mut self) -> Step {
        let tombstones = schema::read_tombstones(self.txn)?;
        let sessions = schema::read_sessions(self.txn)?;
        for entry in tombstones.iter()? {
            let (k, v) = entry?;
            let sid = k.value();
            self.out.tombstones += 1;
            match codec::decode::<Tombstone>(v.value()) {
                Err(e) => self.out.problem("tombstones", printable(sid), describe(&e)),
                Ok(stone) => {
                    if stone.successor.as_deref().is_some_and(|s| !valid_id(s.as_bytes())) {
                        self.out.problem("tombstones", printable(sid), "successor is not an id");
                    }
                }
            }
            if sessions.get((sid, RECORD))?.is_some() {
                self.out.problem("tombstones", printable(sid), "the id also has a live session");
            }
        }
        Ok(())
    }

    /// Every user entry points at a session filed under that user.
    fn users(&mut self) -> Step {
        let users = schema::read_users(self.txn)?;
        let sessions = schema::read_sessions(self.txn)?;
        for entry in users.iter()? {
            let (k, _) = entry?;
            let (user, sid) = k.value();
            self.out.user_entries += 1;
            let key = format!("{}/{}", printable(user), printable(sid));
            match sessions.get((sid, RECORD))? {
                None => self.out.problem("users", key, "points at no session"),
                Some(g) => {
                    if let Ok(rec) = decode_session(sid, g.value())
                        && rec.user.as_deref() != Some(user)
                    {
                        self.out.problem("users", key, "its session is not filed under this user");
                    }
                }
            }
        }
        Ok(())
    }
}

impl Core {
    fn verify(&self) -> Result<Verified> {
        let txn = self.read()?;
        let mut walk = Walk { txn: &txn, out: Verified::default() };
        walk.table("meta", Walk::meta);
        walk.table("sessions", Walk::sessions);
        walk.table("states", Walk::states);
        walk.table("expiry", Walk::expiry);
        walk.table("tombstones", Walk::tombstones);
        walk.table("users", Walk::users);
        Ok(walk.out)
    }
}

impl Store {
    /// Walks every record of the file: checks each record's checksum and decoding, each key,
    /// and that the indexes agree with the sessions (every session has its states, exactly one
    /// expiry entry, filed no later than its removal time, and its user entry; every state,
    /// expiry entry and user entry belongs to a session that agrees; no tombstone shadows a
    /// live session). Reads one snapshot, so it can run
    /// beside live writers; its memory does not grow with the file.
    ///
    /// Problems are reported in [`Verified`], not as errors: a damaged table is reported and
    /// the walk goes on with the next (`examples/dump/main.rs --verify` prints them).
    ///
    /// # Errors
    /// Only when no read transaction can be begun: [`Error::Storage`](crate::error::Error::Storage),
    /// [`Error::NeedsReopen`](crate::error::Error::NeedsReopen), [`Error::Forked`](crate::error::Error::Forked).
    pub fn verify(&self) -> Result<Verified> {
        self.core.reading(|| self.core.verify())
    }
}
