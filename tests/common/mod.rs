//! Helpers shared by integration tests.
#![allow(dead_code)]

pub mod crowdsec;
pub mod env;
pub mod fixtures;
pub mod live_asterisk;
pub mod mini_asterisk;
pub mod netns;

/// True when the test may run as root. When not root, prints a visible SKIP line and returns
/// false; with `ASTPATCH_REQUIRE_ROOT=1` (CI) a skip is a failure instead.
pub fn require_root(test: &str) -> bool {
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var("ASTPATCH_REQUIRE_ROOT").as_deref() == Ok("1") {
        panic!("{test}: needs root, and ASTPATCH_REQUIRE_ROOT=1 forbids skipping");
    }
    eprintln!("SKIP {test}: needs root");
    false
}

/// Path of the built binary.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_astpatch")
}

/// insta filters that replace every astpatch tag (random per tree) with `[TAG]`, so snapshots
/// stay deterministic while still showing where the tag is.
pub fn tag_filters() -> Vec<(&'static str, &'static str)> {
    vec![(r"\b[0-9a-f]{16}\b", "[TAG]")]
}

pub use env::{Run, TestEnv, astpatch, astpatch_in, run};

/// Stand-in Asterisk processes are seen by every process's discovery (/proc is shared by the
/// tests running side by side in this binary), so a scan's trust, which learns the running
/// module's tag, would depend on which other test happens to run. Tests that start stand-ins
/// hold a [`StandIn`] slot; tests whose output depends on what runs on the host hold a
/// [`QuietHost`]. Either kind waits for the other to finish.
static HOST: std::sync::Mutex<(usize, usize)> = std::sync::Mutex::new((0, 0));
static HOST_CHANGED: std::sync::Condvar = std::sync::Condvar::new();

fn host_wait_then(ready: impl Fn(&(usize, usize)) -> bool, take: impl FnOnce(&mut (usize, usize))) {
    let mut g = HOST.lock().unwrap_or_else(|e| e.into_inner());
    while !ready(&g) {
        g = HOST_CHANGED.wait(g).unwrap_or_else(|e| e.into_inner());
    }
    take(&mut g);
}

fn host_release(give: impl FnOnce(&mut (usize, usize))) {
    let mut g = HOST.lock().unwrap_or_else(|e| e.into_inner());
    give(&mut g);
    HOST_CHANGED.notify_all();
}

/// Held while this test's stand-in Asterisk processes may run.
pub struct StandIn(());

impl StandIn {
    pub fn take() -> StandIn {
        host_wait_then(|g| g.0 == 0, |g| g.1 += 1);
        StandIn(())
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        host_release(|g| g.1 -= 1);
    }
}

/// Held while no stand-in Asterisk may run.
pub struct QuietHost(());

impl QuietHost {
    pub fn take() -> QuietHost {
        host_wait_then(|g| g.1 == 0, |g| g.0 += 1);
        QuietHost(())
    }
}

impl Drop for QuietHost {
    fn drop(&mut self) {
        host_release(|g| g.0 -= 1);
    }
}
