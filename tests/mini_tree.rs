//! The mini Asterisk tree the rebuild tests use behaves like the real build where it matters.
use crate::common;

use std::fs;

use common::fixtures::SHAPES;
use common::mini_asterisk::{self, MiniTree};

/// Every synthetic chan_sip.c compiles against the stub header, before and after the patch,
/// with printf-format checking as errors: the patch's added argument matches its `%s`.
#[test]
fn every_fixture_shape_compiles_patched_and_unpatched() {
    for spec in SHAPES {
        let d = tempfile::tempdir().unwrap();
        mini_asterisk::write(
            d.path(),
            &MiniTree {
                shape: *spec,
                ..MiniTree::default()
            },
        );
        fs::create_dir_all(d.path().join("include/asterisk")).unwrap();
        fs::write(d.path().join("include/asterisk/buildopts.h"), "").unwrap();
        let compile = || {
            mini_asterisk::run(
                &d.path().join("channels"),
                "gcc",
                &[
                    "-c",
                    "-fPIC",
                    "-I../include",
                    "-Werror=format",
                    "-o",
                    "chan_sip.o",
                    "chan_sip.c",
                ],
            )
        };
        compile();
        let r = astpatch::patch::apply::apply(d.path(), false).unwrap();
        compile();
        let obj = fs::read(d.path().join("channels/chan_sip.o")).unwrap();
        assert!(
            memfind(&obj, b" (%s"),
            "shape {} {}: patched format string not in the object",
            spec.id,
            spec.version
        );
        assert_eq!(
            astpatch::patch::tag::ModuleKind::of(&obj),
            astpatch::patch::tag::ModuleKind::Tagged(vec![r.tag]),
            "shape {} {}: the object carries the tree's tag",
            spec.id,
            spec.version
        );
        // The check can fail: a conversion smuggled into the tag breaks the build.
        let c = d.path().join("channels/chan_sip.c");
        let good = fs::read(&c).unwrap();
        let tag = format!("[astpatch:{}]", r.tag);
        let at = good
            .windows(tag.len())
            .position(|w| w == tag.as_bytes())
            .unwrap();
        let mut bad = good[..at].to_vec();
        bad.extend_from_slice(b"[astpatch:%d]");
        bad.extend_from_slice(&good[at + tag.len()..]);
        fs::write(&c, &bad).unwrap();
        let out = std::process::Command::new("gcc")
            .args([
                "-c",
                "-fPIC",
                "-I../include",
                "-Werror=format",
                "-o",
                "bad.o",
                "chan_sip.c",
            ])
            .current_dir(d.path().join("channels"))
            .output()
            .unwrap();
        assert!(
            !out.status.success(),
            "shape {} {}: gcc accepted a format with a missing argument",
            spec.id,
            spec.version
        );
    }
}

/// configure writes makeopts; make builds every enabled module with Asterisk-like output, and
/// skips the one menuselect disables; a subdirectory's Makefile cannot run on its own.
#[test]
fn configure_and_make_build_like_asterisk() {
    let d = tempfile::tempdir().unwrap();
    let prefix = d.path().join("root/usr");
    let tree = d.path().join("tree");
    mini_asterisk::write(&tree, &MiniTree::default());
    let out = mini_asterisk::configure_and_build(&tree, &prefix);
    assert!(out.contains("   [CC] chan_sip.c -> chan_sip.o"), "{out}");
    assert!(out.contains("   [LD] chan_sip.o -> chan_sip.so"), "{out}");
    for m in [
        "channels/chan_sip.so",
        "channels/chan_iax2.so",
        "apps/app_dial.so",
        "main/asterisk",
    ] {
        assert!(tree.join(m).is_file(), "{m} not built:\n{out}");
    }
    assert!(!tree.join("channels/chan_alsa.o").exists());
    let makeopts = fs::read_to_string(tree.join("makeopts")).unwrap();
    assert!(
        makeopts.contains("ASTMODDIR = ${libdir}/asterisk/modules"),
        "{makeopts}"
    );
    let alone = std::process::Command::new("make")
        .arg("-C")
        .arg(tree.join("channels"))
        .output()
        .unwrap();
    assert!(
        !alone.status.success(),
        "a module directory must need the top-level Makefile"
    );
    let install = mini_asterisk::run(&tree, "make", &["install"]);
    assert!(
        prefix.join("lib/asterisk/modules/chan_sip.so").is_file(),
        "{install}"
    );
}

fn memfind(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Writes a larger mini tree for `scripts/bench-rebuild` (which runs this with `--ignored`):
/// ASTPATCH_BENCH_TREE is where, ASTPATCH_BENCH_MODULES how many modules per directory.
#[test]
#[ignore = "run by scripts/bench-rebuild"]
fn write_tree_for_bench() {
    let Some(dir) = std::env::var_os("ASTPATCH_BENCH_TREE") else {
        panic!("set ASTPATCH_BENCH_TREE to the directory to write");
    };
    let modules: usize = std::env::var("ASTPATCH_BENCH_MODULES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    mini_asterisk::write(
        std::path::Path::new(&dir),
        &MiniTree {
            modules_per_dir: modules,
            main_files: modules,
            functions_per_file: 24,
            ..MiniTree::default()
        },
    );
}
