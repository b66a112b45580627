//! The JSON log lines a saga writes, captured from the formatter the Lambda functions install,
//! for the tests that check what the alarms' metric filters count.

use std::io;
use std::sync::{Arc, Mutex};

use sagaform_contract::log;
use sagaform_runtime::telemetry::json_subscriber;
use serde_json::Value;
use tracing::subscriber::DefaultGuard;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// Where the captured lines go: a shared buffer.
#[derive(Clone, Default)]
pub struct LogCapture(Arc<Mutex<Vec<u8>>>);

impl io::Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().expect("log capture").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'w> MakeWriter<'w> for LogCapture {
    type Writer = LogCapture;
    fn make_writer(&'w self) -> Self::Writer {
        self.clone()
    }
}

impl LogCapture {
    /// Captures, at `info` and above, what this thread logs until the guard is dropped. Use a
    /// current-thread runtime, so every event of the saga runs on this thread.
    pub fn install(&self) -> DefaultGuard {
        tracing::subscriber::set_default(json_subscriber(EnvFilter::new("info"), self.clone()))
    }

    /// Every line so far, each a JSON object.
    pub fn lines(&self) -> Vec<Value> {
        let text = String::from_utf8(self.0.lock().expect("log capture").clone())
            .expect("log lines are UTF-8");
        text.lines()
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("not one JSON object per line ({e}): {line}"))
            })
            .collect()
    }

    /// The one line an alarm's metric filter counted, which must carry `outcome` and the saga's
    /// `transaction_id`; panics, showing what was counted, when there is not exactly one.
    #[track_caller]
    pub fn the_one_counted(&self, outcome: &str, transaction_id: &str) -> Value {
        let counted = self.counted();
        assert_eq!(counted.len(), 1, "lines counted by the alarm: {counted:?}");
        let line = counted.into_iter().next().expect("one counted line");
        assert_eq!(line[log::OUTCOME_FIELD], outcome, "{line}");
        assert_eq!(line["transaction_id"], transaction_id, "{line}");
        line
    }

    /// The lines an alarm's metric filter counts: those carrying the `outcome` field.
    pub fn counted(&self) -> Vec<Value> {
        self.lines()
            .into_iter()
            .filter(|line| line.get(log::OUTCOME_FIELD).is_some())
            .collect()
    }
}
