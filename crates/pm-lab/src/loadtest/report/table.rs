//! The terminal summary: one column per offered rate, one row per measure.

use comfy_table::{Cell, Table};

use super::{Baseline, RunReport, StepReport};
use crate::loadtest::latency::ms;

/// The rows of the summary, as `(label, value per step)`.
pub(super) fn rows(steps: &[StepReport]) -> Vec<(&'static str, Vec<String>)> {
    let col = |f: &dyn Fn(&StepReport) -> String| steps.iter().map(f).collect::<Vec<_>>();
    let mut rows = vec![
        ("offered /s", col(&|s| format!("{:.0}", s.offered_rate))),
        ("achieved /s", col(&|s| format!("{:.0}", s.achieved_rate))),
        ("sent", col(&|s| s.sent.to_string())),
        ("accepted (200/202)", col(&|s| s.accepted.to_string())),
        (
            "rejected by status",
            col(&|s| or_dash(s.rejected_by_status())),
        ),
        ("dropped", col(&|s| s.dropped.to_string())),
        ("late (sent)", col(&|s| s.late.to_string())),
        (
            "not as expected",
            col(&|s| s.unexpected_answers.to_string()),
        ),
        ("p50 ms", col(&|s| ms(s.latency.p50_us))),
        ("p90 ms", col(&|s| ms(s.latency.p90_us))),
        ("p99 ms", col(&|s| ms(s.latency.p99_us))),
        ("p99.9 ms", col(&|s| ms(s.latency.p999_us))),
        ("max ms", col(&|s| ms(s.latency.max_us))),
    ];
    if steps.iter().any(|s| s.generator_cpu_cores.is_some()) {
        rows.push((
            "generator CPU",
            col(&|s| {
                s.generator_cpu_cores
                    .map_or("-".to_owned(), |c| format!("{:.0} % of a core", c * 100.0))
            }),
        ));
    }
    if steps.iter().any(|s| s.lag.is_some()) {
        rows.push(("lag p50 / p99 ms", col(&lag)));
    }
    if steps.iter().any(|s| s.verify.is_some()) {
        rows.push(("verify", col(&verify)));
    }
    rows.push(("SLO", col(&|s| s.slo.describe())));
    rows
}

fn or_dash(s: String) -> String {
    if s.is_empty() {
        "-".to_owned()
    } else {
        s
    }
}

fn lag(s: &StepReport) -> String {
    match &s.lag {
        None => "-".to_owned(),
        Some(l) if l.applied_before_answer => {
            format!("0 (stored before the answer; {} samples)", l.seen)
        }
        Some(l) => {
            let unseen = if l.unseen > 0 {
                format!(", {} never seen", l.unseen)
            } else {
                String::new()
            };
            format!(
                "{} / {} ({} samples{unseen})",
                ms(l.latency.p50_us),
                ms(l.latency.p99_us),
                l.seen
            )
        }
    }
}

fn verify(s: &StepReport) -> String {
    match &s.verify {
        None => "-".to_owned(),
        Some(v) if v.ok => format!(
            "ok: {} events once, {} rejected never stored",
            v.events_stored, v.rejected_checked
        ),
        Some(v) => format!(
            "FAILED: {} missing, {} doubled, {} unexpected, {} status, {} dispute",
            v.missing, v.doubled, v.unexpected, v.status_mismatches, v.dispute_mismatches
        ),
    }
}

/// The summary table of a run, with the knee below it.
pub fn summary_table(report: &RunReport) -> Table {
    let mut t = Table::new();
    let mut header = vec![Cell::new("")];
    header.extend(
        report
            .steps
            .iter()
            .map(|s| Cell::new(format!("{:.0}/s", s.offered_rate))),
    );
    t.set_header(header);
    for (label, values) in rows(&report.steps) {
        let mut row = vec![label.to_owned()];
        row.extend(values);
        t.add_row(row);
    }
    let knee = match &report.knee {
        Some(k) => format!(
            "{:.0}/s (achieved {:.0}/s, p99 {} ms ≤ {} ms)",
            k.offered_rate,
            k.achieved_rate,
            ms(k.p99_us),
            report.settings.slo_p99_ms
        ),
        None => format!("none: no step met p99 ≤ {} ms", report.settings.slo_p99_ms),
    };
    let mut row = vec!["knee".to_owned(), knee];
    row.extend(std::iter::repeat_n(
        String::new(),
        report.steps.len().saturating_sub(1),
    ));
    t.add_row(row);
    t
}

/// Achieved rates as shares of the machine's reference rates.
pub fn baseline_table(report: &RunReport, baseline: &Baseline) -> Table {
    let mut t = Table::new();
    t.set_header([
        "offered /s",
        "achieved /s",
        "of bare HTTP rate",
        "of PostgreSQL insert+commit rate",
    ]);
    let pct = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{:.1} %", v * 100.0));
    for s in &report.steps {
        let (http, pg) = baseline.shares(s.achieved_rate);
        t.add_row([
            format!("{:.0}", s.offered_rate),
            format!("{:.0}", s.achieved_rate),
            pct(http),
            pct(pg),
        ]);
    }
    t
}
