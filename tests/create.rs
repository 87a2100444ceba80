//! Creating the file is atomic: it appears at its path complete and initialised, or not at all,
//! even when threads and processes race to create it. (A crash while redb creates a file in
//! place would leave one without its magic number, which no later open accepts.)

use std::process::Command;
use std::sync::{Arc, Barrier};

use sessiondb::Store;

mod common;

/// Files beside the database other than itself and its lock directory.
fn leftovers(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "sessions.redb" && n != "sessions.redb.locks")
        .collect()
}

#[test]
fn threads_racing_to_create_share_one_file() {
    let db = common::temp_db();
    let barrier = Arc::new(Barrier::new(8));
    let created: Vec<u64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let (barrier, path) = (Arc::clone(&barrier), db.path.clone());
                s.spawn(move || {
                    barrier.wait();
                    let store = Store::builder(&path).cleanup_interval(None).open().unwrap();
                    store.create(b"x", b"").unwrap();
                    store.info().unwrap().created
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(created.windows(2).all(|w| w[0] == w[1]), "one file, one creation: {created:?}");
    let store = Store::open(&db.path).unwrap();
    assert_eq!(store.count().unwrap(), 8, "every thread's session is in the one file");
    assert!(store.verify().unwrap().is_clean());
    assert_eq!(leftovers(db.dir.path()), Vec::<String>::new());
}

#[test]
#[ignore = "child process of processes_racing_to_create_share_one_file; run by it"]
fn child_create() {
    let path = std::env::var("SESSIONDB_CREATE_PATH").expect("run by the parent test");
    let store = Store::builder(&path).cleanup_interval(None).open().unwrap();
    store.create(b"child", b"").unwrap();
    println!("created {}", store.info().unwrap().created);
}

#[test]
fn processes_racing_to_create_share_one_file() {
    let db = common::temp_db();
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..4)
        .map(|_| {
            Command::new(&exe)
                .args(["--ignored", "--exact", "child_create", "--nocapture", "--test-threads=1"])
                .env("SESSIONDB_CREATE_PATH", &db.path)
                .output_async()
        })
        .collect();
    let mut created = Vec::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "child failed: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = stdout.lines().find_map(|l| l.split("created ").nth(1)).expect("child output");
        created.push(line.trim().to_owned());
    }
    assert!(created.windows(2).all(|w| w[0] == w[1]), "one file, one creation: {created:?}");
    let store = Store::open(&db.path).unwrap();
    assert_eq!(store.count().unwrap(), 4);
    assert!(store.verify().unwrap().is_clean());
    assert_eq!(leftovers(db.dir.path()), Vec::<String>::new());
}

#[test]
fn a_non_database_at_the_path_is_refused_and_kept() {
    let db = common::temp_db();
    std::fs::write(&db.path, vec![0u8; 4096]).unwrap();
    let err = Store::open(&db.path).unwrap_err();
    assert!(matches!(err, sessiondb::Error::NotSessionDb { .. }), "{err:?}");
    assert_eq!(std::fs::read(&db.path).unwrap(), vec![0u8; 4096], "the file is left as it was");
}

/// `Command::spawn` with piped output, so that the children start together.
trait OutputAsync {
    fn output_async(&mut self) -> std::process::Child;
}

impl OutputAsync for Command {
    fn output_async(&mut self) -> std::process::Child {
        self.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }
}
