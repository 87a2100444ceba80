//! The web layer: what a CGI program or a web server calls per request.
//!
//! - [`SessionManager`]: `begin` a request from its [`ClientInfo`] (cookie, address, user
//!   agent, query string), read and change the session, `finish` it to store what changed and
//!   get the `Set-Cookie` value to send. Strict ids, lazy writes, no storage of empty sessions,
//!   rotation, log-out and cross-checks, with typed [`Outcome`]s. [`SessionManager::handle`]
//!   runs the application's request code between the two, again on contention, so that a
//!   request never fails because another request of its session got in between.
//! - Cookies (RFC 6265): [`parse_cookie_header`], [`get_cookie`], [`set_cookie`],
//!   [`revoke_cookie`], with [`CookieAttrs`].
//! - States and sessions in URLs and forms: [`state_in_url`], [`state_in_form`],
//!   [`state_from_query`], [`session_query`], [`session_from_query`].

mod client;
mod config;
mod cookie;
mod manager;
mod run;
#[cfg(feature = "tower-sessions")]
pub mod tower;
mod url;

pub use client::{ClientInfo, CrossCheck};
pub use config::{HijackPolicy, ManagerConfig, RunConfig};
pub use cookie::{
    CookieAttrs, MAX_COOKIE_HEADER_LEN, MAX_COOKIE_SCAN_LEN, MAX_COOKIES, SameSite, get_cookie,
    parse_cookie_header, revoke_cookie, set_cookie,
};
pub use manager::{Outcome, Request, SessionManager};
pub use run::Handled;
pub use url::{
    query_param, session_from_query, session_query, state_from_query, state_in_form, state_in_url,
};
