//! Finding the running Asterisk through the real /proc: a gcc-built stand-in named `asterisk`
//! that takes `-C FILE`, dlopens a gcc-built chan_sip.so and serves `module unload/load` on its
//! control socket. Checks discovery, a rename-over install showing ` (deleted)`, reading the
//! replaced module's kind through /proc/PID/map_files, and the two-installs case.
use crate::common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use astpatch::asterisk::running::{self, Instance};
use astpatch::patch::tag::{ModuleKind, Tag};
use common::live_asterisk::{self, Module, Running};

const TAG: &str = "0123456789abcdef";

/// An install under `prefix`: the binary, a stock chan_sip.so, and an asterisk.conf at `conf`
/// naming the prefix's module dir and a run dir of its own.
struct Install {
    exe: PathBuf,
    conf: PathBuf,
    moddir: PathBuf,
    rundir: PathBuf,
}

fn install(prefix: &Path, conf: &Path) -> Install {
    let exe = live_asterisk::build_asterisk(prefix);
    let moddir = prefix.join("lib/asterisk/modules");
    let rundir = prefix.join("var/run/asterisk");
    fs::create_dir_all(&rundir).unwrap();
    live_asterisk::build_module(&moddir.join("chan_sip.so"), Module::Stock);
    fs::create_dir_all(conf.parent().unwrap()).unwrap();
    fs::write(
        conf,
        format!(
            "[directories](!)\nastetcdir => {etc}\nastmoddir => {m}\nastlogdir => {p}/var/log/asterisk\nastrundir => {r}\n",
            etc = conf.parent().unwrap().display(),
            m = moddir.display(),
            p = prefix.display(),
            r = rundir.display()
        ),
    )
    .unwrap();
    Install {
        exe,
        conf: conf.to_owned(),
        moddir,
        rundir,
    }
}

/// The instances among `pids` (other Asterisk processes on the machine are not ours).
fn ours(pids: &[u32]) -> Vec<Instance> {
    running::discover(Path::new("/proc"), Path::new("/"))
        .unwrap()
        .into_iter()
        .filter(|i| pids.contains(&i.pid))
        .collect()
}

fn ino(p: &Path) -> u64 {
    fs::metadata(p).unwrap().ino()
}

fn rx(i: &Install, cmd: &str) -> String {
    let o = Command::new(&i.exe)
        .args(["-C", i.conf.to_str().unwrap(), "-rx", cmd])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn a_live_instance_its_config_and_its_module_are_found_and_consoles_are_not() {
    if !common::require_root("a_live_instance_its_config_and_its_module_are_found") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let a = install(
        &d.path().join("opt/ast20"),
        &d.path().join("srv/pbx/asterisk.conf"),
    );
    let server = Running::start(&a.exe, &["-f", "-C", a.conf.to_str().unwrap()]);
    let console = Running::adopt(
        Command::new(&a.exe)
            .args(["-C", a.conf.to_str().unwrap(), "-r"])
            .spawn()
            .unwrap(),
    );
    // The console must be running (and not a zombie) when /proc is read.
    std::thread::sleep(std::time::Duration::from_millis(50));
    let found = ours(&[server.pid(), console.pid()]);
    assert_eq!(found.len(), 1, "{found:#?}");
    let i = &found[0];
    assert_eq!(i.pid, server.pid());
    assert_eq!(i.exe, a.exe);
    assert!(i.explicit_config && !i.exe_deleted && i.maps_error.is_none());
    assert_eq!(i.config, a.conf);
    assert_eq!(i.dirs.astmoddir, a.moddir);
    assert_eq!(i.ctl_socket, a.rundir.join("asterisk.ctl"));
    let m = i.chan_sip.as_ref().expect("chan_sip mapped");
    assert_eq!(m.path, a.moddir.join("chan_sip.so"));
    assert_eq!(m.inode, ino(&m.path));
    assert!(!m.deleted);
    assert_eq!(m.kind, Ok(ModuleKind::Stock));
    // Named by its config, it is selected among others.
    let pick = running::select(found.clone(), Some(&a.conf)).unwrap();
    assert_eq!(pick.map(|i| i.pid), Some(server.pid()));
}

#[test]
fn a_module_replaced_on_disk_shows_deleted_and_is_read_through_map_files_until_reloaded() {
    if !common::require_root("a_module_replaced_on_disk_shows_deleted") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let a = install(
        &d.path().join("usr"),
        &d.path().join("usr/etc/asterisk/asterisk.conf"),
    );
    let so = a.moddir.join("chan_sip.so");
    let stock_ino = ino(&so);
    // No -C: the stand-in reads the asterisk.conf compiled into it, as Asterisk does.
    let server = Running::start(&a.exe, &[]);
    let i = &ours(&[server.pid()])[0];
    assert!(!i.explicit_config);
    assert_eq!(i.config, a.conf, "the built-in path, read from the binary");
    assert_eq!(i.dirs.astmoddir, a.moddir);

    // Install without reload: the file is renamed over; the process keeps the stock one.
    live_asterisk::build_module(&so, Module::Tagged(TAG));
    let i = &ours(&[server.pid()])[0];
    let m = i.chan_sip.as_ref().unwrap();
    assert!(m.deleted, "{m:?}");
    assert_eq!(m.inode, stock_ino);
    assert_ne!(m.inode, ino(&so));
    assert_eq!(m.path, so);
    assert_eq!(
        m.kind,
        Ok(ModuleKind::Stock),
        "read from the mapping, not from the tagged file now at the path"
    );

    // Unload and load through the control socket: the new file is mapped, tag and all.
    assert_eq!(
        rx(&a, "module unload chan_sip.so"),
        "Unloaded chan_sip.so\n"
    );
    let i = &ours(&[server.pid()])[0];
    assert_eq!(i.chan_sip, None, "unloaded: nothing mapped");
    assert_eq!(rx(&a, "module load chan_sip.so"), "Loaded chan_sip.so\n");
    let i = &ours(&[server.pid()])[0];
    let m = i.chan_sip.as_ref().unwrap();
    assert!(!m.deleted);
    assert_eq!(m.inode, ino(&so));
    assert_eq!(
        m.kind,
        Ok(ModuleKind::Tagged(vec![TAG.parse::<Tag>().unwrap()]))
    );
}

#[test]
fn two_installs_the_running_one_is_told_by_its_process_not_by_the_default_paths() {
    if !common::require_root("two_installs_the_running_one_is_told_by_its_process") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    // A stopped install in its default paths (its binary reads PREFIX/etc/asterisk/asterisk.conf).
    let stopped = install(
        &d.path().join("usr"),
        &d.path().join("usr/etc/asterisk/asterisk.conf"),
    );
    live_asterisk::build_module(&stopped.moddir.join("chan_sip.so"), Module::Tagged(TAG));
    // The running one under another prefix, started with -C elsewhere.
    let live = install(
        &d.path().join("opt/ast20"),
        &d.path().join("opt/ast20/etc/pbx/asterisk.conf"),
    );
    let server = Running::start(&live.exe, &["-C", live.conf.to_str().unwrap()]);
    let found = ours(&[server.pid()]);
    assert_eq!(found.len(), 1);
    let i = &found[0];
    assert_eq!(i.exe, live.exe);
    assert_eq!(i.config, live.conf);
    assert_eq!(i.dirs.astmoddir, live.moddir);
    assert_ne!(i.dirs.astmoddir, stopped.moddir);
    // The stopped install's module is patched; the one really loaded is stock.
    assert_eq!(i.chan_sip.as_ref().unwrap().kind, Ok(ModuleKind::Stock));
    // Naming the stopped install's conf selects nothing running.
    assert_eq!(
        running::select(found.clone(), Some(&stopped.conf)).unwrap(),
        None
    );
    assert_eq!(
        i.rx("module unload chan_sip.so"),
        format!(
            "{} -C {} -rx 'module unload chan_sip.so'",
            live.exe.display(),
            live.conf.display()
        )
    );
}

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The checklist up to the logging check: the watcher and firewall checks read this host's
/// processes and kernel, which other work on the machine may change.
fn checks_to_logging(stdout: &[u8]) -> String {
    String::from_utf8_lossy(stdout)
        .lines()
        .take_while(|l| l.split_whitespace().nth(1) != Some("watcher"))
        .map(|l| format!("{l}\n"))
        .collect()
}

fn by_name(v: &serde_json::Value, name: &str) -> serde_json::Value {
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {v}"))
        .clone()
}

/// The stopped install in its own prefix (where the tree's `make install` would go), the running
/// one under /opt/ast20 with -C: apply, verify and revert with --reload act on the running one,
/// with its binary and -C, and /proc confirms what it loaded.
#[test]
fn two_installs_apply_verify_and_revert_with_reload_act_on_the_running_one() {
    if !common::require_root("two_installs_apply_verify_and_revert_with_reload") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let old = d.path().join("usr");
    let stopped = install(&old, &old.join("etc/asterisk/asterisk.conf"));
    let stopped_module = fs::read(stopped.moddir.join("chan_sip.so")).unwrap();
    let tree = d.path().join("tree");
    common::mini_asterisk::write(&tree, &common::mini_asterisk::MiniTree::default());
    common::mini_asterisk::configure_and_build(&tree, &old);
    let prefix = d.path().join("opt/ast20");
    let live = install(&prefix, &prefix.join("etc/pbx/asterisk.conf"));
    fs::write(
        prefix.join("etc/pbx/logger.conf"),
        "[logfiles]\nmessages => notice,warning,error\nsecurity => security\n",
    )
    .unwrap();
    let settings = d.path().join("astpatch.toml");
    fs::write(
        &settings,
        format!(
            "logs = [\"{l}/messages\", \"{l}/security\"]\nstate_dir = \"{s}\"\n",
            l = prefix.join("var/log/asterisk").display(),
            s = d.path().join("state").display()
        ),
    )
    .unwrap();
    let so = live.moddir.join("chan_sip.so");
    let c = s(&live.conf);
    let server = Running::start(&live.exe, &["-f", "-C", c]);
    let pid = server.pid();
    let verify = || {
        let o = common::run([
            "verify",
            "--json",
            "--asterisk-conf",
            c,
            "--config",
            s(&settings),
            s(&tree),
        ]);
        serde_json::from_slice::<serde_json::Value>(&o.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", text(&o)))
    };

    // Install without reload: into the running one's module dir; the commands name its binary.
    let o = common::run([
        "apply",
        "--rebuild",
        "--install",
        "--asterisk-conf",
        c,
        s(&tree),
    ]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains(&format!(
            "note: the running Asterisk (pid {pid}) loads modules from {}, but this tree's `make install` would use {}",
            live.moddir.display(),
            stopped.moddir.display()
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "load it into the running Asterisk: {e} -C {c} -rx 'module unload chan_sip.so' && {e} -C {c} -rx 'module load chan_sip.so'",
            e = live.exe.display()
        )),
        "{out}"
    );
    assert_eq!(
        fs::read(&so).unwrap(),
        fs::read(tree.join("channels/chan_sip.so")).unwrap()
    );
    assert_eq!(
        fs::read(stopped.moddir.join("chan_sip.so")).unwrap(),
        stopped_module
    );
    // verify tells installed from loaded, and reads the running one's logger.conf.
    let v = verify();
    let l = by_name(&v, "loaded-module");
    assert_eq!(l["status"], "fail", "{l}");
    assert_eq!(
        l["detail"],
        format!(
            "the installed chan_sip.so is patched but the running Asterisk (pid {pid}) still has the stock module loaded"
        )
    );
    assert_eq!(
        l["fix"],
        format!(
            "astpatch apply --install --reload --asterisk-conf {c} {}",
            tree.display()
        )
    );
    assert_eq!(by_name(&v, "installed-module")["status"], "pass");
    let logging = by_name(&v, "logging");
    assert_eq!(logging["status"], "pass", "{logging}");
    let o = common::run([
        "verify",
        "--asterisk-conf",
        c,
        "--config",
        s(&settings),
        s(&tree),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let tmp = d.path().display().to_string();
    insta::with_settings!({filters => vec![
        (tmp.as_str(), "[TMP]"),
        (r"pid \d+", "pid [PID]"),
        (r"sha256 [0-9a-f]{12}", "sha256 [SHA]"),
        (r"\b[0-9a-f]{16}\b", "[TAG]"),
    ]}, {
        insta::assert_snapshot!("verify_installed_but_not_loaded", checks_to_logging(&o.stdout));
    });

    // --reload: unloaded and loaded through its binary and -C; /proc confirms the new file.
    let o = common::run([
        "apply",
        "--install",
        "--reload",
        "--asterisk-conf",
        c,
        s(&tree),
    ]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains(&format!(
            "ok: the running Asterisk (pid {pid}) unloaded and loaded chan_sip.so; it now maps the installed file (patched (tag "
        )),
        "{out}"
    );
    assert!(!out.contains("load it into the running Asterisk"), "{out}");
    let m = running::inspect(Path::new("/proc"), Path::new("/"), pid)
        .unwrap()
        .chan_sip
        .unwrap();
    // apply writes the tree's tag into every site, so the module it built carries it.
    let tree_tag = astpatch::patch::tag::in_module(&fs::read(&so).unwrap());
    assert_eq!(tree_tag.len(), 1);
    assert_eq!(
        (m.inode, m.deleted, m.kind),
        (ino(&so), false, Ok(ModuleKind::Tagged(tree_tag)))
    );
    let l = by_name(&verify(), "loaded-module");
    assert_eq!(l["status"], "pass", "tagged: {l}");
    // An untagged build (a hand patch, or an astpatch from before tags), loaded: only a warning.
    live_asterisk::build_module(&so, Module::Untagged);
    rx(&live, "module unload chan_sip.so");
    rx(&live, "module load chan_sip.so");
    let l = by_name(&verify(), "loaded-module");
    assert_eq!(l["status"], "warn", "untagged: {l}");
    // A tagged build, loaded: verify passes the link.
    live_asterisk::build_module(&so, Module::Tagged(TAG));
    rx(&live, "module unload chan_sip.so");
    rx(&live, "module load chan_sip.so");
    let l = by_name(&verify(), "loaded-module");
    assert_eq!(l["status"], "pass", "{l}");
    assert_eq!(
        l["detail"],
        format!(
            "the running Asterisk (pid {pid}) has the installed chan_sip.so loaded, patched (tag {TAG})"
        )
    );

    // revert --install --reload mirrors apply: the stock module is back, loaded, confirmed.
    let o = common::run([
        "revert",
        "--install",
        "--reload",
        "--asterisk-conf",
        c,
        s(&tree),
    ]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("it now maps the installed file (stock)"),
        "{out}"
    );
    let m = running::inspect(Path::new("/proc"), Path::new("/"), pid)
        .unwrap()
        .chan_sip
        .unwrap();
    assert_eq!((m.inode, m.kind), (ino(&so), Ok(ModuleKind::Stock)));

    // The reverse mistake: the patched module loaded, the stock file put back without a reload.
    live_asterisk::build_module(&so, Module::Tagged(TAG));
    rx(&live, "module unload chan_sip.so");
    rx(&live, "module load chan_sip.so");
    live_asterisk::build_module(&so, Module::Stock);
    let l = by_name(&verify(), "loaded-module");
    assert_eq!(l["status"], "fail", "{l}");
    assert_eq!(
        l["detail"],
        format!(
            "the installed chan_sip.so is stock but the running Asterisk (pid {pid}) still has the patched (tag {TAG}) module loaded"
        )
    );
    assert!(
        l["fix"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{} -C {c} -rx 'module unload", live.exe.display())),
        "{l}"
    );

    // Two running and none named: asked, nothing touched.
    let other = Running::start(&stopped.exe, &[]);
    let before = fs::read(tree.join("channels/chan_sip.c")).unwrap();
    let o = common::run(["apply", "--install", "--reload", s(&tree)]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}");
    assert!(
        out.contains("Asterisk servers are running; which one do you mean?"),
        "{out}"
    );
    assert!(
        out.contains(&format!("pid {pid}: {} -C {c}", live.exe.display()))
            && out.contains(&format!(
                "pid {}: {} (default {})",
                other.pid(),
                stopped.exe.display(),
                stopped.conf.display()
            ))
            && out.contains("--asterisk-conf"),
        "{out}"
    );
    assert_eq!(fs::read(tree.join("channels/chan_sip.c")).unwrap(), before);
    let o = common::run(["verify", "--config", s(&settings), s(&tree)]);
    assert_eq!(o.status.code(), Some(2), "verify asks too: {}", text(&o));

    // A misspelt --asterisk-conf is an input error, not an install by the tree's makeopts.
    let o = common::run([
        "apply",
        "--install",
        "--asterisk-conf",
        "/nonexistent/asterisk.conf",
        s(&tree),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("no such file, and no running Asterisk uses it"),
        "{}",
        text(&o)
    );

    // The named one stopped (its socket left behind): --reload reloaded nothing, exit 1.
    drop(server);
    let o = common::run([
        "apply",
        "--rebuild",
        "--install",
        "--reload",
        "--asterisk-conf",
        c,
        s(&tree),
    ]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains(&format!(
            "nothing was reloaded: no Asterisk is running with {c}"
        )) && out.contains("left over from one that stopped")
            && out.contains("running with another asterisk.conf: pid ")
            && out.contains(&format!("pid {}: {}", other.pid(), stopped.exe.display())),
        "{out}"
    );
}

/// asterisk.conf names the module dir through a symlink; the kernel names the mapping by its
/// real path: the reload is still confirmed (not a false "maps another file").
#[test]
fn a_module_dir_reached_through_a_symlink_is_confirmed_after_reload() {
    if !common::require_root("a_module_dir_reached_through_a_symlink_is_confirmed") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let prefix = d.path().join("opt/ast20");
    let a = install(&prefix, &prefix.join("etc/asterisk/asterisk.conf"));
    std::os::unix::fs::symlink(&prefix, d.path().join("current")).unwrap();
    let via_link = d.path().join("current/lib/asterisk/modules");
    let conf_text = fs::read_to_string(&a.conf).unwrap().replace(
        &format!("astmoddir => {}", a.moddir.display()),
        &format!("astmoddir => {}", via_link.display()),
    );
    fs::write(&a.conf, conf_text).unwrap();
    let tree = d.path().join("tree");
    common::mini_asterisk::write(&tree, &common::mini_asterisk::MiniTree::default());
    common::mini_asterisk::configure_and_build(&tree, &prefix);
    let c = s(&a.conf);
    let server = Running::start(&a.exe, &["-C", c]);
    let o = common::run([
        "apply",
        "--rebuild",
        "--install",
        "--reload",
        "--asterisk-conf",
        c,
        s(&tree),
    ]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains(&format!("installed {}/chan_sip.so", via_link.display())),
        "{out}"
    );
    let m = running::inspect(Path::new("/proc"), Path::new("/"), server.pid())
        .unwrap()
        .chan_sip
        .unwrap();
    assert_eq!(
        m.path,
        a.moddir.join("chan_sip.so"),
        "the kernel's real path"
    );
    assert!(
        matches!(&m.kind, Ok(ModuleKind::Tagged(t)) if t.len() == 1),
        "apply writes the tree's tag: {:?}",
        m.kind
    );
}

/// A user who may not read the server's /proc entries still learns that it runs: verify says
/// what it cannot see instead of "no Asterisk is running".
#[test]
fn an_unprivileged_reader_is_told_what_it_cannot_see_not_that_nothing_runs() {
    if !common::require_root("an_unprivileged_reader_is_told_what_it_cannot_see") {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::tempdir().unwrap();
    fs::set_permissions(d.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let a = install(
        &d.path().join("opt/ast20"),
        &d.path().join("srv/pbx/asterisk.conf"),
    );
    let c = s(&a.conf);
    let server = Running::start(&a.exe, &["-C", c]);
    let settings = d.path().join("astpatch.toml");
    fs::write(
        &settings,
        format!("state_dir = \"{}\"\n", d.path().join("state").display()),
    )
    .unwrap();
    // A copy of the binary in the world-readable temp dir (the checkout may sit under /root).
    let exe = d.path().join("astpatch");
    fs::copy(common::bin(), &exe).unwrap();
    let o = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&exe)
        .args([
            "verify",
            "--json",
            "--asterisk-conf",
            c,
            "--config",
            s(&settings),
        ])
        .output()
        .unwrap();
    let v: serde_json::Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&o)));
    let l = by_name(&v, "loaded-module");
    assert_eq!(l["status"], "fail", "{l}");
    let detail = l["detail"].as_str().unwrap();
    assert!(
        detail.starts_with(&format!("the running Asterisk (pid {})", server.pid()))
            && detail.contains("maps")
            && detail.contains("Permission denied"),
        "{detail}"
    );
    assert!(l["fix"].as_str().unwrap().contains("as root"), "{l}");
}

/// What discovery costs: `cargo test --test tests -- --ignored --nocapture running::discovery_cost`.
#[test]
#[ignore]
fn discovery_cost() {
    let d = tempfile::tempdir().unwrap();
    let a = install(
        &d.path().join("opt/ast20"),
        &d.path().join("srv/pbx/asterisk.conf"),
    );
    // Pad the binary to the size of a real Asterisk with symbols (about 30 MB).
    let mut bytes = fs::read(&a.exe).unwrap();
    bytes.resize(30 << 20, 0);
    fs::write(&a.exe, &bytes).unwrap();
    let c = a.conf.to_str().unwrap();
    for (label, args) in [
        ("no -C: the binary is read", &[][..]),
        ("-C with every directory: it is not", &["-C", c][..]),
    ] {
        let servers: Vec<Running> = (0..3).map(|_| Running::start(&a.exe, args)).collect();
        let pids: Vec<u32> = servers.iter().map(Running::pid).collect();
        let n = 20;
        let t = std::time::Instant::now();
        for _ in 0..n {
            assert_eq!(ours(&pids).len(), 3);
        }
        eprintln!(
            "{label}: discover, 3 instances among {} pids: {:.2} ms",
            fs::read_dir("/proc").unwrap().count(),
            t.elapsed().as_secs_f64() * 1000.0 / n as f64
        );
    }
}

/// Issue 10, end to end through `astpatch scan` with the running instance named: a log in
/// which an attacker's From header ends in `(192.0.2.1:5060)` (and in a guessed tag) while
/// the stock module is loaded, then the patched module installed but not loaded, then loaded
/// and writing tagged lines, then reverted. Only the sender the patched module names is
/// blamed, in every phase, whatever is on disk; `patched = true` is overruled while the stock
/// module is loaded.
#[test]
fn scan_blames_only_what_the_loaded_patched_module_wrote_through_install_reload_and_revert() {
    if !common::require_root("scan_blames_only_what_the_loaded_patched_module_wrote") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let a = install(
        &d.path().join("opt/ast"),
        &d.path().join("opt/ast/etc/asterisk.conf"),
    );
    let so = a.moddir.join("chan_sip.so");
    let server = Running::start(&a.exe, &["-C", s(&a.conf)]);
    let log = d.path().join("messages");
    let state = d.path().join("state");
    let settings = |patched: &str| {
        let p = d.path().join(format!("astpatch-{patched}.toml"));
        fs::write(
            &p,
            format!(
                "maxretry = 3\npatched = {patched}\nasterisk_conf = \"{}\"\nstate_dir = \"{}\"\n",
                a.conf.display(),
                state.display()
            ),
        )
        .unwrap();
        p
    };
    let forged = |i: usize| {
        format!(
            "[2026-11-30 04:27:4{i}] NOTICE[2515][C-00000003] chan_sip.c: Failed to authenticate device \"x\" <sip:100@pbx>;tag=1 (192.0.2.1:5060)\n"
        )
    };
    let guessed = |i: usize| {
        format!(
            "[2026-11-30 04:27:5{i}] NOTICE[2515] chan_sip.c: Failed to authenticate device \"x\" <sip:100@pbx>;tag=1 (192.0.2.1:5060) [astpatch:fedcba9876543210]\n"
        )
    };
    let real = |i: usize| {
        format!(
            "[2026-11-30 04:28:0{i}] NOTICE[2516] chan_sip.c: Failed to authenticate device \"y\" <sip:100@pbx>;tag=2 (198.51.100.7:5061) [astpatch:{TAG}]\n"
        )
    };
    let scan = |cfg: &Path| -> serde_json::Value {
        let out = common::run(["scan", "--json", "--config", s(cfg), s(&log)]);
        assert!(out.status.success(), "{}", text(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let banned = |v: &serde_json::Value| -> Vec<String> {
        v["addresses"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["would_ban"] == true)
            .map(|a| a["address"].as_str().unwrap().to_owned())
            .collect()
    };
    let auto = settings("\"auto\"");
    let forced = settings("true");

    // Phase 1: stock loaded and installed; the attacker's forged tails.
    let mut body: String = (0..5).map(forged).collect();
    body.extend((0..5).map(guessed));
    fs::write(&log, &body).unwrap();
    for cfg in [&auto, &forced] {
        let v = scan(cfg);
        assert_eq!(banned(&v), Vec::<String>::new(), "{v}");
        assert_eq!(v["forged"], 5, "{v}");
    }

    // Phase 2: patched module installed (renamed over), not loaded: the stock one still runs.
    live_asterisk::build_module(&so, Module::Tagged(TAG));
    let v = scan(&auto);
    assert_eq!(banned(&v), Vec::<String>::new(), "{v}");
    let v = scan(&forced);
    assert_eq!(
        banned(&v),
        Vec::<String>::new(),
        "patched = true overruled: {v}"
    );
    let out = common::run(["scan", "--config", s(&forced), s(&log)]);
    assert!(
        text(&out).contains(&format!(
            "the running Asterisk (pid {}) has the stock chan_sip.so loaded",
            server.pid()
        )),
        "{}",
        text(&out)
    );

    // Phase 3: loaded; the patched module writes tagged lines naming the real sender, while
    // the attacker keeps forging. Only the sender is blamed.
    rx(&a, "module unload chan_sip.so");
    rx(&a, "module load chan_sip.so");
    body.extend((0..3).map(real));
    body.extend((5..9).map(forged));
    fs::write(&log, &body).unwrap();
    let v = scan(&auto);
    assert_eq!(banned(&v), vec!["198.51.100.7".to_owned()], "{v}");

    // Phase 4: reverted (stock installed and loaded). The tagged lines already written were
    // the patched module's and stay believed only through a recorded tag; the forged ones never.
    live_asterisk::build_module(&so, Module::Stock);
    rx(&a, "module unload chan_sip.so");
    rx(&a, "module load chan_sip.so");
    let v = scan(&auto);
    assert_eq!(
        banned(&v),
        Vec::<String>::new(),
        "no module carries the tag any more: {v}"
    );
    assert_eq!(v["forged"], 8, "the unknown tag is counted as forged: {v}");
    fs::create_dir_all(&state).unwrap();
    astpatch::ban::trust::record(&state, &[TAG.parse().unwrap()]).unwrap();
    let v = scan(&auto);
    assert_eq!(
        banned(&v),
        vec!["198.51.100.7".to_owned()],
        "a recorded tag: {v}"
    );
    for cfg in [&auto, &forced] {
        let v = scan(cfg);
        assert!(!banned(&v).contains(&"192.0.2.1".to_owned()), "{v}");
    }
}
