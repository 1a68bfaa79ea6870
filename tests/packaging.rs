//! What the Debian package ships from packaging/ must be what the sources generate: man pages
//! from the clap definitions, completions, the commented default settings and the unit
//! `install-watcher` writes. Stale files fail here with the command that refreshes them.
use std::path::Path;

#[test]
fn packaging_files_are_what_the_sources_generate() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging");
    let mut stale = vec![];
    for (rel, want) in astpatch::cli::manual::packaged_files() {
        match std::fs::read(dir.join(&rel)) {
            Ok(have) if have == want => {}
            Ok(_) => stale.push(format!("{rel} differs")),
            Err(e) => stale.push(format!("{rel}: {e}")),
        }
    }
    assert!(
        stale.is_empty(),
        "packaging/ is stale ({}); refresh it with: cargo run -- generate packaging",
        stale.join(", ")
    );
    // Nothing generated is left over from a command or setting that no longer exists.
    let known: Vec<String> = astpatch::cli::manual::packaged_files()
        .into_iter()
        .map(|(r, _)| r)
        .collect();
    for sub in ["man", "completions"] {
        for e in std::fs::read_dir(dir.join(sub)).unwrap() {
            let rel = format!("{sub}/{}", e.unwrap().file_name().to_string_lossy());
            assert!(
                known.contains(&rel),
                "packaging/{rel} is no longer generated"
            );
        }
    }
}

#[test]
fn the_packaged_unit_is_the_one_install_watcher_writes() {
    let d = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging");
    let cfg = d.path().join("astpatch.toml");
    std::fs::copy(root.join("astpatch.toml"), &cfg).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_astpatch"))
        .args([
            "install-watcher",
            "--dry-run",
            "--config",
            cfg.to_str().unwrap(),
        ])
        .args(["--unit-dir", d.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout)
        .replace(cfg.to_str().unwrap(), "/etc/astpatch/astpatch.toml");
    let packaged = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/astpatch.service"),
    )
    .unwrap();
    // The dry run shows the unit for the running binary; the package's runs /usr/bin/astpatch.
    let exe = std::fs::canonicalize(env!("CARGO_BIN_EXE_astpatch")).unwrap();
    let shown = text.replace(exe.to_str().unwrap(), "/usr/bin/astpatch");
    for line in packaged.lines() {
        assert!(
            shown.contains(line),
            "install-watcher does not write {line:?}:\n{text}"
        );
    }
    assert!(!packaged.contains("ExecStartPost") && packaged.contains("--ban"));
}

#[test]
fn completions_come_out_for_each_shell() {
    for (shell, needle) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef astpatch"),
        ("fish", "complete -c astpatch"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_astpatch"))
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(needle), "{shell}: {text}");
        assert!(text.contains("from-start"), "{shell} lacks watch's flags");
    }
}
