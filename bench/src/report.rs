//! The printed results: Markdown tables with conduit's ratios to the baselines
//! measured in the same run, and the targets checked against them.

use std::collections::HashMap;
use std::fmt::Write;

use crate::case::{Case, Cores, Impl, Mode, Row, Transport};

/// omq.rs is measured through several APIs (`Impl::OMQ_APIS`); the tables show
/// one `omq` column holding, per cell, the best of them (lowest median round
/// trip, highest stream rate), named in the cell. Returns the rows with the
/// omq rows so merged (each as `Impl::Omq`), and the API that won each cell.
pub fn best_omq(rows: &[Row]) -> (Vec<Row>, HashMap<Case, Impl>) {
    let mut best: HashMap<Case, &Row> = HashMap::new();
    let better = |a: &Row, b: &Row| match a.mode {
        Mode::Lat => a.rtt_median_us < b.rtt_median_us,
        Mode::Thr => a.msgs_per_s > b.msgs_per_s,
    };
    for r in rows.iter().filter(|r| r.imp.is_omq()) {
        let cell = Case {
            imp: Impl::Omq,
            ..r.case()
        };
        match best.get(&cell) {
            Some(b) if !better(r, b) => {}
            _ => {
                best.insert(cell, r);
            }
        }
    }
    let mut merged = Vec::new();
    let mut apis = HashMap::new();
    for r in rows {
        if !r.imp.is_omq() {
            merged.push(r.clone());
            continue;
        }
        let cell = Case {
            imp: Impl::Omq,
            ..r.case()
        };
        if let Some(b) = best.remove(&cell) {
            apis.insert(cell, b.imp);
            merged.push(Row {
                imp: Impl::Omq,
                ..b.clone()
            });
        }
    }
    (merged, apis)
}

/// How the winning omq API is named in a cell.
fn api_label(imp: Impl) -> &'static str {
    match imp {
        Impl::OmqSpin => "blocking+spin",
        Impl::OmqAsync => "async",
        _ => "blocking",
    }
}

/// "8 B", "1 KiB", "1 MiB".
pub fn size_label(size: usize) -> String {
    match size {
        s if s >= 1 << 20 && s % (1 << 20) == 0 => format!("{} MiB", s >> 20),
        s if s >= 1 << 10 && s % (1 << 10) == 0 => format!("{} KiB", s >> 10),
        s => format!("{s} B"),
    }
}

/// Looks rows up by case.
pub struct Results<'a>(pub &'a [Row]);

impl Results<'_> {
    pub fn get(&self, case: Case) -> Option<&Row> {
        self.0.iter().find(|r| r.case() == case)
    }

    /// The figure of merit: median round trip (lat) or messages per second (thr).
    pub fn value(&self, case: Case) -> Option<f64> {
        let row = self.get(case)?;
        match case.mode {
            Mode::Lat => row.rtt_median_us,
            Mode::Thr => row.msgs_per_s,
        }
    }

    /// conduit's figure over `baseline`'s, for the cell of `case`.
    pub fn ratio(&self, case: Case, baseline: Impl) -> Option<f64> {
        self.ratio_of(Impl::Conduit, case, baseline)
    }

    /// `imp`'s figure over `baseline`'s, for the cell of `case`.
    pub fn ratio_of(&self, imp: Impl, case: Case, baseline: Impl) -> Option<f64> {
        let conduit = self.value(Case { imp, ..case })?;
        let base = self.value(Case {
            imp: baseline,
            ..case
        })?;
        Some(conduit / base)
    }

    /// The distinct cells (case with the implementation left out), in run order.
    fn cells(&self, mode: Mode) -> Vec<Case> {
        let mut cells: Vec<Case> = Vec::new();
        for r in self.0.iter().filter(|r| r.mode == mode) {
            let cell = Case {
                imp: Impl::Conduit,
                ..r.case()
            };
            if !cells.contains(&cell) {
                cells.push(cell);
            }
        }
        cells.sort_by_key(|c| (c.transport as u8, c.size, c.cores as u8));
        cells
    }
}

fn ratio_text(r: Option<f64>) -> String {
    r.map_or("-".into(), |r| format!("{r:.2}"))
}

fn rate_text(msgs_per_s: f64) -> String {
    if msgs_per_s >= 1e6 {
        format!("{:.2} M", msgs_per_s / 1e6)
    } else {
        format!("{:.1} k", msgs_per_s / 1e3)
    }
}

/// The implementations that have rows in `mode`, in column order.
pub fn impls_in(rows: &[Row], mode: Mode) -> Vec<Impl> {
    [
        Impl::Conduit,
        Impl::ConduitSocket,
        Impl::ConduitAsync,
        Impl::ConduitSpin,
        Impl::ConduitCurve,
        Impl::Raw,
        Impl::RawBatch,
        Impl::RawSpin,
        Impl::Libzmq,
        Impl::LibzmqCurve,
        Impl::ConduitInline,
        Impl::ConduitShared,
        Impl::IpcChannel,
        Impl::ConduitTyped,
        Impl::IpcChannelTyped,
        Impl::Omq,
        Impl::OmqSpin,
        Impl::OmqAsync,
    ]
    .into_iter()
    .filter(|imp| rows.iter().any(|r| r.mode == mode && r.imp == *imp))
    .collect()
}

fn column_name(imp: Impl) -> String {
    match imp {
        Impl::RawBatch => format!("raw, {} per writev", crate::raw::BATCH),
        Impl::Omq => "omq (best API)".into(),
        other => other.to_string(),
    }
}

/// One table: a line per cell, a column per implementation, then conduit's ratios.
fn table(
    out: &mut String,
    res: &Results,
    apis: &HashMap<Case, Impl>,
    mode: Mode,
    cell_text: impl Fn(&Row) -> Option<String>,
) {
    let cells = res.cells(mode);
    if cells.is_empty() {
        return;
    }
    let impls = impls_in(res.0, mode);
    // conduit's Channel against each baseline, when the run measured it.
    let channel = impls.contains(&Impl::Conduit);
    let baselines: Vec<Impl> = impls
        .iter()
        .copied()
        .filter(|_| channel)
        // CURVE rows are compared with each other and with NULL below, not with
        // conduit's Channel.
        .filter(|i| {
            !matches!(
                i,
                Impl::Conduit
                    | Impl::ConduitSocket
                    | Impl::ConduitAsync
                    | Impl::ConduitSpin
                    | Impl::ConduitCurve
                    | Impl::LibzmqCurve
            )
        })
        .collect();
    // The baselines among `of` that this run measured, if it measured `imp`.
    let ratios_of = |imp: Impl, of: &[Impl]| -> Vec<Impl> {
        if !impls.contains(&imp) {
            return Vec::new();
        }
        of.iter().copied().filter(|b| impls.contains(b)).collect()
    };
    // The Socket's cost over the Channel it is built on, and against libzmq.
    let socket_ratios = ratios_of(
        Impl::ConduitSocket,
        &[Impl::Conduit, Impl::Libzmq, Impl::Omq],
    );
    // CURVE's cost over NULL on conduit's Socket, and conduit against libzmq,
    // both with CURVE (issue 12).
    let curve_ratios = ratios_of(
        Impl::ConduitCurve,
        &[Impl::ConduitSocket, Impl::LibzmqCurve],
    );
    // The async adapter's cost over the blocking Socket it wraps, and against
    // libzmq (issue 13).
    let async_ratios = ratios_of(Impl::ConduitAsync, &[Impl::ConduitSocket, Impl::Libzmq]);
    out.push_str("| transport | size | cores |");
    for imp in &impls {
        let _ = write!(out, " {} |", column_name(*imp));
    }
    for b in &baselines {
        let _ = write!(out, " conduit/{b} |");
    }
    for b in &socket_ratios {
        let _ = write!(out, " socket/{b} |");
    }
    for b in &curve_ratios {
        let _ = write!(out, " curve/{b} |");
    }
    for b in &async_ratios {
        let _ = write!(out, " async/{b} |");
    }
    out.push_str("\n|---|---:|---|");
    out.push_str(&"---:|".repeat(
        impls.len()
            + baselines.len()
            + socket_ratios.len()
            + curve_ratios.len()
            + async_ratios.len(),
    ));
    out.push('\n');
    for cell in &cells {
        let _ = write!(
            out,
            "| {} | {} | {} |",
            cell.transport,
            size_label(cell.size),
            cell.cores
        );
        for imp in &impls {
            let case = Case { imp: *imp, ..*cell };
            let mut text = res
                .get(case)
                .and_then(&cell_text)
                .unwrap_or_else(|| "-".into());
            if let Some(api) = apis.get(&case) {
                let _ = write!(text, " ({})", api_label(*api));
            }
            let _ = write!(out, " {text} |");
        }
        for b in &baselines {
            let _ = write!(out, " {} |", ratio_text(res.ratio(*cell, *b)));
        }
        for b in &socket_ratios {
            let r = res.ratio_of(Impl::ConduitSocket, *cell, *b);
            let _ = write!(out, " {} |", ratio_text(r));
        }
        for b in &curve_ratios {
            let r = res.ratio_of(Impl::ConduitCurve, *cell, *b);
            let _ = write!(out, " {} |", ratio_text(r));
        }
        for b in &async_ratios {
            let r = res.ratio_of(Impl::ConduitAsync, *cell, *b);
            let _ = write!(out, " {} |", ratio_text(r));
        }
        out.push('\n');
    }
    out.push('\n');
}

/// The tables, as Markdown.
pub fn tables(rows: &[Row]) -> String {
    let (rows, apis) = best_omq(rows);
    let res = Results(&rows);
    let mut out = String::new();
    if rows.iter().any(|r| r.mode == Mode::Lat) {
        out.push_str("### Round-trip latency, median / p99 in µs (ratios of medians: lower is better for conduit)\n\n");
        table(&mut out, &res, &apis, Mode::Lat, |r| {
            Some(format!("{:.1} / {:.1}", r.rtt_median_us?, r.rtt_p99_us?))
        });
    }
    if rows.iter().any(|r| r.mode == Mode::Thr) {
        out.push_str(
            "### Stream throughput, messages/s and MB/s (ratios: higher is better for conduit)\n\n",
        );
        table(&mut out, &res, &apis, Mode::Thr, |r| {
            Some(format!(
                "{}/s, {:.0} MB/s",
                rate_text(r.msgs_per_s?),
                r.mb_per_s?
            ))
        });
    }
    out
}

/// One target: conduit's ratio to a baseline in one cell, and the bound it must
/// keep. The targets are for conduit's `Channel` (and pipes); the same
/// bounds are shown for its pattern `Socket` where it exists, since that is
/// what a ZeroMQ user reaches for.
struct Target {
    cell: Case,
    baseline: Impl,
    /// `Some(b)`: ratio <= b; checked against `at_least` otherwise.
    at_most: Option<f64>,
    at_least: Option<f64>,
}

fn targets() -> Vec<Target> {
    let mut t = channel_targets();
    let socket: Vec<Target> = channel_targets()
        .into_iter()
        .map(|target| Target {
            cell: Case {
                imp: Impl::ConduitSocket,
                ..target.cell
            },
            ..target
        })
        .filter(|target| target.cell.exists())
        .collect();
    t.extend(socket);
    t.extend(curve_targets());
    t.extend(async_targets());
    t
}

/// Issue 13: the async socket's 64 B round trip within 1.3x of the blocking
/// socket's, and its 64 B stream at least 0.8x the blocking one's.
fn async_targets() -> Vec<Target> {
    let mut t = Vec::new();
    for tr in [Transport::Ipc, Transport::Tcp] {
        for cores in [Cores::Same, Cores::Separate] {
            let cell = |mode| Case {
                imp: Impl::ConduitAsync,
                transport: tr,
                mode,
                size: 64,
                cores,
            };
            t.push(Target {
                cell: cell(Mode::Lat),
                baseline: Impl::ConduitSocket,
                at_most: Some(1.3),
                at_least: None,
            });
            t.push(Target {
                cell: cell(Mode::Thr),
                baseline: Impl::ConduitSocket,
                at_most: None,
                at_least: Some(0.8),
            });
        }
    }
    t
}

/// Issue 12: conduit's CURVE round trip of 64 B within 1.5x of its NULL one
/// (both on the pattern `Socket`), and its CURVE streams (64 B, 1 MiB) at least
/// as fast as libzmq's CURVE streams.
fn curve_targets() -> Vec<Target> {
    let mut t = Vec::new();
    for tr in [Transport::Ipc, Transport::Tcp] {
        for cores in [Cores::Same, Cores::Separate] {
            let cell = |mode, size| Case {
                imp: Impl::ConduitCurve,
                transport: tr,
                mode,
                size,
                cores,
            };
            t.push(Target {
                cell: cell(Mode::Lat, 64),
                baseline: Impl::ConduitSocket,
                at_most: Some(1.5),
                at_least: None,
            });
            for size in [64, 1 << 20] {
                t.push(Target {
                    cell: cell(Mode::Thr, size),
                    baseline: Impl::LibzmqCurve,
                    at_most: None,
                    at_least: Some(1.0),
                });
            }
        }
    }
    t
}

fn channel_targets() -> Vec<Target> {
    let cell = |transport, mode, size, cores| Case {
        imp: Impl::Conduit,
        transport,
        mode,
        size,
        cores,
    };
    let mut t = Vec::new();
    // Round trips of 64 B, both ends on one core: <= 1.3x raw, <= 0.5x libzmq.
    for tr in [Transport::Pipe, Transport::Ipc, Transport::Tcp] {
        let c = cell(tr, Mode::Lat, 64, Cores::Same);
        t.push(Target {
            cell: c,
            baseline: Impl::Raw,
            at_most: Some(1.3),
            at_least: None,
        });
        if tr != Transport::Pipe {
            t.push(Target {
                cell: c,
                baseline: Impl::Libzmq,
                at_most: Some(0.5),
                at_least: None,
            });
        }
    }
    // Streams of 64 B over ipc and tcp: >= 1.5x libzmq.
    for tr in [Transport::Ipc, Transport::Tcp] {
        for cores in [Cores::Same, Cores::Separate] {
            t.push(Target {
                cell: cell(tr, Mode::Thr, 64, cores),
                baseline: Impl::Libzmq,
                at_most: None,
                at_least: Some(1.5),
            });
        }
    }
    // Issue 11: streams of 64 B at >= 1.5x omq too, and of 1 MiB at >= 1.0x
    // the better of libzmq and omq (each checked on its own).
    for tr in [Transport::Ipc, Transport::Tcp] {
        for cores in [Cores::Same, Cores::Separate] {
            t.push(Target {
                cell: cell(tr, Mode::Thr, 64, cores),
                baseline: Impl::Omq,
                at_most: None,
                at_least: Some(1.5),
            });
            for baseline in [Impl::Libzmq, Impl::Omq] {
                t.push(Target {
                    cell: cell(tr, Mode::Thr, 1 << 20, cores),
                    baseline,
                    at_most: None,
                    at_least: Some(1.0),
                });
            }
        }
    }
    // Streams of 1 MiB: >= 0.9x raw bandwidth.
    for tr in [Transport::Pipe, Transport::Ipc, Transport::Tcp] {
        for cores in [Cores::Same, Cores::Separate] {
            t.push(Target {
                cell: cell(tr, Mode::Thr, 1 << 20, cores),
                baseline: Impl::Raw,
                at_most: None,
                at_least: Some(0.9),
            });
        }
    }
    t
}

/// The targets, each met, missed, or not measured in this run.
pub fn target_check(rows: &[Row]) -> String {
    let (rows, _) = best_omq(rows);
    let res = Results(&rows);
    let mut out = String::from("### Targets (ratios against baselines of this run)\n\n");
    out.push_str("| cell | bound | ratio | verdict |\n|---|---|---:|---|\n");
    let mut unmeasured = 0;
    for t in targets() {
        let c = t.cell;
        let what = format!(
            "{} {} {} {} {}",
            c.imp,
            c.mode,
            c.transport,
            size_label(c.size),
            c.cores
        );
        let (bound, ok): (String, Box<dyn Fn(f64) -> bool>) = match (t.at_most, t.at_least) {
            (Some(b), _) => (
                format!("{}/{} <= {b}", c.imp, t.baseline),
                Box::new(move |r| r <= b),
            ),
            (_, Some(b)) => (
                format!("{}/{} >= {b}", c.imp, t.baseline),
                Box::new(move |r| r >= b),
            ),
            _ => unreachable!("a target has a bound"),
        };
        // A target whose cell this run did not measure is counted, not listed.
        let Some(r) = res.ratio_of(c.imp, c, t.baseline) else {
            unmeasured += 1;
            continue;
        };
        let verdict = if ok(r) { "met" } else { "MISSED" };
        let _ = writeln!(out, "| {what} | {bound} | {r:.2} | {verdict} |");
    }
    if unmeasured > 0 {
        let _ = writeln!(out, "\n({unmeasured} targets not measured in this run.)");
    }
    out
}
