//! The chart: a grid of bar charts written as SVG by hand. Columns are transports;
//! rows are latency and throughput, each with both ends on one core and on
//! separate cores. Bars are grouped by message size, one per implementation, on a
//! logarithmic axis shared along a row.

use std::fmt::Write;

use crate::case::{Case, Cores, Impl, Mode, Row, Transport};
use crate::report::{Results, impls_in, size_label};

const PANEL_W: f64 = 330.0;
const PANEL_H: f64 = 210.0;
/// Room left of a panel for the axis labels, and below it for the sizes.
const AXIS_W: f64 = 62.0;
const AXIS_H: f64 = 28.0;
const TOP: f64 = 70.0;
const ROW_GAP: f64 = 36.0;

fn color(imp: Impl) -> &'static str {
    match imp {
        Impl::Conduit => "#1f77b4",
        Impl::ConduitSocket => "#2ca02c",
        Impl::Raw => "#8c8c8c",
        Impl::RawBatch => "#cccccc",
        Impl::Libzmq => "#d62728",
        Impl::ConduitCurve => "#98df8a",
        Impl::ConduitAsync => "#17becf",
        Impl::ConduitSpin => "#bcbd22",
        Impl::RawSpin => "#636363",
        Impl::LibzmqCurve => "#ff9896",
        Impl::ConduitInline => "#9ecae1",
        Impl::ConduitTyped => "#6baed6",
        Impl::ConduitShared => "#08519c",
        Impl::IpcChannel | Impl::IpcChannelTyped => "#2ca02c",
        Impl::Omq | Impl::OmqSpin | Impl::OmqAsync => "#ff7f0e",
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A label for a value on a log axis: 1, 10, 100, 1k, 10k, 1M...
fn decade_label(exp: i32) -> String {
    let v = 10f64.powi(exp);
    match exp {
        e if e >= 9 => format!("{}G", v / 1e9),
        e if e >= 6 => format!("{}M", v / 1e6),
        e if e >= 3 => format!("{}k", v / 1e3),
        _ => format!("{v}"),
    }
}

struct PlotRow {
    mode: Mode,
    cores: Cores,
    title: &'static str,
}

/// The chart of `rows`, as an SVG document.
pub fn svg(rows: &[Row], subtitle: &str) -> String {
    // One omq line: the best of its APIs per cell, as in the tables.
    let (rows, _) = crate::report::best_omq(rows);
    let rows = &rows[..];
    let res = Results(rows);
    let transports = [Transport::Pipe, Transport::Ipc, Transport::Tcp];
    let legend = impls_in(rows, Mode::Thr)
        .into_iter()
        .chain(impls_in(rows, Mode::Lat))
        .fold(Vec::new(), |mut v, i| {
            if !v.contains(&i) {
                v.push(i);
            }
            v
        });
    let mut sizes: Vec<usize> = rows.iter().map(|r| r.size).collect();
    sizes.sort_unstable();
    sizes.dedup();
    let plot_rows = [
        PlotRow {
            mode: Mode::Lat,
            cores: Cores::Same,
            title: "round trip, median µs (lower is better), both ends on one core",
        },
        PlotRow {
            mode: Mode::Lat,
            cores: Cores::Separate,
            title: "round trip, median µs (lower is better), ends on separate cores",
        },
        PlotRow {
            mode: Mode::Thr,
            cores: Cores::Same,
            title: "stream, messages/s (higher is better), both ends on one core",
        },
        PlotRow {
            mode: Mode::Thr,
            cores: Cores::Separate,
            title: "stream, messages/s (higher is better), ends on separate cores",
        },
    ];
    let width = AXIS_W + transports.len() as f64 * (PANEL_W + AXIS_W) + 10.0;
    let height = TOP + plot_rows.len() as f64 * (PANEL_H + AXIS_H + ROW_GAP) + 10.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="11">"#
    );
    let _ = writeln!(
        s,
        r##"<rect width="100%" height="100%" fill="white"/><text x="{AXIS_W}" y="22" font-size="16" font-weight="bold">conduit vs raw OS channel, libzmq and omq.rs</text><text x="{AXIS_W}" y="40" fill="#444">{}</text>"##,
        escape(subtitle)
    );
    // Legend.
    for (i, imp) in legend.iter().enumerate() {
        let x = width - 120.0 * legend.len() as f64 + i as f64 * 120.0;
        let name = match imp {
            Impl::RawBatch => format!("raw, {}/writev", crate::raw::BATCH),
            other => other.to_string(),
        };
        let _ = writeln!(
            s,
            r#"<rect x="{x}" y="12" width="14" height="14" fill="{}"/><text x="{}" y="24">{name}</text>"#,
            color(*imp),
            x + 19.0
        );
    }
    for (ri, pr) in plot_rows.iter().enumerate() {
        let y0 = TOP + ri as f64 * (PANEL_H + AXIS_H + ROW_GAP);
        let impls = impls_in(rows, pr.mode);
        // The axis spans every bar and every p99 tick of the row.
        let values: Vec<f64> = rows
            .iter()
            .filter(|r| r.mode == pr.mode && r.cores == pr.cores)
            .flat_map(|r| [res.value(r.case()), r.rtt_p99_us])
            .flatten()
            .filter(|v| *v > 0.0)
            .collect();
        let _ = writeln!(
            s,
            r#"<text x="{AXIS_W}" y="{}" font-size="13" font-weight="bold">{}</text>"#,
            y0 - 8.0,
            escape(pr.title)
        );
        if values.is_empty() {
            continue;
        }
        let lo = values
            .iter()
            .copied()
            .fold(f64::MAX, f64::min)
            .log10()
            .floor() as i32;
        let hi = values.iter().copied().fold(0.0, f64::max).log10().ceil() as i32;
        let hi = hi.max(lo + 1);
        let y_of = |v: f64| {
            let f = (v.log10() - lo as f64) / (hi - lo) as f64;
            y0 + PANEL_H - f * PANEL_H
        };
        for (ti, tr) in transports.iter().enumerate() {
            let x0 = AXIS_W + ti as f64 * (PANEL_W + AXIS_W);
            let _ = writeln!(
                s,
                r##"<rect x="{x0}" y="{y0}" width="{PANEL_W}" height="{PANEL_H}" fill="#fafafa" stroke="#999"/><text x="{}" y="{}" text-anchor="end" font-weight="bold">{tr}</text>"##,
                x0 + PANEL_W - 6.0,
                y0 + 14.0
            );
            for e in lo..=hi {
                let y = y_of(10f64.powi(e));
                let _ = writeln!(
                    s,
                    r##"<line x1="{x0}" x2="{}" y1="{y}" y2="{y}" stroke="#ddd"/><text x="{}" y="{}" text-anchor="end" fill="#444">{}</text>"##,
                    x0 + PANEL_W,
                    x0 - 4.0,
                    y + 4.0,
                    decade_label(e)
                );
            }
            let group_w = PANEL_W / sizes.len() as f64;
            let bar_w = (group_w - 12.0) / impls.len() as f64;
            for (si, size) in sizes.iter().enumerate() {
                let gx = x0 + si as f64 * group_w + 6.0;
                let _ = writeln!(
                    s,
                    r##"<text x="{}" y="{}" text-anchor="middle" fill="#444">{}</text>"##,
                    gx + (group_w - 12.0) / 2.0,
                    y0 + PANEL_H + 16.0,
                    size_label(*size)
                );
                for (ii, imp) in impls.iter().enumerate() {
                    let case = Case {
                        imp: *imp,
                        transport: *tr,
                        mode: pr.mode,
                        size: *size,
                        cores: pr.cores,
                    };
                    let Some(v) = res.value(case).filter(|v| *v > 0.0) else {
                        continue;
                    };
                    let x = gx + ii as f64 * bar_w;
                    let y = y_of(v);
                    let tip = match pr.mode {
                        Mode::Lat => format!("{case}: median {v:.2} µs"),
                        Mode::Thr => format!("{case}: {v:.0} msgs/s"),
                    };
                    let _ = writeln!(
                        s,
                        r#"<rect x="{x:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{}</title></rect>"#,
                        bar_w - 1.0,
                        (y0 + PANEL_H - y).max(0.0),
                        color(*imp),
                        escape(&tip)
                    );
                    // The p99 of a round trip, as a tick above its bar.
                    if let Some(p99) = res.get(case).and_then(|r| r.rtt_p99_us) {
                        let yp = y_of(p99);
                        let _ = writeln!(
                            s,
                            r##"<line x1="{x:.1}" x2="{:.1}" y1="{yp:.1}" y2="{yp:.1}" stroke="#222" stroke-width="1.5"/><line x1="{:.1}" x2="{:.1}" y1="{yp:.1}" y2="{y:.1}" stroke="#222" stroke-width="0.6"/>"##,
                            x + bar_w - 1.0,
                            x + bar_w / 2.0 - 0.5,
                            x + bar_w / 2.0 - 0.5,
                        );
                    }
                }
            }
        }
    }
    let _ = writeln!(
        s,
        r##"<text x="{AXIS_W}" y="{}" fill="#444">Latency bars are medians; the black tick above a bar is the p99. libzmq has no pipe transport.</text>"##,
        height - 12.0
    );
    s.push_str("</svg>\n");
    s
}
