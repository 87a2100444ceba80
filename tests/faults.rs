//! Fault injection: a short workload runs on a simulated disk (`sessiondb::faults`) that loses
//! power at each of its syncs in turn, returns I/O errors (once, or from then on), or fills up.
//! After each fault the store is reopened on what the disk kept, and compared with a model:
//! every acknowledged write is there, the write in flight is there entirely or not at all,
//! nothing else is, and `Store::verify` finds the file clean.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::T0;
use sessiondb::faults::{FaultyDisk, Persistence, Torn};
use sessiondb::{Error, ManualClock, Save, SecureToken, SessionId, Sharing, Store};

/// What the model says about one id.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Slot {
    /// Live, with its data, latest state and version.
    Live { data: Vec<u8>, state: Vec<u8>, version: u64 },
    /// Rotated or revoked: a load is `Rotated` or `Revoked`.
    Retired,
    /// Deleted, or swept: a load is `NotFound`.
    Gone,
}

/// Every id the workload made, with its token and what it should hold.
#[derive(Debug, Clone, Default)]
struct Model {
    ids: BTreeMap<SessionId, (SecureToken, Slot)>,
    /// The workload's names for its sessions, and their current ids.
    names: BTreeMap<&'static str, SessionId>,
}

#[derive(Debug, Clone, Copy)]
enum Step {
    Create(&'static str, &'static [u8]),
    Save(&'static str, &'static [u8]),
    Regenerate(&'static str),
    Delete(&'static str),
    Revoke(&'static str),
    /// Moves the clock past every deadline and sweeps.
    SweepAll,
}

const WORKLOAD: &[Step] = &[
    Step::Create("a", b"ann"),
    Step::Create("b", b"bob"),
    Step::Save("a", b"ann, page 2"),
    Step::Save("b", b"bob, page 2"),
    Step::Regenerate("a"),
    Step::Save("a", b"ann, logged in"),
    Step::Delete("b"),
    Step::Create("c", b"cid"),
    Step::Revoke("c"),
    Step::Create("d", b"dan"),
    Step::Save("d", b"dan, page 2"),
    Step::SweepAll,
    Step::Create("e", b"eve"),
];

fn open(
    disk: &FaultyDisk,
    clock: &ManualClock,
    dir: &tempfile::TempDir,
) -> sessiondb::Result<Store> {
    Store::builder(dir.path().join("sessions.redb"))
        .sharing(Sharing::SingleProcess)
        .backend(disk.backend())
        .clock(Arc::new(clock.clone()))
        .idle_timeout(Some(Duration::from_secs(10)))
        .grace_period(Duration::from_secs(5))
        .cleanup_interval(None)
        .open()
}

fn live(m: &Model, name: &str) -> (SessionId, SecureToken, u64) {
    let id = m.names[name].clone();
    let (token, slot) = &m.ids[&id];
    let Slot::Live { version, .. } = slot else { panic!("{name} is not live in the model") };
    (id, token.clone(), *version)
}

/// Runs one step on the store; on success applies it to the model. `Err` leaves the model as
/// it was (the step is then "in flight").
fn run(store: &Store, clock: &ManualClock, m: &mut Model, step: Step) -> sessiondb::Result<()> {
    match step {
        Step::Create(name, data) => {
            let c = store.create(data, b"state 0")?;
            let slot = Slot::Live { data: data.to_vec(), state: b"state 0".to_vec(), version: 1 };
            m.ids.insert(c.id.clone(), (c.token, slot));
            m.names.insert(name, c.id);
        }
        Step::Save(name, data) => {
            let (id, token, version) = live(m, name);
            let stored = store.store_state(&id, &token, Save::new(version, data, data))?;
            let slot =
                Slot::Live { data: data.to_vec(), state: data.to_vec(), version: stored.version };
            m.ids.insert(id, (token, slot));
        }
        Step::Regenerate(name) => {
            let (id, token, _) = live(m, name);
            let c = store.regenerate(&id, &token, Duration::ZERO)?;
            let slot = m.ids[&id].1.clone();
            let Slot::Live { data, state, .. } = slot else { unreachable!() };
            m.ids.insert(id, (token, Slot::Retired));
            m.ids.insert(c.id.clone(), (c.token, Slot::Live { data, state, version: c.version }));
            m.names.insert(name, c.id);
        }
        Step::Delete(name) => {
            let (id, token, _) = live(m, name);
            assert!(store.delete(&id)?);
            m.ids.insert(id, (token, Slot::Gone));
        }
        Step::Revoke(name) => {
            let (id, token, _) = live(m, name);
            assert!(store.revoke(&id)?);
            m.ids.insert(id, (token, Slot::Retired));
        }
        Step::SweepAll => {
            clock.advance(60_000);
            store.cleanup()?;
            for (_, slot) in m.ids.values_mut() {
                *slot = Slot::Gone;
            }
        }
    }
    Ok(())
}

/// What the store holds for `id`, seen through a load with the id's token.
fn observe(store: &Store, id: &SessionId, token: &SecureToken) -> Slot {
    match store.load(id, token) {
        Ok(f) => Slot::Live { data: f.session_data, state: f.state_data, version: f.version },
        Err(Error::Rotated { .. } | Error::Revoked) => Slot::Retired,
        Err(Error::NotFound) => Slot::Gone,
        Err(e) => panic!("load of {id} after the fault: {e:?}"),
    }
}

/// Checks the reopened store against the model before and after the step in flight.
fn check(
    store: &Store,
    before: &Model,
    after: Option<&Model>,
    in_flight: Option<Step>,
    what: &str,
) {
    let report = store.verify().expect("verify");
    assert!(report.is_clean(), "{what}: verify found {:?}", report.problems);
    let mut known = before.ids.clone();
    if let Some(after) = after {
        known.extend(after.ids.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    for (id, (token, _)) in &known {
        let seen = observe(store, id, token);
        let was = before.ids.get(id).map_or(&Slot::Gone, |(_, s)| s);
        let would = after.and_then(|a| a.ids.get(id)).map_or(was, |(_, s)| s);
        assert!(
            seen == *was || seen == *would,
            "{what}: {id} is {seen:?}, expected {was:?} or (step in flight {in_flight:?}) {would:?}"
        );
    }
    // Nothing else, except the session a create in flight may have made.
    let extra: Vec<_> = store
        .sessions()
        .map(|s| s.expect("listing").id)
        .filter(|id| !known.contains_key(id))
        .collect();
    match in_flight {
        // A create or a regeneration in flight makes a session under an id not yet known.
        Some(Step::Create(_, data)) if extra.len() == 1 => {
            let info = store.inspect(&extra[0]).unwrap().unwrap().0;
            assert_eq!(info.data_len, data.len() as u64, "{what}: the created session's data");
        }
        Some(Step::Regenerate(name)) if extra.len() == 1 => {
            let old = &before.names[name];
            let (token, _) = &before.ids[old];
            assert_eq!(observe(store, old, token), Slot::Retired, "{what}: a new id, the old live");
        }
        _ => assert!(
            extra.is_empty(),
            "{what}: unexpected sessions {extra:?} (in flight {in_flight:?})"
        ),
    }
}

/// Runs the workload until a step fails. Returns the model of what was acknowledged, and the
/// failed step with the model it would have made, if one failed.
fn run_until_error(store: &Store, clock: &ManualClock) -> (Model, Option<(Step, Model, Error)>) {
    let mut m = Model::default();
    for &step in WORKLOAD {
        let mut after = m.clone();
        if let Err(e) = run(store, clock, &mut after, step) {
            return (m.clone(), Some((step, would_after(&m, step), e)));
        }
        m = after;
    }
    (m, None)
}

/// The model after `step` committed, for the ids already known (a create's new id is not).
fn would_after(m: &Model, step: Step) -> Model {
    let mut after = m.clone();
    let set = |after: &mut Model, name: &str, slot: Slot| {
        let id = after.names[name].clone();
        after.ids.get_mut(&id).unwrap().1 = slot;
    };
    match step {
        Step::Create(..) => {}
        Step::Save(name, data) => {
            let (_, _, version) = live(m, name);
            set(
                &mut after,
                name,
                Slot::Live { data: data.to_vec(), state: data.to_vec(), version: version + 1 },
            );
        }
        Step::Regenerate(name) | Step::Revoke(name) => set(&mut after, name, Slot::Retired),
        Step::Delete(name) => set(&mut after, name, Slot::Gone),
        Step::SweepAll => {
            for (_, slot) in after.ids.values_mut() {
                *slot = Slot::Gone;
            }
        }
    }
    after
}

fn syncs_of_whole_workload() -> u64 {
    let dir = tempfile::tempdir().unwrap();
    let disk = FaultyDisk::new();
    let clock = ManualClock::new(T0);
    let store = open(&disk, &clock, &dir).unwrap();
    let (_, failed) = run_until_error(&store, &clock);
    assert!(failed.is_none(), "the workload fails without faults: {failed:?}");
    let syncs = disk.syncs();
    drop(store);
    syncs
}

#[test]
fn power_loss_at_every_sync_keeps_every_acknowledged_write() {
    let total = syncs_of_whole_workload();
    assert!(total >= WORKLOAD.len() as u64, "only {total} syncs for the workload");
    let mut cases = 0;
    for at in 1..=total {
        let dir = tempfile::tempdir().unwrap();
        let disk = FaultyDisk::new();
        disk.power_loss_at_sync(at);
        let clock = ManualClock::new(T0);
        let first_open = open(&disk, &clock, &dir);
        let initialised = first_open.is_ok();
        let (acked, failed) = match first_open {
            Ok(store) => run_until_error(&store, &clock),
            Err(_) => (Model::default(), None),
        };
        assert!(disk.is_dead(), "sync {at} of {total} never came");
        let pending = disk.unsynced_writes();
        for torn in [Torn::None, Torn::Prefix(1), Torn::Prefix(pending / 2), Torn::All] {
            let after_loss = disk.after_power_loss(torn);
            let store = match open(&after_loss, &clock, &dir) {
                Ok(store) => store,
                // Power was lost while the first open created the database: redb writes its
                // magic number last, so the image is not a database yet and holds nothing.
                // (On a file path the creation is atomic instead: `tests/create.rs`.)
                Err(Error::NotSessionDb { .. }) if !initialised => {
                    cases += 1;
                    continue;
                }
                Err(e) => panic!("reopen after power loss at sync {at} ({torn:?}): {e:?}"),
            };
            let what = format!("power loss at sync {at}/{total}, {torn:?}");
            match &failed {
                Some((step, would, _)) => check(&store, &acked, Some(would), Some(*step), &what),
                None => check(&store, &acked, None, None, &what),
            }
            // The recovered store takes writes.
            let c = store.create(b"after", b"").unwrap();
            assert!(store.exists(&c.id).unwrap());
            cases += 1;
        }
    }
    eprintln!("power loss: {total} sync points × 4 torn-write variants = {cases} cases");
}

#[test]
fn io_errors_are_typed_and_lose_nothing_acknowledged() {
    // Count the operations of the whole workload, then fail each of a spread of them.
    let dir = tempfile::tempdir().unwrap();
    let disk = FaultyDisk::new();
    let clock = ManualClock::new(T0);
    let store = open(&disk, &clock, &dir).unwrap();
    let opened = disk.ops();
    assert!(run_until_error(&store, &clock).1.is_none());
    let total = disk.ops() - opened;
    drop(store);

    let step = (total / 60).max(1);
    let mut cases = 0;
    for how in [Persistence::Transient, Persistence::Persistent] {
        for n in (1..=total).step_by(usize::try_from(step).unwrap()) {
            let dir = tempfile::tempdir().unwrap();
            let disk = FaultyDisk::new();
            let clock = ManualClock::new(T0);
            let store = open(&disk, &clock, &dir).unwrap();
            disk.fail_after(n, how);
            let (acked, failed) = run_until_error(&store, &clock);
            if let Some((_, _, err)) = &failed {
                assert!(
                    matches!(err, Error::Storage(_) | Error::Io(_) | Error::NeedsReopen),
                    "{how:?} error at op {n}: untyped {err:?}"
                );
            }
            // After a transient error the same store goes on (reopening the file itself if
            // redb stopped its handle).
            if how == Persistence::Transient {
                let c = store.create(b"goes on", b"").unwrap_or_else(|e| {
                    panic!("{how:?} error at op {n}: the store did not go on: {e:?}")
                });
                assert!(store.delete(&c.id).unwrap());
            }
            // A fresh open on the same disk recovers as well.
            drop(store);
            if how == Persistence::Persistent {
                assert!(open(&disk, &clock, &dir).is_err(), "open on a dead device");
                disk.heal();
            }
            let store = open(&disk, &clock, &dir).unwrap();
            let what = format!("{how:?} i/o error at op {n}/{total}");
            match &failed {
                Some((step, would, _)) => {
                    check(&store, &acked, Some(would), Some(*step), &what);
                    cases += 1;
                }
                // The error hit a read that a retry absorbed, or came after the last step.
                None => check(&store, &acked, None, None, &what),
            }
        }
    }
    assert!(cases > 20, "only {cases} cases hit a step");
    eprintln!("i/o errors: {cases} cases over {total} operations");
}

#[test]
fn a_full_disk_is_disk_full_and_recovers_when_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let disk = FaultyDisk::new();
    let clock = ManualClock::new(T0);
    let store = open(&disk, &clock, &dir).unwrap();
    disk.set_capacity(Some(disk.live_image().len() as u64 + (256 << 10)));
    let data = vec![7u8; 16 << 10];
    let mut kept = Vec::new();
    let err = loop {
        match store.create(&data, b"") {
            Ok(c) => kept.push(c),
            Err(e) => break e,
        }
        assert!(kept.len() < 1000, "the capped disk never filled");
    };
    assert!(matches!(err, Error::DiskFull(_)), "a full disk gave {err:?}");
    assert!(err.to_string().contains("disk full"), "{err}");
    assert!(!kept.is_empty());
    // Still full: later writes fail with a typed error too, never a panic; reads answer. Each
    // holds more than the disk's whole headroom, so none can fit: a create of `data` itself
    // might, in pages the failed one left free (format 2 creates dirty fewer pages).
    let big = vec![7u8; 512 << 10];
    for _ in 0..3 {
        let again = store.create(&big, b"").unwrap_err();
        assert!(matches!(again, Error::DiskFull(_)), "{again:?}");
    }
    assert_eq!(store.load(&kept[0].id, &kept[0].token).unwrap().session_data, data);

    // Space returns: the same store goes on (it reopens the file by itself).
    disk.set_capacity(None);
    let after = store.create(&data, b"").unwrap();
    for c in kept.iter().chain([&after]) {
        assert_eq!(store.load(&c.id, &c.token).unwrap().session_data, data);
    }
    assert_eq!(store.count().unwrap(), kept.len() as u64 + 1);
    assert!(store.verify().unwrap().is_clean());
    // And a fresh open sees the same.
    drop(store);
    let store = open(&disk, &clock, &dir).unwrap();
    assert_eq!(store.count().unwrap(), kept.len() as u64 + 1);
}

#[test]
fn after_an_io_error_in_a_commit_the_store_reopens_the_file_itself() {
    let dir = tempfile::tempdir().unwrap();
    let disk = FaultyDisk::new();
    let clock = ManualClock::new(T0);
    let store = open(&disk, &clock, &dir).unwrap();
    let kept = store.create(b"kept", b"").unwrap();
    // From the next operation on the device fails.
    disk.fail_after(1, Persistence::Persistent);
    let err = store.create(b"lost", b"").unwrap_err();
    assert!(matches!(err, Error::Io(_) | Error::Storage(_)), "{err:?}");
    // redb stopped its handle; the reopen fails while the device does: a typed error.
    let err = store.create(b"lost too", b"").unwrap_err();
    assert!(matches!(err, Error::Io(_) | Error::Storage(_) | Error::Panicked { .. }), "{err:?}");
    // The device recovers: the same store reopens the file and goes on.
    disk.heal();
    let after = store.create(b"after", b"").unwrap();
    assert_eq!(store.load(&kept.id, &kept.token).unwrap().session_data, b"kept");
    assert_eq!(store.load(&after.id, &after.token).unwrap().session_data, b"after");
    assert_eq!(store.count().unwrap(), 2, "the failed creates left nothing");
    assert!(store.verify().unwrap().is_clean());
}

/// `FaultyDisk::discard` frees the images (for long fuzz runs, where a store that met an I/O
/// error leaks its handle and the backend with it) and fails every later operation, also for
/// a store still open on the disk.
#[test]
fn a_discarded_disk_holds_nothing_and_fails_every_operation() {
    let disk = FaultyDisk::new();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path().join("s.redb"))
        .sharing(Sharing::SingleProcess)
        .backend(disk.backend())
        .cleanup_interval(None)
        .open()
        .unwrap();
    store.create(b"data", b"state").unwrap();
    assert!(!disk.live_image().is_empty() && !disk.durable_image().is_empty());
    disk.discard();
    assert!(disk.live_image().is_empty() && disk.durable_image().is_empty());
    assert_eq!(disk.unsynced_writes(), 0);
    assert!(disk.is_dead());
    let err = store.create(b"more", b"").unwrap_err();
    assert!(matches!(err, Error::Storage(_) | Error::Io(_) | Error::NeedsReopen), "{err:?}");
}
