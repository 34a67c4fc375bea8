//! CPU profiles on demand: every thread's stack is sampled `frequency` times a second
//! (SIGPROF) between [`CpuProfiler::start`] and [`Running::finish`], and the samples are
//! rendered as a flame graph (SVG) or as folded stacks (one line per distinct stack, the
//! input of `inferno-flamegraph`, `flamegraph.pl` and speedscope).
//!
//! Invariant: at most one profile runs in a process at a time — the sampling timer and its
//! signal handler are process-wide — so a second `start` is refused with
//! [`ProfileError::Busy`] rather than corrupting the first.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set while a profile runs.
static RUNNING: AtomicBool = AtomicBool::new(false);

/// Why no profile could be taken.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("a CPU profile is already being taken; try again when it is done")]
    Busy,
    #[error("the profiler failed: {0}")]
    Failed(String),
}

/// Starts profiles (see the module's invariant).
#[derive(Debug, Clone, Copy)]
pub struct CpuProfiler;

impl CpuProfiler {
    /// Starts sampling at `frequency` Hz (99 is the usual choice: frequent enough, and out of
    /// step with timers that fire at round rates).
    pub fn start(frequency: i32) -> Result<Running, ProfileError> {
        if RUNNING
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return Err(ProfileError::Busy);
        }
        // Samples whose innermost frame is in these libraries are skipped: unwinding from
        // inside them can deadlock, and vdso's unwind information is wrong on some systems.
        let guard = pprof::ProfilerGuardBuilder::default()
            .frequency(frequency)
            .blocklist(&["libc", "libgcc", "pthread", "vdso"])
            .build();
        match guard {
            Ok(guard) => Ok(Running {
                guard: Some(guard),
                frequency,
            }),
            Err(e) => {
                RUNNING.store(false, Ordering::Release);
                Err(ProfileError::Failed(e.to_string()))
            }
        }
    }
}

/// A profile being taken; dropping it stops the sampling.
pub struct Running {
    guard: Option<pprof::ProfilerGuard<'static>>,
    frequency: i32,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("frequency", &self.frequency)
            .finish_non_exhaustive()
    }
}

impl Running {
    /// Stops sampling and resolves the samples' symbols (tens of milliseconds).
    pub fn finish(mut self) -> Result<CpuProfile, ProfileError> {
        let guard = self.guard.take().ok_or(ProfileError::Busy)?;
        let report = guard
            .report()
            .build()
            .map_err(|e| ProfileError::Failed(e.to_string()));
        drop(guard);
        RUNNING.store(false, Ordering::Release);
        Ok(CpuProfile {
            report: report?,
            frequency: self.frequency,
        })
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.guard.take().is_some() {
            RUNNING.store(false, Ordering::Release);
        }
    }
}

/// The flame graph of a profile without samples.
const IDLE_SVG: &str = r#"<?xml version="1.0" standalone="no"?>
<svg version="1.1" width="640" height="60" xmlns="http://www.w3.org/2000/svg">
<text x="10" y="35" font-family="sans-serif" font-size="14">No samples: the process spent no CPU time while it was profiled (idle).</text>
</svg>
"#;

/// The samples of one profile.
pub struct CpuProfile {
    report: pprof::Report,
    frequency: i32,
}

impl std::fmt::Debug for CpuProfile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpuProfile")
            .field("samples", &self.samples())
            .field("frequency", &self.frequency)
            .finish()
    }
}

impl CpuProfile {
    /// How many stacks were sampled.
    pub fn samples(&self) -> u64 {
        self.report
            .data
            .values()
            .map(|n| u64::try_from(*n).unwrap_or(0))
            .sum()
    }

    /// A flame graph (SVG): the wider a frame, the more samples it was on the stack of.
    /// A profile without samples (the process spent no CPU time) is an SVG that says so.
    pub fn flamegraph(&self) -> Result<Vec<u8>, ProfileError> {
        if self.samples() == 0 {
            return Ok(IDLE_SVG.as_bytes().to_vec());
        }
        let mut svg = Vec::new();
        self.report
            .flamegraph(&mut svg)
            .map_err(|e| ProfileError::Failed(e.to_string()))?;
        Ok(svg)
    }

    /// Folded stacks: `thread;outermost;…;innermost count`, one line per distinct stack,
    /// heaviest first.
    pub fn folded(&self) -> String {
        let mut lines: Vec<(String, isize)> = self
            .report
            .data
            .iter()
            .map(|(frames, count)| {
                let mut line = frames.thread_name.replace(';', ":");
                // Innermost first in the report; folded stacks go outermost first.
                for frame in frames.frames.iter().rev() {
                    for symbol in frame.iter().rev() {
                        let _ = write!(line, ";{}", symbol.name().replace(';', ":"));
                    }
                }
                (line, *count)
            })
            .collect();
        lines.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        lines
            .into_iter()
            .fold(String::new(), |mut out, (stack, count)| {
                let _ = writeln!(out, "{stack} {count}");
                out
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Work the profiler can see: a loop that the optimiser cannot drop.
    #[inline(never)]
    fn spin_for(duration: std::time::Duration) -> u64 {
        let started = std::time::Instant::now();
        let mut x = 0u64;
        while started.elapsed() < duration {
            for i in 0..10_000u64 {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
            }
        }
        x
    }

    #[test]
    fn a_profile_sees_the_busy_function_and_only_one_runs_at_a_time() {
        let running = CpuProfiler::start(199).expect("start");
        assert!(
            matches!(CpuProfiler::start(199), Err(ProfileError::Busy)),
            "a second profile must wait for the first"
        );
        spin_for(std::time::Duration::from_millis(500));
        let profile = running.finish().expect("finish");
        assert!(profile.samples() > 0, "{profile:?}");
        let folded = profile.folded();
        assert!(folded.contains("spin_for"), "{folded}");
        let first = folded.lines().next().expect("a stack");
        let count: u64 = first
            .rsplit(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .expect("a count at the end");
        assert!(count > 0, "{first}");
        let svg = profile.flamegraph().expect("svg");
        assert!(svg.starts_with(b"<?xml"), "an SVG document");

        // Done: the next one may start.
        drop(CpuProfiler::start(99).expect("start again"));
        assert!(
            CpuProfiler::start(99).is_ok(),
            "dropping a running profile frees the slot"
        );
    }
}
