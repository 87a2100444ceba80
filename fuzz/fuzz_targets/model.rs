//! A stateful target (issue 5, target 3): arbitrary sequences of operations run against a
//! `Store` and against a simple in-memory model of it (`common/model.rs`), on a simulated disk
//! that fails.
//!
//! The input (read with `arbitrary`) is a fault, a crash mode and up to 64 operations: create
//! (with or without a user), load, fetch an older state, save with the version read or a stale
//! one (plain, merging, setting or clearing the user), touch, delete, revoke, regenerate,
//! exists, session info and states, count, clean-up, the users index (`user_sessions`,
//! `revoke_user`), moving the `ManualClock`, and reopening the store. Revoking a rotated id
//! revokes the chain it was rotated into. After each operation the store's answer must be the
//! model's, exactly (values and typed errors).
//!
//! The store runs on `sessiondb::faults::FaultyDisk` (`Sharing::SingleProcess`): after the
//! store is opened, the disk is told to fail the Nth I/O operation from then on (once or for
//! good) or to lose power at the Nth sync (N from the input). An operation that fails for that
//! reason (an `Error::Storage`, `Io`, `Panicked` or `NeedsReopen`, which are never acceptable
//! before the fault fires) may or may not have taken effect: from then on every answer is
//! checked against each model the store may be (before or after each such operation; a
//! failure once a persistent fault or a power loss has fired changes nothing), keeping those
//! that agree, but only once the store has reopened the file (a sync since the failure): until
//! then it answers from the handle redb stopped, whose memory lacks the failed commit, while
//! the file may hold it, and the reopen recovers it (`Run::stale_since`). Typed errors change
//! no model. Past 16 candidate models the rest runs
//! unchecked, for the error paths. Then the store is dropped, the disk "restarts" from its
//! durable image (with none, some or all of the unsynced writes, from the input), and a store
//! opened on it must hold exactly one of the candidate models: every acknowledged write is
//! there, and nothing else changed; `Store::verify` must find the restarted file clean. After an
//! operation failed on the fault, the restart is also checked against the models as of that
//! operation unless a later commit synced: later reads answer from redb's memory, not from
//! what reached the disk.
//!
//! Every simulated disk is discarded at the end of an input (`FaultyDisk::discard`): a store
//! that met an I/O error leaks its redb handle on drop, which would otherwise keep the disk's
//! images for the rest of the process.
//!
//! Panics caught inside the public API are recorded by the panic hook of `common/mod.rs`.
//! Seeds: `fuzz/seeds/model/`.

#![no_main]

#[path = "common/mod.rs"]
mod common;
#[path = "common/model.rs"]
mod sim;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use sessiondb::faults::{FaultyDisk, Persistence, Torn};
use sessiondb::{Error, ManualClock, NewSession, Save, SecureToken, SessionId, Sharing, Store};
use sim::{
    ExpErr, FetchedExp, GRACE, IDLE, InfoExp, MAX_STATES, Model, STATE_OVERHEAD, Succ, T0, classify,
    fetched, info_exp, info_of,
};

/// Whether the fault has fired, judged from the simulated disk.
type Faulted = Box<dyn Fn(&FaultyDisk) -> bool>;

const MAX_OPS: usize = 64;
/// The most models an answer may still be checked against: each operation that fails with an
/// I/O error while the fault may still let writes through doubles them (it took effect or
/// not); past this the rest of the input runs unchecked.
const MAX_CANDIDATES: usize = 16;

// ---------------------------------------------------------------------------------------------
// The input.

#[derive(Arbitrary, Debug)]
enum Fault {
    None,
    /// The Nth I/O operation after the open fails (N = 1 + value % 4096).
    Io {
        after: u16,
        persistent: bool,
    },
    /// The Nth sync after the open loses power (N = 1 + value).
    PowerLoss {
        at_sync: u8,
    },
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum TornSpec {
    None,
    All,
    Prefix(u8),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Tok {
    Own,
    Wrong,
    Other(u8),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum StateSel {
    Latest,
    Back(u8),
    Abs(u64),
}

#[derive(Arbitrary, Debug, Clone)]
enum Op {
    Create {
        data: Vec<u8>,
        state: Vec<u8>,
        user: Option<u8>,
    },
    Load {
        h: u8,
        tok: Tok,
    },
    Fetch {
        h: u8,
        tok: Tok,
        state: StateSel,
    },
    Save {
        h: u8,
        tok: Tok,
        stale: u8,
        data: Vec<u8>,
        state: Option<Vec<u8>>,
        same: bool,
        /// `None`: the user is kept; `Some(None)`: filed under no user.
        #[allow(
            clippy::option_option,
            reason = "`Save::user`'s shape: keep, or file under a user or none"
        )]
        user: Option<Option<u8>>,
    },
    SaveMerging {
        h: u8,
        tok: Tok,
        stale: u8,
        data: Vec<u8>,
        state: Vec<u8>,
    },
    Touch {
        h: u8,
        tok: Tok,
    },
    Delete {
        h: u8,
    },
    Revoke {
        h: u8,
    },
    Regenerate {
        h: u8,
        tok: Tok,
        forward_ms: u16,
    },
    Exists {
        h: u8,
    },
    Info {
        h: u8,
    },
    Count,
    Cleanup,
    Advance {
        ms: u16,
    },
    Reopen,
    UserSessions {
        user: u8,
    },
    RevokeUser {
        user: u8,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    fault: Fault,
    torn: TornSpec,
    ops: Vec<Op>,
}

// ---------------------------------------------------------------------------------------------
// Running.

fn open(path: &PathBuf, disk: &FaultyDisk, clock: &ManualClock) -> sessiondb::Result<Store> {
    Store::builder(path)
        .sharing(Sharing::SingleProcess)
        .backend(disk.backend())
        .clock(Arc::new(clock.clone()))
        .idle_timeout(Some(Duration::from_millis(IDLE)))
        .grace_period(Duration::from_millis(GRACE))
        .max_states(MAX_STATES)
        .cleanup_interval(None)
        // A small page cache: more reads reach the disk, and can fail there.
        .cache_size(64 << 10)
        .open()
}

/// An answer of the store, as compared with the model's.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Ans {
    Fetched(FetchedExp),
    /// (state id, version) of a save, a create or a rotation.
    Saved(u64, u64),
    Flag(bool),
    Unit,
    Count(u64),
    Swept(u64, u64, u64),
    Info(Option<(InfoExp, Vec<(u64, u64)>)>),
    /// `user_sessions`: the ids the caller knows, and how many it does not.
    Ids(Vec<String>, usize),
}

fn user_key(u: u8) -> Vec<u8> {
    format!("user-{}", u % 3).into_bytes()
}

struct Run {
    store: Option<Store>,
    path: PathBuf,
    disk: FaultyDisk,
    clock: ManualClock,
    /// Every model the store may still be: one, or more after operations that failed with an
    /// I/O error after the fault fired (each may or may not have taken effect).
    models: Vec<Model>,
    /// Every (id, token) the store handed out, for operations to pick from.
    handles: Vec<(String, String)>,
    faulted: Faulted,
    /// The fault fails every operation once fired (persistent, power loss).
    keeps_failing: bool,
    /// The models as of the last operation that failed on the fault and may have taken
    /// effect, with the disk's sync count then. Until a later sync (a later commit, built on
    /// what the process saw), a restart may find any of them: the answers of later reads come
    /// from redb's memory, not from what reached the disk (a power loss may still let all of
    /// the failed commit's writes through, or none).
    uncertain: Option<(Vec<Model>, u64)>,
    /// The disk's sync count when an operation failed on the fault and may have taken effect,
    /// until a later sync. Meanwhile the store answers from the handle redb stopped after the
    /// error, whose memory lacks the failed commit, while the file may hold it: the next write
    /// (or any reopen) reopens the file, redb recovers that commit if it reached the file, and
    /// from then on the store answers from it (docs/reliability.md, "I/O errors"). So until
    /// then, an answer rules no candidate out.
    stale_since: Option<u64>,
}

fn pick(handles: &[(String, String)], h: u8) -> (String, String) {
    if handles.is_empty() {
        return ("no-such-session".to_owned(), "no-such-token".to_owned());
    }
    handles[usize::from(h) % handles.len()].clone()
}

fn token_for(handles: &[(String, String)], own: &str, tok: Tok) -> String {
    match tok {
        Tok::Own => own.to_owned(),
        Tok::Wrong => "wrong-token".to_owned(),
        Tok::Other(i) => pick(handles, i).1,
    }
}

fn sid(id: &str) -> SessionId {
    SessionId::parse(id).unwrap()
}

fn tok(token: &str) -> SecureToken {
    SecureToken::parse(token).unwrap()
}

/// An operation with its session and token resolved against the handles.
struct Call<'a> {
    op: &'a Op,
    id: String,
    token: String,
    now: u64,
}

impl Call<'_> {
    /// The version a save sends: the model's current one, `stale` versions back.
    fn version(&self, model: &Model, stale: u8) -> u64 {
        model.sessions.get(&self.id).map_or(1, |s| s.version.saturating_sub(u64::from(stale)))
    }

    /// The state a fetch asks for, as the model knows the session.
    fn state(&self, model: &Model) -> Option<u64> {
        let Op::Fetch { state, .. } = self.op else { return None };
        let latest = model.sessions.get(&self.id).map_or(0, |s| s.latest);
        match state {
            StateSel::Latest => None,
            StateSel::Back(n) => Some(latest.saturating_sub(u64::from(*n))),
            StateSel::Abs(n) => Some(*n),
        }
    }

    /// Runs the call on the store; a create or rotation also gives the new (id, token).
    /// `model` is the first candidate: a stale version or an older state is picked from it,
    /// the same for every candidate (they agree on everything the caller has seen succeed).
    fn on_store(
        &self,
        store: &Store,
        model: &Model,
    ) -> (sessiondb::Result<Ans>, Option<(String, String)>) {
        let (id, token) = (sid(&self.id), tok(&self.token));
        let new = |c: &sessiondb::Created| (c.id.as_str().to_owned(), c.token.as_str().to_owned());
        let got = match self.op {
            Op::Create { data, state, user } => {
                let key = user.map(user_key);
                let mut create = NewSession::new(data, state);
                if let Some(key) = &key {
                    create = create.user(key);
                }
                let got = store.create_with(create);
                let handle = got.as_ref().ok().map(new);
                return (got.map(|c| Ans::Saved(c.state_id, c.version)), handle);
            }
            Op::Load { .. } => store.load(&id, &token).map(|f| Ans::Fetched(fetched(&f))),
            Op::Fetch { .. } => {
                store.fetch_state(&id, &token, self.state(model)).map(|f| Ans::Fetched(fetched(&f)))
            }
            Op::Save { stale, data, state, same, user, .. } => {
                let version = self.version(model, *stale);
                let mut save = match state {
                    Some(st) => Save::new(version, data, st),
                    None => Save::session_only(version, data),
                };
                let key = user.map(|u| u.map(user_key));
                if let Some(key) = &key {
                    save = save.user(key.as_deref());
                }
                save = save.same_state(*same);
                store.store_state(&id, &token, save).map(|s| Ans::Saved(s.state_id, s.version))
            }
            Op::SaveMerging { stale, data, state, .. } => store
                .store_state_merging(
                    &id,
                    &token,
                    Save::new(self.version(model, *stale), data, state),
                    merge,
                )
                .map(|s| Ans::Saved(s.state_id, s.version)),
            Op::Touch { .. } => store.touch(&id, &token).map(|()| Ans::Unit),
            Op::Delete { .. } => store.delete(&id).map(Ans::Flag),
            Op::Revoke { .. } => store.revoke(&id).map(Ans::Flag),
            Op::Regenerate { forward_ms, .. } => {
                let got =
                    store.regenerate(&id, &token, Duration::from_millis(u64::from(*forward_ms)));
                let handle = got.as_ref().ok().map(new);
                return (got.map(|c| Ans::Saved(c.state_id, c.version)), handle);
            }
            Op::Exists { .. } => store.exists(&id).map(Ans::Flag),
            Op::Info { .. } => store.inspect(&id).map(|found| {
                Ans::Info(found.map(|(info, states)| {
                    (info_of(&info), states.iter().map(|s| (s.id, s.size)).collect())
                }))
            }),
            Op::Count => store.count().map(Ans::Count),
            Op::Cleanup => store.cleanup().map(|r| {
                assert!(!r.skipped && r.corrupted == 0 && r.stale_entries == 0, "{r:?}");
                Ans::Swept(r.sessions, r.states, r.tombstones)
            }),
            Op::UserSessions { user } => store
                .user_sessions(&user_key(*user))
                .map(|ids| Ans::Ids(ids.iter().map(|i| i.as_str().to_owned()).collect(), 0)),
            Op::RevokeUser { user } => store.revoke_user(&user_key(*user)).map(Ans::Count),
            Op::Advance { .. } | Op::Reopen => unreachable!("not a store call"),
        };
        (got, None)
    }

    /// Runs the call on `m`: the answer the model predicts, with `m` changed as the call
    /// changes the store. `new`: the id and token the store gave a create or rotation (`None`:
    /// filed under an id the caller does not know, for a call that failed but took effect).
    fn on_model(
        &self,
        m: &mut Model,
        first: &Model,
        new: Option<(String, String)>,
    ) -> Result<Ans, ExpErr> {
        let (id, token, now) = (self.id.as_str(), self.token.as_str(), self.now);
        Ok(match self.op {
            Op::Create { data, state, user } => {
                m.create(new, data, state, user.map(user_key), now);
                Ans::Saved(0, 1)
            }
            Op::Load { .. } | Op::Fetch { .. } => {
                Ans::Fetched(m.fetch(id, token, self.state(first), now)?)
            }
            Op::Save { stale, data, state, same, user, .. } => {
                let user = user.map(|u| u.map(user_key));
                let version = self.version(first, *stale);
                let (s, v) =
                    m.save(id, token, version, data, state.as_deref(), *same, user, now)?;
                Ans::Saved(s, v)
            }
            Op::SaveMerging { stale, data, state, .. } => {
                let version = self.version(first, *stale);
                let current = m.sessions.get(id).map(|s| (s.version, s.data.clone()));
                let (s, v) = match current {
                    Some((v, theirs)) if v != version && m.admitted(id, token, now).is_ok() => {
                        let merged = merge(data, &theirs);
                        m.save(id, token, v, &merged, Some(state), false, None, now)?
                    }
                    _ => m.save(id, token, version, data, Some(state), false, None, now)?,
                };
                Ans::Saved(s, v)
            }
            Op::Touch { .. } => {
                m.touch(id, token, now)?;
                Ans::Unit
            }
            Op::Delete { .. } => Ans::Flag(m.sessions.remove(id).is_some()),
            Op::Revoke { .. } => Ans::Flag(m.revoke(id, now)),
            Op::Regenerate { forward_ms, .. } => {
                let s = m.admitted(id, token, now)?;
                let ans = Ans::Saved(s.latest, s.version);
                m.regenerate(id, new, u64::from(*forward_ms), now);
                ans
            }
            Op::Exists { .. } => Ans::Flag(m.exists(id, now)),
            Op::Info { .. } => Ans::Info(m.sessions.get(id).map(|s| {
                let states = s
                    .states
                    .iter()
                    .map(|(&k, v)| (k, v.len() as u64 + STATE_OVERHEAD))
                    .collect::<Vec<_>>();
                (info_exp(s, now), states)
            })),
            Op::Count => Ans::Count(m.count()),
            Op::Cleanup => {
                let (a, b, c) = m.cleanup(now);
                Ans::Swept(a, b, c)
            }
            Op::UserSessions { user } => {
                let (known, unknown) = m.user_sessions(&user_key(*user));
                Ans::Ids(known, unknown)
            }
            Op::RevokeUser { user } => Ans::Count(m.revoke_user(&user_key(*user), now)),
            Op::Advance { .. } | Op::Reopen => unreachable!("not a store call"),
        })
    }
}

fn merge(ours: &[u8], theirs: &[u8]) -> Vec<u8> {
    [theirs, b"+", ours].concat()
}

/// Whether the store's answer `got` is the answer `want` of model `m`.
fn agrees(
    m: &Model,
    handles: &[(String, String)],
    got: &sessiondb::Result<Ans>,
    want: &Result<Ans, ExpErr>,
) -> bool {
    match (got, want) {
        // The ids listed: those the model knows under the user, in id order, and as many
        // others as the model has sessions under ids the caller never learned.
        (Ok(Ans::Ids(ids, _)), Ok(Ans::Ids(known, unknown))) => {
            let (mine, others): (Vec<&String>, Vec<&String>) =
                ids.iter().partition(|id| handles.iter().any(|h| h.0 == **id));
            mine.len() == known.len()
                && mine.iter().zip(known).all(|(a, b)| *a == b)
                && others.len() == *unknown
        }
        (Ok(g), Ok(w)) => g == w,
        // A rotation whose successor the caller never learned.
        (Err(Error::Rotated { successor, .. }), Err(ExpErr::Rotated(None))) => {
            !m.sessions.contains_key(successor.as_str())
        }
        (Err(e), Err(w)) => classify(e).as_ref() == Some(w),
        _ => false,
    }
}

/// An I/O-class failure: never acceptable before the fault fires.
fn io_class(got: &sessiondb::Result<Ans>) -> bool {
    matches!(
        got,
        Err(Error::Storage(_) | Error::Io(_) | Error::Panicked { .. } | Error::NeedsReopen)
    )
}

impl Run {
    fn now(&self) -> u64 {
        use sessiondb::Clock;
        self.clock.now_ms()
    }

    /// Runs one operation on the store and on every candidate model, keeping the candidates
    /// that agree (an answer no candidate gives is a bug). Returns false once there are too
    /// many candidates to go on checking.
    fn step(&mut self, op: &Op) -> bool {
        let now = self.now();
        match op {
            Op::Advance { ms } => {
                self.clock.advance(u64::from(*ms));
                return true;
            }
            Op::Reopen => {
                drop(self.store.take());
                self.ensure_open();
                return true;
            }
            _ => {}
        }
        if self.store.is_none() && !self.ensure_open() {
            return true; // the store does not open: the call cannot run, nothing changed
        }
        let (id, own) = match op {
            Op::Load { h, .. }
            | Op::Fetch { h, .. }
            | Op::Save { h, .. }
            | Op::SaveMerging { h, .. }
            | Op::Touch { h, .. }
            | Op::Delete { h }
            | Op::Revoke { h }
            | Op::Regenerate { h, .. }
            | Op::Exists { h }
            | Op::Info { h } => pick(&self.handles, *h),
            _ => pick(&[], 0),
        };
        let token = match op {
            Op::Load { tok: t, .. }
            | Op::Fetch { tok: t, .. }
            | Op::Save { tok: t, .. }
            | Op::SaveMerging { tok: t, .. }
            | Op::Touch { tok: t, .. }
            | Op::Regenerate { tok: t, .. } => token_for(&self.handles, &own, *t),
            _ => own,
        };
        let call = Call { op, id, token, now };
        // Whether the fault had fired before this call: with a persistent one, nothing the
        // call does can reach the disk.
        let fired_before = (self.faulted)(&self.disk);
        // A sync since the failure: the store reopened the file (redb refuses every commit on
        // the stopped handle, and the reopen itself syncs), and answers from what it recovered.
        if self.stale_since.is_some_and(|syncs| self.disk.syncs() > syncs) {
            self.stale_since = None;
        }
        let stale = self.stale_since.is_some();
        let first = self.models[0].clone();
        let (got, new) = call.on_store(self.store.as_ref().unwrap(), &first);
        let mut next: Vec<Model> = Vec::new();
        if io_class(&got) {
            let e = got.as_ref().unwrap_err();
            assert!(
                (self.faulted)(&self.disk),
                "{op:?}: {e:?} ({e}) before any fault was injected"
            );
            for m in &self.models {
                next.push(m.clone()); // it did not take effect
                if !(fired_before && self.keeps_failing) {
                    let mut after = m.clone();
                    let _ = call.on_model(&mut after, &first, None);
                    next.push(after); // it did
                }
            }
        } else {
            let mut wants = Vec::new();
            for m in &self.models {
                let mut after = m.clone();
                let want = call.on_model(&mut after, &first, new.clone());
                let agreed = agrees(m, &self.handles, &got, &want);
                if agreed || stale {
                    next.push(after);
                }
                wants.push((agreed, want));
            }
            assert!(
                wants.iter().any(|(agreed, _)| *agreed),
                "{op:?} at t0+{}: the store answered {got:?}, the model {:?}\nmodels: {:#?}",
                now - T0,
                wants.iter().map(|(_, w)| w).collect::<Vec<_>>(),
                self.models
            );
            if let Some((id, _)) = &new {
                assert!(!self.handles.iter().any(|h| h.0 == *id), "id {id} issued twice");
                self.handles.push(new.clone().unwrap());
            }
        }
        let mut distinct: Vec<Model> = Vec::with_capacity(next.len());
        for m in next {
            if !distinct.contains(&m) {
                distinct.push(m);
            }
        }
        if io_class(&got) && !(fired_before && self.keeps_failing) {
            self.uncertain = Some((distinct.clone(), self.disk.syncs()));
            self.stale_since = Some(self.disk.syncs());
        }
        self.models = distinct;
        self.models.len() <= MAX_CANDIDATES
    }

    /// Opens the store if it is closed: true if it is open. A failure is acceptable only
    /// after the fault fired.
    fn ensure_open(&mut self) -> bool {
        if self.store.is_some() {
            return true;
        }
        match open(&self.path, &self.disk, &self.clock) {
            Ok(store) => {
                self.store = Some(store);
                true
            }
            Err(e) => {
                assert!((self.faulted)(&self.disk), "reopen failed on a healthy disk: {e:?}");
                false
            }
        }
    }
}

/// Whether the store opened on a restarted disk holds exactly `model`. Reads only what a
/// read-write store reads, and loads touch: run it on a store of its own.
fn check_store(
    store: &Store,
    model: &Model,
    handles: &[(String, String)],
    now: u64,
) -> Result<(), String> {
    // A crash at any point leaves a consistent file.
    match store.verify() {
        Ok(report) if report.is_clean() => {}
        other => return Err(format!("verify: {other:?}")),
    }
    let mut model = model.clone();
    let mut listed = std::collections::BTreeMap::new();
    for item in store.sessions() {
        let info = item.map_err(|e| format!("listing: {e:?}"))?;
        listed.insert(info.id.as_str().to_owned(), info_of(&info));
    }
    let mut extra: Vec<InfoExp> = listed
        .iter()
        .filter(|(id, _)| !model.sessions.contains_key(*id))
        .map(|(_, i)| *i)
        .collect();
    let mut anon: Vec<InfoExp> = model.anon.values().map(|s| info_exp(s, now)).collect();
    extra.sort_by_key(|i| format!("{i:?}"));
    anon.sort_by_key(|i| format!("{i:?}"));
    if extra != anon {
        return Err(format!("sessions the model does not know: {extra:?}, expected {anon:?}"));
    }
    for (id, s) in &model.sessions {
        match listed.get(id) {
            Some(info) if *info == info_exp(s, now) => {}
            got => return Err(format!("session {id}: {got:?}, expected {:?}", info_exp(s, now))),
        }
    }
    let count = store.count().map_err(|e| format!("count: {e:?}"))?;
    if count != listed.len() as u64 {
        return Err(format!("count {count}, listed {}", listed.len()));
    }
    for u in 0..3 {
        let got = store.user_sessions(&user_key(u)).map_err(|e| format!("user_sessions: {e:?}"));
        let got = Ok(Ans::Ids(got?.iter().map(|i| i.as_str().to_owned()).collect(), 0));
        let (known, unknown) = model.user_sessions(&user_key(u));
        let want = Ok(Ans::Ids(known, unknown));
        if !agrees(&model, handles, &got, &want) {
            return Err(format!("user {u}: {got:?}, expected {want:?}"));
        }
    }
    let ids: Vec<(String, String)> =
        model.sessions.iter().map(|(id, s)| (id.clone(), s.token.clone())).collect();
    for (id, token) in ids {
        let (oldest, latest) = {
            let s = &model.sessions[&id];
            (s.oldest, s.latest)
        };
        for state in oldest..=latest {
            let got = store.fetch_state(&sid(&id), &tok(&token), Some(state));
            let want = model.fetch(&id, &token, Some(state), now);
            let same = match (&got, &want) {
                (Ok(g), Ok(w)) => fetched(g) == *w,
                (Err(e), Err(w)) => classify(e).as_ref() == Some(w),
                _ => false,
            };
            if !same {
                return Err(format!("session {id} state {state}: {got:?}, expected {want:?}"));
            }
        }
    }
    for (id, stone) in model.stones.clone() {
        let got = store.load(&sid(&id), &tok(&stone.token));
        let want = model.missing(&id, &stone.token, now);
        let same = match (&got, &want) {
            // A successor the caller never learned (a regenerate that failed on the fault and
            // landed): listed if that session still lives, not if it was revoked since (a
            // user's sessions revoked, say). The old id forwards to it either way until its
            // window ends; the successor then answers for itself.
            (Err(Error::Rotated { successor, .. }), ExpErr::Rotated(None)) => {
                let live = matches!(
                    &stone.successor,
                    Some(Succ::Unknown(tag)) if model.anon.contains_key(tag)
                );
                !model.sessions.contains_key(successor.as_str())
                    && listed.contains_key(successor.as_str()) == live
            }
            (Err(e), w) => classify(e).as_ref() == Some(w),
            (Ok(_), _) => false,
        };
        if !same {
            return Err(format!("retired id {id}: {got:?}, expected {want:?}"));
        }
    }
    Ok(())
}

fn run(input: &Input) {
    let path = common::workdir().join("model.redb");
    let clock = ManualClock::new(T0);
    let disk = FaultyDisk::new();
    // Every disk of this input is discarded at the end, whatever happens: a store that met
    // an I/O error leaks its handle, and with it the disk's images (see `FaultyDisk::discard`).
    let _discard = Discard(vec![disk.clone()]);
    let store = open(&path, &disk, &clock).expect("a store opens on a new simulated disk");
    let start = disk.ops();
    let (faulted, keeps_failing): (Faulted, bool) = match input.fault {
        Fault::None => (Box::new(|_| false), false),
        Fault::Io { after, persistent } => {
            let n = 1 + u64::from(after) % 4096;
            let how = if persistent { Persistence::Persistent } else { Persistence::Transient };
            disk.fail_after(n, how);
            (Box::new(move |d: &FaultyDisk| d.ops() >= start + n), persistent)
        }
        Fault::PowerLoss { at_sync } => {
            disk.power_loss_at_sync(1 + u64::from(at_sync));
            (Box::new(|d: &FaultyDisk| d.is_dead()), true)
        }
    };
    let mut run = Run {
        store: Some(store),
        path,
        disk: disk.clone(),
        clock: clock.clone(),
        models: vec![Model::default()],
        handles: Vec::new(),
        faulted,
        keeps_failing,
        uncertain: None,
        stale_since: None,
    };
    let mut ops = input.ops.iter().take(MAX_OPS);
    let mut checking = true;
    for op in ops.by_ref() {
        if !run.step(op) {
            checking = false;
            break;
        }
    }
    // Too many candidates: the rest runs for its error paths only, and the restart is not
    // checked against a model.
    for op in ops {
        if run.store.is_none() {
            break;
        }
        unchecked(&run, op);
    }

    // Restart: the durable image, with the unsynced writes the input lets through.
    drop(run.store.take());
    let torn = match input.torn {
        TornSpec::None => Torn::None,
        TornSpec::All => Torn::All,
        TornSpec::Prefix(n) => Torn::Prefix(usize::from(n)),
    };
    let image = disk.after_power_loss(torn).durable_image();
    let disk_syncs = disk.syncs();
    disk.discard();
    let now = run.now();
    // Loads touch: each candidate is checked on a fresh disk holding the image.
    let restart = || {
        let restarted = FaultyDisk::with_image(image.clone());
        match open(&run.path, &restarted, &clock) {
            Ok(store) => (Discard(vec![restarted]), store),
            Err(e) => panic!("the restarted disk does not open: {e:?} ({e})"),
        }
    };
    if !checking {
        let (_discard, store) = restart();
        common::verify(&store);
        return;
    }
    let mut candidates = run.models.clone();
    if let Some((models, syncs)) = &run.uncertain
        && disk_syncs == *syncs
    {
        candidates.extend(models.iter().filter(|m| !run.models.contains(m)).cloned());
    }
    let mut mismatches = Vec::new();
    for model in &candidates {
        let (_discard, store) = restart();
        match check_store(&store, model, &run.handles, now) {
            Ok(()) => return,
            Err(why) => mismatches.push(why),
        }
    }
    panic!(
        "after the restart the store is none of the {} candidate models:\n{}\nmodels: {:#?}",
        candidates.len(),
        mismatches.join("\n"),
        candidates
    );
}

/// Discards its disks when dropped, on every way out of [`run`].
struct Discard(Vec<FaultyDisk>);

impl Drop for Discard {
    fn drop(&mut self) {
        for disk in &self.0 {
            disk.discard();
        }
    }
}

/// Runs an operation on the store without checking its answer.
fn unchecked(run: &Run, op: &Op) {
    let store = run.store.as_ref().unwrap();
    let (id, own) = match op {
        Op::Load { h, .. }
        | Op::Fetch { h, .. }
        | Op::Save { h, .. }
        | Op::SaveMerging { h, .. }
        | Op::Touch { h, .. }
        | Op::Delete { h }
        | Op::Revoke { h }
        | Op::Regenerate { h, .. }
        | Op::Exists { h }
        | Op::Info { h } => pick(&run.handles, *h),
        _ => pick(&[], 0),
    };
    let (id, token) = (sid(&id), tok(&own));
    match op {
        Op::Create { data, state, .. } => drop(store.create(data, state)),
        Op::Load { .. } => drop(store.load(&id, &token)),
        Op::Fetch { .. } => drop(store.fetch_state(&id, &token, Some(0))),
        Op::Save { data, .. } | Op::SaveMerging { data, .. } => {
            drop(store.store_state(&id, &token, Save::session_only(1, data)));
        }
        Op::Touch { .. } => drop(store.touch(&id, &token)),
        Op::Delete { .. } => drop(store.delete(&id)),
        Op::Revoke { .. } => drop(store.revoke(&id)),
        Op::Regenerate { .. } => drop(store.regenerate(&id, &token, Duration::ZERO)),
        Op::Exists { .. } => drop(store.exists(&id)),
        Op::Info { .. } => drop(store.inspect(&id)),
        Op::Count => drop(store.count()),
        Op::Cleanup => drop(store.cleanup()),
        Op::UserSessions { user } => drop(store.user_sessions(&user_key(*user))),
        Op::RevokeUser { user } => drop(store.revoke_user(&user_key(*user))),
        Op::Advance { ms } => run.clock.advance(u64::from(*ms)),
        Op::Reopen => {}
    }
}

fuzz_target!(|input: Input| {
    common::install_panic_hook();
    run(&input);
});
