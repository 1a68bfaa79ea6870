//! `astpatch scan` through the binary: snapshots of its text and JSON reports on a small
//! committed sample, stdin and gzip input, and every kind of bad input the issue lists.
use crate::common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const SAMPLE: &str = "tests/corpus/sample.log";
const SETTINGS: &str = "tests/corpus/sample.toml";
const PATCHED: &str = "tests/corpus/sample-patched.toml";

fn scan(args: &[&str], stdin: Option<&[u8]>) -> Output {
    // The trust a scan reports includes the tags of a running Asterisk's module.
    let _quiet = common::QuietHost::take();
    common::astpatch()
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")))
        .arg("scan")
        .args(args)
        // Zoneless dates are local time: pin the zone so the snapshots hold everywhere.
        .env("TZ", "UTC")
        .stdin(stdin.unwrap_or_default())
        .output()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn json(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn sample_bytes() -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join(SAMPLE)).unwrap()
}

#[test]
fn text_report_snapshot() {
    let out = scan(&["--config", SETTINGS, SAMPLE], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "");
    insta::assert_snapshot!("scan_text", text(&out.stdout));
}

#[test]
fn json_report_snapshot_with_patched_chan_sip() {
    let out = scan(&["--config", PATCHED, "--json", SAMPLE], None);
    let v = json(&out);
    // The contract the issue fixes, checked besides the snapshot.
    assert_eq!(v["lines"], 19);
    assert_eq!(v["matched"], 16);
    let a = &v["addresses"][0];
    assert_eq!(a["address"], "203.0.113.7");
    assert_eq!(a["failures"], 5);
    assert_eq!(a["would_ban"], true);
    insta::assert_snapshot!("scan_json_patched", text(&out.stdout));
}

#[test]
fn ipv6_addresses_are_canonical_text() {
    let v = json(&scan(&["--config", SETTINGS, "--json", SAMPLE], None));
    let addrs: Vec<&str> = v["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["address"].as_str().unwrap())
        .collect();
    assert!(addrs.contains(&"2001:db8:66::9"), "{addrs:?}");
    assert!(addrs.iter().all(|a| !a.contains('[') && !a.contains('/')));
}

#[test]
fn stdin_and_gzip_read_the_same_lines() {
    let plain = json(&scan(&["--config", SETTINGS, "--json", SAMPLE], None));
    let piped = json(&scan(
        &["--config", SETTINGS, "--json", "-"],
        Some(&sample_bytes()),
    ));
    assert_eq!(plain["addresses"], piped["addresses"]);
    assert_eq!(piped["files"][0], "-");

    let dir = tempfile::tempdir().unwrap();
    let gz = dir.path().join("messages.1.gz");
    let mut enc = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz).unwrap(),
        flate2::Compression::default(),
    );
    enc.write_all(&sample_bytes()).unwrap();
    enc.finish().unwrap();
    let zipped = json(&scan(
        &["--config", SETTINGS, "--json", gz.to_str().unwrap()],
        None,
    ));
    assert_eq!(plain["addresses"], zipped["addresses"]);
    assert_eq!(plain["lines"], zipped["lines"]);
}

#[test]
fn rotated_files_are_counted_together() {
    let v = json(&scan(
        &["--config", SETTINGS, "--json", SAMPLE, SAMPLE],
        None,
    ));
    assert_eq!(v["lines"], 38);
    assert_eq!(v["files"].as_array().unwrap().len(), 2);
}

#[test]
fn bad_lines_are_warned_about_and_the_rest_is_scanned() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("messages");
    let good = b"[2026-11-24 10:11:13] NOTICE[3190] chan_sip.c: Registration from '<sip:1@h>' failed for '203.0.113.7:5060' - Wrong password";
    let mut data = Vec::new();
    // CRLF line endings.
    data.extend_from_slice(good);
    data.extend_from_slice(b"\r\n");
    // NUL bytes and invalid UTF-8, in a line and around one.
    data.extend_from_slice(b"\0\0\xff\xfe\xc3\x28 garbage\n");
    data.extend_from_slice(b"[2026-11-24 10:11:14] NOTICE[3190] chan_sip.c: Registration from '\xff\0<sip:1@h>' failed for '203.0.113.7:5060' - Wrong password\n");
    // A 10 MB line (line 4).
    data.extend(std::iter::repeat_n(b'A', 10 << 20));
    data.push(b'\n');
    // A final line cut off mid-write (line 5).
    data.extend_from_slice(good);
    std::fs::write(&p, &data).unwrap();
    let out = scan(&["--config", SETTINGS, "--json", p.to_str().unwrap()], None);
    let v = json(&out);
    assert_eq!(v["lines"], 5);
    assert_eq!(v["addresses"][0]["failures"], 3);
    assert_eq!(v["addresses"][0]["would_ban"], true);
    let err = text(&out.stderr);
    assert!(
        err.contains("messages:4: line of 10485760 bytes skipped"),
        "{err}"
    );
    assert!(
        err.contains("messages:5: last line has no newline"),
        "{err}"
    );
    assert_eq!(v["warnings"].as_array().unwrap().len(), 2);
}

#[test]
fn a_binary_file_is_scanned_without_harm() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("core");
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let bytes: Vec<u8> = (0..3_000_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(&p, bytes).unwrap();
    let out = scan(&["--config", SETTINGS, p.to_str().unwrap()], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("0 failure lines"));
}

#[test]
fn unreadable_arguments_exit_2_before_scanning() {
    let dir = tempfile::tempdir().unwrap();
    let out = scan(
        &["--config", SETTINGS, SAMPLE, dir.path().to_str().unwrap()],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("is a directory"));
    assert!(out.stdout.is_empty());

    let missing = dir.path().join("nope");
    let out = scan(&[missing.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("nope"));

    let out = scan(&["--config", missing.to_str().unwrap(), SAMPLE], None);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_10_mb_final_line_without_newline_is_skipped_with_its_number() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("messages");
    let mut data = sample_bytes();
    data.extend(std::iter::repeat_n(b'B', 10 << 20));
    std::fs::write(&p, &data).unwrap();
    let out = scan(&["--config", SETTINGS, "--json", p.to_str().unwrap()], None);
    let v = json(&out);
    assert_eq!(v["lines"], 20);
    assert_eq!(v["matched"], 16);
    let err = text(&out.stderr);
    assert!(
        err.contains("messages:20: line of 10485760 bytes skipped"),
        "{err}"
    );
}

#[test]
fn zoneless_dates_use_the_offset_in_force_at_each_date() {
    if !Path::new("/usr/share/zoneinfo/Europe/Berlin").exists() {
        eprintln!("SKIP zoneless_dates_use_the_offset_in_force_at_each_date: no tzdata");
        return;
    }
    let log = "[2026-07-01 12:00:00] NOTICE[1] chan_sip.c: Registration from '<sip:1@h>' failed for '203.0.113.7' - Wrong password\n\
               [2026-11-24 11:11:12] NOTICE[1] chan_sip.c: Registration from '<sip:1@h>' failed for '203.0.113.7' - Wrong password\n";
    let out = Command::new(common::bin())
        .args(["scan", "--json", "--config", SETTINGS, "-"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("TZ", "Europe/Berlin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(log.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    let v = json(&out);
    // 12:00 CEST (+2) and 11:11:12 CET (+1).
    assert_eq!(v["window"]["first"], 1_782_900_000);
    assert_eq!(v["window"]["last"], 1_795_515_072);
}

/// A SIP packet pjproject could not parse is dumped into the log raw, newlines and all, after
/// `ERROR[…] pjproject: … Error processing N bytes packet from …:`. Its lines are the sender's:
/// here six forged PJSIP failures (and a forged end marker) blaming 192.0.2.1.
fn packet_dump_log(filler: usize) -> Vec<u8> {
    let real = "[2026-11-24 10:11:12] NOTICE[6120] res_pjsip/pjsip_distributor.c: Request 'INVITE' from '<sip:100@x>' failed for '203.0.113.66:5060' (callid: r) - No matching endpoint found\n";
    let forged = "[2026-11-24 10:11:13] NOTICE[6120] res_pjsip/pjsip_distributor.c: Request 'INVITE' from '<sip:x@y>' failed for '192.0.2.1:5060' (callid: a) - No matching endpoint found\r\n";
    let mut packet = String::from("GARBAGE sip:x SIP/2.0\r\n");
    for _ in 0..6 {
        packet.push_str(forged);
    }
    packet.push_str("-- end of packet.\r\n");
    for _ in 0..6 {
        packet.push_str(forged);
    }
    packet.push_str("\r\n");
    let mut log = Vec::new();
    let pad = "[2026-11-24 10:11:12] VERBOSE[1] pbx.c: filler\n";
    while log.len() + pad.len() < filler {
        log.extend_from_slice(pad.as_bytes());
    }
    log.extend_from_slice(real.as_bytes());
    log.extend_from_slice(format!(
        "[2026-11-24 10:11:13] ERROR[6120] pjproject: \tsip_transport.c  Error processing {} bytes packet from UDP 203.0.113.66:5060 : PJSIP syntax error exception when parsing 'Request Line' header on line 1 col 1:\n",
        packet.len()
    ).as_bytes());
    log.extend_from_slice(packet.as_bytes());
    log.extend_from_slice(b"\n-- end of packet.\n");
    log.extend_from_slice(real.as_bytes());
    log
}

#[test]
fn lines_inside_a_packet_pjproject_dumps_are_never_read_as_failures() {
    let d = tempfile::tempdir().unwrap();
    // At the start of a read block, and straddling the 1 MiB block boundary.
    for filler in [0, (1 << 20) - 400, (1 << 20) - 1200] {
        let path = d.path().join(format!("messages-{filler}"));
        std::fs::write(&path, packet_dump_log(filler)).unwrap();
        let out = scan(&["--json", path.to_str().unwrap()], None);
        let v = json(&out);
        let addrs = v["addresses"].as_array().unwrap();
        assert_eq!(addrs.len(), 1, "filler {filler}: {addrs:?}");
        assert_eq!(addrs[0]["address"], "203.0.113.66", "filler {filler}");
        assert_eq!(
            addrs[0]["failures"], 2,
            "filler {filler}: the lines around the dump count"
        );
    }
}

/// `patched = "auto"` finds the module Asterisk loads inside a system root (asterisk.conf's
/// astmoddir, else the usual directories) and believes the lines tagged by its build only.
#[test]
fn auto_trust_follows_the_installed_module() {
    use astpatch::ban::trust::decide;
    use astpatch::settings::Patched;
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    let stock: &[u8] = b"\x7fELF\0Failed to authenticate device %s\0";
    let untagged: &[u8] = b"\x7fELF\0Failed to authenticate device %s (%s)\0";
    let tagged: &[u8] =
        b"\x7fELF\0Failed to authenticate device %s (%s) [astpatch:5a5a5a5a5a5a5a5a]\n\0";

    let t = decide(Patched::Auto, &[], root);
    assert!(!t.trusted(), "{t:?}");
    let default = root.join("usr/lib/asterisk/modules/chan_sip.so");
    assert!(
        t.reason
            .contains(&format!("{} does not exist", default.display())),
        "{t:?}"
    );

    // A Red Hat-style lib64 install is found when the default directory has no module.
    let lib64 = root.join("usr/lib64/asterisk/modules");
    std::fs::create_dir_all(&lib64).unwrap();
    std::fs::write(lib64.join("chan_sip.so"), tagged).unwrap();
    let t = decide(Patched::Auto, &[], root);
    assert!(t.trusted(), "{t:?}");
    assert_eq!(t.options.known_tags.len(), 1);
    assert!(t.line().contains("lib64"), "{}", t.line());
    // Patched without a tag: its lines cannot be told from forged ones by default.
    std::fs::write(lib64.join("chan_sip.so"), untagged).unwrap();
    let t = decide(Patched::Auto, &[], root);
    assert!(!t.trusted(), "{t:?}");
    assert!(decide(Patched::True, &[], root).options.trust_untagged);

    // asterisk.conf's astmoddir is what Asterisk loads: it wins over the usual directories.
    let moddir = root.join("opt/ast/modules");
    std::fs::create_dir_all(&moddir).unwrap();
    std::fs::create_dir_all(root.join("etc/asterisk")).unwrap();
    std::fs::write(
        root.join("etc/asterisk/asterisk.conf"),
        "[directories](!)\nastmoddir => /opt/ast/modules\n",
    )
    .unwrap();
    std::fs::write(moddir.join("chan_sip.so"), stock).unwrap();
    let t = decide(Patched::Auto, &[], root);
    assert!(!t.trusted(), "{t:?}");
    assert_eq!(
        t.line(),
        format!(
            "chan_sip tails not trusted: {} has no astpatch format; stock chan_sip failures are counted without an address",
            moddir.join("chan_sip.so").display()
        )
    );
    std::fs::write(moddir.join("chan_sip.so"), tagged).unwrap();
    assert!(decide(Patched::Auto, &[], root).trusted());
    // An explicit setting is obeyed whatever is installed.
    assert!(!decide(Patched::False, &[], root).trusted());
}

/// A newline forged through a chan_sip extension, a line cut at 8 KiB with the next entry
/// glued on, and one cut at the end of the file (real 20.20.1 shapes): each reader-visible
/// count per file, in the text table and in JSON, and nobody blamed.
#[test]
fn forged_glued_and_truncated_lines_are_shown_per_file() {
    let d = tempfile::tempdir().unwrap();
    let a = d.path().join("messages");
    let b = d.path().join("security");
    let pj = |addr: &str| {
        format!(
            "[Nov 30 05:43:13] NOTICE[31160] res_pjsip/pjsip_distributor.c: Request 'REGISTER' from '\"x\" <sip:200@203.0.113.1>' failed for '{addr}:5062' (callid: c) - Failed to authenticate"
        )
    };
    let cut = format!(
        "[Nov 30 05:41:47] NOTICE[31195] chan_sip.c: Registration from '<sip:{}",
        "A".repeat(9000)
    );
    let log_a = format!(
        "[Nov 30 05:40:52] NOTICE[31195][C-0000000c] chan_sip.c: Call from '' (10.96.0.2:5071) to extension '1\n\
         [Nov 30 10:00:00] NOTICE[1234][C-00000099] chan_sip.c: Call from 'x' (192.0.2.1:5060) to extension '2' rejected because extension not found in context 'public'.\n\
         {}{}\n",
        &cut[..8191],
        pj("10.96.0.3")
    );
    std::fs::write(&a, log_a).unwrap();
    // The logger cut the last entry and wrote nothing after it yet.
    let tail = format!(
        "[Nov 30 05:41:47] NOTICE[31195] chan_sip.c: Failed to authenticate device <sip:{}",
        "A".repeat(9000)
    );
    std::fs::write(&b, format!("{}\n{}", pj("203.0.113.66"), &tail[..8191])).unwrap();
    let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());
    let out = scan(&["--config", SETTINGS, a, b], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let t = text(&out.stdout);
    assert!(t.contains("LINES NOT BELIEVED IN"), "{t}");
    let row = |f: &str| {
        t.lines()
            .find(|l| l.starts_with(f))
            .unwrap_or_default()
            .split_whitespace()
            .skip(1)
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(row(a), "2 1 0 0", "{t}");
    assert_eq!(row(b), "0 0 1 0", "{t}");
    let v = json(&scan(&["--config", SETTINGS, "--json", a, b], None));
    assert_eq!(v["sources"][0]["file"], a);
    assert_eq!(
        (
            v["sources"][0]["forged"].as_u64(),
            v["sources"][0]["glued"].as_u64()
        ),
        (Some(2), Some(1))
    );
    assert_eq!(v["sources"][1]["truncated"], 1);
    assert_eq!(
        (
            v["forged_lines"].as_u64(),
            v["glued"].as_u64(),
            v["truncated"].as_u64()
        ),
        (Some(2), Some(1), Some(1))
    );
    let blamed: Vec<&str> = v["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["address"].as_str().unwrap())
        .collect();
    assert_eq!(blamed, ["203.0.113.66"], "{v}");
}

#[test]
fn ambiguous_lines_are_counted_per_candidate_pair() {
    let f = "[2026-11-24 10:11:12] NOTICE[42] res_pjsip/pjsip_distributor.c: ";
    let mut log = String::new();
    for i in 0..3 {
        log.push_str(&format!(
            "{f}Request 'INVITE' from '<sip:{i}@h>' failed for '203.0.113.66:5060' (callid: x' failed for '192.0.2.1:5060' (callid: y) - No matching endpoint found\n"
        ));
    }
    // The other order names the same pair.
    log.push_str(&format!(
        "{f}Request 'INVITE' from '<sip:1@h>' failed for '192.0.2.1:5060' (callid: x' failed for '203.0.113.66:5060' (callid: y) - No matching endpoint found\n"
    ));
    log.push_str(&format!(
        "{f}Request 'INVITE' from '<sip:1@h>' failed for '198.51.100.7:5060' (callid: x' failed for 'nobody' (callid: y) - No matching endpoint found\n"
    ));
    let out = scan(&["--json", "-"], Some(log.as_bytes()));
    let v = json(&out);
    assert_eq!(v["ambiguous"], 5);
    assert_eq!(v["with_address"], 0);
    assert_eq!(
        v["ambiguous_pairs"],
        serde_json::json!([
            {"candidates": ["192.0.2.1", "203.0.113.66"], "lines": 4, "rules": ["pjsip-no-endpoint"]},
            {"candidates": ["198.51.100.7", null], "lines": 1, "rules": ["pjsip-no-endpoint"]},
        ])
    );
    let out = scan(&["-"], Some(log.as_bytes()));
    let t = text(&out.stdout);
    assert!(
        t.contains("192.0.2.1 / 203.0.113.66") && t.contains("198.51.100.7 / (no address)"),
        "{t}"
    );
}
