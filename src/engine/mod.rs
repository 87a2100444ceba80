//! The seam between the web layer and the session engines: the [`Engine`] trait
//! ([`api`]) and the values it speaks ([`values`]). `docs/engines.md` says what is on the trait
//! and why.

mod api;
mod values;

pub use api::{Engine, Named};
pub(crate) use values::UserChange;
pub use values::{CleanupReport, Created, Fetched, NewSession, Save, Stored};
