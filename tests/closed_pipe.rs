//! Output piped into a reader that has gone (`astpatch detect … | head -1`) ends the process
//! quietly, as any Unix filter does, instead of panicking.
use crate::common;

use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};

use common::fixtures;

/// A pipe whose reading end is already closed.
fn broken_pipe() -> OwnedFd {
    let mut fds = [0; 2];
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    unsafe {
        libc::close(fds[0]);
        OwnedFd::from_raw_fd(fds[1])
    }
}

#[test]
fn a_closed_stdout_is_not_a_panic() {
    let d = tempfile::tempdir().unwrap();
    fixtures::write_tree(d.path(), &fixtures::spec("7", "11.23.1"));
    let tree = d.path().to_str().unwrap();
    let log = d.path().join("messages");
    std::fs::write(&log, "[Nov 24 10:11:12] NOTICE[1]: x\n").unwrap();
    for args in [
        vec!["detect", tree],
        vec!["detect", "--json", tree],
        vec!["apply", "--dry-run", tree],
        vec!["scan", log.to_str().unwrap()],
    ] {
        let out = Command::new(common::bin())
            .args(&args)
            .stdout(Stdio::from(broken_pipe()))
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(out.status.signal(), Some(libc::SIGPIPE), "{args:?}: {err}");
    }
}
