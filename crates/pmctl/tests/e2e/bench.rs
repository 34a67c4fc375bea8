//! `pmctl bench layouts`: both layouts built, written to and walked through a real
//! `serve-api`, on the test server.

use pm_storage::testing::TestDatabase;
use serde_json::Value;

use crate::process::{run, text};

/// A benchmark's report, `<kind>-<time>` as JSON, Markdown and SVG, is in `dir`.
fn assert_report_written(dir: &std::path::Path, kind: &str) {
    let files: Vec<String> = std::fs::read_dir(dir)
        .expect("out")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    for ext in ["json", "md", "svg"] {
        assert!(
            files
                .iter()
                .any(|f| f.starts_with(&format!("{kind}-")) && f.ends_with(ext)),
            "{files:?}"
        );
    }
}

#[tokio::test]
async fn bench_layouts_writes_and_walks_both_layouts_and_checks_every_walk() {
    let db = TestDatabase::new().await;
    let out = tempfile::tempdir().expect("temp dir");
    let done = tokio::task::spawn_blocking({
        let (url, out) = (db.url.clone(), out.path().display().to_string());
        move || {
            run(
                &[
                    "bench",
                    "layouts",
                    "--history-days",
                    "3",
                    "--history-rows",
                    "3000",
                    "--windows",
                    "1,3",
                    "--users",
                    "2",
                    "--walk-duration",
                    "2s",
                    "--page-size",
                    "250",
                    "--rates",
                    "50",
                    "--duration",
                    "2s",
                    "--warmup",
                    "1s",
                    "--connections",
                    "4",
                    "--json",
                    "--out",
                    &out,
                ],
                &[("PM_DATABASE_URL", url.as_str())],
            )
        }
    })
    .await
    .expect("bench ran");
    assert!(done.status.success(), "{}", text(&done));
    let report: Value = serde_json::from_slice(&done.stdout).expect("a JSON report");
    let layouts = report["layouts"].as_array().expect("layouts");
    let names: Vec<&str> = layouts
        .iter()
        .filter_map(|l| l["layout"].as_str())
        .collect();
    assert_eq!(names, ["partitioned", "unpartitioned"]);
    for l in layouts {
        let walks = l["walks"].as_array().expect("walks");
        assert_eq!(walks.len(), 2, "{l}");
        for w in walks {
            // 3,000 rows over 3 days: about 1,000 in the last day, all of them in 3 days.
            let rows = w["rows_in_window"].as_u64().expect("rows");
            match w["window_days"].as_u64() {
                Some(1) => assert!((900..=1100).contains(&rows), "{w}"),
                Some(3) => assert_eq!(rows, 3000, "{w}"),
                other => panic!("unexpected window {other:?}"),
            }
            assert!(
                w["walks"]["count"].as_u64() > Some(0),
                "a walk completed: {w}"
            );
            assert_eq!(w["failed_pages"], 0, "{w}");
            assert_eq!(w["inconsistent_walks"], 0, "{w}");
            // What each side used meanwhile: the API served the pages, PostgreSQL ran them.
            assert!(w["cores"]["service"].as_f64() > Some(0.0), "{w}");
            assert!(w["cores"]["postgres"].as_f64() > Some(0.0), "{w}");
            assert_eq!(
                w["pages_per_walk"].as_u64(),
                Some(rows.div_ceil(250).max(1)),
                "{w}"
            );
        }
        let writes = &l["writes"];
        assert!(
            writes["steps"][0]["achieved_rate"].as_f64() > Some(0.0),
            "{l}"
        );
        let linked = out
            .path()
            .join(writes["report"].as_str().expect("report file"));
        assert!(linked.exists(), "{}", linked.display());
    }
    assert_report_written(out.path(), "layouts");
    // The benchmark's databases are gone.
    let left: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname LIKE 'pm_bench_%'")
            .fetch_one(&db.pool)
            .await
            .expect("count");
    assert_eq!(left, 0);
}

/// `pmctl bench outbox`: both relays drain a backlog and carry a steady load with nothing
/// missing, and the write path runs with the outbox off and on (tiny sizes: this checks the
/// benchmark works, not the numbers).
#[tokio::test]
async fn bench_outbox_measures_both_relays_and_the_write_path() {
    let brokers = pm_kafka::testing::brokers();
    let out = tempfile::tempdir().expect("temp dir");
    let done = tokio::task::spawn_blocking({
        let out = out.path().display().to_string();
        move || {
            run(
                &[
                    "bench",
                    "outbox",
                    "--kafka-brokers",
                    &brokers,
                    "--backlog",
                    "300",
                    "--rate",
                    "50",
                    "--duration",
                    "2s",
                    "--writes",
                    "200",
                    "--writers",
                    "4",
                    "--write-rounds",
                    "1",
                    "--out",
                    &out,
                ],
                &[],
            )
        }
    })
    .await
    .expect("bench ran");
    assert!(done.status.success(), "{}", text(&done));
    let json = std::fs::read_dir(out.path())
        .expect("out dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "json"))
        .expect("a JSON report");
    let report: Value = serde_json::from_slice(&std::fs::read(json).expect("read")).expect("JSON");
    let relays = report["relays"].as_array().expect("relays");
    let names: Vec<&str> = relays.iter().filter_map(|r| r["relay"].as_str()).collect();
    assert_eq!(names, ["polling", "debezium"]);
    for r in relays {
        assert_eq!(r["backlog"], 300, "{r}");
        assert_eq!(r["missing"], 0, "every steady event read: {r}");
        assert_eq!(r["lag"]["count"], 100, "a lag per steady event: {r}");
        assert!(r["drain_rate"].as_f64().is_some_and(|x| x > 0.0), "{r}");
    }
    let writes = report["write_path"].as_array().expect("write_path");
    let outbox: Vec<bool> = writes
        .iter()
        .filter_map(|w| w["outbox"].as_bool())
        .collect();
    assert_eq!(outbox, [false, true]);
    assert!(writes.iter().all(|w| w["webhooks"] == 200));
}

/// `pmctl bench replication`: a primary with two standbys, the staleness of each measured
/// under a (tiny) webhook load, and the walks with reads routed to 0, 1 and 2 replicas —
/// checks that the benchmark works and says where reads went, not the numbers.
#[tokio::test]
async fn bench_replication_measures_staleness_and_routes_walks_to_replicas() {
    let out = tempfile::tempdir().expect("temp dir");
    let done = tokio::task::spawn_blocking({
        let out = out.path().display().to_string();
        move || {
            run(
                &[
                    "bench",
                    "replication",
                    "--rate",
                    "50",
                    "--duration",
                    "2s",
                    "--warmup",
                    "1s",
                    "--connections",
                    "4",
                    "--history-days",
                    "2",
                    "--history-rows",
                    "2000",
                    "--users",
                    "2",
                    "--walk-duration",
                    "2s",
                    "--page-size",
                    "250",
                    "--json",
                    "--out",
                    &out,
                ],
                &[],
            )
        }
    })
    .await
    .expect("bench ran");
    assert!(done.status.success(), "{}", text(&done));
    let report: Value = serde_json::from_slice(&done.stdout).expect("a JSON report");
    assert_eq!(report["standbys"], 2);

    let load = &report["load"];
    let step = &load["writes"]["steps"][0];
    assert_eq!(step["offered_rate"], 50.0, "{load}");
    assert!(step["achieved_rate"].as_f64() > Some(0.0), "{load}");
    let linked = out
        .path()
        .join(load["writes"]["report"].as_str().expect("report file"));
    assert!(linked.exists(), "{}", linked.display());
    let standbys = load["standbys"].as_array().expect("standbys");
    assert_eq!(standbys.len(), 2, "{load}");
    for s in standbys {
        // 2 s of a heartbeat every 10 ms: about 200, each seen on the standby.
        let beats = s["heartbeats"].as_u64().expect("heartbeats");
        assert!(beats >= 50, "{s}");
        assert_eq!(s["missing"], 0, "{s}");
        assert_eq!(s["visible_after"]["count"].as_u64(), Some(beats), "{s}");
        assert!(s["behind_bytes"]["samples"].as_u64() > Some(0), "{s}");
    }
    assert!(load["cores"]["primary"].as_f64() > Some(0.0), "{load}");
    assert_eq!(load["cores"]["standbys"].as_array().map(Vec::len), Some(2));

    let reads = report["reads"].as_array().expect("reads");
    let replicas: Vec<u64> = reads
        .iter()
        .filter_map(|r| r["replicas"].as_u64())
        .collect();
    assert_eq!(replicas, [0, 1, 2]);
    for r in reads {
        let w = &r["walk"];
        // 2,000 rows over 2 days: about 1,000 in the last day, in pages of 250.
        let rows = w["rows_in_window"].as_u64().expect("rows");
        assert!((900..=1100).contains(&rows), "{w}");
        assert!(
            w["walks"]["count"].as_u64() > Some(0),
            "a walk completed: {w}"
        );
        assert_eq!(w["failed_pages"], 0, "{w}");
        assert_eq!(w["inconsistent_walks"], 0, "{w}");
        // Pages by where they were read from (the readers count pages Goose answered after
        // its run time too, so the sum may exceed `pages.count` a little).
        let pages = w["pages"]["count"].as_u64().expect("pages");
        let sources = w["read_sources"].as_object().expect("read sources");
        let only = |source: &str| {
            sources.len() == 1 && sources.get(source).and_then(Value::as_u64) >= Some(pages)
        };
        if r["replicas"] == 0 {
            // Without replicas the API does not say: every read is the primary's.
            assert!(only("unnamed"), "{w}");
        } else {
            assert!(only("replica"), "every read from a replica: {w}");
            // The standbys' share of the CPU shows which served the reads.
            let standby_cores: f64 = r["cores"]["standbys"]
                .as_array()
                .expect("standbys' cores")
                .iter()
                .filter_map(Value::as_f64)
                .sum();
            assert!(standby_cores > 0.0, "{r}");
        }
    }
    assert_report_written(out.path(), "replication");
}
