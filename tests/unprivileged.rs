//! Trees an unprivileged user may not read: each command says it is a permission problem (exit
//! 3), never that the tree is not Asterisk. Runs the binary as `nobody` through setpriv, so it
//! needs root to start.
use crate::common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use common::fixtures;

fn as_nobody(exe: &Path, args: &[&str]) -> Output {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(exe)
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn unreadable_parts_of_a_tree_are_permission_errors() {
    if !common::require_root("unreadable_parts_of_a_tree_are_permission_errors") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    fs::set_permissions(d.path(), fs::Permissions::from_mode(0o755)).unwrap();
    // A copy of the binary nobody can run (the checkout may sit under /root).
    let exe = d.path().join("astpatch");
    fs::copy(common::bin(), &exe).unwrap();
    let root = d.path().join("tree");
    fixtures::write_tree(&root, &fixtures::spec("7", "11.23.1"));
    let tree = root.to_str().unwrap();

    fs::set_permissions(root.join("channels"), fs::Permissions::from_mode(0o700)).unwrap();
    for cmd in ["detect", "apply", "revert"] {
        let o = as_nobody(&exe, &[cmd, tree]);
        let out = text(&o);
        assert_eq!(o.status.code(), Some(3), "{cmd}: {out}");
        assert!(out.contains("Permission denied"), "{cmd}: {out}");
        assert!(!out.contains("not an Asterisk source tree"), "{cmd}: {out}");
        assert_eq!(
            out.lines().filter(|l| l.starts_with("error:")).count(),
            1,
            "{out}"
        );
    }
    fs::set_permissions(root.join("channels"), fs::Permissions::from_mode(0o755)).unwrap();

    fs::set_permissions(root.join(".version"), fs::Permissions::from_mode(0o600)).unwrap();
    let o = as_nobody(&exe, &["detect", tree]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(3), "{out}");
    assert!(
        out.contains("cannot read") && out.contains(".version"),
        "{out}"
    );
}
