//! A tower-sessions store on top of [`Store`] (feature `tower-sessions`): swap the store of a
//! tower-sessions / axum service for one redb file shared by all its worker processes.
//!
//! ```
//! use sessiondb::{Store, web::tower::SessionDbStore};
//! use tower_sessions::{Expiry, SessionManagerLayer, cookie::time::Duration};
//! # let dir = tempfile::tempdir().unwrap();
//! # let path = dir.path().join("sessions.redb");
//!
//! let store = SessionDbStore::new(Store::open(path)?);
//! let layer = SessionManagerLayer::new(store)
//!     .with_expiry(Expiry::OnInactivity(Duration::minutes(30)));
//! // axum::Router::new().route(..).layer(layer)
//! # Ok::<_, sessiondb::Error>(())
//! ```
//!
//! How tower-sessions' model maps onto sessiondb's (`docs/tower.md` has the reasoning):
//! - **Ids.** The cookie carries tower-sessions' random 128-bit [`Id`]: it is the secret. The
//!   session is stored under a sessiondb id and secure token both *derived* from it by SHA-256
//!   under distinct labels ([`SessionDbStore::storage_id`] is the id), so the file holds neither the
//!   cookie value nor anything it can be computed from: a leaked file leaks no live session.
//! - **Expiry.** A record's `expiry_date` becomes the session's own deadline, kept to the
//!   millisecond and rounded down (a session may expire up to 1 ms early, never late). The
//!   store's idle timeout and absolute lifetime do not apply to these sessions; a load from the
//!   deadline on returns `None`. The store's grace period still delays their removal by the
//!   clean-up thread or [`ExpiredDeletion::delete_expired`].
//! - **Data.** The data map is stored as JSON in the session data (state 0 stays empty).
//!   `save` is a blind write, as tower-sessions' model has no versions; `delete` retires the
//!   id (a sessiondb revocation), so a concurrent request can never save it back to life.
//!
//! Every call runs the synchronous engine on Tokio's blocking pool
//! ([`tokio::task::spawn_blocking`]), so a durable commit never stalls the async workers. Calls
//! outside a Tokio runtime fail with an error.

use std::collections::HashMap;
use std::error::Error as _;
use std::sync::Arc;

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use time::{OffsetDateTime, PrimitiveDateTime};
use tower_sessions_core::session::{Id, Record};
use tower_sessions_core::session_store::{self, ExpiredDeletion, SessionStore};

use crate::engine::Engine;
use crate::error::Error;
use crate::id::{SecureToken, SessionId};
use crate::store::Store;

/// How many ids [`SessionStore::create`] tries before giving up; with 128 random bits a
/// second is already never needed outside tests.
const CREATE_ATTEMPTS: usize = 8;

/// A [`SessionStore`] (and [`ExpiredDeletion`]) keeping tower-sessions' sessions in a
/// [`Store`] (the default) or another [`Engine`]. Cheap to clone: clones share the engine.
#[derive(Debug)]
pub struct SessionDbStore<E: Engine = Store> {
    store: Arc<E>,
}

impl<E: Engine> Clone for SessionDbStore<E> {
    fn clone(&self) -> Self {
        Self { store: Arc::clone(&self.store) }
    }
}

impl<E: Engine + 'static> SessionDbStore<E> {
    /// A tower-sessions store on `store` (a [`Store`] or an `Arc<Store>` shared with other
    /// code, or another engine). Open one per process, as for every [`Store`].
    pub fn new(store: impl Into<Arc<E>>) -> Self {
        Self { store: store.into() }
    }

    /// The underlying engine, for the native API and admin tools.
    #[must_use]
    pub fn store(&self) -> &E {
        &self.store
    }

    /// Runs `f` on the store in Tokio's blocking pool.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&E) -> session_store::Result<T> + Send + 'static,
    ) -> session_store::Result<T> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|e| {
            session_store::Error::Backend(format!("sessiondb needs a Tokio runtime: {e}"))
        })?;
        let store = Arc::clone(&self.store);
        runtime.spawn_blocking(move || f(&store)).await.map_err(|e| {
            session_store::Error::Backend(format!("sessiondb task did not finish: {e}"))
        })?
    }
}

impl SessionDbStore {
    /// The sessiondb id the session of tower-sessions id `id` is stored under: `tw-` and 48 hex
    /// digits of a SHA-256 of the id. It cannot be turned back into `id`.
    ///
    /// # Errors
    /// None in practice: the text is always a valid [`SessionId`]; the check stays.
    pub fn storage_id(id: &Id) -> crate::error::Result<SessionId> {
        SessionId::parse(&format!("tw-{}", hex(&derive(b"id", id)[..24])))
    }
}

/// SHA-256 of `label` and the id's 16 bytes, under a label of its own.
fn derive(label: &[u8], id: &Id) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"sessiondb tower-sessions ");
    h.update(label);
    h.update(b"\0");
    h.update(id.0.to_le_bytes());
    h.finalize().into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        use std::fmt::Write as _;
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The storage id and secure token of tower-sessions id `id`.
fn keys(id: &Id) -> Result<(SessionId, SecureToken), Error> {
    let token = SecureToken::parse(&hex(&derive(b"token", id)))?;
    Ok((SessionDbStore::storage_id(id)?, token))
}

/// `expiry_date` in ms since the epoch, rounded down (so never late), clamped at 0.
fn deadline_of(expiry_date: OffsetDateTime) -> u64 {
    let ms = expiry_date.unix_timestamp_nanos().div_euclid(1_000_000);
    u64::try_from(ms.max(0)).unwrap_or(u64::MAX)
}

/// The date of a deadline in ms; past the range of [`OffsetDateTime`] (a deadline of
/// `u64::MAX` means never), the latest date it holds.
fn date_of(ms: u64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or_else(|_| PrimitiveDateTime::MAX.assume_utc())
}

/// A sessiondb error as tower-sessions reports it, with its causes.
fn store_error(e: &Error) -> session_store::Error {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    match e {
        Error::Corrupted { .. } => session_store::Error::Decode(message),
        _ => session_store::Error::Backend(message),
    }
}

type Data = HashMap<String, serde_json::Value>;

fn encode(data: &Data) -> session_store::Result<Vec<u8>> {
    serde_json::to_vec(data).map_err(|e| session_store::Error::Encode(e.to_string()))
}

fn decode(bytes: &[u8]) -> session_store::Result<Data> {
    serde_json::from_slice(bytes).map_err(|e| session_store::Error::Decode(e.to_string()))
}

#[async_trait]
impl<E: Engine + 'static> SessionStore for SessionDbStore<E> {
    /// Stores a new session, drawing a new [`Id`] for `record` while its id is taken (in use
    /// or retired, checked in the creating transaction).
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        let (data, deadline, first) =
            (encode(&record.data)?, deadline_of(record.expiry_date), record.id);
        record.id = self
            .run(move |store| {
                let mut id = first;
                for _ in 0..CREATE_ATTEMPTS {
                    let (key, token) = keys(&id).map_err(|e| store_error(&e))?;
                    match store.create_under(&key, &token, &data, Some(deadline)) {
                        Ok(_) => return Ok(id),
                        Err(Error::IdTaken) => id = Id::default(),
                        Err(e) => return Err(store_error(&e)),
                    }
                }
                Err(session_store::Error::Backend(format!(
                    "no unused session id after {CREATE_ATTEMPTS} attempts"
                )))
            })
            .await?;
        Ok(())
    }

    /// Writes the record's data and expiry date over the session's (a blind write), or
    /// creates the session if it is unknown or expired. A session deleted meanwhile (a log-out
    /// or `cycle_id` in another request) stays deleted: the save writes nothing.
    async fn save(&self, record: &Record) -> session_store::Result<()> {
        let (data, deadline, id) =
            (encode(&record.data)?, deadline_of(record.expiry_date), record.id);
        self.run(move |store| {
            let (key, token) = keys(&id).map_err(|e| store_error(&e))?;
            match store.put(&key, &token, &data, Some(deadline)) {
                Ok(_) | Err(Error::Revoked | Error::Rotated { .. }) => Ok(()),
                Err(e) => Err(store_error(&e)),
            }
        })
        .await
    }

    /// The session's record, or `None` if it is unknown, deleted or past its expiry date.
    async fn load(&self, session_id: &Id) -> session_store::Result<Option<Record>> {
        let id = *session_id;
        let loaded = self
            .run(move |store| {
                let (key, token) = keys(&id).map_err(|e| store_error(&e))?;
                match store.load(&key, &token) {
                    Ok(fetched) => Ok(Some((fetched.session_data, fetched.expires_at))),
                    Err(e) if e.is_refusal() => Ok(None),
                    Err(e) => Err(store_error(&e)),
                }
            })
            .await?;
        let Some((bytes, expires_at)) = loaded else {
            return Ok(None);
        };
        Ok(Some(Record { id, data: decode(&bytes)?, expiry_date: date_of(expires_at) }))
    }

    /// Deletes the session and retires its id.
    async fn delete(&self, session_id: &Id) -> session_store::Result<()> {
        let id = *session_id;
        self.run(move |store| {
            let key = SessionDbStore::storage_id(&id).map_err(|e| store_error(&e))?;
            store.revoke(&key).map_err(|e| store_error(&e))?;
            Ok(())
        })
        .await
    }
}

#[async_trait]
impl<E: Engine + 'static> ExpiredDeletion for SessionDbStore<E> {
    /// Removes the sessions past their expiry date and the store's grace period:
    /// [`Store::cleanup`], which the store's clean-up thread also runs on its own.
    async fn delete_expired(&self) -> session_store::Result<()> {
        self.run(|store| store.cleanup().map(|_| ()).map_err(|e| store_error(&e))).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_tokens_are_distinct_functions_of_the_id() -> crate::error::Result<()> {
        let (a, b) = (Id(1), Id(2));
        let (key_a, token_a) = keys(&a)?;
        assert_eq!(keys(&a)?, (key_a.clone(), token_a.clone()));
        assert_ne!(keys(&b)?.0, key_a);
        assert_ne!(keys(&b)?.1, token_a);
        assert!(key_a.as_str().starts_with("tw-") && key_a.as_str().len() == 51);
        assert_eq!(token_a.as_str().len(), 64);
        assert_ne!(&key_a.as_str()[3..], &token_a.as_str()[..48]);
        Ok(())
    }

    #[test]
    fn deadlines_round_down_to_the_millisecond_and_clamp() {
        let date = OffsetDateTime::from_unix_timestamp_nanos(1_500_999_999).unwrap();
        assert_eq!(deadline_of(date), 1_500);
        assert_eq!(
            date_of(1_500),
            OffsetDateTime::from_unix_timestamp_nanos(1_500_000_000).unwrap()
        );
        let before_epoch = OffsetDateTime::from_unix_timestamp(-5).unwrap();
        assert_eq!(deadline_of(before_epoch), 0);
        assert_eq!(date_of(u64::MAX), PrimitiveDateTime::MAX.assume_utc());
        assert!(deadline_of(PrimitiveDateTime::MAX.assume_utc()) < u64::MAX);
    }
}
