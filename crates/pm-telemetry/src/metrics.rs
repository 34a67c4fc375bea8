//! Prometheus metrics with an explicit registry (no global state): each component
//! registers what it measures at start-up, and `/metrics` renders the registry.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
pub use prometheus_client::registry::Registry;

mod process;
pub use process::{ProcessCollector, ProcessStats};

/// What is running, for `pm_build_info`: the crate version and the source revision it was
/// built from (`git describe`-like, with `-dirty` when the tree had uncommitted changes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BuildInfo {
    pub version: &'static str,
    pub revision: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    revision: &'static str,
}

/// The registry of a long-running service: the standard unprefixed `process_*` metrics
/// and `pm_build_info{version,revision} 1` at its top. The service registers its own
/// metrics in `registry.sub_registry_with_prefix("pm")`.
pub fn service_registry(build: BuildInfo) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(ProcessCollector));
    let info = Family::<BuildLabels, Gauge>::default();
    info.get_or_create(&BuildLabels {
        version: build.version,
        revision: build.revision,
    })
    .set(1);
    registry.register(
        "pm_build_info",
        "The running build: its version and source revision (always 1)",
        info,
    );
    registry
}

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

/// A gauge family whose values are read when Prometheus scrapes, not kept up to date by the
/// code they describe: the sizes of connection pools, the age of the oldest waiting message.
/// `read` returns one value per label set; a label set it leaves out is simply not exported.
pub struct ScrapeGauge<L, F> {
    name: &'static str,
    help: &'static str,
    read: F,
    labels: std::marker::PhantomData<fn() -> L>,
}

impl<L, F> ScrapeGauge<L, F>
where
    L: EncodeLabelSet + Send + Sync + 'static,
    F: Fn() -> Vec<(L, f64)> + Send + Sync + 'static,
{
    /// Registers the family `name` (under the registry's prefix) in `registry`.
    pub fn register(registry: &mut Registry, name: &'static str, help: &'static str, read: F) {
        registry.register_collector(Box::new(Self {
            name,
            help,
            read,
            labels: std::marker::PhantomData,
        }));
    }
}

impl<L, F> std::fmt::Debug for ScrapeGauge<L, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScrapeGauge")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl<L, F> prometheus_client::collector::Collector for ScrapeGauge<L, F>
where
    L: EncodeLabelSet + Send + Sync + 'static,
    F: Fn() -> Vec<(L, f64)> + Send + Sync + 'static,
{
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder<'_>,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric as _;
        let mut family = encoder.encode_descriptor(
            self.name,
            self.help,
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for (labels, value) in (self.read)() {
            prometheus_client::metrics::gauge::ConstGauge::new(value)
                .encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// The content type of [`SharedRegistry::render`].
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_registry_names_its_build_and_prefixes_only_its_own_metrics() {
        let mut registry = service_registry(BuildInfo {
            version: "1.2.3",
            revision: "abc123-dirty",
        });
        let own = prometheus_client::metrics::counter::Counter::<u64>::default();
        own.inc();
        registry
            .sub_registry_with_prefix("pm")
            .register("things", "Things", own);
        let text = SharedRegistry::new(registry).render();
        assert!(
            text.contains(r#"pm_build_info{version="1.2.3",revision="abc123-dirty"} 1"#),
            "{text}"
        );
        assert!(text.contains("\npm_things_total 1\n"), "{text}");
        assert!(text.contains("\nprocess_resident_memory_bytes "), "{text}");
    }
}
