//! Function logs: every line a function process writes is appended, as one JSON object per
//! line, to `<log dir>/<function>.log`, next to the platform lines this runtime adds (start and
//! report of each invocation, as Lambda's JSON log format does). Reading them back, merged and
//! filtered by `transaction_id`, is what `cargo xtask local logs` shows.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::LocalError;

/// Appends log lines of one function to its file; shared by all its processes.
#[derive(Debug, Clone)]
pub struct LogSink {
    path: PathBuf,
    file: Arc<Mutex<File>>,
}

impl LogSink {
    /// Opens (creating it and its folder if needed) `<dir>/<function>.log` for appending.
    pub fn open(dir: &Path, function: &str) -> Result<LogSink, LocalError> {
        std::fs::create_dir_all(dir).map_err(LocalError::io("create", dir))?;
        let path = dir.join(format!("{function}.log"));
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(LocalError::io("open", &path))?;
        Ok(LogSink {
            path,
            file: Arc::new(Mutex::new(file)),
        })
    }

    /// The log file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes one line of a process's output: JSON objects as they are, anything else wrapped
    /// in `{"time", "stream", "message"}` so that the file stays one JSON object per line.
    pub fn process_line(&self, stream: &str, line: &str) {
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            return;
        }
        if trimmed.starts_with('{') && serde_json::from_str::<Value>(trimmed).is_ok() {
            self.write(trimmed);
        } else {
            let wrapped = json!({"time": now_rfc3339(), "stream": stream, "message": trimmed});
            self.write(&wrapped.to_string());
        }
    }

    /// Writes a platform record (`platform.start`, `platform.report`, ...) in Lambda's JSON log
    /// shape: `{"time", "type", "record"}`.
    pub fn platform(&self, kind: &str, record: Value) {
        let line = json!({"time": now_rfc3339(), "type": kind, "record": record});
        self.write(&line.to_string());
    }

    fn write(&self, line: &str) {
        let mut file = self
            .file
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        // A full disk must not take the function down; the line is lost, as on a broken pipe.
        let _ = writeln!(file, "{line}");
    }
}

/// One line of a function's log, as read back.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    /// The function (the log file's stem).
    pub function: String,
    /// The line, parsed.
    pub entry: Value,
}

impl LogLine {
    /// The line's timestamp as written (`time` or `timestamp`), for ordering.
    pub fn time(&self) -> &str {
        ["time", "timestamp"]
            .iter()
            .find_map(|key| self.entry.get(key).and_then(Value::as_str))
            .unwrap_or("")
    }
}

/// Reads every `*.log` file of `dir` and returns the lines ordered by time (lines of one file
/// keep their order). With `transaction`, it keeps the lines whose `transaction_id` (at the top
/// level or in `fields`/`span`, where `tracing` JSON output puts it) equals it, plus the lines
/// that name no transaction but belong to an invocation that did: the runtime's own error line
/// for a failed handler and the `platform.*` records (duration, status) of that invocation.
pub fn read_logs(dir: &Path, transaction: Option<&str>) -> Result<Vec<LogLine>, LocalError> {
    let mut lines = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(lines),
        Err(e) => return Err(LocalError::io("read", dir)(e)),
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "log"))
        .collect();
    files.sort();
    for path in files {
        let function = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text = std::fs::read_to_string(&path).map_err(LocalError::io("read", &path))?;
        for line in text.lines() {
            let Ok(entry) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            lines.push(LogLine {
                function: function.clone(),
                entry,
            });
        }
    }
    if let Some(id) = transaction {
        let requests: HashSet<String> = lines
            .iter()
            .filter(|line| mentions_transaction(&line.entry, id))
            .filter_map(|line| request_id(&line.entry))
            .collect();
        lines.retain(|line| {
            mentions_transaction(&line.entry, id)
                || (transaction_ids(&line.entry).is_empty()
                    && request_id(&line.entry).is_some_and(|r| requests.contains(&r)))
        });
    }
    // A stable sort keeps each file's own order among equal timestamps.
    lines.sort_by(|a, b| a.time().cmp(b.time()));
    Ok(lines)
}

/// The places of a line where `tracing` JSON output and the platform records put fields.
fn field_holders(entry: &Value) -> impl Iterator<Item = &Value> {
    [entry.get("fields"), entry.get("span"), entry.get("record")]
        .into_iter()
        .flatten()
        .chain(std::iter::once(entry))
        .chain(
            entry
                .get("spans")
                .and_then(Value::as_array)
                .into_iter()
                .flatten(),
        )
}

fn transaction_ids(entry: &Value) -> Vec<&str> {
    field_holders(entry)
        .filter_map(|holder| holder.get("transaction_id").and_then(Value::as_str))
        .collect()
}

fn mentions_transaction(entry: &Value, id: &str) -> bool {
    transaction_ids(entry).contains(&id)
}

/// The Lambda request id of a line: `requestId` of the runtime's span, or of a platform record.
fn request_id(entry: &Value) -> Option<String> {
    field_holders(entry)
        .find_map(|holder| holder.get("requestId").and_then(Value::as_str))
        .map(str::to_owned)
}

/// The current time as RFC 3339 UTC with milliseconds, e.g. `2026-11-27T00:41:49.123Z`.
pub fn now_rfc3339() -> String {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format_rfc3339(since_epoch.as_millis())
}

/// Formats milliseconds since the Unix epoch as RFC 3339 UTC with milliseconds.
pub fn format_rfc3339(epoch_millis: u128) -> String {
    let secs = (epoch_millis / 1000) as i64;
    let millis = (epoch_millis % 1000) as u32;
    let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
    let seconds_of_day = secs.rem_euclid(86_400);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        seconds_of_day / 3600,
        seconds_of_day % 3600 / 60,
        seconds_of_day % 60
    )
}

pub(crate) use sagaform_contract::time::civil_from_days;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_epoch_and_leap_day() {
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00.000Z");
        // 2024-02-29T12:34:56.789Z
        assert_eq!(
            format_rfc3339(1_709_210_096_789),
            "2024-02-29T12:34:56.789Z"
        );
    }

    #[test]
    fn a_transaction_brings_the_unnamed_lines_of_its_invocations_and_no_other_sagas() {
        let dir = std::env::temp_dir().join(format!("sagaform-logs-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let lines = [
            json!({"timestamp": "2026-01-01T00:00:01.000Z", "requestId": "r1", "transaction_id": "t1", "message": "task failed"}),
            json!({"timestamp": "2026-01-01T00:00:02.000Z", "requestId": "r1", "message": "Diagnostic { .. }"}),
            json!({"time": "2026-01-01T00:00:03.000Z", "type": "platform.report", "record": {"requestId": "r1"}}),
            json!({"timestamp": "2026-01-01T00:00:04.000Z", "requestId": "r1", "transaction_id": "t2", "message": "other saga of the batch"}),
            json!({"timestamp": "2026-01-01T00:00:05.000Z", "requestId": "r2", "message": "another invocation"}),
        ];
        let text: Vec<String> = lines.iter().map(Value::to_string).collect();
        std::fs::write(dir.join("fn.log"), text.join("\n")).unwrap();
        let found = read_logs(&dir, Some("t1")).unwrap();
        let messages: Vec<&str> = found
            .iter()
            .map(|l| {
                l.entry["message"]
                    .as_str()
                    .or(l.entry["type"].as_str())
                    .unwrap()
            })
            .collect();
        assert_eq!(
            messages,
            ["task failed", "Diagnostic { .. }", "platform.report"]
        );
        assert_eq!(read_logs(&dir, None).unwrap().len(), 5);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn finds_transaction_id_where_tracing_json_puts_it() {
        let top = json!({"transaction_id": "t1"});
        let fields = json!({"fields": {"transaction_id": "t1"}});
        let span = json!({"span": {"transaction_id": "t1"}});
        let spans = json!({"spans": [{"name": "x"}, {"transaction_id": "t1"}]});
        for entry in [top, fields, span, spans] {
            assert!(mentions_transaction(&entry, "t1"), "{entry}");
            assert!(!mentions_transaction(&entry, "t2"), "{entry}");
        }
    }
}
