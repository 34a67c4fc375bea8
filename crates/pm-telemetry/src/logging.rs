//! Log initialisation, and with it the span export (one global subscriber carries both).

use std::str::FromStr;

use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _, Registry};

use crate::traces::{TracesConfig, TracesError, TracesGuard};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines with the span context (e.g. the correlation id) on each.
    Text,
    /// One JSON object per line, with the current span's fields, for log pipelines.
    Json,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("log format must be text or json (got {other:?})")),
        }
    }
}

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    #[error("invalid log filter {filter:?}: {source}")]
    Filter {
        filter: String,
        source: tracing_subscriber::filter::ParseError,
    },
    #[error("a global logger was already installed")]
    AlreadySet,
    #[error(transparent)]
    Traces(#[from] TracesError),
}

/// Installs the global subscriber writing to stderr, every line scrubbed of the
/// registered secrets ([`crate::redact`]). `filter` uses `tracing`'s directive
/// syntax (`info`, `pm_api=debug,sqlx=warn`).
pub fn init_logging(filter: &str, format: LogFormat) -> Result<(), LoggingError> {
    init_logging_and_traces(filter, format, None).map(drop)
}

/// [`init_logging`], and with `traces` the span export of [`crate::traces`]: log lines
/// written inside a traced span then carry its `trace_id` and `span_id`, so a log line
/// leads to its trace and back. The filter applies to the log lines only; which spans are
/// exported is decided by [`crate::traces`]. Keep the guard until the process exits.
pub fn init_logging_and_traces(
    filter: &str,
    format: LogFormat,
    traces: Option<&TracesConfig>,
) -> Result<Option<TracesGuard>, LoggingError> {
    let env_filter = EnvFilter::try_new(filter).map_err(|source| LoggingError::Filter {
        filter: filter.to_owned(),
        source,
    })?;
    let (otel, guard) = match traces {
        Some(config) => {
            let (layer, guard) = crate::traces::pipeline::<Registry>(config)?;
            (Some(layer), Some(guard))
        }
        None => (None, None),
    };
    let writer = || crate::redact::Scrubbing(std::io::stderr());
    let fmt = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(writer)
            // Lines with and without trace ids look alike: no colours once tracing is on.
            .with_ansi(guard.is_none())
            .event_format(WithTraceIds(tracing_subscriber::fmt::format()))
            .with_filter(env_filter)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(writer)
            .event_format(WithTraceIds(
                tracing_subscriber::fmt::format()
                    .json()
                    .with_current_span(true)
                    .with_span_list(false),
            ))
            .with_filter(env_filter)
            .boxed(),
    };
    tracing_subscriber::registry()
        .with(otel)
        .with(fmt)
        .try_init()
        .map_err(|_| LoggingError::AlreadySet)?;
    Ok(guard)
}

/// An event format that adds the OpenTelemetry ids of the innermost traced span around
/// the event: ` trace_id=… span_id=…` at the end of a text line, two more keys in a JSON
/// object. Without one the line is exactly the inner format's.
struct WithTraceIds<F>(F);

impl<S, N, F> FormatEvent<S, N> for WithTraceIds<F>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let Some((trace_id, span_id)) = trace_ids(ctx) else {
            return self.0.format_event(ctx, writer, event);
        };
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        let body = line.trim_end_matches('\n');
        if let Some(object) = body.strip_suffix('}').filter(|_| body.starts_with('{')) {
            writeln!(
                writer,
                r#"{object},"trace_id":"{trace_id}","span_id":"{span_id}"}}"#
            )
        } else {
            writeln!(writer, "{body} trace_id={trace_id} span_id={span_id}")
        }
    }
}

/// The trace and span id of the innermost span that has an OpenTelemetry context.
fn trace_ids<S, N>(ctx: &FmtContext<'_, S, N>) -> Option<(String, String)>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    ctx.event_scope()?.find_map(|span| {
        let extensions = span.extensions();
        let data = extensions.get::<tracing_opentelemetry::OtelData>()?;
        let trace_id = data.trace_id()?;
        let span_id = data.span_id()?;
        (trace_id != opentelemetry::TraceId::INVALID)
            .then(|| (trace_id.to_string(), span_id.to_string()))
    })
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
        }
    }

    /// Logs one line outside any span and one inside a traced span; returns the output
    /// and the span's ids.
    fn log_with(json: bool) -> (String, String, String) {
        let out = Captured::default();
        let writer = {
            let out = out.clone();
            move || out.clone()
        };
        let provider = SdkTracerProvider::builder().build();
        let otel = tracing_opentelemetry::layer().with_tracer(provider.tracer("test"));
        let fmt = if json {
            tracing_subscriber::fmt::layer()
                .json()
                .with_writer(writer)
                .event_format(WithTraceIds(
                    tracing_subscriber::fmt::format()
                        .json()
                        .with_current_span(true),
                ))
                .boxed()
        } else {
            tracing_subscriber::fmt::layer()
                .with_writer(writer)
                .with_ansi(false)
                .event_format(WithTraceIds(tracing_subscriber::fmt::format()))
                .boxed()
        };
        let subscriber = tracing_subscriber::registry().with(otel).with(fmt);
        let ids = tracing::subscriber::with_default(subscriber, || {
            tracing::info!("outside");
            let span = tracing::info_span!("work", correlation_id = "c-1");
            let _entered = span.enter();
            tracing::info!("inside");
            let cx = span.context();
            let context = cx.span().span_context().clone();
            (
                context.trace_id().to_string(),
                context.span_id().to_string(),
            )
        });
        (out.text(), ids.0, ids.1)
    }

    #[test]
    fn text_lines_inside_a_traced_span_end_with_its_ids() {
        let (out, trace_id, span_id) = log_with(false);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert!(!lines[0].contains("trace_id"), "{out}");
        assert!(
            lines[1].ends_with(&format!(" trace_id={trace_id} span_id={span_id}")),
            "{out}"
        );
        assert!(lines[1].contains("correlation_id"), "{out}");
    }

    #[test]
    fn json_lines_inside_a_traced_span_have_its_ids_as_keys() {
        let (out, trace_id, span_id) = log_with(true);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        let inside: serde_json::Value = serde_json::from_str(lines[1]).expect("one JSON object");
        assert_eq!(inside["trace_id"], trace_id.as_str());
        assert_eq!(inside["span_id"], span_id.as_str());
        assert_eq!(inside["span"]["correlation_id"], "c-1");
        let outside: serde_json::Value = serde_json::from_str(lines[0]).expect("one JSON object");
        assert!(outside.get("trace_id").is_none(), "{out}");
    }
}
