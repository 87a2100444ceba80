//! Helpers of the shared-commit tests: child processes of the test binary, the spool.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// An environment variable a parent test set for its child.
pub fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name}: run by the parent test"))
}

/// The test binary re-run as the ignored test `name`, with `envs`, its stdout piped.
pub fn child(name: &str, envs: &[(&str, String)]) -> Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--ignored", "--exact", name, "--nocapture", "--test-threads=1"]);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.stdout(Stdio::piped()).spawn().expect("spawn")
}

/// How many files the spool directories of the store at `db` hold.
pub fn spool_files(db: &Path) -> usize {
    let locks = PathBuf::from(format!("{}.locks", db.display()));
    let Ok(dirs) = std::fs::read_dir(locks) else { return 0 };
    dirs.flatten()
        .filter(|d| d.file_name().to_string_lossy().starts_with("spool-"))
        .map(|d| std::fs::read_dir(d.path()).map_or(0, Iterator::count))
        .sum()
}

/// Waits (at most 30 s, polling) until `done`.
pub fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}
