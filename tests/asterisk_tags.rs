//! Opt-in: run the engine over every tag of a real Asterisk git checkout.
//!
//! `ASTPATCH_ASTERISK_GIT=/path/to/asterisk(.git) cargo test --release --test asterisk_tags -- --nocapture`
//! Without the variable the test says so and passes: it needs a checkout we must not ship.
use std::collections::BTreeMap;

use astpatch::patch::{self, Action, Direction};
use astpatch::sites;

/// An independent census: lines whose format string starts an inbound failure message.
fn census(src: &[u8]) -> usize {
    let re = regex::bytes::Regex::new(
        r#""(Failed to authenticate (user|device) %s|Sending fake auth rejection for (user|device) %s)"#,
    )
    .unwrap();
    src.split(|&b| b == b'\n')
        .filter(|l| re.is_match(l))
        .count()
}

#[test]
fn every_tag_applies_and_reverts() {
    let Ok(path) = std::env::var("ASTPATCH_ASTERISK_GIT") else {
        eprintln!(
            "SKIP every_tag_applies_and_reverts: set ASTPATCH_ASTERISK_GIT to an Asterisk git checkout"
        );
        return;
    };
    let repo = git2::Repository::open(&path).expect("open ASTPATCH_ASTERISK_GIT");
    let mut tags = Vec::new();
    repo.tag_foreach(|oid, name| {
        tags.push((
            String::from_utf8_lossy(name)
                .trim_start_matches("refs/tags/")
                .to_owned(),
            oid,
        ));
        true
    })
    .unwrap();
    let patches = patch::embedded();
    let (mut seen, mut applied, mut no_sites) = (0, 0, 0);
    let mut refused: Vec<String> = Vec::new();
    let mut by_patch: BTreeMap<String, usize> = BTreeMap::new();
    for (tag, oid) in &tags {
        let obj = repo.find_object(*oid, None).unwrap();
        let Ok(tree) = obj.peel_to_tree() else {
            continue;
        };
        let Ok(entry) = tree.get_path(std::path::Path::new("channels/chan_sip.c")) else {
            continue;
        };
        let blob = repo.find_blob(entry.id()).unwrap();
        let src = blob.content();
        seen += 1;
        let scan = sites::scan(src);
        assert_eq!(
            scan.sites.len(),
            census(src),
            "{tag}: scanner and census disagree"
        );
        if scan.sites.is_empty() {
            no_sites += 1;
            continue;
        }
        let Some(p) = patch::select(patches, &scan) else {
            refused.push(format!(
                "{tag}: no patch for shape {:?} api {:?}",
                scan.shape(),
                scan.address_api
            ));
            continue;
        };
        let plan = patch::plan(src, &scan, p, Direction::Forward);
        if plan.unknown().count() > 0 {
            refused.push(format!(
                "{tag}: {} unknown sites with {}",
                plan.unknown().count(),
                p.file
            ));
            continue;
        }
        let out = patch::execute(src, &plan, p, Direction::Forward);
        let rescan = sites::scan(&out);
        assert_eq!(rescan.sites.len(), scan.sites.len(), "{tag}");
        for s in &rescan.sites {
            assert!(
                s.patched,
                "{tag}: {} line {} not patched",
                s.function, s.line
            );
            let stmt = &out[s.span.clone()];
            let has_addr = [&b"sin->sin_addr"[..], b"ast_sockaddr_stringify("]
                .iter()
                .any(|n| memchr::memmem::find(stmt, n).is_some());
            assert!(
                has_addr,
                "{tag}: {} line {} carries no address expression",
                s.function, s.line
            );
        }
        // Idempotent.
        let again = patch::plan(&out, &rescan, p, Direction::Forward);
        assert_eq!(
            again.changes(),
            0,
            "{tag}: second apply would change something"
        );
        assert!(
            again
                .sites
                .iter()
                .all(|s| s.action == Action::AlreadyPatched)
        );
        // Exact revert.
        let back = patch::plan(&out, &rescan, p, Direction::Reverse);
        assert_eq!(
            patch::execute(&out, &back, p, Direction::Reverse),
            src,
            "{tag}: revert is not exact"
        );
        applied += 1;
        *by_patch.entry(p.file.clone()).or_default() += 1;
    }
    eprintln!(
        "tags with channels/chan_sip.c: {seen}; applied+reverted: {applied}; no inbound sites: {no_sites}; refused: {}",
        refused.len()
    );
    for (f, n) in &by_patch {
        eprintln!("  {f}: {n}");
    }
    for r in &refused {
        eprintln!("  refused {r}");
    }
    assert!(refused.is_empty(), "{} tags refused", refused.len());
}
