//! A short load against the real API (sync mode) on a fresh database, verified: nothing
//! lost, nothing doubled, and every count consistent.

use std::time::Duration;

use pm_api_types::client::ApiAccess;
use pm_lab::loadtest::check::CheckConfig;
use pm_lab::loadtest::engine::EngineConfig;
use pm_lab::loadtest::knee::SloCriteria;
use pm_lab::loadtest::lag::LagConfig;
use pm_lab::loadtest::sweep::{sweep, SweepConfig, VerifyConfig};
use pm_lab::statements::StatementProfiler;
use pm_storage::testing::TestDatabase;

use crate::support::{source, SECRET};

/// The API on a free port against `db`. Merchant actions are not performed, so its
/// provider is never called.
async fn spawn_api(db: &TestDatabase) -> pm_api::testing::ServedApi {
    pm_api::testing::TestApi::new(SECRET)
        .serve(db.pool.clone())
        .await
}

fn access(api: &pm_api::testing::ServedApi) -> ApiAccess {
    ApiAccess::new(&api.base)
        .with_key(api.key.clone().into())
        .expect("key")
}

#[tokio::test]
async fn a_verified_load_against_the_api_loses_and_doubles_nothing() {
    let db = TestDatabase::new().await;
    let api = spawn_api(&db).await;
    let config = SweepConfig {
        engine: EngineConfig {
            target: api.base.clone(),
            secret: SECRET.to_vec(),
            connections: 8,
            ..EngineConfig::default()
        },
        rates: vec![200.0, 300.0],
        warmup: Duration::from_millis(500),
        duration: Duration::from_millis(1500),
        criteria: SloCriteria::new(Duration::from_millis(50)),
        verify: Some(VerifyConfig {
            check: CheckConfig::new(access(&api)),
            lag_samples: 50,
            lag: LagConfig::new(access(&api)),
        }),
        cooldown: Duration::ZERO,
        progress: false,
        statements: Some(
            StatementProfiler::connect(db.pool.clone())
                .await
                .expect("the test cluster loads pg_stat_statements"),
        ),
    };
    let steps = sweep(&config, source("e2e1"), |_| {}).await.unwrap();
    assert_eq!(steps.len(), 2);
    for s in &steps {
        // Counts add up.
        assert_eq!(s.scheduled, (s.offered_rate * 1.5).ceil() as u64);
        assert_eq!(s.sent + s.dropped, s.scheduled);
        let failed: u64 = s.failures.values().sum();
        assert_eq!(s.completed + failed, s.sent);
        assert_eq!(s.accepted + s.rejected, s.completed);
        assert_eq!(s.statuses.values().sum::<u64>(), s.completed);
        assert_eq!(s.latency.count, s.sent);
        assert_eq!(s.dropped, 0);
        // Real webhooks accepted, bad ones rejected with their status.
        assert_eq!(s.unexpected_answers, 0, "{:?}", s.answers_by_kind);
        assert!(s.rejected > 0, "the scenario sends bad deliveries");
        // Nothing lost, nothing doubled, nothing rejected stored.
        let v = s.verify.as_ref().unwrap();
        assert!(v.ok, "{v:?}");
        assert!(v.events_expected > 0);
        assert_eq!(v.events_stored, v.events_expected);
        assert_eq!((v.missing, v.doubled, v.unexpected), (0, 0, 0));
        assert_eq!(v.orders_excluded, 0);
        assert!(v.rejected_checked > 0);
        // Sync mode: stored before the answer, so every sample is seen at once.
        let lag = s.lag.as_ref().unwrap();
        assert!(lag.samples > 0);
        assert_eq!(lag.seen, lag.samples);
        assert!(lag.applied_before_answer);
        // The database's side of the step: the webhooks' statements, with their WAL.
        let statements = s.statements.as_ref().unwrap();
        assert!(
            statements.calls > 0 && statements.wal_bytes > 0,
            "{statements:?}"
        );
        assert!(
            statements
                .top
                .iter()
                .any(|t| t.query.contains("processed_webhooks") && t.calls > 0 && t.rows > 0),
            "{statements:?}"
        );
    }
    // The two steps used different ids: the second step's events are all new.
    assert!(steps[1].verify.as_ref().unwrap().events_expected > 0);
    assert_ne!(steps[0].plans[0].id_prefix, steps[1].plans[0].id_prefix);
}
