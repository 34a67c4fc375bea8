//! Property tests: whatever a hostile client sends — webhook bodies, headers, query
//! strings — the API never answers 5xx, and a refused webhook stores nothing.
//!
//! The number of cases per property is proptest's (`PROPTEST_CASES`, default 256); CI
//! sets it (see `.ci/run`).

use pm_api::testing::hostile::{self, Route};
use pm_api::testing::TestApi;
use pm_storage::testing::TestDatabase;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use crate::app::SECRET;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn runner() -> TestRunner {
    TestRunner::new(Config {
        failure_persistence: None,
        ..Config::default()
    })
}

#[test]
fn hostile_webhooks_never_get_a_5xx_and_a_refused_one_stores_nothing() {
    let rt = runtime();
    let (db, served) = rt.block_on(async {
        let db = TestDatabase::new().await;
        let served = TestApi::new(SECRET).serve(db.pool.clone()).await;
        (db, served)
    });
    let (base, http) = (served.base.clone(), served.client());
    // Chargebacks need their order to exist to get past the 404.
    rt.block_on(async {
        for i in 0..8 {
            let body = Route::Orders.valid(&format!("seed-{i}"), &format!("ord-{i}"));
            let body = serde_json::to_vec(&body).expect("json");
            let r = hostile::Dress::valid()
                .apply(
                    http.post(format!("{base}{}", Route::Orders.path())),
                    SECRET,
                    &body,
                )
                .send()
                .await
                .expect("seed");
            assert_eq!(r.status(), 202);
        }
    });

    let case = hostile::webhook_case(8);
    runner()
        .run(&case, |case| {
            rt.block_on(hostile::check_webhook(&http, &base, SECRET, &db.pool, case))
        })
        .expect("property");
}

#[test]
fn hostile_query_strings_never_get_a_5xx() {
    let rt = runtime();
    let (_db, served) = rt.block_on(async {
        let db = TestDatabase::new().await;
        let served = TestApi::new(SECRET).serve(db.pool.clone()).await;
        (db, served)
    });
    let (base, http) = (served.base.clone(), served.client());
    runner()
        .run(&hostile::read_request(), |path| {
            rt.block_on(async {
                let url = format!("{base}{path}");
                let response = http.get(&url).send().await.expect("answer");
                let status = response.status();
                let text = response.text().await.unwrap_or_default();
                prop_assert!(!status.is_server_error(), "{status} for {url}: {text}");
                prop_assert!(
                    status.is_success() || text.contains("\"detail\""),
                    "{status} for {url} without a problem document: {text}"
                );
                Ok(())
            })
        })
        .expect("property");
}
