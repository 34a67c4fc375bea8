//! Markdown reports, for people and for pull requests.

use std::fmt::Write as _;

use super::{fmt_count, fmt_ms, fmt_ratio};
use crate::baseline::BaselineReport;
use crate::loadtest::latency::ms;
use crate::machine::MachineFacts;
use crate::partitioning::{Layout, PartitioningReport, QueryId, ORIGINAL_5D};

fn gib(bytes: i64) -> String {
    format!("{:.2} GiB", bytes as f64 / (1u64 << 30) as f64)
}

fn machine_section(out: &mut String, m: &MachineFacts) {
    let _ = writeln!(out, "## Machine\n");
    let _ = writeln!(out, "- {}", m.summary());
    if let Some(v) = &m.postgres_version {
        let _ = writeln!(out, "- `{v}`");
    }
    if let Some(settings) = super::fmt_settings(m) {
        let _ = writeln!(out, "- settings: {settings}");
    }
    let _ = writeln!(out, "- command: `{}`\n", m.command_line);
}

/// The partitioning report; `svg_name` is the chart's file name beside it.
pub(crate) fn partitioning(r: &PartitioningReport, svg_name: &str) -> String {
    let mut out = String::new();
    let s = &r.setup;
    let _ = writeln!(
        out,
        "# Partitioning benchmark — {}\n",
        r.started_at.format("%Y-%m-%d %H:%M UTC")
    );
    let _ = writeln!(
        out,
        "`dispute_events` with {} rows over {} days ({} to {}), {} disputes, in four layouts; \
         each query run once (first run) and then {} times per layout, interleaved. Pages are \
         shared hit + read of `EXPLAIN (ANALYZE, BUFFERS)`: unlike time, they do not depend \
         on what is cached.\n",
        fmt_count(s.rows),
        s.days,
        s.period_start.format("%Y-%m-%d"),
        s.period_end.format("%Y-%m-%d"),
        fmt_count(s.disputes),
        s.runs
    );
    let _ = writeln!(out, "![time and pages per layout]({svg_name})\n");
    machine_section(&mut out, &r.machine);

    let _ = writeln!(out, "## The original query (5-day window)\n");
    if let Some(q) = r.query(QueryId::Window5d) {
        let _ = writeln!(out, "{}\n", q.description);
        let _ = writeln!(
            out,
            "| layout | median ms | p95 ms | pages | of them `dispute_events` | partitions scanned | rows | original ms | original pages |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        for l in &q.layouts {
            let original = ORIGINAL_5D
                .iter()
                .find(|(layout, _, _)| *layout == l.layout);
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {}/{} | {} | {} | {} |",
                l.layout.label(),
                fmt_ms(l.median_ms),
                fmt_ms(l.p95_ms),
                fmt_count(l.pages),
                fmt_count(l.events_pages),
                l.partitions_scanned,
                l.partitions_total,
                fmt_count(l.rows),
                original.map_or("–".into(), |o| fmt_ms(o.1)),
                original.map_or("–".into(), |o| fmt_count(o.2)),
            );
        }
        let _ = writeln!(out);
        pages_explained(&mut out, r, q);
    }

    let _ = writeln!(out, "## Targets\n");
    let _ = writeln!(out, "| target | required | measured | met |");
    let _ = writeln!(out, "|---|---:|---:|---|");
    for t in &r.targets {
        let verdict = if t.met {
            "yes".to_owned()
        } else {
            format!(
                "**no** — short by {:.1}× ({:.0} % of the target)",
                t.required / t.measured,
                100.0 * t.measured / t.required
            )
        };
        let _ = writeln!(
            out,
            "| {} | ≥ {} | {} | {} |",
            t.name,
            fmt_ratio(t.required),
            fmt_ratio(t.measured),
            verdict
        );
    }
    let _ = writeln!(
        out,
        "\nWhere a target is missed, the plans below say why: compare the pages spent in \
         `dispute_events` with the candidate rows the scans produced, and the pages spent on \
         the joined `disputes`, which no layout of `dispute_events` can reduce.\n"
    );

    let _ = writeln!(out, "## All queries\n");
    for q in &r.queries {
        let _ = writeln!(out, "### {}\n", q.title);
        let _ = writeln!(out, "{}", q.description);
        if q.statements_per_run > 1 {
            let _ = writeln!(
                out,
                " ({} statements per run; their times and pages are added up)",
                q.statements_per_run
            );
        }
        let _ = writeln!(
            out,
            "\n| layout | median ms | p95 ms | first ms | pages | read | `dispute_events` pages | candidates | partitions | rows |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for l in &q.layouts {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {}/{}{} | {} |",
                l.layout.label(),
                fmt_ms(l.median_ms),
                fmt_ms(l.p95_ms),
                fmt_ms(l.first_ms),
                fmt_count(l.pages),
                fmt_count(l.pages_read),
                fmt_count(l.events_pages),
                l.candidate_rows.map_or("–".to_owned(), fmt_count),
                l.partitions_scanned,
                l.partitions_total,
                if l.pruned { " (pruned)" } else { "" },
                fmt_count(l.rows),
            );
        }
        let _ = writeln!(
            out,
            "\nRatios: plain ÷ indexed {} time, {} pages; indexed ÷ partitioned {} time, {} pages; \
             indexed ÷ partitioned + clustered {} time, {} pages.\n",
            fmt_ratio(q.ratios.time_plain_over_indexed),
            fmt_ratio(q.ratios.pages_plain_over_indexed),
            fmt_ratio(q.ratios.time_indexed_over_partitioned),
            fmt_ratio(q.ratios.pages_indexed_over_partitioned),
            fmt_ratio(q.ratios.time_indexed_over_clustered),
            fmt_ratio(q.ratios.pages_indexed_over_clustered),
        );
        let _ = writeln!(out, "Plans:\n");
        for l in &q.layouts {
            let _ = writeln!(out, "- {}: `{}`", l.layout.label(), l.plan_shape);
        }
        let _ = writeln!(out, "\n```sql\n{}\n```\n", q.sql.trim());
    }

    let _ = writeln!(out, "## Setup\n");
    let _ = writeln!(
        out,
        "- load (generate, copy, index, vacuum): {:.0} s; queries: {:.0} s",
        s.load_seconds, s.query_seconds
    );
    let _ = writeln!(
        out,
        "- clustering the {} days of the clustered layout, one partition at a time: {} ms in \
         all, {} ms for the longest day (its reads would wait that long)",
        s.days,
        fmt_count(s.cluster_total_ms),
        fmt_count(s.cluster_longest_ms)
    );
    let _ = writeln!(
        out,
        "- `evidence_added` rows: {} ({:.1} %)",
        fmt_count(u64::try_from(s.evidence_added_rows).unwrap_or(0)),
        100.0 * s.evidence_added_rows as f64 / s.rows.max(1) as f64
    );
    let _ = writeln!(
        out,
        "\n| layout | heap pages | table | indexes | partitions |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|");
    for l in &s.layouts {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            l.layout.label(),
            fmt_count(u64::try_from(l.heap_pages).unwrap_or(0)),
            gib(l.table_bytes),
            gib(l.index_bytes),
            l.partitions
        );
    }
    let _ = writeln!(
        out,
        "\nLayouts: `{}` (no `(kind, created_at)` index), `{}` (with it), `{}` (pg_partman daily \
         partitions, with it), `{}` (the same, each day clustered on that index by \
         `pm_storage::partitions::cluster_closed`, the code of `pmctl partition-maintain \
         --cluster-closed`); all have the primary key `(created_at, event_id)` and the \
         `(dispute_id, created_at, event_id)` index, and join the same `bench_data.disputes`. \
         Rows are generated in dispute order (each dispute's events together, their times \
         spread over the period), as the original generator did, and copied into the other \
         layouts in the same physical order. Times are `EXPLAIN (ANALYZE, BUFFERS, TIMING OFF)` \
         execution times; values are written into the SQL as literals (plan-time pruning). \
         For a given plan the pages are deterministic (the data is); the planner's statistics \
         come from ANALYZE's random sample, though, so where two plans cost nearly the same a \
         run may pick the other one — the plan outlines show which ran.",
        Layout::Plain.schema(),
        Layout::Indexed.schema(),
        Layout::Partitioned.schema(),
        Layout::Clustered.schema()
    );
    out
}

/// Where each layout's pages of query `q` go: the events side against the rows it had to
/// find, and the joined disputes, which no layout of the events changes.
fn pages_explained(out: &mut String, r: &PartitioningReport, q: &crate::partitioning::QueryResult) {
    let _ = writeln!(out, "Where the pages go:\n");
    for l in &q.layouts {
        let disputes = l.pages.saturating_sub(l.events_pages);
        let rows_per_page = r
            .setup
            .layouts
            .iter()
            .find(|s| s.layout == l.layout)
            .filter(|s| s.heap_pages > 0)
            .map(|s| r.setup.rows as f64 / s.heap_pages as f64);
        let density = match (l.candidate_rows, rows_per_page) {
            (Some(candidates), Some(per_page)) if candidates > 0 => format!(
                "; the scans found {} candidate rows on those pages ({:.2} pages per row), which \
                 packed {:.0} to a page would fill {}",
                fmt_count(candidates),
                l.events_pages as f64 / candidates as f64,
                per_page,
                fmt_count((candidates as f64 / per_page).ceil() as u64),
            ),
            _ => String::new(),
        };
        let why = match l.layout {
            Layout::Plain => "No index on kind: every page of the table is read",
            Layout::Indexed => {
                "The kind index finds the window's rows, but the heap keeps them among every \
                 other kind and day, so nearly every page read holds one or two of them"
            }
            Layout::Partitioned => {
                "Only the window's partitions are searched, but inside each the kinds are \
                 interleaved as they arrived, so every page read holds a few of the rows sought \
                 among the others"
            }
            Layout::Clustered => {
                "Only the window's partitions, and in each the rows of one kind lie together: \
                 the pages read hold little else"
            }
        };
        let _ = writeln!(
            out,
            "- **{}**: {} pages = {} in `dispute_events` + {} in `disputes`{density}. {why}.",
            l.layout.label(),
            fmt_count(l.pages),
            fmt_count(l.events_pages),
            fmt_count(disputes),
        );
    }
    let _ = writeln!(
        out,
        "\nThe disputes side does not depend on the layout of the events; the covering index \
         `(status, reason) INCLUDE (dispute_id, amount, currency)` lets it be an index-only \
         scan of the matching disputes (the plan outlines below show what ran).\n"
    );
}

/// The baseline report; `svg_name` is the chart's file name beside it.
pub(crate) fn baseline(r: &BaselineReport, svg_name: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Baseline — {}\n",
        r.started_at.format("%Y-%m-%d %H:%M UTC")
    );
    let _ = writeln!(
        out,
        "The physical limits of this machine, measured in the same run: read the service's \
         rates as fractions of these.\n"
    );
    let h = &r.http;
    let _ = writeln!(
        out,
        "- **bare HTTP server** (verify signature + parse JSON, answer 202; no downstream): \
         **{} requests/s** sustained with ≤ {} connections (the load test's objective: p99 ≤ \
         {} ms, ≥ 95 % of the offered rate achieved, ≤ 1 % dropped or failed); a {:.0} s run \
         at that rate achieved {:.0}/s, p50 {} ms, p99 {} ms.",
        fmt_count(h.max_sustainable_rps.round() as u64),
        h.connections,
        fmt_ms(h.p99_limit_ms),
        h.confirmation.measured_seconds,
        h.confirmation.achieved_rate,
        ms(h.confirmation.latency.p50_us),
        ms(h.confirmation.latency.p99_us)
    );
    match &r.postgres {
        Some(pg) => {
            let _ = writeln!(
                out,
                "- **PostgreSQL single-row insert commits**: **{} commits/s** with {} sessions \
                 (p50 {} ms, p99 {} ms; `fsync={}`, `synchronous_commit={}`).",
                fmt_count(pg.commits_per_sec.round() as u64),
                pg.connections,
                fmt_ms(pg.p50_ms),
                fmt_ms(pg.p99_ms),
                pg.fsync,
                pg.synchronous_commit
            );
        }
        None => {
            let _ = writeln!(out, "- PostgreSQL: not measured.");
        }
    }
    let _ = writeln!(out, "\n![ramp]({svg_name})\n");
    machine_section(&mut out, &r.machine);
    let _ = writeln!(out, "## HTTP ramp\n");
    let _ = writeln!(
        out,
        "The load test's open-model engine: requests are due at a fixed rate and latency \
         counts from when each was due. The load generator runs on the same cores as the \
         server, so it is part of the limit.\n"
    );
    let _ = writeln!(out, "| offered /s | achieved /s | p50 ms | p90 ms | p99 ms | max ms | not accepted | sustained |");
    let _ = writeln!(out, "|---:|---:|---:|---:|---:|---:|---:|---|");
    for s in h.steps.iter().chain(std::iter::once(&h.confirmation)) {
        let l = &s.latency;
        let _ = writeln!(
            out,
            "| {:.0} | {:.0} | {} | {} | {} | {} | {} | {} |",
            s.offered_rate,
            s.achieved_rate,
            ms(l.p50_us),
            ms(l.p90_us),
            ms(l.p99_us),
            ms(l.max_us),
            fmt_count(s.scheduled.saturating_sub(s.accepted)),
            s.slo.describe()
        );
    }
    out
}
