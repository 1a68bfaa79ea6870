//! `cargo bench --bench apply`: apply on an 11.x-sized (~1 MB) chan_sip.c, next to GNU patch
//! applying the same change. Prints figures; asserts nothing about time.
#[path = "../tests/common/fixtures.rs"]
mod fixtures;

use std::process::Command;
use std::time::{Duration, Instant};

use astpatch::patch::engine::{self, Direction, Tagging};
use astpatch::patch::sites;
use astpatch::patch::tag::Tag;

fn big_chan_sip() -> Vec<u8> {
    let spec = fixtures::spec("7", "11.23.1");
    let small = fixtures::chan_sip(&spec);
    // Pad with ordinary code before and after, the way the real file buries its five sites in
    // ~35,000 lines: 1 MB total.
    let filler = b"static int filler_NNNNNN(struct sip_pvt *p)\n{\n\tif (p->flag) {\n\t\tast_log(LOG_WARNING, \"Something unrelated %d\\n\", p->flag);\n\t}\n\treturn 0;\n}\n\n";
    let mut out = Vec::new();
    let mut n = 0;
    while out.len() < 500_000 {
        out.extend_from_slice(&filler[..]);
        n += 1;
    }
    out.extend_from_slice(&small);
    while out.len() < 1_000_000 {
        out.extend_from_slice(&filler[..]);
        n += 1;
    }
    eprintln!(
        "synthetic chan_sip.c: {} bytes, {} filler functions",
        out.len(),
        n
    );
    out
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let src = big_chan_sip();
    let patches = engine::embedded();
    // `cargo test --all-targets` runs this too: one quick pass there, full runs under `cargo bench`.
    let runs = if std::env::args().any(|a| a == "--bench") {
        50
    } else {
        2
    };
    // Pure engine: scan, choose, plan, rewrite.
    let mut t = Vec::new();
    let tag = Tagging::Tag(Tag::generate().unwrap());
    for _ in 0..runs {
        let start = Instant::now();
        let scan = sites::scan(&src);
        let p = engine::select(patches, &scan).unwrap();
        let plan = engine::plan(&src, &scan, p, Direction::Forward, tag);
        let out = engine::execute(&src, &plan, p, Direction::Forward);
        t.push(start.elapsed());
        assert_eq!(plan.changes(), 5);
        std::hint::black_box(out);
    }
    let engine = median(t);
    // Whole command on disk: read, plan, pristine copy, manifest, atomic write with fsyncs.
    let mut t = Vec::new();
    let mut diff = String::new();
    for _ in 0..runs {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("channels")).unwrap();
        std::fs::write(d.path().join(".version"), "11.23.1\n").unwrap();
        std::fs::write(d.path().join("channels/chan_sip.c"), &src).unwrap();
        let start = Instant::now();
        astpatch::patch::apply::apply(d.path(), false).unwrap();
        t.push(start.elapsed());
        std::fs::write(d.path().join("channels/chan_sip.c"), &src).unwrap();
        std::fs::remove_file(d.path().join("channels/chan_sip.c.astpatch.json")).unwrap();
        diff = astpatch::patch::apply::apply(d.path(), true).unwrap().diff;
    }
    let whole = median(t);
    // Peer: GNU patch applying the same unified diff (its process start included, as a user
    // would run it).
    let mut t = Vec::new();
    for _ in 0..runs {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("channels")).unwrap();
        std::fs::write(d.path().join("channels/chan_sip.c"), &src).unwrap();
        std::fs::write(d.path().join("x.diff"), &diff).unwrap();
        let start = Instant::now();
        let st = Command::new("patch")
            .args(["-p1", "-s", "-i", "x.diff"])
            .current_dir(d.path())
            .status();
        t.push(start.elapsed());
        if !st.map(|s| s.success()).unwrap_or(false) {
            eprintln!("GNU patch not available or failed; skipping the peer figure");
            t.clear();
            break;
        }
    }
    println!(
        "apply benchmark on a {:.1} MB chan_sip.c (median of {runs})",
        src.len() as f64 / 1e6
    );
    println!(
        "  engine (scan + plan + rewrite, in memory): {:>8.2} ms",
        engine.as_secs_f64() * 1e3
    );
    println!(
        "  astpatch apply (on disk, fsynced, with pristine copy + manifest): {:>8.2} ms",
        whole.as_secs_f64() * 1e3
    );
    if !t.is_empty() {
        println!(
            "  GNU patch -p1 of the same diff (process incl.): {:>8.2} ms",
            median(t).as_secs_f64() * 1e3
        );
    }
}
