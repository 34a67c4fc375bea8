//! The result files: JSON shape (with the full histogram), Markdown and SVG next to it,
//! reading back, and comparison.

use std::time::Duration;

use pm_lab::loadtest::knee::{self, SloCriteria};
use pm_lab::loadtest::latency;
use pm_lab::loadtest::report::{
    compare, read_report, write_reports, Knee, RunReport, ScenarioInfo, Settings, StepReport,
    REPORT_FORMAT,
};
use pm_lab::statements::{StatementProfile, StatementStat};

/// A step with a real histogram of `n` latencies spread up to `top_us`.
fn step(offered: f64, achieved: f64, top_us: u64) -> StepReport {
    let mut h = latency::new_histogram().unwrap();
    for i in 1..=1000u64 {
        latency::record(&mut h, Duration::from_micros(i * top_us / 1000));
    }
    let mut s = StepReport {
        offered_rate: offered,
        achieved_rate: achieved,
        scheduled: 1000,
        sent: 1000,
        completed: 1000,
        accepted: 990,
        rejected: 10,
        latency: latency::LatencySummary::of(&h).unwrap(),
        ..StepReport::default()
    };
    s.statuses.insert("202".to_owned(), 990);
    s.statuses.insert("401".to_owned(), 10);
    s.slo = knee::verdict(&s, &SloCriteria::new(Duration::from_millis(50)));
    s
}

fn report(steps: Vec<StepReport>, revision: &str) -> RunReport {
    let knee = knee::knee(&steps).map(|s| Knee {
        offered_rate: s.offered_rate,
        achieved_rate: s.achieved_rate,
        p99_us: s.latency.p99_us,
    });
    RunReport {
        format: REPORT_FORMAT,
        tool: "pmctl loadtest".to_owned(),
        run_id: "abcd1234".to_owned(),
        started_at: "2026-01-02T03:04:05Z".to_owned(),
        finished_at: "2026-01-02T03:05:05Z".to_owned(),
        command_line: vec![
            "pmctl".into(),
            "loadtest".into(),
            "--rates".into(),
            "1000,2000".into(),
        ],
        git_revision: Some(revision.to_owned()),
        machine: pm_lab::machine::MachineFacts::host("pmctl loadtest --rate 100", "abc123"),
        scenario: ScenarioInfo {
            name: "steady-10k".to_owned(),
            seed: 10000,
            file: Some("scenarios/steady-10k.toml".to_owned()),
            keep_faults: true,
            sha256: Some(ScenarioInfo::hash("[scenario]\nname = \"steady-10k\"\n")),
        },
        target: "http://127.0.0.1:3001".to_owned(),
        api_url: None,
        settings: Settings {
            connections: 64,
            warmup_ms: 2000,
            duration_ms: 30000,
            slo_p99_ms: 50.0,
            ..Settings::default()
        },
        steps,
        knee,
        baseline: None,
        statements_unavailable: None,
        kafka: None,
    }
}

#[test]
fn the_json_result_has_its_documented_shape_and_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let mut run = report(
        vec![step(1000.0, 999.0, 10_000), step(2000.0, 1500.0, 400_000)],
        "abc1234",
    );
    run.steps[0].statements = Some(StatementProfile {
        total_ms: 900.0,
        calls: 3000,
        wal_bytes: 1_500_000,
        top: vec![StatementStat {
            query: "INSERT INTO processed_webhooks | x".to_owned(),
            calls: 1000,
            total_ms: 600.0,
            mean_ms: 0.6,
            rows: 1000,
            shared_blocks_hit: 9000,
            shared_blocks_read: 0,
            wal_bytes: 1_000_000,
        }],
    });
    let written = write_reports(dir.path(), &run).unwrap();
    assert_eq!(
        written.json.file_name().unwrap().to_str().unwrap(),
        "loadtest-20260102T030405Z.json"
    );
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&written.json).unwrap()).unwrap();
    for key in [
        "format",
        "command_line",
        "git_revision",
        "machine",
        "scenario",
        "target",
        "settings",
        "steps",
        "knee",
    ] {
        assert!(!v[key].is_null(), "{key} missing");
    }
    assert!(v["machine"]["cores"].as_u64().unwrap() >= 1);
    assert!(v["machine"]["memory_bytes"].as_u64().is_some());
    assert_eq!(v["scenario"]["sha256"].as_str().map(str::len), Some(64));
    assert_eq!(v["scenario"]["seed"], 10000);
    assert_eq!(v["knee"]["offered_rate"], 1000.0);
    let step0 = &v["steps"][0];
    for key in [
        "offered_rate",
        "achieved_rate",
        "sent",
        "accepted",
        "rejected",
        "statuses",
        "dropped",
    ] {
        assert!(!step0[key].is_null(), "steps[0].{key} missing");
    }
    let lat = &step0["latency"];
    for key in [
        "p50_us",
        "p90_us",
        "p99_us",
        "p999_us",
        "max_us",
        "percentiles",
    ] {
        assert!(!lat[key].is_null(), "latency.{key} missing");
    }
    // The full histogram is in the file and decodes to what was measured.
    let h = latency::decode(lat["histogram_v2_base64"].as_str().unwrap()).unwrap();
    assert_eq!(h.len(), 1000);
    assert_eq!(h.value_at_percentile(99.0), lat["p99_us"].as_u64().unwrap());

    assert_eq!(read_report(&written.json).unwrap(), run);
    let md = std::fs::read_to_string(&written.markdown).unwrap();
    assert!(md.contains("](loadtest-20260102T030405Z.svg)"));
    assert!(md.contains("knee: 1000/s"));
    // The statements table: its share of the step's execution, the pipe escaped.
    assert!(md.contains("## Where the database spent its time"), "{md}");
    assert!(
        md.contains("| `INSERT INTO processed_webhooks \\| x` | 1000 | 600 | 66.7 % | 0.600 | 1.0 | 9.0 | 1000 |"),
        "{md}"
    );
    let svg = std::fs::read_to_string(&written.svg).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("p99.9"));

    // A second run in the same second does not overwrite the first.
    let again = write_reports(dir.path(), &run).unwrap();
    assert_ne!(again.json, written.json);
    let mut bad = run.clone();
    bad.format = 99;
    std::fs::write(&again.json, serde_json::to_vec(&bad).unwrap()).unwrap();
    assert!(read_report(&again.json).is_err());
}

#[test]
fn compare_prints_per_rate_differences() {
    let old = report(
        vec![step(1000.0, 1000.0, 10_000), step(2000.0, 1950.0, 40_000)],
        "old1",
    );
    let new = report(
        vec![step(1000.0, 990.0, 20_000), step(5000.0, 4000.0, 900_000)],
        "new2",
    );
    let c = compare(&old, &new);
    assert_eq!(c.rows.len(), 1);
    assert_eq!(c.only_old, vec![2000.0]);
    assert_eq!(c.only_new, vec![5000.0]);
    let table = c.table().to_string();
    assert!(table.contains("1000 → 990 (-10, -1.0 %)"), "{table}");
    // p99 doubled: 9.9 ms → 19.8 ms.
    let row = &c.rows[0];
    assert!(row.p99_us.1 > row.p99_us.0);
    assert!(table.contains("+100.0 %"), "{table}");
    let notes = c.notes().join("\n");
    assert!(notes.contains("knee: 2000/s → 1000/s"), "{notes}");
    assert!(notes.contains("old1 → new2"));
    assert!(notes.contains("only in the old run: 2000/s"));
}

#[test]
fn every_committed_result_still_reads_for_comparison() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench-results");
    let mut read = 0;
    for entry in std::fs::read_dir(&dir).expect("bench-results") {
        let path = entry.expect("entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with("loadtest-") && name.ends_with(".json") {
            let run = read_report(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(run.machine.cores >= 1, "{name}");
            read += 1;
        }
    }
    assert!(
        read > 0,
        "no committed load-test results in {}",
        dir.display()
    );
}
