//! The privacy watch: every log line and span attribute the sandbox's process emits is scanned
//! for a full citizen ID, and every sandbox fails its test at shut-down if one was seen.
//!
//! A citizen ID is recognised by its form, not by a list: 17 digits and a check character that
//! together pass GB 11643, with no digit right before or after. So an ID that never was in the
//! seeds (one a test enrols) is caught as well.
//!
//! The watch also keeps the last [`ERRORS_KEPT`] distinct events logged at ERROR ([`errors`]),
//! so a test that saw a server answer INTERNAL can say why; a line logged again is counted, not
//! kept twice, so one test's flood of a line does not push another test's cause out.

use std::fmt;
use std::sync::{Mutex, Once};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Record};
use tracing::{Event, Id, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use yitong_core::CitizenId;

/// What was seen: "field `name` of `target`", with the ID masked.
static LEAKS: Mutex<Vec<String>> = Mutex::new(Vec::new());
static INSTALL: Once = Once::new();
/// The last distinct ERROR events, least recently logged first: "target: field=value ..." and
/// how many times it was logged.
static ERRORS: Mutex<std::collections::VecDeque<(String, usize)>> =
    Mutex::new(std::collections::VecDeque::new());
/// How many distinct ERROR events [`errors`] keeps.
pub const ERRORS_KEPT: usize = 200;

/// What the watch filters: every level of Yitong's own crates, and dependencies down to debug
/// (their trace output is wire noise).
fn watch_filter() -> EnvFilter {
    EnvFilter::new("debug,yitong=trace,h2=info,hyper=info,hyper_util=info,tower=info")
}

/// Installs the watch as the process's global subscriber, once.
pub fn install() {
    INSTALL.call_once(|| {
        let _ = tracing_subscriber::registry()
            .with(watch_filter())
            .with(Watch)
            .try_init();
    });
}

/// Installs the watch and, beside it, OpenTelemetry tracing to `provider`, as the process's
/// global subscriber: for a test binary whose network exports its spans. It must come before
/// any sandbox starts (which would install the watch alone); it panics when too late.
pub fn install_with_traces(provider: &opentelemetry_sdk::trace::SdkTracerProvider) {
    let mut installed = false;
    INSTALL.call_once(|| {
        tracing_subscriber::registry()
            .with(watch_filter())
            .with(Watch)
            .with(yitong_telemetry::otel_layer(provider))
            .try_init()
            .expect("no other global subscriber was installed");
        installed = true;
    });
    assert!(
        installed,
        "the privacy watch was installed without traces first"
    );
}

/// Every leak seen so far in this process.
pub fn leaks() -> Vec<String> {
    LEAKS.lock().expect("leak list").clone()
}

/// The last [`ERRORS_KEPT`] distinct events logged at ERROR in this process, least recently
/// logged first, each with "(n times)" when it was logged more than once.
pub fn errors() -> Vec<String> {
    ERRORS
        .lock()
        .expect("error list")
        .iter()
        .map(|(line, times)| match times {
            1 => line.clone(),
            n => format!("{line} ({n} times)"),
        })
        .collect()
}

/// The tracing layer that scans what it is given.
#[derive(Debug, Clone, Copy)]
pub struct Watch;

impl<S: Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>> Layer<S> for Watch {
    fn on_new_span(&self, attributes: &Attributes<'_>, _: &Id, _: Context<'_, S>) {
        attributes.record(&mut Scanner {
            target: attributes.metadata().target(),
        });
    }

    fn on_record(&self, _: &Id, values: &Record<'_>, _: Context<'_, S>) {
        values.record(&mut Scanner { target: "span" });
    }

    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        event.record(&mut Scanner {
            target: event.metadata().target(),
        });
        if *event.metadata().level() == tracing::Level::ERROR {
            let mut line = Line(format!("{}:", event.metadata().target()));
            event.record(&mut line);
            keep_error(&mut ERRORS.lock().expect("error list"), line.0);
        }
    }
}

/// Moves `line` to the back of `errors`, counted once more, dropping the least recently logged
/// line when [`ERRORS_KEPT`] are kept.
fn keep_error(errors: &mut std::collections::VecDeque<(String, usize)>, line: String) {
    let times = match errors.iter().position(|(seen, _)| *seen == line) {
        Some(at) => errors.remove(at).map_or(1, |(_, times)| times + 1),
        None => 1,
    };
    if errors.len() == ERRORS_KEPT {
        errors.pop_front();
    }
    errors.push_back((line, times));
}

/// An event's fields written out on one line.
struct Line(String);

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        use std::fmt::Write;
        let _ = write!(self.0, " {}={value:?}", field.name());
    }
}

struct Scanner<'a> {
    target: &'a str,
}

impl Visit for Scanner<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        scan(self.target, field.name(), value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        scan(self.target, field.name(), &format!("{value:?}"));
    }
}

fn scan(target: &str, field: &str, text: &str) {
    for id in citizen_ids_in(text) {
        LEAKS.lock().expect("leak list").push(format!(
            "field `{field}` of `{target}` holds citizen ID {}",
            id.masked()
        ));
    }
}

/// Every valid citizen ID standing alone (no digit right before or after) in `text`.
pub fn citizen_ids_in(text: &str) -> Vec<CitizenId> {
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    if bytes.len() < 18 {
        return found;
    }
    for start in 0..=bytes.len() - 18 {
        let candidate = &bytes[start..start + 18];
        let starts_alone = start == 0 || !bytes[start - 1].is_ascii_digit();
        let ends_alone = start + 18 == bytes.len() || !bytes[start + 18].is_ascii_digit();
        let shaped = candidate[..17].iter().all(u8::is_ascii_digit)
            && (candidate[17].is_ascii_digit() || candidate[17] == b'X' || candidate[17] == b'x');
        if starts_alone
            && ends_alone
            && shaped
            && let Ok(id) = CitizenId::parse(std::str::from_utf8(candidate).expect("ASCII"))
        {
            found.push(id);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves a flood of one line keeps a single counted entry, so a rarer line logged before
    // it is still there, and that the least recently logged line goes first when full.
    #[test]
    fn a_flood_of_one_error_does_not_push_out_another() {
        let mut errors = std::collections::VecDeque::new();
        keep_error(&mut errors, "rare".to_owned());
        for _ in 0..(ERRORS_KEPT * 2) {
            keep_error(&mut errors, "flood".to_owned());
        }
        assert_eq!(
            Vec::from(errors.clone()),
            vec![
                ("rare".to_owned(), 1),
                ("flood".to_owned(), ERRORS_KEPT * 2)
            ]
        );
        for n in 0..ERRORS_KEPT - 1 {
            keep_error(&mut errors, format!("line {n}"));
        }
        assert_eq!(errors.len(), ERRORS_KEPT);
        assert_eq!(errors.front().map(|(line, _)| line.as_str()), Some("flood"));
    }

    // Proves the watch sees a citizen ID in an event field, a span attribute and a debug value,
    // and stays quiet about card numbers, person numbers and invalid 18-digit runs.
    #[test]
    fn the_watch_sees_what_it_must_and_nothing_else() {
        assert_eq!(citizen_ids_in("certno=11010519491231002X.").len(), 1);
        assert_eq!(
            citizen_ids_in("card 370100000000018 person 3701000000000001").len(),
            0
        );
        assert_eq!(
            citizen_ids_in("110105194912310021"),
            vec![],
            "wrong check digit"
        );
        assert_eq!(
            citizen_ids_in("911010519491231002X"),
            vec![],
            "part of a longer number"
        );

        let subscriber = tracing_subscriber::Registry::default().with(Watch);
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(certno = "11010519491231002X", "lookup");
            let span = tracing::info_span!("request", person = ?("440524188001010014",));
            span.record("person", "nothing");
        });
        let seen = leaks();
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert!(
            seen.iter().all(|leak| !leak.contains("1949123")),
            "the report masks the ID"
        );
    }
}
