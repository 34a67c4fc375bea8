//! The state shared by every handler.

use std::fmt;
use std::sync::Arc;

use pm_http::intake::IntakeConfig;
use pm_telemetry::metrics::SharedRegistry;

use crate::metrics::IngestMetrics;
use crate::sink::Sink;

/// Everything a handler needs; cheap to clone.
#[derive(Clone)]
pub struct IngestState {
    inner: Arc<Inner>,
}

struct Inner {
    intake: IntakeConfig,
    sink: Sink,
    metrics: IngestMetrics,
    registry: SharedRegistry,
}

impl fmt::Debug for IngestState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IngestState")
            .field("intake", &self.inner.intake)
            .field("sink", &self.inner.sink)
            .finish_non_exhaustive()
    }
}

impl IngestState {
    /// `metrics` must have been registered in the registry that `registry` renders.
    pub fn new(
        intake: IntakeConfig,
        sink: Sink,
        metrics: IngestMetrics,
        registry: SharedRegistry,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                intake,
                sink,
                metrics,
                registry,
            }),
        }
    }

    /// The downstream webhooks are handed to.
    pub fn sink(&self) -> &Sink {
        &self.inner.sink
    }

    pub(crate) fn intake(&self) -> &IntakeConfig {
        &self.inner.intake
    }

    pub(crate) fn metrics(&self) -> &IngestMetrics {
        &self.inner.metrics
    }

    pub(crate) fn registry(&self) -> &SharedRegistry {
        &self.inner.registry
    }
}
