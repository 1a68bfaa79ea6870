//! `astpatch detect` on synthetic trees: every shape, the CLI's text and JSON, and bad input.
use crate::common;

use std::fs;
use std::path::Path;
use std::process::Output;

use astpatch::patch::detect::detect;
use astpatch::patch::sites::PatchState;
use common::fixtures::{self, SHAPES};

fn run(cwd: &Path, args: &[&str]) -> Output {
    common::astpatch().current_dir(cwd).args(args).output()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn every_shape_is_detected_from_content_and_matches_the_table() {
    for spec in SHAPES {
        let d = tempfile::tempdir().unwrap();
        fixtures::write_tree(d.path(), spec);
        let r = detect(d.path()).unwrap_or_else(|e| panic!("{} {}: {e}", spec.id, spec.version));
        let what = format!("shape {} {}", spec.id, spec.version);
        assert_eq!(r.shape.as_deref(), Some(spec.id), "{what}");
        assert_eq!(r.expected_shape.as_deref(), Some(spec.id), "{what}: table");
        assert_eq!(r.version.raw, spec.version, "{what}");
        assert_eq!(r.state, PatchState::Unpatched, "{what}");
        assert_eq!(r.sites.len(), fixtures::site_count(spec), "{what}");
        assert!(r.patch.is_some(), "{what}: no patch");
        assert!(r.warnings.is_empty(), "{what}: {:?}", r.warnings);
        // After apply the same tree reads as patched.
        astpatch::patch::apply::apply(d.path(), false).unwrap();
        let r = detect(d.path()).unwrap();
        assert_eq!(r.state, PatchState::Patched, "{what}");
        assert!(r.sites.iter().all(|s| s.patched), "{what}");
    }
}

fn tree(spec_id: &str, version: &str, stated: &str) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    fixtures::write_tree(&d.path().join("tree"), &fixtures::spec(spec_id, version));
    fs::write(d.path().join("tree/.version"), format!("{stated}\n")).unwrap();
    d
}

#[test]
fn text_and_json_output() {
    let d = tree("7", "11.23.1", "11.23.1");
    let out = run(d.path(), &["detect", "tree"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    insta::assert_snapshot!("detect_text_shape_7", text(&out.stdout));
    let out = run(d.path(), &["detect", "--json", "tree"]);
    assert_eq!(out.status.code(), Some(0));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    insta::assert_json_snapshot!("detect_json_shape_7", json);
}

/// Tagged, untagged (an astpatch from before tags) and mixed trees each say what they are and
/// what to do; the random tag is redacted in the snapshots and checked exactly here.
#[test]
fn the_tag_state_is_shown_in_text_and_json() {
    let d = tree("7", "11.23.1", "11.23.1");
    let root = d.path().join("tree");
    let applied = astpatch::patch::apply::apply(&root, false).unwrap();
    let tag = applied.tag.to_string();
    let out = run(d.path(), &["detect", "tree"]);
    assert_eq!(out.status.code(), Some(0));
    let shown = text(&out.stdout);
    assert!(
        shown.contains(&format!(
            "tag       {tag}: every site ends its message with [astpatch:{tag}]"
        )),
        "{shown}"
    );
    insta::with_settings!({filters => common::tag_filters()}, {
        insta::assert_snapshot!("detect_text_tagged", shown);
    });
    let out = run(d.path(), &["detect", "--json", "tree"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["tag_state"], "tagged");
    assert_eq!(json["tag"], tag.as_str());
    assert!(
        json["sites"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["tag"] == tag.as_str())
    );

    // An astpatch from before tags: patched, but nothing the watcher trusts by default.
    astpatch::patch::revert::revert(&root).unwrap();
    fixtures::patch_like_before_tags(&root);
    let out = run(d.path(), &["detect", "tree"]);
    assert_eq!(out.status.code(), Some(0));
    let shown = text(&out.stdout);
    assert!(
        shown.contains("re-run `astpatch apply tree` to add the tag the watcher needs"),
        "{shown}"
    );
    insta::assert_snapshot!("detect_text_untagged", shown);
    let out = run(d.path(), &["detect", "--json", "tree"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["state"], "patched");
    assert_eq!(json["tag_state"], "untagged");
    assert_eq!(json["tag"], serde_json::Value::Null);
    assert!(
        json["sites"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["tag"].is_null())
    );

    // Unpatched.
    let plain = tree("7", "11.23.1", "11.23.1");
    let out = run(plain.path(), &["detect", "--json", "tree"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["tag_state"], "unpatched");
}

#[test]
fn content_wins_when_the_version_disagrees() {
    // certified/11.2-cert1-rc1 still had fake-auth lines (shape 6); a later cert has shape 7.
    let d = tree("6", "11.2.1", "certified/11.2-cert3");
    let out = run(d.path(), &["detect", "tree"]);
    assert_eq!(out.status.code(), Some(0));
    insta::assert_snapshot!("detect_text_disagreement", text(&out.stdout));
    assert!(
        text(&out.stderr).contains("usually has shape 7, but this chan_sip.c has shape 6"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn patched_tree_reads_as_patched() {
    let d = tree("8", "16.30.0", "20.20.1");
    astpatch::patch::apply::apply(&d.path().join("tree"), false).unwrap();
    let out = run(d.path(), &["detect", "--json", "tree"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["state"], "patched");
    assert_eq!(json["version"]["semver"], "20.20.1");
    assert_eq!(json["chan_sip"], "deprecated");
}

#[test]
fn partly_patched_tree_reports_each_site() {
    let d = tree("7", "11.23.1", "11.23.1");
    let p = d.path().join("tree/channels/chan_sip.c");
    let before = fs::read(&p).unwrap();
    astpatch::patch::apply::apply(&d.path().join("tree"), false).unwrap();
    let after = fs::read(&p).unwrap();
    // Keep astpatch's change on the first site only, as a hand patch would.
    let mut done = false;
    let mixed: Vec<&[u8]> = before
        .split(|&c| c == b'\n')
        .zip(after.split(|&c| c == b'\n'))
        .map(|(b, a)| {
            if a != b && !done {
                done = true;
                a
            } else {
                b
            }
        })
        .collect();
    fs::write(&p, mixed.join(&b'\n')).unwrap();
    let out = run(d.path(), &["detect", "tree"]);
    assert_eq!(out.status.code(), Some(0));
    insta::with_settings!({filters => common::tag_filters()}, {
        insta::assert_snapshot!("detect_text_partly_patched", text(&out.stdout));
    });
}

#[test]
fn unknown_version_text_falls_back_to_content_with_a_warning() {
    let d = tree("7", "11.23.1", "SVN-branch-11-r424242");
    let out = run(d.path(), &["detect", "--json", "tree"]);
    assert_eq!(out.status.code(), Some(0));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["shape"], "7");
    assert_eq!(json["version"]["parsed"], false);
    assert!(
        json["warnings"][0]
            .as_str()
            .unwrap()
            .contains("judging by the file's content")
    );
}

#[test]
fn latin1_and_crlf_chan_sip_is_read_as_bytes() {
    let d = tree("2", "1.4.40", "1.4.44");
    let p = d.path().join("tree/channels/chan_sip.c");
    let mut b = fs::read(&p).unwrap();
    b.extend_from_slice(b"/* Copyright \xa9 Digium, \xe9t\xe9 */\n");
    let crlf: Vec<u8> = b
        .split(|&c| c == b'\n')
        .collect::<Vec<_>>()
        .join(&b"\r\n"[..]);
    fs::write(&p, crlf).unwrap();
    let out = run(d.path(), &["detect", "--json", "tree"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["shape"], "2");
}

#[test]
fn bad_input_gets_one_clear_line_and_the_right_exit_code() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    fs::write(root.join("afile"), "x").unwrap();
    fs::create_dir_all(root.join("notast/src")).unwrap();
    // A 21+ tree: PJSIP only.
    fs::create_dir_all(root.join("ast21/channels")).unwrap();
    fs::write(root.join("ast21/.version"), "21.2.0\n").unwrap();
    fs::write(root.join("ast21/channels/chan_pjsip.c"), "int x;\n").unwrap();
    // chan_sip.c but no version source at all.
    fs::create_dir_all(root.join("noversion/channels")).unwrap();
    fs::write(root.join("noversion/channels/chan_sip.c"), "int x;\n").unwrap();
    // .version that cannot be read as a file.
    fs::create_dir_all(root.join("badversion/channels/")).unwrap();
    fs::create_dir_all(root.join("badversion/.version")).unwrap();
    fs::write(root.join("badversion/channels/chan_sip.c"), "int x;\n").unwrap();
    // chan_sip.c with no inbound failure sites.
    fs::create_dir_all(root.join("nosites/channels")).unwrap();
    fs::write(root.join("nosites/.version"), "0.2.0\n").unwrap();
    fs::write(root.join("nosites/channels/chan_sip.c"), "int x;\n").unwrap();
    for (arg, code, needle) in [
        ("missing", 2, "No such file"),
        ("afile", 2, "is a file, not a source tree"),
        ("notast", 2, "is not an Asterisk source tree"),
        ("ast21", 1, "is Asterisk 21.2.0, which has no chan_sip"),
        ("noversion", 2, "has no .version file"),
        ("badversion", 2, "cannot read"),
    ] {
        let out = run(root, &["detect", arg]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{arg}: {err}");
        assert!(err.starts_with("error: "), "{arg}: {err}");
        assert!(err.contains(needle), "{arg}: {err}");
        assert!(out.stdout.is_empty(), "{arg}");
    }
    let out = run(root, &["detect", "nosites"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).contains("no inbound failure is logged"));
}

#[test]
fn every_command_names_a_21_plus_release_with_exit_1() {
    // A 22 tree as far as astpatch reads it: .version and a channels/ without chan_sip.c.
    let d = tempfile::tempdir().unwrap();
    fs::create_dir(d.path().join("channels")).unwrap();
    fs::write(d.path().join(".version"), "22.1.0\n").unwrap();
    for cmd in ["detect", "apply", "revert"] {
        let o = run(d.path(), &[cmd, "."]);
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{cmd}: {err}");
        assert!(
            err.contains("is Asterisk 22.1.0, which has no chan_sip"),
            "{cmd}: {err}"
        );
    }
}
