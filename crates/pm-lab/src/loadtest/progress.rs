//! The progress bar of a step: elapsed against planned time, the achieved rate over the
//! last second, requests in flight and dropped. Hidden when stderr is not a terminal.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio_util::sync::CancellationToken;

use crate::loadtest::engine::Live;
use crate::loadtest::schedule::Schedule;

/// A running progress display; [`StepProgress::finish`] removes it.
#[derive(Debug)]
pub struct StepProgress {
    bar: ProgressBar,
    stop: CancellationToken,
    ticker: tokio::task::JoinHandle<()>,
}

impl StepProgress {
    /// Starts the display of a step (`visible: false` draws nothing).
    pub fn start(live: Arc<Live>, schedule: Schedule, label: String, visible: bool) -> Self {
        let planned = schedule.warmup() + schedule.duration();
        let bar = ProgressBar::with_draw_target(
            Some(planned.as_millis() as u64),
            if visible {
                ProgressDrawTarget::stderr()
            } else {
                ProgressDrawTarget::hidden()
            },
        );
        bar.set_style(
            ProgressStyle::with_template("{prefix} [{bar:30}] {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_prefix(label);
        let stop = CancellationToken::new();
        let ticker = tokio::spawn(tick(bar.clone(), live, schedule, stop.clone()));
        StepProgress { bar, stop, ticker }
    }

    /// Removes the display.
    pub async fn finish(self) {
        self.stop.cancel();
        let _ = self.ticker.await;
        self.bar.finish_and_clear();
    }
}

async fn tick(bar: ProgressBar, live: Arc<Live>, schedule: Schedule, stop: CancellationToken) {
    let started = Instant::now();
    let planned = schedule.warmup() + schedule.duration();
    let mut window = (Instant::now(), 0_u64);
    let mut rate = 0.0;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
        let now = Instant::now();
        let done = live.done.load(Ordering::Relaxed);
        let span = now.duration_since(window.0).as_secs_f64();
        if span >= 1.0 {
            rate = (done - window.1) as f64 / span;
            window = (now, done);
        }
        let elapsed = now.duration_since(started);
        bar.set_position(elapsed.min(planned).as_millis() as u64);
        let phase = if elapsed < schedule.warmup() {
            "warm-up"
        } else if elapsed < planned {
            "measuring"
        } else {
            "draining"
        };
        bar.set_message(format!(
            "{:.1}/{:.0} s {phase}, achieved {rate:.0}/s, in flight {}, dropped {}",
            elapsed.as_secs_f64(),
            planned.as_secs_f64(),
            live.in_flight(),
            live.dropped.load(Ordering::Relaxed),
        ));
    }
}
