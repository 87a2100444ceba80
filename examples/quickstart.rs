//! The main job of sessiondb: many processes share one session file.
//!
//! ```text
//! cargo run --release --example quickstart [PATH]      (default: ./sessions.redb)
//! ```
//!
//! The parent opens (or creates) the store, then re-executes itself as 4 child processes that
//! work on the same file at the same time, as CGI programs or pre-fork workers would: each
//! creates sessions, saves states (adding new ones and overwriting the latest), goes back to
//! an older state, and guards its saves with the version it read. All of them also increment
//! one shared counter session from two threads each — one thread under the cross-process
//! session lock, the other through the merge function — and no increment is lost. Then the
//! parent shows expiry
//! on a second handle with a hand-moved clock, and prints what the file holds.
//!
//! Run it again and the new sessions join those of the previous runs.

#![warn(clippy::pedantic)]

use std::env;
use std::error::Error;
use std::ffi::OsString;
use std::path::Path;
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::time::Duration;

use sessiondb::{
    Clock, Error as DbError, ManualClock, Save, SecureToken, SessionId, Store, SystemClock,
};

/// Errors of this program; `Send` so that they cross threads.
type BoxError = Box<dyn Error + Send + Sync>;

/// How many child processes share the file.
const CHILDREN: u32 = 4;
/// How many sessions each child creates.
const SESSIONS_PER_CHILD: u32 = 2;
/// How many times each of a child's two threads increments the shared counter.
const INCREMENTS: u64 = 5;
/// The hidden first argument that makes this program a child.
const CHILD_FLAG: &str = "--child";
/// Idle timeout and grace period of the expiry demonstration.
const IDLE: Duration = Duration::from_secs(30 * 60);
const GRACE: Duration = Duration::from_secs(10 * 60);

fn main() -> ExitCode {
    match try_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("quickstart: error: {err}");
            let mut source = err.source();
            while let Some(cause) = source {
                eprintln!("  caused by: {cause}");
                source = cause.source();
            }
            ExitCode::FAILURE
        }
    }
}

fn try_main() -> Result<(), BoxError> {
    let args: Vec<OsString> = env::args_os().skip(1).collect();
    match args.as_slice() {
        [flag, n, path, counter] if flag == CHILD_FLAG => {
            let n = n.to_str().and_then(|n| n.parse().ok()).ok_or("bad child number")?;
            let (id, token) =
                counter.to_str().and_then(|c| c.split_once(':')).ok_or("bad counter")?;
            let counter = (SessionId::parse(id)?, SecureToken::parse(token)?);
            let store = Store::open(path)?;
            std::thread::scope(|s| {
                let locked = s.spawn(|| count(&store, &counter, true));
                let merged = s.spawn(|| count(&store, &counter, false));
                child(n, &store)?;
                locked.join().map_err(|_| "counter thread panicked")??;
                merged.join().map_err(|_| "counter thread panicked")??;
                println!("child {n}: counted {} times, from two threads", 2 * INCREMENTS);
                let b = store.stats().batches;
                println!(
                    "child {n}: {} commits held {} writes; {} of its writes committed by \
                     another process, {} of theirs by this one (shared commits)",
                    b.commits, b.operations, b.handed_off, b.taken_in
                );
                Ok(())
            })
        }
        [] => parent(Path::new("sessions.redb")),
        [path] if path != "-h" && path != "--help" => parent(Path::new(path)),
        _ => Err("usage: quickstart [PATH]".into()),
    }
}

fn parent(path: &Path) -> Result<(), BoxError> {
    // The default sharing is `Sharing::MultiProcess`: other processes may open the file too.
    let store = Store::open(path)?;
    println!(
        "parent: opened {} (multi-process: {}, {} sessions already in it)",
        path.display(),
        store.is_multiprocess_safe(),
        store.count()?
    );

    // A session all the children count in at once.
    let counter = store.create(&0u64.to_le_bytes(), b"")?;
    let counter_arg = format!("{}:{}", counter.id, counter.token.as_str());

    // Each child is this program again: a separate process that opens the file itself.
    let exe = env::current_exe()?;
    let mut children = Vec::new();
    let mut failures = Vec::new();
    for n in 1..=CHILDREN {
        match Command::new(&exe)
            .arg(CHILD_FLAG)
            .arg(n.to_string())
            .arg(path)
            .arg(&counter_arg)
            .spawn()
        {
            Ok(process) => children.push((n, process)),
            Err(e) => failures.push(format!("child {n} did not start: {e}")),
        }
    }
    for (n, mut process) in children {
        match process.wait() {
            Ok(status) if status.success() => {}
            Ok(status) => failures.push(format!("child {n} failed ({status})")),
            Err(e) => failures.push(format!("child {n}: {e}")),
        }
    }
    if !failures.is_empty() {
        return Err(failures.join("; ").into());
    }
    println!("parent: all {CHILDREN} children done, {} sessions in the file", store.count()?);
    let total = u64_of(&store.load(&counter.id, &counter.token)?.session_data)?;
    let expected = u64::from(CHILDREN) * 2 * INCREMENTS;
    println!("parent: shared counter = {total} (expected {expected}: no increment lost)");
    if total != expected {
        return Err(format!("the shared counter lost {} increments", expected - total).into());
    }

    expiry(path)?;
    summary(&store)
}

fn u64_of(data: &[u8]) -> Result<u64, BoxError> {
    Ok(u64::from_le_bytes(data.try_into().map_err(|_| "the counter is not 8 bytes")?))
}

/// Increments the shared counter `INCREMENTS` times: serialised by the session lock (PHP-style,
/// but with a bounded wait), or optimistically, with a merge when another save came first.
fn count(
    store: &Store,
    (id, token): &(SessionId, SecureToken),
    with_lock: bool,
) -> Result<(), BoxError> {
    for _ in 0..INCREMENTS {
        let _lock = if with_lock { Some(store.lock(id, Duration::from_secs(10))?) } else { None };
        loop {
            let got = store.load(id, token)?;
            let next = (u64_of(&got.session_data)? + 1).to_le_bytes();
            let save = Save::new(got.version, &next, b"").same_state(true);
            // On a conflict: their value + 1. (The merging threads do not take the lock, so
            // even a locked thread can meet their saves.)
            let merged = store.store_state_merging(id, token, save, |_ours, theirs| {
                let theirs = u64::from_le_bytes(theirs.try_into().unwrap_or([0; 8]));
                (theirs + 1).to_le_bytes().to_vec()
            });
            match merged {
                Ok(_) => break,
                // Every merge attempt met a newer save (8 by default): start over.
                Err(DbError::Conflict { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

/// One child process: a couple of sessions, each through a few requests.
fn child(n: u32, store: &Store) -> Result<(), BoxError> {
    for s in 1..=SESSIONS_PER_CHILD {
        let user = format!("user=child{n}.{s}");
        let user = user.as_bytes();

        // A new session: `id` and `token` would go to the browser in cookies.
        let created = store.create(user, b"page 0")?;
        let (id, token) = (&created.id, &created.token);
        println!("child {n}: created {id} (state {})", created.state_id);

        // Later requests: each saves a new state, guarded by the version it read.
        let mut version = created.version;
        for page in 1..=3 {
            let page = format!("page {page}");
            let save = Save::new(version, user, page.as_bytes());
            let stored = store.store_state(id, token, save)?;
            version = stored.version;
            println!("child {n}: {id}: stored state {} (version {version})", stored.state_id);
        }

        // A form posted back to the same page: overwrite the latest state in place.
        let save = Save::new(version, user, b"page 3 + form").same_state(true);
        let stored = store.store_state(id, token, save)?;
        println!(
            "child {n}: {id}: overwrote state {} in place (version {})",
            stored.state_id, stored.version
        );

        // The back button: an older state is still there.
        let back = store.fetch_state(id, token, Some(1))?;
        println!(
            "child {n}: {id}: back to state {} of {}..={}: {:?}",
            back.state_id,
            back.oldest_state_id,
            back.latest_state_id,
            String::from_utf8_lossy(&back.state_data)
        );

        // Going on from the old page adds a state after the latest one.
        let save = Save::new(back.version, user, b"page 1 -> page 4");
        let stored = store.store_state(id, token, save)?;
        println!(
            "child {n}: {id}: stored state {} from state {} (version {})",
            stored.state_id, back.state_id, stored.version
        );

        // A second tab that read the same version saves too late: it is refused, nothing written.
        let stale = Save::new(back.version, user, b"other tab");
        match store.store_state(id, token, stale) {
            Err(DbError::Conflict { expected, found }) => println!(
                "child {n}: {id}: stale save refused (expected version {expected}, found {found})"
            ),
            Err(e) => return Err(e.into()),
            Ok(_) => return Err("a stale save was accepted".into()),
        }
    }
    Ok(())
}

/// Expiry, on a second handle whose clock we move by hand (30 minutes idle, 10 minutes grace:
/// the defaults), so the demonstration does not depend on how fast this machine is. Its clock
/// starts 46 minutes in the past and ends 1 minute before now, so its clean-up cannot remove
/// the sessions the children just wrote.
fn expiry(path: &Path) -> Result<(), BoxError> {
    // The clock moves 30 + 5 + 10 minutes below: start 46 minutes back, end 1 minute back.
    let start = SystemClock.now_ms().saturating_sub(millis(IDLE + GRACE + GRACE / 2) + 60_000);
    let clock = ManualClock::new(start);
    let store = Store::builder(path)
        .clock(Arc::new(clock.clone()))
        .idle_timeout(Some(IDLE))
        .grace_period(GRACE)
        .open()?;
    let created = store.create(b"cart=3 items", b"checkout")?;
    let (id, token) = (&created.id, &created.token);
    println!("expiry: created {id} (idle timeout 30 min, grace 10 min)");
    let live = store.load(id, token)?;
    println!("expiry: load at once: live, state {}", live.state_id);

    clock.advance(millis(IDLE + GRACE / 2));
    match store.load(id, token) {
        Err(DbError::Expired { data }) => println!(
            "expiry: load 35 min later: Error::Expired, data {:?} handed back",
            String::from_utf8_lossy(&data)
        ),
        other => return Err(format!("expected Error::Expired, got {other:?}").into()),
    }

    clock.advance(millis(GRACE));
    match store.load(id, token) {
        Err(DbError::NotFound) => {
            println!("expiry: load 45 min later: Error::NotFound (past the grace period)");
        }
        other => return Err(format!("expected Error::NotFound, got {other:?}").into()),
    }

    // Sessions of earlier runs are swept too once they are past their grace window.
    let report = store.cleanup()?;
    println!(
        "expiry: cleanup removed {} session(s), {} state(s), in {} batch(es)",
        report.sessions, report.states, report.batches
    );
    Ok(())
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// What the file holds now.
fn summary(store: &Store) -> Result<(), BoxError> {
    let info = store.info()?;
    println!();
    println!(
        "{}: format {}, {} sessions, {} states, {} expiry entries, {} bytes",
        store.path().display(),
        info.format_version,
        info.sessions,
        info.states,
        info.expiry_entries,
        info.file_size
    );
    println!("{:<32}  version  states  status", "session");
    for session in store.sessions() {
        let s = session?;
        let status = s.status;
        let kept = format!("{}..={}", s.oldest_state, s.latest_state);
        println!("{:<32}  {:>7}  {kept:>6}  {status}", s.id, s.version);
    }
    Ok(())
}
