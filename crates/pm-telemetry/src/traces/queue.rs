//! A span processor that never blocks the code that ends a span.
//!
//! Invariant: `on_end` only ever tries to put the span into a bounded queue; when the queue
//! is full (the collector is slow or down) the span is dropped and counted. One thread of
//! its own takes spans off the queue in batches and exports them; a batch the exporter
//! refuses is counted as dropped too, so every span that never reached the collector is in
//! the counter.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use opentelemetry::Context;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};
use opentelemetry_sdk::Resource;
use prometheus_client::metrics::counter::Counter;

/// Sizes of the queue and of the batches sent to the exporter.
#[derive(Debug, Clone, Copy)]
pub struct QueueSettings {
    /// Spans waiting for export; more are dropped.
    pub capacity: usize,
    /// Most spans per export call.
    pub max_batch: usize,
    /// Longest a span waits for its batch to fill.
    pub interval: Duration,
}

impl Default for QueueSettings {
    fn default() -> Self {
        QueueSettings {
            capacity: 4096,
            max_batch: 512,
            interval: Duration::from_secs(1),
        }
    }
}

enum Message {
    Span(Box<SpanData>),
    /// Export everything queued before this message, then answer.
    Flush(SyncSender<()>),
    /// Export everything queued, shut the exporter down, answer, stop.
    Shutdown(SyncSender<()>),
    Resource(Resource),
}

/// The processor (see the module documentation).
#[derive(Debug)]
pub struct QueueProcessor {
    queue: SyncSender<Message>,
    dropped: Counter,
    worker: Mutex<Option<JoinHandle<()>>>,
}

impl QueueProcessor {
    /// Starts the export thread. `dropped` counts every span lost on the way.
    pub fn new<E>(exporter: E, settings: QueueSettings, dropped: Counter) -> std::io::Result<Self>
    where
        E: SpanExporter + 'static,
    {
        let (queue, receiver) = mpsc::sync_channel(settings.capacity.max(1));
        let worker = Worker {
            exporter,
            receiver,
            settings,
            dropped: dropped.clone(),
            failing: false,
        };
        let handle = std::thread::Builder::new()
            .name("otel-export".into())
            .spawn(move || worker.run())?;
        Ok(QueueProcessor {
            queue,
            dropped,
            worker: Mutex::new(Some(handle)),
        })
    }

    /// Sends a control message, waiting at most until `deadline` for room in the queue,
    /// then for the answer.
    fn control(
        &self,
        make: impl FnOnce(SyncSender<()>) -> Message,
        deadline: Instant,
    ) -> OTelSdkResult {
        let (done, answered) = mpsc::sync_channel(1);
        let mut message = make(done);
        loop {
            match self.queue.try_send(message) {
                Ok(()) => break,
                Err(TrySendError::Disconnected(_)) => return Err(OTelSdkError::AlreadyShutdown),
                Err(TrySendError::Full(back)) => {
                    if Instant::now() >= deadline {
                        return Err(OTelSdkError::Timeout(Duration::ZERO));
                    }
                    message = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        answered
            .recv_timeout(left)
            .map_err(|_| OTelSdkError::Timeout(left))
    }
}

impl SpanProcessor for QueueProcessor {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if self.queue.try_send(Message::Span(Box::new(span))).is_err() {
            self.dropped.inc();
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.control(Message::Flush, Instant::now() + Duration::from_secs(5))
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let result = self.control(Message::Shutdown, Instant::now() + timeout);
        if result.is_ok() {
            let handle = self
                .worker
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take();
            if let Some(handle) = handle {
                // It answered just before returning: this does not wait for an export.
                let _ = handle.join();
            }
        }
        result
    }

    fn set_resource(&mut self, resource: &Resource) {
        // Before any span: the queue is empty, so this cannot be refused.
        let _ = self.queue.try_send(Message::Resource(resource.clone()));
    }
}

/// The export thread's state.
struct Worker<E> {
    exporter: E,
    receiver: Receiver<Message>,
    settings: QueueSettings,
    dropped: Counter,
    /// Whether the last export failed: a failing collector is logged once, not per batch.
    failing: bool,
}

impl<E: SpanExporter> Worker<E> {
    fn run(mut self) {
        let mut batch = Vec::with_capacity(self.settings.max_batch);
        let mut oldest: Option<Instant> = None;
        loop {
            let wait = oldest.map_or(self.settings.interval, |t| {
                self.settings.interval.saturating_sub(t.elapsed())
            });
            match self.receiver.recv_timeout(wait) {
                Ok(Message::Span(span)) => {
                    batch.push(*span);
                    oldest.get_or_insert_with(Instant::now);
                    if batch.len() >= self.settings.max_batch {
                        self.export(&mut batch);
                        oldest = None;
                    }
                }
                Ok(Message::Flush(done)) => {
                    self.export(&mut batch);
                    oldest = None;
                    let _ = done.send(());
                }
                Ok(Message::Shutdown(done)) => {
                    self.drain(&mut batch);
                    let _ = self.exporter.shutdown();
                    let _ = done.send(());
                    return;
                }
                Ok(Message::Resource(resource)) => self.exporter.set_resource(&resource),
                Err(RecvTimeoutError::Timeout) => {
                    self.export(&mut batch);
                    oldest = None;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.export(&mut batch);
                    return;
                }
            }
        }
    }

    /// Exports what is still queued (spans only; nobody sends more after a shutdown).
    fn drain(&mut self, batch: &mut Vec<SpanData>) {
        loop {
            match self.receiver.try_recv() {
                Ok(Message::Span(span)) => {
                    batch.push(*span);
                    if batch.len() >= self.settings.max_batch {
                        self.export(batch);
                    }
                }
                Ok(Message::Flush(done) | Message::Shutdown(done)) => {
                    let _ = done.send(());
                }
                Ok(Message::Resource(_)) => {}
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        self.export(batch);
    }

    fn export(&mut self, batch: &mut Vec<SpanData>) {
        if batch.is_empty() {
            return;
        }
        let spans = std::mem::replace(batch, Vec::with_capacity(self.settings.max_batch));
        let count = spans.len() as u64;
        // The blocking HTTP client completes the future on this thread; the exporter's
        // timeout bounds how long a dead collector holds it.
        match futures::executor::block_on(self.exporter.export(spans)) {
            Ok(()) => {
                if self.failing {
                    tracing::info!("trace export works again");
                }
                self.failing = false;
            }
            Err(e) => {
                self.dropped.inc_by(count);
                if !self.failing {
                    tracing::warn!(error = %e, spans = count, "trace export failed; spans are dropped (counted in pm_otel_spans_dropped_total) until the collector answers");
                }
                self.failing = true;
            }
        }
    }
}
