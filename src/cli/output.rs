//! Terminal conventions shared by every command: colour only on a terminal and never with
//! `NO_COLOR`, progress only on a terminal, JSON for machines.
use std::io::IsTerminal;

/// How a command should present itself, decided once at start-up.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    pub color: bool,
    pub interactive: bool,
}

impl Style {
    pub fn detect() -> Self {
        let tty = std::io::stdout().is_terminal();
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Style {
            color: tty && !no_color,
            interactive: std::io::stderr().is_terminal(),
        }
    }

    /// A style with no colour and no progress: what tests and pipes get.
    pub fn plain() -> Self {
        Style {
            color: false,
            interactive: false,
        }
    }

    pub fn ok(&self, s: &str) -> String {
        self.paint("32", s)
    }
    pub fn bad(&self, s: &str) -> String {
        self.paint("31", s)
    }
    pub fn warn(&self, s: &str) -> String {
        self.paint("33", s)
    }
    pub fn bold(&self, s: &str) -> String {
        self.paint("1", s)
    }

    fn paint(&self, code: &str, s: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_owned()
        }
    }
}

/// Print a value as pretty JSON on stdout.
pub fn print_json<T: serde::Serialize>(value: &T) {
    // Serialising our own plain data types cannot fail.
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("serialisable")
    );
}
