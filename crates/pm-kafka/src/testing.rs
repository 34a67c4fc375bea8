//! Apache Kafka for tests (feature `testing`).
//!
//! Tests run against the real broker, started by the project's own launcher
//! ([`crate::local`]): one single-node cluster per test binary, shared by its tests
//! through unique topic and group names ([`brokers`], [`unique`]), and clusters of a
//! test's own ([`Cluster`]) for tests that stop, kill or restart brokers or need a
//! SASL_SSL listener ([`ClusterOptions`]).
//! `PM_TEST_KAFKA_BROKERS` names an existing cluster instead of the shared one. Every
//! cluster lives no longer than the test process (see [`crate::local`]).

use std::sync::OnceLock;

pub use crate::local::LocalCluster as Cluster;
pub use crate::local::{ClusterOptions, SaslSsl};

/// The variable naming an existing cluster.
pub const BROKERS_VAR: &str = "PM_TEST_KAFKA_BROKERS";

static SHARED: OnceLock<Result<Shared, String>> = OnceLock::new();

enum Shared {
    Existing(String),
    Started(Cluster),
}

/// Bootstrap servers of the test binary's cluster. Panics with what is missing when there
/// is none: a Kafka test never skips silently.
pub fn brokers() -> String {
    let shared = SHARED.get_or_init(|| {
        if let Ok(b) = std::env::var(BROKERS_VAR) {
            if !b.is_empty() {
                return Ok(Shared::Existing(b));
            }
        }
        Cluster::start(1).map(Shared::Started)
    });
    match shared {
        Ok(Shared::Existing(b)) => b.clone(),
        Ok(Shared::Started(c)) => c.brokers().to_owned(),
        Err(e) => panic!("no Kafka cluster for the tests: {e}"),
    }
}

/// A unique prefix for topic and group names of one test.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}
