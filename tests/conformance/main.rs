//! The conformance suite: the behaviour every session engine ([`sessiondb::Engine`]) must
//! have, as one set of cases run on every engine under test. Expiry and grace, the states
//! history and its eviction, versions and `Conflict`, rotation and tombstones, revocation
//! chains, the users index, caps, wrong tokens, the tower adapter's calls, the session lock,
//! and the web layer's strict mode through [`SessionManager`](sessiondb::web::SessionManager).
//!
//! Each case is a generic function `fn case<S: Subject>(subject: &S) -> Result<(), Error>`
//! that opens an engine through the [`Subject`] and speaks to it only through the `Engine`
//! trait (and `SessionManager`, which is generic over it): nothing engine-specific, so that
//! whatever passes here passes for every engine. Time is a [`ManualClock`] the engine must
//! read as its clock; the cases move it by hand.
//!
//! # Adding an engine
//! 1. Implement [`Subject`] for a value that names the engine and its options (see [`Redb`]):
//!    `open` builds the engine with every field of [`Settings`] applied, its clock the
//!    settings' [`ManualClock`], and its data in `place`, a fresh empty directory per test
//!    (an engine on a server keeps a test's keys apart another way, say a prefix made from
//!    the directory's name, and starts with none of another test's sessions).
//! 2. Add one line at the bottom of this file: `conformance!(my_engine, MyEngine::new(..));`.
//!
//! Every case then runs as a test `my_engine::<case>`: `cargo test --all-features --test
//! conformance my_engine::`.
//!
//! # Adding a case
//! Write it in the module of its topic, with the others' signature, and add its path to the
//! list in `conformance!`: it then runs on every engine.

// The cases name the engine `e`, the opened engine `t`, ids `a`, `b`... as the other tests do;
// the helpers' panics are the test failures themselves.
#![allow(
    clippy::many_single_char_names,
    clippy::missing_panics_doc,
    reason = "test code: short names for engines and ids; a panic is a failed test"
)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sessiondb::web::{ManagerConfig, SessionManager};
use sessiondb::{CapPolicy, Engine, Error, ManualClock, SecureToken, SessionId, Sharing, Store};

/// Asserts that `res` is an error matching `pattern`, and that [`Error::is_refusal`] calls it
/// a refusal (or not, with `refusal = false`). Defined before the modules, which use it.
macro_rules! refused {
    ($res:expr, $pattern:pat) => {
        refused!($res, $pattern, true)
    };
    ($res:expr, $pattern:pat, $refusal:expr) => {{
        let res = $res;
        match &res {
            Err(e @ $pattern) => {
                assert_eq!(e.is_refusal(), $refusal, "is_refusal of {e:?}");
            }
            other => panic!("expected {}, got {other:?}", stringify!($pattern)),
        }
    }};
}

mod expiry;
mod locks;
mod revocation;
mod rotation;
mod states;
mod tokens;
mod users;
mod web;

/// Milliseconds since the epoch at which every case's clock starts: 2026-01-01.
pub const T0: u64 = 1_767_225_600_000;

/// One second, in the clock's milliseconds.
pub const SEC: u64 = 1000;

/// An engine under test: opens one engine with the settings a case asks for.
pub trait Subject {
    /// The engine.
    type E: Engine;

    /// Opens an engine with every field of `settings` applied, keeping its data in `place`
    /// (a fresh directory that outlives the engine).
    fn open(&self, settings: &Settings, place: &Path) -> Self::E;

    /// Whether the engine can run here (a server engine needs its server installed); a case
    /// on an engine that cannot passes without running, saying so on stderr.
    fn available(&self) -> bool {
        true
    }
}

/// What the cases vary between engines they open.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The engine's clock: the only time it may read.
    pub clock: ManualClock,
    /// How long an unused session lives (`None`: for ever).
    pub idle_timeout: Option<Duration>,
    /// How long an expired session's data is still returned (as `Expired`).
    pub grace: Duration,
    /// How many states a session keeps.
    pub max_states: u64,
    /// The most sessions the engine holds (`None`: no cap).
    pub max_sessions: Option<u64>,
    /// What a create does at the cap.
    pub cap_policy: CapPolicy,
}

impl Default for Settings {
    /// A clock at [`T0`], idle 10 s, grace 5 s, 16 states, no cap.
    fn default() -> Self {
        Self {
            clock: ManualClock::new(T0),
            idle_timeout: Some(Duration::from_secs(10)),
            grace: Duration::from_secs(5),
            max_states: 16,
            max_sessions: None,
            cap_policy: CapPolicy::Reject,
        }
    }
}

/// An engine opened for one case, with its clock and its place.
pub struct Opened<E> {
    /// The engine.
    pub engine: E,
    /// The engine's clock.
    pub clock: ManualClock,
    /// Where the engine keeps its data; dropped after the engine.
    place: tempfile::TempDir,
}

/// Opens an engine of `subject` with `settings`, in a fresh temporary directory.
pub fn open<S: Subject>(subject: &S, settings: &Settings) -> Opened<S::E> {
    let place = tempfile::tempdir().expect("tempdir");
    let engine = subject.open(settings, place.path());
    Opened { engine, clock: settings.clock.clone(), place }
}

/// A [`SessionManager`] on an opened engine, with its clock and its place.
pub struct Managed<E: Engine> {
    /// The manager, owning the engine.
    pub m: SessionManager<E>,
    /// The engine's clock.
    pub clock: ManualClock,
    /// Where the engine keeps its data; dropped after the manager.
    _place: tempfile::TempDir,
}

impl<E: Engine> Opened<E> {
    /// Hands the engine to a [`SessionManager`] with `config`.
    pub fn manager(self, config: ManagerConfig) -> Managed<E> {
        let m = SessionManager::new(self.engine, config).expect("manager");
        Managed { m, clock: self.clock, _place: self.place }
    }
}

/// A token no session was given.
pub fn wrong_token() -> SecureToken {
    SecureToken::parse(&"x".repeat(43)).expect("token")
}

/// An id no engine issued.
pub fn unknown_id() -> SessionId {
    SessionId::parse("never-issued-id-0123456789abcdef").expect("id")
}

/// The redb engine, [`Store`], sharing its file as `Sharing` says.
pub struct Redb(pub Sharing);

impl Subject for Redb {
    type E = Store;

    fn open(&self, s: &Settings, place: &Path) -> Store {
        Store::builder(place.join("sessions.redb"))
            .sharing(self.0)
            .clock(Arc::new(s.clock.clone()))
            .idle_timeout(s.idle_timeout)
            .grace_period(s.grace)
            .max_states(s.max_states)
            .max_sessions(s.max_sessions)
            .cap_policy(s.cap_policy)
            // The clock moves only when a case moves it; so does the sweep.
            .cleanup_interval(None)
            .open()
            .expect("open the redb engine")
    }
}

/// Every case of the suite as a `#[test]` in module `$name`, on the engine `$subject` opens.
macro_rules! conformance {
    ($name:ident, $subject:expr) => {
        mod $name {
            use super::*;

            cases! { $subject;
                expiry::a_session_lives_until_its_idle_deadline_and_not_a_moment_longer,
                expiry::idle_expiry_then_grace_then_gone,
                expiry::touches_and_saves_extend_the_idle_timeout,
                expiry::expired_data_is_not_given_to_a_wrong_token,
                expiry::no_idle_timeout_means_no_expiry,
                expiry::cleanup_keeps_what_is_in_its_grace_window,
                expiry::a_deadline_chosen_at_create_under_holds_whatever_the_use,
                states::older_states_stay_readable_and_new_ones_follow_the_latest,
                states::states_beyond_max_states_are_evicted,
                states::a_state_never_stored_is_not_found_not_evicted,
                states::session_only_and_same_state_saves_leave_the_history_alone,
                states::a_stale_save_is_a_conflict_and_changes_nothing,
                rotation::regenerate_forwards_the_old_id_then_revokes_it,
                rotation::without_forwarding_the_old_id_is_revoked_at_once,
                rotation::rotation_refuses_what_loads_refuse,
                rotation::tombstones_last_as_long_as_the_session_would_have,
                rotation::moved_recently_names_a_rotation_a_moment_ago,
                revocation::revoking_a_rotated_id_revokes_the_chain,
                revocation::revoking_inside_the_forwarding_window_stops_the_forwarding,
                revocation::revoke_with_token_checks_the_token_of_the_id_it_was_given,
                revocation::revoke_named_skips_wrong_tokens_and_other_clients,
                revocation::a_kept_pre_login_token_ends_nothing_after_the_race_window,
                users::sessions_by_user_and_log_out_everywhere,
                users::the_reject_policy_refuses_at_the_cap,
                users::the_evict_policy_removes_the_session_closest_to_expiry,
                tokens::a_wrong_token_is_refused_everywhere_and_changes_nothing,
                tokens::unknown_ids_are_not_found,
                tokens::create_under_and_put_take_the_callers_id_and_never_revive_one,
                locks::the_session_lock_excludes_other_holders_for_a_bounded_wait,
                web::strict_mode_never_adopts_an_unknown_id,
                web::a_visit_without_data_gets_no_session_and_no_cookie,
                web::a_login_forwards_the_old_cookie_then_the_request_moved,
                web::a_logout_racing_a_login_ends_the_logged_in_session,
                web::an_expired_session_comes_back_fresh_with_the_old_data,
                web::a_wrong_token_is_a_suspected_hijack,
                web::the_query_string_chooses_the_state_with_a_fallback,
            }
        }
    };
}

/// One `#[test]` per case path, each on its own `$subject`.
macro_rules! cases {
    ($subject:expr; $($module:ident :: $case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() -> Result<(), Error> {
                let subject = $subject;
                if !subject.available() {
                    return Ok(());
                }
                $crate::$module::$case(&subject)
            }
        )*
    };
}

#[cfg(feature = "redis")]
#[path = "../common/redis.rs"]
mod servers;

/// The Redis engine on a standalone server (one per test binary), or on a 3-master Cluster;
/// each case's keys apart under a prefix made from its place's name.
#[cfg(feature = "redis")]
pub struct Redis {
    /// On the Cluster rather than the standalone server.
    pub cluster: bool,
}

#[cfg(feature = "redis")]
impl Subject for Redis {
    type E = sessiondb::RedisEngine;

    fn open(&self, s: &Settings, place: &Path) -> sessiondb::RedisEngine {
        let builder = if self.cluster {
            let urls = servers::shared_cluster().urls();
            sessiondb::RedisEngine::cluster_builder(&urls.iter().map(String::as_str).collect::<Vec<_>>())
        } else {
            sessiondb::RedisEngine::builder(&servers::shared_server().url())
        };
        let name = place.file_name().expect("a named place").to_string_lossy();
        builder
            .prefix(&format!("conformance-{name}"))
            .clock(Arc::new(s.clock.clone()))
            .idle_timeout(s.idle_timeout)
            .grace_period(s.grace)
            .max_states(s.max_states)
            .max_sessions(s.max_sessions)
            .cap_policy(s.cap_policy)
            .open()
            .expect("open the Redis engine")
    }

    fn available(&self) -> bool {
        servers::redis_available()
    }
}

conformance!(redb_multi_process, Redb(Sharing::MultiProcess));
conformance!(redb_single_process, Redb(Sharing::SingleProcess));
#[cfg(feature = "redis")]
conformance!(redis_standalone, Redis { cluster: false });
#[cfg(feature = "redis")]
conformance!(redis_cluster, Redis { cluster: true });
