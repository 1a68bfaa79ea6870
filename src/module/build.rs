//! `apply --rebuild`: turn the patched chan_sip.c into a chan_sip.so with as little work as the
//! tree allows.
//!
//! In a configured and built tree only chan_sip needs compiling. The command that does exactly
//! that in real Asterisk (1.4 and later) is `make channels` from the top of the tree:
//! - a module directory's Makefile cannot run on its own (`make -C channels chan_sip.so`): it
//!   includes `$(ASTTOPDIR)/Makefile.moddir_rules` and gets the include path and the menuselect
//!   flags from variables the top-level Makefile exports, so it either fails or compiles with
//!   different flags than the rest of the tree;
//! - `make channels` is the top-level Makefile's own target for that directory: it refreshes
//!   the generated headers first (each is replaced only when its text changes), then runs the
//!   directory's make, whose `.d` dependency files rebuild chan_sip.o and chan_sip.so and
//!   nothing else;
//! - a plain top-level `make` would give the same module but walks every directory and
//!   regenerates the XML documentation from all sources, which costs far more than chan_sip.
//!
//! Trees without `MOD_SUBDIRS` (1.2 and older) have no per-directory target; there the
//! top-level `make` is the rebuild, still incremental. A tree that is not configured gets
//! `./configure` and the full `make`, with a notice of how long that takes.
use std::collections::VecDeque;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::{Error, Result};

/// Receives a build's stages and the steps parsed from make's output.
pub trait Progress {
    /// A new stage starts; `expected_steps` is how many compile/link steps it probably has.
    fn stage(&mut self, stage: Stage, expected_steps: Option<u64>);
    fn step(&mut self, step: &Step);
    /// Something the operator should read (e.g. "this will take 20 min").
    fn notice(&mut self, text: &str);
    fn finish(&mut self);
}

/// How far the tree got before astpatch touched it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TreeState {
    /// Has a `configure` script but no `makeopts`: `./configure` has not run.
    Unconfigured,
    /// Configured (or needs no configure), but chan_sip was never compiled.
    Configured,
    /// chan_sip.o or chan_sip.so exists: only chan_sip needs rebuilding.
    Built,
}

pub fn tree_state(root: &Path) -> TreeState {
    let chan = root.join("channels");
    if chan.join("chan_sip.o").exists() || chan.join("chan_sip.so").exists() {
        TreeState::Built
    } else if root.join("makeopts").exists() || !root.join("configure").exists() {
        TreeState::Configured
    } else {
        TreeState::Unconfigured
    }
}

/// Whether the top-level Makefile has per-directory targets (`make channels`).
fn has_directory_targets(root: &Path) -> bool {
    fs::read(root.join("Makefile"))
        .map(|m| memchr::memmem::find(&m, b"MOD_SUBDIRS").is_some())
        .unwrap_or(false)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    Configure,
    /// Only chan_sip (module-only rebuild).
    Module,
    /// The whole tree.
    Full,
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stage::Configure => "configure",
            Stage::Module => "rebuild chan_sip",
            Stage::Full => "full build",
        })
    }
}

/// One command of a rebuild.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Invocation {
    pub stage: Stage,
    pub program: String,
    pub args: Vec<String>,
}

impl std::fmt::Display for Invocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.program)?;
        for a in &self.args {
            write!(f, " {a}")?;
        }
        Ok(())
    }
}

/// The commands for a tree in `state`; `directory_targets` is [`has_directory_targets`].
/// Trees without directory targets (1.2 and older) get no `-j`: their top-level `all` lists
/// `depend`, the binary and `subdirs` side by side, which were never meant to run in parallel.
pub fn plan(state: TreeState, directory_targets: bool, jobs: usize) -> Vec<Invocation> {
    let make = |stage, extra: &[&str]| Invocation {
        stage,
        program: "make".into(),
        args: directory_targets
            .then(|| format!("-j{jobs}"))
            .into_iter()
            .chain(extra.iter().map(|s| s.to_string()))
            .collect(),
    };
    match state {
        TreeState::Built if directory_targets => vec![make(Stage::Module, &["channels"])],
        TreeState::Built => vec![make(Stage::Module, &[])],
        TreeState::Configured => vec![make(Stage::Full, &[])],
        TreeState::Unconfigured => vec![
            Invocation {
                stage: Stage::Configure,
                program: "./configure".into(),
                args: vec![],
            },
            make(Stage::Full, &[]),
        ],
    }
}

/// What a line of make output says is being built.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    /// `CC`, `LD`, `CXX`, `GEN`... (`CC`/`LD` for raw compiler lines of old trees).
    pub tool: String,
    pub input: String,
    pub output: String,
}

/// Parse `   [CC] chan_sip.c -> chan_sip.o`, or a raw `gcc ... -o X` line (1.2 and older print
/// the commands themselves).
pub fn parse_step(line: &str) -> Option<Step> {
    let t = line.trim_start();
    if let Some(rest) = t.strip_prefix('[') {
        let (tool, rest) = rest.split_once(']')?;
        if tool.is_empty() || !tool.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return None;
        }
        let (input, output) = rest.split_once(" -> ")?;
        return Some(Step {
            tool: tool.to_owned(),
            input: input.trim().to_owned(),
            output: output.trim().to_owned(),
        });
    }
    let mut words = t.split_whitespace();
    let program = words.next()?;
    let name = program.rsplit('/').next().unwrap_or(program);
    if !(name == "cc" || name.ends_with("gcc") || name.starts_with("clang")) {
        return None;
    }
    let words: Vec<&str> = words.collect();
    let output = words
        .iter()
        .position(|w| *w == "-o")
        .and_then(|i| words.get(i + 1))?;
    let compile = words.contains(&"-c");
    let input = words
        .iter()
        .rev()
        .find(|w| w.ends_with(if compile { ".c" } else { ".o" }))
        .copied()
        .unwrap_or("");
    Some(Step {
        tool: if compile { "CC" } else { "LD" }.into(),
        input: input.to_owned(),
        output: (*output).to_owned(),
    })
}

/// The Debian package that provides what a failed `./configure` line says is missing.
pub fn missing_package(line: &str) -> Option<&'static str> {
    let l = line.to_ascii_lowercase();
    const KNOWN: &[(&str, &str)] = &[
        ("termcap", "libncurses-dev"),
        ("ncurses", "libncurses-dev"),
        ("libedit", "libedit-dev"),
        ("uuid", "uuid-dev"),
        ("jansson", "libjansson-dev"),
        ("sqlite3", "libsqlite3-dev"),
        ("libxml2", "libxml2-dev"),
        ("libxslt", "libxslt1-dev"),
        ("openssl", "libssl-dev"),
        ("no acceptable c compiler", "build-essential"),
        ("c compiler cannot create executables", "build-essential"),
        ("c++ preprocessor", "g++"),
        ("bzip2", "bzip2"),
        ("pkg-config", "pkg-config"),
    ];
    KNOWN
        .iter()
        .find(|(needle, _)| l.contains(needle))
        .map(|(_, pkg)| *pkg)
}

/// CPU seconds per C file in the tree for a full build. Measured on Asterisk 20.10.0 (gcc 12,
/// 2 cores): 937 .c files in the tree, 612 of them compiled, 386 CPU-seconds in all (0.41 s
/// per file), rounded up; 16.30.1 gave 339 s for 600 compiles.
const SECS_PER_C_FILE: f64 = 0.5;

/// Rough duration of a full build: C files in the tree over the parallel jobs.
pub fn estimate_full_build(c_files: usize, jobs: usize) -> Duration {
    Duration::from_secs_f64(c_files as f64 * SECS_PER_C_FILE / jobs.max(1) as f64)
}

fn count_c_files(root: &Path) -> usize {
    walkdir::WalkDir::new(root)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file() && e.path().extension().is_some_and(|x| x == "c"))
        .count()
}

/// Human form of a duration: "40 s", "12 min".
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s < 90 {
        format!("{} s", s.max(1))
    } else {
        format!("{} min", (s + 30) / 60)
    }
}

#[derive(Debug, Clone)]
pub struct RebuildOptions {
    pub jobs: usize,
    /// Where make's full output goes; default `<tree>/astpatch-build.log`.
    pub log: Option<PathBuf>,
}

impl Default for RebuildOptions {
    fn default() -> Self {
        RebuildOptions {
            jobs: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            log: None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RebuildReport {
    pub state_before: TreeState,
    pub commands: Vec<String>,
    /// Outputs compiled (`[CC]` and the like), in order.
    pub compiled: Vec<String>,
    /// Outputs linked (`[LD]`).
    pub linked: Vec<String>,
    pub module: PathBuf,
    pub log: PathBuf,
    pub elapsed_ms: u64,
}

const TAIL_LINES: usize = 20;

/// Rebuild chan_sip.so in `tree` (see the module comment for what runs when).
pub fn rebuild(
    tree: &Path,
    opts: &RebuildOptions,
    progress: &mut dyn Progress,
) -> Result<RebuildReport> {
    let started = Instant::now();
    refuse_disabled_chan_sip(tree)?;
    let state = tree_state(tree);
    let log_path = opts
        .log
        .clone()
        .unwrap_or_else(|| tree.join("astpatch-build.log"));
    let mut log = fs::File::create(&log_path).map_err(|e| Error::io(&log_path, e))?;
    let invocations = plan(state, has_directory_targets(tree), opts.jobs);
    if state != TreeState::Built {
        let what = if state == TreeState::Unconfigured {
            "not configured: running ./configure and a full make"
        } else {
            "configured but not built: running a full make"
        };
        progress.notice(&format!(
            "{} is {what}; expect about {} with {} jobs (later rebuilds compile only chan_sip)",
            tree.display(),
            human(estimate_full_build(count_c_files(tree), opts.jobs)),
            opts.jobs
        ));
    }
    let mut report = RebuildReport {
        state_before: state,
        commands: invocations.iter().map(|i| i.to_string()).collect(),
        compiled: Vec::new(),
        linked: Vec::new(),
        module: tree.join("channels/chan_sip.so"),
        log: log_path.clone(),
        elapsed_ms: 0,
    };
    for inv in &invocations {
        let expected = match inv.stage {
            Stage::Configure => None,
            Stage::Module => Some(2),
            Stage::Full => Some(count_c_files(tree) as u64),
        };
        progress.stage(inv.stage, expected);
        writeln!(log, "$ {inv}").map_err(|e| Error::io(&log_path, e))?;
        let outcome = run_logged(tree, inv, &mut log, &log_path, progress, &mut report)?;
        if let Some(code) = outcome.failed {
            progress.finish();
            return Err(failure(inv, code, &outcome.tail, &log_path));
        }
    }
    progress.finish();
    // A tree configured just now may have chan_sip off (Asterisk 19/20): say how to enable it.
    refuse_disabled_chan_sip(tree)?;
    check_module(tree, &report)?;
    report.elapsed_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}

/// chan_sip is deprecated in Asterisk 19/20 and off in menuselect by default there: make
/// would succeed without building it.
fn refuse_disabled_chan_sip(tree: &Path) -> Result<()> {
    let path = tree.join("menuselect.makeopts");
    let Ok(text) = fs::read_to_string(&path) else {
        return Ok(());
    };
    let disabled = text.lines().any(|l| {
        l.strip_prefix("MENUSELECT_CHANNELS=")
            .is_some_and(|v| v.split_whitespace().any(|m| m == "chan_sip"))
    });
    if disabled {
        return Err(Error::input(
            format!(
                "chan_sip is disabled in {}: make would not build it",
                path.display()
            ),
            Some(&format!(
                "enable it, then run again: cd {} && menuselect/menuselect --enable chan_sip menuselect.makeopts",
                tree.display()
            )),
        ));
    }
    Ok(())
}

struct Outcome {
    failed: Option<i32>,
    tail: VecDeque<String>,
}

fn run_logged(
    tree: &Path,
    inv: &Invocation,
    log: &mut fs::File,
    log_path: &Path,
    progress: &mut dyn Progress,
    report: &mut RebuildReport,
) -> Result<Outcome> {
    let mut child = Command::new(&inv.program)
        .args(&inv.args)
        .current_dir(tree)
        // configure's and gcc's messages in English, so they can be recognised.
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            let hint = if e.kind() == std::io::ErrorKind::NotFound {
                "install the build tools: apt-get install build-essential"
            } else {
                "check that the tree is readable and the script executable"
            };
            Error::environment(format!("cannot run {}: {e}", inv.program), Some(hint))
        })?;
    // stdout and stderr interleave into one stream, as on a terminal.
    let (tx, rx) = mpsc::channel::<String>();
    let readers: Vec<_> = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .flatten()
    .map(|r| {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut r = BufReader::new(r);
            let mut buf = Vec::new();
            while r
                .read_until(b'\n', &mut buf)
                .map(|n| n > 0)
                .unwrap_or(false)
            {
                let line = String::from_utf8_lossy(&buf).trim_end().to_owned();
                if tx.send(line).is_err() {
                    break;
                }
                buf.clear();
            }
        })
    })
    .collect();
    drop(tx);
    let mut tail = VecDeque::with_capacity(TAIL_LINES);
    for line in rx {
        writeln!(log, "{line}").map_err(|e| Error::io(log_path, e))?;
        if let Some(step) = parse_step(&line) {
            if step.tool == "LD" || step.tool == "LDXX" {
                report.linked.push(step.output.clone());
            } else {
                report.compiled.push(step.output.clone());
            }
            progress.step(&step);
        }
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    }
    for r in readers {
        let _ = r.join();
    }
    let status = child
        .wait()
        .map_err(|e| Error::environment(format!("waiting for {}: {e}", inv.program), None))?;
    log.flush().map_err(|e| Error::io(log_path, e))?;
    Ok(Outcome {
        failed: (!status.success()).then(|| status.code().unwrap_or(-1)),
        tail,
    })
}

fn failure(inv: &Invocation, code: i32, tail: &VecDeque<String>, log: &Path) -> Error {
    let last: Vec<&str> = tail.iter().map(String::as_str).collect();
    let shown = last.join("\n  ");
    if inv.stage == Stage::Configure {
        let reason = last
            .iter()
            .rev()
            .find(|l| l.contains("configure: error:"))
            .copied();
        if let Some(pkg) = reason.and_then(missing_package) {
            return Error::environment(
                format!(
                    "./configure failed: a build dependency is missing ({})\n  full output: {}",
                    reason.unwrap_or_default().trim(),
                    log.display()
                ),
                Some(&format!(
                    "install the Debian package {pkg} (apt-get install {pkg}), then run the same command again; nothing was installed"
                )),
            );
        }
    }
    Error::environment(
        format!(
            "`{inv}` failed (exit {code}) during {}; the module was not installed\n  last lines of {}:\n  {shown}",
            inv.stage,
            log.display()
        ),
        Some(&format!(
            "read {} for the whole output; fix the cause and run the same command again",
            log.display()
        )),
    )
}

/// After a successful make the module must exist and be newer than the source it came from.
fn check_module(tree: &Path, report: &RebuildReport) -> Result<()> {
    let so = &report.module;
    let src = tree.join(crate::asterisk::tree::CHAN_SIP);
    let so_time = fs::metadata(so).and_then(|m| m.modified()).map_err(|_| {
        Error::environment(
            format!(
                "make finished but {} was not built (see {})",
                so.display(),
                report.log.display()
            ),
            Some(
                "check that chan_sip is enabled in menuselect (`make menuselect`) and that its dependencies were found by ./configure",
            ),
        )
    })?;
    let src_time = fs::metadata(&src)
        .and_then(|m| m.modified())
        .map_err(|e| Error::io(&src, e))?;
    if so_time < src_time {
        return Err(Error::environment(
            format!(
                "make finished but {} is older than {}",
                so.display(),
                src.display()
            ),
            Some("remove channels/chan_sip.o and run the rebuild again"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_trees_rebuild_only_the_channels_directory() {
        let p = plan(TreeState::Built, true, 4);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].to_string(), "make -j4 channels");
        assert_eq!(p[0].stage, Stage::Module);
        assert_eq!(plan(TreeState::Built, false, 2)[0].to_string(), "make");
        assert_eq!(plan(TreeState::Configured, false, 2)[0].to_string(), "make");
        let p = plan(TreeState::Unconfigured, true, 2);
        let shown: Vec<String> = p.iter().map(|i| i.to_string()).collect();
        assert_eq!(shown, ["./configure", "make -j2"]);
        assert_eq!(plan(TreeState::Configured, true, 3)[0].stage, Stage::Full);
    }

    #[test]
    fn tree_state_follows_makeopts_and_objects() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir(d.path().join("channels")).unwrap();
        assert_eq!(
            tree_state(d.path()),
            TreeState::Configured,
            "no configure: 1.2-style"
        );
        fs::write(d.path().join("configure"), "").unwrap();
        assert_eq!(tree_state(d.path()), TreeState::Unconfigured);
        fs::write(d.path().join("makeopts"), "").unwrap();
        assert_eq!(tree_state(d.path()), TreeState::Configured);
        fs::write(d.path().join("channels/chan_sip.o"), "").unwrap();
        assert_eq!(tree_state(d.path()), TreeState::Built);
    }

    #[test]
    fn make_lines_become_steps() {
        let s = parse_step("   [CC] chan_sip.c -> chan_sip.o").unwrap();
        assert_eq!(
            (s.tool.as_str(), s.input.as_str(), s.output.as_str()),
            ("CC", "chan_sip.c", "chan_sip.o")
        );
        let s = parse_step("   [LD] chan_sip.o sip/config_parser.o -> chan_sip.so").unwrap();
        assert_eq!(s.output, "chan_sip.so");
        assert_eq!(s.tool, "LD");
        let s = parse_step("gcc -pipe  -Wall -D_REENTRANT -fPIC   -c -o chan_sip.o chan_sip.c")
            .unwrap();
        assert_eq!(
            (s.tool.as_str(), s.input.as_str(), s.output.as_str()),
            ("CC", "chan_sip.c", "chan_sip.o")
        );
        let s = parse_step("gcc -shared -Xlinker -x -o chan_sip.so chan_sip.o").unwrap();
        assert_eq!((s.tool.as_str(), s.output.as_str()), ("LD", "chan_sip.so"));
        for noise in [
            "make[1]: Entering directory '/usr/src/asterisk/channels'",
            "chan_sip.c:123:5: warning: unused variable 'x' [-Wunused-variable]",
            "[1/3] nothing",
            " +--------- Asterisk Build Complete ---------+",
            "",
        ] {
            assert_eq!(parse_step(noise), None, "{noise}");
        }
    }

    #[test]
    fn configure_errors_name_the_package() {
        let cases = [
            (
                "configure: error: *** termcap support not found (on modern systems, this typically means the ncurses development package is missing)",
                "libncurses-dev",
            ),
            (
                "configure: error: *** Please install the 'libedit' development package.",
                "libedit-dev",
            ),
            (
                "configure: error: *** uuid support not found (this typically means the uuid development package is missing)",
                "uuid-dev",
            ),
            (
                "configure: error: *** Please install the SQLite3 development package.",
                "libsqlite3-dev",
            ),
            (
                "configure: error: no acceptable C compiler found in $PATH",
                "build-essential",
            ),
        ];
        for (line, pkg) in cases {
            assert_eq!(missing_package(line), Some(pkg), "{line}");
        }
        assert_eq!(
            missing_package("configure: error: bad value x for --enable-dev-mode"),
            None
        );
    }

    #[test]
    fn estimates_scale_with_files_and_jobs() {
        assert_eq!(estimate_full_build(937, 2), Duration::from_secs_f64(234.25));
        assert_eq!(human(estimate_full_build(937, 2)), "4 min");
        assert_eq!(human(Duration::from_millis(200)), "1 s");
    }
}
