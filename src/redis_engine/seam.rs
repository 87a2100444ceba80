//! The Redis engine behind the seam: [`RedisEngine`] implements [`Engine`] with the
//! operations of the modules beside this one (`load` and `revoke_with_token` are the trait's
//! defaults).

use std::time::Duration;

use super::engine::RedisEngine;
use super::lock::RedisLock;
use crate::engine::{CleanupReport, Created, Engine, Fetched, Named, NewSession, Save, Stored};
use crate::error::Result;
use crate::id::{SecureToken, SessionId};

impl Engine for RedisEngine {
    type Lock<'a> = RedisLock<'a>;

    fn create_with(&self, new: NewSession<'_>) -> Result<Created> {
        RedisEngine::create_with(self, new)
    }

    fn create_under(
        &self,
        id: &SessionId,
        token: &SecureToken,
        session_data: &[u8],
        deadline: Option<u64>,
    ) -> Result<Created> {
        RedisEngine::create_under(self, id, token, session_data, deadline)
    }

    fn fetch_state(
        &self,
        id: &SessionId,
        token: &SecureToken,
        state: Option<u64>,
    ) -> Result<Fetched> {
        RedisEngine::fetch_state(self, id, token, state)
    }

    fn store_state(&self, id: &SessionId, token: &SecureToken, save: Save<'_>) -> Result<Stored> {
        RedisEngine::store_state(self, id, token, save)
    }

    fn put(
        &self,
        id: &SessionId,
        token: &SecureToken,
        session_data: &[u8],
        deadline: Option<u64>,
    ) -> Result<Stored> {
        RedisEngine::put(self, id, token, session_data, deadline)
    }

    fn touch(&self, id: &SessionId, token: &SecureToken) -> Result<()> {
        RedisEngine::touch(self, id, token)
    }

    fn regenerate(
        &self,
        id: &SessionId,
        token: &SecureToken,
        forward_for: Duration,
    ) -> Result<Created> {
        RedisEngine::regenerate(self, id, token, forward_for)
    }

    fn revoke(&self, id: &SessionId) -> Result<bool> {
        RedisEngine::revoke(self, id)
    }

    fn revoke_named(&self, named: Vec<Named>) -> Result<u64> {
        RedisEngine::revoke_named(self, &named)
    }

    fn revoke_user(&self, user: &[u8]) -> Result<u64> {
        RedisEngine::revoke_user(self, user)
    }

    fn user_sessions(&self, user: &[u8]) -> Result<Vec<SessionId>> {
        RedisEngine::user_sessions(self, user)
    }

    fn moved_recently(&self, id: &SessionId, token: &SecureToken) -> Result<bool> {
        RedisEngine::moved_recently(self, id, token)
    }

    fn lock(&self, id: &SessionId, max_wait: Duration) -> Result<RedisLock<'_>> {
        RedisEngine::lock(self, id, max_wait)
    }

    fn shares_lock(&self, a: &SessionId, b: &SessionId) -> bool {
        a == b
    }

    fn cleanup(&self) -> Result<CleanupReport> {
        RedisEngine::cleanup(self)
    }

    fn cleanup_if_due(&self) -> Result<Option<CleanupReport>> {
        RedisEngine::cleanup_if_due(self)
    }
}
