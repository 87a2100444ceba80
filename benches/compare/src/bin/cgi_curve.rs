//! The file size and session count of a CGI deployment over time, fed cookie-less requests at
//! a steady rate (issue 15, item 2): the real demo, `examples/cgi_counter`, served by lighttpd
//! as `scripts/lighttpd-cgi.sh` serves it, twice side by side, each on its own file: with the
//! clean-up the short-lived processes share (`SESSIONDB_CLEANUP_INTERVAL`, which the demo does
//! after each response with `Store::cleanup_if_due`) and without it
//! (`SESSIONDB_CLEANUP_INTERVAL=off`, as the demo was before).
//!
//! ```text
//! cargo build --release --example cgi_counter        # in the repository's root
//! cd benches/compare
//! cargo run --release --bin cgi_curve -- [--seconds 180] [--rate 20] [--idle 3s]
//!     [--interval 10s] [--demo PATH] [--direct] [--csv FILE] [--svg FILE]
//! ```
//!
//! Each deployment is a lighttpd (found on `PATH` or in `/usr/sbin`) on a free port of
//! 127.0.0.1, with a temporary document root holding the demo as `counter.cgi`, and its
//! settings passed by `mod_setenv`: `SESSIONDB_PATH`, `SESSIONDB_IDLE_TIMEOUT` (`--idle`),
//! `SESSIONDB_GRACE=0`, `SESSIONDB_CLEANUP_INTERVAL` (`--interval`, or `off`). `--direct`
//! runs the demo as a CGI server would, without lighttpd (a fresh process per request, the
//! request in CGI variables, the response read from its output to its end). `--demo` names
//! the demo binary (default: `target/release/examples/cgi_counter` of this repository).
//!
//! A request, a plain `GET /counter.cgi` with no cookie (HTTP/1.0, read to the end), is
//! started every 1/`--rate` s per deployment whether or not the earlier ones have finished.
//! Once a second it samples each file: sessions, states and file size (`Store::info`), through
//! a read-only open (a read-only store never sweeps). That works beside the live processes as
//! long as none is killed mid-use: a file left by a killed process needs the repair that the
//! next read-write open does, and redb refuses a read-only open of it until then
//! (`RepairAborted`), as it did here before the demo ignored lighttpd's `SIGTERM`. It prints
//! the samples as CSV (and writes them to `--csv`), and draws them as an SVG (`--svg`).

use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sessiondb::Store;

/// One sample: seconds since the start, sessions, file size in bytes.
type Sample = (f64, u64, u64);

/// A panel of the picture: its title, and the value it plots of a sample.
type Panel = (&'static str, fn(&Sample) -> f64);

/// The two deployments, in the order of the CSV and the picture.
const MODES: [&str; 2] = ["shared clean-up", "no clean-up (before)"];

/// How a deployment is reached.
enum Server {
    /// lighttpd on this port (killed when dropped).
    Lighttpd { child: Child, port: u16 },
    /// The demo run directly as CGI, with these settings.
    Direct { demo: PathBuf, env: Vec<(String, String)> },
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Server::Lighttpd { child, .. } = self {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Server {
    /// One cookie-less GET; whether it was answered `200`.
    fn get(&self) -> bool {
        match self {
            Server::Lighttpd { port, .. } => {
                let Ok(mut stream) = TcpStream::connect(("127.0.0.1", *port)) else {
                    return false;
                };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
                let request = "GET /counter.cgi HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
                let mut response = String::new();
                stream.write_all(request.as_bytes()).is_ok()
                    && stream.read_to_string(&mut response).is_ok()
                    && response.split(' ').nth(1) == Some("200")
                    && response.contains("Set-Cookie: sessiondb=")
            }
            Server::Direct { demo, env } => {
                let child = Command::new(demo)
                    .env_clear()
                    .envs(env.iter().map(|(k, v)| (k, v)))
                    .env("GATEWAY_INTERFACE", "CGI/1.1")
                    .env("REQUEST_METHOD", "GET")
                    .env("SCRIPT_NAME", "/counter.cgi")
                    .env("QUERY_STRING", "")
                    .env("REMOTE_ADDR", "127.0.0.1")
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null())
                    .spawn();
                let Ok(mut child) = child else { return false };
                let mut response = String::new();
                let read = child.stdout.take().unwrap().read_to_string(&mut response);
                let exited = child.wait().is_ok_and(|s| s.success());
                read.is_ok() && exited && response.starts_with("Status: 200 OK")
            }
        }
    }
}

/// lighttpd's path: on `PATH`, or `/usr/sbin/lighttpd`.
fn lighttpd_bin() -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths).map(|d| d.join("lighttpd")).find(|p| p.is_file())
    });
    on_path.unwrap_or_else(|| PathBuf::from("/usr/sbin/lighttpd"))
}

/// Starts lighttpd serving `demo` as `counter.cgi` from `dir/www`, with `env`.
fn lighttpd(dir: &Path, demo: &Path, env: &[(String, String)]) -> Server {
    let www = dir.join("www");
    std::fs::create_dir_all(&www).expect("the document root");
    std::fs::copy(demo, www.join("counter.cgi")).expect("copy the demo");
    let vars: Vec<String> = env.iter().map(|(k, v)| format!("\"{k}\" => \"{v}\"")).collect();
    for _ in 0..10 {
        // A free port now; another one if lighttpd cannot bind it after all.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let conf = dir.join("lighttpd.conf");
        std::fs::write(
            &conf,
            format!(
                "server.modules = ( \"mod_setenv\", \"mod_cgi\" )\nserver.bind = \"127.0.0.1\"\n\
                 server.port = {port}\nserver.document-root = \"{}\"\n\
                 server.errorlog = \"{}\"\ncgi.assign = ( \".cgi\" => \"\" )\n\
                 setenv.add-environment = ( {} )\n",
                www.display(),
                dir.join("error.log").display(),
                vars.join(", ")
            ),
        )
        .expect("write the configuration");
        let mut child = Command::new(lighttpd_bin())
            .arg("-D")
            .arg("-f")
            .arg(&conf)
            .stdout(Stdio::null())
            .spawn()
            .expect("start lighttpd (apt-get install lighttpd)");
        for _ in 0..50 {
            if child.try_wait().ok().flatten().is_some() {
                break;
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Server::Lighttpd { child, port };
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("lighttpd did not start; see {}", dir.join("error.log").display());
}

fn main() {
    let mut seconds = 180u64;
    let mut rate = 20u64;
    let mut idle = "3s".to_owned();
    let mut interval = "10s".to_owned();
    let mut demo = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../target/release/examples/cgi_counter"
    ));
    let mut direct = false;
    let mut csv: Option<PathBuf> = None;
    let mut svg: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--seconds" => seconds = value().parse().expect("--seconds N"),
            "--rate" => rate = value().parse().expect("--rate N"),
            "--idle" => idle = value(),
            "--interval" => interval = value(),
            "--demo" => demo = value().into(),
            "--direct" => direct = true,
            "--csv" => csv = Some(value().into()),
            "--svg" => svg = Some(value().into()),
            other => panic!("unknown argument {other}"),
        }
    }
    assert!(
        demo.is_file(),
        "no demo at {} (cargo build --release --example cgi_counter)",
        demo.display()
    );
    let dir = tempfile::tempdir().expect("a temporary directory");
    let files: Vec<PathBuf> =
        (0..MODES.len()).map(|m| dir.path().join(format!("db-{m}/sessions.redb"))).collect();
    let servers: Vec<Arc<Server>> = (0..MODES.len())
        .map(|m| {
            let home = dir.path().join(format!("db-{m}"));
            std::fs::create_dir_all(&home).expect("the deployment's directory");
            let env: Vec<(String, String)> = [
                ("SESSIONDB_PATH", files[m].to_str().expect("a UTF-8 path")),
                ("SESSIONDB_IDLE_TIMEOUT", idle.as_str()),
                ("SESSIONDB_GRACE", "0"),
                ("SESSIONDB_CLEANUP_INTERVAL", if m == 0 { interval.as_str() } else { "off" }),
            ]
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
            Arc::new(if direct {
                Server::Direct { demo: demo.clone(), env }
            } else {
                lighttpd(&home, &demo, &env)
            })
        })
        .collect();
    let done: Arc<[AtomicU64; 2]> = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let failed = Arc::new(AtomicU64::new(0));
    let served = if direct { "cgi_counter as CGI" } else { "cgi_counter under lighttpd" };
    let settings = format!(
        "{served}, {rate} GETs/s each, idle timeout {idle}, grace 0, \
         clean-up interval {interval} vs off, {seconds} s"
    );
    eprintln!("cgi_curve: {settings}");

    // The driver: one thread per deployment starts a request every 1/rate s.
    let start = Instant::now();
    let drivers: Vec<_> = (0..MODES.len())
        .map(|m| {
            let (server, done, failed) =
                (Arc::clone(&servers[m]), Arc::clone(&done), Arc::clone(&failed));
            std::thread::spawn(move || {
                let period = Duration::from_secs_f64(1.0 / rate as f64);
                let mut n = 0u32;
                let mut requests = Vec::new();
                while start.elapsed() < Duration::from_secs(seconds) {
                    let at = start + period * n;
                    if let Some(wait) = at.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    n += 1;
                    let (server, done, failed) =
                        (Arc::clone(&server), Arc::clone(&done), Arc::clone(&failed));
                    requests.push(std::thread::spawn(move || {
                        if server.get() {
                            done[m].fetch_add(1, Ordering::Relaxed);
                        } else {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }));
                    requests.retain(|r| !r.is_finished());
                }
                for r in requests {
                    r.join().expect("request thread");
                }
            })
        })
        .collect();

    // The sampler.
    let mut table = String::from("seconds,deployment,requests,sessions,states,file_bytes\n");
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); MODES.len()];
    let mut tick = 0u64;
    while tick <= seconds + 2 {
        let at = start + Duration::from_secs(tick);
        if let Some(wait) = at.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        for m in 0..MODES.len() {
            if !files[m].exists() {
                continue;
            }
            let info = Store::builder(&files[m]).read_only(true).open().and_then(|s| s.info());
            let info = match info {
                Ok(info) => info,
                Err(e) => {
                    eprintln!("cgi_curve: {}: no sample: {e:?}", MODES[m]);
                    continue;
                }
            };
            let t = start.elapsed().as_secs_f64();
            let requests = done[m].load(Ordering::Relaxed);
            let line = format!(
                "{t:.1},{},{requests},{},{},{}",
                MODES[m], info.sessions, info.states, info.file_size
            );
            println!("{line}");
            let _ = writeln!(table, "{line}");
            samples[m].push((t, info.sessions, info.file_size));
        }
        tick += 1;
    }
    for d in drivers {
        d.join().expect("driver thread");
    }
    drop(servers);
    let failures = failed.load(Ordering::Relaxed);
    eprintln!(
        "cgi_curve: answered {} and {} requests, {failures} failed",
        done[0].load(Ordering::Relaxed),
        done[1].load(Ordering::Relaxed)
    );
    if let Some(csv) = csv {
        std::fs::write(csv, &table).expect("write the CSV");
    }
    if let Some(svg) = svg {
        std::fs::write(svg, draw(&samples, &settings)).expect("write the SVG");
    }
}

/// Two panels (sessions, file size in KiB) over time, one line per deployment.
fn draw(samples: &[Vec<Sample>], settings: &str) -> String {
    const W: f64 = 760.0;
    const PANEL_H: f64 = 220.0;
    const LEFT: f64 = 70.0;
    const RIGHT: f64 = 20.0;
    const TOP: f64 = 50.0;
    const GAP: f64 = 60.0;
    const COLORS: [&str; 2] = ["#1f77b4", "#d62728"];
    let height = TOP + 2.0 * PANEL_H + GAP + 50.0;
    let t_max = samples.iter().flatten().map(|s| s.0).fold(1.0, f64::max);
    let mut svg = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{height}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{LEFT}" y="20" font-size="14">CGI deployment fed cookie-less requests: sessions and file size over time</text>
<text x="{LEFT}" y="36" fill="#555">{settings}</text>
"##
    );
    let panels: [Panel; 2] =
        [("sessions in the file", |s| s.1 as f64), ("file size, KiB", |s| s.2 as f64 / 1024.0)];
    for (p, (title, value)) in panels.iter().enumerate() {
        let top = TOP + p as f64 * (PANEL_H + GAP);
        let v_max = nice(samples.iter().flatten().map(value).fold(1.0, f64::max));
        let x = |t: f64| LEFT + (W - LEFT - RIGHT) * t / t_max;
        let y = |v: f64| top + PANEL_H - PANEL_H * v / v_max;
        let _ = writeln!(
            svg,
            r##"<rect x="{LEFT}" y="{top}" width="{}" height="{PANEL_H}" fill="none" stroke="#999"/>
<text x="{}" y="{}" font-weight="bold">{title}</text>"##,
            W - LEFT - RIGHT,
            LEFT + 6.0,
            top + 16.0
        );
        for k in 0..=4 {
            let v = v_max * f64::from(k) / 4.0;
            let (x2, yv, tx, ty) = (W - RIGHT, y(v), LEFT - 6.0, y(v) + 4.0);
            let _ = writeln!(
                svg,
                r##"<line x1="{LEFT}" x2="{x2}" y1="{yv:.1}" y2="{yv:.1}" stroke="#eee"/><text x="{tx}" y="{ty:.1}" text-anchor="end">{v:.0}</text>"##
            );
        }
        let step = if t_max > 120.0 { 30.0 } else { 10.0 };
        let mut t = 0.0;
        while t <= t_max {
            let _ = writeln!(
                svg,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{t:.0} s</text>"#,
                x(t),
                top + PANEL_H + 16.0
            );
            t += step;
        }
        for (m, series) in samples.iter().enumerate() {
            let points: Vec<String> =
                series.iter().map(|s| format!("{:.1},{:.1}", x(s.0), y(value(s)))).collect();
            let _ = writeln!(
                svg,
                r#"<polyline fill="none" stroke="{}" stroke-width="1.8" points="{}"/>"#,
                COLORS[m],
                points.join(" ")
            );
        }
    }
    let legend_y = height - 18.0;
    for (m, mode) in MODES.iter().enumerate() {
        let lx = LEFT + 260.0 * m as f64;
        let _ = writeln!(
            svg,
            r#"<line x1="{lx}" x2="{}" y1="{legend_y}" y2="{legend_y}" stroke="{}" stroke-width="3"/><text x="{}" y="{}">{mode}</text>"#,
            lx + 24.0,
            COLORS[m],
            lx + 30.0,
            legend_y + 4.0
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// A round upper bound for an axis: 1, 2 or 5 times a power of ten, at least `v`.
fn nice(v: f64) -> f64 {
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * p).find(|&b| b >= v).unwrap_or(10.0 * p)
}
