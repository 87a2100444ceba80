//! Prints what a sessiondb file holds, without writing to it.
//!
//! ```text
//! cargo run --example dump -- [--json] [--summary | --session SID | --verify] PATH
//! cargo run --features redis --example dump -- [--json] [--summary | --session SID | --verify | --repair] redis://HOST:PORT
//! ```
//!
//! With the `redis` feature, PATH may be a Redis server (`redis://HOST:PORT`, with `--prefix P`
//! when the engine uses another prefix than `sessiondb`) or a Cluster
//! (`redis+cluster://HOST1:PORT1,HOST2:PORT2,...`): the same modes, through the Redis engine's
//! administration calls (`RedisEngine::inspect`, `info`, `verify`; `redis.rs` beside this file).
//! It writes nothing, unless `--repair` asks it to fix the users' and cap indexes
//! (`RedisEngine::repair`; docs/redis.md says how they come to need it); it then verifies again
//! and its exit status is that verification's.
//!
//! The file is opened read-only, so the dump can run beside live writers (in the default
//! `Sharing::MultiProcess` mode). It prints the file's format, counts, size and creation time,
//! then every session's metadata and the ids and sizes of its states. The listing prints no
//! session or state data; `--session SID` prints that one session in full, data and states
//! (bytes that are not printable ASCII as `\xNN`). Whoever can read the file can read them.
//!
//! - `--summary` prints the file-wide facts only: format, counts, size, when the file was last
//!   swept (the shared clean-up schedule; `never`, `null` in JSON, before the first complete
//!   sweep), the oldest and newest session, the next expiry and how many sessions expire within
//!   five minutes and an hour.
//! - `--session SID` prints that one session only.
//! - `--verify` walks every record: every checksum, every key, and the indexes against the
//!   sessions (every expiry entry points at a session and back, every state belongs to a
//!   session that keeps it, every user entry to a session filed under that user). Each problem
//!   is printed with its table and key.
//! - `--json` prints the same as one JSON document (with `--session`: the session object).
//!
//! Times are milliseconds since the Unix epoch, followed in the text output by how long ago
//! (or how far ahead) they are.
//!
//! Exit status: 0 when everything was read (for `--verify`: the file is clean); 1 when some
//! records could not be read or do not agree (each is reported on stderr, and in the `problems`
//! array of the JSON document, and the dump goes on) or the `--session` is not in the file; 2
//! when the file cannot be used at all (missing, not a sessiondb file, another format version,
//! damaged past opening) or the arguments are wrong. It never panics, whatever the file holds.
//! A file of format 1 (written by sessiondb before format 2) is named as such: this build
//! reads format 2 only.

#![warn(clippy::pedantic)]

use std::error::Error as _;
use std::fmt::Write as _;
use std::io::{self, BufWriter, StdoutLock, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::{Value, json};
use sessiondb::{
    Clock, Contents, SessionId, SessionInfo, StateInfo, Store, StoreInfo, SystemClock, Verified,
};

#[cfg(feature = "redis")]
mod redis;

const USAGE: &str = "usage: dump [--json] [--summary | --session SID | --verify | --repair] \
                     [--prefix P] PATH|redis://HOST:PORT|redis+cluster://HOST:PORT,...";

/// "Expiring soon": within five minutes, and within an hour.
const SOON: [u64; 2] = [5 * 60 * 1000, 60 * 60 * 1000];

/// Why the dump stopped.
enum Fail {
    /// Bad arguments.
    Usage(String),
    /// The file cannot be used at all.
    File(PathBuf, sessiondb::Error),
    /// Standard output cannot be written.
    Output(io::Error),
}

impl From<io::Error> for Fail {
    fn from(e: io::Error) -> Self {
        Fail::Output(e)
    }
}

fn main() -> ExitCode {
    match try_main() {
        Ok(0) => ExitCode::SUCCESS,
        Ok(problems) => {
            eprintln!("dump: {problems} problem(s) found");
            ExitCode::from(1)
        }
        // `dump ... | head`: the reader has all it wants.
        Err(Fail::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(Fail::Output(e)) => {
            eprintln!("dump: cannot write the output: {e}");
            ExitCode::from(2)
        }
        Err(Fail::Usage(msg)) => {
            eprintln!("dump: {msg}\n{USAGE}");
            ExitCode::from(2)
        }
        Err(Fail::File(path, err)) => {
            if let sessiondb::Error::UnsupportedFormat { found: 1, expected } = err {
                eprintln!(
                    "dump: {}: format 1 (sessiondb before format 2): this build reads format \
                     {expected} only",
                    path.display()
                );
            }
            eprintln!("dump: {}: {err}", path.display());
            let mut source = err.source();
            while let Some(cause) = source {
                eprintln!("  caused by: {cause}");
                source = cause.source();
            }
            ExitCode::from(2)
        }
    }
}

/// What to print.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// The summary and every session.
    All,
    /// The summary only.
    Summary,
    /// One session.
    Session,
    /// The verification report.
    Verify,
    /// Fix the indexes (Redis), then the verification report.
    Repair,
}

struct Args {
    json: bool,
    mode: Mode,
    session: Option<String>,
    /// The Redis key prefix.
    prefix: Option<String>,
    path: PathBuf,
}

/// Parses the arguments; `None` for `--help`.
fn parse_args() -> Result<Option<Args>, Fail> {
    let mut json = false;
    let mut mode = Mode::All;
    let mut session = None;
    let mut prefix = None;
    let mut set_mode = |m: Mode| {
        if mode != Mode::All {
            return Err(Fail::Usage(
                "--summary, --session, --verify and --repair exclude each other".into(),
            ));
        }
        mode = m;
        Ok(())
    };
    let mut path = None;
    let mut args = std::env::args_os().skip(1);
    while let Some(arg) = args.next() {
        match arg.to_str() {
            Some("-h" | "--help") => return Ok(None),
            Some("--json") => json = true,
            Some("--summary") => set_mode(Mode::Summary)?,
            Some("--verify") => set_mode(Mode::Verify)?,
            Some("--repair") => set_mode(Mode::Repair)?,
            Some("--prefix") => {
                let p = args.next().and_then(|p| p.into_string().ok());
                prefix = Some(p.ok_or(Fail::Usage("--prefix needs a prefix".into()))?);
            }
            Some("--session") => {
                set_mode(Mode::Session)?;
                let sid = args.next().ok_or(Fail::Usage("--session needs an id".into()))?;
                let sid = sid.into_string().map_err(|_| Fail::Usage("bad --session id".into()))?;
                session = Some(sid);
            }
            Some(s) if s.starts_with('-') && s != "-" => {
                return Err(Fail::Usage(format!("unknown option {s}")));
            }
            _ if path.is_none() => path = Some(PathBuf::from(arg)),
            _ => return Err(Fail::Usage("only one PATH, please".into())),
        }
    }
    let path = path.ok_or(Fail::Usage("no PATH given".into()))?;
    Ok(Some(Args { json, mode, session, prefix, path }))
}

fn try_main() -> Result<u64, Fail> {
    let Some(args) = parse_args()? else {
        println!("{USAGE}");
        return Ok(0);
    };
    let unusable = |e| Fail::File(args.path.clone(), e);
    // The session id is checked before the file is touched.
    let wanted = match &args.session {
        Some(sid) => {
            Some(SessionId::parse(sid).map_err(|e| Fail::Usage(format!("--session: {e}")))?)
        }
        None => None,
    };
    let url = args.path.to_str().unwrap_or_default();
    if ["redis://", "rediss://", "redis+cluster://"].iter().any(|s| url.starts_with(s)) {
        #[cfg(feature = "redis")]
        return redis::run(&args, wanted);
        #[cfg(not(feature = "redis"))]
        return Err(Fail::Usage(
            "this dump was built without Redis: cargo run --features redis --example dump".into(),
        ));
    }
    if args.mode == Mode::Repair || args.prefix.is_some() {
        return Err(Fail::Usage(
            "--repair and --prefix are for a Redis server; a file repairs itself when opened \
             read-write"
                .into(),
        ));
    }
    // No timeouts of its own: statuses follow the deadlines stored in the file alone.
    let store =
        Store::builder(&args.path).read_only(true).idle_timeout(None).open().map_err(unusable)?;
    let mut dump = Dump::new(args.json);

    match (args.mode, wanted) {
        (Mode::Session, Some(id)) => match store.inspect(&id) {
            Ok(Some((info, _))) => dump.session(&store, &info.id, true)?,
            Ok(None) => dump.problem(format!("no session {id} in the file"))?,
            Err(e) => dump.problem(format!("session {id}: {e}"))?,
        },
        (Mode::Verify, _) => {
            let report = store.verify().map_err(unusable)?;
            dump.verified(&args.path, &report, None)?;
        }
        (mode, _) => {
            let info = store.info().map_err(unusable)?;
            let ages = ages(store.sessions(), dump.now);
            dump.header(&args.path, &info, &ages)?;
            if mode == Mode::All {
                for item in store.sessions() {
                    match item {
                        Ok(session) => dump.session(&store, &session.id, false)?,
                        Err(e) => dump.problem(e.to_string())?,
                    }
                }
            }
            dump.footer(mode == Mode::All)?;
        }
    }
    dump.out.flush()?;
    Ok(dump.problems.len() as u64)
}

/// Where the output goes, and the problems found so far.
struct Dump<'a> {
    out: BufWriter<StdoutLock<'a>>,
    json: bool,
    now: u64,
    /// Sessions written into the JSON array so far.
    listed: u64,
    problems: Vec<String>,
}

impl Dump<'_> {
    /// Output to stdout (JSON with `json`), statuses judged at the present time.
    fn new(json: bool) -> Self {
        Dump {
            out: BufWriter::new(io::stdout().lock()),
            json,
            now: SystemClock.now_ms(),
            listed: 0,
            problems: Vec::new(),
        }
    }

    /// Reports a problem on stderr, after what was printed before it, and goes on.
    fn problem(&mut self, msg: String) -> io::Result<()> {
        self.out.flush()?;
        eprintln!("dump: problem: {msg}");
        self.problems.push(msg);
        Ok(())
    }

    fn header(&mut self, path: &std::path::Path, info: &StoreInfo, ages: &Ages) -> io::Result<()> {
        if self.json {
            let doc = json!({
                "oldest_created": ages.oldest,
                "newest_created": ages.newest,
                "next_expiry": ages.next_expiry,
                "expiring_within_5_min": ages.soon[0],
                "expiring_within_1_h": ages.soon[1],
                "unreadable": ages.unreadable,
                "path": path.to_string_lossy(),
                "now": self.now,
                "format_version": info.format_version,
                "created": info.created,
                "file_size": info.file_size,
                "sessions": info.sessions,
                "states": info.states,
                "expiry_entries": info.expiry_entries,
                "tombstones": info.tombstones,
                "user_entries": info.user_entries,
                "last_swept": info.last_swept,
            });
            // The store object, then the sessions one per line as they are read.
            return write!(self.out, "{{\"store\":{doc},\n\"sessions\":[");
        }
        let when_opt = |ms: Option<u64>| ms.map_or_else(|| "-".to_owned(), |ms| when(self.now, ms));
        let (oldest, newest, next) =
            (when_opt(ages.oldest), when_opt(ages.newest), when_opt(ages.next_expiry));
        let (out, now) = (&mut self.out, self.now);
        writeln!(out, "file            {}", path.display())?;
        writeln!(out, "format version  {}", info.format_version)?;
        writeln!(out, "created         {}", when(now, info.created))?;
        writeln!(out, "file size       {} bytes", info.file_size)?;
        writeln!(out, "sessions        {}", info.sessions)?;
        writeln!(out, "states          {}", info.states)?;
        writeln!(out, "expiry entries  {}", info.expiry_entries)?;
        writeln!(out, "tombstones      {}", info.tombstones)?;
        writeln!(out, "user entries    {}", info.user_entries)?;
        let swept = info.last_swept.map_or_else(|| "never".to_owned(), |ms| when(now, ms));
        writeln!(out, "last swept      {swept}")?;
        writeln!(out, "oldest session  {oldest}")?;
        writeln!(out, "newest session  {newest}")?;
        writeln!(out, "next expiry     {next}")?;
        writeln!(
            out,
            "expiring soon   {} within 5 min, {} within 1 h",
            ages.soon[0], ages.soon[1]
        )?;
        if ages.unreadable > 0 {
            writeln!(out, "unreadable      {} session records", ages.unreadable)?;
        }
        Ok(())
    }

    /// The report of `--verify` (and of `--repair`, with how many entries it fixed).
    fn verified(
        &mut self,
        path: &std::path::Path,
        report: &Verified,
        repaired: Option<u64>,
    ) -> io::Result<()> {
        for p in &report.problems {
            self.problems.push(p.to_string());
        }
        // Problems past the listed ones still count for the exit status.
        let unlisted = report.problem_count.saturating_sub(report.problems.len() as u64);
        self.problems.extend((0..unlisted).map(|_| String::new()));
        if self.json {
            let problems: Vec<Value> = report
                .problems
                .iter()
                .map(|p| json!({ "table": p.table, "key": p.key, "what": p.what }))
                .collect();
            let mut doc = json!({
                "path": path.to_string_lossy(),
                "clean": report.is_clean(),
                "sessions": report.sessions,
                "states": report.states,
                "expiry_entries": report.expiry_entries,
                "tombstones": report.tombstones,
                "user_entries": report.user_entries,
                "problem_count": report.problem_count,
                "problems": problems,
            });
            if let Some(n) = repaired {
                doc["repaired"] = json!(n);
            }
            return writeln!(self.out, "{doc}");
        }
        let out = &mut self.out;
        writeln!(out, "file            {}", path.display())?;
        writeln!(out, "sessions        {}", report.sessions)?;
        writeln!(out, "states          {}", report.states)?;
        writeln!(out, "expiry entries  {}", report.expiry_entries)?;
        writeln!(out, "tombstones      {}", report.tombstones)?;
        writeln!(out, "user entries    {}", report.user_entries)?;
        if let Some(n) = repaired {
            writeln!(out, "repaired        {n} index entries")?;
        }
        for p in &report.problems {
            writeln!(out, "problem: {p}")?;
        }
        if unlisted > 0 {
            writeln!(out, "... and {unlisted} more problems")?;
        }
        if report.is_clean() {
            writeln!(out, "verified: clean")
        } else {
            writeln!(out, "verified: {} problem(s)", report.problem_count)
        }
    }

    fn session(&mut self, store: &impl Source, id: &SessionId, alone: bool) -> io::Result<()> {
        let (info, states) = match snapshot(store, id) {
            Ok(Some(pair)) => pair,
            Ok(None) => return Ok(()), // deleted during the walk
            Err(msg) => return self.problem(msg),
        };
        let status_name = info.status.as_str();
        // Alone, the session is printed in full: its data and every state's.
        let contents = if alone {
            match store.contents(id) {
                Ok(c) => c,
                Err(e) => {
                    self.problem(format!("session {id}: {e}"))?;
                    None
                }
            }
        } else {
            None
        };
        if self.json {
            let states: Vec<Value> =
                states.iter().map(|s| json!({ "id": s.id, "size": s.size })).collect();
            let doc = json!({
                "id": info.id.as_str(),
                "status": status_name,
                "version": info.version,
                "created": info.created,
                "last_access": info.last_access,
                "expires_at": (info.expires_at != u64::MAX).then_some(info.expires_at),
                "data_len": info.data_len,
                "oldest_state": info.oldest_state,
                "latest_state": info.latest_state,
                "states": states,
            });
            if alone {
                let mut doc = doc;
                if let Some(c) = &contents {
                    doc["data"] = json!(escaped(&c.session_data));
                    doc["state_data"] = c
                        .states
                        .iter()
                        .map(|(n, d)| json!({ "id": n, "data": escaped(d) }))
                        .collect();
                }
                return writeln!(self.out, "{doc}");
            }
            let separator = if self.listed == 0 { "" } else { "," };
            self.listed += 1;
            return write!(self.out, "{separator}\n{doc}");
        }
        let states: Vec<String> = states.iter().map(|s| format!("{}:{}", s.id, s.size)).collect();
        let (out, now) = (&mut self.out, self.now);
        if !alone {
            writeln!(out)?;
        }
        writeln!(out, "session {}  {status_name}, version {}", info.id, info.version)?;
        writeln!(out, "  created      {}", when(now, info.created))?;
        writeln!(out, "  last access  {}", when(now, info.last_access))?;
        writeln!(out, "  expires at   {}", when(now, info.expires_at))?;
        writeln!(out, "  data         {} bytes", info.data_len)?;
        writeln!(
            out,
            "  states       {}..={} (id:bytes) {}",
            info.oldest_state,
            info.latest_state,
            states.join(" ")
        )?;
        if let Some(c) = contents {
            writeln!(out, "  data:        {}", escaped(&c.session_data))?;
            for (n, data) in &c.states {
                writeln!(
                    out,
                    "  state {n}:{:>width$}{}",
                    "",
                    escaped(data),
                    width = 6usize.saturating_sub(n.to_string().len())
                )?;
            }
        }
        Ok(())
    }

    fn footer(&mut self, listed: bool) -> io::Result<()> {
        if self.json {
            let end = if listed { "\n]" } else { "]" };
            writeln!(self.out, "{end},\n\"problems\":{}}}", json!(self.problems))?;
        }
        Ok(())
    }
}

/// The file's sessions by age, for the summary.
#[derive(Default)]
struct Ages {
    oldest: Option<u64>,
    newest: Option<u64>,
    next_expiry: Option<u64>,
    /// Live sessions expiring within each of [`SOON`].
    soon: [u64; 2],
    /// Session records that could not be read.
    unreadable: u64,
}

/// One walk over every session's metadata.
fn ages(sessions: impl Iterator<Item = sessiondb::Result<SessionInfo>>, now: u64) -> Ages {
    let mut a = Ages::default();
    for item in sessions {
        let Ok(s) = item else {
            a.unreadable += 1;
            continue;
        };
        a.oldest = Some(a.oldest.map_or(s.created, |o| o.min(s.created)));
        a.newest = Some(a.newest.map_or(s.created, |n| n.max(s.created)));
        if s.expires_at != u64::MAX && s.expires_at > now {
            a.next_expiry = Some(a.next_expiry.map_or(s.expires_at, |e| e.min(s.expires_at)));
            for (count, within) in a.soon.iter_mut().zip(SOON) {
                *count += u64::from(s.expires_at - now <= within);
            }
        }
    }
    a
}

/// A session's record and its states, read together in one transaction. `None` if the
/// session was deleted since the listing read it; a problem if the two disagree.
fn snapshot(
    store: &impl Source,
    id: &SessionId,
) -> Result<Option<(SessionInfo, Vec<StateInfo>)>, String> {
    let Some((info, states)) = store.inspect(id).map_err(|e| format!("session {id}: {e}"))? else {
        return Ok(None);
    };
    if agree(&info, &states) {
        return Ok(Some((info, states)));
    }
    let ids: Vec<String> = states.iter().map(|s| s.id.to_string()).collect();
    Err(format!(
        "session {}: its record says states {}..={}, the states table holds [{}]",
        info.id,
        info.oldest_state,
        info.latest_state,
        ids.join(", ")
    ))
}

/// What the dump reads a session from: a file or (feature `redis`) a Redis server.
trait Source {
    /// As [`Store::inspect`].
    fn inspect(&self, id: &SessionId) -> sessiondb::Result<Option<(SessionInfo, Vec<StateInfo>)>>;
    /// As [`Store::contents`].
    fn contents(&self, id: &SessionId) -> sessiondb::Result<Option<Contents>>;
}

impl Source for Store {
    fn inspect(&self, id: &SessionId) -> sessiondb::Result<Option<(SessionInfo, Vec<StateInfo>)>> {
        Store::inspect(self, id)
    }
    fn contents(&self, id: &SessionId) -> sessiondb::Result<Option<Contents>> {
        Store::contents(self, id)
    }
}

/// Whether the states stored are exactly those the record says are kept.
fn agree(info: &SessionInfo, states: &[StateInfo]) -> bool {
    states.iter().map(|s| s.id).eq(info.oldest_state..=info.latest_state)
}

/// Bytes as text: printable ASCII as it is, everything else (and `\\`) as `\\xNN`; the first
/// 4 KiB only, with the size of the rest.
fn escaped(bytes: &[u8]) -> String {
    const SHOWN: usize = 4096;
    let mut s = String::new();
    for &b in bytes.iter().take(SHOWN) {
        if (b.is_ascii_graphic() || b == b' ') && b != b'\\' {
            s.push(char::from(b));
        } else {
            let _ = write!(s, "\\x{b:02x}");
        }
    }
    if bytes.len() > SHOWN {
        let _ = write!(s, "... ({} more bytes)", bytes.len() - SHOWN);
    }
    s
}

/// `ms` as milliseconds since the epoch and as a distance from `now`.
fn when(now: u64, ms: u64) -> String {
    match ms {
        u64::MAX => "never".to_owned(),
        ms if ms <= now => format!("{ms}  ({} ago)", span(now - ms)),
        ms => format!("{ms}  (in {})", span(ms - now)),
    }
}

/// A duration in milliseconds, in its two largest units.
fn span(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0 => format!("{ms} ms"),
        1..60 => format!("{s}.{} s", ms % 1000 / 100),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        3600..86_400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
    }
}
