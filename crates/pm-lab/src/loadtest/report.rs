//! The result of a run, as data (the JSON result file) and as things for people: a
//! terminal table, a Markdown report and an SVG chart, and a comparison with an earlier
//! result.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::loadtest::check::VerifySummary;
use crate::loadtest::engine::StepRun;
use crate::loadtest::knee::{self, SloCriteria, SloVerdict};
use crate::loadtest::lag::LagRun;
use crate::loadtest::latency::LatencySummary;
use crate::loadtest::traffic::PlanUse;
use crate::LabError;

mod baseline;
mod chart;
mod compare;
mod files;
mod markdown;
mod table;

pub use baseline::{find_baseline, Baseline};
pub use chart::svg_chart;
pub use compare::{compare, Comparison, ComparisonRow};
pub use files::{read_report, write_reports, Written};
pub use markdown::markdown;
pub use table::{baseline_table, summary_table};

/// The version of the result file's format; [`read_report`] refuses others.
pub const REPORT_FORMAT: u32 = 1;

/// A whole run: one step per offered rate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    /// Always [`REPORT_FORMAT`].
    pub format: u32,
    /// `pmctl loadtest`.
    pub tool: String,
    /// The run's id, part of every id prefix it used.
    pub run_id: String,
    /// When the run started and finished (RFC 3339, UTC).
    pub started_at: String,
    /// When it finished.
    pub finished_at: String,
    /// The command line, secrets replaced by `***`.
    pub command_line: Vec<String>,
    /// The source revision the binary was built from (`-dirty` from an uncommitted tree).
    pub git_revision: Option<String>,
    /// The machine that generated the load, and the database's facts when the run was given
    /// one.
    pub machine: crate::machine::MachineFacts,
    /// The scenario the traffic came from.
    pub scenario: ScenarioInfo,
    /// Where the webhooks went.
    pub target: String,
    /// The API read for verification and lag, when used.
    pub api_url: Option<String>,
    /// How the run was made.
    pub settings: Settings,
    /// One per offered rate, in the order run.
    pub steps: Vec<StepReport>,
    /// The highest offered rate that met the objective.
    pub knee: Option<Knee>,
    /// Reference rates of this machine (`pmctl bench baseline`), when found.
    #[serde(default)]
    pub baseline: Option<Baseline>,
    /// Why the steps have no statement statistics although the run was given the database.
    #[serde(default)]
    pub statements_unavailable: Option<String>,
    /// The Kafka cluster the services used (kafka mode), when the run was told of it.
    #[serde(default)]
    pub kafka: Option<BrokerFacts>,
}

/// The Kafka cluster behind a run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerFacts {
    /// The bootstrap list.
    pub brokers: String,
    /// Brokers in the cluster's metadata (`None`: it did not answer).
    pub broker_count: Option<usize>,
    /// The Apache Kafka release, read from the broker process's jars (local brokers only:
    /// the protocol does not tell clients).
    pub release: Option<String>,
}

impl BrokerFacts {
    /// `Apache Kafka 4.1.1, 1 broker at 127.0.0.1:9092`.
    pub fn describe(&self) -> String {
        format!(
            "Apache Kafka {}, {} at {}",
            self.release
                .as_deref()
                .unwrap_or("(release unknown: not a local broker)"),
            self.broker_count
                .map_or("brokers not reached".to_owned(), |n| {
                    format!("{n} broker{}", if n == 1 { "" } else { "s" })
                }),
            self.brokers
        )
    }
}

/// The scenario of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScenarioInfo {
    /// Its name.
    pub name: String,
    /// Its seed (plan `k` of the run used `seed + k`).
    pub seed: u64,
    /// The file it was read from (`None`: built in).
    pub file: Option<String>,
    /// Whether its bad deliveries were sent too.
    pub keep_faults: bool,
    /// SHA-256 of the scenario's text, hex: the file may change under its name.
    #[serde(default)]
    pub sha256: Option<String>,
}

impl ScenarioInfo {
    /// The hash to record for a scenario's text.
    pub fn hash(text: &str) -> String {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(text.as_bytes()))
    }
}

/// The settings of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// Workers, each with one connection.
    pub connections: usize,
    /// Warm-up per step, milliseconds.
    pub warmup_ms: u64,
    /// Measured duration per step, milliseconds.
    pub duration_ms: u64,
    /// The p99 objective, milliseconds.
    pub slo_p99_ms: f64,
    /// Timeout of one request, milliseconds.
    pub request_timeout_ms: u64,
    /// Later than this after the intended time is late, milliseconds.
    pub late_after_ms: u64,
    /// Later than this is dropped, milliseconds.
    pub give_up_after_ms: u64,
    /// Whether each step was verified against the database.
    pub verify: bool,
    /// Lag samples per step (0: lag not measured).
    pub lag_samples: usize,
}

/// The knee of a sweep.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Knee {
    /// Offered rate of the step.
    pub offered_rate: f64,
    /// What it achieved.
    pub achieved_rate: f64,
    /// Its p99, microseconds.
    pub p99_us: u64,
}

/// The lag measurement of a step.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LagReport {
    /// Accepted webhooks sampled.
    pub samples: u64,
    /// Seen in the database.
    pub seen: u64,
    /// Never seen before the poller stopped.
    pub unseen: u64,
    /// Seen by the first poll (stored before the answer: sync mode).
    pub seen_on_first_poll: u64,
    /// Polls made.
    pub polls: u64,
    /// Polls that failed.
    pub poll_errors: u64,
    /// Every sample was stored before it was answered: the lag is zero by construction and
    /// the numbers only measure the poll.
    pub applied_before_answer: bool,
    /// Lags, from acceptance to visibility.
    pub latency: LatencySummary,
}

impl LagReport {
    /// Summarizes a poller's run.
    pub fn of(run: &LagRun) -> Result<Self, LabError> {
        Ok(LagReport {
            samples: run.samples,
            seen: run.seen,
            unseen: run.unseen,
            seen_on_first_poll: run.seen_on_first_poll,
            polls: run.polls,
            poll_errors: run.poll_errors,
            applied_before_answer: run.seen > 0 && run.seen_on_first_poll == run.seen,
            latency: LatencySummary::of(&run.histogram)?,
        })
    }
}

/// One step: the offered rate, what happened, latencies, lag and verification.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StepReport {
    /// Requests per second offered (the schedule).
    pub offered_rate: f64,
    /// Measured requests answered per second, from the start of the measured period to
    /// the last answer.
    pub achieved_rate: f64,
    /// That period, in seconds.
    pub measured_seconds: f64,
    /// Measured requests in the schedule.
    pub scheduled: u64,
    /// Sent (answered or failed).
    pub sent: u64,
    /// Answered.
    pub completed: u64,
    /// Answered `200` or `202`.
    pub accepted: u64,
    /// Answered with another status.
    pub rejected: u64,
    /// First answers by status.
    pub statuses: BTreeMap<String, u64>,
    /// Sent without an answer, by why.
    pub failures: BTreeMap<String, u64>,
    /// Not sent: no worker could start them in time.
    pub dropped: u64,
    /// Started late (still sent, latency includes the wait).
    pub late: u64,
    /// Chargebacks answered 404 and retried in the background.
    pub retried: u64,
    /// Retry requests.
    pub retries: u64,
    /// Final answers other than the scenario expects.
    pub unexpected_answers: u64,
    /// Warm-up requests sent (not measured).
    pub warmup_sent: u64,
    /// CPU the load generator itself used during the step, in cores (1.0 = one core busy
    /// the whole time); when it nears the machine's cores, the generator is the limit.
    #[serde(default)]
    pub generator_cpu_cores: Option<f64>,
    /// Latency from the intended send time.
    pub latency: LatencySummary,
    /// End-to-end lag, when measured.
    pub lag: Option<LagReport>,
    /// Verification, when asked for.
    pub verify: Option<VerifySummary>,
    /// Where the database spent its time during the step (warm-up included), from
    /// `pg_stat_statements`, when the run was given the database.
    #[serde(default)]
    pub statements: Option<crate::statements::StatementProfile>,
    /// Whether the step met the objective.
    pub slo: SloVerdict,
    /// Final answers of every request of the step (warm-up included) by kind, e.g.
    /// `"duplicate 200"`.
    pub answers_by_kind: BTreeMap<String, u64>,
    /// The plans the traffic came from.
    pub plans: Vec<PlanUse>,
}

impl StepReport {
    /// Summarizes a step's run.
    pub fn of(
        run: &StepRun,
        criteria: &SloCriteria,
        answers_by_kind: BTreeMap<String, u64>,
        plans: Vec<PlanUse>,
    ) -> Result<Self, LabError> {
        let c = &run.counters;
        let mut step = StepReport {
            offered_rate: run.schedule.rate(),
            achieved_rate: run.achieved_rate(),
            measured_seconds: run.measured_elapsed.as_secs_f64(),
            scheduled: c.scheduled,
            sent: c.sent,
            completed: c.completed,
            accepted: c.accepted(),
            rejected: c.rejected(),
            statuses: c
                .statuses
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            failures: c
                .failures
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), *v))
                .collect(),
            dropped: c.dropped,
            late: c.late,
            retried: c.retried,
            retries: c.retries,
            unexpected_answers: c.unexpected,
            warmup_sent: run.warmup_sent,
            generator_cpu_cores: None,
            latency: LatencySummary::of(&run.latency)?,
            lag: None,
            verify: None,
            statements: None,
            slo: SloVerdict::default(),
            answers_by_kind,
            plans,
        };
        step.slo = knee::verdict(&step, criteria);
        Ok(step)
    }

    /// Requests without an answer or answered with a 5xx.
    pub fn errors(&self) -> u64 {
        let server = self
            .statuses
            .iter()
            .filter(|(s, _)| s.starts_with('5'))
            .map(|(_, n)| n)
            .sum::<u64>();
        server + self.failures.values().sum::<u64>()
    }

    /// Rejections by status, e.g. `401: 3, 422: 5`, and failures (empty when none). The
    /// chargebacks answered 404 are retried; how many were is said too.
    pub fn rejected_by_status(&self) -> String {
        self.statuses
            .iter()
            .filter(|(s, _)| s.as_str() != "200" && s.as_str() != "202")
            .map(|(s, n)| match s.as_str() {
                "404" if self.retried > 0 => format!("{s}: {n} (retried: {})", self.retried),
                _ => format!("{s}: {n}"),
            })
            .chain(self.failures.iter().map(|(f, n)| format!("{f}: {n}")))
            .collect::<Vec<_>>()
            .join(", ")
    }
}
