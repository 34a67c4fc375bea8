//! The physical limits of this machine, measured in the same run as the benchmarks they are
//! a reference for: how many webhooks per second a server that only verifies and parses can
//! take ([`BareServer`] driven by an open-loop generator, ramped until it no longer keeps
//! up), and how many single-row transactions per second PostgreSQL commits at the same
//! concurrency ([`commit_rate`]). The service's rates are meant to be read as fractions of
//! these.

mod commits;
mod server;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use pm_scenario::{Delivery, DeliveryKind, Expect, Route, Signing};
use serde::{Deserialize, Serialize};

pub use commits::{commit_rate, CommitRate};
pub use server::{BareServer, ORDERS_PATH};

use crate::loadtest::engine::{self, EngineConfig};
use crate::loadtest::knee::SloCriteria;
use crate::loadtest::report::StepReport;
use crate::loadtest::schedule::Schedule;
use crate::machine::MachineFacts;
use crate::LabError;

/// The signing secret of the generated traffic (the server and the generator share it).
const SECRET: &[u8] = b"whsec_baseline";
/// Distinct bodies cycled through (different ids, so nothing can cache a parse).
const BODIES: usize = 256;
/// Each ramp step offers this much more than the last.
const RAMP_FACTOR: f64 = 1.5;
/// Full-length runs tried, each 10 % below the last, after the ramp's best rate failed its own.
const CONFIRMATION_RETRIES: usize = 3;
const CONFIRMATION_STEP_DOWN: f64 = 0.9;

/// Halvings of the gap between the last sustained and the first failed rate.
const REFINEMENTS: u32 = 2;

/// How to measure.
#[derive(Debug, Clone)]
pub struct BaselineOptions {
    /// Length of the final HTTP run at the rate found, and of the commit-rate run.
    pub duration: Duration,
    /// Concurrent HTTP connections and PostgreSQL sessions.
    pub connections: u32,
    /// Length of each ramp step.
    pub step_duration: Duration,
    /// A step whose p99 exceeds this is not sustained (the load test's objective: see
    /// [`crate::loadtest::knee`]).
    pub p99_limit: Duration,
    /// The first ramp step's rate (requests per second).
    pub start_rate: f64,
    /// The ramp stops here even if the server keeps up.
    pub max_rate: f64,
    /// The command line, recorded in the report.
    pub command_line: String,
    /// The source revision of the binary, recorded in the report.
    pub revision: String,
}

impl Default for BaselineOptions {
    fn default() -> Self {
        Self {
            duration: Duration::from_secs(10),
            connections: 32,
            step_duration: Duration::from_secs(3),
            p99_limit: Duration::from_millis(50),
            start_rate: 1_000.0,
            max_rate: 200_000.0,
            command_line: String::new(),
            revision: String::new(),
        }
    }
}

/// The whole result, as written to `baseline-<timestamp>.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BaselineReport {
    pub started_at: DateTime<Utc>,
    pub machine: MachineFacts,
    pub http: HttpBaseline,
    /// Absent when no database was measured.
    pub postgres: Option<CommitRate>,
}

/// The bare server's capacity, measured by the load test's engine and judged by its
/// objective: a step is sustained when its verdict passed ([`StepReport::slo`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HttpBaseline {
    pub connections: u32,
    pub p99_limit_ms: f64,
    /// The ramp, in the order run.
    pub steps: Vec<StepReport>,
    /// The highest offered rate a full-length run (`duration`) sustained: the ramp's best,
    /// stepped down until its confirmation held (0 if none did).
    pub max_sustainable_rps: f64,
    /// The full-length run at that rate (the last one tried, when none held).
    pub confirmation: StepReport,
}

/// Runs both baselines: HTTP always, PostgreSQL when `database_url` is given. `progress`
/// hears a line per step.
pub async fn run(
    database_url: Option<&str>,
    opts: &BaselineOptions,
    progress: &(dyn Fn(&str) + Send + Sync),
) -> Result<BaselineReport, LabError> {
    let started_at = Utc::now();
    let machine = match database_url {
        Some(url) => {
            let pool = pm_storage::connect(url, &pm_storage::PoolOptions::default())?;
            let facts =
                MachineFacts::collect(Some(&pool), &opts.command_line, &opts.revision).await?;
            pool.close().await;
            facts
        }
        None => MachineFacts::collect(None, &opts.command_line, &opts.revision).await?,
    };
    let http = http(opts, progress).await?;
    let postgres = match database_url {
        Some(url) => {
            progress(&format!(
                "PostgreSQL single-row commits, {} sessions, {:?}",
                opts.connections, opts.duration
            ));
            Some(commit_rate(url, opts.connections, opts.duration).await?)
        }
        None => None,
    };
    Ok(BaselineReport {
        started_at,
        machine,
        http,
        postgres,
    })
}

/// Ramps the offered rate up until the bare server no longer sustains it, refines between
/// the last good and the first bad rate, and confirms the result with a longer run.
pub async fn http(
    opts: &BaselineOptions,
    progress: &(dyn Fn(&str) + Send + Sync),
) -> Result<HttpBaseline, LabError> {
    let server = BareServer::start(SECRET).await?;
    let config = EngineConfig {
        target: server.base_url(),
        secret: SECRET.to_vec(),
        connections: usize::try_from(opts.connections)
            .map_err(|_| LabError::Invalid("--connections is too large".into()))?,
        ..EngineConfig::default()
    };
    let criteria = SloCriteria::new(opts.p99_limit);
    let step = |rate: f64, duration: Duration| {
        let (config, criteria) = (&config, &criteria);
        async move {
            progress(&format!(
                "HTTP: offering {rate:.0} requests/s for {duration:?}"
            ));
            http_step(config, criteria, rate, duration).await
        }
    };

    let mut steps = Vec::new();
    let mut good: Option<f64> = None;
    let mut bad: Option<f64> = None;
    let mut rate = opts.start_rate;
    while rate <= opts.max_rate {
        let result = step(rate, opts.step_duration).await?;
        let sustained = result.slo.passed;
        steps.push(result);
        if !sustained {
            bad = Some(rate);
            break;
        }
        good = Some(rate);
        rate *= RAMP_FACTOR;
    }
    if let (Some(mut lo), Some(mut hi)) = (good, bad) {
        for _ in 0..REFINEMENTS {
            let mid = (lo + hi) / 2.0;
            let result = step(mid, opts.step_duration).await?;
            if result.slo.passed {
                lo = mid;
            } else {
                hi = mid;
            }
            steps.push(result);
        }
        good = Some(lo);
    }
    // Sustained means a full-length run sustained it: short ramp steps flatter a rate that
    // a longer run cannot hold, so an unconfirmed rate is stepped down and tried again.
    let mut candidate = good.unwrap_or(opts.start_rate);
    let mut confirmation = step(candidate, opts.duration).await?;
    for _ in 0..CONFIRMATION_RETRIES {
        if confirmation.slo.passed || good.is_none() {
            break;
        }
        progress(&format!(
            "HTTP: {candidate:.0} requests/s not sustained for {:?}; trying {:.0}",
            opts.duration,
            candidate * CONFIRMATION_STEP_DOWN
        ));
        steps.push(confirmation);
        candidate *= CONFIRMATION_STEP_DOWN;
        confirmation = step(candidate, opts.duration).await?;
    }
    let max_sustainable_rps = if confirmation.slo.passed {
        candidate
    } else {
        0.0
    };
    server.stop().await;
    Ok(HttpBaseline {
        connections: opts.connections,
        p99_limit_ms: opts.p99_limit.as_secs_f64() * 1000.0,
        steps,
        max_sustainable_rps,
        confirmation,
    })
}

/// `count` distinct valid order webhook bodies.
fn order_bodies(count: usize) -> Vec<Vec<u8>> {
    let stamp = Utc::now().format("%Y-%m-%dT%H:%M:%SZ");
    (0..count)
        .map(|i| {
            format!(
                r#"{{"provider_event_id":"evt_baseline_{i}","order_id":"ord_baseline_{i}","user_id":"0b6f5c3e-8d1a-4c7e-9a51-{i:012x}","status":"created","created_at":"{stamp}","updated_at":"{stamp}","meta":{{"source":"baseline"}}}}"#
            )
            .into_bytes()
        })
        .collect()
}

/// `count` valid order webhooks, each with its `Webhook-Signature` for now.
pub fn signed_bodies(secret: &[u8], count: usize) -> Vec<(Bytes, String)> {
    let t = Utc::now().timestamp();
    order_bodies(count)
        .into_iter()
        .map(|body| {
            let header = pm_domain::signature::header_value(secret, t, &body);
            (Bytes::from(body), header)
        })
        .collect()
}

/// One step: the load test's engine offers `rate` order webhooks per second for `duration`
/// (each signed when it is sent, as the load test does), and the step is judged by the load
/// test's objective.
async fn http_step(
    config: &EngineConfig,
    criteria: &SloCriteria,
    rate: f64,
    duration: Duration,
) -> Result<StepReport, LabError> {
    let schedule = Schedule::new(rate, Duration::ZERO, duration)?;
    let deliveries = Arc::new(order_deliveries(schedule.total())?);
    let run = engine::run_step(config, schedule, deliveries, Arc::default(), None).await?;
    StepReport::of(&run, criteria, BTreeMap::new(), Vec::new())
}

/// `count` order webhooks, cycling through [`BODIES`] distinct ones.
fn order_deliveries(count: u64) -> Result<Vec<Delivery>, LabError> {
    let bodies = order_bodies(BODIES);
    let order_id =
        pm_domain::OrderId::parse("ord_baseline").map_err(|e| LabError::Invalid(e.to_string()))?;
    Ok((0..count)
        .map(|k| Delivery {
            at_ms: 0,
            route: Route::Orders,
            body: bodies[(k % BODIES as u64) as usize].clone(),
            signing: Signing::Valid,
            provider_event_id: None,
            order_id: order_id.clone(),
            kind: DeliveryKind::Original,
            expect: Expect::Accepted,
            displaced: None,
            depends_on: None,
            wait_for_action: None,
        })
        .collect())
}
