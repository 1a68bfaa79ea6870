//! How a long build shows itself: a bar on a terminal, one plain line per step when piped.
use std::io::Write;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::module::build::{Progress, Stage, Step};

/// One line per event on a writer (stderr when piped; a buffer in tests).
pub struct PlainProgress<W: Write> {
    out: W,
}

impl<W: Write> PlainProgress<W> {
    pub fn new(out: W) -> Self {
        PlainProgress { out }
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

impl<W: Write> Progress for PlainProgress<W> {
    fn stage(&mut self, stage: Stage, _expected: Option<u64>) {
        let _ = writeln!(self.out, "build: {stage}");
    }
    fn step(&mut self, step: &Step) {
        let _ = writeln!(
            self.out,
            "build:   [{}] {} -> {}",
            step.tool, step.input, step.output
        );
    }
    fn notice(&mut self, text: &str) {
        let _ = writeln!(self.out, "note: {text}");
    }
    fn finish(&mut self) {
        let _ = self.out.flush();
    }
}

/// An indicatif bar on stderr: stage as prefix, current target as message.
pub struct TermProgress {
    bar: Option<ProgressBar>,
}

impl TermProgress {
    pub fn new() -> Self {
        TermProgress { bar: None }
    }
}

impl Default for TermProgress {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress for TermProgress {
    fn stage(&mut self, stage: Stage, expected: Option<u64>) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
        let bar = match expected {
            Some(n) => ProgressBar::new(n.max(1)).with_style(
                ProgressStyle::with_template(
                    "{prefix:>16.bold} [{bar:30}] {pos}/{len} {wide_msg} {elapsed}",
                )
                .expect("static template")
                .progress_chars("=> "),
            ),
            None => ProgressBar::new_spinner().with_style(
                ProgressStyle::with_template("{prefix:>16.bold} {spinner} {wide_msg} {elapsed}")
                    .expect("static template"),
            ),
        };
        bar.set_prefix(stage.to_string());
        bar.enable_steady_tick(Duration::from_millis(120));
        self.bar = Some(bar);
    }
    fn step(&mut self, step: &Step) {
        if let Some(b) = &self.bar {
            if b.length().is_some_and(|len| b.position() + 1 > len) {
                b.set_length(b.position() + 1);
            }
            b.inc(1);
            b.set_message(format!("[{}] {}", step.tool, step.output));
        }
    }
    fn notice(&mut self, text: &str) {
        match &self.bar {
            Some(b) => b.println(format!("note: {text}")),
            None => eprintln!("note: {text}"),
        }
    }
    fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}
