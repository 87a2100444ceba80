//! A stateful target (issue 5, target 3): arbitrary sequences of operations run against a
//! `Store` and against a simple in-memory model of it, on a simulated disk that fails.
//!
//! The input (read with `arbitrary`) is a fault, a crash mode and up to 64 operations: create,
//! load, fetch an older state, save with the version read or a stale one (plain and merging),
//! touch, delete, revoke, regenerate, exists, session info and states, count, clean-up, moving
//! the `ManualClock`, and reopening the store. After each operation the store's answer must
//! be the model's, exactly (values and typed errors).
//!
//! The store runs on `sessiondb::faults::FaultyDisk` (`Sharing::SingleProcess`): after the
//! store is opened, the disk is told to fail the Nth I/O operation from then on (once or for
//! good) or to lose power at the Nth sync (N from the input). The first operation that fails
//! for that reason (an `Error::Storage`, `Io`, `Panicked` or `NeedsReopen`, which are never
//! acceptable before the fault fires) may or may not have taken effect; checking stops there
//! (after a persistent fault or a power loss the remaining operations still run, unchecked,
//! for the error paths). Then the store is dropped, the disk "restarts" from its durable image
//! (with none, some or all of the unsynced writes, from the input), a store is opened on it and
//! must hold exactly the model as it was before that operation, or as it would be after it:
//! every acknowledged write is there, and nothing else changed; `Store::verify` must find the
//! restarted file clean.
//!
//! Panics caught inside the public API are recorded by the panic hook of `common/mod.rs`.
//! Seeds: `fuzz/seeds/model/`.

#![no_main]

#[path = "common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use sessiondb::faults::{FaultyDisk, Persistence, Torn};
use sessiondb::{
    Error, ManualClock, Save, SecureToken, SessionId, SessionInfo, SessionStatus, Sharing, Store,
};

const T0: u64 = 1_750_000_000_000;
const IDLE: u64 = 10_000;
const GRACE: u64 = 5_000;
/// The default: 1% of the idle timeout.
const TOUCH: u64 = IDLE / 100;
const MAX_STATES: u64 = 4;
const WEEK: u64 = 7 * 24 * 3600 * 1000;
/// Header (5) and length prefix (8) of a stored state record.
const STATE_OVERHEAD: u64 = 13;
const MAX_OPS: usize = 64;

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
    Create { data: Vec<u8>, state: Vec<u8> },
    Load { h: u8, tok: Tok },
    Fetch { h: u8, tok: Tok, state: StateSel },
    Save { h: u8, tok: Tok, stale: u8, data: Vec<u8>, state: Option<Vec<u8>>, same: bool },
    SaveMerging { h: u8, tok: Tok, stale: u8, data: Vec<u8>, state: Vec<u8> },
    Touch { h: u8, tok: Tok },
    Delete { h: u8 },
    Revoke { h: u8 },
    Regenerate { h: u8, tok: Tok, forward_ms: u16 },
    Exists { h: u8 },
    Info { h: u8 },
    Count,
    Cleanup,
    Advance { ms: u16 },
    Reopen,
}

#[derive(Arbitrary, Debug)]
struct Input {
    fault: Fault,
    torn: TornSpec,
    ops: Vec<Op>,
}

// ---------------------------------------------------------------------------------------------
// The model.

#[derive(Clone, Debug, PartialEq, Eq)]
struct Sess {
    token: String,
    data: Vec<u8>,
    states: BTreeMap<u64, Vec<u8>>,
    latest: u64,
    oldest: u64,
    version: u64,
    created: u64,
    last_access: u64,
}

impl Sess {
    fn expires_at(&self) -> u64 {
        self.last_access + IDLE
    }
    fn remove_at(&self) -> u64 {
        self.expires_at() + GRACE
    }
    fn status(&self, now: u64) -> SessionStatus {
        if now < self.expires_at() {
            SessionStatus::Live
        } else if now < self.remove_at() {
            SessionStatus::Expired
        } else {
            SessionStatus::Gone
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Succ {
    Known {
        id: String,
        token: String,
    },
    /// A rotation that failed as far as the caller knows, but took effect.
    Unknown,
}

#[derive(Clone, Debug)]
struct Stone {
    rotated: bool,
    token: String,
    successor: Option<Succ>,
    forward_until: u64,
    remove_at: u64,
}

/// The errors the model predicts: the typed answers of the API.
#[derive(Clone, Debug, PartialEq, Eq)]
enum ExpErr {
    NotFound,
    Expired(Vec<u8>),
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
    /// `None`: the successor is a session whose id the caller never learned.
    Rotated(Option<(String, String)>),
    Revoked,
}

/// The typed answer an error is, or `None` for an I/O-class failure.
fn classify(e: &Error) -> Option<ExpErr> {
    Some(match e {
        Error::NotFound => ExpErr::NotFound,
        Error::Expired { data } => ExpErr::Expired(data.clone()),
        Error::StateNotFound { requested, latest } => {
            ExpErr::StateNotFound { requested: *requested, latest: *latest }
        }
        Error::StateEvicted { requested, oldest } => {
            ExpErr::StateEvicted { requested: *requested, oldest: *oldest }
        }
        Error::Conflict { expected, found } => {
            ExpErr::Conflict { expected: *expected, found: *found }
        }
        Error::Security => ExpErr::Security,
        Error::Rotated { successor, token } => {
            ExpErr::Rotated(Some((successor.as_str().to_owned(), token.as_str().to_owned())))
        }
        Error::Revoked => ExpErr::Revoked,
        _ => return None,
    })
}

/// What a fetch returns, as compared.
#[derive(Clone, Debug, PartialEq, Eq)]
struct FetchedExp {
    state_id: u64,
    latest: u64,
    oldest: u64,
    version: u64,
    data: Vec<u8>,
    state: Vec<u8>,
    created: u64,
    expires_at: u64,
}

fn fetched(f: &sessiondb::Fetched) -> FetchedExp {
    FetchedExp {
        state_id: f.state_id,
        latest: f.latest_state_id,
        oldest: f.oldest_state_id,
        version: f.version,
        data: f.session_data.clone(),
        state: f.state_data.clone(),
        created: f.created,
        expires_at: f.expires_at,
    }
}

/// The fields of a `SessionInfo` that are compared (all but the id).
type InfoExp = (u64, u64, u64, u64, u64, u64, u64, u64, SessionStatus);

fn info_of(i: &SessionInfo) -> InfoExp {
    (
        i.created,
        i.last_access,
        i.expires_at,
        i.remove_at,
        i.version,
        i.latest_state,
        i.oldest_state,
        i.data_len,
        i.status,
    )
}

fn info_exp(s: &Sess, now: u64) -> InfoExp {
    (
        s.created,
        s.last_access,
        s.expires_at(),
        s.remove_at(),
        s.version,
        s.latest,
        s.oldest,
        s.data.len() as u64,
        s.status(now),
    )
}

#[derive(Clone, Debug, Default)]
struct Model {
    sessions: BTreeMap<String, Sess>,
    /// Sessions under ids the caller never learned (a create or rotation that reported a
    /// failure but took effect): only in the candidate "after" of an uncertain operation.
    anon: Vec<Sess>,
    stones: BTreeMap<String, Stone>,
}

impl Model {
    fn missing(&self, id: &str, token: &str, now: u64) -> ExpErr {
        let Some(stone) = self.stones.get(id) else {
            return ExpErr::NotFound;
        };
        if now >= stone.remove_at {
            return ExpErr::NotFound;
        }
        if token != stone.token {
            return ExpErr::Security;
        }
        if let (true, Some(succ)) = (stone.rotated, &stone.successor)
            && now < stone.forward_until
        {
            return ExpErr::Rotated(match succ {
                Succ::Known { id, token } => Some((id.clone(), token.clone())),
                Succ::Unknown => None,
            });
        }
        ExpErr::Revoked
    }

    /// The admitted session `id`, or the error a request for it gets.
    fn admitted(&self, id: &str, token: &str, now: u64) -> Result<&Sess, ExpErr> {
        let Some(s) = self.sessions.get(id) else {
            return Err(self.missing(id, token, now));
        };
        match s.status(now) {
            SessionStatus::Gone => Err(ExpErr::NotFound),
            _ if token != s.token => Err(ExpErr::Security),
            SessionStatus::Expired => Err(ExpErr::Expired(s.data.clone())),
            _ => Ok(s),
        }
    }

    fn fetch(
        &mut self,
        id: &str,
        token: &str,
        state: Option<u64>,
        now: u64,
    ) -> Result<FetchedExp, ExpErr> {
        let s = self.admitted(id, token, now)?;
        let state_id = state.unwrap_or(s.latest);
        if state_id > s.latest {
            return Err(ExpErr::StateNotFound { requested: state_id, latest: s.latest });
        }
        if state_id < s.oldest {
            return Err(ExpErr::StateEvicted { requested: state_id, oldest: s.oldest });
        }
        let s = self.sessions.get_mut(id).unwrap();
        let mut out = FetchedExp {
            state_id,
            latest: s.latest,
            oldest: s.oldest,
            version: s.version,
            data: s.data.clone(),
            state: s.states[&state_id].clone(),
            created: s.created,
            expires_at: s.expires_at(),
        };
        if now.saturating_sub(s.last_access) >= TOUCH {
            s.last_access = now;
            out.expires_at = s.expires_at();
        }
        Ok(out)
    }

    #[allow(clippy::too_many_arguments)]
    fn save(
        &mut self,
        id: &str,
        token: &str,
        version: u64,
        data: &[u8],
        state: Option<&[u8]>,
        same: bool,
        now: u64,
    ) -> Result<(u64, u64), ExpErr> {
        let s = self.admitted(id, token, now)?;
        if version != s.version {
            return Err(ExpErr::Conflict { expected: version, found: s.version });
        }
        let s = self.sessions.get_mut(id).unwrap();
        let state_id = match state {
            None => s.latest,
            Some(state) => {
                let state_id = if same { s.latest } else { s.latest + 1 };
                s.states.insert(state_id, state.to_vec());
                s.latest = state_id;
                if s.latest - s.oldest + 1 > MAX_STATES {
                    let keep_from = s.latest + 1 - MAX_STATES;
                    s.states.retain(|&k, _| k >= keep_from);
                    s.oldest = keep_from;
                }
                state_id
            }
        };
        s.version += 1;
        s.data = data.to_vec();
        s.last_access = s.last_access.max(now);
        Ok((state_id, s.version))
    }

    fn create(&mut self, new: Option<(String, String)>, data: &[u8], state: &[u8], now: u64) {
        let s = Sess {
            token: new.as_ref().map(|n| n.1.clone()).unwrap_or_default(),
            data: data.to_vec(),
            states: BTreeMap::from([(0, state.to_vec())]),
            latest: 0,
            oldest: 0,
            version: 1,
            created: now,
            last_access: now,
        };
        match new {
            Some((id, _)) => {
                self.sessions.insert(id, s);
            }
            None => self.anon.push(s),
        }
    }

    fn touch(&mut self, id: &str, token: &str, now: u64) -> Result<(), ExpErr> {
        self.admitted(id, token, now)?;
        let s = self.sessions.get_mut(id).unwrap();
        s.last_access = s.last_access.max(now);
        Ok(())
    }

    fn revoke(&mut self, id: &str, now: u64) -> bool {
        if let Some(s) = self.sessions.remove(id) {
            let stone = Stone {
                rotated: false,
                token: s.token.clone(),
                successor: None,
                forward_until: 0,
                remove_at: s.remove_at().min(now + WEEK),
            };
            self.stones.insert(id.to_owned(), stone);
            return true;
        }
        if let Some(stone) = self.stones.get_mut(id)
            && stone.rotated
        {
            stone.rotated = false;
            stone.successor = None;
        }
        false
    }

    /// Moves the admitted session `id` to `new` (`None`: an id the caller does not know).
    fn regenerate(&mut self, id: &str, new: Option<(String, String)>, forward: u64, now: u64) {
        let mut s = self.sessions.remove(id).unwrap();
        let old_token = std::mem::take(&mut s.token);
        let forward_until = now + forward;
        let stone = Stone {
            rotated: true,
            token: old_token,
            successor: Some(match &new {
                Some((id, token)) => Succ::Known { id: id.clone(), token: token.clone() },
                None => Succ::Unknown,
            }),
            forward_until,
            remove_at: s.remove_at().min(now + WEEK).max(forward_until),
        };
        self.stones.insert(id.to_owned(), stone);
        match new {
            Some((id, token)) => {
                s.token = token;
                self.sessions.insert(id, s);
            }
            None => self.anon.push(s),
        }
    }

    fn exists(&self, id: &str, now: u64) -> bool {
        self.sessions.get(id).is_some_and(|s| s.status(now) == SessionStatus::Live)
    }

    /// (sessions, states, tombstones) removed.
    fn cleanup(&mut self, now: u64) -> (u64, u64, u64) {
        let (mut sessions, mut states) = (0, 0);
        self.sessions.retain(|_, s| {
            let keep = s.remove_at() > now;
            if !keep {
                sessions += 1;
                states += s.states.len() as u64;
            }
            keep
        });
        self.anon.retain(|s| s.remove_at() > now);
        let before = self.stones.len();
        self.stones.retain(|_, stone| stone.remove_at > now);
        (sessions, states, (before - self.stones.len()) as u64)
    }
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

/// What one checked operation found.
enum Step {
    /// The answer was the model's.
    Agreed,
    /// An I/O-class failure after the fault fired: the model as it would be if the operation
    /// took effect (the current model is as it would be if not).
    Uncertain(Box<Model>),
}

struct Run {
    store: Option<Store>,
    path: PathBuf,
    disk: FaultyDisk,
    clock: ManualClock,
    model: Model,
    /// Every (id, token) the store handed out, for operations to pick from.
    handles: Vec<(String, String)>,
    faulted: Box<dyn Fn(&FaultyDisk) -> bool>,
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

impl Run {
    fn store(&self) -> &Store {
        self.store.as_ref().unwrap()
    }

    fn now(&self) -> u64 {
        use sessiondb::Clock;
        self.clock.now_ms()
    }

    /// Compares the store's answer with the model's. `after` is the model if the operation
    /// took effect, for when the store reports an I/O-class failure.
    fn judge<T: std::fmt::Debug + PartialEq>(
        &self,
        op: &Op,
        got: sessiondb::Result<T>,
        want: &Result<T, ExpErr>,
        after: impl FnOnce() -> Model,
    ) -> Step {
        match (&got, want) {
            (Ok(g), Ok(w)) if g == w => Step::Agreed,
            (Err(e), Err(w)) if classify(e).as_ref() == Some(w) => Step::Agreed,
            // A rotation whose successor the caller never learned.
            (Err(Error::Rotated { .. }), Err(ExpErr::Rotated(None))) => Step::Agreed,
            (
                Err(
                    e @ (Error::Storage(_)
                    | Error::Io(_)
                    | Error::Panicked { .. }
                    | Error::NeedsReopen),
                ),
                _,
            ) => {
                assert!(
                    (self.faulted)(&self.disk),
                    "{op:?}: {e:?} ({e}) before any fault was injected; the model expected {want:?}"
                );
                Step::Uncertain(Box::new(after()))
            }
            _ => panic!(
                "{op:?} at t0+{}: the store answered {got:?}, the model {want:?}\nmodel: {:#?}",
                self.now() - T0,
                self.model
            ),
        }
    }

    fn step(&mut self, op: &Op) -> Step {
        let now = self.now();
        let handles = self.handles.clone();
        match op {
            Op::Create { data, state } => {
                let got = self.store().create(data, state);
                match &got {
                    Ok(c) => {
                        assert_eq!((c.state_id, c.version), (0, 1));
                        let (id, token) = (c.id.as_str().to_owned(), c.token.as_str().to_owned());
                        assert!(!handles.iter().any(|h| h.0 == id), "id {id} issued twice");
                        self.handles.push((id.clone(), token.clone()));
                        self.model.create(Some((id, token)), data, state, now);
                        Step::Agreed
                    }
                    Err(_) => {
                        let mut after = self.model.clone();
                        after.create(None, data, state, now);
                        self.judge(op, got.map(|_| ()), &Ok(()), || after)
                    }
                }
            }
            Op::Load { h, tok: t } | Op::Fetch { h, tok: t, .. } => {
                let (id, own) = pick(&handles, *h);
                let token = token_for(&handles, &own, *t);
                let state = match op {
                    Op::Fetch { state, .. } => {
                        let latest = self.model.sessions.get(&id).map_or(0, |s| s.latest);
                        match state {
                            StateSel::Latest => None,
                            StateSel::Back(n) => Some(latest.saturating_sub(u64::from(*n))),
                            StateSel::Abs(n) => Some(*n),
                        }
                    }
                    _ => None,
                };
                let got = if let Op::Load { .. } = op {
                    self.store().load(&sid(&id), &tok(&token))
                } else {
                    self.store().fetch_state(&sid(&id), &tok(&token), state)
                };
                let before = self.model.clone();
                let want = self.model.fetch(&id, &token, state, now);
                let after = self.model.clone();
                let step = self.judge(op, got.map(|f| fetched(&f)), &want, || after);
                if let Step::Uncertain(_) = step {
                    self.model = before;
                }
                step
            }
            Op::Save { h, tok: t, stale, data, state, same } => {
                let (id, own) = pick(&handles, *h);
                let token = token_for(&handles, &own, *t);
                let version = self
                    .model
                    .sessions
                    .get(&id)
                    .map_or(1, |s| s.version.saturating_sub(u64::from(*stale)));
                let mut save = match state {
                    Some(st) => Save::new(version, data, st),
                    None => Save::session_only(version, data),
                };
                save = save.same_state(*same);
                let got = self.store().store_state(&sid(&id), &tok(&token), save);
                let before = self.model.clone();
                let want =
                    self.model.save(&id, &token, version, data, state.as_deref(), *same, now);
                let after = self.model.clone();
                let got = got.map(|s| (s.state_id, s.version));
                let step = self.judge(op, got, &want, || after);
                if let Step::Uncertain(_) = step {
                    self.model = before;
                }
                step
            }
            Op::SaveMerging { h, tok: t, stale, data, state } => {
                let (id, own) = pick(&handles, *h);
                let token = token_for(&handles, &own, *t);
                let version = self
                    .model
                    .sessions
                    .get(&id)
                    .map_or(1, |s| s.version.saturating_sub(u64::from(*stale)));
                let merge = |ours: &[u8], theirs: &[u8]| [theirs, b"+", ours].concat();
                let got = self
                    .store()
                    .store_state_merging(
                        &sid(&id),
                        &tok(&token),
                        Save::new(version, data, state),
                        merge,
                    )
                    .map(|s| (s.state_id, s.version));
                let before = self.model.clone();
                let current = self.model.sessions.get(&id).map(|s| (s.version, s.data.clone()));
                let want = match current {
                    Some((v, theirs))
                        if v != version && self.model.admitted(&id, &token, now).is_ok() =>
                    {
                        let merged = merge(data, &theirs);
                        self.model.save(&id, &token, v, &merged, Some(state), false, now)
                    }
                    _ => self.model.save(&id, &token, version, data, Some(state), false, now),
                };
                let after = self.model.clone();
                let step = self.judge(op, got, &want, || after);
                if let Step::Uncertain(_) = step {
                    self.model = before;
                }
                step
            }
            Op::Touch { h, tok: t } => {
                let (id, own) = pick(&handles, *h);
                let token = token_for(&handles, &own, *t);
                let got = self.store().touch(&sid(&id), &tok(&token));
                let before = self.model.clone();
                let want = self.model.touch(&id, &token, now);
                let after = self.model.clone();
                let step = self.judge(op, got, &want, || after);
                if let Step::Uncertain(_) = step {
                    self.model = before;
                }
                step
            }
            Op::Delete { h } => {
                let (id, _) = pick(&handles, *h);
                let got = self.store().delete(&sid(&id));
                let mut after = self.model.clone();
                let want = after.sessions.remove(&id).is_some();
                let step = self.judge(op, got, &Ok(want), || after.clone());
                if let Step::Agreed = step {
                    self.model = after;
                }
                step
            }
            Op::Revoke { h } => {
                let (id, _) = pick(&handles, *h);
                let got = self.store().revoke(&sid(&id));
                let mut after = self.model.clone();
                let want = after.revoke(&id, now);
                let step = self.judge(op, got, &Ok(want), || after.clone());
                if let Step::Agreed = step {
                    self.model = after;
                }
                step
            }
            Op::Regenerate { h, tok: t, forward_ms } => {
                let (id, own) = pick(&handles, *h);
                let token = token_for(&handles, &own, *t);
                let forward = u64::from(*forward_ms);
                let got = self.store().regenerate(
                    &sid(&id),
                    &tok(&token),
                    Duration::from_millis(forward),
                );
                let want = self.model.admitted(&id, &token, now).map(|s| (s.latest, s.version));
                match (&got, &want) {
                    (Ok(c), Ok(w)) => {
                        assert_eq!((c.state_id, c.version), *w, "{op:?}");
                        let new = (c.id.as_str().to_owned(), c.token.as_str().to_owned());
                        assert!(!handles.iter().any(|h| h.0 == new.0), "id {} issued twice", new.0);
                        self.handles.push(new.clone());
                        self.model.regenerate(&id, Some(new), forward, now);
                        Step::Agreed
                    }
                    _ => {
                        let mut after = self.model.clone();
                        if want.is_ok() {
                            after.regenerate(&id, None, forward, now);
                        }
                        self.judge(op, got.map(|c| (c.state_id, c.version)), &want, || after)
                    }
                }
            }
            Op::Exists { h } => {
                let (id, _) = pick(&handles, *h);
                let got = self.store().exists(&sid(&id));
                let want = self.model.exists(&id, now);
                self.judge(op, got, &Ok(want), || self.model.clone())
            }
            Op::Info { h } => {
                let (id, _) = pick(&handles, *h);
                let got = self.store().inspect(&sid(&id)).map(|found| {
                    found.map(|(info, states)| {
                        let states: Vec<(u64, u64)> =
                            states.iter().map(|s| (s.id, s.size)).collect();
                        (info_of(&info), states)
                    })
                });
                let want = self.model.sessions.get(&id).map(|s| {
                    let states = s
                        .states
                        .iter()
                        .map(|(&k, v)| (k, v.len() as u64 + STATE_OVERHEAD))
                        .collect::<Vec<_>>();
                    (info_exp(s, now), states)
                });
                self.judge(op, got, &Ok(want), || self.model.clone())
            }
            Op::Count => {
                let got = self.store().count();
                let want = self.model.sessions.len() as u64;
                self.judge(op, got, &Ok(want), || self.model.clone())
            }
            Op::Cleanup => {
                let got = self.store().cleanup().map(|r| {
                    assert!(!r.skipped && r.corrupted == 0 && r.stale_entries == 0, "{r:?}");
                    (r.sessions, r.states, r.tombstones)
                });
                let mut after = self.model.clone();
                let want = after.cleanup(now);
                let step = self.judge(op, got, &Ok(want), || after.clone());
                if let Step::Agreed = step {
                    self.model = after;
                }
                step
            }
            Op::Advance { ms } => {
                self.clock.advance(u64::from(*ms));
                Step::Agreed
            }
            Op::Reopen => {
                drop(self.store.take());
                match open(&self.path, &self.disk, &self.clock) {
                    Ok(store) => {
                        self.store = Some(store);
                        Step::Agreed
                    }
                    Err(e) => {
                        assert!(
                            (self.faulted)(&self.disk),
                            "reopen failed on a healthy disk: {e:?}"
                        );
                        Step::Uncertain(Box::new(self.model.clone()))
                    }
                }
            }
        }
    }
}

/// Whether the store opened on a restarted disk holds exactly `model`. Reads only what a
/// read-write store reads, and loads touch: run it on a store of its own.
fn check_store(store: &Store, model: &Model, now: u64) -> Result<(), String> {
    // A crash at any point leaves a consistent file.
    match store.verify() {
        Ok(report) if report.is_clean() => {}
        other => return Err(format!("verify: {other:?}")),
    }
    let mut model = model.clone();
    let mut listed = BTreeMap::new();
    for item in store.sessions() {
        let info = item.map_err(|e| format!("listing: {e:?}"))?;
        listed.insert(info.id.as_str().to_owned(), info_of(&info));
    }
    let mut extra: Vec<InfoExp> = listed
        .iter()
        .filter(|(id, _)| !model.sessions.contains_key(*id))
        .map(|(_, i)| *i)
        .collect();
    let mut anon: Vec<InfoExp> = model.anon.iter().map(|s| info_exp(s, now)).collect();
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
            (Err(Error::Rotated { successor, .. }), ExpErr::Rotated(None)) => {
                extra.len() == 1 && listed.contains_key(successor.as_str())
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
    let store = open(&path, &disk, &clock).expect("a store opens on a new simulated disk");
    let start = disk.ops();
    let (faulted, keeps_failing): (Box<dyn Fn(&FaultyDisk) -> bool>, bool) = match input.fault {
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
        model: Model::default(),
        handles: Vec::new(),
        faulted,
    };
    let mut after = None;
    let mut ops = input.ops.iter().take(MAX_OPS);
    for op in ops.by_ref() {
        if let Step::Uncertain(model) = run.step(op) {
            after = Some(*model);
            break;
        }
    }
    if after.is_some() && keeps_failing {
        // Nothing reaches the disk any more: the rest runs for its error paths only.
        for op in ops {
            if run.store.is_none() {
                break;
            }
            unchecked(&run, op);
        }
    }

    // Restart: the durable image, with the unsynced writes the input lets through.
    drop(run.store.take());
    let torn = match input.torn {
        TornSpec::None => Torn::None,
        TornSpec::All => Torn::All,
        TornSpec::Prefix(n) => Torn::Prefix(usize::from(n)),
    };
    let image = disk.after_power_loss(torn).durable_image();
    let now = run.now();
    let mut candidates = vec![("before", run.model.clone())];
    if let Some(after) = after {
        candidates.push(("after", after));
    }
    let mut mismatches = Vec::new();
    for (name, model) in &candidates {
        let restarted = FaultyDisk::with_image(image.clone());
        let store = match open(&run.path, &restarted, &clock) {
            Ok(store) => store,
            Err(e) => panic!("the restarted disk does not open: {e:?} ({e})"),
        };
        match check_store(&store, model, now) {
            Ok(()) => return,
            Err(why) => mismatches.push(format!("{name} the failing operation: {why}")),
        }
    }
    panic!(
        "after the restart the store is none of the candidates:\n{}\nmodel before: {:#?}",
        mismatches.join("\n"),
        run.model
    );
}

/// Runs an operation on the store without checking its answer.
fn unchecked(run: &Run, op: &Op) {
    let store = run.store();
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
        Op::Create { data, state } => drop(store.create(data, state)),
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
        Op::Advance { ms } => run.clock.advance(u64::from(*ms)),
        Op::Reopen => {}
    }
}

fuzz_target!(|input: Input| {
    common::install_panic_hook();
    run(&input);
});
