//! Partitioned against unpartitioned, as the services see it: the same history in the
//! services' own event tables in both layouts (`pmctl migrate --layout`), the same webhook
//! traffic against each (the write knee, [`crate::loadtest`]) and the same readers paging
//! through it ([`crate::walks`]) — one report with the layouts side by side.
//!
//! Unlike [`crate::partitioning`], which measures single queries on tables of its own, this
//! goes through the API and its real statements: what a user of each layout would see.

use std::fmt::Write as _;
use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use pm_storage::layout::Layout;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use crate::generate::{hash, pick, timestamp, CURRENCIES, REASONS, STATUSES};
use crate::loadtest::latency::ms;
use crate::loadtest::report::{Knee, ScenarioInfo, StepReport};
use crate::machine::MachineFacts;
use crate::report::{
    fmt_count, fmt_ms, fmt_services_env, fmt_walk_check, fmt_walk_mean, run_facts,
};
use crate::walks::WalkResult;
use crate::LabError;

/// The report's format; bump on incompatible changes.
pub const REPORT_FORMAT: u32 = 1;

/// The original project's read benchmark (8 users for 30 s walking `GET /disputes/events`
/// over the last 30 days): requests per second, mean page time, and one full walk.
pub const ORIGINAL_READS: (f64, f64, f64) = (551.0, 23.0, 8_600.0);

/// Rows generated per statement.
const CHUNK: u64 = 100_000;

/// The rows both layouts start with: `rows` order events and `rows` dispute events, their
/// times spread evenly over the `days` days before `until`, in time order (as webhooks
/// arrive).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct History {
    pub days: u32,
    pub rows: u64,
    pub until: DateTime<Utc>,
}

impl History {
    pub fn since(&self) -> DateTime<Utc> {
        self.until - Duration::days(i64::from(self.days))
    }
}

/// Dispute event kinds (the `dispute_events` CHECK), drawn uniformly.
const DISPUTE_KINDS: &[&str] = &[
    "webhook_opened",
    "webhook_updated",
    "provider_decision",
    "evidence_added",
    "evidence_submitted",
];

/// Writes the history into the services' event tables (pg_partman's partitions for the
/// period must exist: `pm_storage::partitions::cover`), then vacuums and analyzes them so
/// that no layout pays for hint bits or statistics during the measurement. `progress` gets
/// the rows written so far of `2 × rows`.
pub async fn seed_history(
    pool: &PgPool,
    history: &History,
    progress: &(dyn Fn(u64, u64) + Send + Sync),
) -> Result<(), LabError> {
    if history.rows == 0 {
        return Ok(());
    }
    let span_us = i64::from(history.days) * 86_400 * 1_000_000;
    let step_us = (span_us / history.rows as i64).max(1);
    let start = timestamp(history.since());
    let at = format!("{start} + (n * {step_us}) * interval '1 microsecond'");
    let order = format!(
        "INSERT INTO order_events (event_id, order_id, kind, provider_event_id, data, created_at)
         SELECT md5('pm-history-order-event' || n)::uuid,
                'hist-' || (n / 3),
                'webhook_received',
                'hist-o-' || n,
                jsonb_build_object('status', {status}, 'user_id', md5('pm-history-user' || ({user} % 10000))::uuid),
                {at}
         FROM generate_series($1::bigint, $2::bigint) AS n",
        status = pick(&["created", "pending", "success", "failed"], "n", 11),
        user = hash("n / 3", 12),
    );
    let dispute = format!(
        "INSERT INTO dispute_events (event_id, dispute_id, kind, provider_event_id, data, created_at)
         SELECT md5('pm-history-dispute-event' || n)::uuid,
                md5('pm-history-dispute' || ({dispute} % {disputes}))::uuid,
                {kind},
                'hist-d-' || n,
                jsonb_build_object('status', {status}, 'reason', {reason},
                                   'amount', ({amount} % 100000) / 100.0, 'currency', {currency}),
                {at}
         FROM generate_series($1::bigint, $2::bigint) AS n",
        dispute = hash("n", 21),
        disputes = (history.rows / 4).max(1),
        kind = pick(DISPUTE_KINDS, "n", 22),
        status = pick(STATUSES, "n", 23),
        reason = pick(REASONS, "n", 24),
        amount = hash("n", 25),
        currency = pick(CURRENCIES, "n", 26),
    );
    let total = 2 * history.rows;
    let mut done = 0;
    for sql in [&order, &dispute] {
        let mut lo = 0u64;
        while lo < history.rows {
            let hi = (lo + CHUNK).min(history.rows) - 1;
            sqlx::query(sql)
                .bind(lo as i64)
                .bind(hi as i64)
                .execute(pool)
                .await?;
            done += hi - lo + 1;
            progress(done, total);
            lo = hi + 1;
        }
    }
    // One statement each: VACUUM cannot run in the implicit transaction of a multi-statement
    // query.
    for table in ["order_events", "dispute_events"] {
        sqlx::raw_sql(&format!("VACUUM (ANALYZE) {table}"))
            .execute(pool)
            .await?;
    }
    Ok(())
}

/// Rows of `dispute_events` in the `days` days before `until`: what a walk must see.
pub async fn rows_in_window(
    pool: &PgPool,
    until: DateTime<Utc>,
    days: u32,
) -> Result<u64, LabError> {
    let n: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM dispute_events WHERE created_at >= $1 AND created_at < $2",
    )
    .bind(until - Duration::days(i64::from(days)))
    .bind(until)
    .fetch_one(pool)
    .await?;
    Ok(n.max(0) as u64)
}

/// Heap and index bytes of `dispute_events` (all partitions).
pub async fn dispute_events_bytes(pool: &PgPool) -> Result<i64, LabError> {
    Ok(sqlx::query_scalar(
        "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c
         WHERE c.oid = 'dispute_events'::regclass
            OR c.oid IN (SELECT inhrelid FROM pg_inherits WHERE inhparent = 'dispute_events'::regclass)",
    )
    .fetch_one(pool)
    .await?)
}

/// How long `f` took, in seconds, with its result.
pub async fn timed<T, F: std::future::Future<Output = T>>(f: F) -> (T, f64) {
    let start = Instant::now();
    let out = f.await;
    (out, start.elapsed().as_secs_f64())
}

/// The write side of one layout: a load-test sweep, whose full report is written apart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Writes {
    /// The load-test report of the sweep (file name, beside this report).
    pub report: String,
    pub knee: Option<Knee>,
    pub steps: Vec<StepBrief>,
}

/// One step of a sweep, in brief.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepBrief {
    pub offered_rate: f64,
    pub achieved_rate: f64,
    pub p99_us: u64,
    /// Whether it met the objective.
    pub passed: bool,
}

impl StepBrief {
    pub fn of(step: &StepReport) -> Self {
        StepBrief {
            offered_rate: step.offered_rate,
            achieved_rate: step.achieved_rate,
            p99_us: step.latency.p99_us,
            passed: step.slo.passed,
        }
    }
}

/// One layout's results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayoutRun {
    pub layout: Layout,
    /// Writing and vacuuming the history, seconds.
    pub seed_seconds: f64,
    /// `dispute_events` with its indexes after the history was written, bytes.
    pub dispute_events_bytes: i64,
    pub writes: Option<Writes>,
    pub walks: Vec<WalkResult>,
}

/// The read walks' settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WalkSettings {
    pub users: usize,
    pub seconds: u64,
    pub page_size: u32,
    pub windows_days: Vec<u32>,
}

/// The whole comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayoutsReport {
    pub format: u32,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub machine: MachineFacts,
    pub history: History,
    pub walk: WalkSettings,
    /// The scenario of the write sweeps, when there were any.
    pub scenario: Option<ScenarioInfo>,
    /// `PM_*` settings the services ran with (secrets left out); the rest were defaults.
    #[serde(default)]
    pub services_env: std::collections::BTreeMap<String, String>,
    pub layouts: Vec<LayoutRun>,
}

impl LayoutsReport {
    /// Every walk saw every row of its window exactly once, and no page failed.
    pub fn ok(&self) -> bool {
        self.layouts
            .iter()
            .all(|l| l.walks.iter().all(WalkResult::ok))
    }
}

/// The report for people; `svg_name` is the chart beside it.
pub fn markdown(r: &LayoutsReport, svg_name: &str) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# Partitioned vs unpartitioned, through the API — {}\n",
        r.started_at.format("%Y-%m-%d %H:%M UTC")
    );
    run_facts(&mut md, &r.machine);
    let _ = writeln!(
        md,
        "- history: {} order events and {} dispute events over the {} days before {}, in time order",
        fmt_count(r.history.rows),
        fmt_count(r.history.rows),
        r.history.days,
        r.history.until.format("%Y-%m-%d %H:%M:%S UTC")
    );
    let _ = writeln!(
        md,
        "- read walks: {} users for {} s per window, `GET /disputes/events?time_from=…&time_to=…&limit={}` page after page",
        r.walk.users, r.walk.seconds, r.walk.page_size
    );
    let _ = writeln!(
        md,
        "- services: one `pmctl serve-api` per layout, {}",
        fmt_services_env(&r.services_env, "read pool of 4 connections")
    );
    for l in &r.layouts {
        let _ = writeln!(
            md,
            "- {}: history written in {:.0} s; `dispute_events` with indexes {:.0} MiB",
            l.layout,
            l.seed_seconds,
            l.dispute_events_bytes as f64 / f64::from(1u32 << 20)
        );
    }
    let _ = writeln!(md, "\n![read walks per layout]({svg_name})\n");

    let _ = writeln!(md, "## Read walks\n");
    let _ = writeln!(
        md,
        "| window | layout | pages/s | page mean ms | p50 | p90 | p99 | complete walks | walk mean ms | pages per walk | rows in window | cores: readers / API / PostgreSQL | checked |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for days in &r.walk.windows_days {
        for l in &r.layouts {
            for w in l.walks.iter().filter(|w| w.window_days == *days) {
                let _ = writeln!(
                    md,
                    "| {} d | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    days,
                    l.layout,
                    w.pages_per_second,
                    fmt_ms(w.pages.mean_us / 1000.0),
                    ms(w.pages.p50_us),
                    ms(w.pages.p90_us),
                    ms(w.pages.p99_us),
                    w.walks.count,
                    fmt_walk_mean(w),
                    w.pages_per_walk,
                    fmt_count(w.rows_in_window),
                    w.cores.map_or("–".to_owned(), |c| format!(
                        "{:.2} / {:.2} / {:.2}",
                        c.generator, c.service, c.postgres
                    )),
                    fmt_walk_check(w),
                );
            }
        }
    }
    let (rps, page, walk) = ORIGINAL_READS;
    let _ = writeln!(
        md,
        "| 30 d | the original (Go, its machine) | ~{rps:.0} | ~{page:.0} | | | | | ~{walk:.0} | | | | |"
    );
    let _ = writeln!(
        md,
        "\nA complete walk is every page of the window, first to last; walks cut short by the \
         end of the run are not counted. Every complete walk must see exactly the rows the \
         database counted in the window (\"checked\"). The original's page size and data \
         volume are not known, so compare the shape (1 day vs 30 days, layout vs layout), \
         not the absolute numbers."
    );

    if r.layouts.iter().any(|l| l.writes.is_some()) {
        let _ = writeln!(md, "\n## Writes\n");
        if let Some(s) = &r.scenario {
            let _ = writeln!(
                md,
                "Scenario `{}` (seed {}{}), sent straight to the API (sync mode) at fixed rates; \
                 each layout's full load-test report is linked.\n",
                s.name,
                s.seed,
                s.sha256.as_ref().map_or_else(String::new, |h| format!(
                    ", sha256 {}",
                    &h[..h.len().min(12)]
                ))
            );
        }
        let _ = writeln!(
            md,
            "| layout | knee | steps (offered → achieved, p99) | report |"
        );
        let _ = writeln!(md, "|---|---|---|---|");
        for l in &r.layouts {
            let Some(w) = &l.writes else { continue };
            let knee = w.knee.map_or("none".to_owned(), |k| {
                format!("**{:.0}/s** (p99 {} ms)", k.offered_rate, ms(k.p99_us))
            });
            let steps = w
                .steps
                .iter()
                .map(|s| {
                    format!(
                        "{:.0} → {:.0}/s, {} ms{}",
                        s.offered_rate,
                        s.achieved_rate,
                        ms(s.p99_us),
                        if s.passed { "" } else { " ✗" }
                    )
                })
                .collect::<Vec<_>>()
                .join("; ");
            let _ = writeln!(
                md,
                "| {} | {knee} | {steps} | [{}]({}) |",
                l.layout, w.report, w.report
            );
        }
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::walks::Timing;

    fn walk(days: u32, ok: bool) -> WalkResult {
        let t = Timing {
            count: 10,
            mean_us: 12_000.0,
            p50_us: 11_000,
            p90_us: 15_000,
            p99_us: 20_000,
            max_us: 25_000,
        };
        WalkResult {
            window_days: days,
            users: 8,
            seconds: 30.0,
            page_size: 100,
            rows_in_window: 1_000,
            pages: t,
            pages_per_second: 400.0,
            failed_pages: u64::from(!ok),
            walks: t,
            pages_per_walk: 10,
            inconsistent_walks: 0,
            cores: None,
            read_sources: Default::default(),
        }
    }

    #[test]
    fn the_report_puts_the_layouts_side_by_side_and_says_what_failed() {
        let until = DateTime::parse_from_rfc3339("2026-12-01T00:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        let report = LayoutsReport {
            format: REPORT_FORMAT,
            started_at: until,
            finished_at: until,
            machine: MachineFacts::default(),
            history: History {
                days: 30,
                rows: 1_000,
                until,
            },
            walk: WalkSettings {
                users: 8,
                seconds: 30,
                page_size: 100,
                windows_days: vec![1, 30],
            },
            scenario: None,
            services_env: Default::default(),
            layouts: Layout::ALL
                .into_iter()
                .map(|layout| LayoutRun {
                    layout,
                    seed_seconds: 1.0,
                    dispute_events_bytes: 1 << 20,
                    writes: None,
                    walks: vec![walk(1, true), walk(30, layout == Layout::Partitioned)],
                })
                .collect(),
        };
        assert!(!report.ok());
        let md = markdown(&report, "chart.svg");
        let rows: Vec<&str> = md.lines().filter(|l| l.starts_with("| 30 d")).collect();
        assert_eq!(rows.len(), 3, "{md}");
        assert!(rows[0].contains("partitioned") && rows[0].ends_with("✓ |"));
        assert!(rows[1].contains("unpartitioned") && rows[1].contains("✗ 1 failed pages"));
        assert!(rows[2].contains("the original"));
        assert!(!md.contains("## Writes"));
    }
}
