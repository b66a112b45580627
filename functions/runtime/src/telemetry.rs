//! JSON logs for the Lambda functions: one JSON object per line, with the fields of every span
//! the event is in flattened next to the event's own fields, so each line of a saga carries its
//! `transaction_id` (from the engine's span) and the Lambda request id (from the runtime's
//! invocation span, `requestId`) without anyone repeating them at every call site.
//!
//! tracing-subscriber's own JSON format nests span fields under `span`/`spans`, which CloudWatch
//! Logs Insights and metric filters cannot match as `$.transaction_id`; hence this formatter.

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

use crate::model::now_rfc3339;

/// Formats each event as one JSON line: `timestamp`, `level`, `target`, the fields of the
/// enclosing spans (outermost first, inner ones win), then the event's fields (`message`, ...).
#[derive(Debug, Clone, Copy, Default)]
pub struct FlatJson;

impl<S, N> FormatEvent<S, N> for FlatJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let metadata = event.metadata();
        let mut line = Map::new();
        line.insert("timestamp".into(), now_rfc3339().into());
        line.insert("level".into(), metadata.level().as_str().into());
        line.insert("target".into(), metadata.target().into());
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let extensions = span.extensions();
                // With `JsonFields` as the field formatter, a span's fields are stored as a JSON
                // object; spans recorded by another formatter are skipped rather than garbled.
                if let Some(fields) = extensions.get::<FormattedFields<N>>()
                    && let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(fields)
                {
                    line.extend(fields);
                }
            }
        }
        event.record(&mut JsonFieldVisitor(&mut line));
        writeln!(writer, "{}", Value::Object(line))
    }
}

/// Collects an event's fields into a JSON object.
struct JsonFieldVisitor<'a>(&'a mut Map<String, Value>);

impl Visit for JsonFieldVisitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0.insert(field.name().into(), value.to_string().into());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
}

/// The subscriber of [`init_json_logging`], writing to `writer` (tests capture the lines).
pub fn json_subscriber<W>(filter: EnvFilter, writer: W) -> impl Subscriber + Send + Sync
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .fmt_fields(JsonFields::new())
        .event_format(FlatJson)
        .with_writer(writer)
        .finish()
}

/// Installs JSON logging to stdout for the process, filtered by `RUST_LOG` (default `info`).
///
/// Call once at function init. A second call (or a subscriber installed by someone else) leaves
/// the first one in place: logging set-up is not a reason to fail an invocation.
pub fn init_json_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _already_installed =
        tracing::subscriber::set_global_default(json_subscriber(filter, std::io::stdout));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'w> MakeWriter<'w> for Capture {
        type Writer = Capture;
        fn make_writer(&'w self) -> Self::Writer {
            self.clone()
        }
    }

    #[test]
    fn span_fields_are_flattened_into_every_line_and_inner_spans_win() {
        let capture = Capture::default();
        let subscriber = json_subscriber(EnvFilter::new("info"), capture.clone());
        tracing::subscriber::with_default(subscriber, || {
            let invocation =
                tracing::info_span!("invocation", requestId = "req-1", scope = "outer");
            let _invocation = invocation.enter();
            let saga = tracing::info_span!("saga", transaction_id = "tx-1", scope = "inner");
            let _saga = saga.enter();
            tracing::info!(step = "payment", attempts = 2u32, "step succeeded");
        });
        let text = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 1, "{text}");
        let line = &lines[0];
        assert_eq!(line["transaction_id"], "tx-1");
        assert_eq!(line["requestId"], "req-1");
        assert_eq!(line["scope"], "inner");
        assert_eq!(line["step"], "payment");
        assert_eq!(line["attempts"], 2);
        assert_eq!(line["message"], "step succeeded");
        assert_eq!(line["level"], "INFO");
    }
}
