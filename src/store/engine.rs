//! The redb engine behind the seam: [`Store`] implements [`Engine`] with its own methods
//! (`load` and `revoke_with_token` are the trait's defaults, which are what `Store`'s do).

use std::time::Duration;

use super::handle::Store;
use super::locking::SessionLock;
use crate::engine::CleanupReport;
use crate::engine::{Created, Fetched, NewSession};
use crate::engine::{Engine, Named};
use crate::engine::{Save, Stored};
use crate::error::Result;
use crate::id::{SecureToken, SessionId};

impl Engine for Store {
    type Lock<'a> = SessionLock<'a>;

    fn create_with(&self, new: NewSession<'_>) -> Result<Created> {
        Store::create_with(self, new)
    }

    fn create_under(
        &self,
        id: &SessionId,
        token: &SecureToken,
        session_data: &[u8],
        deadline: Option<u64>,
    ) -> Result<Created> {
        Store::create_under(self, id, token, session_data, deadline)
    }

    fn fetch_state(
        &self,
        id: &SessionId,
        token: &SecureToken,
        state: Option<u64>,
    ) -> Result<Fetched> {
        Store::fetch_state(self, id, token, state)
    }

    fn store_state(&self, id: &SessionId, token: &SecureToken, save: Save<'_>) -> Result<Stored> {
        Store::store_state(self, id, token, save)
    }

    fn put(
        &self,
        id: &SessionId,
        token: &SecureToken,
        session_data: &[u8],
        deadline: Option<u64>,
    ) -> Result<Stored> {
        Store::put(self, id, token, session_data, deadline)
    }

    fn touch(&self, id: &SessionId, token: &SecureToken) -> Result<()> {
        Store::touch(self, id, token)
    }

    fn regenerate(
        &self,
        id: &SessionId,
        token: &SecureToken,
        forward_for: Duration,
    ) -> Result<Created> {
        Store::regenerate(self, id, token, forward_for)
    }

    fn revoke(&self, id: &SessionId) -> Result<bool> {
        Store::revoke(self, id)
    }

    fn revoke_named(&self, named: Vec<Named>) -> Result<u64> {
        self.revoke_as(named)
    }

    fn revoke_user(&self, user: &[u8]) -> Result<u64> {
        Store::revoke_user(self, user)
    }

    fn user_sessions(&self, user: &[u8]) -> Result<Vec<SessionId>> {
        Store::user_sessions(self, user)
    }

    fn moved_recently(&self, id: &SessionId, token: &SecureToken) -> Result<bool> {
        Store::moved_recently(self, id, token)
    }

    fn lock(&self, id: &SessionId, max_wait: Duration) -> Result<SessionLock<'_>> {
        Store::lock(self, id, max_wait)
    }

    fn shares_lock(&self, a: &SessionId, b: &SessionId) -> bool {
        Store::shares_lock(self, a, b)
    }

    fn cleanup(&self) -> Result<CleanupReport> {
        Store::cleanup(self)
    }

    fn cleanup_if_due(&self) -> Result<Option<CleanupReport>> {
        Store::cleanup_if_due(self)
    }
}
