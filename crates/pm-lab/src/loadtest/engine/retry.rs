//! Background retries of chargebacks answered `404` (their order is not stored yet), the
//! way a provider retries them. They run beside the schedule, on their own connections,
//! and are never recorded as latencies.

use std::sync::Arc;
use std::time::Duration;

use pm_scenario::Delivery;
use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;

use super::worker::{send, Urls};
use super::Answer;

/// Retry attempts per chargeback (after the scheduled one).
pub const ATTEMPTS: u32 = 6;
/// First backoff; it doubles each attempt.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// The final answer to a retried request.
#[derive(Debug, Clone, Copy)]
pub(super) struct Retried {
    pub(super) index: u32,
    pub(super) answer: Answer,
    pub(super) attempts: u32,
}

/// Spawns retries (cloned into every worker).
#[derive(Debug, Clone)]
pub(super) struct Retrier {
    client: reqwest::Client,
    urls: Arc<Urls>,
    deliveries: Arc<Vec<Delivery>>,
    secret: Arc<[u8]>,
    tracker: TaskTracker,
    tx: mpsc::UnboundedSender<Retried>,
}

/// Collects the retries' final answers.
#[derive(Debug)]
pub(super) struct Collector {
    tracker: TaskTracker,
    rx: mpsc::UnboundedReceiver<Retried>,
}

impl Retrier {
    pub(super) fn new(
        client: reqwest::Client,
        urls: Arc<Urls>,
        deliveries: Arc<Vec<Delivery>>,
        secret: Arc<[u8]>,
    ) -> (Self, Collector) {
        let (tx, rx) = mpsc::unbounded_channel();
        let tracker = TaskTracker::new();
        let retrier = Retrier {
            client,
            urls,
            deliveries,
            secret,
            tracker: tracker.clone(),
            tx,
        };
        (retrier, Collector { tracker, rx })
    }

    /// Retries request `index` in the background until it is not answered 404.
    pub(super) fn retry(&self, index: u32) {
        let (client, urls, deliveries, secret, tx) = (
            self.client.clone(),
            self.urls.clone(),
            self.deliveries.clone(),
            self.secret.clone(),
            self.tx.clone(),
        );
        self.tracker.spawn(async move {
            let Some(d) = deliveries.get(index as usize) else {
                return;
            };
            let mut backoff = FIRST_BACKOFF;
            for attempt in 1..=ATTEMPTS {
                tokio::time::sleep(backoff).await;
                backoff *= 2;
                let answer = send(&client, &urls, d, &secret).await;
                if answer != Answer::Status(404) || attempt == ATTEMPTS {
                    let _ = tx.send(Retried {
                        index,
                        answer,
                        attempts: attempt,
                    });
                    return;
                }
            }
        });
    }
}

impl Collector {
    /// Waits for every retry (call it once no worker can start another) and returns
    /// their final answers.
    pub(super) async fn finish(mut self) -> Vec<Retried> {
        self.tracker.close();
        self.tracker.wait().await;
        let mut out = Vec::new();
        while let Ok(r) = self.rx.try_recv() {
            out.push(r);
        }
        out
    }
}
