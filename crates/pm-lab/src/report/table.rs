//! Terminal tables.

use comfy_table::Table;

use super::{fmt_count, fmt_ms, fmt_ratio};
use crate::baseline::BaselineReport;
use crate::loadtest::latency::ms;
use crate::partitioning::PartitioningReport;

/// One row per query and layout: times, pages, partitions, rows; then the ratios.
pub fn partitioning_table(report: &PartitioningReport) -> Table {
    let mut table = Table::new();
    table.set_header([
        "query",
        "layout",
        "median ms",
        "p95 ms",
        "first ms",
        "pages (hit+read)",
        "of them events",
        "partitions",
        "rows",
        "vs indexed (time / pages)",
    ]);
    for q in &report.queries {
        let indexed = q.layout(crate::partitioning::Layout::Indexed);
        for l in &q.layouts {
            let vs = indexed.map_or("–".to_owned(), |i| {
                format!(
                    "{} / {}",
                    fmt_ratio(i.median_ms / l.median_ms),
                    fmt_ratio(i.pages as f64 / l.pages as f64)
                )
            });
            table.add_row([
                q.title.clone(),
                l.layout.label().to_owned(),
                fmt_ms(l.median_ms),
                fmt_ms(l.p95_ms),
                fmt_ms(l.first_ms),
                fmt_count(l.pages),
                fmt_count(l.events_pages),
                format!("{}/{}", l.partitions_scanned, l.partitions_total),
                fmt_count(l.rows),
                vs,
            ]);
        }
    }
    table
}

/// The ramp and the commit rate.
pub fn baseline_table(report: &BaselineReport) -> Table {
    let mut table = Table::new();
    table.set_header([
        "measurement",
        "offered /s",
        "achieved /s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "not accepted",
        "sustained",
    ]);
    let rows = report
        .http
        .steps
        .iter()
        .map(|s| ("HTTP ramp step", s))
        .chain(std::iter::once((
            "HTTP confirmation",
            &report.http.confirmation,
        )));
    for (name, s) in rows {
        let l = &s.latency;
        table.add_row([
            name.to_owned(),
            format!("{:.0}", s.offered_rate),
            format!("{:.0}", s.achieved_rate),
            ms(l.p50_us),
            ms(l.p99_us),
            ms(l.max_us),
            fmt_count(s.scheduled.saturating_sub(s.accepted)),
            s.slo.describe(),
        ]);
    }
    if let Some(pg) = &report.postgres {
        table.add_row([
            format!("PostgreSQL commits ({} sessions)", pg.connections),
            "–".to_owned(),
            format!("{:.0}", pg.commits_per_sec),
            fmt_ms(pg.p50_ms),
            fmt_ms(pg.p99_ms),
            fmt_ms(pg.max_ms),
            "0".to_owned(),
            "–".to_owned(),
        ]);
    }
    table
}

/// One row per window and layout: the read walks; then each layout's write knee.
pub fn layouts_table(report: &crate::layouts::LayoutsReport) -> Table {
    let mut table = Table::new();
    table.set_header([
        "window",
        "layout",
        "pages/s",
        "page mean ms",
        "page p99 ms",
        "complete walks",
        "walk mean ms",
        "pages/walk",
        "cores: readers/API/PG",
        "checked",
        "write knee",
    ]);
    for days in &report.walk.windows_days {
        for l in &report.layouts {
            for w in l.walks.iter().filter(|w| w.window_days == *days) {
                table.add_row([
                    format!("{days} d"),
                    l.layout.to_string(),
                    format!("{:.0}", w.pages_per_second),
                    fmt_ms(w.pages.mean_us / 1000.0),
                    ms(w.pages.p99_us),
                    fmt_count(w.walks.count),
                    super::fmt_walk_mean(w),
                    fmt_count(w.pages_per_walk),
                    w.cores.map_or("–".to_owned(), |c| {
                        format!("{:.2}/{:.2}/{:.2}", c.generator, c.service, c.postgres)
                    }),
                    if w.ok() { "ok" } else { "FAILED" }.to_owned(),
                    l.writes.as_ref().map_or("–".to_owned(), |wr| {
                        wr.knee
                            .map_or("none".to_owned(), |k| format!("{:.0}/s", k.offered_rate))
                    }),
                ]);
            }
        }
    }
    table
}
