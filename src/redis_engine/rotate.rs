//! Retiring ids on Redis: rotation (two steps, two slots in a Cluster: the successor is
//! created, then the old id retired by a compare-and-set on its generation; the successor is
//! deleted if the second step fails), revocation along rotation chains one link (one slot) at
//! a time, log-outs with the clients' cookies, and `moved_recently`.

use std::time::Duration;

use super::engine::RedisEngine;
use super::record::{MAX_RETRIES, Raw, Want, contended, decode_record, decode_tombstone};
use super::scripts;
use crate::engine::Created;
use crate::engine::Named;
use crate::engine::records::{SessionRecord, Tombstone, encode_record};
use crate::error::{Error, Result};
use crate::id::{SecureToken, SessionId, constant_time_eq, fingerprint_hash};

/// The most links of a rotation chain followed. Ids are never reused, so a chain has no cycle;
/// the bound only guards against damaged values.
const MAX_CHAIN: usize = 10_000;

/// What a log-out with a client's cookie does to one id.
enum Hold {
    /// A wrong token, a session bound to another client, or a damaged value: nothing.
    Refused,
    /// Revoke the id and the chain it was rotated into.
    Revoke,
    /// Nothing to do: unknown here, or retired before the log-out race window.
    Settled,
}

impl RedisEngine {
    /// As [`Store::regenerate`](crate::Store::regenerate).
    pub(super) fn regenerate(
        &self,
        id: &SessionId,
        token: &SecureToken,
        forward_for: Duration,
    ) -> Result<Created> {
        let new_token = SecureToken::generate()?;
        let sealed = token.seal(&new_token);
        let forward_ms = u64::try_from(forward_for.as_millis()).unwrap_or(u64::MAX);
        let sid = id.as_str();
        for _ in 0..MAX_RETRIES {
            let now = self.now();
            let live = self.read_admitted(id, token, Want::All, now)?;
            let rec = SessionRecord { token_hash: new_token.hash(), ..live.rec.clone() };
            // Step 1, the successor's slot.
            let new_id = self.create_successor(&rec, &live.states, now)?;
            // Step 2, the old id's slot: only if nothing was written since the read.
            let stone = Tombstone::rotated(&live.rec, &new_id, &sealed, now, forward_ms);
            if !self.retire(sid, &live.g, &stone, now)? {
                self.delete_session(new_id.as_str(), None)?;
                continue;
            }
            self.filed(new_id.as_str(), &rec, now)?;
            self.unfile(sid, live.rec.user.as_deref())?;
            return Ok(Created {
                id: new_id,
                token: new_token,
                state_id: rec.latest_state,
                version: rec.version,
            });
        }
        Err(contended())
    }

    /// Creates `rec` with `states` under a new random id, not yet filed in any index.
    fn create_successor(
        &self,
        rec: &SessionRecord,
        states: &[(u64, Vec<u8>)],
        now: u64,
    ) -> Result<SessionId> {
        for _ in 0..8 {
            let id = self.cfg.id_spec.generate()?;
            if self.create_raw(id.as_str(), rec, states, b"", now)? {
                return Ok(id);
            }
        }
        Err(Error::GenerateId { reason: "8 random ids were all in use: use longer ids".into() })
    }

    /// As [`Store::revoke`](crate::Store::revoke).
    pub(super) fn revoke(&self, id: &SessionId) -> Result<bool> {
        self.revoke_chain(id.as_str(), self.now())
    }

    /// Revokes `sid` and the chain of ids it was rotated into, one link at a time: each
    /// rotation tombstone on the way stops forwarding (keeping its successor), and the live
    /// session at the end is retired. Whether a live session was revoked.
    pub(super) fn revoke_chain(&self, sid: &str, now: u64) -> Result<bool> {
        let mut cur = sid.to_owned();
        let mut tries = 0;
        for _ in 0..MAX_CHAIN {
            if tries >= MAX_RETRIES {
                return Err(contended());
            }
            match self.read_raw(&cur, Want::Nothing)? {
                Raw::Missing => return Ok(false),
                Raw::Live { r, g, .. } => {
                    let Ok(rec) = decode_record(&cur, &r) else {
                        // Damaged: removed, with no tombstone (its token hash is unknown).
                        self.delete_session(&cur, None)?;
                        self.unfile_cap(&cur)?;
                        return Ok(true);
                    };
                    if self.retire(&cur, &g, &Tombstone::revoked(&rec, now), now)? {
                        self.unfile(&cur, rec.user.as_deref())?;
                        return Ok(true);
                    }
                    tries += 1; // written meanwhile: read again
                }
                Raw::Retired(bytes) => {
                    // A damaged tombstone ends the walk (its successor is unknown).
                    let Ok(stone) = decode_tombstone(&cur, &bytes) else { return Ok(false) };
                    if let Some(stopped) = stone.stopped() {
                        let tomb = self.keys.tombstone(&cur);
                        let new = encode_record(&stopped)?;
                        let mut inv = scripts::RESTONE.key(&tomb);
                        inv.arg(bytes.as_slice()).arg(new);
                        if self.pool.run(|c| inv.invoke::<i64>(c))? != 1 {
                            tries += 1;
                            continue;
                        }
                    }
                    match stone.successor {
                        Some(next) => cur = next,
                        None => return Ok(false),
                    }
                }
            }
        }
        Ok(false)
    }

    /// The id at the end of the rotation chain from `sid`: the live session it was rotated
    /// into (`sid` itself if live), or `None` if the chain ends without one.
    fn chain_end(&self, sid: &str) -> Result<Option<String>> {
        let mut cur = sid.to_owned();
        for _ in 0..MAX_CHAIN {
            match self.read_raw(&cur, Want::Nothing)? {
                Raw::Live { .. } => return Ok(Some(cur)),
                Raw::Missing => return Ok(None),
                Raw::Retired(bytes) => {
                    match decode_tombstone(&cur, &bytes).ok().and_then(|s| s.successor) {
                        Some(next) => cur = next,
                        None => return Ok(None),
                    }
                }
            }
        }
        Ok(None)
    }

    /// Whether `token` opens `sid` (its session or, retired, its tombstone) at `now`, and
    /// whether the live session its chain ends in was created with `fingerprint` (or none).
    fn holds(
        &self,
        sid: &str,
        token: &SecureToken,
        fingerprint: Option<&[u8; 32]>,
        now: u64,
    ) -> Result<Hold> {
        let (hash, reaches) = match self.read_raw(sid, Want::Nothing)? {
            Raw::Missing => return Ok(Hold::Settled),
            Raw::Live { r, .. } => match decode_record(sid, &r) {
                Ok(rec) => (rec.token_hash, true),
                Err(_) => return Ok(Hold::Refused),
            },
            Raw::Retired(bytes) => match decode_tombstone(sid, &bytes) {
                Ok(stone) => (stone.token_hash, stone.logout_reaches(now)),
                Err(_) => return Ok(Hold::Refused),
            },
        };
        if !token.matches(&hash) {
            return Ok(Hold::Refused);
        }
        if !reaches {
            return Ok(Hold::Settled);
        }
        let Some(wanted) = fingerprint else { return Ok(Hold::Revoke) };
        let Some(end) = self.chain_end(sid)? else { return Ok(Hold::Revoke) };
        Ok(match self.read_raw(&end, Want::Nothing)? {
            Raw::Live { r, .. } => match decode_record(&end, &r) {
                Ok(rec) if rec.fingerprint.is_none_or(|fp| constant_time_eq(wanted, &fp)) => {
                    Hold::Revoke
                }
                _ => Hold::Refused,
            },
            _ => Hold::Revoke,
        })
    }

    /// As [`Engine::revoke_named`](crate::Engine::revoke_named): every pair is checked before
    /// any is revoked, so a call whose pairs are all refused writes nothing.
    pub(super) fn revoke_named(&self, named: Vec<Named>) -> Result<u64> {
        let now = self.now();
        let mut to_revoke = Vec::new();
        let mut refused = 0;
        for (id, token, fp) in &named {
            let fp = fp.as_deref().map(fingerprint_hash);
            match self.holds(id.as_str(), token, fp.as_ref(), now)? {
                Hold::Refused => refused += 1,
                Hold::Settled => {}
                Hold::Revoke => to_revoke.push(id),
            }
        }
        if refused > 0 && refused == named.len() {
            return Err(Error::Security);
        }
        let mut revoked = 0;
        for id in to_revoke {
            revoked += u64::from(self.revoke_chain(id.as_str(), now)?);
        }
        Ok(revoked)
    }

    /// As [`Engine::moved_recently`](crate::Engine::moved_recently).
    pub(super) fn moved_recently(&self, id: &SessionId, token: &SecureToken) -> Result<bool> {
        let now = self.now();
        let Raw::Retired(bytes) = self.read_raw(id.as_str(), Want::Nothing)? else {
            return Ok(false);
        };
        let Ok(stone) = decode_tombstone(id.as_str(), &bytes) else { return Ok(false) };
        let Some(next) = stone.moved_to(token, now) else { return Ok(false) };
        Ok(self.chain_end(next)?.is_some())
    }
}
