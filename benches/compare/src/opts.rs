//! The command-line options of the parent.

use std::path::PathBuf;

use crate::systems::{self, Kind, R};

#[derive(Clone)]
pub struct Opts {
    pub secs: f64,
    pub sessions: usize,
    pub big: usize,
    pub procs: Vec<usize>,
    pub threads: usize,
    pub workloads: Vec<String>,
    pub dir: PathBuf,
    pub out: PathBuf,
    pub systems: Vec<Kind>,
}

pub fn parse_opts() -> R<Opts> {
    let mut o = Opts {
        secs: 3.0,
        sessions: 100_000,
        big: 1_000_000,
        procs: vec![1, 2, 4],
        threads: 4,
        workloads: "read,web,write,churn,cgi,floor,sweep,scale"
            .split(',')
            .map(String::from)
            .collect(),
        dir: std::env::temp_dir(),
        out: PathBuf::from("results"),
        systems: systems::ALL.to_vec(),
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut v = || it.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--secs" => o.secs = v()?.parse()?,
            "--sessions" => o.sessions = v()?.parse()?,
            "--big" => o.big = v()?.parse()?,
            "--threads" => o.threads = v()?.parse()?,
            "--procs" => o.procs = v()?.split(',').map(str::parse).collect::<Result<_, _>>()?,
            "--workloads" => o.workloads = v()?.split(',').map(String::from).collect(),
            "--dir" => o.dir = PathBuf::from(v()?),
            "--out" => o.out = PathBuf::from(v()?),
            "--systems" => {
                o.systems = v()?.split(',').map(Kind::parse).collect::<Result<_, _>>()?;
            }
            "--bench" => {}
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    Ok(o)
}
