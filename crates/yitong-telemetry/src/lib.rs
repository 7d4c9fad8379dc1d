//! Traces, metrics and logs of every Yitong process.
//!
//! - Traces: OpenTelemetry through `tracing` and `tracing-opentelemetry`, exported over OTLP
//!   (gRPC) and configured by the standard variables: `OTEL_EXPORTER_OTLP_ENDPOINT` (no endpoint,
//!   no tracing: nothing is installed), `OTEL_SERVICE_NAME`, `OTEL_TRACES_SAMPLER` and
//!   `OTEL_TRACES_SAMPLER_ARG`. Spans and trace context on every gRPC hop are in [`grpc`].
//! - Metrics: one Prometheus registry per process ([`metrics()`]), served over HTTP by
//!   [`serve_metrics`].
//! - Logs: JSON lines on standard error, each with the trace and span id of the span it was
//!   logged in ([`log::JsonLines`]).

pub mod db;
pub mod grpc;
pub mod log;
mod metrics;
mod serve;

pub use metrics::{
    BREAK_CLASSES, BUSINESS_REFUSALS, BreakLabels, CITY_BREAK_SCOPES, GroupLabels, MethodLabels,
    Metrics, PairLabels, PoolLabels, PoolOf, REFUSAL_CLASSES, RefusalLabels, RpcLabels,
    SETTLEMENT_OUTCOMES, SettlementLabels, business_refusal, metrics, refusal_reasons,
};
pub use serve::serve_metrics;

use opentelemetry::KeyValue;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use tracing::Subscriber;
use tracing::level_filters::LevelFilter;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::registry::LookupSpan;

/// Where and as whom a process exports its traces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceConfig {
    /// The OTLP/gRPC collector, "http://otel-collector:4317".
    pub endpoint: String,
    /// `service.name` of the resource.
    pub service_name: String,
    /// `yitong.owner` of the resource: the city ("370300") or "clearing"; absent when one
    /// process runs every owner (`yitong dev`), whose spans carry it each.
    pub owner: Option<String>,
}

impl TraceConfig {
    /// The configuration the standard variables give, or `None` when no OTLP endpoint is set
    /// (or `OTEL_SDK_DISABLED=true`, or `OTEL_TRACES_EXPORTER=none`): tracing is then off.
    /// `OTEL_SERVICE_NAME` overrides `service_name`.
    pub fn from_env(service_name: &str, owner: Option<String>) -> Option<TraceConfig> {
        let var = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
        if var("OTEL_SDK_DISABLED").is_some_and(|value| value.eq_ignore_ascii_case("true"))
            || var("OTEL_TRACES_EXPORTER").is_some_and(|value| value == "none")
        {
            return None;
        }
        let endpoint = var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .or_else(|| var("OTEL_EXPORTER_OTLP_ENDPOINT"))?;
        Some(TraceConfig {
            endpoint,
            service_name: var("OTEL_SERVICE_NAME").unwrap_or_else(|| service_name.to_owned()),
            owner,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("cannot build the OTLP exporter to {endpoint}")]
    Exporter {
        endpoint: String,
        source: opentelemetry_otlp::ExporterBuildError,
    },
}

/// A tracer provider exporting to `config.endpoint` in batches, sampled as
/// `OTEL_TRACES_SAMPLER` says (parent-based, always on, by default). Must be called inside a
/// tokio runtime, which carries the exporter's connection; shut the provider down before the
/// runtime ends to flush what is still queued.
pub fn tracer_provider(config: &TraceConfig) -> Result<SdkTracerProvider, TelemetryError> {
    use opentelemetry_otlp::WithExportConfig;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(config.endpoint.clone())
        .build()
        .map_err(|source| TelemetryError::Exporter {
            endpoint: config.endpoint.clone(),
            source,
        })?;
    let mut resource = Resource::builder()
        .with_service_name(config.service_name.clone())
        .with_attribute(KeyValue::new("service.namespace", "yitong"));
    if let Some(owner) = &config.owner {
        resource = resource.with_attribute(KeyValue::new("yitong.owner", owner.clone()));
    }
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build())
}

/// The tracing layers that make OpenTelemetry spans: spans become spans, with their own
/// filter (Yitong's spans and events at info and above, and nothing of the transport and
/// exporter crates, whose spans would otherwise trace the exporter exporting, in a loop), and
/// sqlx's statement events become database spans ([`db::DbSpans`]), when the subscriber's
/// filter lets `sqlx::query` through at debug ([`DB_SPANS_DIRECTIVE`]).
///
/// Building it turns on the spans of [`grpc`], which are not made while tracing is off.
pub fn otel_layer<S>(provider: &SdkTracerProvider) -> impl Layer<S> + Send + Sync + 'static
where
    S: Subscriber + for<'span> LookupSpan<'span> + Send + Sync,
{
    TRACING.store(true, std::sync::atomic::Ordering::Relaxed);
    let tracer: SdkTracer = provider.tracer("yitong");
    let filter = Targets::new()
        .with_default(LevelFilter::INFO)
        .with_target("h2", LevelFilter::OFF)
        .with_target("hyper", LevelFilter::OFF)
        .with_target("hyper_util", LevelFilter::OFF)
        .with_target("tonic", LevelFilter::OFF)
        .with_target("tower", LevelFilter::OFF)
        .with_target("opentelemetry", LevelFilter::OFF)
        .with_target("opentelemetry_sdk", LevelFilter::OFF)
        .with_target("opentelemetry_otlp", LevelFilter::OFF)
        // A call's own log line says what its server span already holds.
        .with_target("yitong::calls", LevelFilter::OFF);
    // Source locations, threads, targets and busy and idle times would add seven attributes
    // to every span, none of which an operator follows a claim by; the OpenTelemetry context
    // is read from the span itself (`OpenTelemetrySpanExt`, [`db`], [`log`]), never from the
    // thread's current one, so entering a span (every poll of its future) need not set it.
    tracing_opentelemetry::layer()
        .with_tracer(tracer.clone())
        .with_location(false)
        .with_threads(false)
        .with_target(false)
        .with_tracked_inactivity(false)
        .with_context_activation(false)
        .with_filter(filter)
        .and_then(db::DbSpans::new(tracer))
}

/// Whether this process exports traces: set once an OpenTelemetry layer is built.
static TRACING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether this process exports traces. While it does not, the gRPC layers make no spans and
/// carry no trace context: a span nobody exports would only cost the subscriber's work on every
/// call (BENCHMARKS.md, "What tracing costs").
pub fn tracing_on() -> bool {
    TRACING.load(std::sync::atomic::Ordering::Relaxed)
}

/// The filter directive that makes sqlx emit the statement events database spans are made of.
pub const DB_SPANS_DIRECTIVE: &str = "sqlx::query=debug";

/// The W3C trace id (32 lowercase hex digits) of the current span, when tracing is on.
pub fn current_trace_id() -> Option<String> {
    let context = tracing::Span::current().context();
    let span = context.span();
    let span_context = span.span_context();
    span_context
        .is_valid()
        .then(|| span_context.trace_id().to_string())
}
