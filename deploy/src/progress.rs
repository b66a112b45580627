//! Progress output for long steps (build, upload, change set, stack events).
//!
//! On a terminal, a transient status line with a spinner is rewritten in place and permanent
//! lines scroll above it; anywhere else (CI logs, pipes, files) every status change becomes a
//! plain line, so logs stay readable and nothing depends on escape codes. Everything goes to
//! stderr: stdout is kept for results (`--json`).

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::Instant;

const SPINNER: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

/// Where progress goes.
#[derive(Debug, Clone)]
enum Sink {
    /// stderr is a terminal: spinner and line rewriting.
    Terminal,
    /// stderr is not a terminal: plain lines.
    Plain,
    /// Kept in memory (tests and benchmarks assert on or hide the messages).
    Capture(Arc<Mutex<Vec<String>>>),
}

#[derive(Debug, Default)]
struct State {
    status_shown: bool,
    last_status: String,
    frame: usize,
}

/// A progress reporter; cheap to share by reference across async steps.
#[derive(Debug)]
pub struct Progress {
    sink: Sink,
    start: Instant,
    state: Mutex<State>,
}

impl Progress {
    /// Progress on stderr: live when stderr is a terminal, plain lines otherwise.
    pub fn stderr() -> Progress {
        let sink = if std::io::stderr().is_terminal() {
            Sink::Terminal
        } else {
            Sink::Plain
        };
        Progress::with_sink(sink)
    }

    /// Plain lines on stderr, whatever stderr is.
    pub fn plain() -> Progress {
        Progress::with_sink(Sink::Plain)
    }

    /// Progress kept in memory; the returned handle reads the lines.
    pub fn capture() -> (Progress, CapturedLines) {
        let lines = Arc::new(Mutex::new(Vec::new()));
        (
            Progress::with_sink(Sink::Capture(Arc::clone(&lines))),
            CapturedLines(lines),
        )
    }

    fn with_sink(sink: Sink) -> Progress {
        Progress {
            sink,
            start: Instant::now(),
            state: Mutex::new(State::default()),
        }
    }

    /// Seconds since this reporter was created.
    pub fn elapsed_secs(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// A permanent line.
    pub fn line(&self, message: impl AsRef<str>) {
        let message = message.as_ref();
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match &self.sink {
            Sink::Terminal => {
                let mut err = std::io::stderr().lock();
                if state.status_shown {
                    let _ = write!(err, "\r\x1b[2K");
                    state.status_shown = false;
                }
                let _ = writeln!(err, "{message}");
            }
            Sink::Plain => eprintln!("{message}"),
            Sink::Capture(lines) => lines
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(message.to_owned()),
        }
    }

    /// A transient status: rewritten in place on a terminal, a plain line elsewhere (only when
    /// it changed, so polling loops do not flood logs).
    pub fn status(&self, message: impl AsRef<str>) {
        let message = message.as_ref();
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match &self.sink {
            Sink::Terminal => {
                state.frame = (state.frame + 1) % SPINNER.len();
                let mut err = std::io::stderr().lock();
                let _ = write!(err, "\r\x1b[2K{} {message}", SPINNER[state.frame]);
                let _ = err.flush();
                state.status_shown = true;
            }
            Sink::Plain | Sink::Capture(_) => {
                if state.last_status == message {
                    return;
                }
                state.last_status = message.to_owned();
                drop(state);
                self.line(message);
            }
        }
    }

    /// A heartbeat of a polling loop (elapsed time, counters): shown on a terminal only, since
    /// in a log it would add a line per poll; the loop's events are permanent lines anyway.
    pub fn tick(&self, message: impl AsRef<str>) {
        if matches!(self.sink, Sink::Terminal) {
            self.status(message);
        }
    }

    /// Removes a transient status line, if one is shown.
    pub fn clear_status(&self) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if matches!(self.sink, Sink::Terminal) && state.status_shown {
            let _ = write!(std::io::stderr().lock(), "\r\x1b[2K");
            state.status_shown = false;
        }
        state.last_status.clear();
    }
}

/// The lines captured by [`Progress::capture`].
#[derive(Debug, Clone)]
pub struct CapturedLines(Arc<Mutex<Vec<String>>>);

impl CapturedLines {
    /// Every line so far.
    pub fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Every line so far, joined by newlines.
    pub fn text(&self) -> String {
        self.lines().join("\n")
    }
}
