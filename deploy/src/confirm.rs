//! Asking a person before risky changes, without ever hanging: with `--yes` every question is
//! approved, on a terminal the question is asked on stderr and answered on stdin, and without a
//! terminal the answer is "cannot ask", which callers turn into a refusal naming `--yes`.

use std::io::{BufRead, IsTerminal, Write};

use crate::Refusal;

/// What approval a question needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// `y` or `yes`.
    YesNo,
    /// Exactly this text (the stack name, before a destroy).
    Exactly(String),
}

/// An operator's answer to a confirmation question.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfirmAnswer {
    /// Approved.
    Yes,
    /// Declined (or the typed text did not match).
    No,
    /// Nobody to ask: stdin is not a terminal.
    CannotAsk,
}

impl ConfirmAnswer {
    /// `Ok` when approved, else the refusal for `what`: declined, or nobody to ask (which names
    /// `--yes`).
    pub fn require(self, what: String) -> Result<(), Refusal> {
        match self {
            ConfirmAnswer::Yes => Ok(()),
            ConfirmAnswer::No => Err(Refusal::NotConfirmed { what }),
            ConfirmAnswer::CannotAsk => Err(Refusal::NeedsConfirmation { what }),
        }
    }
}

/// Something that approves or declines.
pub trait Confirm: Send + Sync {
    /// Asks `question`.
    fn ask(&self, question: &str, expect: &Expect) -> ConfirmAnswer;
}

/// Approves everything (`--yes`).
#[derive(Debug, Clone, Copy, Default)]
pub struct AssumeYes;

impl Confirm for AssumeYes {
    fn ask(&self, _question: &str, _expect: &Expect) -> ConfirmAnswer {
        ConfirmAnswer::Yes
    }
}

/// Asks on the terminal; answers [`ConfirmAnswer::CannotAsk`] when stdin is not one.
#[derive(Debug, Clone, Copy, Default)]
pub struct TerminalConfirm;

impl Confirm for TerminalConfirm {
    fn ask(&self, question: &str, expect: &Expect) -> ConfirmAnswer {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return ConfirmAnswer::CannotAsk;
        }
        let prompt = match expect {
            Expect::YesNo => format!("{question} [y/N] "),
            Expect::Exactly(text) => format!("{question}\nType {text} to confirm: "),
        };
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "{prompt}");
        let _ = err.flush();
        drop(err);
        let mut line = String::new();
        if stdin.lock().read_line(&mut line).is_err() {
            return ConfirmAnswer::No;
        }
        let line = line.trim();
        let approved = match expect {
            Expect::YesNo => matches!(line.to_ascii_lowercase().as_str(), "y" | "yes"),
            Expect::Exactly(text) => line == text,
        };
        if approved {
            ConfirmAnswer::Yes
        } else {
            ConfirmAnswer::No
        }
    }
}

/// Never able to ask, as in CI without `--yes`.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoTerminal;

impl Confirm for NoTerminal {
    fn ask(&self, _question: &str, _expect: &Expect) -> ConfirmAnswer {
        ConfirmAnswer::CannotAsk
    }
}

/// Declines everything (a person who says no).
#[derive(Debug, Clone, Copy, Default)]
pub struct AlwaysNo;

impl Confirm for AlwaysNo {
    fn ask(&self, _question: &str, _expect: &Expect) -> ConfirmAnswer {
        ConfirmAnswer::No
    }
}
