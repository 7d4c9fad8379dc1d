//! Database spans: each SQL statement that writes, and each other statement (a read, a
//! transaction's BEGIN or COMMIT) that took at least [`QUIET_SPAN_ELAPSED_MIN`], a span, child
//! of the span it ran in, made from the event sqlx emits when a statement finishes (target
//! `sqlx::query`, at debug).
//!
//! Fast reads and fast transaction control make no span: they were most of a settled visit's
//! spans and most of what tracing cost (BENCHMARKS.md, "What tracing costs"), and a trace keeps
//! what an operator follows a claim for: what was written where, and whatever was slow.
//!
//! The span is named after the statement's operation (`SELECT`, `INSERT`, ...) and carries
//! `db.operation.name`, `db.query.summary` (sqlx's summary: the statement's first words, which
//! name the table), and the rows returned and affected. Statements are written with `$n`
//! placeholders, so no parameter value is ever in them; the statement's full text is left out
//! all the same, to keep spans small.

use std::time::{Duration, SystemTime};

use opentelemetry::KeyValue;
use opentelemetry::trace::{Span as _, SpanKind, Tracer as _};
use opentelemetry_sdk::trace::SdkTracer;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// The target of sqlx's statement events.
pub const SQLX_QUERY: &str = "sqlx::query";

/// A statement that does not write (a read, transaction control) makes a span only when it
/// took at least this long.
pub const QUIET_SPAN_ELAPSED_MIN: Duration = Duration::from_millis(5);

/// Whether a statement of this operation (upper case) changes no row.
fn quiet(operation: &str) -> bool {
    matches!(
        operation,
        "SELECT" | "BEGIN" | "COMMIT" | "ROLLBACK" | "SAVEPOINT" | "RELEASE" | "PRAGMA"
    )
}

/// The layer that turns sqlx's statement events into spans.
#[derive(Debug)]
pub struct DbSpans {
    tracer: SdkTracer,
}

impl DbSpans {
    pub fn new(tracer: SdkTracer) -> DbSpans {
        DbSpans { tracer }
    }
}

/// What a statement event says.
#[derive(Debug, Default)]
struct Statement {
    summary: String,
    elapsed_secs: Option<f64>,
    rows_returned: Option<u64>,
    rows_affected: Option<u64>,
}

impl Visit for Statement {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "summary" {
            value.clone_into(&mut self.summary);
        }
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        if field.name() == "elapsed_secs" {
            self.elapsed_secs = Some(value);
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        match field.name() {
            "rows_returned" => self.rows_returned = Some(value),
            "rows_affected" => self.rows_affected = Some(value),
            _ => {}
        }
    }

    fn record_debug(&mut self, _: &Field, _: &dyn std::fmt::Debug) {}
}

impl<S> Layer<S> for DbSpans
where
    S: Subscriber + for<'span> LookupSpan<'span>,
{
    fn on_event(&self, event: &Event<'_>, context: Context<'_, S>) {
        if event.metadata().target() != SQLX_QUERY {
            return;
        }
        let mut statement = Statement::default();
        event.record(&mut statement);
        let summary = statement.summary.trim_end_matches(" …");
        let operation = summary
            .split_whitespace()
            .next()
            .unwrap_or("SQL")
            .to_ascii_uppercase();
        let elapsed = statement
            .elapsed_secs
            .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
            .unwrap_or_default();
        if quiet(&operation) && elapsed < QUIET_SPAN_ELAPSED_MIN {
            return;
        }
        // A statement outside any span (start-up, migrations) belongs to no trace.
        let Some(span) = context.event_span(event) else {
            return;
        };
        let parent = tracing::dispatcher::get_default(|dispatch| {
            tracing_opentelemetry::get_otel_context(&span.id(), dispatch)
        });
        let Some(parent) = parent else {
            return;
        };
        let summary = summary.to_owned();
        let end = SystemTime::now();
        let mut attributes = vec![
            KeyValue::new("db.operation.name", operation.clone()),
            KeyValue::new("db.query.summary", summary),
        ];
        if let Some(rows) = statement.rows_returned {
            attributes.push(KeyValue::new(
                "db.response.returned_rows",
                i64::try_from(rows).unwrap_or(i64::MAX),
            ));
        }
        if let Some(rows) = statement.rows_affected {
            attributes.push(KeyValue::new(
                "yitong.db.rows_affected",
                i64::try_from(rows).unwrap_or(i64::MAX),
            ));
        }
        let mut db_span = self
            .tracer
            .span_builder(operation)
            .with_kind(SpanKind::Client)
            .with_start_time(end.checked_sub(elapsed).unwrap_or(end))
            .with_attributes(attributes)
            .start_with_context(&self.tracer, &parent);
        db_span.end_with_timestamp(end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves which statements are spanned only when slow: reads and transaction control, never
    // a statement that writes.
    #[test]
    fn only_statements_that_write_are_always_spanned() {
        for operation in ["SELECT", "BEGIN", "COMMIT", "ROLLBACK"] {
            assert!(quiet(operation), "{operation}");
        }
        for operation in ["INSERT", "UPDATE", "DELETE", "CREATE"] {
            assert!(!quiet(operation), "{operation}");
        }
    }
}
