//! Races between tabs on Redis (issue 18's security review), between engines as two web
//! servers would race, in threads and in real processes: a log-in (regenerate) against a
//! log-out (`revoke_named` with the old cookie) of one session leaves no live session reachable
//! from either cookie; a save against a regenerate either lands in the session that becomes the
//! successor or is refused, and never writes into the retired id.
#![cfg(feature = "redis")]

mod common;

use std::process::{Command, Stdio};
use std::sync::Barrier;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::redis::{RedisServer, redis_available, shared_server};
use sessiondb::{Created, Engine, Error, NewSession, RedisEngine, Save, SecureToken, SessionId};

const FORWARD: Duration = Duration::from_secs(30);

fn engine(url: &str, prefix: &str) -> RedisEngine {
    RedisEngine::builder(url).prefix(prefix).open().expect("open")
}

/// Whether the cookie `(id, token)` reaches a live session, forwarded or not.
fn reaches(e: &RedisEngine, id: &SessionId, token: &SecureToken) -> bool {
    match e.load(id, token) {
        Ok(_) => true,
        Err(Error::Rotated { successor, token }) => e.load(&successor, &token).is_ok(),
        Err(_) => false,
    }
}

/// Whether the hash of `id` exists (a write into a retired id would create it again).
fn hash_exists(url: &str, prefix: &str, id: &SessionId) -> bool {
    let port = url.rsplit(':').next().unwrap().parse().unwrap();
    common::redis::cli(port, &["exists", &format!("{prefix}:{{{id}}}")]) == "1"
}

/// The cookie a log-in (regenerate) gave, if it succeeded.
type Next = Option<(SessionId, SecureToken)>;

fn next_of(login: &Result<Created, Error>) -> Next {
    login.as_ref().ok().map(|c| (c.id.clone(), c.token.clone()))
}

/// Checks one log-in/log-out race's outcome.
fn check_logout(e: &RedisEngine, c: &Created, login: &Next, logout: &str) {
    assert!(!reaches(e, &c.id, &c.token), "the old cookie reaches a live session ({logout})");
    if let Some((id, token)) = login {
        assert!(!reaches(e, id, token), "the new cookie survived the log-out ({logout})");
    }
}

/// Checks one save/regenerate race's outcome: `saved` the save's result, `data` what it wrote.
fn check_save(
    e: &RedisEngine,
    (url, prefix): (&str, &str),
    c: &Created,
    login: &Next,
    saved: bool,
    data: &[u8],
) {
    match login {
        Some((id, token)) => {
            assert!(!hash_exists(url, prefix, &c.id), "a write recreated the retired id");
            let got = e.load(id, token).expect("the successor");
            if saved {
                assert_eq!(got.session_data, data, "an acknowledged save is not in the successor");
            }
        }
        None => panic!("a regenerate failed"),
    }
}

#[test]
fn log_in_against_log_out_in_threads_leaves_nothing_live() -> Result<(), Error> {
    if !redis_available() {
        return Ok(());
    }
    let url = shared_server().url();
    let (a, b) = (engine(&url, "tabs"), engine(&url, "tabs"));
    let mut counts = [0u32; 4];
    for _ in 0..300 {
        let c = a.create_with(NewSession::new(b"data", b"state").user(b"ann"))?;
        a.load(&c.id, &c.token)?; // a remembers it, as a web server after a request
        let barrier = Barrier::new(2);
        let (login, logout) = std::thread::scope(|s| {
            let login = s.spawn(|| {
                barrier.wait();
                a.regenerate(&c.id, &c.token, FORWARD)
            });
            let logout = s.spawn(|| {
                barrier.wait();
                b.revoke_named(vec![(c.id.clone(), c.token.clone(), None)])
            });
            (login.join().unwrap(), logout.join().unwrap())
        });
        counts[usize::from(login.is_ok()) * 2 + usize::from(matches!(logout, Ok(1)))] += 1;
        check_logout(&a, &c, &next_of(&login), &format!("{logout:?}"));
        assert!(a.user_sessions(b"ann")?.is_empty(), "a revoked session is still listed");
    }
    println!("(login ok, logout revoked) counts [--, -r, l-, lr]: {counts:?}");
    Ok(())
}

#[test]
fn a_save_against_a_regenerate_in_threads_lands_in_the_successor_or_is_refused() -> Result<(), Error>
{
    if !redis_available() {
        return Ok(());
    }
    let url = shared_server().url();
    let (a, b) = (engine(&url, "saves"), engine(&url, "saves"));
    let mut landed = 0;
    for i in 0..300 {
        let c = a.create_with(NewSession::new(b"data", b"state"))?;
        let version = b.load(&c.id, &c.token)?.version; // b saves on what it loaded
        let data = format!("save {i}").into_bytes();
        let barrier = Barrier::new(2);
        let (login, saved) = std::thread::scope(|s| {
            let login = s.spawn(|| {
                barrier.wait();
                a.regenerate(&c.id, &c.token, FORWARD)
            });
            let saved = s.spawn(|| {
                barrier.wait();
                b.store_state(&c.id, &c.token, Save::new(version, &data, b"next state"))
            });
            (login.join().unwrap(), saved.join().unwrap())
        });
        match &saved {
            Ok(_) => landed += 1,
            Err(Error::Rotated { .. } | Error::Conflict { .. }) => {}
            Err(other) => panic!("save: {other:?}"),
        }
        check_save(&a, (&url, "saves"), &c, &next_of(&login), saved.is_ok(), &data);
    }
    println!("{landed} of 300 saves landed before the rotation");
    Ok(())
}

/// A worker process (run by `real_processes_race_log_ins_against_log_outs_and_saves`): reads
/// `i id token` lines, waits for the start time, then for each session does `MODE`
/// (`login`, `logout` or `save`) and prints `i ok [id token]` or `i err <error>`.
#[test]
#[ignore = "a child process of another test"]
fn race_worker() {
    let var = |name: &str| std::env::var(name).expect(name);
    let e = engine(&var("RACE_URL"), &var("RACE_PREFIX"));
    let start: u128 = var("RACE_START").parse().unwrap();
    let sessions: Vec<(String, SessionId, SecureToken)> = var("RACE_SESSIONS")
        .lines()
        .map(|l| {
            let mut w = l.split(' ');
            let (i, id, token) = (w.next().unwrap(), w.next().unwrap(), w.next().unwrap());
            (i.to_owned(), SessionId::parse(id).unwrap(), SecureToken::parse(token).unwrap())
        })
        .collect();
    let loaded: Vec<u64> =
        sessions.iter().map(|(_, id, t)| e.load(id, t).map_or(0, |g| g.version)).collect();
    while SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() < start {
        std::thread::sleep(Duration::from_millis(1));
    }
    let mode = var("RACE_MODE");
    // A barrier per session on the server, so that both workers act on it at the same moment.
    let client = redis::Client::open(var("RACE_URL")).unwrap();
    let mut barrier = client.get_connection().unwrap();
    for ((i, id, token), version) in sessions.iter().zip(loaded) {
        let key = format!("barrier:{}:{i}", var("RACE_PREFIX"));
        let _: i64 = redis::cmd("INCR").arg(&key).query(&mut barrier).unwrap();
        while redis::cmd("GET").arg(&key).query::<i64>(&mut barrier).unwrap() < 2 {
            std::hint::spin_loop();
        }
        let line = match mode.as_str() {
            "login" => match e.regenerate(id, token, FORWARD) {
                Ok(c) => format!("{i} ok {} {}", c.id, c.token.as_str()),
                Err(err) => format!("{i} err {err:?}"),
            },
            "logout" => match e.revoke_named(vec![(id.clone(), token.clone(), None)]) {
                Ok(n) => format!("{i} ok {n}"),
                Err(err) => format!("{i} err {err:?}"),
            },
            _ => match e.store_state(
                id,
                token,
                Save::session_only(version, format!("save {i}").as_bytes()),
            ) {
                Ok(_) => format!("{i} ok"),
                Err(err) => format!("{i} err {err:?}"),
            },
        };
        println!("RACE {line}");
    }
}

/// Runs two workers at once on `sessions`, in `modes`; their answers by session.
fn race(url: &str, prefix: &str, sessions: &[Created], modes: [&str; 2]) -> Vec<[String; 2]> {
    let list: Vec<String> = sessions
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{i} {} {}", c.id, c.token.as_str()))
        .collect();
    let start = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() + 1500;
    let children: Vec<_> = modes
        .iter()
        .map(|mode| {
            Command::new(std::env::current_exe().unwrap())
                .args(["--ignored", "--exact", "race_worker", "--test-threads=1", "--nocapture"])
                .env("RACE_URL", url)
                .env("RACE_PREFIX", prefix)
                .env("RACE_START", start.to_string())
                .env("RACE_SESSIONS", list.join("\n"))
                .env("RACE_MODE", mode)
                .stdout(Stdio::piped())
                .spawn()
                .expect("spawn a worker")
        })
        .collect();
    let outs: Vec<Vec<String>> = children
        .into_iter()
        .map(|child| {
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success(), "a worker failed");
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.lines().filter_map(|l| l.split_once("RACE ")).map(|(_, a)| a.to_owned()).collect()
        })
        .collect();
    assert!(outs.iter().all(|o| o.len() == sessions.len()), "a worker did not answer for each");
    (0..sessions.len()).map(|i| [outs[0][i].clone(), outs[1][i].clone()]).collect()
}

/// A worker's log-in answer.
fn login_result(line: &str) -> Next {
    let words: Vec<&str> = line.split(' ').collect();
    (words[1] == "ok")
        .then(|| (SessionId::parse(words[2]).unwrap(), SecureToken::parse(words[3]).unwrap()))
}

#[test]
fn real_processes_race_log_ins_against_log_outs_and_saves() -> Result<(), Error> {
    if !redis_available() {
        return Ok(());
    }
    let server = RedisServer::start(&[]);
    let url = server.url();
    let e = engine(&url, "procs");
    let n = 200;
    let sessions: Vec<Created> = (0..n)
        .map(|_| e.create_with(NewSession::new(b"data", b"state")))
        .collect::<Result<_, _>>()?;
    let answers = race(&url, "procs", &sessions, ["login", "logout"]);
    let mut logins = 0;
    for (c, [login, logout]) in sessions.iter().zip(&answers) {
        let next = login_result(login);
        logins += usize::from(next.is_some());
        check_logout(&e, c, &next, logout);
    }
    println!("processes: {logins} of {n} log-ins succeeded before their log-out");
    let e = engine(&url, "procs2");
    let sessions: Vec<Created> = (0..n)
        .map(|_| e.create_with(NewSession::new(b"data", b"state")))
        .collect::<Result<_, _>>()?;
    let answers = race(&url, "procs2", &sessions, ["login", "save"]);
    let mut landed = 0;
    for (i, (c, [login, save])) in sessions.iter().zip(&answers).enumerate() {
        let saved = save.split(' ').nth(1) == Some("ok");
        assert!(saved || save.contains("Rotated") || save.contains("Conflict"), "{save}");
        landed += usize::from(saved);
        let data = format!("save {i}").into_bytes();
        check_save(&e, (&url, "procs2"), c, &login_result(login), saved, &data);
    }
    println!("processes: {landed} of {n} saves landed before the rotation");
    Ok(())
}
