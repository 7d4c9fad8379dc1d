//! Log lines as JSON, one object a line, carrying the trace and span id of the span each was
//! logged in, so a line leads to its trace and a trace to its lines.
//!
//! A line: `{"timestamp":"...","level":"WARN","target":"yitong_ledger::service",
//! "message":"...","fields":{...},"span":"grpc.server","trace_id":"...","span_id":"..."}`.
//! The ids are there while tracing is on; the fields are what the call site wrote, so the
//! rule that no citizen ID is logged stays with the call sites (and the sandbox's watch).

use std::fmt;

use opentelemetry::trace::TraceContextExt;
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The JSON line formatter for `tracing_subscriber::fmt`.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonLines;

struct Fields(Map<String, Value>);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().to_owned(), Value::from(format!("{value:?}")));
    }
}

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        context: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut timestamp = String::new();
        SystemTime.format_time(&mut Writer::new(&mut timestamp))?;
        let metadata = event.metadata();
        let mut fields = Fields(Map::new());
        event.record(&mut fields);
        let mut line = Map::new();
        line.insert("timestamp".into(), Value::from(timestamp));
        line.insert("level".into(), Value::from(metadata.level().as_str()));
        line.insert("target".into(), Value::from(metadata.target()));
        if let Some(message) = fields.0.remove("message") {
            line.insert("message".into(), message);
        }
        if !fields.0.is_empty() {
            line.insert("fields".into(), Value::Object(fields.0));
        }
        if let Some(span) = context.lookup_current() {
            line.insert("span".into(), Value::from(span.name()));
            // The OpenTelemetry layer keeps the span's context; reading it must not happen
            // while the span's extensions are borrowed, and they are not here.
            let otel = tracing::dispatcher::get_default(|dispatch| {
                tracing_opentelemetry::get_otel_context(&span.id(), dispatch)
            });
            if let Some(otel) = otel {
                let otel_span = otel.span();
                let ids = otel_span.span_context();
                if ids.is_valid() {
                    line.insert("trace_id".into(), Value::from(ids.trace_id().to_string()));
                    line.insert("span_id".into(), Value::from(ids.span_id().to_string()));
                }
            }
        }
        writeln!(writer, "{}", Value::Object(line))
    }
}

/// A formatter that leaves out sqlx's statement events below warn (slow statements are warned
/// about and stay): with tracing on they are let through the filter to become database spans
/// ([`crate::db`]), and would otherwise make one log line per statement.
#[derive(Debug, Clone, Copy, Default)]
pub struct WithoutStatements<F>(pub F);

impl<S, N, F> FormatEvent<S, N> for WithoutStatements<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        context: &FmtContext<'_, S, N>,
        writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let metadata = event.metadata();
        if metadata.target() == crate::db::SQLX_QUERY && *metadata.level() > tracing::Level::WARN {
            return Ok(());
        }
        self.0.format_event(context, writer, event)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    use super::*;

    /// A writer into a shared buffer, for reading back what the log layer wrote.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("buffer").extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    // Proves a line logged inside a traced span is one JSON object with its message, fields,
    // span name and the span's W3C trace and span ids, and that sqlx's statement events are
    // left out of the lines. It installs the process's global subscriber, as `yitong` does (the
    // ids are read through the global dispatcher): the only test of this binary that does.
    #[test]
    fn a_line_carries_its_trace_and_span_ids() {
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let buffer = Buffer::default();
        let writer = buffer.clone();
        tracing_subscriber::registry()
            .with(crate::otel_layer(&provider))
            .with(
                tracing_subscriber::fmt::layer()
                    .event_format(WithoutStatements(JsonLines))
                    .with_writer(move || writer.clone()),
            )
            .try_init()
            .expect("no other global subscriber in this test binary");
        tracing::info_span!("grpc.server").in_scope(|| {
            tracing::debug!(target: "sqlx::query", summary = "SELECT 1", "statement");
            tracing::info!(settlement_id = "S1", "recorded");
        });
        let text = String::from_utf8(buffer.0.lock().expect("buffer").clone()).expect("UTF-8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1, "{text}");
        let line: Value = serde_json::from_str(lines[0]).expect("one JSON object");
        assert_eq!(line["message"], "recorded");
        assert_eq!(line["fields"]["settlement_id"], "S1");
        assert_eq!(line["span"], "grpc.server");
        let hex = |key: &str, len: usize| {
            let value = line[key].as_str().unwrap_or_default();
            value.len() == len && value.chars().all(|c| c.is_ascii_hexdigit())
        };
        assert!(hex("trace_id", 32), "{line}");
        assert!(hex("span_id", 16), "{line}");
    }
}
