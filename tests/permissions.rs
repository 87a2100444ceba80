//! Private files: another local user cannot read the database, take or block its locks, or
//! slip in a file of their own; modes hold whatever the umask.
//!
//! The attacks run in a child forked from the test and dropped to `nobody` (setgroups, setgid,
//! then setuid), which needs root. CI runs as root with `SESSIONDB_REQUIRE_ROOT=1`: without
//! root, these tests fail when that variable is set, and otherwise print why they skip.
#![allow(unsafe_code, reason = "libc: geteuid, getpwnam, the setuid child, umask, symlink")]
#![cfg(unix)]

mod common;

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sessiondb::{Error, FileAccess, Store};

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Whether a test that needs root can run here; see the module documentation.
fn root_or_skip(test: &str) -> bool {
    if is_root() {
        return true;
    }
    assert!(
        std::env::var_os("SESSIONDB_REQUIRE_ROOT").is_none(),
        "SESSIONDB_REQUIRE_ROOT is set, but the tests do not run as root"
    );
    eprintln!(
        "skipped: {test}: needs root to run a child as `nobody` (CI sets SESSIONDB_REQUIRE_ROOT=1)"
    );
    false
}

/// The uid and gid of `nobody`.
fn nobody() -> (libc::uid_t, libc::gid_t) {
    let name = CString::new("nobody").unwrap();
    // SAFETY: a valid C string; the entry is read before any other getpw* call.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    assert!(!pw.is_null(), "no user `nobody` on this system");
    // SAFETY: non-null, points at libc's static entry.
    unsafe { ((*pw).pw_uid, (*pw).pw_gid) }
}

fn c_path(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

/// Runs `attack` in a forked child as `nobody` and returns its exit code. The child calls only
/// libc functions on strings prepared before the fork.
fn as_nobody(attack: impl FnOnce() -> i32) -> i32 {
    let (uid, gid) = nobody();
    // SAFETY: the child runs only async-signal-safe libc calls and `_exit`s.
    unsafe {
        let pid = libc::fork();
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let code = if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(gid) != 0
                || libc::setuid(uid) != 0
            {
                200
            } else {
                attack()
            };
            libc::_exit(code);
        }
        let mut status = 0;
        assert_eq!(libc::waitpid(pid, &raw mut status, 0), pid);
        assert!(libc::WIFEXITED(status), "child did not exit normally");
        libc::WEXITSTATUS(status)
    }
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn mode_of(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

fn lock_dir(db: &Path) -> PathBuf {
    let mut name = db.file_name().unwrap().to_os_string();
    name.push(".locks");
    db.with_file_name(name)
}

/// A temporary directory that `nobody` can enter (and, if `shared`, write like `/tmp`: 1777),
/// so that only the store's own modes keep it out.
fn open_dir(shared: bool) -> common::TempDb {
    let db = common::temp_db();
    chmod(db.dir.path(), if shared { 0o1777 } else { 0o755 });
    db
}

/// Opens a store, creates a session and takes every kind of lock file into use: `open.lock`
/// (held while open), a stripe (`lock`) and `cleanup.lock` (`cleanup`).
fn busy_store(path: &Path) -> Store {
    busy_store_with(Store::builder(path))
}

fn busy_store_with(builder: sessiondb::Builder) -> Store {
    let store = builder.cleanup_interval(None).open().expect("open");
    let c = store.create(b"secret session data", b"state").unwrap();
    drop(store.lock(&c.id, Duration::from_secs(5)).unwrap());
    store.cleanup().unwrap();
    store
}

/// The `UnsafeFile` error of opening `path`, with its path and message.
fn unsafe_file(opened: sessiondb::Result<Store>) -> (PathBuf, String) {
    match opened {
        Err(e @ Error::UnsafeFile { .. }) => {
            let message = e.to_string();
            let Error::UnsafeFile { path, .. } = e else { unreachable!() };
            (path, message)
        }
        Err(other) => panic!("expected UnsafeFile, got {other:?}"),
        Ok(_) => panic!("expected UnsafeFile, the store opened"),
    }
}

fn open_plain(path: &Path) -> sessiondb::Result<Store> {
    Store::builder(path).cleanup_interval(None).open()
}

#[test]
fn another_user_cannot_read_write_or_lock_anything_of_a_store() {
    if !root_or_skip("another_user_cannot_read_write_or_lock_anything_of_a_store") {
        return;
    }
    let db = open_dir(false);
    let store = busy_store(&db.path);
    let locks = lock_dir(&db.path);
    let mut targets = vec![db.path.clone(), locks.join("open.lock"), locks.join("cleanup.lock")];
    let stripes: Vec<PathBuf> = std::fs::read_dir(&locks)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("stripe-"))
        .collect();
    assert!(!stripes.is_empty(), "the store's lock took no stripe file");
    targets.extend(stripes);
    for t in &targets {
        assert!(t.exists(), "{} missing", t.display());
    }
    let c_targets: Vec<CString> = targets.iter().map(|p| c_path(p)).collect();
    let c_new = c_path(&locks.join("planted"));
    let c_dir = c_path(&locks);
    assert!(targets.len() <= 5, "one stripe expected: {targets:?}");
    // Positive controls beside the database, which nobody must be able to open: else (an
    // ancestor of the temporary directory nobody cannot search) every attempt below would fail
    // whatever the store's modes.
    let control_file = db.dir.path().join("control");
    std::fs::write(&control_file, b"public").unwrap();
    chmod(&control_file, 0o644);
    let control_dir = db.dir.path().join("control.d");
    std::fs::create_dir(&control_dir).unwrap();
    chmod(&control_dir, 0o755);
    let (c_control_file, c_control_dir) = (c_path(&control_file), c_path(&control_dir));
    // Exit code: 201 or 202 if a control failed; else a bit per attempt that succeeded (0:
    // every one failed).
    let code = as_nobody(|| unsafe {
        if libc::open(c_control_file.as_ptr(), libc::O_RDONLY) < 0 {
            return 201;
        }
        if libc::opendir(c_control_dir.as_ptr()).is_null() {
            return 202;
        }
        let mut got = 0;
        for (i, p) in c_targets.iter().enumerate() {
            for flags in [libc::O_RDONLY, libc::O_WRONLY, libc::O_RDWR] {
                // Opened: a shared `flock` (open.lock) or `lockf` (the database) would block
                // the store's users, and the database's pages would be readable.
                if libc::open(p.as_ptr(), flags) >= 0 {
                    got |= 1 << i;
                }
            }
        }
        if libc::open(c_new.as_ptr(), libc::O_CREAT | libc::O_WRONLY, 0o644) >= 0 {
            got |= 1 << 5;
        }
        if !libc::opendir(c_dir.as_ptr()).is_null() {
            got |= 1 << 6;
        }
        got
    });
    assert_ne!(code, 200, "could not become nobody");
    assert_ne!(code, 201, "nobody cannot open a 0644 file beside the database: no control");
    assert_ne!(code, 202, "nobody cannot open a 0755 directory beside the database: no control");
    let mut what: Vec<String> = (0..targets.len())
        .filter(|i| code & (1 << i) != 0)
        .map(|i| format!("opened {}", targets[i].display()))
        .collect();
    if code & (1 << 5) != 0 {
        what.push("created a file in the lock directory".into());
    }
    if code & (1 << 6) != 0 {
        what.push("listed the lock directory".into());
    }
    assert!(what.is_empty(), "as nobody: {what:#?}");
    // The store still works for its owner.
    store.create(b"x", b"y").unwrap();
}

/// `nobody` creates `name` (a file, or with `dir` a directory) in the shared directory first.
fn plant(path: &Path, dir: bool) {
    let c = c_path(path);
    let code = as_nobody(|| unsafe {
        if dir {
            if libc::mkdir(c.as_ptr(), 0o777) != 0 || libc::chmod(c.as_ptr(), 0o777) != 0 {
                return 1;
            }
        } else {
            let fd = libc::open(c.as_ptr(), libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY, 0o666);
            if fd < 0 || libc::fchmod(fd, 0o666) != 0 {
                return 1;
            }
        }
        0
    });
    assert_eq!(code, 0, "nobody could not plant {}", path.display());
}

#[test]
fn a_database_file_another_user_created_first_is_refused() {
    if !root_or_skip("a_database_file_another_user_created_first_is_refused") {
        return;
    }
    let db = open_dir(true);
    plant(&db.path, false);
    let (path, message) = unsafe_file(open_plain(&db.path));
    assert_eq!(path, db.path);
    assert!(message.contains("belongs to uid") && message.contains("remove it"), "{message}");
    // Refused before anything was written into it.
    assert_eq!(std::fs::metadata(&db.path).unwrap().len(), 0);
}

#[test]
fn a_lock_directory_another_user_created_first_is_refused() {
    if !root_or_skip("a_lock_directory_another_user_created_first_is_refused") {
        return;
    }
    let db = open_dir(true);
    plant(&lock_dir(&db.path), true);
    let (path, message) = unsafe_file(open_plain(&db.path));
    assert_eq!(path, lock_dir(&db.path));
    assert!(message.contains("belongs to uid"), "{message}");
}

#[test]
fn a_symbolic_link_another_user_planted_is_not_followed() {
    if !root_or_skip("a_symbolic_link_another_user_planted_is_not_followed") {
        return;
    }
    let db = open_dir(true);
    // A file of root's that nobody would like root to overwrite.
    let victim_dir = tempfile::tempdir().unwrap();
    let victim = victim_dir.path().join("victim");
    std::fs::write(&victim, b"").unwrap();
    let (target, link) = (c_path(&victim), c_path(&db.path));
    assert_eq!(as_nobody(|| unsafe { libc::symlink(target.as_ptr(), link.as_ptr()) }), 0);
    let (path, message) = unsafe_file(open_plain(&db.path));
    assert_eq!(path, db.path);
    assert!(message.contains("symbolic link"), "{message}");
    assert_eq!(std::fs::metadata(&victim).unwrap().len(), 0, "root wrote through nobody's link");
}

/// A file of this user's, linked at the database's (or a lock file's) name by another user
/// (in a sticky directory with `protected_hardlinks=0`; root can link anything): the store
/// would narrow and overwrite it. Refused, and left as it was.
#[test]
fn a_hard_link_at_the_database_or_a_lock_file_is_refused() {
    if !root_or_skip("a_hard_link_at_the_database_or_a_lock_file_is_refused") {
        return;
    }
    let db = open_dir(true);
    let victim_dir = tempfile::tempdir().unwrap();
    let victim = victim_dir.path().join("victim");
    std::fs::write(&victim, b"").unwrap();
    chmod(&victim, 0o644);
    std::fs::hard_link(&victim, &db.path).unwrap();
    let (path, message) = unsafe_file(open_plain(&db.path));
    assert_eq!(path, db.path);
    assert!(message.contains("2 hard links") && message.contains("remove"), "{message}");
    assert_eq!(std::fs::metadata(&victim).unwrap().len(), 0, "the store wrote into the link");
    assert_eq!(mode_of(&victim), 0o644, "the store changed the linked file's mode");
    // Without the link, the store is created (in one name) and opens; a linked lock file is
    // refused as well.
    std::fs::remove_file(&db.path).unwrap();
    drop(busy_store(&db.path));
    assert_eq!(std::fs::metadata(&db.path).unwrap().nlink(), 1);
    let open_lock = lock_dir(&db.path).join("open.lock");
    std::fs::remove_file(&open_lock).unwrap();
    std::fs::hard_link(&victim, &open_lock).unwrap();
    let (path, message) = unsafe_file(open_plain(&db.path));
    assert_eq!(path, open_lock);
    assert!(message.contains("hard links"), "{message}");
    assert_eq!(mode_of(&victim), 0o644);
}

/// With [`FileAccess::Group`], a group member's database that every user can read: this
/// process cannot narrow another user's file, so it must refuse it.
#[test]
fn with_group_access_another_users_file_every_user_can_read_is_refused() {
    if !root_or_skip("with_group_access_another_users_file_every_user_can_read_is_refused") {
        return;
    }
    let db = open_dir(false);
    drop(busy_store_with(Store::builder(&db.path).file_access(FileAccess::Group)));
    let (uid, _) = nobody();
    std::os::unix::fs::chown(&db.path, Some(uid), Some(0)).unwrap();
    chmod(&db.path, 0o664);
    let (path, message) = unsafe_file(busy_store_try(&db.path, FileAccess::Group));
    assert_eq!(path, db.path);
    assert!(message.contains("every user can read") && message.contains("o-rwx"), "{message}");
    assert_eq!(mode_of(&db.path), 0o664);
    // A lock file of the group member's, readable by all (a shared `flock` blocks the store).
    chmod(&db.path, 0o660);
    let cleanup = lock_dir(&db.path).join("cleanup.lock");
    std::os::unix::fs::chown(&cleanup, Some(uid), Some(0)).unwrap();
    chmod(&cleanup, 0o664);
    let (path, _) = unsafe_file(busy_store_try(&db.path, FileAccess::Group));
    assert_eq!(path, cleanup);
    chmod(&cleanup, 0o660);
    drop(busy_store_try(&db.path, FileAccess::Group).unwrap());
}

/// Run by [`umask_000_still_gives_private_files`] in a child process: umask is per process.
#[test]
#[ignore = "run by umask_000_still_gives_private_files"]
fn child_opens_with_umask() {
    let path = std::env::var_os("SESSIONDB_PERM_PATH").expect("run by the parent test");
    let umask = std::env::var("SESSIONDB_PERM_UMASK").unwrap();
    let umask = libc::mode_t::from_str_radix(&umask, 8).unwrap();
    let group = std::env::var_os("SESSIONDB_PERM_GROUP").is_some();
    // SAFETY: umask has no preconditions; this process runs this one test.
    unsafe { libc::umask(umask) };
    let access = if group { FileAccess::Group } else { FileAccess::Owner };
    drop(busy_store_with(Store::builder(Path::new(&path)).file_access(access)));
}

/// Opens a store on `path` in a child process with this umask, as [`busy_store`] does.
fn open_in_child(path: &Path, umask: &str, group: bool) {
    let mut child = Command::new(std::env::current_exe().unwrap());
    child
        .args(["--ignored", "--exact", "child_opens_with_umask", "--test-threads=1"])
        .env("SESSIONDB_PERM_PATH", path)
        .env("SESSIONDB_PERM_UMASK", umask);
    if group {
        child.env("SESSIONDB_PERM_GROUP", "1");
    }
    let out = child.output().unwrap();
    assert!(
        out.status.success(),
        "child failed: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // An exact filter that matched nothing would pass too.
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 passed"), "the child ran no test");
}

/// The modes of the database, the lock directory and every lock file.
fn modes(db: &Path) -> Vec<(String, u32)> {
    let locks = lock_dir(db);
    let mut all =
        vec![(db.display().to_string(), mode_of(db)), ("lock dir".into(), mode_of(&locks))];
    for e in std::fs::read_dir(&locks).unwrap() {
        let p = e.unwrap().path();
        all.push((p.file_name().unwrap().to_string_lossy().into_owned(), mode_of(&p)));
    }
    assert!(all.len() >= 5, "expected open.lock, cleanup.lock and a stripe: {all:?}");
    all
}

#[test]
fn umask_000_still_gives_private_files() {
    let db = common::temp_db();
    open_in_child(&db.path, "000", false);
    for (name, mode) in modes(&db.path) {
        let dir = name == "lock dir" || name.starts_with("spool-");
        let want = if dir { 0o700 } else { 0o600 };
        assert_eq!(mode, want, "{name}: {mode:o}, want {want:o}");
    }
}

#[test]
fn group_access_gives_group_files_whatever_the_umask() {
    for umask in ["000", "077"] {
        let db = common::temp_db();
        open_in_child(&db.path, umask, true);
        for (name, mode) in modes(&db.path) {
            let dir = name == "lock dir" || name.starts_with("spool-");
            let want = if dir { 0o2770 } else { 0o660 };
            assert_eq!(mode, want, "umask {umask}: {name}: {mode:o}, want {want:o}");
        }
    }
}

#[test]
fn a_directory_anyone_can_write_without_the_sticky_bit_is_refused() {
    let db = common::temp_db();
    chmod(db.dir.path(), 0o777);
    let (path, message) = unsafe_file(open_plain(&db.path));
    assert_eq!(path, db.dir.path());
    assert!(message.contains("sticky"), "{message}");
    assert!(!db.path.exists());
    // Explicitly trusted; like /tmp (sticky) it is accepted without.
    drop(Store::builder(&db.path).trust_foreign_files(true).cleanup_interval(None).open().unwrap());
    chmod(db.dir.path(), 0o1777);
    drop(open_plain(&db.path).unwrap());
}

#[test]
fn an_existing_database_anyone_can_write_is_refused_and_a_readable_one_is_narrowed() {
    let db = common::temp_db();
    drop(busy_store(&db.path));
    chmod(&db.path, 0o666);
    let (path, message) = unsafe_file(open_plain(&db.path));
    assert_eq!(path, db.path);
    assert!(message.contains("chmod o-w"), "{message}");
    chmod(&db.path, 0o620);
    let (_, message) = unsafe_file(open_plain(&db.path));
    assert!(message.contains("chmod g-w"), "{message}");
    // Group access accepts a group-writable file (not one everyone can write).
    drop(
        Store::builder(&db.path)
            .file_access(FileAccess::Group)
            .cleanup_interval(None)
            .open()
            .unwrap(),
    );
    assert_eq!(mode_of(&db.path), 0o620, "group access narrowed nothing it allows");
    chmod(&lock_dir(&db.path).join("cleanup.lock"), 0o606);
    let (path, _) = unsafe_file(busy_store_try(&db.path, FileAccess::Group));
    assert_eq!(path, lock_dir(&db.path).join("cleanup.lock"));
    chmod(&lock_dir(&db.path).join("cleanup.lock"), 0o600);
    // A file of an older sessiondb, readable by everyone: opened, and made private.
    chmod(&db.path, 0o644);
    chmod(&lock_dir(&db.path), 0o755);
    chmod(&lock_dir(&db.path).join("open.lock"), 0o644);
    drop(busy_store(&db.path));
    assert_eq!(mode_of(&db.path), 0o600);
    assert_eq!(mode_of(&lock_dir(&db.path)), 0o700);
    assert_eq!(mode_of(&lock_dir(&db.path).join("open.lock")), 0o600);
}

/// Opens a store and runs a sweep, which opens `cleanup.lock`.
fn busy_store_try(path: &Path, access: FileAccess) -> sessiondb::Result<Store> {
    let store = Store::builder(path).file_access(access).cleanup_interval(None).open()?;
    store.cleanup()?;
    Ok(store)
}

#[test]
fn a_store_of_another_user_is_refused_unless_trusted_or_read_only() {
    if !root_or_skip("a_store_of_another_user_is_refused_unless_trusted_or_read_only") {
        return;
    }
    let db = open_dir(false);
    drop(busy_store(&db.path));
    let (uid, gid) = nobody();
    std::os::unix::fs::chown(&db.path, Some(uid), Some(gid)).unwrap();
    let (path, message) = unsafe_file(open_plain(&db.path));
    assert_eq!(path, db.path);
    assert!(message.contains(&format!("belongs to uid {uid}")), "{message}");
    assert!(message.contains("chown 0") && message.contains("trust_foreign_files"), "{message}");
    // An administrator reading it (the `dump` example opens read-only) is not refused.
    let reader = Store::builder(&db.path).read_only(true).open().unwrap();
    assert_eq!(reader.info().unwrap().sessions, 1);
    drop(reader);
    // Nor one who trusts it explicitly; nobody's file keeps its owner and mode.
    drop(busy_store_with(Store::builder(&db.path).trust_foreign_files(true)));
    assert_eq!(std::fs::metadata(&db.path).unwrap().uid(), uid);
    // Group access accepts another user's file of one of this process's groups (root's 0).
    std::os::unix::fs::chown(&db.path, Some(uid), Some(0)).unwrap();
    chmod(&db.path, 0o660);
    drop(busy_store_try(&db.path, FileAccess::Group).unwrap());
    let (path, _) = unsafe_file(open_plain(&db.path));
    assert_eq!(path, db.path, "owner access still refuses it");
    // A lock file of another user (outside the group) is refused too.
    std::os::unix::fs::chown(&db.path, Some(0), Some(0)).unwrap();
    chmod(&db.path, 0o600);
    let cleanup = lock_dir(&db.path).join("cleanup.lock");
    std::os::unix::fs::chown(&cleanup, Some(uid), Some(gid)).unwrap();
    let (path, _) = unsafe_file(busy_store_try(&db.path, FileAccess::Owner));
    assert_eq!(path, cleanup);
    // And `open.lock`, which the open itself takes.
    std::os::unix::fs::chown(&cleanup, Some(0), Some(0)).unwrap();
    let open_lock = lock_dir(&db.path).join("open.lock");
    std::os::unix::fs::chown(&open_lock, Some(uid), Some(gid)).unwrap();
    let (path, _) = unsafe_file(open_plain(&db.path));
    assert_eq!(path, open_lock);
}

/// Run by [`users_of_one_group_share_a_store_and_others_are_kept_out`] as another user: opens
/// the store and saves a session of the parent's, or checks that it is refused.
#[test]
#[ignore = "run by users_of_one_group_share_a_store_and_others_are_kept_out"]
fn child_uses_the_shared_store() {
    let path = PathBuf::from(std::env::var_os("SESSIONDB_PERM_PATH").expect("run by the parent"));
    let access = match std::env::var("SESSIONDB_PERM_ACCESS").unwrap().as_str() {
        "group" => FileAccess::Group,
        _ => FileAccess::Owner,
    };
    let opened = busy_store_try(&path, access);
    match std::env::var("SESSIONDB_PERM_EXPECT").unwrap().as_str() {
        "ok" => {
            let store = opened.expect("a group member opens the store");
            let id =
                sessiondb::SessionId::parse(&std::env::var("SESSIONDB_PERM_ID").unwrap()).unwrap();
            let token =
                sessiondb::SecureToken::parse(&std::env::var("SESSIONDB_PERM_TOKEN").unwrap())
                    .unwrap();
            let lock = store.lock(&id, Duration::from_secs(5)).unwrap();
            let f = store.load(&id, &token).unwrap();
            store
                .store_state(&id, &token, sessiondb::Save::new(f.version, b"child", b"s"))
                .unwrap();
            drop(lock);
        }
        "unsafe" => drop(unsafe_file(opened)),
        "denied" => match opened {
            Err(Error::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied, "{e}"),
            other => panic!("expected a permission error, got {other:?}"),
        },
        other => panic!("unknown expectation {other}"),
    }
}

/// Runs [`child_uses_the_shared_store`] as `uid`/`gid` (no supplementary groups), from a copy of
/// this test program in a directory every user can read: the checkout may not be.
fn run_as(exe: &Path, uid: u32, gid: u32, envs: &[(&str, &str)]) {
    use std::os::unix::process::CommandExt;
    let mut child = Command::new(exe);
    child
        .args(["--ignored", "--exact", "child_uses_the_shared_store", "--test-threads=1"])
        .uid(uid)
        .gid(gid)
        .current_dir("/");
    for (k, v) in envs {
        child.env(k, v);
    }
    let out = child.output().unwrap();
    assert!(
        out.status.success(),
        "child as {uid}:{gid} with {envs:?} failed: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // An exact filter that matched nothing would pass too.
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 passed"), "the child ran no test");
}

#[test]
fn users_of_one_group_share_a_store_and_others_are_kept_out() {
    if !root_or_skip("users_of_one_group_share_a_store_and_others_are_kept_out") {
        return;
    }
    let (uid, gid) = nobody();
    let bin = tempfile::tempdir().unwrap();
    chmod(bin.path(), 0o755);
    let exe = bin.path().join("permissions-test");
    std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    chmod(&exe, 0o755);
    // The deployment: a directory of the shared group (nobody's), setgid, and root a member of
    // the team as its owner.
    let db = common::temp_db();
    std::os::unix::fs::chown(db.dir.path(), Some(0), Some(gid)).unwrap();
    chmod(db.dir.path(), 0o2770);
    let store = busy_store_with(Store::builder(&db.path).file_access(FileAccess::Group));
    let c = store.create(b"root", b"s").unwrap();
    drop(store);
    for p in [db.path.clone(), lock_dir(&db.path), lock_dir(&db.path).join("open.lock")] {
        assert_eq!(std::fs::metadata(&p).unwrap().gid(), gid, "{} not of the group", p.display());
    }
    let path = db.path.to_str().unwrap();
    // Another user of the group opens root's store, locks, saves, sweeps.
    let id = c.id.to_string();
    let token = c.token.as_str().to_owned();
    let shared = [
        ("SESSIONDB_PERM_PATH", path),
        ("SESSIONDB_PERM_ACCESS", "group"),
        ("SESSIONDB_PERM_EXPECT", "ok"),
        ("SESSIONDB_PERM_ID", id.as_str()),
        ("SESSIONDB_PERM_TOKEN", token.as_str()),
    ];
    run_as(&exe, uid, gid, &shared);
    let store = Store::builder(&db.path).file_access(FileAccess::Group).open().unwrap();
    assert_eq!(store.load(&c.id, &c.token).unwrap().session_data, b"child");
    drop(store);
    // The same user without group access refuses root's file.
    let owner_only =
        [shared[0], ("SESSIONDB_PERM_ACCESS", "owner"), ("SESSIONDB_PERM_EXPECT", "unsafe")];
    run_as(&exe, uid, gid, &owner_only);
    // A user outside the group cannot even reach the files.
    let outsider = [shared[0], shared[1], ("SESSIONDB_PERM_EXPECT", "denied")];
    run_as(&exe, uid, gid.wrapping_sub(1), &outsider);
}

/// A database directory that another user owns, or that its group can write: whoever can
/// rename in it can keep the file aside while a user logs out and put it back afterwards (the
/// logged-out session is alive again, reproduced under lighttpd), or move the lock directory
/// aside so that two processes hold "the same" lock. The sticky bit does not stop a directory's
/// owner. Refused, unless trusted; a directory of root's or of this user is accepted.
#[test]
fn a_database_directory_another_user_owns_or_its_group_can_write_is_refused() {
    if !root_or_skip("a_database_directory_another_user_owns_or_its_group_can_write_is_refused") {
        return;
    }
    let (uid, gid) = nobody();
    let db = open_dir(false);
    let dir = db.dir.path();
    for mode in [0o755, 0o1777] {
        std::os::unix::fs::chown(dir, Some(uid), Some(gid)).unwrap();
        chmod(dir, mode);
        let (path, message) = unsafe_file(open_plain(&db.path));
        assert_eq!(path, dir, "mode {mode:o}");
        assert!(message.contains(&format!("uid {uid}")), "{message}");
        assert!(!db.path.exists(), "mode {mode:o}: the database was created");
    }
    // Root's directory, but nobody's group can write it.
    std::os::unix::fs::chown(dir, Some(0), Some(gid)).unwrap();
    chmod(dir, 0o775);
    let (path, message) = unsafe_file(open_plain(&db.path));
    assert_eq!(path, dir);
    assert!(message.contains("group"), "{message}");
    // Trusted explicitly, it opens; so does a private directory of root's.
    drop(Store::builder(&db.path).trust_foreign_files(true).cleanup_interval(None).open().unwrap());
    chmod(dir, 0o755);
    drop(open_plain(&db.path).unwrap());
}
