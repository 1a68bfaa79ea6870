//! Asterisk's own log formats (asterisk-log-formats.json, from scripts/census.py over every
//! release tag) against the recogniser: every attack format is blamed on the address Asterisk
//! wrote, in every frame style; no other format is ever blamed. Plus the census's own
//! regeneration (opt-in, needs an Asterisk checkout) and fail2ban's annotated test log (when
//! fail2ban is installed).
use std::net::IpAddr;
use std::path::Path;

use astpatch::logframe::TimeContext;
use astpatch::recognise::{RecogniseOptions, Recogniser, Recognition, Rule};
use serde_json::Value;

/// 2026-11-30 00:00 UTC.
const NOW: i64 = 1_795_996_800;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn census() -> Value {
    let text = std::fs::read_to_string(root().join("asterisk-log-formats.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// `ASTPATCH_ASTERISK_GIT=/path/to/asterisk cargo test --test log_formats census -- --nocapture`
#[test]
fn census_regenerates_to_the_committed_file() {
    let Ok(repo) = std::env::var("ASTPATCH_ASTERISK_GIT") else {
        eprintln!(
            "SKIP census_regenerates_to_the_committed_file: set ASTPATCH_ASTERISK_GIT to an Asterisk git checkout"
        );
        return;
    };
    let out = tempfile::NamedTempFile::new().unwrap();
    let st = std::process::Command::new("python3")
        .current_dir(root())
        .args(["scripts/census.py", &repo, "--out"])
        .arg(out.path())
        .status()
        .expect("python3 runs");
    assert!(
        st.success(),
        "census.py failed (an unclassified format? add it to asterisk-log-classes.json)"
    );
    let fresh = std::fs::read_to_string(out.path()).unwrap();
    let committed = std::fs::read_to_string(root().join("asterisk-log-formats.json")).unwrap();
    if fresh != committed {
        let diff = similar::TextDiff::from_lines(&committed, &fresh);
        let shown: String = diff
            .unified_diff()
            .context_radius(2)
            .to_string()
            .lines()
            .take(80)
            .collect::<Vec<_>>()
            .join("\n");
        panic!(
            "asterisk-log-formats.json is stale; regenerate with python3 scripts/census.py {repo} --out asterisk-log-formats.json\n{shown}"
        );
    }
}
