//! Prometheus metrics with an explicit registry (no global state): each component
//! registers what it measures at start-up, and `/metrics` renders the registry.

use std::sync::Arc;

pub use prometheus_client::registry::Registry;

/// Latency buckets in seconds: 0.5 ms to 10 s, dense where webhook handling lives.
pub const LATENCY_BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.002, 0.004, 0.006, 0.008, 0.010, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    10.0,
];

/// A finished registry, shared by the server that renders it.
#[derive(Clone, Debug)]
pub struct SharedRegistry(Arc<Registry>);

impl SharedRegistry {
    pub fn new(registry: Registry) -> Self {
        Self(Arc::new(registry))
    }

    /// The Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Encoding into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.0);
        out
    }
}

/// The content type of [`SharedRegistry::render`].
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
