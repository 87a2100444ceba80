//! Damage to the whole file: truncation at many offsets, single-bit flips across it, each page
//! zeroed in turn, another program's file, an empty file. Each damaged copy goes through the
//! library (read-only and read-write opens, a load of every session, `verify`) and through
//! `dump --verify`: every outcome is a value equal to what was stored, a typed error or a
//! clean repair; never a panic, a hang or a wrong value.
//!
//! redb 4.5 itself panics on some damaged pages (slice indexing with a length read from the
//! page, e.g. `tree_store/btree_base.rs:283`). sessiondb catches those in the caller's thread
//! and returns `Error::Panicked`; a panic hook installed here records where every panic
//! happened, and the tests fail on any panic outside redb's own source.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Once, mpsc};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use sessiondb::{Error, ManualClock, SecureToken, SessionId, Sharing, Store};

mod common;
use common::T0;

/// Sessions in the fixture, each with data of its own.
const SESSIONS: usize = 40;
/// The longest a case may take before it counts as a hang.
const HANG: Duration = Duration::from_secs(30);

struct Fixture {
    bytes: Vec<u8>,
    sessions: Vec<(SessionId, SecureToken, Vec<u8>)>,
}

fn data_of(i: usize) -> Vec<u8> {
    format!("session {i} ").repeat(20).into_bytes()
}

fn fixture() -> Fixture {
    let db = common::temp_db();
    let clock = ManualClock::new(T0);
    let store = common::builder(&db.path, &clock).cleanup_interval(None).open().unwrap();
    let mut sessions = Vec::new();
    for i in 0..SESSIONS {
        let c = store.create(&data_of(i), format!("state of {i}").as_bytes()).unwrap();
        sessions.push((c.id, c.token, data_of(i)));
    }
    let gone = store.create(b"revoked", b"").unwrap();
    store.revoke(&gone.id).unwrap();
    drop(store);
    Fixture { bytes: std::fs::read(&db.path).unwrap(), sessions }
}

thread_local! {
    /// The panics of this thread, `file:line: message`, while it records them.
    static PANICS: RefCell<Option<Vec<String>>> = const { RefCell::new(None) };
}

/// Installs (once) a hook that records the panics of recording threads and prints the others
/// (a failed assertion) as the default hook does.
fn install_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let recorded = PANICS.with_borrow_mut(|panics| {
                let panics = panics.as_mut()?;
                let place =
                    info.location().map_or("?".into(), |l| format!("{}:{}", l.file(), l.line()));
                let payload = info.payload();
                let msg = payload
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_default();
                panics.push(format!("{place}: {msg}"));
                Some(())
            });
            if recorded.is_none() {
                default(info);
            }
        }));
    });
}

/// Runs `f` recording its panics; its result (`Err` if a panic escaped) and the panics.
fn recording<T>(f: impl FnOnce() -> T) -> (std::thread::Result<T>, Vec<String>) {
    install_hook();
    PANICS.set(Some(Vec::new()));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    (result, PANICS.take().unwrap_or_default())
}

/// Whether a panic location is inside redb's source (cargo's registry, or the patched copy).
fn in_redb(panic: &str) -> bool {
    // The registry's copy, or the patched one under vendor/redb/ (vendor/redb/PATCHES.md).
    panic.contains("/redb-") || panic.contains("vendor/redb/")
}

/// How one damaged copy went.
#[derive(Default, Debug)]
struct Tally {
    cases: u64,
    /// Outcomes by name: `open ro: NotSessionDb`, `load: Corrupted`, `verify: 3 problems`...
    outcomes: BTreeMap<String, u64>,
}

impl Tally {
    fn saw(&mut self, what: String) {
        *self.outcomes.entry(what).or_default() += 1;
    }
}

/// The variant name of an error, for the tally.
fn name(e: &Error) -> String {
    let debug = format!("{e:?}");
    let end = debug.find([' ', '(', '{']).unwrap_or(debug.len());
    debug[..end].to_owned()
}

/// Loads every fixture session from `store`: each is its data or a typed error.
fn load_all(store: &Store, f: &Fixture, how: &str, out: &mut Vec<String>) {
    for (id, token, data) in &f.sessions {
        match store.load(id, token) {
            Ok(got) => assert_eq!(&got.session_data, data, "{how}: a wrong value for {id}"),
            Err(e) => out.push(format!("{how} load: {}", name(&e))),
        }
    }
}

/// The library's view of the damaged file at `path`. Returns the outcomes seen.
fn library(path: &Path, f: &Arc<Fixture>) -> Vec<String> {
    let clock = Arc::new(ManualClock::new(T0));
    let mut out = Vec::new();
    match Store::builder(path).read_only(true).clock(clock.clone()).open() {
        Err(e) => out.push(format!("open ro: {}", name(&e))),
        Ok(store) => {
            if let Err(e) = store.info() {
                out.push(format!("info: {}", name(&e)));
            }
            let unreadable = store.sessions().filter(Result::is_err).count();
            if unreadable > 0 {
                out.push("listing: unreadable records".into());
            }
            match store.verify() {
                Ok(v) if v.is_clean() => out.push("verify: clean".into()),
                Ok(_) => out.push("verify: problems".into()),
                Err(e) => out.push(format!("verify: {}", name(&e))),
            }
            load_all(&store, f, "ro", &mut out);
        }
    }
    let rw = Store::builder(path)
        .sharing(Sharing::SingleProcess)
        .clock(clock)
        .cleanup_interval(None)
        .open();
    match rw {
        Err(e) => out.push(format!("open rw: {}", name(&e))),
        Ok(store) => {
            load_all(&store, f, "rw", &mut out);
            if let Err(e) = store.create(b"new", b"") {
                out.push(format!("create: {}", name(&e)));
            }
        }
    }
    out
}

/// Runs one damaged copy through the library and the dump.
fn case(dir: &Path, f: &Arc<Fixture>, bytes: &[u8], what: &str, tally: &mut Tally) {
    let path: PathBuf = dir.join(format!("case-{}.redb", tally.cases));
    std::fs::write(&path, bytes).unwrap();
    let (tx, rx) = mpsc::channel();
    let (p, fx) = (path.clone(), Arc::clone(f));
    std::thread::spawn(move || {
        let _ = tx.send(recording(|| library(&p, &fx)));
    });
    let (outcomes, panics) = match rx.recv_timeout(HANG) {
        Ok((Ok(outcomes), panics)) => (outcomes, panics),
        Ok((Err(_), panics)) => panic!("{what}: a panic reached the caller: {panics:?}"),
        Err(mpsc::RecvTimeoutError::Timeout | mpsc::RecvTimeoutError::Disconnected) => {
            panic!("{what}: the library hung for {HANG:?}")
        }
    };
    if let Some(ours) = panics.iter().find(|p| !in_redb(p)) {
        panic!("{what}: a panic outside redb: {ours}");
    }
    for p in &panics {
        tally.saw(format!("caught redb panic at {}", p.split(": ").next().unwrap_or(p)));
    }
    for o in outcomes {
        assert!(
            !o.contains("Panicked") || !panics.is_empty(),
            "{what}: Error::Panicked without a panic recorded: {o}"
        );
        tally.saw(o);
    }
    // The dump reads the file as it was damaged, before the read-write open above repaired or
    // initialised it: run it on a fresh copy.
    std::fs::write(&path, bytes).unwrap();
    let out = Command::new(common::example("dump")).arg("--verify").arg(&path).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The default hook prints the panics the dump caught; each must be in redb.
    for line in stderr.lines().filter(|l| l.contains("panicked at")) {
        assert!(in_redb(line), "{what}: dump panicked outside redb: {stderr}");
    }
    let code = out.status.code().unwrap_or_else(|| panic!("{what}: dump killed: {stderr}"));
    assert!((0..=2).contains(&code), "{what}: dump exit {code} (101 is a panic): {stderr}");
    tally.saw(format!("dump --verify exit {code}"));
    tally.cases += 1;
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_dir_all(path.with_extension("redb.locks"));
}

fn report(kind: &str, tally: &Tally) {
    eprintln!("{kind}: {} cases", tally.cases);
    for (what, n) in &tally.outcomes {
        eprintln!("  {n:5}  {what}");
    }
}

#[test]
fn truncation_at_many_offsets() {
    let f = Arc::new(fixture());
    let dir = tempfile::tempdir().unwrap();
    let len = f.bytes.len();
    let mut offsets: Vec<usize> = vec![0, 1, 8, 9, 64, 511, 512, 4095, 4096, 4097, len - 1];
    offsets.extend((1..48).map(|k| len * k / 48));
    offsets.sort_unstable();
    offsets.dedup();
    let mut tally = Tally::default();
    for at in offsets {
        case(dir.path(), &f, &f.bytes[..at], &format!("truncated at {at}"), &mut tally);
    }
    report("truncation", &tally);
}

#[test]
fn single_bit_flips_across_the_file() {
    let f = Arc::new(fixture());
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5e55_10db);
    let mut tally = Tally::default();
    for _ in 0..200 {
        let mut bytes = f.bytes.clone();
        let at = rng.random_range(0..bytes.len());
        let bit = rng.random_range(0..8);
        bytes[at] ^= 1 << bit;
        case(dir.path(), &f, &bytes, &format!("bit {bit} of byte {at} flipped"), &mut tally);
    }
    report("bit flips", &tally);
}

#[test]
fn each_page_zeroed_in_turn() {
    let f = Arc::new(fixture());
    let dir = tempfile::tempdir().unwrap();
    let mut tally = Tally::default();
    for page in 0..f.bytes.len().div_ceil(4096) {
        let mut bytes = f.bytes.clone();
        let end = ((page + 1) * 4096).min(bytes.len());
        bytes[page * 4096..end].fill(0);
        case(dir.path(), &f, &bytes, &format!("page {page} zeroed"), &mut tally);
    }
    report("zeroed pages", &tally);
}

#[test]
fn foreign_and_empty_files() {
    let f = Arc::new(fixture());
    let dir = tempfile::tempdir().unwrap();
    let mut tally = Tally::default();
    let mut sqlite = b"SQLite format 3\0".to_vec();
    sqlite.resize(8192, 0);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(std::iter::repeat_n(0xab, 5000));
    let redb_magic_only = f.bytes[..64].to_vec();
    for (what, bytes) in [
        ("sqlite", sqlite),
        ("png", png),
        ("text", b"user=ann; page=2\n".repeat(400)),
        ("redb header only", redb_magic_only),
        ("zeros", vec![0; 1 << 16]),
        ("empty", Vec::new()),
    ] {
        case(dir.path(), &f, &bytes, what, &mut tally);
    }
    report("foreign files", &tally);
    // The empty file is the one a read-write open may initialise: a sessiondb file after it.
    let empty = dir.path().join("empty.redb");
    std::fs::write(&empty, b"").unwrap();
    let store = Store::builder(&empty).sharing(Sharing::SingleProcess).open().unwrap();
    assert!(store.verify().unwrap().is_clean());
}

#[test]
fn a_truncated_file_is_damaged_with_advice() {
    let f = fixture();
    let db = common::temp_db();
    std::fs::write(&db.path, &f.bytes[..f.bytes.len() / 2]).unwrap();
    let err = Store::builder(&db.path).sharing(Sharing::SingleProcess).open().unwrap_err();
    assert!(matches!(err, Error::Damaged { .. }), "{err:?}");
    assert!(err.to_string().contains("dump --verify"), "{err}");
}
