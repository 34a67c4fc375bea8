//! Read walks: the original project's read benchmark. Virtual users page through
//! `GET /disputes/events` over a time window, one cursor page after the other until the
//! window is exhausted, then start over — for a fixed time.
//!
//! This is a **closed** model, unlike the webhook load generator ([`crate::loadtest`]): each
//! user waits for a page before asking for the next, as a person (or a report job) paging
//! through data does, so the request rate is an outcome, not an input. [Goose] runs the
//! users and times the pages (one Goose transaction and request each: Goose lets a running
//! transaction finish before a user stops, so a transaction must stay short for the run to
//! end on time); each user's walk — its cursor, rows and start — lives in the user's
//! session, and a walk is timed from its first page to its last. A walk cut short by the end
//! of the run is not counted.
//!
//! Every complete walk is checked: the window is fixed when the experiment starts (it ends
//! at [`WalkConfig::until`], not at "now"), so each walk must see exactly the rows the
//! caller counted in it — a walk that skips or repeats a row fails the experiment.
//!
//! [Goose]: https://book.goose.rs

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use goose::config::GooseConfiguration;
use goose::goose::{GooseMethod, GooseRequest, TransactionFunction};
use goose::metrics::GooseRequestMetricTimingData;
use goose::prelude::*;
use serde::{Deserialize, Serialize};

use crate::LabError;

/// What to walk, and with how many users for how long.
#[derive(Debug, Clone)]
pub struct WalkConfig {
    /// The API's base URL (`http://127.0.0.1:3000`).
    pub api_url: String,
    /// A key with scope `read`, sent as `Authorization: Bearer …`.
    pub api_key: String,
    /// Concurrent virtual users.
    pub users: usize,
    /// How long the users walk (whole seconds: Goose's resolution).
    pub duration: Duration,
    /// `limit` of each page.
    pub page_size: u32,
    /// The end of every window: fixed, so that every walk reads the same rows.
    pub until: DateTime<Utc>,
}

/// A distribution of times, in microseconds (Goose's buckets: exact below 100 ms, coarser
/// above).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Timing {
    pub count: u64,
    pub mean_us: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

impl Timing {
    /// Exact percentiles of a few samples (nearest rank).
    fn of_samples(mut micros: Vec<u64>) -> Timing {
        micros.sort_unstable();
        let count = micros.len() as u64;
        let rank = |p: f64| {
            let i = ((p * micros.len() as f64).ceil() as usize).clamp(1, micros.len().max(1));
            micros.get(i - 1).copied().unwrap_or(0)
        };
        Timing {
            count,
            mean_us: if count == 0 {
                0.0
            } else {
                micros.iter().sum::<u64>() as f64 / count as f64
            },
            p50_us: rank(0.50),
            p90_us: rank(0.90),
            p99_us: rank(0.99),
            max_us: micros.last().copied().unwrap_or(0),
        }
    }

    fn of(data: &GooseRequestMetricTimingData) -> Timing {
        let count = data.counter as u64;
        Timing {
            count,
            mean_us: if count == 0 {
                0.0
            } else {
                data.total_time_us as f64 / count as f64
            },
            p50_us: data.percentile_us(0.50),
            p90_us: data.percentile_us(0.90),
            p99_us: data.percentile_us(0.99),
            max_us: data.maximum_time_us,
        }
    }
}

/// One window's walks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WalkResult {
    /// The window: the `window_days` days before `until`.
    pub window_days: u32,
    pub users: usize,
    /// How long the users walked.
    pub seconds: f64,
    pub page_size: u32,
    /// Rows in the window, as the database counted them before the run.
    pub rows_in_window: u64,
    /// Pages answered with 200, and their latency as the users saw it.
    pub pages: Timing,
    pub pages_per_second: f64,
    /// Page requests that failed (an error status or no answer).
    pub failed_pages: u64,
    /// Complete walks, from the first page to the last, and how long each took.
    pub walks: Timing,
    /// Pages of one complete walk.
    pub pages_per_walk: u64,
    /// Complete walks that saw another number of rows than `rows_in_window` (must be 0).
    pub inconsistent_walks: u64,
    /// Cores the readers (this process), the API and PostgreSQL used meanwhile, when the
    /// caller measured them (it knows the API's process).
    #[serde(default)]
    pub cores: Option<crate::machine::CoreShare>,
    /// Answered pages by the server the API says they were read from (its `PM-Read-Source`
    /// header: `primary` or `replica`; `unnamed` when the API has no replica configured
    /// and so does not say). These include the pages that arrive after Goose stopped
    /// counting at the end of the run, so they may add up to a little more than `pages`.
    #[serde(default)]
    pub read_sources: BTreeMap<String, u64>,
}

impl WalkResult {
    /// No failed page and every complete walk saw the whole window exactly once.
    pub fn ok(&self) -> bool {
        self.failed_pages == 0 && self.inconsistent_walks == 0
    }
}

/// What each user shares with the others: the fixed part of the query and what the walks
/// saw.
struct Walk {
    query: String,
    authorization: String,
    rows_in_window: u64,
    /// Each complete walk.
    seen: Mutex<Vec<Walked>>,
    /// Answered pages by read source.
    sources: Mutex<BTreeMap<String, u64>>,
}

/// One complete walk.
#[derive(Debug, Clone, Copy)]
struct Walked {
    rows: u64,
    pages: u64,
    micros: u64,
}

/// A user's walk in progress (its Goose session data).
#[derive(Debug, Clone)]
struct Position {
    cursor: Option<String>,
    rows: u64,
    pages: u64,
    started: Instant,
}

impl Position {
    fn start() -> Position {
        Position {
            cursor: None,
            rows: 0,
            pages: 0,
            started: Instant::now(),
        }
    }
}

/// The page of the wire format a walk needs: the number of items and the next cursor.
#[derive(Deserialize)]
struct PageShape {
    items: Vec<serde::de::IgnoredAny>,
    next_cursor: Option<String>,
}

/// The API's response header naming the server a read came from (when it has replicas).
const READ_SOURCE_HEADER: &str = "pm-read-source";

fn transaction_error(message: String) -> Box<TransactionError> {
    Box::new(TransactionError::Custom(message))
}

/// The next page of this user's walk (the first page of a new walk after the last one).
async fn next_page(user: &mut GooseUser, walk: Arc<Walk>) -> TransactionResult {
    let cursor = match user.get_session_data::<Position>() {
        Some(p) => p.cursor.clone(),
        None => {
            user.set_session_data(Position::start());
            None
        }
    };
    let path = match &cursor {
        None => walk.query.clone(),
        Some(c) => format!("{}&cursor={}", walk.query, encode_query_value(c)),
    };
    let builder = user
        .get_request_builder(&GooseMethod::Get, &path)?
        .header("authorization", &walk.authorization);
    let request = GooseRequest::builder()
        .name("GET /disputes/events (one page)")
        .set_request_builder(builder)
        .build();
    let mut answer = user.request(request).await?;
    let response = match answer.response {
        Ok(r) if r.status().is_success() => r,
        Ok(r) => {
            let status = r.status();
            let body = r.text().await.unwrap_or_default();
            // The walk is abandoned: the next page starts a new one.
            user.set_session_data(Position::start());
            return user.set_failure(
                &format!("{status}: {body}"),
                &mut answer.request,
                None,
                None,
            );
        }
        Err(e) => {
            user.set_session_data(Position::start());
            return Err(transaction_error(format!("no answer: {e}")));
        }
    };
    let source = response
        .headers()
        .get(READ_SOURCE_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("unnamed")
        .to_owned();
    if let Ok(mut sources) = walk.sources.lock() {
        *sources.entry(source).or_default() += 1;
    }
    let page: PageShape = match response.json().await {
        Ok(page) => page,
        Err(e) => {
            user.set_session_data(Position::start());
            return Err(transaction_error(format!("not a page of events: {e}")));
        }
    };
    let Some(position) = user.get_session_data_mut::<Position>() else {
        return Err(transaction_error("the walk's position is gone".to_owned()));
    };
    position.rows += page.items.len() as u64;
    position.pages += 1;
    if page.next_cursor.is_some() {
        position.cursor = page.next_cursor;
        return Ok(());
    }
    let walked = Walked {
        rows: position.rows,
        pages: position.pages,
        micros: u64::try_from(position.started.elapsed().as_micros()).unwrap_or(u64::MAX),
    };
    *position = Position::start();
    if let Ok(mut seen) = walk.seen.lock() {
        seen.push(walked);
    }
    if walked.rows != walk.rows_in_window {
        return Err(transaction_error(format!(
            "a walk saw {} rows of {}",
            walked.rows, walk.rows_in_window
        )));
    }
    Ok(())
}

/// Percent-encodes a query value (cursors are opaque to us).
fn encode_query_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn goose_error(e: impl std::fmt::Display) -> LabError {
    LabError::Walk(e.to_string())
}

/// Walks the `window_days` days before `config.until` with `config.users` users for
/// `config.duration`. `rows_in_window` is what every complete walk must see.
pub async fn walk(
    config: &WalkConfig,
    window_days: u32,
    rows_in_window: u64,
) -> Result<WalkResult, LabError> {
    let from = config.until - chrono::Duration::days(i64::from(window_days));
    let stamp = |t: DateTime<Utc>| t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
    let walk = Arc::new(Walk {
        query: format!(
            "/disputes/events?time_from={}&time_to={}&limit={}",
            stamp(from),
            stamp(config.until),
            config.page_size
        ),
        authorization: format!("Bearer {}", config.api_key),
        rows_in_window,
        seen: Mutex::new(Vec::new()),
        sources: Mutex::new(BTreeMap::new()),
    });
    let shared = Arc::clone(&walk);
    let function: TransactionFunction =
        Arc::new(move |user| Box::pin(next_page(user, Arc::clone(&shared))));
    let scenario = scenario!("ReadWalk")
        .register_transaction(Transaction::new(function).set_name("next page"));
    let seconds = config.duration.as_secs().max(1) as usize;
    let attack = GooseAttack::initialize_with_config(GooseConfiguration::default())
        .map_err(goose_error)?
        .register_scenario(scenario)
        .set_default(GooseDefault::Host, config.api_url.trim_end_matches('/'))
        .map_err(goose_error)?
        .set_default(GooseDefault::Users, config.users)
        .map_err(goose_error)?
        // All users at once: the measurement is of a steady number of readers.
        .set_default(
            GooseDefault::IncreaseRate,
            (config.users.max(1) * 1000).to_string().as_str(),
        )
        .map_err(goose_error)?
        .set_default(GooseDefault::RunTime, seconds)
        .map_err(goose_error)?
        .set_default(GooseDefault::NoTelnet, true)
        .map_err(goose_error)?
        .set_default(GooseDefault::NoPrintMetrics, true)
        .map_err(goose_error)?
        .set_default(GooseDefault::Quiet, 1)
        .map_err(goose_error)?;
    // Goose's run is a large future: on the heap, not on this task's stack.
    let started = Instant::now();
    let metrics = Box::pin(attack.execute()).await.map_err(goose_error)?;
    // Goose reports whole seconds; the users may also finish their last page after the
    // run time.
    let walked = started.elapsed().as_secs_f64().max(0.001);

    // One request name and one transaction: each has at most one aggregate.
    let (pages, ok_pages, failed_pages) =
        metrics
            .requests
            .values()
            .next()
            .map_or((Timing::of(&Default::default()), 0, 0), |a| {
                (
                    Timing::of(&a.raw_data),
                    a.success_count as u64,
                    a.fail_count as u64,
                )
            });
    let seen = walk.seen.lock().map(|s| s.clone()).unwrap_or_default();
    let read_sources = walk.sources.lock().map(|s| s.clone()).unwrap_or_default();
    // Goose times failed requests too; the count is of answered pages.
    let page_timing = Timing {
        count: ok_pages,
        ..pages
    };
    Ok(WalkResult {
        window_days,
        users: config.users,
        seconds: walked,
        page_size: config.page_size,
        rows_in_window,
        pages: page_timing,
        pages_per_second: ok_pages as f64 / walked,
        failed_pages,
        walks: Timing::of_samples(seen.iter().map(|w| w.micros).collect()),
        pages_per_walk: seen.first().map_or(0, |w| w.pages),
        inconsistent_walks: seen.iter().filter(|w| w.rows != rows_in_window).count() as u64,
        cores: None,
        read_sources,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_travel_intact_in_the_query() {
        assert_eq!(encode_query_value("a+b/c=="), "a%2Bb%2Fc%3D%3D");
        assert_eq!(encode_query_value("AZaz09-_.~"), "AZaz09-_.~");
    }

    #[test]
    fn walk_times_use_nearest_rank_percentiles() {
        let t = Timing::of_samples(vec![40, 10, 30, 20]);
        assert_eq!((t.count, t.p50_us, t.p90_us, t.max_us), (4, 20, 40, 40));
        assert_eq!(t.mean_us, 25.0);
        assert_eq!(Timing::of_samples(Vec::new()).count, 0);
    }
}
