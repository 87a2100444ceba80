//! The two values of a session's name, [`SessionId`] and [`SecureToken`], on their own so that
//! [`Error`](crate::Error) can carry them without importing what checks and makes them
//! (`id/mod.rs`, which returns `Error`s).

use std::fmt;

/// A session id: text of 1 to [`MAX_ID_LEN`](super::MAX_ID_LEN) characters from `A-Z a-z 0-9 - _ . ~`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub(super) String);

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({})", self.0)
    }
}

impl AsRef<str> for SessionId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// A session's secure token (Nagare's secure id): returned once at creation, stored only as a
/// SHA-256 hash, required by every operation that reads or changes the session's data.
#[derive(Clone, PartialEq, Eq)]
pub struct SecureToken(pub(super) String);

impl fmt::Debug for SecureToken {
    /// Never prints the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecureToken(..)")
    }
}
