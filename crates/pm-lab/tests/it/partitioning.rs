use std::collections::BTreeSet;

use chrono::Duration;
use pm_lab::partitioning::{self, Layout, PartitioningOptions, QueryId};
use pm_lab::report;
use pm_storage::testing::TestDatabase;

fn tiny() -> PartitioningOptions {
    PartitioningOptions {
        rows: 20_000,
        days: 6,
        disputes: 2_000,
        runs: 2,
        page_size: 1_000,
        keep: true,
        command_line: "pmctl bench partitioning --rows 20000 --days 6".into(),
        revision: "abc123".into(),
    }
}

#[tokio::test]
async fn tiny_run_compares_identical_rows_and_prunes_to_the_window() {
    let db = TestDatabase::new().await;
    let stages = std::sync::Mutex::new(BTreeSet::new());
    let report = partitioning::run(&db.pool, &tiny(), &|p| {
        if let Ok(mut s) = stages.lock() {
            s.insert(p.stage.describe());
        }
    })
    .await
    .expect("the benchmark runs");

    assert!(
        stages.lock().expect("lock").len() >= 6,
        "progress was reported for every stage"
    );
    assert_eq!(report.queries.len(), QueryId::ALL.len());
    for q in &report.queries {
        let rows: Vec<u64> = q.layouts.iter().map(|l| l.rows).collect();
        assert!(rows.iter().all(|&r| r == rows[0]), "{}: {rows:?}", q.title);
        assert_eq!(q.layouts.len(), Layout::ALL.len());
    }
    let window = report.query(QueryId::Window5d).expect("5-day query");
    assert!(window.layouts[0].rows > 0, "the original query finds rows");
    let history = report.query(QueryId::DisputeHistory).expect("history");
    assert_eq!(
        history.layouts[0].rows, 12,
        "the chosen dispute has the most events"
    );
    let pages = report.query(QueryId::DayPagination).expect("pagination");
    let per_day = pages.layouts[0].rows;
    assert!(
        per_day > 2_000 && per_day < 5_000,
        "one day of 20k rows over 6 days: {per_day}"
    );
    assert!(pages.statements_per_run >= 3);

    // Pruning: exactly the partitions of the five days.
    let partitioned = window.layout(Layout::Partitioned).expect("partitioned");
    let (from, _) = (report.setup.period_start, report.setup.period_end);
    let first_day = from + Duration::days(0); // (6 − 5) / 2 = 0: the window starts on day 0
    let mut expected = BTreeSet::new();
    for d in 0..5 {
        let day = (first_day + Duration::days(d))
            .format("%Y-%m-%d 00:00:00+00")
            .to_string();
        let name: String = sqlx::query_scalar(
            "SELECT partition_table FROM partman.show_partition_name('bench_partitioned.dispute_events', $1)",
        )
        .bind(day)
        .fetch_one(&db.pool)
        .await
        .expect("pg_partman names the partition");
        expected.insert(name.trim_start_matches("bench_partitioned.").to_owned());
    }
    let scanned: BTreeSet<String> = partitioned.scanned.iter().cloned().collect();
    assert_eq!(scanned, expected, "plan: {}", partitioned.plan_shape);
    assert!(partitioned.pruned);
    assert_eq!(partitioned.partitions_scanned, 5);
    assert!(
        partitioned.partitions_total > 5 + 7,
        "days + premade + default"
    );
    let plain = window.layout(Layout::Plain).expect("plain");
    assert!(
        partitioned.pages < plain.pages,
        "partitioned {} pages vs plain {}",
        partitioned.pages,
        plain.pages
    );
    assert_eq!(plain.partitions_total, 1);
    assert!(!plain.pruned);

    // The clustered layout prunes alike, and its closed days were clustered by kind: the
    // window's rows of one kind lie together, on fewer pages than interleaved.
    let clustered = window.layout(Layout::Clustered).expect("clustered");
    assert_eq!(
        clustered.partitions_scanned, 5,
        "plan: {}",
        clustered.plan_shape
    );
    assert!(
        clustered.events_pages < partitioned.events_pages,
        "clustered {} event pages vs partitioned {}",
        clustered.events_pages,
        partitioned.events_pages
    );
    let days_clustered: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_index x
         JOIN pg_inherits i ON i.inhrelid = x.indrelid
         WHERE i.inhparent = 'bench_clustered.dispute_events'::regclass AND x.indisclustered",
    )
    .fetch_one(&db.pool)
    .await
    .expect("count");
    assert_eq!(
        days_clustered, 6,
        "every generated day, none of the premade ones"
    );

    // The history query cannot prune: no time filter.
    let history = history.layout(Layout::Partitioned).expect("partitioned");
    assert!(!history.pruned, "plan: {}", history.plan_shape);

    // Reports.
    let dir = tempfile::tempdir().expect("temp dir");
    let written = report::write_partitioning(dir.path(), &report).expect("written");
    let json = std::fs::read_to_string(&written.json).expect("json");
    let back: partitioning::PartitioningReport = serde_json::from_str(&json).expect("parses back");
    assert_eq!(back.queries.len(), report.queries.len());
    assert_eq!(back.setup.rows, 20_000);
    let md = std::fs::read_to_string(&written.markdown).expect("markdown");
    for heading in [
        "# Partitioning benchmark",
        "## The original query (5-day window)",
        "Where the pages go",
        "clustering the 6 days of the clustered layout",
        "## Targets",
        "## All queries",
        "### day pagination",
        "## Setup",
    ] {
        assert!(md.contains(heading), "missing {heading:?} in\n{md}");
    }
    let svg_name = written
        .svg
        .file_name()
        .and_then(|n| n.to_str())
        .expect("name");
    assert!(
        md.contains(&format!("]({svg_name})")),
        "the Markdown links the chart"
    );
    let svg = std::fs::read_to_string(&written.svg).expect("svg");
    assert!(svg.starts_with("<svg") && svg.contains("<rect") && svg.contains("5-day window"));
    let table = report::partitioning_table(&report).to_string();
    assert!(table.contains("daily partitions + index"));

    // Cleaning up removes the schemas and pg_partman's configuration.
    let opts = PartitioningOptions {
        keep: false,
        rows: 15_000,
        disputes: 1_500,
        runs: 1,
        ..tiny()
    };
    partitioning::run(&db.pool, &opts, &|_| {})
        .await
        .expect("second run");
    let left: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'bench\\_%')
              + (SELECT count(*) FROM partman.part_config WHERE parent_table LIKE 'bench\\_%')",
    )
    .fetch_one(&db.pool)
    .await
    .expect("count");
    assert_eq!(left, 0, "nothing of the benchmark is left behind");
}

#[tokio::test]
async fn impossible_options_are_refused_before_touching_the_database() {
    let db = TestDatabase::new().await;
    let opts = PartitioningOptions {
        rows: 100,
        disputes: 1_000,
        ..tiny()
    };
    let err = partitioning::run(&db.pool, &opts, &|_| {})
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("between 3 and 12"), "{err}");
    let opts = PartitioningOptions { days: 3, ..tiny() };
    assert!(partitioning::run(&db.pool, &opts, &|_| {}).await.is_err());
}
