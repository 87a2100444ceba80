//! What a write operation returned, as bytes another process can read: how a process that
//! committed another's write (a shared commit, `share.rs`) hands back its result.
//!
//! An outcome is the operation's output, or a refusal decided before it wrote anything (a
//! version conflict, a wrong token, an expired session...). Any other error means the write did
//! not happen here, and no outcome is recorded: its owner runs it again itself.
//!
//! A token never travels in the clear: the one refusal that carries one ([`Error::Rotated`],
//! the successor's token) has it sealed with a secret that only the owner of the write knows
//! ([`SecureToken::seal`]), so the `applied` table holds no usable token, like the rest of
//! the file.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::format::codec;
use crate::id::{SecureToken, SessionId};

/// An operation's result, as recorded.
#[derive(Debug, Serialize, Deserialize)]
enum Outcome {
    /// The output, a bare payload of its own type.
    Done(#[serde(with = "codec::bytes")] Vec<u8>),
    /// Refused before anything was written.
    Refused(Refusal),
}

/// The errors that are refusals: decided before an operation wrote anything.
#[derive(Debug, Serialize, Deserialize)]
enum Refusal {
    NotFound,
    Expired(#[serde(with = "codec::bytes")] Vec<u8>),
    StateNotFound {
        requested: u64,
        latest: u64,
    },
    StateEvicted {
        requested: u64,
        oldest: u64,
    },
    Conflict {
        expected: u64,
        found: u64,
    },
    Security,
    /// The successor id, and its token sealed with the owner's secret.
    Rotated {
        successor: String,
        sealed: Vec<u8>,
    },
    Revoked,
    MaxSessionsExceeded {
        max: u64,
    },
    GenerateId {
        reason: String,
    },
    InvalidInput(String),
    IdTaken,
}

impl Refusal {
    /// The refusal `e` is, or `None` for an error that is not one.
    fn of(e: &Error, secret: &SecureToken) -> Option<Self> {
        Some(match e {
            Error::NotFound => Self::NotFound,
            Error::Expired { data } => Self::Expired(data.clone()),
            Error::StateNotFound { requested, latest } => {
                Self::StateNotFound { requested: *requested, latest: *latest }
            }
            Error::StateEvicted { requested, oldest } => {
                Self::StateEvicted { requested: *requested, oldest: *oldest }
            }
            Error::Conflict { expected, found } => {
                Self::Conflict { expected: *expected, found: *found }
            }
            Error::Security => Self::Security,
            Error::Rotated { successor, token } => Self::Rotated {
                successor: successor.as_str().to_owned(),
                sealed: secret.seal(token),
            },
            Error::Revoked => Self::Revoked,
            Error::MaxSessionsExceeded { max } => Self::MaxSessionsExceeded { max: *max },
            Error::GenerateId { reason } => Self::GenerateId { reason: reason.clone() },
            Error::InvalidInput(m) => Self::InvalidInput(m.clone()),
            Error::IdTaken => Self::IdTaken,
            _ => return None,
        })
    }

    fn into_error(self, secret: &SecureToken) -> Result<Error> {
        Ok(match self {
            Self::NotFound => Error::NotFound,
            Self::Expired(data) => Error::Expired { data },
            Self::StateNotFound { requested, latest } => Error::StateNotFound { requested, latest },
            Self::StateEvicted { requested, oldest } => Error::StateEvicted { requested, oldest },
            Self::Conflict { expected, found } => Error::Conflict { expected, found },
            Self::Security => Error::Security,
            Self::Rotated { successor, sealed } => Error::Rotated {
                successor: SessionId::parse(&successor)?,
                token: secret.unseal(&sealed)?,
            },
            Self::Revoked => Error::Revoked,
            Self::MaxSessionsExceeded { max } => Error::MaxSessionsExceeded { max },
            Self::GenerateId { reason } => Error::GenerateId { reason },
            Self::InvalidInput(m) => Error::InvalidInput(m),
            Self::IdTaken => Error::IdTaken,
        })
    }
}

/// `result` as bytes to record, or `None` if it is an error that is not a refusal (the write
/// did not happen: nothing is recorded).
pub(crate) fn encode<T: Serialize>(result: &Result<T>, secret: &SecureToken) -> Option<Vec<u8>> {
    let outcome = match result {
        Ok(value) => Outcome::Done(codec::to_payload(value).ok()?),
        Err(e) => Outcome::Refused(Refusal::of(e, secret)?),
    };
    codec::encode(&outcome).ok()
}

/// The result recorded in `bytes`, or `None` if they do not decode (a damaged record).
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8], secret: &SecureToken) -> Option<Result<T>> {
    match codec::decode::<Outcome>(bytes).ok()? {
        Outcome::Done(payload) => codec::from_payload(&payload).ok().map(Ok),
        Outcome::Refused(refusal) => refusal.into_error(secret).ok().map(Err),
    }
}

#[cfg(test)]
mod tests {
    use super::{decode, encode};
    use crate::error::{Error, Result};
    use crate::id::{SecureToken, SessionId};

    #[test]
    fn outputs_and_refusals_come_back_as_they_were() {
        let secret = SecureToken::generate().unwrap();
        let ok: Result<(u64, String)> = Ok((7, "x".into()));
        let bytes = encode(&ok, &secret).unwrap();
        assert_eq!(decode::<(u64, String)>(&bytes, &secret).unwrap().unwrap(), (7, "x".into()));
        let conflict: Result<u64> = Err(Error::Conflict { expected: 1, found: 2 });
        let bytes = encode(&conflict, &secret).unwrap();
        let back = decode::<u64>(&bytes, &secret).unwrap();
        assert!(matches!(back, Err(Error::Conflict { expected: 1, found: 2 })), "{back:?}");
    }

    #[test]
    fn a_successor_token_is_recorded_sealed_and_opens_only_with_the_owners_secret() {
        let secret = SecureToken::generate().unwrap();
        let token = SecureToken::generate().unwrap();
        let successor = SessionId::parse("abcdefghijklmnopqrstuv").unwrap();
        let rotated: Result<()> =
            Err(Error::Rotated { successor: successor.clone(), token: token.clone() });
        let bytes = encode(&rotated, &secret).unwrap();
        let text = token.as_str().as_bytes();
        assert!(!bytes.windows(text.len()).any(|w| w == text), "the token is not in the record");
        match decode::<()>(&bytes, &secret).unwrap() {
            Err(Error::Rotated { successor: s, token: t }) => {
                assert_eq!((&s, &t), (&successor, &token));
            }
            other => panic!("{other:?}"),
        }
        let stranger = SecureToken::generate().unwrap();
        let opened = decode::<()>(&bytes, &stranger);
        assert!(
            !matches!(opened, Some(Err(Error::Rotated { token: ref t, .. })) if *t == token),
            "another secret does not open the token"
        );
    }

    #[test]
    fn errors_that_are_not_refusals_are_not_recorded_and_damage_reads_as_none() {
        let secret = SecureToken::generate().unwrap();
        let io: Result<u64> = Err(Error::NeedsReopen);
        assert!(encode(&io, &secret).is_none());
        let mut bytes = encode(&Ok::<u64, Error>(3), &secret).unwrap();
        *bytes.last_mut().unwrap() ^= 1;
        assert!(decode::<u64>(&bytes, &secret).is_none());
    }
}
