//! The webhook emitter: plays a scenario's plan against ingest or the API the way a real
//! provider does.
//!
//! Each delivery is sent at its planned time (open model: a slow server does not slow the
//! schedule down, requests pile up instead), signed at send time, and retried with an
//! exponential schedule on 5xx, 429, timeouts and connection errors — and on 404, which
//! the API answers for a chargeback whose order it has not stored yet. A delivery waits for
//! the delivery it depends on and for the merchant actions its dispute's decision follows.
//! Merchant actions (store evidence, submit) go to the API after their delivery was
//! accepted.

use pm_domain::retry::Backoff;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use pm_scenario::{ActionKind, Delivery, Plan};
use tokio::sync::{watch, Semaphore};

use pm_api_types::client::ApiAccess;

/// How to play a plan.
#[derive(Debug, Clone)]
pub struct EmitterConfig {
    /// Where webhooks go (ingest or the API), e.g. `http://127.0.0.1:3001`.
    pub target: String,
    /// The API, for merchant actions (a key with the `operate` and `read` scopes).
    pub api: ApiAccess,
    /// The webhook signing secret.
    pub secret: Vec<u8>,
    /// Most requests in flight at once.
    pub concurrency: usize,
    /// Schedule speed-up: `2.0` plays twice as fast as planned.
    pub speed: f64,
    /// Attempts per delivery (the first included).
    pub max_attempts: u32,
    /// First retry delay; doubles each time, capped at `max_backoff`.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    pub request_timeout: Duration,
}

impl Default for EmitterConfig {
    fn default() -> Self {
        EmitterConfig {
            target: "http://127.0.0.1:3001".to_owned(),
            api: ApiAccess::new("http://127.0.0.1:3000"),
            secret: Vec::new(),
            concurrency: 64,
            speed: 1.0,
            max_attempts: 12,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// What happened to one delivery.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Outcome {
    pub delivery: usize,
    /// The last status received (`None`: never answered).
    pub status: Option<u16>,
    pub attempts: u32,
    pub as_expected: bool,
}

/// The result of a run.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct EmitReport {
    pub deliveries: usize,
    /// Final status → count.
    pub statuses: std::collections::BTreeMap<String, u64>,
    pub retries: u64,
    /// Deliveries whose final answer was not the expected one.
    pub unexpected: Vec<Outcome>,
    pub actions_done: u64,
    pub actions_failed: Vec<String>,
    pub elapsed_ms: u64,
}

impl EmitReport {
    pub fn ok(&self) -> bool {
        self.unexpected.is_empty() && self.actions_failed.is_empty()
    }
}

struct Run<'a> {
    plan: &'a Plan,
    cfg: &'a EmitterConfig,
    http: reqwest::Client,
    acked: Vec<watch::Sender<bool>>,
    actions_done: Vec<watch::Sender<bool>>,
    permits: Semaphore,
    retries: AtomicU64,
    outcomes: Mutex<Vec<Outcome>>,
    action_failures: Mutex<Vec<String>>,
    done: AtomicU64,
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum EmitError {
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// Plays `plan`; `progress(done, total)` is called after each delivery.
pub async fn emit(
    plan: &Plan,
    cfg: &EmitterConfig,
    progress: impl Fn(u64, u64) + Sync,
) -> Result<EmitReport, EmitError> {
    let http = cfg
        .api
        .client_builder()
        .timeout(cfg.request_timeout)
        .pool_max_idle_per_host(cfg.concurrency)
        .build()?;
    let run = Run {
        plan,
        cfg,
        http,
        acked: plan
            .deliveries
            .iter()
            .map(|_| watch::channel(false).0)
            .collect(),
        actions_done: plan
            .actions
            .iter()
            .map(|_| watch::channel(false).0)
            .collect(),
        permits: Semaphore::new(cfg.concurrency.max(1)),
        retries: AtomicU64::new(0),
        outcomes: Mutex::new(Vec::new()),
        action_failures: Mutex::new(Vec::new()),
        done: AtomicU64::new(0),
    };
    let started = Instant::now();
    let total = plan.deliveries.len() as u64;
    let deliveries = plan.deliveries.iter().enumerate().map(|(i, d)| {
        let run = &run;
        let progress = &progress;
        async move {
            run.deliver(i, d, started).await;
            progress(run.done.fetch_add(1, Ordering::Relaxed) + 1, total);
        }
    });
    let actions = actions_by_order(plan)
        .into_iter()
        .map(|indices| run.act(indices));
    futures::future::join(
        futures::future::join_all(deliveries),
        futures::future::join_all(actions),
    )
    .await;

    let outcomes = run.outcomes.lock().map(|o| o.clone()).unwrap_or_default();
    let mut report = EmitReport {
        deliveries: plan.deliveries.len(),
        retries: run.retries.load(Ordering::Relaxed),
        actions_done: run.actions_done.iter().filter(|a| *a.borrow()).count() as u64,
        actions_failed: run
            .action_failures
            .lock()
            .map(|f| f.clone())
            .unwrap_or_default(),
        elapsed_ms: started.elapsed().as_millis() as u64,
        ..EmitReport::default()
    };
    for o in outcomes {
        let key = o
            .status
            .map_or_else(|| "no answer".to_owned(), |s| s.to_string());
        *report.statuses.entry(key).or_default() += 1;
        if !o.as_expected {
            report.unexpected.push(o);
        }
    }
    report.unexpected.sort_by_key(|o| o.delivery);
    Ok(report)
}

/// The actions of each order, in plan order (one order's actions run one after another).
fn actions_by_order(plan: &Plan) -> Vec<Vec<usize>> {
    let mut by_order: std::collections::BTreeMap<&str, Vec<usize>> = Default::default();
    for (i, a) in plan.actions.iter().enumerate() {
        by_order.entry(a.order_id.as_str()).or_default().push(i);
    }
    by_order.into_values().collect()
}

async fn wait_true(rx: &watch::Sender<bool>) {
    let mut rx = rx.subscribe();
    let _ = rx.wait_for(|v| *v).await;
}

impl Run<'_> {
    fn backoff(&self, attempt: u32) -> Duration {
        Backoff::new(self.cfg.initial_backoff, self.cfg.max_backoff).delay(attempt)
    }

    async fn deliver(&self, i: usize, d: &Delivery, started: Instant) {
        let due =
            started + Duration::from_secs_f64(d.at_ms as f64 / 1000.0 / self.cfg.speed.max(1e-6));
        tokio::time::sleep_until(due.into()).await;
        if let Some(a) = d.wait_for_action.and_then(|a| self.actions_done.get(a)) {
            wait_true(a).await;
        }
        if let Some(p) = d.depends_on.and_then(|p| self.acked.get(p)) {
            wait_true(p).await;
        }
        let url = format!(
            "{}{}",
            self.cfg.target.trim_end_matches('/'),
            d.route.path()
        );
        let mut attempts = 0;
        let mut status = None;
        loop {
            attempts += 1;
            let sent = {
                let _permit = self.permits.acquire().await;
                let mut req = self
                    .http
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(d.body.clone());
                if let Some(sig) =
                    d.signature_header(&self.cfg.secret, chrono::Utc::now().timestamp())
                {
                    req = req.header(pm_domain::signature::HEADER, sig);
                }
                req.send().await
            };
            let answered = match sent {
                Ok(r) => Some(r.status().as_u16()),
                Err(e) => {
                    tracing::debug!(delivery = i, error = %e, "delivery failed");
                    None
                }
            };
            status = answered.or(status);
            // Timeouts and connection errors are retried like 5xx.
            let retry = answered
                .is_none_or(|s| pm_scenario::Expect::is_retryable(s) && !d.expect.matches(s));
            if !retry || attempts >= self.cfg.max_attempts {
                break;
            }
            self.retries.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(self.backoff(attempts)).await;
        }
        let as_expected = status.is_some_and(|s| d.expect.matches(s));
        if let Ok(mut o) = self.outcomes.lock() {
            o.push(Outcome {
                delivery: i,
                status,
                attempts,
                as_expected,
            });
        }
        self.acked[i].send_replace(true);
    }

    /// Performs one order's actions in sequence, each after its delivery was accepted.
    async fn act(&self, indices: Vec<usize>) {
        let mut dispute_id: Option<String> = None;
        for i in indices {
            let action = &self.plan.actions[i];
            wait_true(&self.acked[action.after_delivery]).await;
            let result = async {
                let id = match &dispute_id {
                    Some(id) => id.clone(),
                    None => self.find_dispute(action.order_id.as_str()).await?,
                };
                dispute_id = Some(id.clone());
                self.perform(&id, &action.kind).await
            }
            .await;
            match result {
                Ok(()) => {
                    self.actions_done[i].send_replace(true);
                }
                Err(e) => {
                    if let Ok(mut f) = self.action_failures.lock() {
                        f.push(format!("order {}: {e}", action.order_id));
                    }
                    // Release whatever waits on it: the run reports the failure.
                    self.actions_done[i].send_replace(true);
                }
            }
        }
    }

    /// Polls the API until the order's dispute exists (in kafka mode it appears only once
    /// the consumer applied the chargeback).
    async fn find_dispute(&self, order_id: &str) -> Result<String, String> {
        let url = format!("{}/disputes", self.cfg.api.url());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let answer = self
                .http
                .get(&url)
                .query(&[("order_id", order_id)])
                .send()
                .await;
            if let Ok(r) = answer {
                if let Ok(body) = r.json::<serde_json::Value>().await {
                    if let Some(id) = body["items"][0]["dispute_id"].as_str() {
                        return Ok(id.to_owned());
                    }
                }
            }
            if Instant::now() > deadline {
                return Err("its dispute never appeared".to_owned());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn perform(&self, dispute_id: &str, kind: &ActionKind) -> Result<(), String> {
        let base = self.cfg.api.url();
        let (url, expected) = match kind {
            ActionKind::AddEvidence { .. } => {
                (format!("{base}/disputes/{dispute_id}/evidence"), 200)
            }
            ActionKind::Submit => (format!("{base}/disputes/{dispute_id}/submit"), 202),
        };
        let mut attempts = 0;
        loop {
            attempts += 1;
            let mut req = self
                .http
                .post(&url)
                .header("content-type", "application/json");
            req = req.body(kind.request_body().unwrap_or_else(|| b"{}".to_vec()));
            let status = req.send().await.map(|r| r.status().as_u16()).ok();
            match status {
                Some(s) if s == expected => return Ok(()),
                // A retried submit whose first attempt went through.
                Some(409) if matches!(kind, ActionKind::Submit) && attempts > 1 => return Ok(()),
                Some(s) if s < 500 && s != 429 => return Err(format!("{url} answered {s}")),
                _ if attempts >= self.cfg.max_attempts => {
                    return Err(format!("{url} kept failing ({status:?})"))
                }
                _ => tokio::time::sleep(self.backoff(attempts)).await,
            }
        }
    }
}
