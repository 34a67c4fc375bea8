//! End-to-end lag: from ingest's acceptance of a webhook (its `202`) to the row being
//! visible in the database, read through the API.
//!
//! The database keeps no "applied at" time, and each event row's `created_at` is the
//! acceptance time, so the lag cannot be read back afterwards: it is observed while the
//! step runs. A sample of accepted *order* webhooks (at most `--lag-samples` per step,
//! spread evenly over the measured period; order events can be looked up by order id) is
//! handed to this poller the moment their answer arrives. It asks
//! `GET /orders/events?order_id=…&kind=webhook_received` at once, then again after
//! growing pauses (half the sample's age, at least 5 ms), until the event is there.
//!
//! The lag of a sample is the middle of the window in which it became visible: between
//! the previous poll that did not see it (or the acceptance) and the end of the first poll
//! that did, minus the acceptance time. Its resolution is therefore about ±25 % of the lag
//! (±2.5 ms at least) plus one poll round trip. A sample costs about ten cheap indexed
//! reads for a lag of half a second, and the poller never makes more than
//! [`LagConfig::max_polls_per_sec`]: the sweep allows 10 % of the offered rate (at least
//! 20/s) and takes at most one sample per ten polls of that budget, so the load on the API
//! stays small; when the budget binds anyway (a lag of seconds), polls come later and the
//! windows, hence the resolution, get wider. In sync mode (and ingest's http sink) a webhook is
//! stored before it is answered, so the first poll always sees it: the recorded lag is
//! then half a poll round trip, i.e. zero within the method's resolution, and
//! [`LagRun::seen_on_first_poll`] equals [`LagRun::seen`].

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use hdrhistogram::Histogram;
use pm_api_types::{Event, List};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::CancellationToken;

use crate::loadtest::engine::LagSample;
use crate::LabError;
use pm_api_types::client::ApiAccess;

/// How the poller works.
#[derive(Debug, Clone)]
pub struct LagConfig {
    /// The API (a key with the `read` scope).
    pub api: ApiAccess,
    /// Shortest pause between two polls of one sample.
    pub min_pause: Duration,
    /// Pause between polls as a share of the sample's age.
    pub growth: f64,
    /// Polls in flight at once.
    pub max_in_flight: usize,
    /// Most polls per second.
    pub max_polls_per_sec: f64,
    /// Timeout of one poll.
    pub request_timeout: Duration,
}

impl LagConfig {
    /// The defaults, against `api`.
    pub fn new(api: ApiAccess) -> Self {
        LagConfig {
            api,
            min_pause: Duration::from_millis(5),
            growth: 0.5,
            max_in_flight: 8,
            max_polls_per_sec: 100.0,
            request_timeout: Duration::from_secs(5),
        }
    }
}

/// What the poller saw.
#[derive(Debug)]
pub struct LagRun {
    /// Lags, in microseconds.
    pub histogram: Histogram<u64>,
    /// Samples handed to the poller.
    pub samples: u64,
    /// Samples seen in the database.
    pub seen: u64,
    /// Samples still not seen when the poller was stopped.
    pub unseen: u64,
    /// Samples the very first poll already saw (all of them: stored before the answer).
    pub seen_on_first_poll: u64,
    /// Polls made.
    pub polls: u64,
    /// Polls that failed (they are repeated).
    pub poll_errors: u64,
}

#[derive(Debug)]
struct Pending {
    sample: LagSample,
    polls: u32,
    /// When the last poll that did not see it was sent.
    last_miss: Option<Instant>,
}

/// Polls until `rx` is closed and every sample was seen, or until `stop` is cancelled.
pub async fn poll(
    config: LagConfig,
    mut rx: UnboundedReceiver<LagSample>,
    stop: CancellationToken,
) -> Result<LagRun, LabError> {
    let http = config
        .api
        .client_builder()
        .timeout(config.request_timeout)
        .pool_max_idle_per_host(config.max_in_flight)
        .build()
        .map_err(LabError::Client)?;
    let url = format!("{}/orders/events", config.api.url());
    let mut run = LagRun {
        histogram: crate::loadtest::latency::new_histogram()?,
        samples: 0,
        seen: 0,
        unseen: 0,
        seen_on_first_poll: 0,
        polls: 0,
        poll_errors: 0,
    };
    let mut due: BinaryHeap<Reverse<(Instant, u64)>> = BinaryHeap::new();
    let mut pending: HashMap<u64, Pending> = HashMap::new();
    let mut in_flight = FuturesUnordered::new();
    let mut next_id = 0_u64;
    let mut inbox_open = true;
    // Polls are spaced at least this far apart (the budget).
    let spacing = Duration::from_secs_f64(1.0 / config.max_polls_per_sec.max(1.0));
    let mut next_launch = Instant::now();
    loop {
        let now = Instant::now();
        while in_flight.len() < config.max_in_flight.max(1) && next_launch <= now {
            let Some(&Reverse((at, id))) = due.peek() else {
                break;
            };
            if at > now {
                break;
            }
            due.pop();
            // Unused budget does not pile up into a burst.
            next_launch = next_launch.max(now.checked_sub(spacing).unwrap_or(now)) + spacing;
            let Some(p) = pending.remove(&id) else {
                continue;
            };
            run.polls += 1;
            let (http, url) = (http.clone(), url.clone());
            in_flight.push(async move {
                let sent = Instant::now();
                let seen = visible(&http, &url, &p.sample).await;
                (id, p, sent, seen)
            });
        }
        if !inbox_open && due.is_empty() && in_flight.is_empty() {
            break;
        }
        let wake = due
            .peek()
            .map(|Reverse((at, _))| (*at).max(next_launch))
            .filter(|_| in_flight.len() < config.max_in_flight.max(1));
        tokio::select! {
            () = stop.cancelled() => break,
            sample = rx.recv(), if inbox_open => match sample {
                Some(sample) => {
                    run.samples += 1;
                    let id = next_id;
                    next_id += 1;
                    pending.insert(id, Pending { sample, polls: 0, last_miss: None });
                    due.push(Reverse((Instant::now(), id)));
                }
                None => inbox_open = false,
            },
            Some((id, mut p, sent, seen)) = in_flight.next(), if !in_flight.is_empty() => {
                let done = Instant::now();
                p.polls += 1;
                match seen {
                    Ok(true) => {
                        run.seen += 1;
                        if p.polls == 1 {
                            run.seen_on_first_poll += 1;
                        }
                        let from = p.last_miss.unwrap_or(p.sample.accepted_at).max(p.sample.accepted_at);
                        let visible_at = from + done.saturating_duration_since(from) / 2;
                        crate::loadtest::latency::record(
                            &mut run.histogram,
                            visible_at.saturating_duration_since(p.sample.accepted_at),
                        );
                    }
                    Ok(false) | Err(()) => {
                        if seen.is_err() {
                            run.poll_errors += 1;
                        } else {
                            p.last_miss = Some(sent);
                        }
                        let age = done.saturating_duration_since(p.sample.accepted_at);
                        let pause = age.mul_f64(config.growth).max(config.min_pause);
                        due.push(Reverse((done + pause, id)));
                        pending.insert(id, p);
                    }
                }
            },
            () = sleep_until(wake), if wake.is_some() => {},
        }
    }
    run.unseen = run.samples - run.seen;
    Ok(run)
}

async fn sleep_until(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at.into()).await;
    }
}

/// Whether the sample's event is stored.
async fn visible(http: &reqwest::Client, url: &str, s: &LagSample) -> Result<bool, ()> {
    let r = http
        .get(url)
        .query(&[
            ("order_id", s.order_id.as_str()),
            ("kind", "webhook_received"),
            ("limit", "1000"),
        ])
        .send()
        .await
        .map_err(|_| ())?;
    if !r.status().is_success() {
        return Err(());
    }
    let page: List<Event> = r.json().await.map_err(|_| ())?;
    Ok(page
        .items
        .iter()
        .any(|e| e.provider_event_id.as_deref() == Some(s.event_id.as_str())))
}

/// Picks at most `samples` of the `candidates` (request indices, in order), evenly spread.
pub fn pick_samples(candidates: &[usize], samples: usize, len: usize) -> Vec<bool> {
    let mut sampled = vec![false; len];
    if samples == 0 || candidates.is_empty() {
        return sampled;
    }
    let stride = candidates.len().div_ceil(samples);
    for &i in candidates.iter().step_by(stride.max(1)) {
        if let Some(s) = sampled.get_mut(i) {
            *s = true;
        }
    }
    sampled
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_spread_and_capped() {
        let candidates: Vec<usize> = (0..1000).map(|i| i * 3).collect();
        let s = pick_samples(&candidates, 100, 3000);
        assert_eq!(s.iter().filter(|b| **b).count(), 100);
        assert!(s[0] && s[30] && !s[3]);
        let few = pick_samples(&candidates[..10], 100, 3000);
        assert_eq!(few.iter().filter(|b| **b).count(), 10);
        assert!(pick_samples(&candidates, 0, 3000).iter().all(|b| !b));
    }
}
