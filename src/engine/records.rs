//! The records every engine stores, encoded by the checksummed codec (`format/codec.rs`): a
//! session's record, a state, and the tombstone of a retired id; and the rules about them that
//! need no storage (which refusal a tombstone gives, how long it lives). The redb engine keeps
//! them in its tables, the Redis engine in its keys (docs/redis.md); both call these.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::format::codec;
use crate::id::{SecureToken, SessionId};

/// One session: everything but its states.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub(crate) struct SessionRecord {
    /// Creation time, ms.
    pub(crate) created: u64,
    /// Last access time persisted, ms. Never moves backwards (except through `adjust_time`).
    pub(crate) last_access: u64,
    /// When the session stops being live, ms (`u64::MAX`: never).
    pub(crate) expires_at: u64,
    /// When the grace window ends and the sweep may remove the session, ms (`u64::MAX`: never).
    /// Stored, so that what one process may destroy does not depend on another's settings.
    pub(crate) remove_at: u64,
    /// The removal time the session's `expiry` entry is filed under: at most `remove_at` (the
    /// index is lazy, early and never late; `docs/format.md`). Written by the engine's index step (`put_session` in the redb engine).
    pub(crate) indexed: u64,
    /// Incremented by every save of data or state.
    pub(crate) version: u64,
    /// The newest state id.
    pub(crate) latest_state: u64,
    /// The oldest state id still kept; states `oldest_state..=latest_state` all exist.
    pub(crate) oldest_state: u64,
    /// SHA-256 of the secure token.
    pub(crate) token_hash: [u8; 32],
    /// Hash of the client fingerprint (web layer), if any.
    pub(crate) fingerprint: Option<[u8; 32]>,
    /// The user this session belongs to (web layer), if any.
    pub(crate) user: Option<Vec<u8>>,
    /// The session data.
    #[serde(with = "codec::bytes")]
    pub(crate) data: Vec<u8>,
    /// A deadline the caller chose (`Store::create_under`, `Store::put`), ms: the session
    /// expires then, whatever the idle timeout and absolute lifetime. Not part of the record's
    /// own encoding: [`encode_session`] appends it after the record, only when set (docs/format.md).
    #[serde(skip)]
    pub(crate) deadline: Option<u64>,
}

impl SessionRecord {
    /// A session created at `now`: version 1, state 0 only, no fingerprint, user or deadline.
    /// Its deadlines are set by [`Rules::with_deadlines`](super::rules::Rules::with_deadlines).
    pub(crate) fn fresh(now: u64, token_hash: [u8; 32], data: Vec<u8>) -> Self {
        SessionRecord {
            created: now,
            last_access: now,
            expires_at: 0,
            remove_at: 0,
            indexed: 0,
            version: 1,
            latest_state: 0,
            oldest_state: 0,
            token_hash,
            fingerprint: None,
            user: None,
            data,
            deadline: None,
        }
    }

    /// How many states the session keeps.
    pub(crate) fn state_count(&self) -> u64 {
        self.latest_state - self.oldest_state + 1
    }
}

/// Why a session id was retired.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retired {
    /// Moved to a new id (`regenerate`).
    Rotated,
    /// Ended on purpose (`revoke`: a log-out).
    Revoked,
}

/// What remains of a retired session id: enough to forward a client that missed the rotation,
/// and to tell it apart from an id never issued.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tombstone {
    pub(crate) reason: Retired,
    /// SHA-256 of the retired id's secure token.
    pub(crate) token_hash: [u8; 32],
    /// The new id, for a rotation.
    pub(crate) successor: Option<String>,
    /// The new token, sealed with the old one (see `rotate.rs`); empty unless rotated.
    #[serde(with = "codec::bytes")]
    pub(crate) sealed_token: Vec<u8>,
    /// Until when a client holding the old token is forwarded to the successor, ms.
    pub(crate) forward_until: u64,
    /// When the sweep removes the tombstone, ms: the retired session's own removal time.
    pub(crate) remove_at: u64,
}

/// One state snapshot.
#[derive(Serialize, Deserialize, Debug)]
pub(crate) struct StateRecord {
    #[serde(with = "codec::bytes")]
    pub(crate) data: Vec<u8>,
}


/// How long after a rotation (after its forwarding window) a request with the old id's token is
/// taken for one that raced the log-in (`moved_recently`): it was sent before the browser had
/// the new cookie. Longer than a request's own bound (5 s by default); short, since a browser
/// whose log-in response was lost gets `Busy` for that long.
pub(crate) const MOVE_RACE_WINDOW: u64 = 10 * 1000;

/// How long after a rotation (after the end of its forwarding window) the old id's token still
/// revokes the session it was rotated into: a log-out that raced the log-in ends the logged-in
/// session, while a pre-log-in cookie kept (or planted) for later cannot end it.
pub(crate) const LOGOUT_RACE_WINDOW: u64 = 60 * 1000;

/// The longest a tombstone is kept (after its forwarding window): a week. Past it, a retired id
/// reads as unknown rather than revoked, which leads clients to the same place (a fresh
/// session); sessions without expiry would otherwise keep their tombstones for ever.
pub(crate) const TOMBSTONE_LIFE: u64 = 7 * 24 * 3600 * 1000;

impl Tombstone {
    /// The tombstone a rotation of `rec` to `successor` at `now` leaves: forwarding for
    /// `forward_ms` with the new token `sealed` (not kept at all without forwarding).
    pub(crate) fn rotated(
        rec: &SessionRecord,
        successor: &SessionId,
        sealed: &[u8],
        now: u64,
        forward_ms: u64,
    ) -> Self {
        let forward_until = now.saturating_add(forward_ms);
        Tombstone {
            reason: Retired::Rotated,
            token_hash: rec.token_hash,
            successor: Some(successor.as_str().to_owned()),
            // No forwarding, no way to forward: the new token is not kept at all.
            sealed_token: if forward_ms == 0 { Vec::new() } else { sealed.to_vec() },
            forward_until,
            remove_at: rec.remove_at.min(now.saturating_add(TOMBSTONE_LIFE)).max(forward_until),
        }
    }

    /// The tombstone a revocation of `rec` at `now` leaves.
    pub(crate) fn revoked(rec: &SessionRecord, now: u64) -> Self {
        Tombstone {
            reason: Retired::Revoked,
            token_hash: rec.token_hash,
            successor: None,
            sealed_token: Vec::new(),
            forward_until: 0,
            remove_at: rec.remove_at.min(now.saturating_add(TOMBSTONE_LIFE)),
        }
    }

    /// This tombstone with its forwarding stopped (a revocation that walks a rotation chain);
    /// `None` if it forwards nothing already. The successor stays, so that revoking again
    /// follows the same chain.
    pub(crate) fn stopped(&self) -> Option<Self> {
        (self.reason == Retired::Rotated).then(|| Tombstone {
            reason: Retired::Revoked,
            token_hash: self.token_hash,
            successor: self.successor.clone(),
            sealed_token: Vec::new(),
            forward_until: self.forward_until,
            remove_at: self.remove_at,
        })
    }

    /// Why there is no session under this retired id for `token` at `now`: forwarded
    /// ([`Error::Rotated`]), retired ([`Error::Revoked`]), a wrong token ([`Error::Security`]),
    /// or past its removal time ([`Error::NotFound`], as the session itself would read).
    pub(crate) fn refusal(&self, token: &SecureToken, now: u64) -> Result<Error> {
        if now >= self.remove_at {
            return Ok(Error::NotFound); // as the session itself would read now; awaiting the sweep
        }
        if !token.matches(&self.token_hash) {
            return Ok(Error::Security);
        }
        // A rotation without forwarding keeps no sealed token: its old id forwards nobody, even a
        // process whose clock reads a little behind the rotating one's (`now < forward_until`).
        if let (Retired::Rotated, Some(successor)) = (self.reason, &self.successor)
            && now < self.forward_until
            && !self.sealed_token.is_empty()
        {
            let successor = SessionId::parse(successor)?;
            let token = token.unseal(&self.sealed_token)?;
            return Ok(Error::Rotated { successor, token });
        }
        Ok(Error::Revoked)
    }

    /// The successor of a rotation less than [`MOVE_RACE_WINDOW`] ago (after its forwarding
    /// window), if `token` is the retired id's: a request that carries it raced that log-in.
    pub(crate) fn moved_to(&self, token: &SecureToken, now: u64) -> Option<&str> {
        let recent = self.reason == Retired::Rotated
            && now < self.forward_until.saturating_add(MOVE_RACE_WINDOW)
            && token.matches(&self.token_hash);
        self.successor.as_deref().filter(|_| recent)
    }

    /// Whether a log-out with this retired id's token still reaches the chain at `now`: within
    /// [`LOGOUT_RACE_WINDOW`] after the rotation's forwarding window.
    pub(crate) fn logout_reaches(&self, now: u64) -> bool {
        now < self.forward_until.saturating_add(LOGOUT_RACE_WINDOW)
    }
}

/// Encodes a session record: the record, followed by its deadline when one is set.
pub(crate) fn encode_session(rec: &SessionRecord) -> Result<Vec<u8>> {
    match rec.deadline {
        None => codec::encode(rec),
        Some(deadline) => codec::encode(&(rec, deadline)),
    }
    .map_err(|e| encode_err(&e))
}

/// Encodes a tombstone or a state record.
pub(crate) fn encode_record<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    codec::encode(value).map_err(|e| encode_err(&e))
}

fn encode_err(e: &codec::CodecError) -> Error {
    Error::InvalidInput(format!("record does not encode: {e:?}"))
}

/// Decodes and sanity-checks a session record: besides the codec's checks, the counters must
/// leave room to grow, so that no later arithmetic on them can overflow. `None`: damaged.
pub(crate) fn decode_session_bytes(bytes: &[u8]) -> Option<SessionRecord> {
    let rec = match codec::decode::<SessionRecord>(bytes) {
        Ok(rec) => rec,
        // A record with a deadline is the record followed by the deadline (`encode_session`).
        Err(codec::CodecError::TrailingBytes) => {
            let (rec, deadline): (SessionRecord, u64) = codec::decode(bytes).ok()?;
            SessionRecord { deadline: Some(deadline), ..rec }
        }
        Err(_) => return None,
    };
    let sane =
        rec.oldest_state <= rec.latest_state && rec.latest_state < u64::MAX && rec.version < u64::MAX;
    sane.then_some(rec)
}
