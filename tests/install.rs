//! `apply --rebuild --install [--reload]` and `revert --install` through the binary, on the
//! mini Asterisk tree built with real make/gcc and a system root in a temp dir.
use crate::common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::mini_asterisk::{self, MiniTree};

struct System {
    _dir: tempfile::TempDir,
    tree: PathBuf,
    root: PathBuf,
    moddir: PathBuf,
    stock: Vec<u8>,
}

/// A tree configured for /usr, built, and installed (stock, unpatched) into a temp root.
fn installed_system() -> System {
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let tree = dir.path().join("tree");
    let root = dir.path().join("root");
    mini_asterisk::write(&tree, &MiniTree::default());
    mini_asterisk::run(&tree, "./configure", &["--prefix=/usr"]);
    mini_asterisk::run(&tree, "make", &["-j2"]);
    let destdir = format!("DESTDIR={}", root.display());
    mini_asterisk::run(&tree, "make", &["install", &destdir]);
    let moddir = root.join("usr/lib/asterisk/modules");
    let stock = fs::read(moddir.join("chan_sip.so")).unwrap();
    System {
        _dir: dir,
        tree,
        root,
        moddir,
        stock,
    }
}

fn astpatch(args: &[&str], path_prefix: Option<&Path>) -> Output {
    let cmd = common::astpatch().args(args);
    match path_prefix {
        Some(p) => cmd.path_prefix(p),
        None => cmd,
    }
    .output()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn apply_rebuild_install_then_revert_install_round_trip() {
    let sys = installed_system();
    let o = astpatch(
        &[
            "apply",
            "--rebuild",
            "--install",
            "--root",
            s(&sys.root),
            s(&sys.tree),
        ],
        None,
    );
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("build:   [CC] chan_sip.c -> chan_sip.o"),
        "{out}"
    );
    assert!(out.contains("with `make -j"), "{out}");
    assert!(out.contains("channels` in"), "module-only rebuild: {out}");
    let installed = fs::read(sys.moddir.join("chan_sip.so")).unwrap();
    assert_eq!(
        installed,
        fs::read(sys.tree.join("channels/chan_sip.so")).unwrap()
    );
    assert!(astpatch::module::install::module_is_patched(&installed));
    assert_eq!(
        fs::read(sys.moddir.join("chan_sip.so.astpatch-bak")).unwrap(),
        sys.stock
    );
    assert!(
        out.contains("load it into the running Asterisk: asterisk -C ")
            && out.contains("-rx 'module unload chan_sip.so' && asterisk -C "),
        "{out}"
    );
    // Other modules in the module dir are untouched.
    assert!(sys.moddir.join("chan_iax2.so").is_file());

    let o = astpatch(
        &["revert", "--install", "--root", s(&sys.root), s(&sys.tree)],
        None,
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(fs::read(sys.moddir.join("chan_sip.so")).unwrap(), sys.stock);
    assert!(!sys.moddir.join("chan_sip.so.astpatch-bak").exists());
    let src = fs::read(sys.tree.join("channels/chan_sip.c")).unwrap();
    assert_eq!(
        astpatch::patch::sites::scan(&src).state(),
        astpatch::patch::sites::PatchState::Unpatched
    );
}

#[test]
fn json_reports_apply_rebuild_and_install_together() {
    let sys = installed_system();
    let o = astpatch(
        &[
            "apply",
            "--json",
            "--rebuild",
            "--install",
            "--moddir",
            s(&sys.moddir),
            s(&sys.tree),
        ],
        None,
    );
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["changed"], 1 + 4);
    assert_eq!(v["rebuild"]["compiled"], serde_json::json!(["chan_sip.o"]));
    assert_eq!(v["install"]["moddir"]["source"], "flag");
    assert_eq!(
        v["install"]["installed"],
        s(&sys.moddir.join("chan_sip.so"))
    );
}

#[test]
fn make_failing_half_way_leaves_the_installed_module_untouched() {
    let sys = installed_system();
    let c = sys.tree.join("channels/chan_sip.c");
    // A file that patches cleanly but does not compile.
    let mut src = fs::read(&c).unwrap();
    src.extend_from_slice(b"int broken = ;\n");
    fs::write(&c, src).unwrap();
    let o = astpatch(
        &[
            "apply",
            "--rebuild",
            "--install",
            "--root",
            s(&sys.root),
            s(&sys.tree),
        ],
        None,
    );
    let out = text(&o);
    assert_eq!(o.status.code(), Some(3), "{out}");
    assert!(
        out.contains("failed (exit 2) during rebuild chan_sip; the module was not installed"),
        "{out}"
    );
    assert!(out.contains("astpatch-build.log"), "{out}");
    assert_eq!(fs::read(sys.moddir.join("chan_sip.so")).unwrap(), sys.stock);
    assert!(!sys.moddir.join("chan_sip.so.astpatch-bak").exists());
}

#[test]
fn a_missing_module_dir_and_a_stale_module_are_refused() {
    let sys = installed_system();
    let o = astpatch(
        &[
            "apply",
            "--rebuild",
            "--install",
            "--moddir",
            "/nonexistent/astpatch/modules",
            s(&sys.tree),
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("the module directory /nonexistent/astpatch/modules does not exist"));
    // Patch without --rebuild on a fresh copy: the built module predates the patch.
    let sys = installed_system();
    let o = astpatch(
        &["apply", "--install", "--root", s(&sys.root), s(&sys.tree)],
        None,
    );
    let out = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}");
    assert!(
        out.contains("it was built before the last change") && out.contains("add --rebuild"),
        "{out}"
    );
    assert_eq!(fs::read(sys.moddir.join("chan_sip.so")).unwrap(), sys.stock);
}

#[test]
fn no_write_access_to_the_module_dir_is_a_clear_error() {
    if !common::require_root("no_write_access_to_the_module_dir_is_a_clear_error") {
        return;
    }
    let sys = installed_system();
    let o = astpatch(&["apply", "--rebuild", s(&sys.tree)], None);
    assert!(o.status.success(), "{}", text(&o));
    // The same install as an unprivileged user: the module dir belongs to root. A copy of the
    // binary in the (world-readable) temp dir, since the checkout may sit under /root.
    let exe = sys.root.parent().unwrap().join("astpatch");
    fs::copy(common::bin(), &exe).unwrap();
    let o = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&exe)
        .args(["apply", "--install", "--root", s(&sys.root), s(&sys.tree)])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let out = text(&o);
    assert_eq!(o.status.code(), Some(3), "{out}");
    assert!(
        out.contains("no write access to") && out.contains("hint: run the install as root"),
        "{out}"
    );
    assert_eq!(fs::read(sys.moddir.join("chan_sip.so")).unwrap(), sys.stock);
}

/// A stand-in `asterisk` that records its arguments and answers like Asterisk's CLI.
fn fake_asterisk(dir: &Path, unload_answer: &str) -> PathBuf {
    let bin = dir.join("bin");
    fs::create_dir_all(&bin).unwrap();
    let script = format!(
        "#!/bin/sh\necho \"$*\" >> {log}\ncase \"$*\" in\n  *'module unload'*) echo '{unload_answer}' ;;\n  *'module load'*) echo 'Loaded chan_sip.so' ;;\nesac\n",
        log = dir.join("asterisk-calls.log").display()
    );
    fs::write(bin.join("asterisk"), script).unwrap();
    fs::set_permissions(bin.join("asterisk"), fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

fn control_socket(root: &Path) -> std::os::unix::net::UnixListener {
    let run = root.join("var/run/asterisk");
    fs::create_dir_all(&run).unwrap();
    std::os::unix::net::UnixListener::bind(run.join("asterisk.ctl")).unwrap()
}

#[test]
fn reload_unloads_and_loads_through_the_control_socket() {
    let sys = installed_system();
    let work = sys.root.parent().unwrap().to_owned();
    // Without a socket: a note, no call.
    let bin = fake_asterisk(&work, "Unloaded chan_sip.so");
    let o = astpatch(
        &[
            "apply",
            "--rebuild",
            "--install",
            "--reload",
            "--root",
            s(&sys.root),
            s(&sys.tree),
        ],
        Some(&bin),
    );
    // Installed, but `--reload` that reloaded nothing is not success.
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("nothing was reloaded: no Asterisk is running")
            && text(&o).contains("no control socket at"),
        "{}",
        text(&o)
    );
    assert!(
        !text(&o).contains("load it into the running Asterisk"),
        "--reload does not print the commands it runs itself: {}",
        text(&o)
    );
    assert!(!work.join("asterisk-calls.log").exists());

    let _sock = control_socket(&sys.root);
    let o = astpatch(
        &[
            "apply",
            "--install",
            "--reload",
            "--root",
            s(&sys.root),
            s(&sys.tree),
        ],
        Some(&bin),
    );
    assert!(o.status.success(), "{}", text(&o));
    let conf = sys.root.join("etc/asterisk/asterisk.conf");
    let calls = fs::read_to_string(work.join("asterisk-calls.log")).unwrap();
    assert_eq!(
        calls,
        format!(
            "-C {c} -rx module unload chan_sip.so\n-C {c} -rx module load chan_sip.so\n",
            c = conf.display()
        )
    );
    assert!(text(&o).contains("unloaded and loaded chan_sip.so"));
}

#[test]
fn a_refused_unload_is_reported_and_the_new_module_stays_for_the_next_start() {
    let sys = installed_system();
    let work = sys.root.parent().unwrap().to_owned();
    let bin = fake_asterisk(&work, "Unable to unload resource chan_sip.so");
    let _sock = control_socket(&sys.root);
    let o = astpatch(
        &[
            "apply",
            "--rebuild",
            "--install",
            "--reload",
            "--root",
            s(&sys.root),
            s(&sys.tree),
        ],
        Some(&bin),
    );
    let out = text(&o);
    assert_eq!(o.status.code(), Some(3), "{out}");
    assert!(
        out.contains("Asterisk refused to unload chan_sip.so"),
        "{out}"
    );
    assert!(out.contains("core restart when convenient"), "{out}");
    let calls = fs::read_to_string(work.join("asterisk-calls.log")).unwrap();
    assert_eq!(
        calls.lines().count(),
        1,
        "no load after a refused unload: {calls}"
    );
}

#[test]
fn a_module_asterisk_cannot_load_is_replaced_by_the_previous_one_and_reloaded() {
    let sys = installed_system();
    let work = sys.root.parent().unwrap().to_owned();
    let bin = work.join("bin");
    fs::create_dir_all(&bin).unwrap();
    // Refuses the first load (the new module), accepts the second (the restored one).
    let script = format!(
        "#!/bin/sh\necho \"$*\" >> {log}\ncase \"$*\" in\n  *'module unload'*) echo 'Unloaded chan_sip.so' ;;\n  *'module load'*) if [ -e {seen} ]; then echo 'Loaded chan_sip.so'; else touch {seen}; echo 'Unable to load module chan_sip.so'; fi ;;\nesac\n",
        log = work.join("asterisk-calls.log").display(),
        seen = work.join("load-seen").display()
    );
    fs::write(bin.join("asterisk"), script).unwrap();
    fs::set_permissions(bin.join("asterisk"), fs::Permissions::from_mode(0o755)).unwrap();
    let _sock = control_socket(&sys.root);
    let o = astpatch(
        &[
            "apply",
            "--rebuild",
            "--install",
            "--reload",
            "--root",
            s(&sys.root),
            s(&sys.tree),
        ],
        Some(&bin),
    );
    let out = text(&o);
    assert_eq!(o.status.code(), Some(3), "{out}");
    assert!(
        out.contains("could not load the new chan_sip.so")
            && out.contains("the previous module was put back and loaded"),
        "{out}"
    );
    assert_eq!(fs::read(sys.moddir.join("chan_sip.so")).unwrap(), sys.stock);
    let calls = fs::read_to_string(work.join("asterisk-calls.log")).unwrap();
    assert_eq!(
        calls.lines().filter(|l| l.contains("module load")).count(),
        2,
        "{calls}"
    );
}

/// A tree an astpatch from before tags patched, built and installed: `apply` adds the tag, and
/// the module built before it is refused for install (it would log lines the watcher never
/// trusts) until it is rebuilt; verify names the tag at each link, and fails the untagged or
/// foreign installed module.
#[test]
fn a_module_built_before_the_tag_is_refused_until_rebuilt() {
    let sys = installed_system();
    common::fixtures::patch_like_before_tags(&sys.tree);
    mini_asterisk::run(&sys.tree, "make", &["-j2", "channels"]);
    astpatch::module::install::install_module(&sys.tree, &sys.moddir).unwrap();
    let untagged = fs::read(sys.moddir.join("chan_sip.so")).unwrap();
    assert_eq!(
        astpatch::patch::tag::ModuleKind::of(&untagged),
        astpatch::patch::tag::ModuleKind::Untagged
    );
    let settings = astpatch::settings::Settings::default();
    // No state dir under this root: verify never opens a firewall here, and must not.
    let open = |_: astpatch::firewall::Backend| -> Box<dyn astpatch::firewall::Firewall> {
        panic!("the host's firewall is not consulted by this test")
    };
    let checks = |src: Option<&Path>| {
        let inputs = astpatch::verify::Inputs {
            src,
            root: &sys.root,
            moddir: Some(&sys.moddir),
            settings: &settings,
            running: astpatch::verify::Running::NotLooked,
            asterisk_conf: None,
        };
        astpatch::verify::verify(&inputs, &open).checks
    };
    let find = |cs: &[astpatch::verify::Check], name: &str| {
        cs.iter().find(|c| c.name == name).unwrap().clone()
    };
    let cs = checks(Some(&sys.tree));
    let source = find(&cs, "source");
    assert_eq!(source.status, astpatch::verify::Status::Fail, "{source:?}");
    assert!(
        source.detail.contains("not all end with the tree's tag"),
        "{source:?}"
    );
    let inst = find(&cs, "installed-module");
    assert_eq!(inst.status, astpatch::verify::Status::Fail, "{inst:?}");
    assert!(inst.detail.contains("carries no tag"), "{inst:?}");

    let applied = astpatch::patch::apply::apply(&sys.tree, false).unwrap();
    assert_eq!(applied.changed, 5);
    // A module newer than chan_sip.c but built before the tag (copied in, clock skew): the
    // mtime check passes, the tag check does not.
    // (Same mtime as the source: make still rebuilds the object from the newer source and
    // relinks, as it must below.)
    let so = sys.tree.join("channels/chan_sip.so");
    let c_time = fs::metadata(sys.tree.join("channels/chan_sip.c"))
        .unwrap()
        .modified()
        .unwrap();
    fs::File::options()
        .write(true)
        .open(&so)
        .unwrap()
        .set_modified(c_time)
        .unwrap();
    let o = astpatch(
        &[
            "apply",
            "--install",
            "--moddir",
            s(&sys.moddir),
            s(&sys.tree),
        ],
        None,
    );
    let out = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}");
    assert!(
        out.contains(&format!("carries no tag, but {}", sys.tree.display()))
            && out.contains(&format!("patched with tag {}", applied.tag))
            && out.contains("add --rebuild"),
        "{out}"
    );
    assert_eq!(fs::read(sys.moddir.join("chan_sip.so")).unwrap(), untagged);
    let built = find(&checks(Some(&sys.tree)), "built-module");
    assert_eq!(built.status, astpatch::verify::Status::Fail, "{built:?}");
    assert!(
        built.detail.contains("built before the last apply"),
        "{built:?}"
    );

    let o = astpatch(
        &[
            "apply",
            "--rebuild",
            "--install",
            "--moddir",
            s(&sys.moddir),
            s(&sys.tree),
        ],
        None,
    );
    assert!(o.status.success(), "{}", text(&o));
    let installed = fs::read(sys.moddir.join("chan_sip.so")).unwrap();
    assert_eq!(
        astpatch::patch::tag::ModuleKind::of(&installed),
        astpatch::patch::tag::ModuleKind::Tagged(vec![applied.tag])
    );
    let cs = checks(Some(&sys.tree));
    for name in ["source", "built-module", "installed-module"] {
        let c = find(&cs, name);
        assert_eq!(c.status, astpatch::verify::Status::Pass, "{c:?}");
        assert!(c.detail.contains(applied.tag.as_str()), "{c:?}");
    }
    // Another tree's module (another tag) installed over it: verify fails and says which.
    let mut foreign = installed.clone();
    let needle = applied.tag.as_str().as_bytes();
    let mut i = 0;
    while let Some(at) = foreign[i..].windows(16).position(|w| w == needle) {
        foreign[i + at..i + at + 16].copy_from_slice(b"0000000000000000");
        i += at + 16;
    }
    fs::write(sys.moddir.join("chan_sip.so"), &foreign).unwrap();
    let inst = find(&checks(Some(&sys.tree)), "installed-module");
    assert_eq!(inst.status, astpatch::verify::Status::Fail, "{inst:?}");
    assert!(
        inst.detail.contains("carries tag 0000000000000000")
            && inst
                .detail
                .contains(&format!("patched with tag {}", applied.tag)),
        "{inst:?}"
    );
}
