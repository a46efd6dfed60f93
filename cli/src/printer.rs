//! The one place that writes to the terminal.
//!
//! Data goes to stdout; messages, warnings and errors to stderr, in colour
//! only when stderr is a terminal and `NO_COLOR` is unset.

use std::io::{IsTerminal, Write};

use crate::commands::Failure;

#[derive(Debug, Clone)]
pub struct Printer {
    color: bool,
}

impl Printer {
    pub fn from_env() -> Printer {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Printer {
            color: !no_color && std::io::stderr().is_terminal(),
        }
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    /// A line of data on stdout.
    pub fn data(&self, line: &str) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
    }

    /// An informational message on stderr.
    pub fn info(&self, message: &str) {
        let _ = writeln!(std::io::stderr().lock(), "{message}");
    }

    pub fn warn(&self, message: &str) {
        let label = self.paint("1;33", "warning");
        let _ = writeln!(std::io::stderr().lock(), "{label}: {message}");
    }

    pub fn error(&self, failure: &Failure) {
        let mut err = std::io::stderr().lock();
        let label = self.paint("1;31", "error");
        let _ = writeln!(err, "{label}: {}", failure.message);
        for cause in &failure.causes {
            let _ = writeln!(err, "  caused by: {cause}");
        }
        if let Some(hint) = &failure.hint {
            let _ = writeln!(err, "{}: {hint}", self.paint("1;36", "hint"));
        }
    }
}
