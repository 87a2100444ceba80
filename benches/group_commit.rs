//! Durable save throughput with group commit on and off, for 1, 2 and 4 processes of 4 threads
//! each, all sharing one file (`Sharing::MultiProcess`).
//!
//! `cargo bench --bench group_commit`. A plain program, not criterion: the children are this
//! binary, re-run with their instructions in `SESSIONDB_BENCH_*` environment variables.
//!
//! For every configuration the parent makes a fresh file, creates one session per worker thread
//! and closes it; then it starts the children, waits until every one has opened the store and
//! says `ready`, and sends them all the same wall-clock start time. Each thread then saves to its
//! own session (`store_state`, 512-byte data, `same_state(true)`, the version from the last
//! save: no loads, no conflicts) for `SESSIONDB_BENCH_SECS` seconds (default 3), counting the
//! saves that completed inside the window. Any error fails the child and the run.
//!
//! The baseline is one process with one thread (group commit on, which one thread cannot use):
//! one durable transaction per save. It is measured first and last, and ratios are against the
//! mean of the two. After the table come, per configuration, the saves of each process, the
//! fewest and most saves of one thread, the children's CPU time and how busy the whole machine
//! was (from `/proc`, Linux only): the project's machine is shared, so that tells a slow row
//! from a busy machine. Without `--bench` (as under `cargo test --benches`) every configuration
//! runs for 0.2 s only, as a smoke test.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitCode, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sessiondb::{Save, SecureToken, SessionId, Store};

const THREADS: usize = 4;
const DATA: usize = 512;
const CHILD: &str = "SESSIONDB_BENCH_CHILD";
const PATH: &str = "SESSIONDB_BENCH_PATH";
const GROUP: &str = "SESSIONDB_BENCH_GROUP_COMMIT";
const SESSIONS: &str = "SESSIONDB_BENCH_SESSIONS";
const SECS: &str = "SESSIONDB_BENCH_SECS";
/// How far in the future the start time lies when the parent sends it.
const START_MARGIN: Duration = Duration::from_millis(200);

type Failure = Box<dyn std::error::Error>;

fn main() -> ExitCode {
    let result = if std::env::var_os(CHILD).is_some() { child() } else { parent() };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("group_commit bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn open(path: &Path, group_commit: bool) -> sessiondb::Result<Store> {
    Store::builder(path).group_commit(group_commit).cleanup_interval(None).open()
}

fn unix_micros(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros())
}

// ---------------------------------------------------------------------------------------------
// Parent

/// One configuration to measure.
#[derive(Clone, Copy)]
struct Config {
    label: &'static str,
    group_commit: bool,
    processes: usize,
    threads: usize,
}

/// What one child reported.
#[derive(Default)]
struct ChildReport {
    saves: u64,
    commits: u64,
    operations: u64,
    largest: u64,
    per_thread: Vec<u64>,
    /// CPU time (user + system) the child used during its window, in ms; 0 where unknown.
    cpu_ms: u64,
}

struct Measured {
    config: Config,
    saves_per_sec: f64,
    children: Vec<ChildReport>,
    /// How busy the machine's CPUs were (all processes, ours included) while it ran, 0..=1.
    machine_busy: Option<f64>,
}

impl Measured {
    fn mean_batch(&self) -> f64 {
        let commits: u64 = self.children.iter().map(|c| c.commits).sum();
        let operations: u64 = self.children.iter().map(|c| c.operations).sum();
        #[allow(clippy::cast_precision_loss)]
        if commits == 0 { 0.0 } else { operations as f64 / commits as f64 }
    }
}

fn parent() -> Result<(), Failure> {
    let bench = std::env::args().any(|a| a == "--bench");
    let secs: f64 = match std::env::var(SECS) {
        Ok(s) => s.parse().map_err(|e| format!("{SECS}={s:?}: {e}"))?,
        Err(_) if bench => 3.0,
        Err(_) => 0.2,
    };
    if !secs.is_finite() || secs <= 0.0 {
        return Err(format!("{SECS} must be a positive number of seconds").into());
    }
    let dir = tempfile::tempdir()?;
    let baseline = |label| Config { label, group_commit: true, processes: 1, threads: 1 };
    let gc = |group_commit, processes| Config {
        label: if group_commit { "on" } else { "off" },
        group_commit,
        processes,
        threads: THREADS,
    };
    // On and off of the same process count run next to each other; which goes first alternates.
    let plan = [
        baseline("on (baseline, first)"),
        gc(true, 1),
        gc(false, 1),
        gc(false, 2),
        gc(true, 2),
        gc(true, 4),
        gc(false, 4),
        baseline("on (baseline, last)"),
    ];
    println!(
        "group_commit bench: {secs} s per configuration, {DATA}-byte data, files in {}",
        dir.path().display()
    );
    let mut results = Vec::new();
    for (i, config) in plan.iter().enumerate() {
        let path = dir.path().join(format!("bench-{i}.redb"));
        let m = measure(*config, &path, secs)?;
        eprintln!(
            "  {:<22} P={} threads={:<2} {:>8.0} saves/s",
            config.label,
            config.processes,
            config.processes * config.threads,
            m.saves_per_sec
        );
        results.push(m);
    }
    report(&results);
    Ok(())
}

fn measure(config: Config, path: &Path, secs: f64) -> Result<Measured, Failure> {
    let sessions: Vec<String> = {
        let store = open(path, config.group_commit)?;
        let data = vec![1u8; DATA];
        (0..config.processes * config.threads)
            .map(|_| store.create(&data, &data).map(|c| format!("{}:{}", c.id, c.token.as_str())))
            .collect::<Result<_, _>>()?
    };
    let mut children = Vec::new();
    for p in 0..config.processes {
        let mine = sessions[p * config.threads..(p + 1) * config.threads].join(",");
        children.push(spawn(path, config.group_commit, &mine, secs)?);
    }
    let mut readers = Vec::new();
    for child in &mut children {
        let mut out = BufReader::new(child.stdout.take().ok_or("child stdout")?);
        let mut line = String::new();
        out.read_line(&mut line)?;
        if line.trim() != "ready" {
            break;
        }
        readers.push(out);
    }
    if readers.len() < children.len() {
        return Err(child_failed(children, "did not get ready"));
    }
    let cpu_before = machine_cpu();
    let start = SystemTime::now() + START_MARGIN;
    for child in &mut children {
        let mut stdin = child.stdin.take().ok_or("child stdin")?;
        writeln!(stdin, "{}", unix_micros(start))?;
    }
    // Every child is waited for before a failure is reported.
    let collected: Vec<_> =
        children.iter_mut().zip(readers).map(|(child, out)| collect(child, out)).collect();
    let mut reports = Vec::new();
    for (i, c) in collected.into_iter().enumerate() {
        reports.push(c.map_err(|e| format!("child {i} of {}: {e}", config.processes))?);
    }
    let machine_busy = cpu_before.zip(machine_cpu()).and_then(|((b0, t0), (b1, t1))| {
        #[allow(clippy::cast_precision_loss)]
        (t1 > t0).then(|| (b1 - b0) as f64 / (t1 - t0) as f64)
    });
    let saves: u64 = reports.iter().map(|r| r.saves).sum();
    #[allow(clippy::cast_precision_loss)]
    let saves_per_sec = saves as f64 / secs;
    Ok(Measured { config, saves_per_sec, children: reports, machine_busy })
}

/// Busy and total CPU ticks of the whole machine, from `/proc/stat` (Linux only).
fn machine_cpu() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let ticks: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|t| t.parse().ok())
        .collect::<Option<_>>()?;
    let total: u64 = ticks.iter().sum();
    let idle = ticks.get(3)? + ticks.get(4)?; // idle + iowait
    Some((total - idle, total))
}

/// CPU time this process used so far (user + system), in ms, from `/proc/self/stat` (Linux
/// only; its clock ticks are `USER_HZ`, 100 per second).
fn own_cpu_ms() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The fields after the command name, which is in parentheses and may hold spaces.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some((user + system) * 10)
}

fn spawn(path: &Path, group_commit: bool, sessions: &str, secs: f64) -> Result<Child, Failure> {
    Ok(Command::new(std::env::current_exe()?)
        .env(CHILD, "1")
        .env(PATH, path)
        .env(GROUP, if group_commit { "1" } else { "0" })
        .env(SESSIONS, sessions)
        .env(SECS, secs.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?)
}

/// Waits for one child and parses its result line; a failed child is an error carrying its
/// stderr.
fn collect(child: &mut Child, mut out: BufReader<ChildStdout>) -> Result<ChildReport, Failure> {
    let mut text = String::new();
    out.read_to_string(&mut text)?;
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        e.read_to_string(&mut err)?;
    }
    let status = child.wait()?;
    if !status.success() {
        return Err(format!("a child failed ({status}); its stderr:\n{err}").into());
    }
    let line = text
        .lines()
        .find(|l| l.starts_with("result "))
        .ok_or_else(|| format!("a child printed no result; stdout:\n{text}\nstderr:\n{err}"))?;
    parse_report(line).ok_or_else(|| format!("a child's result line is malformed: {line}").into())
}

/// Kills the children still running and returns an error carrying every child's stderr.
fn child_failed(children: Vec<Child>, what: &str) -> Failure {
    let mut message = format!("a child {what}");
    for (i, mut child) in children.into_iter().enumerate() {
        let _ = child.kill();
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        let status = child.wait().map_or_else(|e| e.to_string(), |s| s.to_string());
        let _ = write!(message, "\n--- child {i} ({status}), stderr:\n{err}");
    }
    message.into()
}

fn parse_report(line: &str) -> Option<ChildReport> {
    let mut r = ChildReport::default();
    for field in line.split_whitespace().skip(1) {
        let (key, value) = field.split_once('=')?;
        match key {
            "saves" => r.saves = value.parse().ok()?,
            "commits" => r.commits = value.parse().ok()?,
            "operations" => r.operations = value.parse().ok()?,
            "largest" => r.largest = value.parse().ok()?,
            "cpu_ms" => r.cpu_ms = value.parse().ok()?,
            "threads" => {
                r.per_thread = value.split(',').map(str::parse).collect::<Result<_, _>>().ok()?;
            }
            _ => return None,
        }
    }
    Some(r)
}

fn report(results: &[Measured]) {
    let baselines: Vec<f64> =
        results.iter().filter(|m| m.config.threads == 1).map(|m| m.saves_per_sec).collect();
    #[allow(clippy::cast_precision_loss)]
    let baseline = baselines.iter().sum::<f64>() / baselines.len() as f64;
    println!();
    println!(
        "| group commit | processes | threads total | saves/s | ratio vs baseline (1 thread) \
         | mean batch size | largest batch |"
    );
    println!("|---|---|---|---|---|---|---|");
    for m in results {
        let c = m.config;
        let largest = m.children.iter().map(|r| r.largest).max().unwrap_or(0);
        println!(
            "| {} | {} | {} | {:.0} | {:.2}× | {:.2} | {} |",
            c.label,
            c.processes,
            c.processes * c.threads,
            m.saves_per_sec,
            m.saves_per_sec / baseline,
            m.mean_batch(),
            largest
        );
    }
    println!();
    println!("Baseline = mean of the two 1-thread rows: {baseline:.0} saves/s.");
    println!("Saves per process and per thread (fairness), and CPU:");
    for m in results {
        let per_process: Vec<String> = m.children.iter().map(|r| r.saves.to_string()).collect();
        let threads = m.children.iter().flat_map(|r| r.per_thread.iter().copied());
        let (min, max) = threads.fold((u64::MAX, 0), |(lo, hi), n| (lo.min(n), hi.max(n)));
        let cpu_ms: u64 = m.children.iter().map(|r| r.cpu_ms).sum();
        let saves: u64 = m.children.iter().map(|r| r.saves).sum();
        #[allow(clippy::cast_precision_loss)]
        let cpu_per_save = if saves == 0 { 0.0 } else { cpu_ms as f64 * 1000.0 / saves as f64 };
        let busy = m.machine_busy.map_or_else(|| "?".into(), |b| format!("{:.0}%", b * 100.0));
        println!(
            "  {:<22} P={}: per process [{}], per thread min {min} max {max}; \
             children's CPU {cpu_ms} ms ({cpu_per_save:.0} µs/save), machine CPU busy {busy}",
            m.config.label,
            m.config.processes,
            per_process.join(", ")
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Child

fn env(name: &str) -> Result<String, Failure> {
    std::env::var(name).map_err(|e| format!("{name}: {e}").into())
}

fn child() -> Result<(), Failure> {
    let path = PathBuf::from(env(PATH)?);
    let group_commit = env(GROUP)? == "1";
    let secs: f64 = env(SECS)?.parse()?;
    let window = Duration::from_secs_f64(secs);
    let sessions: Vec<(SessionId, SecureToken)> = env(SESSIONS)?
        .split(',')
        .map(|pair| {
            let (id, token) = pair.split_once(':').ok_or("a session without a token")?;
            Ok::<_, Failure>((SessionId::parse(id)?, SecureToken::parse(token)?))
        })
        .collect::<Result<_, _>>()?;
    let store = open(&path, group_commit)?;
    println!("ready");
    std::io::stdout().flush()?;

    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    let start_micros: u128 = line.trim().parse()?;
    let now = unix_micros(SystemTime::now());
    let wait = u64::try_from(start_micros.saturating_sub(now)).unwrap_or(u64::MAX);
    if wait == 0 {
        eprintln!("warning: the start time had passed when it arrived");
    }
    let start = Instant::now() + Duration::from_micros(wait);
    let end = start + window;
    let cpu_at_start = {
        std::thread::sleep(start.saturating_duration_since(Instant::now()));
        own_cpu_ms()
    };

    // A hung save (a deadlock) must not hang the whole run.
    let watchdog = end + Duration::from_secs(60);
    std::thread::spawn(move || {
        std::thread::sleep(watchdog.saturating_duration_since(Instant::now()));
        eprintln!("watchdog: the child was still saving 60 s after its window closed");
        std::process::exit(3);
    });

    let data = vec![7u8; DATA];
    let per_thread = std::thread::scope(|s| {
        let workers: Vec<_> = sessions
            .iter()
            .map(|(id, token)| {
                let (store, data) = (&store, &data);
                s.spawn(move || -> sessiondb::Result<u64> {
                    std::thread::sleep(start.saturating_duration_since(Instant::now()));
                    let mut version = 1;
                    let mut saves = 0;
                    loop {
                        let save = Save::new(version, data, data).same_state(true);
                        version = store.store_state(id, token, save)?.version;
                        if Instant::now() > end {
                            return Ok(saves);
                        }
                        saves += 1;
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().map_err(|_| "a worker thread panicked")?.map_err(Failure::from))
            .collect::<Result<Vec<u64>, Failure>>()
    })?;

    let cpu_ms = own_cpu_ms().zip(cpu_at_start).map_or(0, |(now, then)| now - then);
    let b = store.stats().batches;
    let threads: Vec<String> = per_thread.iter().map(u64::to_string).collect();
    println!(
        "result saves={} commits={} operations={} largest={} cpu_ms={cpu_ms} threads={}",
        per_thread.iter().sum::<u64>(),
        b.commits,
        b.operations,
        b.largest,
        threads.join(",")
    );
    Ok(())
}
