//! The names of the engine's keys. Every key of one session carries the hash tag `{sid}`, so
//! that a Cluster keeps them in one slot and one script may touch them all; a user's index and
//! the cap index live in slots of their own (docs/redis.md, "Keys").

use std::fmt::Write;

use crate::error::{Error, Result};

/// The key names under one prefix.
#[derive(Debug, Clone)]
pub(super) struct Keys {
    prefix: String,
}

impl Keys {
    /// Key names under `prefix`, which must not hold a brace (it would change the hash tag).
    pub(super) fn new(prefix: &str) -> Result<Self> {
        if prefix.contains(['{', '}']) {
            return Err(Error::InvalidInput(format!(
                "Redis key prefix {prefix:?} holds a brace, which would change the keys' Cluster \
                 hash tag: choose a prefix without `{{` or `}}`"
            )));
        }
        Ok(Self { prefix: prefix.to_owned() })
    }

    /// The session's hash: `r` record, `g` generation, `l` latest state, `s:<n>` states.
    pub(super) fn session(&self, sid: &str) -> String {
        format!("{}:{{{sid}}}", self.prefix)
    }

    /// The tombstone of a retired id.
    pub(super) fn tombstone(&self, sid: &str) -> String {
        format!("{}:{{{sid}}}:t", self.prefix)
    }

    /// The session lock.
    pub(super) fn lock(&self, sid: &str) -> String {
        format!("{}:{{{sid}}}:lock", self.prefix)
    }

    /// A user's index: a sorted set of session ids, scored by their removal time when filed.
    pub(super) fn user(&self, user: &[u8]) -> String {
        let mut key = format!("{}:u:{{", self.prefix);
        for b in user {
            let _ = write!(key, "{b:02x}");
        }
        key.push('}');
        key
    }

    /// The cap index (only with `max_sessions`): session ids scored by their removal time,
    /// early and never late.
    pub(super) fn cap(&self) -> String {
        format!("{}:x", self.prefix)
    }
}
