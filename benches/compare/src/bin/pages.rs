//! Pages and syncs per save (issue 17): one kind of single-operation commit, N times in a row
//! from one thread, on a preloaded sessiondb-multi store, for `pages.sh` to trace with strace.
//!
//! ```text
//! pages prepare TEMPLATE [SESSIONS]     # preload SESSIONS (100,000) sessions, keys in TEMPLATE.keys
//! pages run FILE KEYS OP [N]            # N (200) commits of OP on FILE, a copy of a template
//! ```
//!
//! OP is one of `create`, `save-append` (a new state on a session keeping fewer than
//! `max_states`), `save-evict` (a new state on a session keeping 16: the oldest is evicted),
//! `save-session-only` (`Save::session_only`: the states are left alone) and `touch` (a load
//! whose access time moved by the touch resolution, 1 ms here, so it writes the new time).
//!
//! Sessions hold 512-byte session data and 512-byte states, `max_states` 16, a 7-day idle
//! timeout (the settings of the side-by-side harness). `run` opens the file with
//! `Sharing::MultiProcess`, prepares what the op needs (picks N distinct sessions, and for
//! `save-evict` first fills each with 16 states), then writes `@@BEGIN` to stderr, `@@OP`
//! before each operation and `@@END` after the last: strace shows those writes, so the
//! parser knows which database writes belong to which operation. It prints the group commit's
//! counters over the measured part on stdout: `commits=C operations=O`.
//!
//! Public API only, so that it keeps compiling across file-format changes.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::SmallRng;
use rand::seq::index::sample;
use sessiondb::{Save, SecureToken, SessionId, Sharing, Store};

type R<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const DATA: usize = 512;
const IDLE: Duration = Duration::from_secs(7 * 24 * 3600);
const MAX_STATES: u64 = 16;

fn open(path: &Path, sharing: Sharing, touch_resolution: Option<Duration>) -> R<Store> {
    let mut b = Store::builder(path)
        .sharing(sharing)
        .idle_timeout(Some(IDLE))
        .grace_period(Duration::from_secs(600))
        .max_states(MAX_STATES)
        .cleanup_interval(None);
    if let Some(r) = touch_resolution {
        b = b.touch_resolution(r);
    }
    Ok(b.open()?)
}

/// `prepare`: `n` sessions created from 64 threads (their creates share commits), keys one
/// `id token` line each.
fn prepare(template: &Path, n: usize) -> R<()> {
    let _ = std::fs::remove_file(template);
    let store = open(template, Sharing::SingleProcess, None)?;
    let left = std::sync::atomic::AtomicUsize::new(n);
    let data = [b'p'; DATA];
    let keys = std::sync::Mutex::new(String::with_capacity(n * 80));
    std::thread::scope(|s| -> R<()> {
        let hs: Vec<_> = (0..64)
            .map(|_| {
                s.spawn(|| -> R<()> {
                    use std::sync::atomic::Ordering::SeqCst;
                    while left.fetch_update(SeqCst, SeqCst, |v| v.checked_sub(1)).is_ok() {
                        let c = store.create(&data, &data)?;
                        let line = format!("{} {}\n", c.id, c.token.as_str());
                        keys.lock().map_err(|_| "keys poisoned")?.push_str(&line);
                    }
                    Ok(())
                })
            })
            .collect();
        for h in hs {
            h.join().map_err(|_| "a preload thread panicked")??;
        }
        Ok(())
    })?;
    drop(store);
    let keys = keys.into_inner().map_err(|_| "keys poisoned")?;
    std::fs::write(format!("{}.keys", template.display()), keys)?;
    Ok(())
}

fn marker(m: &str) -> R<()> {
    // One write(2) each: strace shows it between the database writes.
    std::io::stderr().write_all(m.as_bytes())?;
    Ok(())
}

fn run(file: &Path, keys: &Path, op: &str, n: usize) -> R<()> {
    let touch = op == "touch";
    let store = open(file, Sharing::MultiProcess, touch.then_some(Duration::from_millis(1)))?;
    let text = std::fs::read_to_string(keys)?;
    let all: Vec<(&str, &str)> = text.lines().filter_map(|l| l.split_once(' ')).collect();
    if op != "create" && all.len() < n {
        return Err(format!("{} sessions in {}, {n} needed", all.len(), keys.display()).into());
    }
    let mut rng = SmallRng::seed_from_u64(17);
    let picked: Vec<(SessionId, SecureToken)> = if op == "create" {
        Vec::new()
    } else {
        sample(&mut rng, all.len(), n)
            .into_iter()
            .map(|i| Ok((SessionId::parse(all[i].0)?, SecureToken::parse(all[i].1)?)))
            .collect::<R<_>>()?
    };
    let data = [b's'; DATA];
    // What each op needs before the measured part: the session's current version.
    let mut versions = Vec::with_capacity(picked.len());
    if !touch {
        for (id, token) in &picked {
            let mut version = store.load(id, token)?.version;
            if op == "save-evict" {
                while store.load(id, token)?.latest_state_id + 1 < MAX_STATES {
                    version =
                        store.store_state(id, token, Save::new(version, &data, &data))?.version;
                }
            }
            versions.push(version);
        }
    }
    if op == "save-evict" {
        let (id, token) = &picked[0];
        let f = store.load(id, token)?;
        let kept = f.latest_state_id - f.oldest_state_id + 1;
        if kept != MAX_STATES {
            return Err(format!("save-evict: a session keeps {kept} states, not 16").into());
        }
    }
    let before = store.stats().batches;
    marker("@@BEGIN\n")?;
    for i in 0..n {
        marker("@@OP\n")?;
        match op {
            "create" => {
                store.create(&data, &data)?;
            }
            "save-append" | "save-evict" => {
                let (id, token) = &picked[i];
                store.store_state(id, token, Save::new(versions[i], &data, &data))?;
            }
            "save-session-only" => {
                let (id, token) = &picked[i];
                store.store_state(id, token, Save::session_only(versions[i], &data))?;
            }
            "touch" => {
                let (id, token) = &picked[i];
                store.load(id, token)?;
            }
            other => return Err(format!("unknown op {other}: see the usage in pages.rs").into()),
        }
    }
    marker("@@END\n")?;
    let after = store.stats().batches;
    println!(
        "commits={} operations={}",
        after.commits - before.commits,
        after.operations - before.operations
    );
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let a = |i: usize| args.get(i).map(String::as_str);
    let num = |i: usize, default: usize| a(i).map_or(Ok(default), str::parse);
    let result: R<()> = match (a(0), a(1)) {
        (Some("prepare"), Some(t)) => {
            num(2, 100_000).map_err(Into::into).and_then(|n| prepare(Path::new(t), n))
        }
        (Some("run"), Some(f)) => match (a(2), a(3)) {
            (Some(k), Some(op)) => {
                num(4, 200).map_err(Into::into).and_then(|n| run(Path::new(f), Path::new(k), op, n))
            }
            _ => Err("usage: pages run FILE KEYS OP [N]".into()),
        },
        _ => Err("usage: pages prepare TEMPLATE [SESSIONS] | pages run FILE KEYS OP [N]".into()),
    };
    if let Err(e) = result {
        eprintln!("pages: {e}");
        std::process::exit(1);
    }
}
