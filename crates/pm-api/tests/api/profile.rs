//! CPU profiles on demand: off unless asked for, scope `admin`, one at a time, and bad
//! parameters named.

use pm_api::testing::{client_with_key, TestApi};
use pm_domain::api_key::Scope;
use pm_storage::testing::TestDatabase;
use serde_json::Value;

use crate::app::{TestApp, SECRET};

async fn problem(r: reqwest::Response) -> (u16, String) {
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    (
        status,
        body["detail"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test]
async fn profiling_is_off_unless_the_service_was_started_with_it() {
    let app = TestApp::spawn().await;
    let r = app
        .http
        .get(app.url("/debug/pprof/profile?seconds=1"))
        .send()
        .await
        .expect("request");
    let (status, detail) = problem(r).await;
    assert_eq!(status, 404);
    assert!(detail.contains("--pprof"), "{detail}");
}

#[tokio::test]
async fn an_admin_gets_a_flame_graph_or_folded_stacks_one_profile_at_a_time() {
    let db = TestDatabase::new().await;
    let api = TestApi::new(SECRET).pprof().spawn(db.pool.clone()).await;
    let admin = api.client();
    let url = |q: &str| format!("{}/debug/pprof/profile{q}", api.base);

    for (q, wrong) in [
        ("?seconds=0", "seconds"),
        ("?seconds=26", "seconds"),
        ("?seconds=ten", "seconds"),
        ("?format=pdf", "format"),
        ("?sample=1", "sample"),
    ] {
        let (status, detail) = problem(admin.get(url(q)).send().await.expect("request")).await;
        assert_eq!(status, 400, "{q}: {detail}");
        assert!(detail.contains(wrong), "{q}: {detail}");
    }

    let (_, reader_key) = pm_storage::api_keys::create(
        &db.pool,
        "reader",
        &[Scope::Read],
        None,
        &pm_storage::audit::Actor::new("cli:tests", None),
        pm_domain::time::now(),
    )
    .await
    .expect("key");
    let reader = client_with_key(&reader_key);
    let r = reader.get(url("?seconds=1")).send().await.expect("request");
    assert_eq!(r.status(), 403, "profiles need scope admin");

    // While a profile runs — the API runs in this process, so one taken here is its — a
    // second is refused.
    let running = pm_telemetry::profiling::CpuProfiler::start(99).expect("profiler");
    let (status, detail) =
        problem(admin.get(url("?seconds=1")).send().await.expect("request")).await;
    assert_eq!(status, 409, "{detail}");
    drop(running);

    let first = admin
        .get(url("?seconds=1&format=folded"))
        .send()
        .await
        .expect("request");
    assert_eq!(first.status(), 200);
    assert!(first.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .starts_with("text/plain"));
    let folded = first.text().await.expect("text");
    for line in folded.lines() {
        let count = line.rsplit(' ').next().and_then(|n| n.parse::<u64>().ok());
        assert!(count.is_some_and(|n| n > 0), "stack and count: {line}");
    }

    let r = admin.get(url("?seconds=1")).send().await.expect("request");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/svg+xml");
    let svg = r.text().await.expect("svg");
    assert!(
        svg.starts_with("<?xml") && svg.contains("<svg"),
        "{}",
        &svg[..svg.len().min(200)]
    );
}
