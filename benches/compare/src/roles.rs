//! The child roles: what a process the parent spawned runs, chosen by `CMP_ROLE` (`worker`,
//! `sweeper`, `cgi`; the `floor-*` roles are in floor.rs). Each reads its orders from `CMP_*`
//! environment variables, says `ready`, and prints one `result` line for the parent.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::hist::Hist;
use crate::keys::Keys;
use crate::systems::{self, Kind, R, System, Tower};
use crate::{DATA, WEB_SAVE};

pub fn env(name: &str) -> R<String> {
    std::env::var(name).map_err(|e| format!("{name}: {e}").into())
}

pub fn own_cpu_ms() -> u64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return 0 };
    let Some((_, rest)) = stat.rsplit_once(')') else { return 0 };
    let f: Vec<u64> =
        rest.split_whitespace().skip(11).take(2).filter_map(|x| x.parse().ok()).collect();
    f.iter().sum::<u64>() * 10
}

/// Peak resident set size of this process (`VmHWM`), in KiB.
pub fn hwm_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn one_request(
    sys: &dyn System,
    workload: &str,
    keys: &Keys,
    rng: &mut SmallRng,
    data: &[u8],
    h: &mut Hist,
    conflicts: &mut u64,
    writes: &mut u64,
) -> R<u64> {
    let mut timed = |f: &mut dyn FnMut() -> R<bool>| -> R<()> {
        let t = Instant::now();
        let ok = f()?;
        h.record(t.elapsed().as_nanos() as u64);
        if !ok {
            *conflicts += 1;
        }
        Ok(())
    };
    match workload {
        "read" | "web" | "write" => {
            let k = keys.get(rng.random_range(0..keys.n))?;
            let save = match workload {
                "read" => false,
                "write" => true,
                _ => rng.random_bool(WEB_SAVE),
            };
            timed(&mut || sys.request(&k, save.then_some(data)))?;
            *writes += u64::from(save);
            Ok(1)
        }
        "churn" => {
            // create, three requests (the second saves), delete: five requests.
            let mut k = None;
            timed(&mut || {
                k = Some(sys.create(data)?);
                Ok(true)
            })?;
            let k = k.expect("created");
            timed(&mut || sys.request(&k, None))?;
            timed(&mut || sys.request(&k, Some(data)))?;
            timed(&mut || sys.request(&k, None))?;
            timed(&mut || sys.delete(&k).map(|()| true))?;
            // The create, the save and the delete.
            *writes += 3;
            Ok(5)
        }
        other => Err(format!("unknown workload {other}").into()),
    }
}

pub fn worker(sweeper: bool) -> R<()> {
    let kind = Kind::parse(&env("CMP_SYS")?)?;
    let workload = env("CMP_WORKLOAD")?;
    let path = PathBuf::from(env("CMP_PATH")?);
    let keys = Keys::open(Path::new(&env("CMP_KEYS")?))?;
    let threads: usize = env("CMP_THREADS")?.parse()?;
    let seed: u64 = env("CMP_SEED")?.parse()?;
    let sys = systems::open(kind, &path)?;
    println!("ready");
    std::io::stdout().flush()?;
    let mut stdin = std::io::stdin().lock();
    let mut line = String::new();
    stdin.read_line(&mut line)?;
    let start_us: u128 = line.trim().parse()?;
    let now_us = SystemTime::now().duration_since(UNIX_EPOCH)?.as_micros();
    let start = Instant::now() + Duration::from_micros(start_us.saturating_sub(now_us) as u64);
    std::thread::sleep(start.saturating_duration_since(Instant::now()));

    if sweeper {
        std::thread::sleep(Duration::from_millis(300));
        let (n, took) = sys.sweep()?;
        println!("result swept={n}/{:.6}", took.as_secs_f64());
        return Ok(());
    }
    let cpu0 = own_cpu_ms();
    let stop = Arc::new(AtomicBool::new(false));
    let inproc_sweep = workload == "sweep-inproc";
    // The parent says `stop` (or goes away); an in-process sweep stops the workers itself.
    if !inproc_sweep {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut l = String::new();
            let _ = std::io::stdin().lock().read_line(&mut l);
            stop.store(true, Ordering::SeqCst);
        });
    }
    drop(stdin);
    let workload = if inproc_sweep { "web".to_string() } else { workload };
    let data = vec![b'd'; DATA];
    let mut swept = None;
    let per_thread: Vec<R<(u64, u64, u64, Hist)>> = std::thread::scope(|s| {
        let mut hs = Vec::new();
        for t in 0..threads {
            let (sys, keys, data, stop, workload) = (&*sys, &keys, &data, &stop, &workload);
            hs.push(s.spawn(move || -> R<(u64, u64, u64, Hist)> {
                let mut rng = SmallRng::seed_from_u64(seed * 1000 + t as u64);
                let mut h = Hist::new();
                let (mut n, mut conflicts, mut writes) = (0, 0, 0);
                while !stop.load(Ordering::Relaxed) {
                    let (c, w) = (&mut conflicts, &mut writes);
                    n += one_request(sys, workload, keys, &mut rng, data, &mut h, c, w)?;
                }
                Ok((n, conflicts, writes, h))
            }));
        }
        // SingleProcess `sweep`: one process only, so the sweep runs here, in one more thread,
        // which stops the workers 300 ms after it finished.
        let sweep = inproc_sweep.then(|| {
            let (sys, stop) = (&*sys, &stop);
            s.spawn(move || {
                std::thread::sleep(Duration::from_millis(300));
                let r = sys.sweep();
                std::thread::sleep(Duration::from_millis(300));
                stop.store(true, Ordering::SeqCst);
                r
            })
        });
        let r = hs.into_iter().map(|h| h.join().expect("worker thread")).collect();
        swept = sweep.map(|sw| sw.join().expect("sweep thread"));
        r
    });
    let secs = start.elapsed().as_secs_f64();
    let mut hist = Hist::new();
    let (mut n, mut c, mut writes) = (0, 0, 0);
    for r in per_thread {
        let (a, b, w, h) = r?;
        n += a;
        c += b;
        writes += w;
        hist.merge(&h);
    }
    let swept = match swept {
        Some(r) => {
            let (n, took) = r?;
            format!(" swept={n}/{:.6}", took.as_secs_f64())
        }
        None => String::new(),
    };
    let diag = sys.diagnostics();
    if !diag.is_empty() {
        eprintln!("{} {workload}: {diag}", kind.name());
    }
    let batches = sys.batches().map_or(String::new(), |(c, ops)| format!(" batches={c}/{ops}"));
    println!(
        "result requests={n} conflicts={c} secs={secs:.4} cpu_ms={} hwm_kb={} writes={writes} hist={}{swept}{batches}",
        own_cpu_ms() - cpu0,
        hwm_kb(),
        hist.encode()
    );
    Ok(())
}

pub fn cgi_request() -> R<()> {
    let kind = Kind::parse(&env("CMP_SYS")?)?;
    let path = PathBuf::from(env("CMP_PATH")?);
    let keys = Keys::open(Path::new(&env("CMP_KEYS")?))?;
    let k = keys.get(env("CMP_INDEX")?.parse()?)?;
    let data = vec![b'c'; DATA];
    let sys: Box<dyn System> = match kind {
        Kind::Tower => Box::new(Tower::open_with(&path, systems::tower_runtime(1)?)?),
        other => systems::open(other, &path)?,
    };
    // One CGI request: load the session, save a new state (what examples/cgi_counter does).
    let mut tries = 0;
    while !sys.request(&k, Some(&data))? {
        tries += 1;
        if tries > 100 {
            return Err("conflicts".into());
        }
    }
    // What a CGI program does last (sessiondb: `Store::close_for_exit`).
    sys.exit();
    Ok(())
}
