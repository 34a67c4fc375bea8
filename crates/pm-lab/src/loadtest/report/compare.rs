//! Comparing a run with an earlier result file, step by step (steps are matched by their
//! offered rate).

use comfy_table::Table;
use serde::Serialize;

use super::{RunReport, StepReport};

/// One offered rate present in both runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ComparisonRow {
    /// The offered rate.
    pub offered_rate: f64,
    /// `(old, new)` achieved rates.
    pub achieved: (f64, f64),
    /// `(old, new)` p50, microseconds.
    pub p50_us: (u64, u64),
    /// `(old, new)` p99, microseconds.
    pub p99_us: (u64, u64),
    /// `(old, new)` p99.9, microseconds.
    pub p999_us: (u64, u64),
    /// `(old, new)` max, microseconds.
    pub max_us: (u64, u64),
    /// `(old, new)` dropped requests.
    pub dropped: (u64, u64),
}

/// A comparison of two runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// Revisions of the old and the new run.
    pub revisions: (Option<String>, Option<String>),
    /// Rates in both runs.
    pub rows: Vec<ComparisonRow>,
    /// Rates only the old run had.
    pub only_old: Vec<f64>,
    /// Rates only the new run has.
    pub only_new: Vec<f64>,
    /// `(old, new)` knees.
    pub knee: (Option<f64>, Option<f64>),
}

fn same_rate(a: &StepReport, b: &StepReport) -> bool {
    (a.offered_rate - b.offered_rate).abs() < 0.5
}

/// Compares `new` with `old`.
pub fn compare(old: &RunReport, new: &RunReport) -> Comparison {
    let rows = new
        .steps
        .iter()
        .filter_map(|n| {
            let o = old.steps.iter().find(|o| same_rate(o, n))?;
            Some(ComparisonRow {
                offered_rate: n.offered_rate,
                achieved: (o.achieved_rate, n.achieved_rate),
                p50_us: (o.latency.p50_us, n.latency.p50_us),
                p99_us: (o.latency.p99_us, n.latency.p99_us),
                p999_us: (o.latency.p999_us, n.latency.p999_us),
                max_us: (o.latency.max_us, n.latency.max_us),
                dropped: (o.dropped, n.dropped),
            })
        })
        .collect();
    let missing = |from: &RunReport, other: &RunReport| -> Vec<f64> {
        from.steps
            .iter()
            .filter(|s| !other.steps.iter().any(|o| same_rate(o, s)))
            .map(|s| s.offered_rate)
            .collect()
    };
    Comparison {
        revisions: (old.git_revision.clone(), new.git_revision.clone()),
        rows,
        only_old: missing(old, new),
        only_new: missing(new, old),
        knee: (
            old.knee.map(|k| k.offered_rate),
            new.knee.map(|k| k.offered_rate),
        ),
    }
}

/// `old → new (+Δ, +Δ %)`, with `scale` dividing both (1000 for µs → ms).
pub(crate) fn change(old: f64, new: f64, scale: f64, decimals: usize) -> String {
    let (o, n) = (old / scale, new / scale);
    let pct = if old != 0.0 {
        format!(", {:+.1} %", (new - old) / old * 100.0)
    } else {
        String::new()
    };
    format!(
        "{o:.decimals$} → {n:.decimals$} ({:+.decimals$}{pct})",
        n - o
    )
}

impl Comparison {
    /// The comparison as a table, one row per offered rate.
    pub fn table(&self) -> Table {
        let mut t = Table::new();
        t.set_header([
            "offered /s",
            "achieved /s",
            "p50 ms",
            "p99 ms",
            "p99.9 ms",
            "max ms",
            "dropped",
        ]);
        let us = |(o, n): (u64, u64)| change(o as f64, n as f64, 1000.0, 3);
        for r in &self.rows {
            t.add_row([
                format!("{:.0}", r.offered_rate),
                change(r.achieved.0, r.achieved.1, 1.0, 0),
                us(r.p50_us),
                us(r.p99_us),
                us(r.p999_us),
                us(r.max_us),
                change(r.dropped.0 as f64, r.dropped.1 as f64, 1.0, 0),
            ]);
        }
        t
    }

    /// One line about the knees and the rates not compared.
    pub fn notes(&self) -> Vec<String> {
        let knee = |k: Option<f64>| k.map_or("none".to_owned(), |k| format!("{k:.0}/s"));
        let mut notes = vec![format!(
            "knee: {} → {} (revisions {} → {})",
            knee(self.knee.0),
            knee(self.knee.1),
            self.revisions.0.as_deref().unwrap_or("unknown"),
            self.revisions.1.as_deref().unwrap_or("unknown"),
        )];
        let list = |v: &[f64]| {
            v.iter()
                .map(|r| format!("{r:.0}/s"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        if !self.only_old.is_empty() {
            notes.push(format!("only in the old run: {}", list(&self.only_old)));
        }
        if !self.only_new.is_empty() {
            notes.push(format!("only in this run: {}", list(&self.only_new)));
        }
        notes
    }
}
