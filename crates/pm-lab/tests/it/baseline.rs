use std::time::Duration;

use pm_lab::baseline::{self, BareServer, BaselineOptions};
use pm_lab::loadtest::report as loadtest_report;
use pm_lab::report;
use pm_storage::testing::TestDatabase;

#[tokio::test]
async fn the_bare_server_answers_like_a_webhook_endpoint() {
    let server = BareServer::start(b"whsec_test").await.expect("starts");
    let client = reqwest::Client::new();
    let (body, signature) = baseline::signed_bodies(b"whsec_test", 1).remove(0);
    let post = |body: bytes::Bytes, signature: &str| {
        client
            .post(server.url())
            .header("content-type", "application/json")
            .header("Webhook-Signature", signature.to_owned())
            .body(body)
            .send()
    };
    let ok = post(body.clone(), &signature).await.expect("answered");
    assert_eq!(ok.status(), 202);
    let (_, wrong) = baseline::signed_bodies(b"another secret", 1).remove(0);
    assert_eq!(
        post(body.clone(), &wrong).await.expect("answered").status(),
        401
    );
    let garbage = bytes::Bytes::from_static(b"{not json");
    let t = chrono::Utc::now().timestamp();
    let signed = pm_domain::signature::header_value(b"whsec_test", t, &garbage);
    assert_eq!(
        post(garbage, &signed).await.expect("answered").status(),
        400
    );
    server.stop().await;
}

#[tokio::test]
async fn a_tiny_baseline_measures_positive_rates_and_writes_its_report() {
    let db = TestDatabase::new().await;
    let opts = BaselineOptions {
        duration: Duration::from_millis(400),
        connections: 4,
        step_duration: Duration::from_millis(300),
        // Generous: these machines are shared; the test checks the mechanics, not the speed.
        p99_limit: Duration::from_secs(5),
        start_rate: 100.0,
        max_rate: 160.0,
        command_line: "pmctl bench baseline".into(),
        revision: "abc123-dirty".into(),
    };
    let lines = std::sync::Mutex::new(Vec::new());
    let report = baseline::run(Some(&db.url), &opts, &|line| {
        if let Ok(mut l) = lines.lock() {
            l.push(line.to_owned());
        }
    })
    .await
    .expect("runs");
    assert!(!lines.lock().expect("lock").is_empty());
    assert!(
        report.http.max_sustainable_rps > 0.0,
        "{:?}",
        report.http.steps
    );
    assert!(
        report.http.confirmation.slo.passed,
        "the rate reported is one a full-length run sustained: {:?}",
        report.http.confirmation.slo
    );
    assert_eq!(
        report.machine.git_revision.as_deref(),
        Some("abc123-dirty"),
        "the report records the binary's revision, dirty mark included"
    );
    assert!(report.http.confirmation.achieved_rate > 0.0);
    assert!(report.http.confirmation.accepted > 0);
    assert_eq!(
        report.http.confirmation.latency.count, report.http.confirmation.sent,
        "measured by the load test's engine: every request sent is in the histogram"
    );
    let pg = report.postgres.as_ref().expect("measured");
    assert!(pg.commits > 0 && pg.commits_per_sec > 0.0);
    assert_eq!(pg.connections, 4);

    let dir = tempfile::tempdir().expect("temp dir");
    let written = report::write_baseline(dir.path(), &report).expect("written");
    let md = std::fs::read_to_string(&written.markdown).expect("markdown");
    assert!(md.contains("# Baseline") && md.contains("## HTTP ramp"));
    assert!(std::fs::read_to_string(&written.svg)
        .expect("svg")
        .starts_with("<svg"));

    // What a load test divides its rates by: the typed report, read back.
    let found = loadtest_report::find_baseline(dir.path()).expect("found");
    assert_eq!(found, written.json);
    let reference = loadtest_report::Baseline::read(&found).expect("reads");
    assert_eq!(
        reference.bare_http_rate,
        Some(report.http.max_sustainable_rps)
    );
    assert_eq!(reference.pg_insert_commit_rate, Some(pg.commits_per_sec));
}
