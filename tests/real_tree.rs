//! Opt-in: `apply --rebuild`, `verify` and `revert` with the real binary against real Asterisk
//! trees the operator configured and built. `ASTPATCH_ASTERISK_TREE=/usr/src/asterisk-20.10.0`
//! (or several, colon-separated, one per era) enables it; without it the test says SKIP.
//!
//! Each tree is copied (`cp -a`, which keeps the mtimes make relies on) into a temp dir and
//! only the copy is touched; the test never fetches, configures or fully builds Asterisk.
//! A tree astpatch already patched is reverted in the copy first, so the run always starts
//! from the release's own chan_sip.c.
use crate::common;

use std::collections::BTreeMap;
use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use astpatch::patch::sites::{self, PatchState};
use serde_json::Value;

const VAR: &str = "ASTPATCH_ASTERISK_TREE";

#[test]
fn real_built_trees_rebuild_only_chan_sip_verify_and_revert() {
    let Some(value) = std::env::var_os(VAR) else {
        eprintln!(
            "SKIP real_tree: set {VAR}=/path/to/a/configured/and/built/asterisk/tree (colon-separated for several)"
        );
        return;
    };
    let trees: Vec<PathBuf> = std::env::split_paths(&value)
        .filter(|p| !p.as_os_str().is_empty())
        .collect();
    assert!(!trees.is_empty(), "{VAR} is set but names no tree");

    let mut rows = Vec::new();
    for tree in &trees {
        eprintln!("=== real_tree: {}", tree.display());
        let outcome = catch_unwind(AssertUnwindSafe(|| run_one(tree)));
        rows.push((tree.clone(), outcome));
    }
    eprintln!("=== real_tree summary");
    let mut failed = Vec::new();
    for (tree, outcome) in &rows {
        match outcome {
            Ok(f) => eprintln!("PASS {}: {f}", tree.display()),
            Err(e) => {
                let why = e
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| e.downcast_ref::<&str>().copied())
                    .unwrap_or("panicked");
                let first = why.lines().next().unwrap_or_default();
                eprintln!("FAIL {}: {first}", tree.display());
                failed.push(tree.display().to_string());
            }
        }
    }
    assert!(
        failed.is_empty(),
        "failed on {} (details above)",
        failed.join(", ")
    );
}

/// What one tree measured.
struct Figures {
    copy: Duration,
    wall: Duration,
    cpu_user: Duration,
    cpu_sys: Duration,
    cc: usize,
    ld: usize,
    commands: Vec<String>,
    already_patched: bool,
}

impl std::fmt::Display for Figures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "apply --rebuild wall {:.1} s, CPU {:.1} s (user {:.1} + sys {:.1}), {} [CC] + {} [LD] via `{}`; copy {:.1} s{}",
            self.wall.as_secs_f64(),
            (self.cpu_user + self.cpu_sys).as_secs_f64(),
            self.cpu_user.as_secs_f64(),
            self.cpu_sys.as_secs_f64(),
            self.cc,
            self.ld,
            self.commands.join("; "),
            self.copy.as_secs_f64(),
            if self.already_patched {
                " (given tree was already patched: reverted in the copy first)"
            } else {
                ""
            }
        )
    }
}

fn run_one(given: &Path) -> Figures {
    let given_src = given.join("channels/chan_sip.c");
    let given_so = given.join("channels/chan_sip.so");
    assert!(
        given_src.is_file(),
        "{} not found: {VAR} must name the top of an Asterisk source tree",
        given_src.display()
    );
    assert!(
        given_so.is_file(),
        "{} not found: configure and build the tree first (./configure && make); this test never builds Asterisk itself",
        given_so.display()
    );
    // A fully built tree has its asterisk binary (main/, or the top in 1.2 and older); without
    // it the tree is not built yet or still building, and mtimes would move under the test.
    assert!(
        ["main/asterisk", "asterisk"]
            .iter()
            .any(|b| given.join(b).is_file()),
        "{}: no asterisk binary (main/asterisk): finish building the tree first",
        given.display()
    );
    let given_src_before = fs::read(&given_src).unwrap();
    let given_so_mtime = mtime(&given_so);

    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    let started = Instant::now();
    let cp = Command::new("cp")
        .arg("-a")
        .arg(given)
        .arg(&tree)
        .output()
        .unwrap();
    assert!(cp.status.success(), "cp -a failed: {}", text(&cp.stderr));
    let copy = started.elapsed();
    let src = tree.join("channels/chan_sip.c");
    let so = tree.join("channels/chan_sip.so");

    let already_patched = match sites::scan(&fs::read(&src).unwrap()).state() {
        PatchState::Unpatched => false,
        PatchState::Patched | PatchState::PartlyPatched => {
            let out = common::run(["revert".as_ref(), tree.as_os_str()]);
            assert!(
                out.status.success(),
                "the given tree's chan_sip.c is patched but `astpatch revert` cannot undo it: {}",
                text(&out.stderr)
            );
            true
        }
        PatchState::NoSites => panic!("{}: no inbound failed-auth sites", src.display()),
    };
    let original = fs::read(&src).unwrap();
    assert_eq!(sites::scan(&original).state(), PatchState::Unpatched);
    // A module built from the release's source cannot carry the patched strings yet; in a tree
    // astpatch had already patched and built, it does (and only the mtimes prove the rebuild).
    let module_before = fs::read(&so).unwrap();
    assert!(
        already_patched || !astpatch::module::install::module_is_patched(&module_before),
        "{} carries patched strings though chan_sip.c is unpatched: rebuild the tree (make) first",
        given_so.display()
    );
    let before = artefact_mtimes(&tree);
    assert!(
        before.contains_key("channels/chan_sip.o") || before.contains_key("channels/chan_sip.so")
    );

    let cpu_before = children_cpu();
    let started = Instant::now();
    let out = common::run([
        "apply".as_ref(),
        "--rebuild".as_ref(),
        "--json".as_ref(),
        tree.as_os_str(),
    ]);
    let wall = started.elapsed();
    let (cpu_user, cpu_sys) = {
        let after = children_cpu();
        (after.0 - cpu_before.0, after.1 - cpu_before.1)
    };
    assert!(
        out.status.success(),
        "astpatch apply --rebuild failed ({}):\n{}",
        out.status,
        text(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("apply --json printed no JSON ({e}):\n{}", text(&out.stdout)));
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap_or_else(|| panic!("expected a list, got {v}"))
            .iter()
            .map(|s| s.as_str().unwrap().to_owned())
            .collect()
    };
    let rebuild = &report["rebuild"];
    assert_eq!(rebuild["state_before"], "built", "{rebuild}");
    let commands = strings(&rebuild["commands"]);
    assert_eq!(
        strings(&rebuild["compiled"]),
        ["chan_sip.o"],
        "compiled more than chan_sip: {rebuild}"
    );
    assert_eq!(
        strings(&rebuild["linked"]),
        ["chan_sip.so"],
        "linked more than chan_sip: {rebuild}"
    );
    let log = fs::read_to_string(rebuild["log"].as_str().unwrap()).unwrap();
    let count = |tag: &str| {
        log.lines()
            .filter(|l| l.trim_start().starts_with(tag))
            .count()
    };
    let (cc, ld) = (count("[CC]"), count("[LD]"));

    // The source: every inbound site patched, by the same engine as detect.
    let patched = fs::read(&src).unwrap();
    let scan = sites::scan(&patched);
    assert_eq!(scan.state(), PatchState::Patched, "{}", src.display());

    // Only chan_sip was rebuilt: every other object, library and the asterisk binary kept its
    // mtime, and nothing appeared or vanished.
    let after = artefact_mtimes(&tree);
    let mut changed: Vec<&str> = after
        .iter()
        .filter(|(k, v)| before.get(*k) != Some(v))
        .map(|(k, _)| k.as_str())
        .collect();
    changed.extend(
        before
            .keys()
            .filter(|k| !after.contains_key(*k))
            .map(String::as_str),
    );
    changed.sort();
    assert_eq!(
        changed,
        ["channels/chan_sip.o", "channels/chan_sip.so"],
        "mtimes changed beyond chan_sip ({} artefacts compared)",
        after.len()
    );

    // The module carries the format strings of the patched source, byte for byte.
    let module = fs::read(&so).unwrap();
    let wanted = astpatch::verify::source::site_format_strings(&patched, &scan);
    assert!(!wanted.is_empty());
    for s in &wanted {
        assert!(
            memchr::memmem::find(&module, s).is_some(),
            "{:?} not in {}",
            String::from_utf8_lossy(s),
            so.display()
        );
    }
    assert!(astpatch::module::install::module_is_patched(&module));
    assert!(
        !already_patched || mtime(&so) > given_so_mtime,
        "the module must be the one just built"
    );

    // verify: source and built module pass. The other checks concern a system this test does
    // not set up (an empty --root), so only their presence is checked.
    let root = tmp.path().join("root");
    fs::create_dir(&root).unwrap();
    let config = tmp.path().join("astpatch.toml");
    fs::write(&config, "").unwrap();
    let out = common::run([
        "verify".as_ref(),
        tree.as_os_str(),
        "--json".as_ref(),
        "--root".as_ref(),
        root.as_os_str(),
        "--config".as_ref(),
        config.as_os_str(),
    ]);
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "verify: {}",
        text(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    for name in ["source", "built-module"] {
        let check = v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no {name} check in {v}"));
        assert_eq!(check["status"], "pass", "{check}");
    }

    // revert restores the release's chan_sip.c byte for byte.
    let out = common::run(["revert".as_ref(), tree.as_os_str()]);
    assert!(out.status.success(), "revert: {}", text(&out.stderr));
    assert!(
        fs::read(&src).unwrap() == original,
        "revert did not restore the original bytes"
    );

    // The operator's tree was never touched.
    assert!(fs::read(&given_src).unwrap() == given_src_before);
    assert_eq!(mtime(&given_so), given_so_mtime);

    let f = Figures {
        copy,
        wall,
        cpu_user,
        cpu_sys,
        cc,
        ld,
        commands,
        already_patched,
    };
    eprintln!("{}: {f}", given.display());
    f
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn mtime(p: &Path) -> SystemTime {
    fs::metadata(p).unwrap().modified().unwrap()
}

/// mtimes of every object, shared object and archive, and of the asterisk binary.
fn artefact_mtimes(tree: &Path) -> BTreeMap<String, SystemTime> {
    walkdir::WalkDir::new(tree)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .filter(|e| {
            e.path()
                .extension()
                .is_some_and(|x| x == "o" || x == "so" || x == "a")
                || ["main/asterisk", "asterisk"]
                    .iter()
                    .any(|b| e.path().strip_prefix(tree).unwrap() == Path::new(b))
        })
        .map(|e| {
            (
                e.path().strip_prefix(tree).unwrap().display().to_string(),
                e.metadata().unwrap().modified().unwrap(),
            )
        })
        .collect()
}

/// User and system CPU time of every waited-for child process so far (make and the compilers
/// under astpatch included).
fn children_cpu() -> (Duration, Duration) {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    assert_eq!(
        unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) },
        0
    );
    let d = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    (d(ru.ru_utime), d(ru.ru_stime))
}
