//! Several real processes create and update sessions in one file at once; every write a child
//! acknowledged is in the file afterwards, and a counter shared by all of them loses no update.
//!
//! The children are this test binary, re-run with `--ignored --exact child_writer` and their
//! instructions in environment variables.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use sessiondb::{Error, Save, SecureToken, SessionId, Store};

mod common;
use common::counter_of;

const CHILDREN: usize = 4;
const SESSIONS_PER_CHILD: usize = 25;
const SAVES_PER_SESSION: usize = 3;
const INCREMENTS_PER_CHILD: u64 = 20;

/// One child: creates and updates its own sessions, and increments the shared counter with
/// optimistic versions. Prints one line, starting with `ack `, per acknowledged (committed) write.
#[test]
#[ignore = "child process of many_processes_write_one_file; run by it"]
fn child_writer() -> Result<(), Error> {
    let path = std::env::var("SESSIONDB_MP_PATH").expect("run by the parent test");
    let me: usize = std::env::var("SESSIONDB_MP_CHILD").unwrap().parse().unwrap();
    let counter_id = SessionId::parse(&std::env::var("SESSIONDB_MP_COUNTER_ID").unwrap())?;
    let counter_token = SecureToken::parse(&std::env::var("SESSIONDB_MP_COUNTER_TOKEN").unwrap())?;
    let store = Store::open(&path)?;
    let mut increments = 0;
    for i in 0..SESSIONS_PER_CHILD {
        let c = store.create(format!("c{me}-s{i}-v1").as_bytes(), b"state 0")?;
        println!("ack CREATED {} {}", c.id, c.token.as_str());
        let mut version = c.version;
        for v in 2..=SAVES_PER_SESSION + 1 {
            let data = format!("c{me}-s{i}-v{v}");
            let save = Save::new(version, data.as_bytes(), data.as_bytes());
            let s = store.store_state(&c.id, &c.token, save)?;
            version = s.version;
            println!("ack SAVED {} {} {} {data}", c.id, s.version, s.state_id);
        }
        if i % 2 == 0 && increments < INCREMENTS_PER_CHILD {
            for _ in 0..2 {
                loop {
                    // Reloaded on every attempt: a conflict means the version read is stale.
                    let got = store.load(&counter_id, &counter_token)?;
                    let next = (counter_of(&got.session_data) + 1).to_le_bytes();
                    let save = Save::new(got.version, &next, b"").same_state(true);
                    match store.store_state(&counter_id, &counter_token, save) {
                        Ok(_) => break,
                        Err(Error::Conflict { .. }) => {}
                        Err(e) => return Err(e),
                    }
                }
                increments += 1;
                println!("ack INCREMENTED");
            }
        }
    }
    Ok(())
}

fn spawn_child(path: &std::path::Path, me: usize, counter: &sessiondb::Created) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "child_writer", "--nocapture", "--test-threads=1"])
        .env("SESSIONDB_MP_PATH", path)
        .env("SESSIONDB_MP_CHILD", me.to_string())
        .env("SESSIONDB_MP_COUNTER_ID", counter.id.as_str())
        .env("SESSIONDB_MP_COUNTER_TOKEN", counter.token.as_str())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn child")
}

#[derive(Default)]
struct Acked {
    token: Option<SecureToken>,
    version: u64,
    state_id: u64,
    data: String,
    /// Every acknowledged state: id → data.
    states: HashMap<u64, String>,
}

#[test]
fn many_processes_write_one_file() -> Result<(), Error> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("shared.redb");
    let store = Store::open(&path)?;
    let counter = store.create(&0u64.to_le_bytes(), b"")?;

    let children: Vec<Child> = (0..CHILDREN).map(|me| spawn_child(&path, me, &counter)).collect();

    // A read-only observer runs beside the writers: counts only grow, reads never fail.
    let observer = Store::builder(&path).read_only(true).open()?;
    let mut last = 0;
    let mut acked: HashMap<String, Acked> = HashMap::new();
    let mut increments = 0u64;
    for mut child in children {
        let out = BufReader::new(child.stdout.take().unwrap());
        for line in out.lines() {
            let line = line?;
            // The harness may print its own words before the child's first line.
            let Some((_, ack)) = line.split_once("ack ") else {
                continue;
            };
            let words: Vec<&str> = ack.split(' ').collect();
            match words.as_slice() {
                ["CREATED", id, token] => {
                    let a = acked.entry((*id).to_string()).or_default();
                    a.token = Some(SecureToken::parse(token)?);
                    a.version = a.version.max(1);
                    a.states.insert(0, "state 0".into());
                }
                ["SAVED", id, version, state, data] => {
                    let a = acked.entry((*id).to_string()).or_default();
                    a.version = version.parse().unwrap();
                    a.state_id = state.parse().unwrap();
                    a.data = (*data).to_string();
                    a.states.insert(a.state_id, a.data.clone());
                }
                ["INCREMENTED"] => increments += 1,
                other => panic!("unexpected line from a child: {other:?}"),
            }
            let n = observer.count()?;
            assert!(n >= last, "count went back from {last} to {n}");
            last = n;
        }
        assert!(child.wait()?.success(), "a child failed");
    }

    assert_eq!(acked.len(), CHILDREN * SESSIONS_PER_CHILD);
    assert_eq!(store.count()?, (CHILDREN * SESSIONS_PER_CHILD + 1) as u64);
    for (id, a) in &acked {
        let got = store.load(&SessionId::parse(id)?, a.token.as_ref().unwrap())?;
        assert_eq!(got.version, a.version, "{id}");
        assert_eq!(got.state_id, a.state_id, "{id}");
        assert_eq!(String::from_utf8(got.session_data).unwrap(), a.data, "{id}");
        assert_eq!(String::from_utf8(got.state_data).unwrap(), a.data, "{id}");
        assert_eq!(a.states.len(), SAVES_PER_SESSION + 1);
        for (state_id, data) in &a.states {
            let got = store.fetch_state(
                &SessionId::parse(id)?,
                a.token.as_ref().unwrap(),
                Some(*state_id),
            )?;
            assert_eq!(String::from_utf8(got.state_data).unwrap(), *data, "{id} state {state_id}");
        }
    }
    assert_eq!(increments, CHILDREN as u64 * INCREMENTS_PER_CHILD);
    let final_counter = counter_of(&store.load(&counter.id, &counter.token)?.session_data);
    assert_eq!(final_counter, increments, "no increment was lost");
    Ok(())
}
