//! apply / revert on synthetic trees of every shape, through the library and the CLI.
use crate::common;

use std::fs;
use std::path::Path;
use std::process::Command;

use astpatch::patch::apply::apply;
use astpatch::patch::revert::{RevertOutcome, revert};
use astpatch::patch::sites::{self, PatchState};
use common::fixtures::{self, SHAPES};

fn chan_sip(dir: &Path) -> Vec<u8> {
    fs::read(dir.join("channels/chan_sip.c")).unwrap()
}

fn lines(b: &[u8]) -> Vec<&[u8]> {
    b.split(|&c| c == b'\n').collect()
}

#[test]
fn every_shape_gains_the_address_and_reverts_exactly() {
    for spec in SHAPES {
        let d = tempfile::tempdir().unwrap();
        fixtures::write_tree(d.path(), spec);
        let before = chan_sip(d.path());
        let report = apply(d.path(), false)
            .unwrap_or_else(|e| panic!("shape {} {}: {e}", spec.id, spec.version));
        let expected = fixtures::site_count(spec);
        assert_eq!(
            report.changed, expected,
            "shape {} {}",
            spec.id, spec.version
        );
        assert_eq!(report.shape, spec.id);
        let after = chan_sip(d.path());
        let scan = sites::scan(&after);
        assert_eq!(scan.state(), PatchState::Patched, "shape {}", spec.id);
        // Only the site lines differ; every other line (outbound failures, Latin-1) is identical.
        let (a, b) = (lines(&before), lines(&after));
        assert_eq!(a.len(), b.len());
        let changed: Vec<usize> = (0..a.len()).filter(|&i| a[i] != b[i]).collect();
        // Shape 8's statement spans two lines, and both change.
        let expected_lines = if spec.id == "8" { 2 } else { expected };
        assert_eq!(
            changed.len(),
            expected_lines,
            "shape {} {}: changed lines {changed:?}",
            spec.id,
            spec.version
        );
        for &i in &changed {
            let l = String::from_utf8_lossy(b[i]);
            assert!(
                l.contains("(%s") || l.contains("&p->recv"),
                "shape {}: {l}",
                spec.id
            );
            assert!(!l.contains(" on INVITE to "), "outbound line touched: {l}");
        }
        let text = String::from_utf8_lossy(&after);
        match spec.api {
            "sockaddr" if spec.id == "8" => {
                assert!(text.contains("ast_sockaddr_stringify(&p->recv)"))
            }
            "sockaddr" => assert!(text.contains("\"From\"), ast_sockaddr_stringify(addr));")),
            "one" => assert!(text.contains("ast_inet_ntoa(sin->sin_addr), ntohs(sin->sin_port));")),
            "buf" => assert!(text.contains(
                "ast_inet_ntoa((char [INET_ADDRSTRLEN]){ 0 }, INET_ADDRSTRLEN, sin->sin_addr)"
            )),
            "inet" => assert!(text.contains("inet_ntoa(sin->sin_addr), ntohs(sin->sin_port));")),
            _ => unreachable!(),
        }
        // Idempotent.
        let again = apply(d.path(), false).unwrap();
        assert_eq!(again.changed, 0);
        assert!(!again.written);
        assert_eq!(chan_sip(d.path()), after);
        // Exact revert, leftovers gone.
        let r = revert(d.path()).unwrap();
        assert_eq!(r.outcome, RevertOutcome::Restored);
        assert_eq!(chan_sip(d.path()), before, "shape {}", spec.id);
        assert!(!d.path().join("channels/chan_sip.c.astpatch.json").exists());
        assert!(!d.path().join("channels/chan_sip.c.astpatch-orig").exists());
    }
}

#[test]
fn dry_run_writes_nothing() {
    let d = tempfile::tempdir().unwrap();
    fixtures::write_tree(d.path(), &fixtures::spec("7", "11.23.1"));
    let before = chan_sip(d.path());
    let r = apply(d.path(), true).unwrap();
    assert_eq!(r.changed, 5);
    assert!(!r.written);
    assert!(r.diff.contains(&format!(
        "+\t\tast_log(LOG_NOTICE, \"Failed to authenticate device %s (%s) [astpatch:{}]\\n\"",
        r.tag
    )));
    assert_eq!(r.tag_origin, astpatch::patch::apply::TagOrigin::New);
    assert_eq!(chan_sip(d.path()), before);
    assert_eq!(fs::read_dir(d.path().join("channels")).unwrap().count(), 1);
}

#[test]
fn seed_hand_patch_is_completed_not_doubled() {
    // The seed page patched one of four 1.4.40 sites by hand, in exactly astpatch's words.
    let d = tempfile::tempdir().unwrap();
    fixtures::write_tree(d.path(), &fixtures::spec("2", "1.4.40"));
    let path = d.path().join("channels/chan_sip.c");
    let text = fs::read(&path).unwrap();
    let stock =
        b"ast_log(LOG_NOTICE, \"Failed to authenticate user %s\\n\", get_header(req, \"From\"));";
    let seed = b"ast_log(LOG_NOTICE, \"Failed to authenticate user %s (%s:%d)\\n\", get_header(req, \"From\"), ast_inet_ntoa(sin->sin_addr), ntohs(sin->sin_port));";
    let at = memchr::memmem::find(&text, stock).unwrap();
    let mut hand = text[..at].to_vec();
    hand.extend_from_slice(seed);
    hand.extend_from_slice(&text[at + stock.len()..]);
    fs::write(&path, &hand).unwrap();
    assert_eq!(sites::scan(&hand).state(), PatchState::PartlyPatched);
    let r = apply(d.path(), false).unwrap();
    assert_eq!(r.state_before, PatchState::PartlyPatched);
    // Three stock sites patched, and the seed's (untagged) site rewritten with the tag.
    assert_eq!(r.changed, 4);
    assert_eq!(
        r.sites
            .iter()
            .filter(|s| s.action == astpatch::patch::engine::Action::Upgrade)
            .count(),
        1
    );
    assert!(
        r.notes.iter().any(|n| n.contains("the seed's hand patch")),
        "{:?}",
        r.notes
    );
    let after = fs::read(&path).unwrap();
    assert_eq!(
        tag_count(&after, r.tag.as_str()),
        4,
        "every site tagged, none patched twice"
    );
    assert_eq!(memchr::memmem::find_iter(&after, b"(%s:%d)").count(), 4);
    assert_eq!(
        memchr::memmem::find_iter(&after, b"(%s:%d) (%s:%d)").count(),
        0
    );
    revert(d.path()).unwrap();
    assert_eq!(
        fs::read(&path).unwrap(),
        hand,
        "revert restores the hand-patched original"
    );
}

fn manifest(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&fs::read(dir.join("channels/chan_sip.c.astpatch.json")).unwrap())
        .unwrap()
}

fn tag_count(bytes: &[u8], tag: &str) -> usize {
    memchr::memmem::find_iter(bytes, format!(" [astpatch:{tag}]\\n\"").as_bytes()).count()
}

/// First apply draws a tag, writes it into every site and the manifest; a second apply keeps it.
#[test]
fn fresh_apply_tags_every_site_and_records_the_tag_and_reapply_keeps_it() {
    let mut seen = Vec::new();
    for spec in SHAPES {
        let d = tempfile::tempdir().unwrap();
        fixtures::write_tree(d.path(), spec);
        let r = apply(d.path(), false).unwrap();
        let what = format!("shape {} {}", spec.id, spec.version);
        assert_eq!(
            r.tag_origin,
            astpatch::patch::apply::TagOrigin::New,
            "{what}"
        );
        let tag = r.tag.to_string();
        let after = chan_sip(d.path());
        assert_eq!(
            tag_count(&after, &tag),
            fixtures::site_count(spec),
            "{what}"
        );
        assert_eq!(
            astpatch::patch::tag::in_module(&after),
            vec![r.tag],
            "{what}: one tag, no other"
        );
        let m = manifest(d.path());
        assert_eq!(m["format"], 2, "{what}");
        assert_eq!(m["tag"], tag.as_str(), "{what}");
        assert_eq!(
            m["original_statements"].as_array().unwrap().len(),
            fixtures::site_count(spec),
            "{what}"
        );
        let again = apply(d.path(), false).unwrap();
        assert_eq!(again.changed, 0, "{what}");
        assert_eq!(again.tag, r.tag, "{what}");
        assert_eq!(
            again.tag_origin,
            astpatch::patch::apply::TagOrigin::Manifest
        );
        assert_eq!(chan_sip(d.path()), after);
        assert_eq!(manifest(d.path()), m, "{what}: the record is untouched");
        // Put back by hand (git checkout) with the record still there: the same tag returns,
        // so a module built and installed earlier keeps matching.
        let pristine = fs::read(d.path().join("channels/chan_sip.c.astpatch-orig")).unwrap();
        fs::write(d.path().join("channels/chan_sip.c"), &pristine).unwrap();
        let third = apply(d.path(), false).unwrap();
        assert_eq!(
            (third.tag, third.changed),
            (r.tag, fixtures::site_count(spec))
        );
        assert_eq!(chan_sip(d.path()), after, "{what}");
        assert!(!seen.contains(&tag), "{what}: tags differ between trees");
        seen.push(tag);
    }
}

/// A tree an astpatch from before tags patched (format 1 record, untagged wording) is upgraded
/// in place, and revert still gives back the pristine original, with or without the copy.
#[test]
fn a_tree_patched_before_tags_is_upgraded_in_place_and_reverts_exactly() {
    for spec in SHAPES {
        for keep_copy in [true, false] {
            let d = tempfile::tempdir().unwrap();
            fixtures::write_tree(d.path(), spec);
            let what = format!(
                "shape {} {} (copy kept: {keep_copy})",
                spec.id, spec.version
            );
            let pristine = chan_sip(d.path());
            let legacy = fixtures::patch_like_before_tags(d.path());
            assert_eq!(manifest(d.path())["format"], 1);
            let old_tagless = astpatch::patch::detect::detect(d.path()).unwrap();
            assert_eq!(
                old_tagless.tag_state,
                astpatch::patch::detect::TagState::Untagged,
                "{what}"
            );
            let r = apply(d.path(), false).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(r.changed, fixtures::site_count(spec), "{what}");
            assert!(
                r.sites
                    .iter()
                    .all(|s| s.action == astpatch::patch::engine::Action::Upgrade),
                "{what}"
            );
            assert_eq!(r.tag_origin, astpatch::patch::apply::TagOrigin::New);
            let after = chan_sip(d.path());
            assert_eq!(
                fixtures::untag(&after),
                legacy,
                "{what}: only the tag is added"
            );
            assert_eq!(
                tag_count(&after, r.tag.as_str()),
                fixtures::site_count(spec)
            );
            let m = manifest(d.path());
            assert_eq!(m["format"], 2);
            assert_eq!(m["tag"], r.tag.as_str());
            assert_eq!(
                m["original_sha256"],
                astpatch::patch::manifest::sha256_hex(&pristine).as_str(),
                "{what}: the pristine file stays the original"
            );
            assert_eq!(
                fs::read(d.path().join("channels/chan_sip.c.astpatch-orig")).unwrap(),
                pristine
            );
            assert_eq!(apply(d.path(), false).unwrap().changed, 0, "{what}");
            if !keep_copy {
                fs::remove_file(d.path().join("channels/chan_sip.c.astpatch-orig")).unwrap();
            }
            let rv = revert(d.path()).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(rv.outcome, RevertOutcome::Restored, "{what}");
            assert_eq!(chan_sip(d.path()), pristine, "{what}");
            assert_eq!(fs::read_dir(d.path().join("channels")).unwrap().count(), 1);
        }
    }
}

/// This astpatch still reverts a format 1 tree it did not upgrade, exactly, copy or not.
#[test]
fn a_tree_patched_before_tags_reverts_without_upgrading() {
    for keep_copy in [true, false] {
        let spec = fixtures::spec("4c", "1.8.11-cert10");
        let d = tempfile::tempdir().unwrap();
        fixtures::write_tree(d.path(), &spec);
        let pristine = chan_sip(d.path());
        fixtures::patch_like_before_tags(d.path());
        if !keep_copy {
            fs::remove_file(d.path().join("channels/chan_sip.c.astpatch-orig")).unwrap();
        }
        assert_eq!(revert(d.path()).unwrap().outcome, RevertOutcome::Restored);
        assert_eq!(chan_sip(d.path()), pristine);
    }
    // Without the pristine copy an upgrade would lose the way back: refused, nothing written.
    let spec = fixtures::spec("7", "11.23.1");
    let d = tempfile::tempdir().unwrap();
    fixtures::write_tree(d.path(), &spec);
    let legacy = fixtures::patch_like_before_tags(d.path());
    fs::remove_file(d.path().join("channels/chan_sip.c.astpatch-orig")).unwrap();
    let e = apply(d.path(), false).unwrap_err();
    assert!(e.to_string().contains("is missing"), "{e}");
    assert!(e.hint().unwrap().contains("astpatch revert"), "{e}");
    assert_eq!(chan_sip(d.path()), legacy);
    assert_eq!(manifest(d.path())["format"], 1);
}

/// A site patched by hand in other words is rewritten in astpatch's tagged words (the watcher
/// trusts nothing untagged by default); the hand-patched file is what revert gives back.
#[test]
fn a_hand_patch_in_other_words_is_rewritten_with_the_tag_and_reverts_to_the_hand_patch() {
    for keep_copy in [true, false] {
        let d = tempfile::tempdir().unwrap();
        fixtures::write_tree(d.path(), &fixtures::spec("7", "11.23.1"));
        let path = d.path().join("channels/chan_sip.c");
        let text = String::from_utf8_lossy(&fs::read(&path).unwrap()).into_owned();
        let hand = text.replacen(
            "\"Failed to authenticate device %s for SUBSCRIBE\\n\", sip_get_header(req, \"From\"));",
            "\"Failed to authenticate device %s (%s) on SUBSCRIBE\\n\", sip_get_header(req, \"From\"), ast_sockaddr_stringify(&p->recv));",
            1,
        );
        assert_ne!(hand, text);
        let hand: Vec<u8> = hand
            .chars()
            .map(|c| if c == '\u{fffd}' { 0xe9 } else { c as u8 })
            .collect();
        fs::write(&path, &hand).unwrap();
        let r = apply(d.path(), false).unwrap();
        assert_eq!(r.changed, 5);
        assert_eq!(
            r.sites
                .iter()
                .filter(|s| s.action == astpatch::patch::engine::Action::RewriteHandPatch)
                .count(),
            1
        );
        assert!(
            r.notes
                .iter()
                .any(|n| n.contains("hand patch in other words")),
            "{:?}",
            r.notes
        );
        let after = chan_sip(d.path());
        assert_eq!(tag_count(&after, r.tag.as_str()), 5);
        assert!(memchr::memmem::find(&after, b"on SUBSCRIBE").is_none());
        if !keep_copy {
            fs::remove_file(d.path().join("channels/chan_sip.c.astpatch-orig")).unwrap();
        }
        revert(d.path()).unwrap();
        assert_eq!(chan_sip(d.path()), hand, "copy kept: {keep_copy}");
    }
}

#[test]
fn crlf_files_keep_their_line_endings() {
    let d = tempfile::tempdir().unwrap();
    let spec = fixtures::spec("8", "16.30.0");
    fixtures::write_tree(d.path(), &spec);
    let path = d.path().join("channels/chan_sip.c");
    let crlf: Vec<u8> = fixtures::chan_sip(&spec)
        .iter()
        .flat_map(|&b| {
            if b == b'\n' {
                vec![b'\r', b'\n']
            } else {
                vec![b]
            }
        })
        .collect();
    fs::write(&path, &crlf).unwrap();
    assert_eq!(apply(d.path(), false).unwrap().changed, 1);
    let after = fs::read(&path).unwrap();
    assert_eq!(
        after.iter().filter(|&&b| b == b'\n').count(),
        crlf.iter().filter(|&&b| b == b'\n').count()
    );
    assert!(
        !after.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r'),
        "a bare LF crept in"
    );
    assert!(memchr::memmem::find(&fixtures::untag(&after), b"(%s) for %s, code = %d\\n\",\r\n\t\t\tsip_get_header(req, \"From\"), ast_sockaddr_stringify(&p->recv)").is_some());
    revert(d.path()).unwrap();
    assert_eq!(fs::read(&path).unwrap(), crlf);
}

#[test]
fn bad_input_is_refused_and_the_original_survives() {
    let spec = fixtures::spec("7", "11.23.1");
    // An edited site that no hunk fits: nothing written, each site named.
    let d = tempfile::tempdir().unwrap();
    fixtures::write_tree(d.path(), &spec);
    let path = d.path().join("channels/chan_sip.c");
    let odd = String::from_utf8_lossy(&fs::read(&path).unwrap()).replacen(
        "\"Failed to authenticate device %s for SUBSCRIBE\\n\", sip_get_header(req, \"From\"));",
        "\"Failed to authenticate device %s for SUBSCRIBE\\n\", sip_get_header(req, \"From\"), vendor_extra);",
        1,
    );
    fs::write(&path, odd.as_bytes()).unwrap();
    let e = apply(d.path(), false).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("handle_request_subscribe") && msg.contains("nothing was written"),
        "{msg}"
    );
    assert_eq!(fs::read(&path).unwrap(), odd.as_bytes());
    assert_eq!(fs::read_dir(d.path().join("channels")).unwrap().count(), 1);

    // Empty and truncated files.
    for (content, needle) in [
        (&b""[..], "is empty"),
        (
            &b"static int f(void)\n{\n\tast_log(LOG_NOTICE, \"Failed to"[..],
            "truncated",
        ),
    ] {
        fs::write(&path, content).unwrap();
        let e = apply(d.path(), false).unwrap_err().to_string();
        assert!(e.contains(needle), "{e}");
        assert_eq!(fs::read(&path).unwrap(), content);
    }

    // A read-only file is respected.
    fixtures::write_tree(d.path(), &spec);
    let before = fs::read(&path).unwrap();
    let mut perm = fs::metadata(&path).unwrap().permissions();
    perm.set_readonly(true);
    fs::set_permissions(&path, perm).unwrap();
    let e = apply(d.path(), false).unwrap_err().to_string();
    assert!(e.contains("read-only"), "{e}");
    assert_eq!(fs::read(&path).unwrap(), before);
    assert_eq!(fs::read_dir(d.path().join("channels")).unwrap().count(), 1);

    // A symlinked chan_sip.c is not replaced by a regular file.
    let d2 = tempfile::tempdir().unwrap();
    fixtures::write_tree(d2.path(), &spec);
    let real = d2.path().join("real_chan_sip.c");
    fs::rename(d2.path().join("channels/chan_sip.c"), &real).unwrap();
    std::os::unix::fs::symlink(&real, d2.path().join("channels/chan_sip.c")).unwrap();
    let e = apply(d2.path(), false).unwrap_err().to_string();
    assert!(e.contains("symlink"), "{e}");
    assert!(
        fs::symlink_metadata(d2.path().join("channels/chan_sip.c"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(fs::read(&real).unwrap(), before);
}

#[test]
fn revert_keeps_later_edits_or_refuses() {
    let spec = fixtures::spec("6", "11.2.1");
    let d = tempfile::tempdir().unwrap();
    fixtures::write_tree(d.path(), &spec);
    let path = d.path().join("channels/chan_sip.c");
    let original = fs::read(&path).unwrap();
    apply(d.path(), false).unwrap();
    // An edit elsewhere after apply: only astpatch's statements are put back.
    let mut edited = fs::read(&path).unwrap();
    edited.extend_from_slice(b"/* local change after apply */\n");
    fs::write(&path, &edited).unwrap();
    let r = revert(d.path()).unwrap();
    assert_eq!(r.outcome, RevertOutcome::RevertedSitesOnly);
    let mut expect = original.clone();
    expect.extend_from_slice(b"/* local change after apply */\n");
    assert_eq!(fs::read(&path).unwrap(), expect);

    // An edit to a statement astpatch wrote: refuse, change nothing.
    fs::write(&path, &original).unwrap();
    apply(d.path(), false).unwrap();
    let patched = String::from_utf8_lossy(&fs::read(&path).unwrap()).into_owned();
    let tampered = patched.replacen(
        "\"From\"), ast_sockaddr_stringify(addr));",
        "\"From\"), ast_sockaddr_stringify(addr), 1);",
        1,
    );
    let tampered: Vec<u8> = tampered
        .chars()
        .map(|c| if c == '\u{fffd}' { 0xe9 } else { c as u8 })
        .collect();
    fs::write(&path, &tampered).unwrap();
    let e = revert(d.path()).unwrap_err().to_string();
    assert!(e.contains("cannot undo safely"), "{e}");
    assert_eq!(fs::read(&path).unwrap(), tampered);
    assert!(
        d.path().join("channels/chan_sip.c.astpatch-orig").exists(),
        "the pristine copy is kept"
    );

    // Nothing to revert.
    let d3 = tempfile::tempdir().unwrap();
    fixtures::write_tree(d3.path(), &spec);
    let e = revert(d3.path()).unwrap_err();
    assert_eq!(e.exit_code(), astpatch::exit_codes::CHECK_FAILED);
}

/// A tiny xorshift: deterministic "random" edits without another dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn random_edits_outside_log_statements_round_trip() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut applied = 0;
    for round in 0..300 {
        let spec = SHAPES[round % SHAPES.len()];
        let mut src = fixtures::chan_sip(&spec);
        // Protected: the log statements and the function signature lines (the engine keys on
        // both); anything else may be changed, inserted into or deleted.
        let scan = sites::scan(&src);
        let protected: Vec<std::ops::Range<usize>> = scan
            .sites
            .iter()
            .map(|s| s.span.clone())
            .chain(
                astpatch::patch::sites::function_definitions(&src)
                    .into_iter()
                    .map(|(o, _)| o..o + 200),
            )
            .collect();
        for _ in 0..1 + rng.below(20) {
            let at = rng.below(src.len() - 1);
            if protected
                .iter()
                .any(|r| r.start.saturating_sub(2) <= at && at <= r.end + 2)
            {
                continue;
            }
            let byte = b"abcXYZ019 \t\n;{}()\"'/*#\xe9\xff\r"[rng.below(25)];
            match rng.below(3) {
                0 => src[at] = byte,
                1 => src.insert(at, byte),
                _ => {
                    src.remove(at);
                }
            }
            // Shifted offsets: recompute protection from scratch next round of edits.
            break;
        }
        if !src.ends_with(b"\n") {
            src.push(b'\n');
        }
        let d = tempfile::tempdir().unwrap();
        fixtures::write_tree(d.path(), &spec);
        let path = d.path().join("channels/chan_sip.c");
        fs::write(&path, &src).unwrap();
        match apply(d.path(), false) {
            Ok(_) => {
                applied += 1;
                revert(d.path()).unwrap();
                assert_eq!(fs::read(&path).unwrap(), src, "round {round}");
            }
            Err(_) => assert_eq!(
                fs::read(&path).unwrap(),
                src,
                "a refused apply changed the file (round {round})"
            ),
        }
    }
    assert!(applied > 250, "only {applied} of 300 edited files applied");
}

#[test]
fn git_checkout_with_local_changes_gets_a_note_and_nothing_committed() {
    let d = tempfile::tempdir().unwrap();
    let spec = fixtures::spec("7", "11.23.1");
    fixtures::write_tree(d.path(), &spec);
    let repo = git2::Repository::init(d.path()).unwrap();
    let mut index = repo.index().unwrap();
    index.add_path(Path::new("channels/chan_sip.c")).unwrap();
    index.write().unwrap();
    let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
    let sig = git2::Signature::now("t", "t@example.org").unwrap();
    repo.commit(Some("HEAD"), &sig, &sig, "import", &tree, &[])
        .unwrap();
    let path = d.path().join("channels/chan_sip.c");
    let mut local = fs::read(&path).unwrap();
    local.extend_from_slice(b"/* local vendor change */\n");
    fs::write(&path, &local).unwrap();
    let head = repo.head().unwrap().target().unwrap();
    let r = apply(d.path(), false).unwrap();
    assert!(
        r.notes.iter().any(|n| n.contains("uncommitted changes")),
        "{:?}",
        r.notes
    );
    assert_eq!(
        repo.head().unwrap().target().unwrap(),
        head,
        "astpatch committed something"
    );
}

#[test]
fn cli_dry_run_diff_is_pinned() {
    for (id, version) in [("7", "11.23.1"), ("8", "16.30.0"), ("2", "1.4.40")] {
        let d = tempfile::tempdir().unwrap();
        fixtures::write_tree(d.path(), &fixtures::spec(id, version));
        let common::Run {
            code,
            stdout,
            stderr,
        } = common::astpatch()
            .args(["apply", "--dry-run", d.path().to_str().unwrap()])
            .run();
        assert_eq!(code, 0, "{stderr}");
        let stderr = stderr.replace(d.path().to_str().unwrap(), "[TREE]");
        // The diff carries a real, fresh tag: the one the summary names, in every + line.
        let tag = stderr
            .split(", tag ")
            .nth(1)
            .and_then(|r| r.get(..16))
            .unwrap_or_else(|| panic!("no tag in {stderr}"))
            .to_owned();
        let plus: Vec<&str> = stdout
            .lines()
            .filter(|l| l.starts_with('+') && !l.starts_with("+++") && l.contains("%s"))
            .collect();
        assert_eq!(
            plus.len(),
            fixtures::site_count(&fixtures::spec(id, version))
        );
        for l in &plus {
            assert!(l.contains(&format!(" [astpatch:{tag}]\\n\"")), "{l}");
        }
        insta::with_settings!({filters => common::tag_filters()}, {
            insta::assert_snapshot!(
                format!("dry_run_shape_{id}"),
                format!("{stdout}---- stderr ----\n{stderr}")
            );
        });
        // The diff is a real patch: GNU patch applies it, and apply then keeps its tag.
        let st = Command::new("patch")
            .args(["-p1", "-s"])
            .current_dir(d.path())
            .stdin(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().unwrap().write_all(stdout.as_bytes())?;
                c.wait()
            })
            .expect("GNU patch (scripts/install-deps installs it)");
        assert!(
            st.success(),
            "patch -p1 rejected the dry-run diff for shape {id}"
        );
        let again = apply(d.path(), false).unwrap();
        assert_eq!(again.changed, 0, "shape {id}");
        assert_eq!(again.tag.to_string(), tag);
        assert_eq!(again.tag_origin, astpatch::patch::apply::TagOrigin::File);
    }
}

#[test]
fn cli_apply_twice_and_errors() {
    let d = tempfile::tempdir().unwrap();
    fixtures::write_tree(d.path(), &fixtures::spec("7", "11.23.1"));
    let p = d.path().to_str().unwrap();
    let common::Run {
        code,
        stdout: out,
        stderr: _,
    } = common::astpatch().args(["apply", p]).run();
    assert_eq!(code, 0);
    assert!(
        out.contains("5 of 5 inbound sites now log the source address"),
        "{out}"
    );
    let common::Run {
        code,
        stdout: out,
        stderr: _,
    } = common::astpatch().args(["apply", p]).run();
    assert_eq!(code, 0);
    assert!(out.contains("already patched"), "{out}");
    let common::Run {
        code,
        stdout: out,
        stderr: _,
    } = common::astpatch().args(["revert", "--json", p]).run();
    assert_eq!(code, 0);
    assert!(out.contains("\"outcome\": \"restored\""), "{out}");
    let common::Run {
        code,
        stdout: _,
        stderr: err,
    } = common::astpatch()
        .args(["apply", "/nonexistent/asterisk"])
        .run();
    assert_eq!(code, 2);
    assert!(err.starts_with("error: /nonexistent/asterisk:"), "{err}");
    assert!(err.contains("hint:"), "{err}");
    let common::Run {
        code,
        stdout: _,
        stderr: err,
    } = common::astpatch()
        .args(["apply", d.path().join(".version").to_str().unwrap()])
        .run();
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("is a file, not a source tree"));
}

#[test]
fn cli_unknown_site_report_names_each_site_and_how_to_file_an_issue() {
    let d = tempfile::tempdir().unwrap();
    fixtures::write_tree(d.path(), &fixtures::spec("7", "11.23.1"));
    let path = d.path().join("channels/chan_sip.c");
    let odd = String::from_utf8_lossy(&fs::read(&path).unwrap())
        .replacen(
            "\"Failed to authenticate device %s for SUBSCRIBE\\n\", sip_get_header(req, \"From\"));",
            "\"Failed to authenticate device %s for SUBSCRIBE\\n\", sip_get_header(req, \"From\"), vendor_extra);",
            1,
        )
        .into_bytes();
    fs::write(&path, &odd).unwrap();
    let p = d.path().to_str().unwrap();
    for args in [vec!["apply", "--dry-run", p], vec!["apply", p]] {
        let common::Run {
            code,
            stdout: out,
            stderr: err,
        } = common::astpatch().args(&args).run();
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(
            out.is_empty(),
            "{args:?}: no diff for a refused file: {out}"
        );
        let site = err
            .lines()
            .position(|l| l.contains("in handle_request_subscribe(): statement matches no hunk"))
            .unwrap_or_else(|| panic!("{args:?}: site not named: {err}"));
        assert!(
            err.lines().nth(site + 1).unwrap().contains("vendor_extra"),
            "{args:?}: the statement is shown: {err}"
        );
        assert!(
            err.contains("hint:")
                && err.contains("astpatch apply --dry-run SRC 2> astpatch-issue.txt")
                && err.contains("issue"),
            "{args:?}: {err}"
        );
        assert_eq!(fs::read(&path).unwrap(), odd);
        assert_eq!(fs::read_dir(d.path().join("channels")).unwrap().count(), 1);
    }
}

#[test]
fn revert_without_the_pristine_copy_still_restores_the_exact_bytes() {
    for (id, version) in [("7", "11.23.1"), ("2", "1.4.40"), ("8", "16.30.0")] {
        let d = tempfile::tempdir().unwrap();
        fixtures::write_tree(d.path(), &fixtures::spec(id, version));
        let path = d.path().join("channels/chan_sip.c");
        let original = fs::read(&path).unwrap();
        apply(d.path(), false).unwrap();
        fs::remove_file(d.path().join("channels/chan_sip.c.astpatch-orig")).unwrap();
        let r = revert(d.path()).unwrap_or_else(|e| panic!("shape {id}: {e}"));
        assert_eq!(r.outcome, RevertOutcome::Restored, "shape {id}");
        assert_eq!(fs::read(&path).unwrap(), original, "shape {id}");
        assert_eq!(
            fs::read_dir(d.path().join("channels")).unwrap().count(),
            1,
            "shape {id}: the record is removed too"
        );
    }
    // When the reversed bytes do not hash to the record, nothing is written.
    let d = tempfile::tempdir().unwrap();
    fixtures::write_tree(d.path(), &fixtures::spec("7", "11.23.1"));
    apply(d.path(), false).unwrap();
    fs::remove_file(d.path().join("channels/chan_sip.c.astpatch-orig")).unwrap();
    let record = d.path().join("channels/chan_sip.c.astpatch.json");
    let text = fs::read_to_string(&record).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let orig_hash = v["original_sha256"].as_str().unwrap();
    fs::write(&record, text.replace(orig_hash, &"0".repeat(64))).unwrap();
    let patched = chan_sip(d.path());
    let e = revert(d.path()).unwrap_err().to_string();
    assert!(
        e.contains("is missing") && e.contains("nothing was changed"),
        "{e}"
    );
    assert_eq!(chan_sip(d.path()), patched);
}

#[test]
fn cli_dry_run_diff_keeps_latin1_context_so_patch_applies_it() {
    let d = tempfile::tempdir().unwrap();
    fixtures::write_tree(d.path(), &fixtures::spec("7", "11.23.1"));
    let path = d.path().join("channels/chan_sip.c");
    let mut bytes = fs::read(&path).unwrap();
    // A Latin-1 comment right above a site: it becomes a context line of the hunk.
    let site = bytes
        .windows(30)
        .position(|w| w == b"\"Failed to authenticate device")
        .unwrap();
    let line_start = bytes[..site].iter().rposition(|&c| c == b'\n').unwrap() + 1;
    bytes.splice(
        line_start..line_start,
        b"\t/* Jos\xe9 M\xfcller's fix */\n".iter().copied(),
    );
    fs::write(&path, &bytes).unwrap();
    let out = Command::new(common::bin())
        .args(["apply", "--dry-run", d.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        out.stdout.windows(4).any(|w| w == b"Jos\xe9"),
        "the Latin-1 byte is in the diff as it is in the file"
    );
    let st = Command::new("patch")
        .args(["-p1", "-s"])
        .current_dir(d.path())
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(&out.stdout)?;
            c.wait()
        })
        .expect("GNU patch (scripts/install-deps installs it)");
    assert!(st.success(), "patch -p1 rejected the dry-run diff");
    // What patch made is byte for byte what apply makes, but for the tag (each draws its own).
    let by_patch = fs::read(&path).unwrap();
    fs::write(&path, &bytes).unwrap();
    let r = apply(d.path(), false).unwrap();
    let by_apply = fs::read(&path).unwrap();
    assert_ne!(by_patch, by_apply, "a fresh tag per apply");
    assert_eq!(fixtures::untag(&by_patch), fixtures::untag(&by_apply));
    assert_eq!(
        memchr::memmem::find_iter(&by_apply, r.tag.as_str()).count(),
        5
    );
}

/// An upgrade in place interrupted after the file and before its record (simulated by putting
/// the record from before tags back): the next apply proves the file is the upgrade of what
/// that record describes, completes the record, and revert is exact again.
#[test]
fn an_upgrade_interrupted_before_its_record_is_completed_by_the_next_apply() {
    let d = tempfile::tempdir().unwrap();
    fixtures::write_tree(d.path(), &fixtures::spec("6", "11.2.1"));
    let pristine = chan_sip(d.path());
    fixtures::patch_like_before_tags(d.path());
    let record_path = d.path().join("channels/chan_sip.c.astpatch.json");
    let old_record = fs::read(&record_path).unwrap();
    let up = apply(d.path(), false).unwrap();
    let tagged = chan_sip(d.path());
    fs::write(&record_path, &old_record).unwrap();
    assert!(
        revert(d.path()).is_err(),
        "the torn state is not revertable as is"
    );
    let heal = apply(d.path(), false).unwrap();
    assert_eq!((heal.changed, heal.tag), (0, up.tag));
    assert!(
        heal.notes
            .iter()
            .any(|n| n.contains("the record is complete now")),
        "{:?}",
        heal.notes
    );
    assert_eq!(chan_sip(d.path()), tagged);
    assert_eq!(manifest(d.path())["tag"], up.tag.as_str());
    assert_eq!(apply(d.path(), false).unwrap().notes, Vec::<String>::new());
    revert(d.path()).unwrap();
    assert_eq!(chan_sip(d.path()), pristine);
    // A tagged file whose untagged form is not what the record describes is left alone.
    fixtures::patch_like_before_tags(d.path());
    let old_record = fs::read(&record_path).unwrap();
    apply(d.path(), false).unwrap();
    let mut edited = chan_sip(d.path());
    edited.extend_from_slice(b"/* edited */\n");
    fs::write(d.path().join("channels/chan_sip.c"), &edited).unwrap();
    fs::write(&record_path, &old_record).unwrap();
    let r = apply(d.path(), false).unwrap();
    assert!(r.notes.is_empty(), "{:?}", r.notes);
    assert_eq!(fs::read(&record_path).unwrap(), old_record);
}
