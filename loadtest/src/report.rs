//! What a run found, in three forms: a table on the terminal, a JSON file,
//! and an HTML report with throughput and latency over time (inline SVG, no
//! external assets).

use hdrhistogram::Histogram;
use serde::Serialize;
use std::fmt::Write as _;
use std::path::Path;

use crate::driver::{Counts, Model, Second};
use crate::verify::Verification;

#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub count: u64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Latency {
        Latency {
            count: h.len(),
            p50_us: h.value_at_quantile(0.5),
            p90_us: h.value_at_quantile(0.9),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct OpLatency {
    pub op: &'static str,
    #[serde(flatten)]
    pub latency: Latency,
}

#[derive(Debug, Clone, Serialize)]
pub struct Environment {
    pub date: String,
    pub cpus: usize,
    pub client_cpus: Option<String>,
    pub server_cpus: Option<String>,
    pub how: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    pub target: String,
    pub target_detail: String,
    pub durable: bool,
    pub scenario: String,
    #[serde(flatten)]
    pub model: Model,
    pub connections: usize,
    pub duration_s: f64,
    pub requests: u64,
    pub requests_per_s: f64,
    /// Carts held per second (reservations that got a 201).
    pub carts_held_per_s: f64,
    pub counts: Counts,
    pub latency: Latency,
    pub ops: Vec<OpLatency>,
    pub timeline: Vec<Second>,
    pub verification: Option<Verification>,
    /// Stock-feed clients during the run (`--feed-clients`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feed: Option<crate::fanout::FeedResult>,
    /// Webhook subscriptions during the run (`--webhooks`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhooks: Option<crate::hooks::HooksResult>,
    /// Event-stream clients during the run (`--sse-clients`).
    pub sse: Option<crate::sse::SseResult>,
    pub environment: Environment,
}

fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

fn model_name(m: &Model) -> String {
    match m {
        Model::Closed => "closed".into(),
        Model::Open { rate_per_s } => format!("open {rate_per_s:.0}/s"),
    }
}

/// The terminal table: one row per run; ratios against the first run.
pub fn table(runs: &[RunResult]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<16} {:<11} {:<14} {:>10} {:>7} {:>10} {:>8} {:>8} {:>8} {:>8} {:>8}  {:<8}",
        "target",
        "scenario",
        "model",
        "req/s",
        "ratio",
        "carts/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms",
        "verified"
    );
    let base = runs
        .first()
        .map(|r| r.requests_per_s)
        .unwrap_or(1.0)
        .max(f64::MIN_POSITIVE);
    for r in runs {
        let verified = match &r.verification {
            None => "skipped",
            Some(v) if v.passed => "yes",
            Some(_) => "FAILED",
        };
        let _ = writeln!(
            s,
            "{:<16} {:<11} {:<14} {:>10.0} {:>6.2}x {:>10.0} {:>8} {:>8} {:>8} {:>8} {:>8}  {:<8}",
            r.target,
            r.scenario,
            model_name(&r.model),
            r.requests_per_s,
            r.requests_per_s / base,
            r.carts_held_per_s,
            ms(r.latency.p50_us),
            ms(r.latency.p90_us),
            ms(r.latency.p99_us),
            ms(r.latency.p999_us),
            ms(r.latency.max_us),
            verified
        );
    }
    s
}

/// Per-run detail: answers by class, latency per operation, checks.
pub fn detail(r: &RunResult) -> String {
    let mut s = String::new();
    let c = &r.counts;
    let _ = writeln!(
        s,
        "{} / {} / {}: {} requests in {:.1} s; 2xx {}, 409 {}, 503 {}, other 4xx {}, 5xx {}, no answer {}",
        r.target,
        r.scenario,
        model_name(&r.model),
        r.requests,
        r.duration_s,
        c.ok_2xx,
        c.conflict_409,
        c.unavailable_503,
        c.other_4xx,
        c.server_5xx,
        c.no_answer
    );
    for o in r.ops.iter().filter(|o| o.latency.count > 0) {
        let _ = writeln!(
            s,
            "  {:<13} {:>9}  p50 {:>7} ms  p99 {:>7} ms  max {:>8} ms",
            o.op,
            o.latency.count,
            ms(o.latency.p50_us),
            ms(o.latency.p99_us),
            ms(o.latency.max_us)
        );
    }
    if let Some(v) = &r.verification {
        for ch in &v.checks {
            let _ = writeln!(
                s,
                "  [{}] {}: {}",
                if ch.passed { "ok" } else { "FAIL" },
                ch.name,
                ch.detail
            );
        }
    }
    if let Some(w) = &r.webhooks {
        let _ = writeln!(
            s,
            "  webhooks: {} subscriptions, {} events delivered; from an event's time to its receiver p50 {} ms, p99 {} ms, max {} ms",
            w.subscriptions,
            w.deliveries,
            ms(w.latency.p50_us),
            ms(w.latency.p99_us),
            ms(w.latency.max_us)
        );
    }
    if let Some(e) = &r.sse {
        let _ = writeln!(
            s,
            "  event streams: {} clients of {} (open in {:.1} s), server RSS {} -> {} kB: {} bytes a client; {} events published, {} delivered, at most {} behind at the end; event time to first client p50 {} ms, p99 {} ms; first client to each other p50 {} ms, p99 {} ms, max {} ms",
            e.clients,
            e.types,
            e.connect_s,
            e.server_rss_before_kb,
            e.server_rss_after_kb,
            e.bytes_per_client,
            e.published,
            e.deliveries,
            e.behind_max,
            ms(e.first_latency.p50_us),
            ms(e.first_latency.p99_us),
            ms(e.spread.p50_us),
            ms(e.spread.p99_us),
            ms(e.spread.max_us)
        );
    }
    if let Some(f) = &r.feed {
        let _ = writeln!(
            s,
            "  feed: {} clients (connected in {:.1} s), server RSS {} -> {} kB: {} bytes a client, {} bytes a client of the second half; {} changes delivered, {} resyncs; latency p50 {} ms, p99 {} ms, max {} ms",
            f.clients,
            f.connect_s,
            f.server_rss_before_kb,
            f.server_rss_after_kb,
            f.bytes_per_client,
            f.marginal_bytes_per_client,
            f.deliveries,
            f.resyncs,
            ms(f.latency.p50_us),
            ms(f.latency.p99_us),
            ms(f.latency.max_us)
        );
    }
    s
}

const COLORS: [&str; 8] = [
    "#0b7285", "#e8590c", "#5f3dc4", "#2b8a3e", "#c2255c", "#495057", "#1971c2", "#a61e4d",
];

/// One line of a chart: a color per target, dashed for the open loop.
struct Series {
    name: String,
    color: &'static str,
    dashed: bool,
    points: Vec<(f64, f64)>,
}

/// A line chart of several series over seconds; `log` for latencies, whose
/// targets differ by orders of magnitude.
fn svg_chart(title: &str, unit: &str, series: &[Series], log: bool) -> String {
    let (w, h, left, bottom, top, right) = (760.0, 280.0, 70.0, 34.0, 28.0, 200.0);
    let xmax = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .fold(1.0f64, f64::max);
    let values = || series.iter().flat_map(|s| s.points.iter().map(|p| p.1));
    let ymax = values().fold(0.0f64, f64::max).max(f64::MIN_POSITIVE);
    // Log scale: from the decade below the smallest value to the one above
    // the largest; linear: from 0 to 110 % of the largest.
    let (lo, hi) = if log {
        let min = values().filter(|v| *v > 0.0).fold(f64::MAX, f64::min);
        let min = if min == f64::MAX { 0.1 } else { min };
        let lo = min.log10().floor();
        (lo, ymax.log10().ceil().max(lo + 1.0))
    } else {
        (0.0, ymax * 1.1)
    };
    let (pw, ph) = (w - left - right, h - top - bottom);
    let x = |v: f64| left + v / xmax * pw;
    let y = |v: f64| {
        let t = if log {
            (v.max(10f64.powf(lo)).log10() - lo) / (hi - lo)
        } else {
            v / hi
        };
        top + ph - t * ph
    };
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg viewBox="0 0 {w} {h}" class="chart" role="img" aria-label="{title}"><text x="{left}" y="18" class="t">{title}</text>"#
    );
    let ticks: Vec<f64> = if log {
        let mut t = Vec::new();
        let mut d = lo;
        while d <= hi {
            for m in [1.0, 2.0, 5.0] {
                let v = m * 10f64.powf(d);
                if v <= 10f64.powf(hi) * 1.0001 {
                    t.push(v);
                }
            }
            d += 1.0;
        }
        t
    } else {
        (0..=4).map(|i| hi * f64::from(i) / 4.0).collect()
    };
    for v in ticks {
        let yy = y(v);
        let _ = write!(
            s,
            r##"<line x1="{left}" x2="{}" y1="{yy:.1}" y2="{yy:.1}" stroke="#e9ecef"/><text x="{}" y="{:.1}" class="a" text-anchor="end">{} {unit}</text>"##,
            left + pw,
            left - 6.0,
            yy + 4.0,
            fmt_axis(v)
        );
    }
    let step = (xmax / 10.0).ceil().max(1.0);
    let mut t = step;
    while t <= xmax {
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{}" class="a" text-anchor="middle">{t:.0}</text>"#,
            x(t),
            top + ph + 14.0
        );
        t += step;
    }
    let _ = write!(
        s,
        r#"<text x="{}" y="{}" class="a" text-anchor="middle">seconds</text>"#,
        left + pw / 2.0,
        h - 4.0
    );
    for (i, se) in series.iter().enumerate() {
        let path: Vec<String> = se
            .points
            .iter()
            .map(|(a, b)| format!("{:.1},{:.1}", x(*a), y(*b)))
            .collect();
        let dash = if se.dashed {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        };
        let ly = top + 8.0 + 17.0 * i as f64;
        let _ = write!(
            s,
            r#"<polyline fill="none" stroke="{c}" stroke-width="2"{dash} points="{}"/><line x1="{}" x2="{}" y1="{ly:.1}" y2="{ly:.1}" stroke="{c}" stroke-width="3"{dash}/><text x="{}" y="{:.1}" class="a">{}</text>"#,
            path.join(" "),
            left + pw + 12.0,
            left + pw + 34.0,
            left + pw + 40.0,
            ly + 4.0,
            html_escape(&se.name),
            c = se.color,
        );
    }
    s.push_str("</svg>");
    s
}

fn fmt_axis(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.0}k", v / 1000.0)
    } else if v >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else if v >= 0.1 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn label(r: &RunResult) -> String {
    format!("{} {}", r.target, model_name(&r.model))
}

pub fn html(runs: &[RunResult], command: &str) -> String {
    let mut s = String::from(
        r#"<!doctype html><html lang="en"><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>holdfast load test</title><style>
body{font:15px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:1000px;padding:0 1rem;color:#212529}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem}code{background:#f1f3f5;padding:.1rem .3rem;border-radius:4px}
table{border-collapse:collapse;width:100%;margin:.5rem 0}td,th{padding:.3rem .5rem;border-bottom:1px solid #dee2e6;text-align:right}
td:first-child,th:first-child{text-align:left}.ok{color:#2b8a3e;font-weight:600}.bad{color:#c92a2a;font-weight:600}
pre{overflow-x:auto;font-size:13px}.chart{width:100%;height:auto;background:#fff;border:1px solid #e9ecef;border-radius:6px;margin:.5rem 0}
.t{font-size:14px;font-weight:600}.a{font-size:11px;fill:#495057}
</style><h1>holdfast load test</h1>"#,
    );
    let _ = write!(s, "<p>Command: <code>{}</code></p>", html_escape(command));
    if let Some(r) = runs.first() {
        let _ = write!(
            s,
            "<p>{} &middot; {} CPUs &middot; {}</p>",
            html_escape(&r.environment.date),
            r.environment.cpus,
            html_escape(&r.environment.how)
        );
    }
    s.push_str(&format!(
        "<h2>Summary</h2><pre>{}</pre>",
        html_escape(&table(runs))
    ));
    // One color per target, in the order they ran.
    let mut targets: Vec<&str> = Vec::new();
    for r in runs {
        if !targets.contains(&r.target.as_str()) {
            targets.push(&r.target);
        }
    }
    let series = |f: &dyn Fn(&Second) -> f64| -> Vec<Series> {
        runs.iter()
            .map(|r| Series {
                name: label(r),
                color: COLORS
                    [targets.iter().position(|t| *t == r.target).unwrap_or(0) % COLORS.len()],
                dashed: matches!(r.model, Model::Open { .. }),
                points: r
                    .timeline
                    .iter()
                    .map(|p| (f64::from(p.t_s), f(p)))
                    .collect(),
            })
            .collect()
    };
    s.push_str("<p>Solid: closed loop; dashed: open loop. Latency axes are logarithmic.</p>");
    s.push_str(&svg_chart(
        "Throughput",
        "req/s",
        &series(&|p| p.requests as f64),
        false,
    ));
    s.push_str(&svg_chart(
        "Latency p99, per second",
        "ms",
        &series(&|p| p.p99_us as f64 / 1000.0),
        true,
    ));
    s.push_str(&svg_chart(
        "Latency p50, per second",
        "ms",
        &series(&|p| p.p50_us as f64 / 1000.0),
        true,
    ));
    for r in runs {
        let _ = write!(
            s,
            "<h2>{}</h2><p>{}</p><table><tr><th>operation</th><th>count</th><th>p50 ms</th><th>p90 ms</th><th>p99 ms</th><th>p99.9 ms</th><th>max ms</th></tr>",
            html_escape(&label(r)),
            html_escape(&r.target_detail)
        );
        for o in r.ops.iter().filter(|o| o.latency.count > 0) {
            let l = &o.latency;
            let _ = write!(
                s,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                o.op,
                l.count,
                ms(l.p50_us),
                ms(l.p90_us),
                ms(l.p99_us),
                ms(l.p999_us),
                ms(l.max_us)
            );
        }
        s.push_str("</table>");
        if let Some(v) = &r.verification {
            s.push_str("<ul>");
            for c in &v.checks {
                let _ = write!(
                    s,
                    "<li><span class=\"{}\">{}</span> {}: {}</li>",
                    if c.passed { "ok" } else { "bad" },
                    if c.passed { "passed" } else { "FAILED" },
                    html_escape(&c.name),
                    html_escape(&c.detail)
                );
            }
            s.push_str("</ul>");
        }
    }
    s.push_str("</html>\n");
    s
}

/// Writes `results.json` and `report.html` under `dir`.
pub fn write(dir: &Path, runs: &[RunResult], command: &str) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let json = serde_json::to_string_pretty(&serde_json::json!({
        "command": command,
        "runs": runs,
    }))
    .map_err(|e| e.to_string())?;
    std::fs::write(dir.join("results.json"), json).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("report.html"), html(runs, command)).map_err(|e| e.to_string())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(name: &str, dashed: bool, ys: &[f64]) -> Series {
        Series {
            name: name.into(),
            color: COLORS[0],
            dashed,
            points: ys
                .iter()
                .enumerate()
                .map(|(i, y)| (i as f64 + 1.0, *y))
                .collect(),
        }
    }

    #[test]
    fn a_log_chart_spans_its_decades_and_draws_every_series() {
        let svg = svg_chart(
            "p99",
            "ms",
            &[
                series("a <closed>", false, &[1.5, 3.0]),
                series("b", true, &[40.0, 120.0]),
            ],
            true,
        );
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert_eq!(
            svg.matches("stroke-dasharray").count(),
            2,
            "line and legend"
        );
        // 1.5 .. 120: the decades 1 to 1000.
        for tick in [">1 ms<", ">10 ms<", ">100 ms<", ">1000 ms<"] {
            assert!(svg.contains(tick), "{tick} missing");
        }
        assert!(!svg.contains(">0.1 ms<"));
        assert!(svg.contains("a &lt;closed&gt;"), "names are escaped");
    }

    #[test]
    fn a_linear_chart_starts_at_zero() {
        let svg = svg_chart(
            "req/s",
            "req/s",
            &[series("a", false, &[100.0, 200.0])],
            false,
        );
        assert!(svg.contains(">0 req/s<"));
        assert!(svg.contains(">220 req/s<"), "110 % of the largest value");
    }
}
