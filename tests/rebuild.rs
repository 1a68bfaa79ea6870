//! `apply --rebuild` against the mini Asterisk tree with real configure, make and gcc.
use crate::common;

use std::fs;
use std::path::Path;
use std::time::SystemTime;

use astpatch::cli::progress::PlainProgress;
use astpatch::module::build::{self, RebuildOptions, TreeState};
use common::mini_asterisk::{self, MiniTree};

fn mtimes(tree: &Path) -> Vec<(String, SystemTime)> {
    let mut v: Vec<(String, SystemTime)> = walkdir::WalkDir::new(tree)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "o" || x == "so"))
        .map(|e| {
            (
                e.path().strip_prefix(tree).unwrap().display().to_string(),
                e.metadata().unwrap().modified().unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(hay, needle).is_some()
}

fn rebuild(tree: &Path) -> (astpatch::error::Result<build::RebuildReport>, String) {
    let mut p = PlainProgress::new(Vec::new());
    let r = build::rebuild(tree, &RebuildOptions { jobs: 2, log: None }, &mut p);
    (r, String::from_utf8(p.into_inner()).unwrap())
}

#[test]
fn a_built_tree_recompiles_only_chan_sip_and_the_module_carries_the_new_strings() {
    let d = tempfile::tempdir().unwrap();
    let tree = d.path().join("tree");
    mini_asterisk::write(&tree, &MiniTree::default());
    mini_asterisk::configure_and_build(&tree, &d.path().join("root/usr"));
    let so = tree.join("channels/chan_sip.so");
    assert!(!contains(
        &fs::read(&so).unwrap(),
        b"Failed to authenticate device %s (%s)"
    ));
    let before = mtimes(&tree);
    assert_eq!(build::tree_state(&tree), TreeState::Built);

    let applied = astpatch::patch::apply::apply(&tree, false).unwrap();
    let (report, shown) = rebuild(&tree);
    let report = report.unwrap();
    assert_eq!(report.commands, ["make -j2 channels"]);
    assert_eq!(report.compiled, ["chan_sip.o"], "{shown}");
    assert_eq!(report.linked, ["chan_sip.so"], "{shown}");
    assert!(
        shown.contains("build:   [CC] chan_sip.c -> chan_sip.o"),
        "{shown}"
    );
    let after = mtimes(&tree);
    let changed: Vec<&str> = before
        .iter()
        .zip(&after)
        .filter(|(b, a)| b != a)
        .map(|(b, _)| b.0.as_str())
        .collect();
    assert_eq!(changed, ["channels/chan_sip.o", "channels/chan_sip.so"]);
    let bytes = fs::read(&so).unwrap();
    for s in [
        format!(
            "Failed to authenticate device %s (%s) [astpatch:{}]\n",
            applied.tag
        ),
        format!(
            "Failed to authenticate device %s (%s) for SUBSCRIBE [astpatch:{}]\n",
            applied.tag
        ),
    ] {
        assert!(contains(&bytes, s.as_bytes()), "{s} not in chan_sip.so");
    }
    let log = fs::read_to_string(&report.log).unwrap();
    assert!(
        log.contains("$ make -j2 channels") && log.contains("[LD] chan_sip.o -> chan_sip.so"),
        "{log}"
    );

    // Nothing changed since: a second rebuild compiles nothing.
    let (again, _) = rebuild(&tree);
    assert!(again.unwrap().compiled.is_empty());
}

#[test]
fn an_unconfigured_tree_gets_configure_and_a_full_build_with_a_notice() {
    let d = tempfile::tempdir().unwrap();
    let tree = d.path().join("tree");
    mini_asterisk::write(&tree, &MiniTree::default());
    assert_eq!(build::tree_state(&tree), TreeState::Unconfigured);
    astpatch::patch::apply::apply(&tree, false).unwrap();
    let (report, shown) = rebuild(&tree);
    let report = report.unwrap();
    assert_eq!(report.commands, ["./configure", "make -j2"]);
    assert!(
        shown.contains("not configured: running ./configure and a full make; expect about"),
        "{shown}"
    );
    assert!(report.compiled.len() > 5 && report.compiled.contains(&"chan_iax2.o".to_owned()));
    assert!(contains(
        &fs::read(tree.join("channels/chan_sip.so")).unwrap(),
        b"device %s (%s)"
    ));
    assert_eq!(build::tree_state(&tree), TreeState::Built);
}

#[test]
fn a_missing_build_dependency_is_named() {
    let d = tempfile::tempdir().unwrap();
    let tree = d.path().join("tree");
    mini_asterisk::write(
        &tree,
        &MiniTree {
            missing_dependency: true,
            ..MiniTree::default()
        },
    );
    let e = rebuild(&tree).0.unwrap_err();
    assert!(e.to_string().contains("termcap support not found"), "{e}");
    assert!(
        e.hint().unwrap().contains("apt-get install libncurses-dev"),
        "{:?}",
        e.hint()
    );
    assert_eq!(e.exit_code(), astpatch::exit_codes::ENVIRONMENT_ERROR);
    assert!(!tree.join("channels/chan_sip.so").exists());
}

#[test]
fn make_failing_half_way_names_the_log_and_shows_its_last_lines() {
    let d = tempfile::tempdir().unwrap();
    let tree = d.path().join("tree");
    mini_asterisk::write(&tree, &MiniTree::default());
    mini_asterisk::configure_and_build(&tree, &d.path().join("root/usr"));
    let so = tree.join("channels/chan_sip.so");
    let old = fs::read(&so).unwrap();
    let mut src = fs::read(tree.join("channels/chan_sip.c")).unwrap();
    src.extend_from_slice(b"int broken = ;\n");
    fs::write(tree.join("channels/chan_sip.c"), src).unwrap();
    let e = rebuild(&tree).0.unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("`make -j2 channels` failed"), "{msg}");
    assert!(
        msg.contains(&tree.join("astpatch-build.log").display().to_string()),
        "{msg}"
    );
    assert!(msg.contains("error: expected expression"), "{msg}");
    assert_eq!(
        fs::read(&so).unwrap(),
        old,
        "the previous module stays as it was"
    );
}

#[test]
fn chan_sip_disabled_in_menuselect_is_refused_with_the_command_that_enables_it() {
    let d = tempfile::tempdir().unwrap();
    let tree = d.path().join("tree");
    mini_asterisk::write(
        &tree,
        &MiniTree {
            chan_sip_disabled: true,
            ..MiniTree::default()
        },
    );
    mini_asterisk::configure_and_build(&tree, &d.path().join("root/usr"));
    let e = rebuild(&tree).0.unwrap_err();
    assert!(e.to_string().contains("chan_sip is disabled"), "{e}");
    assert!(
        e.hint()
            .unwrap()
            .contains("menuselect/menuselect --enable chan_sip menuselect.makeopts")
    );
}
