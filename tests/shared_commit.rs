//! The shared commit across processes (docs/concurrency.md, "Shared commit"): single-threaded
//! processes hand their writes to the process leading a commit; nothing is lost or applied
//! twice whatever moment the leader dies at, and a follower never waits longer than its bound.
//!
//! The processes are this test binary, re-run with `--ignored --exact CHILD`. The leader is
//! stopped at a named phase through the `testing` feature's hook (`SESSIONDB_TEST_STOP`,
//! `SESSIONDB_TEST_PAUSE`, see `src/faults.rs`) and killed there with SIGKILL.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use sessiondb::{Created, Error, Save, SecureToken, SessionId, Store};

mod common;
use common::spool::{child, spool_files, var, wait_for};

/// Opens the store the way every process of these tests does: no clean-up thread, and the
/// follower's bound from the environment (milliseconds), 10 s by default.
fn open(path: &Path) -> Store {
    let wait = std::env::var("SC_WAIT_MS").ok().and_then(|w| w.parse().ok()).unwrap_or(10_000);
    Store::builder(path)
        .cleanup_interval(None)
        .shared_commit(Some(Duration::from_millis(wait)))
        .open()
        .expect("open")
}

/// One save at version 1 of the session given in the environment; prints `ack VERSION` once
/// it returned.
#[test]
#[ignore = "child process of the shared commit tests; run by them"]
fn one_save() {
    let store = open(Path::new(&var("SC_PATH")));
    let id = SessionId::parse(&var("SC_ID")).unwrap();
    let token = SecureToken::parse(&var("SC_TOKEN")).unwrap();
    let stored = store.store_state(&id, &token, Save::new(1, b"saved", b"state")).expect("save");
    println!("ack {}", stored.version);
    let b = store.stats().batches;
    println!("stats handed_off={} taken_in={}", b.handed_off, b.taken_in);
}

/// Many saves: of its own session (at the version it knows) and of a counter every process
/// adds to. Prints its batch stats at the end.
#[test]
#[ignore = "child process of the shared commit tests; run by them"]
fn many_saves() {
    let store = open(Path::new(&var("SC_PATH")));
    let counter = SessionId::parse(&var("SC_COUNTER_ID")).unwrap();
    let counter_token = SecureToken::parse(&var("SC_COUNTER_TOKEN")).unwrap();
    let n: u64 = var("SC_N").parse().unwrap();
    let mine = store.create(b"0", b"").expect("create");
    let mut version = mine.version;
    for i in 1..=n {
        let data = i.to_string();
        let save = Save::new(version, data.as_bytes(), data.as_bytes());
        version = store.store_state(&mine.id, &mine.token, save).expect("own save").version;
        // Read-modify-write under the session's lock: no save of the counter can conflict,
        // and one applied twice would make the next one conflict.
        let lock = store.lock(&counter, Duration::from_secs(20)).expect("lock");
        let seen = store.load(&counter, &counter_token).expect("load counter");
        let next = (parse(&seen.session_data) + 1).to_string();
        let save = Save::new(seen.version, next.as_bytes(), b"").same_state(true);
        store.store_state(&counter, &counter_token, save).expect("counter save");
        drop(lock);
    }
    let b = store.stats().batches;
    println!("mine {} {}", mine.id, mine.token.as_str());
    println!(
        "stats handed_off={} taken_in={} commits={} operations={}",
        b.handed_off, b.taken_in, b.commits, b.operations
    );
}

fn parse(bytes: &[u8]) -> u64 {
    std::str::from_utf8(bytes).unwrap().parse().unwrap()
}

/// The lines of a child's stdout, read on a thread of their own.
fn lines(out: ChildStdout) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits (at most 30 s) for a line holding `prefix`, and returns it from there on.
fn expect_line(rx: &mpsc::Receiver<String>, prefix: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            // The harness may have begun the line (`test one_save ... `).
            Ok(line) if line.contains(prefix) => {
                return line[line.find(prefix).unwrap_or(0)..].to_owned();
            }
            Ok(line) => eprintln!("(child) {line}"),
            Err(e) => panic!("no line `{prefix}`: {e}"),
        }
    }
}

/// The spool directories and their files, with their permission bits.
fn spool_modes(db: &Path) -> Vec<(PathBuf, u32)> {
    use std::os::unix::fs::PermissionsExt;
    let locks = PathBuf::from(format!("{}.locks", db.display()));
    let mut out = Vec::new();
    for dir in std::fs::read_dir(locks).unwrap().flatten() {
        if !dir.file_name().to_string_lossy().starts_with("spool-") {
            continue;
        }
        out.push((dir.path(), dir.metadata().unwrap().permissions().mode() & 0o7777));
        for f in std::fs::read_dir(dir.path()).unwrap().flatten() {
            out.push((f.path(), f.metadata().unwrap().permissions().mode() & 0o7777));
        }
    }
    assert!(out.len() > FOLLOWERS, "the spool and its files: {out:?}");
    out
}

const FOLLOWERS: usize = 3;

/// How the leader is treated at `phase`.
#[derive(Clone, Copy, PartialEq)]
enum AtPhase {
    /// Killed there with SIGKILL.
    Kill,
    /// Held there while the followers' bound runs out, then let go.
    HoldPastTheirWait,
}

/// A leader (one save of its own) takes `commit.lock`, and is held there until `FOLLOWERS`
/// processes have handed it their saves; then it goes on to `phase`, where it is killed or
/// held. Every follower must then return its save, applied exactly once.
fn leader_meets(phase: &str, at: AtPhase) {
    let db = common::temp_db();
    let go = tempfile::tempdir().unwrap();
    let setup = Store::builder(&db.path).cleanup_interval(None).open().unwrap();
    let mut sessions: Vec<Created> =
        (0..=FOLLOWERS).map(|_| setup.create(b"", b"").unwrap()).collect();
    let follower_wait = if at == AtPhase::HoldPastTheirWait { "150" } else { "10000" };
    let base = |c: &Created, wait: &str| {
        vec![
            ("SC_PATH", db.path.display().to_string()),
            ("SC_ID", c.id.to_string()),
            ("SC_TOKEN", c.token.as_str().to_owned()),
            ("SC_WAIT_MS", wait.to_owned()),
            ("SESSIONDB_TEST_GO", go.path().display().to_string()),
        ]
    };
    let mine = sessions.remove(0);
    let mut env = base(&mine, "10000");
    let (stop, pause) = match at {
        AtPhase::Kill => (phase.to_owned(), "lead".to_owned()),
        AtPhase::HoldPastTheirWait => (String::new(), format!("lead,{phase}")),
    };
    env.push(("SESSIONDB_TEST_STOP", stop));
    env.push(("SESSIONDB_TEST_PAUSE", pause));
    let mut leader = child("one_save", &env);
    let leader_out = lines(leader.stdout.take().unwrap());
    expect_line(&leader_out, "at lead");

    let mut followers: Vec<(Child, mpsc::Receiver<String>)> = sessions
        .iter()
        .map(|c| {
            let mut f = child("one_save", &base(c, follower_wait));
            let out = lines(f.stdout.take().unwrap());
            (f, out)
        })
        .collect();
    wait_for("every follower's spool file", || spool_files(&db.path) == FOLLOWERS);
    // Spool files hold tokens: private, in a private directory.
    for (path, mode) in spool_modes(&db.path) {
        assert_eq!(mode, if path.is_dir() { 0o700 } else { 0o600 }, "{}", path.display());
    }
    std::fs::write(go.path().join("lead"), b"").unwrap();

    match at {
        AtPhase::Kill => {
            expect_line(&leader_out, &format!("at {phase}"));
            leader.kill().unwrap();
            leader.wait().unwrap();
        }
        AtPhase::HoldPastTheirWait => {
            expect_line(&leader_out, &format!("at {phase}"));
            // Their bound (150 ms) runs out while the leader holds on.
            std::thread::sleep(Duration::from_millis(600));
            std::fs::write(go.path().join(phase), b"").unwrap();
        }
    }
    for (f, out) in &mut followers {
        assert_eq!(expect_line(out, "ack "), "ack 2", "a follower's save returned");
        assert!(f.wait().unwrap().success());
    }
    if at == AtPhase::HoldPastTheirWait {
        assert_eq!(expect_line(&leader_out, "ack "), "ack 2");
        assert!(leader.wait().unwrap().success());
    }
    // Each follower's save applied exactly once: version 2, states 0 and 1 only.
    let check = Store::builder(&db.path).read_only(true).open().unwrap();
    for c in &sessions {
        let (info, states) = check.inspect(&c.id).unwrap().expect("session");
        assert_eq!((info.version, info.latest_state, states.len()), (2, 1, 2), "{phase}");
        assert_eq!(check.load(&c.id, &c.token).unwrap().session_data, b"saved");
    }
    let (info, _) = check.inspect(&mine.id).unwrap().expect("leader's session");
    assert!(info.version <= 2, "the leader's own save at most once");
    assert!(check.verify().unwrap().is_clean(), "{phase}");
    if at == AtPhase::Kill {
        wait_for("the spool to empty", || spool_files(&db.path) == 0);
    }
}

#[test]
fn leader_killed_after_taking_the_writes_before_running_them() {
    leader_meets("taken", AtPhase::Kill);
}

#[test]
fn leader_killed_before_its_commit() {
    leader_meets("before-commit", AtPhase::Kill);
}

#[test]
fn leader_killed_after_its_commit_before_removing_the_files() {
    leader_meets("after-commit", AtPhase::Kill);
}

#[test]
fn leader_killed_after_letting_the_lock_go_before_removing_the_files() {
    leader_meets("after-release", AtPhase::Kill);
}

#[test]
fn followers_whose_wait_runs_out_while_the_leader_holds_their_writes_get_them_once() {
    // The leader read their files and holds redb's write transaction; they stop waiting,
    // remove their files and wait for the transaction; the leader commits their writes; they
    // find the outcomes recorded, and do not run the writes again.
    leader_meets("taken", AtPhase::HoldPastTheirWait);
}

#[test]
fn followers_commit_themselves_when_a_leader_stalls_before_its_transaction() {
    let db = common::temp_db();
    let go = tempfile::tempdir().unwrap();
    let setup = Store::builder(&db.path).cleanup_interval(None).open().unwrap();
    let mine = setup.create(b"", b"").unwrap();
    let other = setup.create(b"", b"").unwrap();
    let env = |c: &Created, wait: &str| {
        vec![
            ("SC_PATH", db.path.display().to_string()),
            ("SC_ID", c.id.to_string()),
            ("SC_TOKEN", c.token.as_str().to_owned()),
            ("SC_WAIT_MS", wait.to_owned()),
            ("SESSIONDB_TEST_GO", go.path().display().to_string()),
            ("SESSIONDB_TEST_PAUSE", "lead".to_owned()),
        ]
    };
    let mut leader = child("one_save", &env(&mine, "10000"));
    let leader_out = lines(leader.stdout.take().unwrap());
    expect_line(&leader_out, "at lead");
    let started = Instant::now();
    let mut follower = child("one_save", &env(&other, "200"));
    let out = lines(follower.stdout.take().unwrap());
    assert_eq!(expect_line(&out, "ack "), "ack 2");
    assert!(follower.wait().unwrap().success());
    let waited = started.elapsed();
    // The leader never let go: the follower's own commit after its 200 ms bound.
    assert!(waited >= Duration::from_millis(200), "{waited:?}");
    std::fs::write(go.path().join("lead"), b"").unwrap();
    assert_eq!(expect_line(&leader_out, "ack "), "ack 2");
    assert!(leader.wait().unwrap().success());
    let (info, _) = setup.inspect(&other.id).unwrap().unwrap();
    assert_eq!((info.version, info.latest_state), (2, 1));
}

#[test]
fn processes_of_one_thread_share_commits_and_lose_no_update() -> Result<(), Error> {
    const PROCS: usize = 6;
    const N: u64 = 40;
    let db = common::temp_db();
    let store = Store::builder(&db.path).cleanup_interval(None).open()?;
    let counter = store.create(b"0", b"")?;
    let children: Vec<Child> = (0..PROCS)
        .map(|_| {
            child(
                "many_saves",
                &[
                    ("SC_PATH", db.path.display().to_string()),
                    ("SC_COUNTER_ID", counter.id.to_string()),
                    ("SC_COUNTER_TOKEN", counter.token.as_str().to_owned()),
                    ("SC_N", N.to_string()),
                ],
            )
        })
        .collect();
    let (mut handed, mut taken) = (0, 0);
    for mut c in children {
        let out = lines(c.stdout.take().unwrap());
        let mine = expect_line(&out, "mine ");
        let stats = expect_line(&out, "stats ");
        assert!(c.wait()?.success());
        let mut parts = mine.split(' ').skip(1);
        let id = SessionId::parse(parts.next().unwrap())?;
        let secret = SecureToken::parse(parts.next().unwrap())?;
        // Every own save landed once: N saves, N new states, the last data.
        let (info, _) = store.inspect(&id)?.expect("child's session");
        assert_eq!((info.version, info.latest_state), (N + 1, N));
        assert_eq!(store.load(&id, &secret)?.session_data, N.to_string().as_bytes());
        for field in stats.split(' ').skip(1) {
            let (k, v) = field.split_once('=').unwrap();
            match k {
                "handed_off" => handed += v.parse::<u64>().unwrap(),
                "taken_in" => taken += v.parse::<u64>().unwrap(),
                _ => {}
            }
        }
    }
    // No update lost, none applied twice.
    let total = store.load(&counter.id, &counter.token)?;
    assert_eq!(parse(&total.session_data), PROCS as u64 * N);
    // Commits were shared: what was handed off was taken in by someone.
    assert!(handed > 0, "no write was handed to another process");
    assert_eq!(handed, taken, "every handed-off write was committed by exactly one leader");
    assert!(store.verify()?.is_clean());
    Ok(())
}
