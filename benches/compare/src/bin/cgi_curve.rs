//! The file size and session count of a CGI deployment over time, fed cookie-less requests at
//! a steady rate (issue 15, item 2): with the clean-up shared by the short-lived processes
//! (`Store::cleanup_if_due` after each response) and, beside it on another file, as before
//! (no clean-up at all, as `examples/cgi_counter` was).
//!
//! ```text
//! cargo run --release --bin cgi_curve -- [--seconds 180] [--rate 20] [--idle-ms 3000]
//!     [--interval-ms 10000] [--csv FILE] [--svg FILE]
//! ```
//!
//! Every request is a fresh process (this binary, re-run with `CGI_CURVE_CHILD` set), as a web
//! server runs a CGI program, started at `--rate` per second per deployment whether or not the
//! earlier ones have finished. A request does what `examples/cgi_counter` does for a GET
//! without a cookie: it opens the file (no clean-up thread), creates a session holding a
//! counter with one state, and writes its response; then, in the deployment with clean-up, it
//! replaces its standard output by `/dev/null` (the server sees the response end there) and
//! calls `cleanup_if_due`, and leaves the file with `close_for_exit`. The driver reads each
//! response to its end, as the server would. Sessions expire after `--idle-ms` idle, with no
//! grace window; the clean-up interval is `--interval-ms`.
//!
//! Once a second it samples each file: sessions, states, file size (`Store::info`, through a
//! handle that never sweeps). It prints the samples as CSV (and writes them to `--csv`), and
//! draws them as an SVG (`--svg`).

use std::fmt::Write as _;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
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

fn main() {
    if std::env::var_os("CGI_CURVE_CHILD").is_some() {
        child();
        return;
    }
    let mut seconds = 180u64;
    let mut rate = 20u64;
    let mut idle_ms = 3000u64;
    let mut interval_ms = 10_000u64;
    let mut csv: Option<PathBuf> = None;
    let mut svg: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--seconds" => seconds = value().parse().expect("--seconds N"),
            "--rate" => rate = value().parse().expect("--rate N"),
            "--idle-ms" => idle_ms = value().parse().expect("--idle-ms N"),
            "--interval-ms" => interval_ms = value().parse().expect("--interval-ms N"),
            "--csv" => csv = Some(value().into()),
            "--svg" => svg = Some(value().into()),
            other => panic!("unknown argument {other}"),
        }
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let files: Vec<PathBuf> =
        (0..MODES.len()).map(|m| dir.path().join(format!("sessions-{m}.redb"))).collect();
    let done: Arc<[AtomicU64; 2]> = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let failed = Arc::new(AtomicU64::new(0));
    let settings = format!(
        "rate {rate}/s per deployment, idle timeout {idle_ms} ms, no grace window, \
         clean-up interval {interval_ms} ms, {seconds} s"
    );
    eprintln!("cgi_curve: {settings}");

    // The driver: one thread per deployment starts a request every 1/rate s.
    let start = Instant::now();
    let exe = std::env::current_exe().expect("this binary");
    let drivers: Vec<_> = (0..MODES.len())
        .map(|m| {
            let (exe, file, done, failed) =
                (exe.clone(), files[m].clone(), Arc::clone(&done), Arc::clone(&failed));
            std::thread::spawn(move || {
                let period = Duration::from_secs_f64(1.0 / rate as f64);
                let mut n = 0u32;
                while start.elapsed() < Duration::from_secs(seconds) {
                    let at = start + period * n;
                    if let Some(wait) = at.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    n += 1;
                    let mut child = Command::new(&exe)
                        .env("CGI_CURVE_CHILD", "1")
                        .env("CGI_CURVE_PATH", &file)
                        .env("CGI_CURVE_SWEEP", if m == 0 { "1" } else { "0" })
                        .env("CGI_CURVE_IDLE_MS", idle_ms.to_string())
                        .env("CGI_CURVE_INTERVAL_MS", interval_ms.to_string())
                        .env("REQUEST_METHOD", "GET")
                        .stdout(Stdio::piped())
                        .spawn()
                        .expect("start a request");
                    let (done, failed) = (Arc::clone(&done), Arc::clone(&failed));
                    std::thread::spawn(move || {
                        let mut response = String::new();
                        let read = child.stdout.take().unwrap().read_to_string(&mut response);
                        let ok = child.wait().is_ok_and(|s| s.success());
                        if read.is_ok() && ok && response.starts_with("Status: 200 OK") {
                            done[m].fetch_add(1, Ordering::Relaxed);
                        } else {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    });
                }
            })
        })
        .collect();

    // The sampler.
    let mut table = String::from("seconds,deployment,requests,sessions,states,file_bytes\n");
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); MODES.len()];
    let mut observers: Vec<Option<Store>> = (0..MODES.len()).map(|_| None).collect();
    let mut tick = 0u64;
    while tick <= seconds + 2 {
        let at = start + Duration::from_secs(tick);
        if let Some(wait) = at.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        for m in 0..MODES.len() {
            if observers[m].is_none() && files[m].exists() {
                observers[m] = Store::builder(&files[m]).cleanup_interval(None).open().ok();
            }
            let Some(info) = observers[m].as_ref().and_then(|s| s.info().ok()) else {
                continue;
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

/// One request, as `examples/cgi_counter` answers a GET without a cookie.
fn child() {
    let var = |name: &str| std::env::var(name).expect(name);
    let ms = |name: &str| Duration::from_millis(var(name).parse().expect(name));
    let sweep = var("CGI_CURVE_SWEEP") == "1";
    let mut builder = Store::builder(Path::new(&var("CGI_CURVE_PATH")))
        .idle_timeout(Some(ms("CGI_CURVE_IDLE_MS")))
        .grace_period(Duration::ZERO)
        .max_states(16);
    builder = if sweep {
        builder.cleanup_thread(false).cleanup_interval(Some(ms("CGI_CURVE_INTERVAL_MS")))
    } else {
        builder.cleanup_interval(None)
    };
    let store = builder.open().expect("open");
    // The demo's session data (a counter at 1, no user) and its first state (counter 1).
    let created = store.create(&[1, 0, 0, 0, 0, 0, 0, 0, 0], &1u64.to_le_bytes()).expect("create");
    let mut out = std::io::stdout().lock();
    let page = format!(
        "Status: 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n\
         Set-Cookie: sessiondb={}.{}; Path=/; HttpOnly; SameSite=Lax\r\n\
         Cache-Control: no-store\r\n\r\n<p>counter 1</p>\n",
        created.id.as_str(),
        created.token.as_str()
    );
    std::io::Write::write_all(&mut out, page.as_bytes()).expect("write the response");
    std::io::Write::flush(&mut out).expect("flush the response");
    drop(out);
    if sweep {
        let null = std::fs::OpenOptions::new().write(true).open("/dev/null").expect("/dev/null");
        // SAFETY: descriptors this process owns; stdout was flushed and its lock released.
        unsafe { libc_dup2(std::os::fd::AsRawFd::as_raw_fd(&null), 1) };
        store.cleanup_if_due().expect("cleanup_if_due");
    }
    store.close_for_exit();
}

unsafe extern "C" {
    #[link_name = "dup2"]
    fn libc_dup2(old: i32, new: i32) -> i32;
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
