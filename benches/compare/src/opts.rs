//! The command-line options of the parent.
//!
//! A cell is P worker processes of T threads each (`PxT`). `--cells` lists the cells of the
//! request workloads (`read`, `web`, `write`, `churn`); `--sweep-cells` and `--scale-cells`
//! those of `sweep` and `scale`; `--cgi-procs` the concurrent drivers of `cgi`. The older
//! `--procs P1,P2 --threads T` still works: without the list options, every workload then
//! runs P1xT, P2xT, ... and `cgi` runs at P1, P2, ...

use std::path::PathBuf;

use crate::systems::{self, Kind, R};

/// The default cells of the request workloads: issue 17's (4 threads at P = 1, 2, 4; the
/// pre-fork case of one thread at P = 1, 4, 8, 16).
pub const CELLS: &str = "1x4,2x4,4x4,1x1,4x1,8x1,16x1";
/// `sweep`: issue 6's cells.
pub const SWEEP_CELLS: &str = "1x4,2x4,4x4";
/// `scale`: issue 17's `web` cells.
pub const SCALE_CELLS: &str = "1x4,2x4,4x4,8x1,16x1";
/// The default workloads: everything (run.sh's estimate says how long it takes). The Redis
/// workloads are not among them: `--redis` or `--workloads redis-read,redis-web` (REDIS.md).
pub const WORKLOADS: &str = "read,web,write,churn,cgi,floor,sweep,scale";
/// The Redis workloads (`redis_run.rs`): `read` and `web` on the Redis systems.
pub const REDIS_WORKLOADS: &str = "redis-read,redis-web";
/// Their cells: issue 18's (4 threads at P = 1, 2, 4), and one thread at P = 1, 2, 4.
pub const REDIS_CELLS: &str = "1x4,2x4,4x4,1x1,2x1,4x1";

/// P processes of T threads.
pub type PxT = (usize, usize);

#[derive(Clone)]
pub struct Opts {
    pub secs: f64,
    pub sessions: usize,
    pub big: usize,
    /// `read`, `web`, `write`, `churn` (and the floor's write cells).
    pub cells: Vec<PxT>,
    pub sweep_cells: Vec<PxT>,
    pub scale_cells: Vec<PxT>,
    /// `cgi` (and the floor's CGI cells): concurrent drivers.
    pub cgi_procs: Vec<usize>,
    pub workloads: Vec<String>,
    pub dir: PathBuf,
    pub out: PathBuf,
    pub systems: Vec<Kind>,
    /// The `redis-*` workloads: their cells, systems and the server's `appendfsync`.
    pub redis_cells: Vec<PxT>,
    pub redis_systems: Vec<Kind>,
    pub redis_fsync: String,
    /// Print the estimated run time and exit.
    pub estimate_only: bool,
}

/// `1x4,16x1` → `[(1, 4), (16, 1)]`.
pub fn parse_cells(s: &str) -> R<Vec<PxT>> {
    s.split(',')
        .map(|c| {
            let (p, t) = c
                .split_once(['x', 'X', '×'])
                .ok_or_else(|| format!("cell {c:?}: write it PxT, e.g. 4x1"))?;
            let (p, t): (usize, usize) = (p.trim().parse()?, t.trim().parse()?);
            if p == 0 || t == 0 {
                return Err(format!("cell {c:?}: P and T must be at least 1").into());
            }
            Ok((p, t))
        })
        .collect()
}

fn list(s: &str) -> R<Vec<usize>> {
    Ok(s.split(',').map(str::parse).collect::<Result<_, _>>()?)
}

pub fn parse_opts() -> R<Opts> {
    let mut o = Opts {
        secs: 3.0,
        sessions: 100_000,
        big: 1_000_000,
        cells: parse_cells(CELLS)?,
        sweep_cells: parse_cells(SWEEP_CELLS)?,
        scale_cells: parse_cells(SCALE_CELLS)?,
        cgi_procs: vec![1, 2, 4],
        workloads: WORKLOADS.split(',').map(String::from).collect(),
        dir: std::env::temp_dir(),
        out: PathBuf::from("results"),
        systems: systems::ALL.to_vec(),
        redis_cells: parse_cells(REDIS_CELLS)?,
        redis_systems: systems::REDIS.to_vec(),
        redis_fsync: "everysec".into(),
        estimate_only: false,
    };
    let (mut redis, mut workloads): (bool, Option<Vec<String>>) = (false, None);
    let (mut procs, mut threads) = (None, None);
    let (mut cells, mut sweep, mut scale, mut cgi) = (None, None, None, None);
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut v = || it.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--secs" => o.secs = v()?.parse()?,
            "--sessions" => o.sessions = v()?.parse()?,
            "--big" => o.big = v()?.parse()?,
            "--threads" => threads = Some(v()?.parse::<usize>()?),
            "--procs" => procs = Some(list(v()?)?),
            "--cells" => cells = Some(parse_cells(v()?)?),
            "--sweep-cells" => sweep = Some(parse_cells(v()?)?),
            "--scale-cells" => scale = Some(parse_cells(v()?)?),
            "--cgi-procs" => cgi = Some(list(v()?)?),
            "--workloads" => workloads = Some(v()?.split(',').map(String::from).collect()),
            "--redis" => redis = true,
            "--redis-cells" => o.redis_cells = parse_cells(v()?)?,
            "--redis-fsync" => {
                o.redis_fsync = v()?.to_string();
                if !["always", "everysec"].contains(&o.redis_fsync.as_str()) {
                    return Err("--redis-fsync: always or everysec".into());
                }
            }
            "--dir" => o.dir = PathBuf::from(v()?),
            "--out" => o.out = PathBuf::from(v()?),
            "--systems" => {
                // Redis systems listed here choose those of the `redis-*` workloads; the others
                // those of the file-based workloads.
                let all: Vec<Kind> = v()?.split(',').map(Kind::parse).collect::<Result<_, _>>()?;
                let (r, f): (Vec<Kind>, Vec<Kind>) = all.into_iter().partition(|k| k.is_redis());
                if !r.is_empty() {
                    o.redis_systems = r;
                }
                if !f.is_empty() {
                    o.systems = f;
                }
            }
            "--estimate" => o.estimate_only = true,
            "--bench" => {}
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    // `--redis`: the Redis workloads, added to those of `--workloads` or alone.
    o.workloads = match (workloads, redis) {
        (Some(mut w), true) => {
            w.extend(REDIS_WORKLOADS.split(',').map(String::from));
            w
        }
        (Some(w), false) => w,
        (None, true) => REDIS_WORKLOADS.split(',').map(String::from).collect(),
        (None, false) => o.workloads,
    };
    // The older form: every workload at P1xT, P2xT, ... (T defaults to 4, P to 1,2,4).
    if procs.is_some() || threads.is_some() {
        let ps = procs.clone().unwrap_or_else(|| vec![1, 2, 4]);
        let t = threads.unwrap_or(4);
        let old: Vec<PxT> = ps.iter().map(|&p| (p, t)).collect();
        o.cells = old.clone();
        o.sweep_cells = old.clone();
        o.scale_cells = old;
        o.cgi_procs = ps;
    }
    o.cells = cells.unwrap_or(o.cells);
    o.sweep_cells = sweep.unwrap_or(o.sweep_cells);
    o.scale_cells = scale.unwrap_or(o.scale_cells);
    o.cgi_procs = cgi.unwrap_or(o.cgi_procs);
    if o.cgi_procs.contains(&0) {
        return Err("--cgi-procs: at least 1".into());
    }
    Ok(o)
}

/// `4x1` as shown in the tables.
pub fn pxt((p, t): PxT) -> String {
    format!("{p}×{t}")
}
