//! How long a run will take, printed before it starts: the cells' time plus each cell's fixed
//! cost (starting and stopping its processes), the preloads and the file copies. The rates
//! below were measured on the 2-core machine of BENCHMARKS.md (2026-12-02); a busier or faster
//! machine moves them.

use crate::opts::Opts;
use crate::systems::Kind;

/// Seconds a cell costs beyond its measured time: the 200 ms start delay, starting and
/// opening its worker processes, stopping and joining them.
const CELL_FIXED: f64 = 0.4;
/// ... and per worker process.
const CELL_PER_PROC: f64 = 0.04;
/// Sessions per second preloaded: sessiondb (64 threads, group commit; at 100,000 sessions and
/// at 1,000,000, where the trees are deeper), plain SQLite and tower-sessions (one transaction
/// each).
const PRELOAD_SDB: f64 = 8_000.0;
const PRELOAD_SDB_BIG: f64 = 6_000.0;
const PRELOAD_SQL: f64 = 40_000.0;
const PRELOAD_TOWER: f64 = 16_000.0;
/// Bytes per preloaded session in the files (sessiondb, SQLite), and copy speed in bytes/s.
const FILE_SDB: f64 = 2_850.0;
const FILE_SQL: f64 = 1_440.0;
const COPY: f64 = 400e6;
/// Sessions removed per second by each system's `sweep` (BENCHMARKS.md, issue 6).
const SWEEP_SDB: f64 = 20_000.0;
const SWEEP_SQL: f64 = 10_000.0;
const SWEEP_TOWER: f64 = 80_000.0;
/// The Redis workloads: sessions preloaded per second (32 threads, one command or script each,
/// on the 2-core machine), and the seconds of each cell's append-only file rewrite and probe.
const PRELOAD_REDIS: f64 = 15_000.0;
const REDIS_CELL_EXTRA: f64 = 1.0;
/// The floor's sweep cells at 100,000 rows, seconds (scaled by the rows).
const FLOOR_SWEEPS_100K: f64 = 18.0;

pub struct Estimate {
    /// (what, seconds)
    pub parts: Vec<(String, f64)>,
}

impl Estimate {
    pub fn total_secs(&self) -> f64 {
        self.parts.iter().map(|(_, s)| s).sum()
    }
    pub fn text(&self) -> String {
        let parts: Vec<String> =
            self.parts.iter().map(|(w, s)| format!("{w} {:.1}", s / 60.0)).collect();
        format!(
            "compare: estimated run time {:.0} min ({} min)",
            self.total_secs() / 60.0,
            parts.join(", ")
        )
    }
}

fn family_preload(k: Kind, n: f64) -> f64 {
    match k.family() {
        "sdb" => n / PRELOAD_SDB,
        "sql" => n / PRELOAD_SQL,
        _ => n / PRELOAD_TOWER,
    }
}

fn file_bytes(k: Kind, n: f64) -> f64 {
    if k.family() == "sdb" { n * FILE_SDB } else { n * FILE_SQL }
}

pub fn run_time(o: &Opts) -> Estimate {
    let want = |w: &str| o.workloads.iter().any(|x| x == w);
    let n = o.sessions as f64;
    let cell = |p: usize| o.secs + CELL_FIXED + CELL_PER_PROC * p as f64;
    let systems_at = |p: usize| o.systems.iter().filter(|k| p == 1 || **k != Kind::Single).count();
    let mut families: Vec<Kind> = Vec::new();
    for &k in &o.systems {
        if !families.iter().any(|f| f.family() == k.family()) {
            families.push(k);
        }
    }
    let mut parts = Vec::new();
    let plain = ["read", "web", "write", "churn", "cgi"];
    if plain.iter().any(|w| want(w)) {
        parts.push((
            "preload".to_string(),
            families.iter().map(|&k| family_preload(k, n)).sum::<f64>(),
        ));
    }
    for w in plain.iter().filter(|w| want(w)) {
        let copies: f64 = o.systems.iter().map(|&k| file_bytes(k, n) / COPY).sum();
        let cells: f64 = if *w == "cgi" {
            o.cgi_procs.iter().map(|&p| systems_at(p) as f64 * (o.secs + 0.2)).sum()
        } else {
            o.cells.iter().map(|&(p, _)| systems_at(p) as f64 * cell(p)).sum()
        };
        parts.push((w.to_string(), copies + cells));
    }
    if want("floor") {
        let writes: f64 = o
            .cells
            .iter()
            .map(|&(p, _)| if p > 1 { 2.0 * cell(p) + cell(1) } else { 2.0 * cell(1) })
            .sum();
        let cgi = o.cgi_procs.len() as f64 * 2.0 * (o.secs + 0.5);
        parts.push(("floor".into(), writes + cgi + FLOOR_SWEEPS_100K * n / 100_000.0));
    }
    if want("sweep") {
        let preload: f64 = families.iter().map(|&k| family_preload(k, 2.0 * n)).sum();
        let cells: f64 = o
            .sweep_cells
            .iter()
            .map(|&(p, _)| {
                let copy = |k: Kind| file_bytes(k, 2.0 * n) / COPY;
                o.systems
                    .iter()
                    .filter(|k| p == 1 || **k != Kind::Single)
                    .map(|&k| {
                        let rate = match k.family() {
                            "sdb" => SWEEP_SDB,
                            "sql" => SWEEP_SQL,
                            _ => SWEEP_TOWER,
                        };
                        copy(k) + n / rate + 0.6 + CELL_FIXED + CELL_PER_PROC * p as f64
                    })
                    .sum::<f64>()
            })
            .sum();
        parts.push(("sweep".into(), preload + cells));
    }
    if want("scale") && o.big > 0 {
        let big = o.big as f64;
        let copies = 2.0 * (file_bytes(Kind::Multi, big) + file_bytes(Kind::Multi, n)) / COPY;
        let cells: f64 = o.scale_cells.iter().map(|&(p, _)| 4.0 * cell(p)).sum();
        parts.push(("scale".into(), big / PRELOAD_SDB_BIG + copies + cells));
    }
    let redis = o.workloads.iter().filter(|w| w.starts_with("redis-")).count() as f64;
    if redis > 0.0 {
        let per: f64 = o
            .redis_cells
            .iter()
            .map(|&(p, _)| cell(p) + n / PRELOAD_REDIS + REDIS_CELL_EXTRA)
            .sum();
        parts.push(("redis".into(), redis * o.redis_systems.len() as f64 * per));
    }
    Estimate { parts }
}
