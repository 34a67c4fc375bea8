//! A run: one step per offered rate, each with its own fresh traffic, optionally verified
//! against the database, then the knee.

use std::sync::Arc;
use std::time::Duration;

use pm_scenario::{DeliveryKind, Expect, Route};
use tokio_util::sync::CancellationToken;

use crate::loadtest::check::{self, CheckConfig};
use crate::loadtest::engine::{self, EngineConfig, LagTap, Live};
use crate::loadtest::expect;
use crate::loadtest::knee::SloCriteria;
use crate::loadtest::lag::{self, LagConfig};
use crate::loadtest::progress::StepProgress;
use crate::loadtest::report::{LagReport, StepReport};
use crate::loadtest::schedule::Schedule;
use crate::loadtest::traffic::TrafficSource;
use crate::statements::StatementProfiler;
use crate::LabError;

/// Verification after each step, and the lag measurement during it.
#[derive(Debug, Clone)]
pub struct VerifyConfig {
    /// How to compare with the database.
    pub check: CheckConfig,
    /// Most accepted webhooks sampled for the lag per step (0: no lag measurement); fewer
    /// when the poll budget (10 % of the offered rate) cannot afford them.
    pub lag_samples: usize,
    /// How to poll for them.
    pub lag: LagConfig,
}

/// The settings of a run.
#[derive(Debug, Clone)]
pub struct SweepConfig {
    /// How requests are sent.
    pub engine: EngineConfig,
    /// Offered rates, one step each, in this order.
    pub rates: Vec<f64>,
    /// Warm-up of each step.
    pub warmup: Duration,
    /// Measured duration of each step.
    pub duration: Duration,
    /// The objective each step is judged by.
    pub criteria: SloCriteria,
    /// Verification, when asked for.
    pub verify: Option<VerifyConfig>,
    /// Pause between steps (lets queues drain).
    pub cooldown: Duration,
    /// Draw progress bars.
    pub progress: bool,
    /// Reset before each step and read after it (before verification): where the
    /// database spent its time.
    pub statements: Option<StatementProfiler>,
}

/// Statements kept per step in the report.
const TOP_STATEMENTS: usize = 8;

/// Runs every step; `on_step` sees each result as soon as it is there.
pub async fn sweep(
    config: &SweepConfig,
    mut source: TrafficSource,
    mut on_step: impl FnMut(&StepReport),
) -> Result<Vec<StepReport>, LabError> {
    if config.rates.is_empty() {
        return Err(LabError::Invalid("no rate to run".to_owned()));
    }
    let mut steps = Vec::new();
    for (index, &rate) in config.rates.iter().enumerate() {
        if index > 0 && !config.cooldown.is_zero() {
            tokio::time::sleep(config.cooldown).await;
        }
        let (back, step) = run_step(config, source, index, rate).await?;
        source = back;
        on_step(&step);
        steps.push(step);
    }
    Ok(steps)
}

/// One step: traffic, the engine (with the lag poller), verification.
async fn run_step(
    config: &SweepConfig,
    mut source: TrafficSource,
    index: usize,
    rate: f64,
) -> Result<(TrafficSource, StepReport), LabError> {
    let schedule = Schedule::new(rate, config.warmup, config.duration)?;
    let total = schedule.total();
    let (source, traffic) = tokio::task::spawn_blocking(move || {
        let traffic = source.traffic(index, total);
        (source, traffic)
    })
    .await?;
    let traffic = traffic?;
    let deliveries = Arc::new(traffic.deliveries);

    let lag = config
        .verify
        .as_ref()
        .filter(|v| v.lag_samples > 0)
        .map(|v| {
            let candidates: Vec<usize> = (schedule.warmup_count() as usize..total as usize)
                .filter(|&i| {
                    let d = &deliveries[i];
                    d.route == Route::Orders
                        && d.kind == DeliveryKind::Original
                        && d.expect == Expect::Accepted
                })
                .collect();
            // The poll budget, and samples it can afford at about ten polls each.
            let budget = (rate * 0.1).max(20.0);
            let affordable = (budget * config.duration.as_secs_f64() / 10.0) as usize;
            let samples = v.lag_samples.min(affordable.max(1));
            let sampled = lag::pick_samples(&candidates, samples, deliveries.len());
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            let stop = CancellationToken::new();
            let lag_config = LagConfig {
                max_polls_per_sec: budget,
                ..v.lag.clone()
            };
            let task = tokio::spawn(lag::poll(lag_config, rx, stop.clone()));
            let tap = LagTap {
                sampled: Arc::new(sampled),
                tx,
            };
            (tap, task, stop)
        });
    let (tap, lag_task) = match lag {
        Some((tap, task, stop)) => (Some(tap), Some((task, stop))),
        None => (None, None),
    };

    let live = Arc::new(Live::default());
    let progress = StepProgress::start(
        live.clone(),
        schedule,
        format!("{rate:.0}/s"),
        config.progress,
    );
    if let Some(profiler) = &config.statements {
        profiler.reset().await?;
    }
    let (cpu_before, wall) = (
        crate::machine::process_cpu_time(),
        std::time::Instant::now(),
    );
    let run = engine::run_step(&config.engine, schedule, deliveries.clone(), live, tap).await;
    let cpu = crate::machine::process_cpu_time()
        .zip(cpu_before)
        .map(|(after, before)| after.saturating_sub(before).as_secs_f64());
    let wall = wall.elapsed().as_secs_f64();
    progress.finish().await;
    let run = run?;
    let statements = match &config.statements {
        Some(profiler) => Some(profiler.profile(TOP_STATEMENTS).await?),
        None => None,
    };

    let by_kind = expect::answers_by_kind(&deliveries[..total as usize], &run.answers);
    let mut step = StepReport::of(&run, &config.criteria, by_kind, traffic.plans)?;
    // The whole process: in tests the server under load may share it.
    step.generator_cpu_cores = cpu.filter(|_| wall > 0.0).map(|c| c / wall);
    step.statements = statements;
    if let Some(v) = &config.verify {
        let scenario = source.scenario();
        let label = step
            .plans
            .first()
            .map_or_else(String::new, |p| p.id_prefix.clone());
        let expectation = expect::expected(
            scenario.name(),
            scenario.seed(),
            &label,
            &deliveries[..total as usize],
            &run.answers,
        );
        step.verify = Some(check::check(&v.check, &expectation).await?);
    }
    if let Some((mut task, stop)) = lag_task {
        // Processing is over (verification waited for it); give stragglers a moment.
        let finished = tokio::select! {
            r = &mut task => Some(r),
            () = tokio::time::sleep(Duration::from_secs(5)) => None,
        };
        let result = match finished {
            Some(r) => r,
            None => {
                stop.cancel();
                task.await
            }
        };
        step.lag = Some(LagReport::of(&result??)?);
    }
    Ok((source, step))
}
