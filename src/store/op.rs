//! Write operations as data: each request write (create, save, touch, delete, rotate,
//! revoke...) is a value of its own type, which owns its arguments, serializes (so that
//! another process could commit it), and names the type of its result ([`WriteOp`]). The
//! operations live next to the code that uses them, one file per concern; a new one needs
//! nothing here nor in the group committer.
//!
//! [`Core::submit`] hands an operation to the group committer (`commit.rs`) as a type-erased
//! job, a [`Slot`] holding the operation and its result, and returns that result, typed.

use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::commit::{Job, Pending, lost};
use super::outcome;
use super::shared::Core;
use crate::error::{Error, Result};
use crate::format::codec;
use crate::format::schema::WriteTables;
use crate::id::SecureToken;

/// A write operation: run by the group committer inside a write transaction shared with other
/// operations.
///
/// `apply` may run more than once (after a transaction abandoned because another operation
/// failed part-way), so it must not consume the operation's data. It runs inside the
/// transaction: no caller code (a merge function, say) belongs in it.
pub(crate) trait WriteOp: Serialize + DeserializeOwned + Send + 'static {
    /// What the operation returns once its transaction committed.
    type Output: Serialize + DeserializeOwned + Send + 'static;

    /// Its name in a shared commit (`share.rs`), where another process may run it: `None`
    /// keeps it in this process. A name is listed in `share.rs`'s registry, which turns the
    /// bytes back into the operation.
    const KIND: Option<&'static str> = None;

    /// Runs the operation in `tables`. `Ok(Err(e))`: refused before writing anything (see
    /// `refuse_unless!`), the other operations of the batch go on; `Err(e)`: failed part-way,
    /// the transaction is abandoned and the others run again.
    fn apply(&mut self, core: &Core, tables: &mut WriteTables<'_>) -> Result<Result<Self::Output>>;
}

/// An operation queued in the group committer, with its result once it ran.
pub(crate) struct Slot<O: WriteOp>(Mutex<Filled<O>>);

/// The inside of a [`Slot`].
struct Filled<O: WriteOp> {
    op: O,
    /// The last run's result, or the error of the batch; final once the batch is over.
    result: Option<Result<O::Output>>,
}

impl<O: WriteOp> Pending<Core> for Slot<O> {
    fn apply(&self, core: &Core, tables: &mut WriteTables<'_>) -> Result<()> {
        // Only the leader running the batch takes this lock; a panic inside `apply` leaves a
        // result that `fail` then replaces.
        let mut slot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let Filled { op, result } = &mut *slot;
        *result = Some(op.apply(core, tables)?);
        Ok(())
    }

    fn fail(&self, error: Error) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).result = Some(Err(error));
    }

    fn encode_op(&self) -> Option<(&'static str, Vec<u8>)> {
        let kind = O::KIND?;
        let slot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        Some((kind, codec::to_payload(&slot.op).ok()?))
    }

    fn outcome(&self, secret: &SecureToken) -> Option<Vec<u8>> {
        let slot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        outcome::encode(slot.result.as_ref()?, secret)
    }

    fn set_outcome(&self, bytes: &[u8], secret: &SecureToken) -> bool {
        let Some(result) = outcome::decode::<O::Output>(bytes, secret) else {
            return false;
        };
        self.0.lock().unwrap_or_else(PoisonError::into_inner).result = Some(result);
        true
    }
}

impl<O: WriteOp> Slot<O> {
    /// A job of the operation another process encoded ([`Pending::encode_op`]), or `None` if
    /// the bytes are not one.
    pub(crate) fn decoded(bytes: &[u8]) -> Option<Job<Core>> {
        let op: O = codec::from_payload(bytes).ok()?;
        Some(Arc::new(Slot(Mutex::new(Filled { op, result: None }))))
    }
}

impl Core {
    /// Runs a request write through the group committer, and returns its result once its
    /// transaction committed (or failed).
    pub(crate) fn submit<O: WriteOp>(&self, op: O) -> Result<O::Output> {
        self.rw()?; // refuse a forked child or a read-only store before touching the queue
        // Only a store that shares commits runs other processes' writes: the others skip the
        // registry's lock on every write.
        if let (Some(kind), Some(_)) = (O::KIND, &self.share) {
            self.committer.register(kind, Slot::<O>::decoded);
        }
        let slot = Arc::new(Slot(Mutex::new(Filled { op, result: None })));
        self.committer.submit(self, Arc::clone(&slot) as Arc<dyn Pending<Core>>);
        let result = slot.0.lock().unwrap_or_else(PoisonError::into_inner).result.take();
        self.watch(result.unwrap_or_else(|| Err(lost())))
    }
}

/// Serde for the ids and tokens inside operations and their results, as their text
/// (`#[serde(with = "text")]`); reading one back checks it as `SessionId::parse` does.
pub(crate) mod text {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::error::Result;
    use crate::id::{SecureToken, SessionId};

    /// A value kept as its text.
    pub(crate) trait Text: Sized {
        /// The text.
        fn text(&self) -> &str;
        /// The value of `text`, checked.
        fn from_text(text: &str) -> Result<Self>;
    }

    impl Text for SessionId {
        fn text(&self) -> &str {
            self.as_str()
        }
        fn from_text(text: &str) -> Result<Self> {
            SessionId::parse(text)
        }
    }

    impl Text for SecureToken {
        fn text(&self) -> &str {
            self.as_str()
        }
        fn from_text(text: &str) -> Result<Self> {
            SecureToken::parse(text)
        }
    }

    pub(crate) fn serialize<T: Text, S: Serializer>(
        value: &T,
        s: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(value.text())
    }

    pub(crate) fn deserialize<'de, T: Text, D: Deserializer<'de>>(
        d: D,
    ) -> std::result::Result<T, D::Error> {
        let text = String::deserialize(d)?;
        T::from_text(&text).map_err(D::Error::custom)
    }
}

/// `op` after a trip through its serialized form, as another process would receive it.
#[cfg(test)]
pub(crate) fn through_bytes<T: Serialize + DeserializeOwned>(op: &T) -> T {
    let bytes = serde_json::to_vec(op).expect("an operation serializes");
    serde_json::from_slice(&bytes).expect("an operation deserializes")
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::{WriteOp, text, through_bytes};
    use crate::error::{Error, Result};
    use crate::format::schema::WriteTables;
    use crate::id::SecureToken;
    use crate::store::handle::Store;
    use crate::store::shared::Core;

    /// An operation defined here, known to no other file: how many sessions there are.
    #[derive(Serialize, Deserialize)]
    struct Count;

    impl WriteOp for Count {
        type Output = u64;
        fn apply(&mut self, _: &Core, t: &mut WriteTables<'_>) -> Result<Result<u64>> {
            use redb::ReadableTableMetadata;
            Ok(Ok(t.expiry.len()?))
        }
    }

    /// Refuses, or panics, as told.
    #[derive(Serialize, Deserialize)]
    struct Fail {
        panic: bool,
    }

    impl WriteOp for Fail {
        type Output = String;
        fn apply(&mut self, _: &Core, _: &mut WriteTables<'_>) -> Result<Result<String>> {
            assert!(!self.panic, "told to panic");
            Ok(Err(Error::Conflict { expected: 1, found: 2 }))
        }
    }

    #[test]
    fn any_operation_returns_its_own_typed_result() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let store = Store::open(dir.path().join("op.redb"))?;
        store.create(b"", b"")?;
        store.create(b"", b"")?;
        assert_eq!(store.core.submit(through_bytes(&Count))?, 2);
        let refused = store.core.submit(Fail { panic: false });
        assert!(matches!(refused, Err(Error::Conflict { expected: 1, found: 2 })), "{refused:?}");
        let panicked = store.core.submit(Fail { panic: true });
        assert!(
            matches!(&panicked, Err(Error::Panicked { message, .. }) if message.contains("told"))
        );
        assert_eq!(store.core.submit(Count)?, 2, "the store goes on");
        Ok(())
    }

    #[derive(Debug, Serialize, Deserialize)]
    struct Token(#[serde(with = "text")] SecureToken);

    #[test]
    fn tokens_travel_as_their_text_and_are_checked_on_arrival() -> Result<()> {
        let token = SecureToken::parse("a-token")?;
        let json = serde_json::to_string(&Token(token.clone())).expect("serializes");
        assert_eq!(json, r#""a-token""#);
        assert_eq!(through_bytes(&Token(token.clone())).0, token);
        assert!(serde_json::from_str::<Token>(r#""a token""#).is_err());
        Ok(())
    }
}
