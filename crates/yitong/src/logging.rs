//! Log and trace output: JSON lines on standard error (or readable lines with
//! `YITONG_LOG_FORMAT=text`), filtered by RUST_LOG, and OpenTelemetry traces over OTLP when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set.

use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use yitong_telemetry::TraceConfig;
use yitong_telemetry::log::{JsonLines, WithoutStatements};

/// What must outlive the command: the tracer provider, shut down (and flushed) at the end.
#[derive(Debug)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports the spans still queued, then stops the exporter.
    pub async fn shut_down(self) {
        if let Some(provider) = self.provider {
            // Shutting down blocks until the last batch is sent, over the runtime's connection.
            let _ = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        }
    }
}

/// Installs the subscriber; `traces` turns tracing on. Call it inside the runtime, which
/// carries the exporter's connection. The filter sits on the registry, not on the fmt layer
/// alone, or lines logged after sqlx queries vanish (tokio-rs/tracing#2519); the
/// OpenTelemetry layer has its own filter on top (see [`yitong_telemetry::otel_layer`]).
pub fn init(traces: Option<TraceConfig>) -> Telemetry {
    let (provider, problem) = match traces.as_ref().map(yitong_telemetry::tracer_provider) {
        None => (None, None),
        Some(Ok(provider)) => (Some(provider), None),
        Some(Err(error)) => (None, Some(error)),
    };
    let mut filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,h2=warn,tower=warn"));
    if provider.is_some() {
        // sqlx's statement events become database spans; the log lines leave them out.
        filter = filter.add_directive(
            yitong_telemetry::DB_SPANS_DIRECTIVE
                .parse()
                .expect("the directive is well formed"),
        );
    }
    let text = std::env::var("YITONG_LOG_FORMAT").is_ok_and(|format| format == "text");
    let logs = if text {
        tracing_subscriber::fmt::layer()
            .event_format(WithoutStatements(tracing_subscriber::fmt::format()))
            .with_writer(std::io::stderr)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .event_format(WithoutStatements(JsonLines))
            .with_writer(std::io::stderr)
            .boxed()
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(logs)
        .with(provider.as_ref().map(yitong_telemetry::otel_layer))
        .init();
    if let Some(error) = problem {
        tracing::warn!(error = %yitong_core::cause_chain(&error), "tracing is off");
    } else if let Some(config) = &traces {
        tracing::info!(endpoint = %config.endpoint, service = %config.service_name, "exporting traces over OTLP");
    }
    Telemetry { provider }
}
