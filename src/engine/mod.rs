//! The seam between the web layer and the session engines: the [`Engine`] trait
//! ([`api`]) and the values it speaks ([`values`]); the records every engine stores
//! ([`records`]) and the rules of a session's life that need no storage ([`rules`]).
//! `docs/engines.md` says what is on the trait and why.

mod api;
pub(crate) mod records;
pub(crate) mod rules;
mod values;

pub use api::{Engine, Named};
pub use rules::SessionStatus;
pub(crate) use values::UserChange;
pub use values::{CleanupReport, Created, Fetched, NewSession, Save, Stored};
