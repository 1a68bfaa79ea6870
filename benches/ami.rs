//! AMI event parsing rate: the real captured event blocks of Asterisk 20.20.1, repeated,
//! framed and judged as the watcher's AMI thread does. Prints events/s (the target is
//! 200,000 or more).
use std::time::Instant;

use astpatch::ami::message::Splitter;
use astpatch::ami::security::{Verdict, judge_block};

fn main() {
    let mut corpus = Vec::new();
    for e in std::fs::read_dir("tests/corpus/real/asterisk-20.20.1/stock").unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "ami") {
            let raw = std::fs::read(&p).unwrap();
            let at = memchr::memmem::find(&raw, b"# ---\n").unwrap() + 6;
            corpus.extend_from_slice(&raw[at..]);
        }
    }
    let per_copy = corpus.windows(4).filter(|w| w == b"\r\n\r\n").count();
    // `cargo test` runs this too (without --bench): a smoke run then.
    let full = std::env::args().any(|a| a == "--bench");
    let copies = if full { 2_000_000 } else { 20_000 } / per_copy.max(1);
    let mut stream = Vec::with_capacity(corpus.len() * copies);
    for _ in 0..copies {
        stream.extend_from_slice(&corpus);
    }
    let cpu = || {
        let mut u: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: getrusage fills the struct we own.
        unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
        (u.ru_utime.tv_sec + u.ru_stime.tv_sec) as f64
            + (u.ru_utime.tv_usec + u.ru_stime.tv_usec) as f64 / 1e6
    };
    for round in 0..if full { 3 } else { 1 } {
        let t = Instant::now();
        let c0 = cpu();
        let mut s = Splitter::default();
        let (mut n, mut failures) = (0u64, 0u64);
        // As the socket delivers it: 64 KiB reads.
        for chunk in stream.chunks(64 * 1024) {
            s.push(chunk);
            while let Some(b) = s.next_block() {
                n += 1;
                if let Ok(b) = b {
                    if matches!(judge_block(b), Verdict::Failure { .. }) {
                        failures += 1;
                    }
                }
            }
        }
        let secs = t.elapsed().as_secs_f64();
        let cpu_secs = cpu() - c0;
        println!(
            "ami round {round}: {n} events ({failures} failures believed): {:.0} events/s wall, {:.0} events per CPU second, {:.1} MB/s",
            n as f64 / secs,
            n as f64 / cpu_secs,
            stream.len() as f64 / secs / 1e6
        );
    }
}
