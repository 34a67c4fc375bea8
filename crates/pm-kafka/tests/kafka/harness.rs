//! A scriptable handler and helpers to run consumers and read topics.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pm_kafka::consumer::{
    self, ConsumerHealth, ConsumerSettings, Handler, Outcome, Received, Transient,
};
use pm_kafka::metrics::ConsumerMetrics;
use pm_kafka::{headers, KafkaConfig, Producer, Topics};
use pm_telemetry::metrics::{Registry, SharedRegistry};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// What the handler does with a payload: by default `Done`; scripted per payload text.
#[derive(Default)]
pub struct Script {
    /// Payloads to reject (permanent).
    pub reject: Vec<String>,
    /// Payload → how many calls answer `Retry` before `Done` (u32::MAX: always).
    pub retry: HashMap<String, u32>,
    /// The first N calls of `handle` fail as transient.
    pub transient_calls: u32,
}

#[derive(Default)]
pub struct Recorder {
    pub script: Mutex<Script>,
    /// Every payload applied (`Done`), in the order applied.
    pub applied: Mutex<Vec<Received>>,
    pub calls: Mutex<u32>,
    pub seen: Mutex<HashMap<String, u32>>,
    /// Keys whose messages wait (the handler does not return) while they are listed.
    pub blocked: Mutex<std::collections::HashSet<String>>,
    /// Pause per call, to make batches take time.
    pub delay: Mutex<Duration>,
}

impl Recorder {
    fn blocks(&self, batch: &[Received]) -> bool {
        let blocked = self.blocked.lock().expect("lock");
        batch.iter().any(|m| {
            m.key
                .as_deref()
                .is_some_and(|k| blocked.contains(String::from_utf8_lossy(k).as_ref()))
        })
    }

    /// The applied payloads, in the order applied.
    pub fn payloads(&self) -> Vec<String> {
        self.applied
            .lock()
            .expect("lock")
            .iter()
            .map(|m| String::from_utf8_lossy(m.payload.as_deref().unwrap_or_default()).into_owned())
            .collect()
    }
}

impl Handler for Recorder {
    async fn handle(&self, batch: &[Received]) -> Result<Vec<Outcome>, Transient> {
        while self.blocks(batch) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let delay = *self.delay.lock().expect("lock");
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        {
            let mut calls = self.calls.lock().expect("lock");
            *calls += 1;
            if *calls <= self.script.lock().expect("lock").transient_calls {
                return Err(Transient::new(
                    "unavailable",
                    "database unavailable (scripted)",
                ));
            }
        }
        let script = self.script.lock().expect("lock");
        let mut out = Vec::new();
        for m in batch {
            if out.iter().any(|o| matches!(o, Outcome::Retry(_))) {
                out.push(Outcome::Skipped);
                continue;
            }
            let text =
                String::from_utf8_lossy(m.payload.as_deref().unwrap_or_default()).into_owned();
            let mut seen = self.seen.lock().expect("lock");
            let n = seen.entry(text.clone()).or_default();
            *n += 1;
            let outcome = if script.reject.contains(&text) {
                Outcome::Reject(format!("cannot decode {text}"))
            } else if script.retry.get(&text).is_some_and(|limit| *n <= *limit) {
                Outcome::Retry(format!("{text} not ready"))
            } else {
                self.applied.lock().expect("lock").push(m.clone());
                Outcome::Done
            };
            out.push(outcome);
        }
        Ok(out)
    }
}

pub struct Env {
    pub config: KafkaConfig,
    pub topics: Topics,
    pub producer: Producer,
}

impl Env {
    pub async fn new(partitions: i32) -> Env {
        let config = KafkaConfig::new(pm_kafka::testing::brokers(), "pm-kafka-tests");
        let topics = Topics::with_prefix(&pm_kafka::testing::unique("t"));
        pm_kafka::topics::ensure_topics(
            &config,
            &topics,
            &pm_kafka::topics::TopicSettings::with_partitions(partitions),
        )
        .await
        .expect("topics");
        let producer = Producer::new(&config, Duration::from_secs(10)).expect("producer");
        Env {
            config,
            topics,
            producer,
        }
    }

    /// Sends and returns the partition the message landed on.
    pub async fn send_to(&self, topic: &str, key: &str, payload: &str) -> i32 {
        let h = headers::build([(headers::CORRELATION_ID, "corr-1")]);
        self.producer
            .send(topic, key.as_bytes(), payload.as_bytes(), h)
            .await
            .expect("send")
            .partition
    }

    pub async fn send(&self, topic: &str, key: &str, payload: &str) {
        let h = headers::build([
            (headers::CORRELATION_ID, "corr-1"),
            (headers::EVENT_TYPE, "order"),
        ]);
        self.producer
            .send(topic, key.as_bytes(), payload.as_bytes(), h)
            .await
            .expect("send");
    }

    pub fn settings(&self, group: &str) -> ConsumerSettings {
        let mut s = ConsumerSettings::new(
            &self.topics.orders,
            format!("{}{group}", self.topics.orders),
        );
        s.retry_attempts = 3;
        s.retry_backoff = Duration::from_millis(20);
        s.max_backoff = Duration::from_millis(200);
        s
    }

    /// Starts a consumer; returns its shutdown token and task.
    pub fn start(
        &self,
        settings: ConsumerSettings,
        handler: Arc<Recorder>,
        dlq: Producer,
    ) -> (CancellationToken, JoinHandle<()>) {
        let (token, task, _) = self.start_measured(settings, handler, dlq);
        (token, task)
    }

    /// Like [`Env::start`], also returning the consumer's metrics.
    pub fn start_measured(
        &self,
        settings: ConsumerSettings,
        handler: Arc<Recorder>,
        dlq: Producer,
    ) -> (CancellationToken, JoinHandle<()>, SharedRegistry) {
        let token = CancellationToken::new();
        let mut registry = Registry::default();
        let metrics = ConsumerMetrics::register(&mut registry);
        let (config, t) = (self.config.clone(), token.clone());
        let health = ConsumerHealth::new(&settings.topic, Duration::from_secs(60));
        let task = tokio::spawn(async move {
            consumer::run(&config, settings, handler, dlq, metrics, health, t)
                .await
                .expect("consumer");
        });
        (token, task, SharedRegistry::new(registry))
    }

    /// Every message of `topic` (reads to the current end of each partition).
    pub fn read_all(&self, topic: &str) -> Vec<rdkafka::message::OwnedMessage> {
        pm_kafka::testing::read_all(&self.config, topic)
    }
}

pub use pm_kafka::testing::header;

/// Polls `check` until it holds or the deadline passes.
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The sum of a counter's series in Prometheus text (`name{labels} value` lines).
pub fn metric_total(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}
