//! Database spans: one span for the statements each request span ran, when one of them wrote or
//! took at least [`QUIET_SPAN_ELAPSED_MIN`], child of that span, made from the events sqlx
//! emits when a statement finishes (target `sqlx::query`, at debug).
//!
//! The statements are gathered in the extensions of the span they ran in and make one span when
//! it closes, from the first statement's start to the last one's end. (sqlx reports no BEGIN
//! or COMMIT among these events, so a span's transactions cannot be told apart; a server span's
//! handler runs one to three.) A span per statement was most of a settled visit's spans and
//! most of what tracing cost (BENCHMARKS.md, "What tracing costs"); a trace keeps what an
//! operator follows a claim for: what each hop wrote where, how long its statements took, and
//! whatever was slow. A span whose statements were all fast reads makes no database span.
//!
//! The span is named after its operation: the statements' common operation (`INSERT`) or
//! `BATCH` when they differ, as the OpenTelemetry conventions name a batch. It carries
//! `db.operation.name`, `db.operation.batch.size` (the statements run), `db.query.summary` (the
//! distinct summaries of the statements that wrote or were slow, in order: sqlx's first words
//! of each, which name the table), and the rows returned and affected. Statements are written
//! with `$n` placeholders, so no parameter value is ever in them; their full text is left out
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

/// Distinct statement summaries a span lists at most.
const SUMMARIES_MAX: usize = 16;

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

/// The statements of one span so far, kept in its extensions.
#[derive(Debug)]
struct Statements {
    /// The OpenTelemetry context of the span they ran in, the parent of the span to make.
    parent: opentelemetry::Context,
    started: SystemTime,
    ended: SystemTime,
    statements: u32,
    /// The common operation of the statements that count, or `None` once they differ.
    operation: Option<String>,
    summaries: Vec<String>,
    /// Whether a statement wrote or was slow: only then do they make a span.
    notable: bool,
    rows_returned: u64,
    rows_affected: u64,
}

impl Statements {
    fn new(parent: opentelemetry::Context, started: SystemTime) -> Statements {
        Statements {
            parent,
            started,
            ended: started,
            statements: 0,
            operation: None,
            summaries: Vec::new(),
            notable: false,
            rows_returned: 0,
            rows_affected: 0,
        }
    }

    fn add(&mut self, operation: &str, summary: &str, statement: &Statement, slow: bool) {
        self.statements += 1;
        self.rows_returned += statement.rows_returned.unwrap_or(0);
        self.rows_affected += statement.rows_affected.unwrap_or(0);
        if quiet(operation) && !slow {
            return;
        }
        self.operation = match (self.notable, self.operation.take()) {
            (false, _) => Some(operation.to_owned()),
            (true, Some(common)) if common == operation => Some(common),
            (true, _) => None,
        };
        self.notable = true;
        if self.summaries.len() < SUMMARIES_MAX
            && !self.summaries.iter().any(|seen| seen == summary)
        {
            self.summaries.push(summary.to_owned());
        }
    }

    fn finish(self, tracer: &SdkTracer) {
        if !self.notable {
            return;
        }
        let operation = self.operation.unwrap_or_else(|| "BATCH".to_owned());
        let attributes = vec![
            KeyValue::new("db.operation.name", operation.clone()),
            KeyValue::new("db.operation.batch.size", i64::from(self.statements)),
            KeyValue::new("db.query.summary", self.summaries.join("; ")),
            KeyValue::new(
                "db.response.returned_rows",
                i64::try_from(self.rows_returned).unwrap_or(i64::MAX),
            ),
            KeyValue::new(
                "yitong.db.rows_affected",
                i64::try_from(self.rows_affected).unwrap_or(i64::MAX),
            ),
        ];
        let mut span = tracer
            .span_builder(operation)
            .with_kind(SpanKind::Client)
            .with_start_time(self.started)
            .with_attributes(attributes)
            .start_with_context(tracer, &self.parent);
        span.end_with_timestamp(self.ended);
    }
}

impl<S> Layer<S> for DbSpans
where
    S: Subscriber + for<'span> LookupSpan<'span>,
{
    fn on_event(&self, event: &Event<'_>, context: Context<'_, S>) {
        if event.metadata().target() != SQLX_QUERY {
            return;
        }
        // A statement outside any span (start-up, migrations) belongs to no trace.
        let Some(span) = context.event_span(event) else {
            return;
        };
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
        let end = SystemTime::now();
        let start = end.checked_sub(elapsed).unwrap_or(end);
        // The span's context is read from its extensions, so before they are locked here (and
        // not under the guard of this look, which a scrutinee would keep for the whole match).
        let gathering = span.extensions().get::<Statements>().is_some();
        let parent = match gathering {
            true => None,
            false => {
                let parent = tracing::dispatcher::get_default(|dispatch| {
                    tracing_opentelemetry::get_otel_context(&span.id(), dispatch)
                });
                // A span the OpenTelemetry layer does not export has no context to hang one on.
                if parent.is_none() {
                    return;
                }
                parent
            }
        };
        let mut extensions = span.extensions_mut();
        // Two threads may both have found no statements yet (a span entered on two threads at
        // once): the first to lock inserts, the second adds to what the first inserted.
        if extensions.get_mut::<Statements>().is_none() {
            let Some(parent) = parent else {
                // Closed and finished between the look and the lock: nothing to add to.
                return;
            };
            extensions.insert(Statements::new(parent, start));
        }
        let Some(gathered) = extensions.get_mut::<Statements>() else {
            return;
        };
        gathered.add(
            &operation,
            summary,
            &statement,
            elapsed >= QUIET_SPAN_ELAPSED_MIN,
        );
        gathered.ended = end;
    }

    fn on_close(&self, id: tracing::span::Id, context: Context<'_, S>) {
        let Some(span) = context.span(&id) else {
            return;
        };
        let left = span.extensions_mut().remove::<Statements>();
        if let Some(left) = left {
            left.finish(&self.tracer);
        }
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

    fn gathered(statements: &[(&str, bool)]) -> Statements {
        let mut gathered = Statements::new(opentelemetry::Context::new(), SystemTime::now());
        for (summary, slow) in statements {
            let operation = summary.split_whitespace().next().expect("a word");
            gathered.add(operation, summary, &Statement::default(), *slow);
        }
        gathered
    }

    // Proves how a span's statements make a span and what it lists: the common operation of its
    // writes and slow statements, else BATCH; fast reads and transaction control are counted
    // but neither named nor listed; fast reads only make no span.
    #[test]
    fn statements_are_named_by_what_they_wrote() {
        let inserts = gathered(&[
            ("BEGIN", false),
            ("INSERT INTO message_replies", false),
            ("SELECT visits", false),
            ("INSERT INTO audit_trail", false),
            ("COMMIT", false),
        ]);
        assert!(inserts.notable);
        assert_eq!(inserts.statements, 5);
        assert_eq!(inserts.operation.as_deref(), Some("INSERT"));
        assert_eq!(
            inserts.summaries,
            ["INSERT INTO message_replies", "INSERT INTO audit_trail"]
        );

        let mixed = gathered(&[
            ("INSERT INTO visits", false),
            ("UPDATE visits", false),
            ("SELECT persons", true),
        ]);
        assert_eq!(mixed.operation, None);
        assert_eq!(mixed.summaries.len(), 3);

        let reads = gathered(&[
            ("BEGIN", false),
            ("SELECT visits", false),
            ("COMMIT", false),
        ]);
        assert!(!reads.notable);
    }
}
