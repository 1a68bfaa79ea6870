//! apply on filesystems that fight back: a tmpfs that fills up part-way, a read-only mount, a
//! directory the user may not write. The original chan_sip.c must survive byte for byte and
//! nothing of astpatch's may be left beside it.
use crate::common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::fixtures;

/// A tmpfs of `size` mounted on a fresh temp dir; unmounted on drop, even when the test fails.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0755")])
            .arg("tmpfs")
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(st.success(), "mount tmpfs failed");
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn remount_read_only(&self) {
        let st = Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(self.path())
            .status()
            .unwrap();
        assert!(st.success(), "remount ro failed");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// A shape-7 tree whose chan_sip.c carries `pad` bytes of Latin-1 comments before the code, so
/// its size decides where a small filesystem runs out.
fn latin1_tree(root: &Path, pad: usize) -> PathBuf {
    fixtures::write_tree(root, &fixtures::spec("7", "11.23.1"));
    let path = root.join("channels/chan_sip.c");
    let line = b"/* r\xe9sum\xe9 of the d\xe9p\xf4t, Latin-1 as in old chan_sip.c */\n";
    let mut bytes: Vec<u8> = line
        .iter()
        .copied()
        .cycle()
        .take(pad / line.len() * line.len())
        .collect();
    bytes.extend(fs::read(&path).unwrap());
    fs::write(&path, &bytes).unwrap();
    path
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn a_disk_that_fills_up_at_any_step_leaves_the_original_and_nothing_else() {
    if !common::require_root(
        "a_disk_that_fills_up_at_any_step_leaves_the_original_and_nothing_else",
    ) {
        return;
    }
    // apply writes three files (the pristine copy, the record, the new chan_sip.c); sizes from
    // "room for nothing" to "room for everything" make each of them the one that hits ENOSPC.
    let mut outcomes = Vec::new();
    for kib in (36..=100).step_by(4) {
        let fs_ = Tmpfs::mount(&format!("{kib}k"));
        let path = latin1_tree(fs_.path(), 24 * 1024);
        let before = fs::read(&path).unwrap();
        let o = common::run(["apply", fs_.path().to_str().unwrap()]);
        let out = text(&o);
        let channels = fs_.path().join("channels");
        if o.status.success() {
            let after = fs::read(&path).unwrap();
            assert!(
                after.starts_with(&before[..24 * 1024 - 100]),
                "Latin-1 bytes changed"
            );
            assert!(after.len() > before.len());
            outcomes.push("applied");
            continue;
        }
        outcomes.push("full");
        assert_eq!(
            o.status.code(),
            Some(3),
            "{kib}k: disk full is an environment error: {out}"
        );
        assert!(out.contains("No space left on device"), "{kib}k: {out}");
        assert!(out.contains("nothing was changed"), "{kib}k: {out}");
        assert!(out.contains("hint: free space"), "{kib}k: {out}");
        assert_eq!(
            fs::read(&path).unwrap(),
            before,
            "{kib}k: the original changed"
        );
        assert_eq!(
            listing(&channels),
            ["chan_sip.c"],
            "{kib}k: astpatch left files behind: {out}"
        );
    }
    assert!(
        outcomes.contains(&"full") && outcomes.contains(&"applied"),
        "{outcomes:?}"
    );
}

#[test]
fn a_read_only_filesystem_is_refused_with_the_original_intact() {
    if !common::require_root("a_read_only_filesystem_is_refused_with_the_original_intact") {
        return;
    }
    let fs_ = Tmpfs::mount("1m");
    let path = latin1_tree(fs_.path(), 0);
    let before = fs::read(&path).unwrap();
    fs_.remount_read_only();
    let o = common::run(["apply", fs_.path().to_str().unwrap()]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(3), "{out}");
    assert!(out.contains("Read-only file system"), "{out}");
    assert!(out.contains("hint:") && out.contains("read-write"), "{out}");
    assert_eq!(fs::read(&path).unwrap(), before);
    assert_eq!(listing(&fs_.path().join("channels")), ["chan_sip.c"]);
}

#[test]
fn a_directory_the_user_may_not_write_is_named_before_anything_is_written() {
    if !common::require_root(
        "a_directory_the_user_may_not_write_is_named_before_anything_is_written",
    ) {
        return;
    }
    // As `nobody`: chan_sip.c is theirs and writable, but channels/ is not, so no temp file
    // can be created beside it. Root would override the mode bits, hence setpriv.
    let d = tempfile::tempdir().unwrap();
    fs::set_permissions(d.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let root = d.path().join("tree");
    let path = latin1_tree(&root, 0);
    let before = fs::read(&path).unwrap();
    let nobody = |p: &Path| {
        std::os::unix::fs::chown(p, Some(65534), Some(65534)).unwrap();
    };
    nobody(&path);
    fs::set_permissions(root.join("channels"), fs::Permissions::from_mode(0o555)).unwrap();
    let exe = d.path().join("astpatch");
    fs::copy(common::bin(), &exe).unwrap();
    let o = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&exe)
        .args(["apply", root.to_str().unwrap()])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let out = text(&o);
    assert_eq!(o.status.code(), Some(3), "{out}");
    assert!(
        out.contains("channels is not writable") && out.contains("nothing was written"),
        "{out}"
    );
    assert!(
        !out.contains("astpatch-tmp"),
        "the temp file name is noise: {out}"
    );
    assert_eq!(fs::read(&path).unwrap(), before);
    assert_eq!(listing(&root.join("channels")), ["chan_sip.c"]);
}
