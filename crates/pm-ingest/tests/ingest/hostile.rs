//! Property test: whatever a hostile client sends to ingest — bodies, headers — ingest
//! never answers 5xx for it (its only 503 is "the downstream is unavailable", and here the
//! API behind it is up), and a refused webhook reaches nothing behind it.
//!
//! The number of cases is proptest's (`PROPTEST_CASES`, default 256); CI sets it.

use pm_api::testing::hostile::{self, Route};
use proptest::test_runner::{Config, TestRunner};

use crate::support::{Api, Ingest, SECRET, TOKEN};

#[test]
fn hostile_webhooks_at_ingest_never_get_a_5xx_and_a_refused_one_reaches_nothing() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (api, ingest) = rt.block_on(async {
        let api = Api::spawn().await;
        let ingest = Ingest::http_sink(&api.base, TOKEN).await;
        for i in 0..8 {
            let body = Route::Orders.valid(&format!("seed-{i}"), &format!("ord-{i}"));
            let r = ingest
                .webhook(Route::Orders.path(), &body.to_string())
                .await;
            assert_eq!(r.status(), 202);
        }
        (api, ingest)
    });
    let case = hostile::webhook_case(8);
    let mut runner = TestRunner::new(Config {
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&case, |case| {
            rt.block_on(hostile::check_webhook(
                &ingest.http,
                &ingest.base,
                SECRET,
                &api.db.pool,
                case,
            ))
        })
        .expect("property");
}
