//! Streaming replicas, measured: how stale a standby's reads are while the primary takes
//! webhooks at a steady rate, and what routing the read walks ([`crate::walks`]) to one or
//! two standbys changes (`pmctl bench replication`).
//!
//! **Staleness** is measured as a reader of a replica meets it: a heartbeat row on the
//! primary is updated every few milliseconds, each update's time noted when its commit is
//! acknowledged, and every standby is polled for the row just as often; a heartbeat's
//! staleness on a standby is the time from its acknowledgement to the first poll there that
//! saw it. That is how long after a write's answer a read from that standby may still miss
//! it — the measure the routing question needs. It includes up to one poll interval and a
//! poll's round trip, and is zero when the standby showed the row before the primary's
//! client heard of its commit (WAL is sent as soon as it is flushed, before the answer). The
//! WAL not yet replayed, in bytes (`pg_current_wal_lsn()` on the primary against the
//! standby's `pg_last_wal_replay_lsn()`), is sampled beside it: how much is in flight.
//!
//! PostgreSQL's own `pg_stat_replication.replay_lag` is not used: it is the primary's
//! estimate from the standby's feedback messages (their cadence is part of it), it cannot
//! be told apart per standby when every standby connects under the same name, and it reads
//! as null whenever the standby has caught up.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tokio::time::MissedTickBehavior;

use crate::layouts::{History, WalkSettings, Writes};
use crate::loadtest::latency::{self, ms, LatencySummary};
use crate::loadtest::report::ScenarioInfo;
use crate::machine::{CpuSample, MachineFacts};
use crate::report::{
    fmt_count, fmt_ms, fmt_services_env, fmt_walk_check, fmt_walk_mean, run_facts,
};
use crate::walks::WalkResult;
use crate::LabError;

/// The report's format; bump on incompatible changes.
pub const REPORT_FORMAT: u32 = 1;

/// How long the standbys get, after the heartbeats stop, to show the last one.
const SETTLE: Duration = Duration::from_secs(10);

/// The heartbeat: one row, its `seq` raised by every beat.
const HEARTBEAT_TABLE: &str =
    "CREATE TABLE IF NOT EXISTS bench_heartbeat (id smallint PRIMARY KEY, seq bigint NOT NULL)";

/// A standby to measure, and how reports name it.
#[derive(Debug, Clone)]
pub struct Standby {
    pub name: String,
    /// A pool of at least two connections on the database the heartbeat is written to.
    pub pool: PgPool,
}

/// How staleness is measured.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StalenessProbe {
    /// How long the heartbeats are written.
    pub seconds: f64,
    /// One heartbeat every this many milliseconds.
    pub heartbeat_ms: f64,
    /// Each standby polled for the heartbeat every this many milliseconds.
    pub poll_ms: f64,
    /// The WAL not yet replayed, sampled every this many milliseconds.
    pub bytes_ms: f64,
}

/// Percentiles of a distance in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Bytes {
    pub samples: u64,
    pub p50: u64,
    pub p99: u64,
    pub max: u64,
}

impl Bytes {
    fn of(values: &[u64]) -> Result<Bytes, LabError> {
        // Auto-resizing: a distance has no sensible upper bound.
        let mut h = Histogram::<u64>::new(3).map_err(|e| LabError::Histogram(format!("{e:?}")))?;
        for &v in values {
            h.record(v)
                .map_err(|e| LabError::Histogram(format!("{e:?}")))?;
        }
        let empty = h.is_empty();
        let at = |q: f64| if empty { 0 } else { h.value_at_quantile(q) };
        Ok(Bytes {
            samples: h.len(),
            p50: at(0.50),
            p99: at(0.99),
            max: if empty { 0 } else { h.max() },
        })
    }
}

/// One standby's staleness over the measurement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StandbyStaleness {
    pub standby: String,
    /// From a heartbeat's acknowledgement on the primary to the first poll of this standby
    /// that saw it.
    pub visible_after: LatencySummary,
    /// Heartbeats written.
    pub heartbeats: u64,
    /// Heartbeats the standby showed before the primary's acknowledgement arrived
    /// (recorded as zero).
    pub seen_before_ack: u64,
    /// Heartbeats the standby never showed within the settling time (must be 0).
    pub missing: u64,
    /// WAL written on the primary and not yet replayed here.
    pub behind_bytes: Bytes,
}

/// Makes (or resets) the heartbeat row in `primary`'s database, and waits until every
/// standby — connected to the same database — has it.
pub async fn install_heartbeat(primary: &PgPool, standbys: &[Standby]) -> Result<(), LabError> {
    sqlx::raw_sql(HEARTBEAT_TABLE).execute(primary).await?;
    sqlx::query("INSERT INTO bench_heartbeat VALUES (1, 0) ON CONFLICT (id) DO UPDATE SET seq = 0")
        .execute(primary)
        .await?;
    wait_caught_up(primary, standbys, Duration::from_secs(60)).await?;
    Ok(())
}

/// Writes heartbeats on `primary` for `probe.seconds` and watches every standby meanwhile
/// ([`install_heartbeat`] first).
pub async fn measure_staleness(
    primary: &PgPool,
    standbys: &[Standby],
    probe: &StalenessProbe,
) -> Result<Vec<StandbyStaleness>, LabError> {
    let every = |ms: f64| Duration::from_secs_f64(ms.max(0.1) / 1000.0);
    let end = Instant::now() + Duration::from_secs_f64(probe.seconds.max(0.0));
    // -1 while heartbeats are written; then the last one.
    let last = Arc::new(AtomicI64::new(-1));
    let writer = tokio::spawn(beat(
        primary.clone(),
        every(probe.heartbeat_ms),
        end,
        Arc::clone(&last),
    ));
    let mut watchers = Vec::with_capacity(standbys.len());
    for s in standbys {
        watchers.push((
            tokio::spawn(watch(
                s.pool.clone(),
                every(probe.poll_ms),
                end,
                Arc::clone(&last),
            )),
            tokio::spawn(distance(
                primary.clone(),
                s.pool.clone(),
                every(probe.bytes_ms),
                end,
            )),
        ));
    }
    // Stop the watchers even when the writer failed: they end on `last` or after SETTLE.
    let acked = writer.await?;
    if acked.is_err() {
        last.store(0, Ordering::Release);
    }
    let acked = acked?;
    let mut results = Vec::with_capacity(standbys.len());
    for (s, (seen, bytes)) in standbys.iter().zip(watchers) {
        let seen = seen.await??;
        let bytes = bytes.await??;
        results.push(staleness(&s.name, &acked, &seen, &bytes)?);
    }
    Ok(results)
}

/// Raises the heartbeat every `every` until `end`; returns when each beat's commit was
/// acknowledged (beat `n` at index `n - 1`).
async fn beat(
    primary: PgPool,
    every: Duration,
    end: Instant,
    last: Arc<AtomicI64>,
) -> Result<Vec<Instant>, LabError> {
    let mut conn = primary.acquire().await?;
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut acked = Vec::new();
    while Instant::now() < end {
        ticker.tick().await;
        let seq = acked.len() as i64 + 1;
        sqlx::query("UPDATE bench_heartbeat SET seq = $1 WHERE id = 1")
            .bind(seq)
            .execute(&mut *conn)
            .await?;
        acked.push(Instant::now());
    }
    last.store(acked.len() as i64, Ordering::Release);
    Ok(acked)
}

/// Polls a standby's heartbeat every `every`: each time it rose, to what and when it was
/// seen. Ends once the last heartbeat is seen, or `SETTLE` after `end`.
async fn watch(
    standby: PgPool,
    every: Duration,
    end: Instant,
    last: Arc<AtomicI64>,
) -> Result<Vec<(i64, Instant)>, LabError> {
    let mut conn = standby.acquire().await?;
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut seen = 0;
    let mut rises = Vec::new();
    loop {
        ticker.tick().await;
        let seq: i64 = sqlx::query_scalar("SELECT seq FROM bench_heartbeat WHERE id = 1")
            .fetch_one(&mut *conn)
            .await?;
        let at = Instant::now();
        if seq > seen {
            rises.push((seq, at));
            seen = seq;
        }
        let written = last.load(Ordering::Acquire);
        if (written >= 0 && seen >= written) || at >= end + SETTLE {
            return Ok(rises);
        }
    }
}

/// Samples how many bytes of WAL the primary has written that `standby` has not replayed,
/// every `every` until `end`. The standby is asked first, so a sample never reads negative.
async fn distance(
    primary: PgPool,
    standby: PgPool,
    every: Duration,
    end: Instant,
) -> Result<Vec<u64>, LabError> {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut samples = Vec::new();
    while Instant::now() < end {
        ticker.tick().await;
        let replayed: Option<String> = sqlx::query_scalar("SELECT pg_last_wal_replay_lsn()::text")
            .fetch_one(&standby)
            .await?;
        let Some(replayed) = replayed else { continue };
        let behind: f64 =
            sqlx::query_scalar("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::pg_lsn)::float8")
                .bind(replayed)
                .fetch_one(&primary)
                .await?;
        samples.push(behind.max(0.0) as u64);
    }
    Ok(samples)
}

/// One standby's result from the acknowledgements and what it showed when.
fn staleness(
    name: &str,
    acked: &[Instant],
    rises: &[(i64, Instant)],
    bytes: &[u64],
) -> Result<StandbyStaleness, LabError> {
    let mut h = latency::new_histogram()?;
    let (mut before_ack, mut shown) = (0, 0);
    let mut previous = 0usize;
    for &(seq, at) in rises {
        let upto = usize::try_from(seq).unwrap_or(0).min(acked.len());
        for ack in acked.iter().take(upto).skip(previous) {
            if at < *ack {
                before_ack += 1;
            }
            latency::record(&mut h, at.saturating_duration_since(*ack));
            shown += 1;
        }
        previous = previous.max(upto);
    }
    Ok(StandbyStaleness {
        standby: name.to_owned(),
        visible_after: LatencySummary::of(&h)?,
        heartbeats: acked.len() as u64,
        seen_before_ack: before_ack,
        missing: (acked.len() as u64).saturating_sub(shown),
        behind_bytes: Bytes::of(bytes)?,
    })
}

/// Waits until every standby has replayed all the WAL the primary had written when this
/// was called; returns how long that took, in seconds.
pub async fn wait_caught_up(
    primary: &PgPool,
    standbys: &[Standby],
    timeout: Duration,
) -> Result<f64, LabError> {
    let started = Instant::now();
    let target: String = sqlx::query_scalar("SELECT pg_current_wal_lsn()::text")
        .fetch_one(primary)
        .await?;
    for s in standbys {
        loop {
            let done: Option<bool> = sqlx::query_scalar(
                "SELECT pg_wal_lsn_diff(pg_last_wal_replay_lsn(), $1::pg_lsn) >= 0",
            )
            .bind(&target)
            .fetch_one(&s.pool)
            .await?;
            if done == Some(true) {
                break;
            }
            if started.elapsed() > timeout {
                return Err(LabError::Replication(format!(
                    "{} did not replay the primary's WAL up to {target} within {timeout:?}",
                    s.name
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Ok(started.elapsed().as_secs_f64())
}

/// The postmasters of the servers of a measurement, to tell their CPU apart.
#[derive(Debug, Clone, Default)]
pub struct Postmasters {
    pub primary: Option<u32>,
    pub standbys: Vec<Option<u32>>,
}

/// Cores each process used over a window (CPU seconds per second).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcessCores {
    /// This process: the load generator or the readers, and the staleness probe.
    pub bench: f64,
    /// `serve-api`.
    pub api: f64,
    /// The primary PostgreSQL server (postmaster and children).
    pub primary: f64,
    /// Each standby server, in order.
    pub standbys: Vec<f64>,
    /// The whole machine's busy cores, whoever used them.
    pub machine: f64,
}

impl ProcessCores {
    /// The cores used between two samples, `window` seconds apart (the service under test
    /// being the one whose pid the samples were taken with).
    pub fn between(
        earlier: &CpuSample,
        later: &CpuSample,
        window: f64,
        servers: &Postmasters,
    ) -> ProcessCores {
        let groups = later.since(earlier, window);
        let server = |pid: Option<u32>| pid.map_or(0.0, |p| later.server_cores(earlier, p, window));
        ProcessCores {
            bench: groups.generator,
            api: groups.service,
            primary: server(servers.primary),
            standbys: servers.standbys.iter().map(|p| server(*p)).collect(),
            machine: later.machine_cores(earlier, window),
        }
    }

    /// `0.21 / 0.95 / 0.60 / 0.05 / 0.04 / 1.9`: bench / API / primary / standbys… / machine.
    fn brief(&self) -> String {
        let mut parts = vec![self.bench, self.api, self.primary];
        parts.extend(&self.standbys);
        let mut s = parts
            .iter()
            .map(|c| format!("{c:.2}"))
            .collect::<Vec<_>>()
            .join(" / ");
        let _ = write!(s, " / {:.2}", self.machine);
        s
    }
}

/// The write load and the standbys' staleness under it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadPhase {
    /// The load-test sweep (one step at the offered rate); its full report is written
    /// beside this one.
    pub writes: Writes,
    pub probe: StalenessProbe,
    pub standbys: Vec<StandbyStaleness>,
    /// Over the staleness measurement.
    pub cores: ProcessCores,
    /// From the end of the load until every standby had replayed all of it, seconds.
    pub catch_up_seconds: f64,
}

/// The read walks with reads routed to `replicas` standbys (0: the primary).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReadPhase {
    pub replicas: usize,
    pub walk: WalkResult,
    pub cores: ProcessCores,
}

/// The whole measurement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicationReport {
    pub format: u32,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub machine: MachineFacts,
    /// Streaming standbys of the primary.
    pub standbys: usize,
    pub history: History,
    pub walk: WalkSettings,
    pub scenario: Option<ScenarioInfo>,
    /// `PM_*` settings the services ran with (secrets left out); the rest were defaults.
    #[serde(default)]
    pub services_env: std::collections::BTreeMap<String, String>,
    pub load: LoadPhase,
    pub reads: Vec<ReadPhase>,
}

impl ReplicationReport {
    /// Every standby showed every heartbeat, and every walk saw its window exactly once.
    pub fn ok(&self) -> bool {
        self.load.standbys.iter().all(|s| s.missing == 0) && self.reads.iter().all(|r| r.walk.ok())
    }
}

/// Where a phase's pages were read from: `replica 1,234 · primary 0`.
fn sources(w: &WalkResult) -> String {
    if w.read_sources.is_empty() {
        return "–".to_owned();
    }
    w.read_sources
        .iter()
        .map(|(k, v)| format!("{k} {}", fmt_count(*v)))
        .collect::<Vec<_>>()
        .join(" · ")
}

fn kib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / 1024.0)
}

/// The report for people; `svg_name` is the chart beside it.
pub fn markdown(r: &ReplicationReport, svg_name: &str) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# Streaming replicas: staleness under load, and reads routed to them — {}\n",
        r.started_at.format("%Y-%m-%d %H:%M UTC")
    );
    run_facts(&mut md, &r.machine);
    let _ = writeln!(
        md,
        "- servers: a primary and {} asynchronous streaming hot standbys of it (`pg_basebackup`), \
         all on this machine",
        r.standbys
    );
    let _ = writeln!(
        md,
        "- services: a real `pmctl serve-api` per phase, {}",
        fmt_services_env(&r.services_env, "a read pool of 4 connections per server")
    );
    let _ = writeln!(
        md,
        "\n![staleness per standby and reads per replica count]({svg_name})\n"
    );

    let load = &r.load;
    // `standby 1 / standby 2`: the cores columns, in the order of `ProcessCores::brief`.
    let standby_names = load
        .standbys
        .iter()
        .map(|s| s.standby.as_str())
        .collect::<Vec<_>>()
        .join(" / ");
    let _ = writeln!(md, "## Staleness under a steady write load\n");
    let step = load.writes.steps.first();
    let scenario = r.scenario.as_ref().map_or(String::new(), |s| {
        format!(" of scenario `{}` (seed {}),", s.name, s.seed)
    });
    let _ = writeln!(
        md,
        "Webhooks{scenario} straight to the API (sync mode): {} ([load-test report]({})). \
         Meanwhile a heartbeat row on the primary was raised every {} ms for {:.0} s and each \
         standby polled for it every {} ms; **visible after** is the time from a heartbeat's \
         acknowledgement on the primary to the first poll of the standby that showed it — how \
         long after a write's answer a read from that standby may still miss it (it includes up \
         to one poll interval and a poll's round trip). **WAL behind** is what the primary had \
         written and the standby had not replayed, sampled every {} ms.\n",
        step.map_or("no step ran".to_owned(), |s| format!(
            "{:.0}/s offered, {:.0}/s achieved, p99 {} ms{}",
            s.offered_rate,
            s.achieved_rate,
            ms(s.p99_us),
            if s.passed {
                " (within the objective)"
            } else {
                " (**missed the objective**)"
            }
        )),
        load.writes.report,
        fmt_ms(load.probe.heartbeat_ms),
        load.probe.seconds,
        fmt_ms(load.probe.poll_ms),
        fmt_ms(load.probe.bytes_ms),
    );
    let _ = writeln!(
        md,
        "| standby | visible after: p50 ms | p90 | p99 | p99.9 | max | heartbeats | shown before the ack | missing | WAL behind KiB: p50 / p99 / max |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|");
    for s in &load.standbys {
        let v = &s.visible_after;
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} / {} / {} |",
            s.standby,
            ms(v.p50_us),
            ms(v.p90_us),
            ms(v.p99_us),
            ms(v.p999_us),
            ms(v.max_us),
            fmt_count(s.heartbeats),
            fmt_count(s.seen_before_ack),
            s.missing,
            kib(s.behind_bytes.p50),
            kib(s.behind_bytes.p99),
            kib(s.behind_bytes.max),
        );
    }
    let _ = writeln!(
        md,
        "\nCores meanwhile (bench / serve-api / primary / {standby_names} / machine): {}. After \
         the load stopped, the standbys had replayed all of it within {:.2} s.\n",
        load.cores.brief(),
        load.catch_up_seconds
    );

    let _ = writeln!(md, "## Reads routed to replicas\n");
    let _ = writeln!(
        md,
        "{} Goose users for {} s per row, each paging through \
         `GET /disputes/events?time_from=…&time_to=…&limit={}` over the last {} day(s) of the \
         history ({} order and {} dispute events over {} days), with serve-api given {} of the \
         standbys as `--database-replica-url`. \"Read from\" counts the pages by the \
         `PM-Read-Source` header the API answered with.\n",
        r.walk.users,
        r.walk.seconds,
        r.walk.page_size,
        r.walk
            .windows_days
            .first()
            .map_or("?".to_owned(), u32::to_string),
        fmt_count(r.history.rows),
        fmt_count(r.history.rows),
        r.history.days,
        r.reads
            .iter()
            .map(|p| p.replicas.to_string())
            .collect::<Vec<_>>()
            .join(", then "),
    );
    let _ = writeln!(
        md,
        "| replicas | pages/s | page p50 ms | p99 | complete walks (mean ms) | read from | cores: readers / API / primary / {standby_names} / machine | checked |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|");
    for p in &r.reads {
        let w = &p.walk;
        let _ = writeln!(
            md,
            "| {} | {:.0} | {} | {} | {} ({}) | {} | {} | {} |",
            p.replicas,
            w.pages_per_second,
            ms(w.pages.p50_us),
            ms(w.pages.p99_us),
            fmt_count(w.walks.count),
            fmt_walk_mean(w),
            sources(w),
            p.cores.brief(),
            fmt_walk_check(w),
        );
    }
    let _ = writeln!(
        md,
        "\nThe cores are each process's CPU over the walks: this process (the readers), \
         serve-api, and each PostgreSQL server with all its processes; \"machine\" is the \
         whole machine's, so what it exceeds their sum by was someone else's."
    );
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heartbeat_is_as_stale_as_the_time_from_its_ack_to_the_poll_that_saw_it() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // Beats acknowledged at 0, 10, 20, 30 ms; the standby showed 2 at 15 ms (beats 1
        // and 2), 3 at 19 ms (before its ack at 20), and never 4.
        let acked = [at(0), at(10), at(20), at(30)];
        let rises = [(2, at(15)), (3, at(19))];
        let s = staleness("standby 1", &acked, &rises, &[10, 20, 4000]).expect("summary");
        assert_eq!(s.heartbeats, 4);
        assert_eq!(s.visible_after.count, 3);
        assert_eq!(s.missing, 1);
        assert_eq!(s.seen_before_ack, 1);
        let close = |got: u64, want: u64| got.abs_diff(want) <= want / 100 + 1;
        assert!(
            close(s.visible_after.max_us, 15_000),
            "{:?}",
            s.visible_after
        );
        assert_eq!(
            s.visible_after.min_us, 1,
            "seen before the ack counts as zero"
        );
        assert_eq!(s.behind_bytes.samples, 3);
        assert!(close(s.behind_bytes.max, 4000), "{:?}", s.behind_bytes);
        assert!(s.behind_bytes.p50 >= 10 && s.behind_bytes.p50 <= 21);
    }

    fn report(missing: u64) -> ReplicationReport {
        let until = DateTime::parse_from_rfc3339("2026-12-01T00:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        let t0 = Instant::now();
        let acked: Vec<Instant> = (0..10)
            .map(|i| t0 + Duration::from_millis(i * 10))
            .collect();
        let shown = 10 - i64::try_from(missing).expect("few");
        let standby = |name: &str| {
            staleness(
                name,
                &acked,
                &[(shown, t0 + Duration::from_millis(120))],
                &[2048],
            )
            .expect("summary")
        };
        let timing = crate::walks::Timing {
            count: 100,
            mean_us: 9_000.0,
            p50_us: 8_000,
            p90_us: 12_000,
            p99_us: 20_000,
            max_us: 30_000,
        };
        let read = |replicas: usize| ReadPhase {
            replicas,
            walk: WalkResult {
                window_days: 1,
                users: 8,
                seconds: 20.0,
                page_size: 1000,
                rows_in_window: 10_000,
                pages: timing,
                pages_per_second: 300.0,
                failed_pages: 0,
                walks: timing,
                pages_per_walk: 10,
                inconsistent_walks: 0,
                cores: None,
                read_sources: [(if replicas == 0 { "unnamed" } else { "replica" }, 101)]
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v))
                    .collect(),
            },
            cores: ProcessCores {
                standbys: vec![0.1, 0.0],
                ..ProcessCores::default()
            },
        };
        ReplicationReport {
            format: REPORT_FORMAT,
            started_at: until,
            finished_at: until,
            machine: MachineFacts::default(),
            standbys: 2,
            history: History {
                days: 10,
                rows: 100_000,
                until,
            },
            walk: WalkSettings {
                users: 8,
                seconds: 20,
                page_size: 1000,
                windows_days: vec![1],
            },
            scenario: None,
            services_env: Default::default(),
            load: LoadPhase {
                writes: Writes {
                    report: "loadtest-x.md".to_owned(),
                    knee: None,
                    steps: Vec::new(),
                },
                probe: StalenessProbe {
                    seconds: 0.1,
                    heartbeat_ms: 10.0,
                    poll_ms: 5.0,
                    bytes_ms: 100.0,
                },
                standbys: vec![standby("standby 1"), standby("standby 2")],
                cores: ProcessCores::default(),
                catch_up_seconds: 0.5,
            },
            reads: (0..=2).map(read).collect(),
        }
    }

    #[test]
    fn the_report_shows_each_standby_and_each_replica_count_and_is_written() {
        let r = report(0);
        assert!(r.ok());
        assert!(!report(1).ok(), "a missing heartbeat fails the run");
        let md = markdown(&r, "chart.svg");
        let standbys: Vec<&str> = md
            .lines()
            .filter(|l| l.starts_with("| standby ") && !l.contains("visible after"))
            .collect();
        assert_eq!(standbys.len(), 2, "{md}");
        assert!(standbys[0].ends_with("| 2.0 / 2.0 / 2.0 |"), "{md}");
        let reads: Vec<&str> = md
            .lines()
            .filter(|l| l.starts_with("| 0 |") || l.starts_with("| 1 |") || l.starts_with("| 2 |"))
            .collect();
        assert_eq!(reads.len(), 3, "{md}");
        assert!(
            reads[1].contains("replica 101") && reads[1].ends_with("✓ |"),
            "{md}"
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let written = crate::report::write_replication(dir.path(), &r).expect("written");
        let svg = std::fs::read_to_string(written.svg).expect("svg");
        assert!(svg.contains("<svg"), "{svg}");
    }

    #[test]
    fn nothing_shown_means_everything_missing() {
        let acked = [Instant::now()];
        let s = staleness("standby", &acked, &[], &[]).expect("summary");
        assert_eq!((s.missing, s.visible_after.count), (1, 0));
        assert_eq!(s.behind_bytes, Bytes::default());
    }
}
