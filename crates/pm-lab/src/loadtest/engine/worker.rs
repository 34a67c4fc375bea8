//! A worker: one keep-alive connection, one request at a time, latency from the intended
//! time.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use pm_scenario::{Delivery, Route};

use super::retry::Retrier;
use super::{Answer, Counters, Failure, Job, LagTap, Live};
use crate::loadtest::schedule::Schedule;
use crate::LabError;

/// An accepted webhook whose arrival in the database the lag poller times.
#[derive(Debug, Clone)]
pub struct LagSample {
    /// The webhook's event id.
    pub event_id: String,
    /// Its order.
    pub order_id: String,
    /// When its `200`/`202` was received.
    pub accepted_at: Instant,
}

/// The two webhook URLs.
#[derive(Debug)]
pub(super) struct Urls {
    orders: reqwest::Url,
    chargebacks: reqwest::Url,
}

impl Urls {
    pub(super) fn new(target: &str) -> Result<Self, LabError> {
        let url = |route: Route| {
            let text = format!("{}{}", target.trim_end_matches('/'), route.path());
            reqwest::Url::parse(&text)
                .map_err(|e| LabError::Invalid(format!("target URL {text:?}: {e}")))
        };
        Ok(Urls {
            orders: url(Route::Orders)?,
            chargebacks: url(Route::Chargebacks)?,
        })
    }

    fn of(&self, route: Route) -> &reqwest::Url {
        match route {
            Route::Orders => &self.orders,
            Route::Chargebacks => &self.chargebacks,
        }
    }
}

/// Sends one delivery, signed now, and reads the whole answer (so the connection is
/// reused).
pub(super) async fn send(
    client: &reqwest::Client,
    urls: &Urls,
    d: &Delivery,
    secret: &[u8],
) -> Answer {
    let mut req = client
        .post(urls.of(d.route).clone())
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(bytes::Bytes::copy_from_slice(&d.body));
    if let Some(sig) = d.signature_header(secret, chrono::Utc::now().timestamp()) {
        req = req.header(pm_domain::signature::HEADER, sig);
    }
    match req.send().await {
        Ok(r) => {
            let status = r.status().as_u16();
            match r.bytes().await {
                Ok(_) => Answer::Status(status),
                Err(e) => Answer::Failed(failure(&e)),
            }
        }
        Err(e) => Answer::Failed(failure(&e)),
    }
}

fn failure(e: &reqwest::Error) -> Failure {
    if e.is_timeout() {
        Failure::Timeout
    } else if e.is_connect() || e.is_request() || e.is_body() {
        Failure::Connect
    } else {
        Failure::Other
    }
}

/// What one worker saw.
#[derive(Debug)]
pub(super) struct Tally {
    pub(super) latency: Histogram<u64>,
    pub(super) counters: Counters,
    pub(super) warmup_sent: u64,
    pub(super) answers: Vec<(u32, Answer)>,
    pub(super) last_done: Option<Instant>,
}

pub(super) struct Worker {
    pub(super) client: reqwest::Client,
    pub(super) urls: Arc<Urls>,
    pub(super) secret: Arc<[u8]>,
    pub(super) deliveries: Arc<Vec<Delivery>>,
    pub(super) schedule: Schedule,
    pub(super) late_after: Duration,
    pub(super) give_up_after: Duration,
    pub(super) live: Arc<Live>,
    pub(super) lag: Option<LagTap>,
    pub(super) retrier: Retrier,
}

impl Worker {
    pub(super) async fn run(self, rx: flume::Receiver<Job>) -> Result<Tally, LabError> {
        let mut t = Tally {
            latency: crate::loadtest::latency::new_histogram()?,
            counters: Counters::default(),
            warmup_sent: 0,
            answers: Vec::new(),
            last_done: None,
        };
        while let Ok(job) = rx.recv_async().await {
            let i = job.index as usize;
            let measured = self.schedule.is_measured(u64::from(job.index));
            let Some(d) = self.deliveries.get(i) else {
                continue;
            };
            let wait = Instant::now().saturating_duration_since(job.due);
            if wait > self.give_up_after {
                self.live.dropped.fetch_add(1, Ordering::Relaxed);
                t.answers.push((job.index, Answer::Dropped));
                if measured {
                    t.counters.dropped += 1;
                }
                continue;
            }
            self.live.sent.fetch_add(1, Ordering::Relaxed);
            let answer = send(&self.client, &self.urls, d, &self.secret).await;
            let done = Instant::now();
            self.live.done.fetch_add(1, Ordering::Relaxed);
            t.answers.push((job.index, answer));
            if measured {
                crate::loadtest::latency::record(
                    &mut t.latency,
                    done.saturating_duration_since(job.due),
                );
                t.counters.sent += 1;
                if wait > self.late_after {
                    t.counters.late += 1;
                }
                match answer {
                    Answer::Status(s) => {
                        t.counters.completed += 1;
                        *t.counters.statuses.entry(s).or_default() += 1;
                        t.last_done = t.last_done.max(Some(done));
                    }
                    Answer::Failed(f) => *t.counters.failures.entry(f).or_default() += 1,
                    Answer::NotSent | Answer::Dropped => {}
                }
            } else {
                t.warmup_sent += 1;
            }
            if answer == Answer::Status(404) && super::is_chargeback(d) {
                self.retrier.retry(job.index);
            }
            self.announce(i, d, answer, done);
        }
        Ok(t)
    }

    /// Tells the lag poller about a sampled webhook that was accepted.
    fn announce(&self, i: usize, d: &Delivery, answer: Answer, done: Instant) {
        let Some(lag) = &self.lag else { return };
        if !answer.is_accepted() || !lag.sampled.get(i).copied().unwrap_or(false) {
            return;
        }
        let Some(event_id) = &d.provider_event_id else {
            return;
        };
        // The poller may already have stopped (its deadline passed): nothing to do then.
        let _ = lag.tx.send(LagSample {
            event_id: event_id.to_string(),
            order_id: d.order_id.to_string(),
            accepted_at: done,
        });
    }
}
