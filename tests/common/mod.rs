//! Helpers shared by integration tests.
#![allow(dead_code)]

pub mod crowdsec;
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
