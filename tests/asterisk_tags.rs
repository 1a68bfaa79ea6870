//! Opt-in: run the engine over every tag of a real Asterisk git checkout.
//!
//! `ASTPATCH_ASTERISK_GIT=/path/to/asterisk(.git) cargo test --release --test tests asterisk_tags:: -- --nocapture`
//! Without the variable the test says so and passes: it needs a checkout we must not ship.
use std::collections::BTreeMap;

use astpatch::patch::engine::{self, Action, Direction, Tagging};
use astpatch::patch::sites;
use astpatch::patch::tag::Tag;

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
    let patches = engine::embedded();
    let (mut seen, mut applied, mut no_sites, mut upgraded) = (0, 0, 0, 0);
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
        let Some(p) = engine::select(patches, &scan) else {
            refused.push(format!(
                "{tag}: no patch for shape {:?} api {:?}",
                scan.shape(),
                scan.address_api
            ));
            continue;
        };
        let t = Tag::generate().unwrap();
        let tagged = Tagging::Tag(t);
        let plan = engine::plan(src, &scan, p, Direction::Forward, tagged);
        if plan.unknown().count() > 0 {
            refused.push(format!(
                "{tag}: {} unknown sites with {}",
                plan.unknown().count(),
                p.file
            ));
            continue;
        }
        let out = engine::execute(src, &plan, p, Direction::Forward);
        let rescan = sites::scan(&out);
        assert_eq!(rescan.sites.len(), scan.sites.len(), "{tag}");
        let suffix = format!("{}\\n\"", t.suffix());
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
            assert_eq!(
                memchr::memmem::find_iter(stmt, suffix.as_bytes()).count(),
                1,
                "{tag}: {} line {} does not end its message with the tag",
                s.function,
                s.line
            );
        }
        // Idempotent, with the same tag.
        let again = engine::plan(&out, &rescan, p, Direction::Forward, tagged);
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
        // Exact revert, by the hunks and by the recorded statements.
        let back = engine::plan(&out, &rescan, p, Direction::Reverse, tagged);
        assert_eq!(
            engine::execute(&out, &back, p, Direction::Reverse),
            src,
            "{tag}: revert is not exact"
        );
        let by_statements = engine::replace_sites(
            &out,
            rescan
                .sites
                .iter()
                .zip(&scan.sites)
                .map(|(a, b)| (a.span.clone(), src[b.span.clone()].to_vec())),
        );
        assert_eq!(by_statements, src, "{tag}: statement revert is not exact");
        // The wording before tags is upgraded in place to exactly the same file, and reverts.
        let legacy_plan = engine::plan(src, &scan, p, Direction::Forward, Tagging::Legacy);
        let legacy = engine::execute(src, &legacy_plan, p, Direction::Forward);
        let lscan = sites::scan(&legacy);
        let up = engine::plan(&legacy, &lscan, p, Direction::Forward, tagged);
        assert!(
            up.sites.iter().all(|s| s.action == Action::Upgrade),
            "{tag}: pre-tag wording not recognised"
        );
        assert_eq!(
            engine::execute(&legacy, &up, p, Direction::Forward),
            out,
            "{tag}: upgrade differs from a fresh apply"
        );
        let lback = engine::plan(&legacy, &lscan, p, Direction::Reverse, Tagging::Legacy);
        assert_eq!(
            engine::execute(&legacy, &lback, p, Direction::Reverse),
            src,
            "{tag}: pre-tag revert is not exact"
        );
        upgraded += 1;
        applied += 1;
        *by_patch.entry(p.file.clone()).or_default() += 1;
    }
    eprintln!(
        "tags with channels/chan_sip.c: {seen}; applied+idempotent+reverted: {applied}; pre-tag wording upgraded+reverted: {upgraded}; no inbound sites: {no_sites}; refused: {}",
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

/// An independent shape census, written apart from `sites.rs`: which wordings and lines the
/// file has, and which functions (found by walking back to the enclosing definition line) log
/// the inbound failures.
fn census_shape(src: &[u8]) -> Option<&'static str> {
    let text = String::from_utf8_lossy(src);
    let lines: Vec<&str> = text.lines().collect();
    let site = regex::Regex::new(
        r#""(Failed to authenticate (user|device) %s|Sending fake auth rejection for (user|device) %s)"#,
    )
    .unwrap();
    let def = regex::Regex::new(r"^(static\s+)?[A-Za-z_][\w\s\*]*?\b([A-Za-z_]\w*)\s*\(").unwrap();
    let mut functions = std::collections::BTreeSet::new();
    for (i, l) in lines.iter().enumerate() {
        if !site.is_match(l) {
            continue;
        }
        let f = lines[..i]
            .iter()
            .rev()
            .filter(|l| !l.starts_with(char::is_whitespace) && !l.trim_end().ends_with(';'))
            .find_map(|l| def.captures(l).map(|c| c[2].to_owned()));
        functions.insert(f.unwrap_or_default());
    }
    if functions.is_empty() {
        return None;
    }
    if text.contains("\"Failed to authenticate device %s for %s, code = %d") {
        return Some("8");
    }
    let has = |f: &str| functions.contains(f);
    if has("handle_request") {
        return Some("0");
    }
    let fake = text.contains("\"Sending fake auth rejection for");
    if text.contains("\"Failed to authenticate user %s") {
        return Some(if fake { "2" } else { "1" });
    }
    if text.contains("sip_get_header(") {
        return Some(if fake { "6" } else { "7" });
    }
    if !has("handle_request_options") && !has("handle_request_publish") {
        return Some("3");
    }
    Some(match (fake, has("receive_message")) {
        (true, false) => "4",
        (true, true) => "4c",
        (false, false) => "5",
        (false, true) => "5c",
    })
}

#[test]
fn every_tag_detects_its_shape() {
    let Ok(path) = std::env::var("ASTPATCH_ASTERISK_GIT") else {
        eprintln!(
            "SKIP every_tag_detects_its_shape: set ASTPATCH_ASTERISK_GIT to an Asterisk git checkout"
        );
        return;
    };
    let repo = git2::Repository::open(&path).expect("open ASTPATCH_ASTERISK_GIT");
    let mut tags = Vec::new();
    repo.tag_foreach(|oid, name| {
        let name = String::from_utf8_lossy(name);
        tags.push((name.trim_start_matches("refs/tags/").to_owned(), oid));
        true
    })
    .unwrap();
    // Each tag becomes the smallest tree detect accepts: .version and channels/chan_sip.c.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("channels")).unwrap();
    let (mut seen, mut detected, mut tag_named, mut version_unparsed) = (0, 0, 0, 0);
    let mut disagree: Vec<String> = Vec::new();
    let mut table_differs: Vec<String> = Vec::new();
    for (tag, oid) in &tags {
        let Ok(tree) = repo.find_object(*oid, None).unwrap().peel_to_tree() else {
            continue;
        };
        let Ok(entry) = tree.get_path(std::path::Path::new("channels/chan_sip.c")) else {
            continue;
        };
        seen += 1;
        let src = repo.find_blob(entry.id()).unwrap();
        let version = match tree.get_path(std::path::Path::new(".version")) {
            Ok(e) => repo.find_blob(e.id()).unwrap().content().to_vec(),
            // Old tags have no .version; git describe on such a checkout names the tag.
            Err(_) => {
                tag_named += 1;
                format!("{tag}\n").into_bytes()
            }
        };
        std::fs::write(dir.path().join(".version"), &version).unwrap();
        std::fs::write(dir.path().join("channels/chan_sip.c"), src.content()).unwrap();
        let report = match astpatch::patch::detect::detect(dir.path()) {
            Ok(r) => r,
            Err(e) => {
                disagree.push(format!("{tag}: detect failed: {e}"));
                continue;
            }
        };
        detected += 1;
        if !report.version.parsed {
            version_unparsed += 1;
        }
        let census = census_shape(src.content());
        if report.shape.as_deref() != census {
            disagree.push(format!(
                "{tag}: detect {:?}, census {census:?}",
                report.shape
            ));
        }
        if report.expected_shape != report.shape {
            table_differs.push(format!(
                "{tag} (.version {}): table {:?}, content {:?}",
                report.version.raw, report.expected_shape, report.shape
            ));
        }
    }
    eprintln!(
        "tags with channels/chan_sip.c: {seen}; detected: {detected}; shape disagreements with census: {}; \
         version from tag name (no .version): {tag_named}; .version unparsable: {version_unparsed}; \
         table expectation differs from content (content wins): {}",
        disagree.len(),
        table_differs.len()
    );
    for t in &table_differs {
        eprintln!("  table≠content {t}");
    }
    for d in &disagree {
        eprintln!("  DISAGREE {d}");
    }
    assert!(disagree.is_empty());
    assert_eq!(detected, seen);
}
