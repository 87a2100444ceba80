//! The targets tables of results.md: issue 17's (the goals of the shared commit and the new
//! file format) and what is left of issue 6's, each target beside the redb floor's bound on it
//! (`floor.rs`) where the floor says something.

use std::fmt::Write as _;

use crate::Cell;
use crate::opts::{Opts, PxT, pxt};
use crate::report::{cgi_cost, cgi_pt, find, fmt_ms, ms, ratio, scale_pair};
use crate::systems::Kind;

/// One row: target, measured, met (`None`: reported, no target, or not run), the redb floor's
/// bounds, what they say of the target.
type Row = (String, String, Option<bool>, String, &'static str);

/// Renders a targets table under `title` and its preamble.
fn table(title: &str, preamble: &str, rows: Vec<Row>) -> String {
    let mut s = format!(
        "#### {title}\n\n{preamble}\n\n| target | measured | met | redb floor | |\n|---|---|---|---|---|\n"
    );
    for (t, m, ok, bound, above) in rows {
        let met = match ok {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "—",
        };
        let _ = writeln!(s, "| {t} | {m} | {met} | {bound} | {above} |");
    }
    s.push('\n');
    s
}

const FLOOR_WORDS: &str = "\"redb floor\": the most any store on redb `MultiWriter` could reach \
     in this run (`floor.rs`). \"above the floor\": the target is out of reach for any store on \
     redb; \"above the per-process floor\": out of reach unless one commit holds the writes of \
     several processes; \"above bare redb\": above what redb alone, with a group commit, reached \
     (not a bound).";

/// sessiondb-multi ÷ `base` at `pt` against `min` (`None`: reported without a target).
fn ratio_row(cells: &[Cell], w: &str, base: Kind, min: Option<f64>, pt: PxT) -> Row {
    let cell = if w == "cgi" { format!("P={}", pt.0) } else { pxt(pt) };
    let target = match min {
        Some(min) => format!("`{w}` {cell}: sessiondb-multi ≥ {min}× {}", base.name()),
        None => format!("`{w}` {cell}: sessiondb-multi ÷ {} (reported, no target)", base.name()),
    };
    let Some(r) = ratio(cells, w, base, pt) else {
        return (target, "not run".into(), None, "—".into(), "");
    };
    let (bound, above) = bound_text(min.unwrap_or(0.0), floor_bound(cells, w, base, pt));
    (target, format!("{r:.2}×"), min.map(|m| r >= m), bound, if min.is_some() { above } else { "" })
}

/// Bare redb's latency in the same cell (`floor-web` for `web`, `floor-write` for `write`:
/// each of its latencies is a commit of T rows), beside a tail target.
fn bare_tail(cells: &[Cell], w: &str, pt: PxT, q: Option<f64>) -> Option<f64> {
    let name = if w == "web" { "floor-web" } else { "floor-write" };
    let c = find(cells, name, Kind::Floor, pt)?;
    Some(ms(q.map_or(c.hist.max_ns, |q| c.hist.quantile(q))))
}

/// Issue 17's goals, every one a row (a cell the run did not cover says "not run").
pub fn issue17(o: &Opts, cells: &[Cell]) -> String {
    let mut rows: Vec<Row> = Vec::new();
    let four = [(1, 4), (2, 4), (4, 4)];
    rows.push(ratio_row(cells, "write", Kind::SqlFull, Some(1.2), (1, 4)));
    for pt in [(4, 1), (8, 1), (16, 1)] {
        rows.push(ratio_row(cells, "write", Kind::SqlFull, Some(1.5), pt));
    }
    rows.push(ratio_row(cells, "write", Kind::SqlFull, None, (1, 1)));
    for pt in four.into_iter().chain([(8, 1), (16, 1)]) {
        rows.push(ratio_row(cells, "web", Kind::SqlFull, Some(1.3), pt));
        rows.push(ratio_row(cells, "web", Kind::Tower, Some(2.0), pt));
    }
    for p in [1, 2, 4] {
        rows.push(ratio_row(cells, "cgi", Kind::SqlFull, Some(1.0), cgi_pt(p)));
    }
    // Tails, in every `write` and `web` cell of the run.
    for w in ["write", "web"] {
        for &pt in &o.cells {
            let Some(s) = find(cells, w, Kind::Multi, pt) else { continue };
            let max = ms(s.hist.max_ns);
            let bare = bare_tail(cells, w, pt, None);
            rows.push((
                format!("`{w}` {}: sessiondb-multi max ≤ 100 ms", pxt(pt)),
                format!("{} ms", fmt_ms(max)),
                Some(max <= 100.0),
                bare.map_or("—".into(), |b| format!("bare redb max {} ms", fmt_ms(b))),
                if bare.is_some_and(|b| b > 100.0) { "above bare redb" } else { "" },
            ));
            let target = format!("`{w}` {}: sessiondb-multi p99 ≤ sqlite-full p99", pxt(pt));
            let p99 = ms(s.hist.quantile(0.99));
            let Some(q) = find(cells, w, Kind::SqlFull, pt) else {
                rows.push((target, "sqlite-full not run".into(), None, "—".into(), ""));
                continue;
            };
            let q99 = ms(q.hist.quantile(0.99));
            let bare = bare_tail(cells, w, pt, Some(0.99));
            rows.push((
                target,
                format!("{} ms vs {} ms", fmt_ms(p99), fmt_ms(q99)),
                Some(p99 <= q99),
                bare.map_or("—".into(), |b| format!("bare redb p99 {} ms", fmt_ms(b))),
                if bare.is_some_and(|b| b > q99) { "above bare redb" } else { "" },
            ));
        }
    }
    for &pt in &o.scale_cells {
        let target =
            format!("`web` {}: at {} sessions ≥ 0.8 of its rate at {}", pxt(pt), o.big, o.sessions);
        let (a, b) = scale_pair(cells, o, "scale-web", pt);
        rows.push(match (a, b) {
            (Some(a), Some(b)) if b.sessions > a.sessions => {
                let r = b.rps() / a.rps();
                (target, format!("{r:.2}"), Some(r >= 0.8), "—".into(), "")
            }
            _ => (target, "not run".into(), None, "—".into(), ""),
        });
    }
    let preamble = format!(
        "Cells P×T: P processes of T threads (`cgi`: P concurrent requests). {FLOOR_WORDS} \
         Tails: \"bare redb\" is the same cell's `floor-web` (for `web`) or `floor-write` (for \
         `write`: each latency one commit of T rows)."
    );
    table("Targets (issue 17)", &preamble, rows)
}

/// The redb floor's bounds on a ratio target (`floor.rs`).
struct Bound {
    /// The ratio that redb's part of the work alone reaches: no store on redb `MultiWriter`
    /// can do better. For `web`: every commit full (K = T) and loads free.
    strict: f64,
    /// `web`: the ratio of `floor-web`, bare redb with a minimal group commit.
    bare: Option<f64>,
    /// P > 1: the strict bound if one commit could hold the saves of all processes.
    shared: Option<f64>,
}

/// `None` where the floor says nothing (`read`) or was not run.
fn floor_bound(cells: &[Cell], w: &str, base: Kind, pt: PxT) -> Option<Bound> {
    let rows = |name: &str| find(cells, name, Kind::Floor, pt).map(Cell::rps);
    // A `web` request saves with probability WEB_SAVE: R saves/s allow R / WEB_SAVE requests/s.
    let share = if w == "web" { crate::WEB_SAVE } else { 1.0 };
    match w {
        "web" | "write" => {
            let b = find(cells, w, base, pt)?.rps();
            let strict = |r: f64| r / share / b;
            Some(Bound {
                strict: strict(rows("floor-write")?),
                bare: if w == "web" { rows("floor-web").map(|r| r / b) } else { None },
                shared: rows("floor-write-xp").map(strict),
            })
        }
        "cgi" => {
            let base = find(cells, w, base, pt)?;
            let c = find(cells, "floor-cgi-noclose", Kind::Floor, pt)?;
            Some(Bound { strict: cgi_cost(base) / cgi_cost(c), bare: None, shared: None })
        }
        _ => None,
    }
}

/// The fastest floor sweep, among those whose longest commit is within `max_ms` if given:
/// (removed/s, batch, longest commit in ms).
fn floor_sweep(cells: &[Cell], max_ms: Option<f64>) -> Option<(f64, String, f64)> {
    cells
        .iter()
        .filter(|c| c.workload.starts_with("floor-sweep-"))
        .filter(|c| max_ms.is_none_or(|m| ms(c.hist.max_ns) <= m))
        .map(|c| (c.rps(), c.workload["floor-sweep-".len()..].to_string(), ms(c.hist.max_ns)))
        .max_by(|a, b| a.0.total_cmp(&b.0))
}

/// The floor column of the targets table, and what the floor says of the target: above the
/// strict bound (out of reach on redb), or above what bare redb with group commit reached.
fn bound_text(min: f64, bound: Option<Bound>) -> (String, &'static str) {
    let Some(b) = bound else { return ("—".into(), "") };
    let mut text = format!("≤ {:.2}×", b.strict);
    if let Some(bare) = b.bare {
        text = format!("{bare:.2}× bare redb with group commit; {text} with loads free");
    }
    if let Some(x) = b.shared {
        let _ = write!(text, "; one commit for all processes: ≤ {x:.2}×");
    }
    let verdict = if b.strict < min && b.shared.is_some_and(|x| x >= min) {
        "above the per-process floor"
    } else if b.strict < min {
        "above the floor"
    } else if b.bare.is_some_and(|r| r < min) {
        "above bare redb"
    } else {
        ""
    };
    (text, verdict)
}

/// What is left of issue 6's targets: `read`, `sweep`, `read` at 1M sessions and the peak RSS.
/// Its `web`, `write` and `cgi` rows are issue 17's now (new thresholds, in the table above),
/// and so is `web` at 1M sessions.
pub fn issue6(o: &Opts, cells: &[Cell]) -> String {
    let mut rows: Vec<Row> = Vec::new();
    // Issue 6 set them at 4 threads, P = 1, 2, 4.
    for (base, min) in [(Kind::Tower, 2.0), (Kind::SqlFull, 1.0)] {
        for &pt in o.cells.iter().filter(|&&(p, t)| t == 4 && p <= 4) {
            if ratio(cells, "read", base, pt).is_some() {
                rows.push(ratio_row(cells, "read", base, Some(min), pt));
            }
        }
    }
    // The rate target alone is out of reach if no batch size reached it, however long its
    // commits; the best rate within the latency target is shown beside.
    let (fastest, within) = (floor_sweep(cells, None), floor_sweep(cells, Some(50.0)));
    for &pt in &o.sweep_cells {
        let Some(c) = find(cells, "sweep", Kind::Multi, pt) else { continue };
        let (n, s) = c.swept.unwrap_or((0, f64::NAN));
        let rate = n as f64 / s;
        let (bound, above) = match &fastest {
            Some((r, batch, longest)) => {
                let above = if *r < 100_000.0 { "above the floor" } else { "" };
                let within = within.as_ref().map_or_else(
                    || "no batch size kept its commits within 50 ms".to_string(),
                    |(w, b, _)| format!("≤ {w:.0}/s with commits within 50 ms (batches of {b})"),
                );
                let text = format!(
                    "≤ {r:.0}/s (batches of {batch}, commits up to {longest:.0} ms); {within}"
                );
                (text, above)
            }
            None => ("—".into(), ""),
        };
        let cell = pxt(pt);
        rows.push((
            format!("`sweep` {cell}: ≥ 100k removed/s"),
            format!("{rate:.0}/s"),
            Some(rate >= 100_000.0),
            bound,
            above,
        ));
        let worst = ms(c.hist.max_ns);
        rows.push((
            format!("`sweep` {cell}: worst `web` request ≤ 50 ms"),
            format!("{worst:.1} ms"),
            Some(worst <= 50.0),
            "—".into(),
            "",
        ));
    }
    for &pt in &o.scale_cells {
        if let (Some(a), Some(b)) = scale_pair(cells, o, "scale-read", pt) {
            let r = b.rps() / a.rps();
            rows.push((
                format!("`read` {}: {} within 25% of {}", pxt(pt), b.sessions, a.sessions),
                format!("{r:.2}"),
                Some(r >= 0.75),
                "—".into(),
                "",
            ));
        }
    }
    let big = cells.iter().filter(|c| c.workload.starts_with("scale-")).map(|c| c.sessions).max();
    if let Some(big) = big.filter(|&b| b > o.sessions) {
        let hwm = cells.iter().filter(|c| c.sessions == big).map(|c| c.hwm_kb).max();
        let mib = hwm.unwrap_or(0) as f64 / 1024.0;
        rows.push((
            format!("peak RSS per worker at {big} sessions ≤ 64 MiB"),
            format!("{mib:.1} MiB"),
            Some(mib <= 64.0),
            "—".into(),
            "",
        ));
    }
    if rows.is_empty() {
        return String::new();
    }
    table(
        "Targets (issue 6: `read`, `sweep`, scale of `read`, memory)",
        &format!("{FLOOR_WORDS} Issue 6's `web`, `write` and `cgi` targets are issue 17's above."),
        rows,
    )
}
