//! Sessions by user: list them, and revoke them all ("log out everywhere").

use serde::{Deserialize, Serialize};

use super::handle::Store;
use super::op::WriteOp;
use super::rotate::revoke_in;
use super::shared::Core;
use crate::error::{Error, Result};
use crate::format::schema::{self, WriteTables};
use crate::id::SessionId;

/// The session ids filed under `user` in `users`, in id order.
fn ids_of(
    users: &impl redb::ReadableTable<(&'static [u8], &'static [u8]), ()>,
    user: &[u8],
) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    for entry in users.range((user, &[][..])..)? {
        let (key, _) = entry?;
        let (u, sid) = key.value();
        if u != user {
            break;
        }
        out.push(sid.to_vec());
    }
    Ok(out)
}

impl Store {
    /// The sessions filed under `user` ([`NewSession::user`](crate::NewSession::user),
    /// [`Save::user`](crate::Save::user)), whatever their status. Needs no token: for admin
    /// pages and "your other sessions" lists.
    ///
    /// # Errors
    /// [`Error::Corrupted`] for an id that is not valid text, [`Error::Storage`] from redb.
    pub fn user_sessions(&self, user: &[u8]) -> Result<Vec<SessionId>> {
        let ids = self.core.reading(|| ids_of(&schema::read_users(&*self.core.read()?)?, user))?;
        ids.into_iter()
            .map(|sid| {
                std::str::from_utf8(&sid).ok().and_then(|s| SessionId::parse(s).ok()).ok_or_else(
                    || Error::Corrupted { table: "users", key: super::record::printable(&sid) },
                )
            })
            .collect()
    }

    /// Log out everywhere: revokes every session filed under `user` in one write transaction
    /// (as [`Store::revoke`]: later uses of their ids are [`Error::Revoked`]). Returns how many
    /// were revoked.
    ///
    /// # Errors
    /// [`Error::Storage`] from redb, [`Error::InvalidInput`] on a read-only store.
    pub fn revoke_user(&self, user: &[u8]) -> Result<u64> {
        self.core.submit(RevokeUser { user: user.to_vec() })
    }
}

/// Log out everywhere ([`Store::revoke_user`]). Returns how many sessions were revoked.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct RevokeUser {
    user: Vec<u8>,
}

impl WriteOp for RevokeUser {
    type Output = u64;
    const KIND: Option<&'static str> = Some("revoke-user");

    fn apply(&mut self, c: &Core, t: &mut WriteTables<'_>) -> Result<Result<u64>> {
        let user = &self.user;
        let now = c.now();
        let mut revoked = 0;
        for sid in ids_of(&t.users, user)? {
            if revoke_in(t, &sid, now)? {
                revoked += 1;
            } else {
                t.users.remove((user.as_slice(), sid.as_slice()))?; // a stale entry
            }
        }
        Ok(Ok(revoked))
    }
}
