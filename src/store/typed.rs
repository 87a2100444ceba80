//! Typed convenience: serde values in and out of the byte-level API.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::engine::Fetched;
use crate::error::{Error, Result};
use crate::format::codec;

/// Encodes a serde value as bytes for [`Store::create`](crate::Store::create) or
/// [`Save`](crate::Save).
///
/// # Errors
/// [`Error::Serde`] if the value cannot be serialised (a map with non-string keys is fine; a
/// value over 64 MiB is not).
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    codec::to_payload(value).map_err(|e| Error::Serde { reason: format!("{e:?}") })
}

/// Decodes bytes written by [`encode`].
///
/// # Errors
/// [`Error::Serde`] if the bytes are not an encoding of `T` (for example, data written with
/// another type).
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    codec::from_payload(bytes).map_err(|e| Error::Serde { reason: format!("{e:?}") })
}

impl Fetched {
    /// The session data decoded as `T`.
    ///
    /// # Errors
    /// As [`decode`].
    pub fn session<T: DeserializeOwned>(&self) -> Result<T> {
        decode(&self.session_data)
    }

    /// The state data decoded as `T`.
    ///
    /// # Errors
    /// As [`decode`].
    pub fn state<T: DeserializeOwned>(&self) -> Result<T> {
        decode(&self.state_data)
    }
}
