//! Running the binary under test and giving it a scratch world, in one place (fd's `TestEnv`,
//! ripgrep's `TestCommand`): every test runs astpatch the way an operator's shell would (no
//! colour), captures what it said, and asserts on the exit code with the output in the message.
use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// One run of the binary being built up.
pub struct Astpatch {
    cmd: Command,
    stdin: Option<Vec<u8>>,
}

/// The binary, run here.
pub fn astpatch() -> Astpatch {
    let mut cmd = Command::new(super::bin());
    cmd.env("NO_COLOR", "1");
    Astpatch { cmd, stdin: None }
}

/// The binary, run inside network namespace `ns` (`ip netns exec`), or here when `None`.
pub fn astpatch_in(ns: Option<&str>) -> Astpatch {
    let Some(ns) = ns else {
        return astpatch();
    };
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns, super::bin()])
        .env("NO_COLOR", "1");
    Astpatch { cmd, stdin: None }
}

/// Run with `args` and capture everything: the common case.
pub fn run<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    astpatch().args(args).output()
}

impl Astpatch {
    pub fn arg(mut self, a: impl AsRef<OsStr>) -> Self {
        self.cmd.arg(a);
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.cmd.args(args);
        self
    }

    pub fn env(mut self, k: &str, v: impl AsRef<OsStr>) -> Self {
        self.cmd.env(k, v);
        self
    }

    pub fn current_dir(mut self, dir: &Path) -> Self {
        self.cmd.current_dir(dir);
        self
    }

    /// Tools in `dir` come first on PATH (stand-ins for make, asterisk, iptables…).
    pub fn path_prefix(self, dir: &Path) -> Self {
        let path = format!("{}:{}", dir.display(), std::env::var("PATH").unwrap());
        self.env("PATH", path)
    }

    /// Bytes on stdin (otherwise stdin is empty).
    pub fn stdin(mut self, bytes: &[u8]) -> Self {
        self.stdin = Some(bytes.to_vec());
        self
    }

    pub fn output(mut self) -> Output {
        let mut child = self
            .cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary under test runs");
        let mut input = child.stdin.take().unwrap();
        if let Some(data) = &self.stdin {
            // A command that exits without reading its input is not this helper's failure.
            let _ = input.write_all(data);
        }
        drop(input);
        child.wait_with_output().unwrap()
    }

    pub fn run(self) -> Run {
        Run::from(self.output())
    }
}

/// What one run said, as text.
#[derive(Debug)]
pub struct Run {
    /// The exit code (-1 when killed by a signal).
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Run {
    /// Asserts the exit code, showing both streams when it is not.
    #[track_caller]
    pub fn code(self, want: i32) -> Run {
        assert_eq!(
            self.code, want,
            "exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }

    #[track_caller]
    pub fn success(self) -> Run {
        self.code(0)
    }

    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}\n{}", self.stdout, self.stderr))
    }
}

/// A scratch directory that goes away with the test, with the helpers tests keep needing.
pub struct TestEnv {
    dir: tempfile::TempDir,
}

impl Default for TestEnv {
    fn default() -> Self {
        Self::new()
    }
}

impl TestEnv {
    pub fn new() -> TestEnv {
        TestEnv {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Writes `rel` (making its directories) and returns its path.
    pub fn write(&self, rel: impl AsRef<Path>, contents: impl AsRef<[u8]>) -> PathBuf {
        let p = self.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, contents).unwrap();
        p
    }

    /// A settings file `astpatch.toml` whose state dir is `state/` in here, plus `extra`
    /// lines; returns its path.
    pub fn settings(&self, extra: &str) -> PathBuf {
        let state = self.join("state");
        self.write(
            "astpatch.toml",
            format!("state_dir = \"{}\"\n{extra}", state.display()),
        )
    }
}
