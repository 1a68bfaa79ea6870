//! `apply --install` and `revert --install`: put the built chan_sip.so where the running
//! Asterisk loads modules from, keeping the module it replaces, and never leaving half a file.
use std::fmt::Write as _;
use std::fs;
use std::io;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;

use crate::asterisk::conf::{self, Directories};
use crate::error::{Error, Result};

pub const MODULE: &str = "chan_sip.so";
pub const BACKUP_SUFFIX: &str = ".astpatch-bak";

/// Where the module directory was learned from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModdirSource {
    /// `--moddir`.
    Flag,
    /// The running Asterisk's own asterisk.conf (or its binary's built-in default): where
    /// it really loads modules from.
    RunningAsterisk,
    /// `astmoddir` in asterisk.conf: what the running Asterisk really uses.
    AsteriskConf,
    /// The tree's makeopts: where `make install` would put it.
    Makeopts,
}

#[derive(Debug, Clone, Serialize)]
pub struct Moddir {
    pub path: PathBuf,
    pub source: ModdirSource,
    /// Set when asterisk.conf and makeopts disagree: worth telling the operator.
    pub note: Option<String>,
}

/// Where the module directory comes from when no `--moddir` is given.
#[derive(Debug, Clone, Copy)]
pub enum ModdirFrom<'a> {
    /// The running instance: its directory, whether its asterisk.conf names it or not.
    Running(&'a crate::asterisk::running::Instance),
    /// An asterisk.conf file (inside `root`): used when it sets astmoddir.
    Conf(&'a Path),
}

/// The module directory: `--moddir`, else asterisk.conf's `astmoddir` under `root`, else the
/// tree's makeopts (also under `root`).
pub fn resolve_moddir(flag: Option<&Path>, tree: Option<&Path>, root: &Path) -> Result<Moddir> {
    resolve_moddir_from(
        flag,
        tree,
        root,
        ModdirFrom::Conf(Path::new(conf::DEFAULT_PATH)),
    )
}

/// [`resolve_moddir`] with the running instance, or another asterisk.conf, in place of
/// `/etc/asterisk/asterisk.conf`.
pub fn resolve_moddir_from(
    flag: Option<&Path>,
    tree: Option<&Path>,
    root: &Path,
    from: ModdirFrom,
) -> Result<Moddir> {
    if let Some(p) = flag {
        return Ok(Moddir {
            path: p.to_owned(),
            source: ModdirSource::Flag,
            note: None,
        });
    }
    let (from_conf, who, source) = match from {
        ModdirFrom::Running(i) => (
            Some(conf::under(root, &i.dirs.astmoddir)),
            format!("the running Asterisk (pid {})", i.pid),
            ModdirSource::RunningAsterisk,
        ),
        ModdirFrom::Conf(conf) => (
            conf::load_file(root, conf)?
                .filter(|d| d.moddir_from_file)
                .map(|d| conf::under(root, &d.astmoddir)),
            if conf == Path::new(conf::DEFAULT_PATH) {
                "asterisk.conf".to_owned()
            } else {
                conf.display().to_string()
            },
            ModdirSource::AsteriskConf,
        ),
    };
    let from_tree = tree
        .and_then(|t| fs::read_to_string(t.join("makeopts")).ok())
        .and_then(|text| crate::asterisk::makeopts::moddir(&text))
        .map(|p| conf::under(root, &p));
    match (from_conf, from_tree) {
        (Some(conf), tree) => {
            let note = tree.filter(|t| *t != conf).map(|t| {
                format!(
                    "{who} loads modules from {}, but this tree's `make install` would use {}; installing where Asterisk loads them",
                    conf.display(),
                    t.display()
                )
            });
            Ok(Moddir {
                path: conf,
                source,
                note,
            })
        }
        (None, Some(t)) => Ok(Moddir {
            path: t,
            source: ModdirSource::Makeopts,
            note: None,
        }),
        (None, None) => Err(Error::input(
            "cannot tell where Asterisk loads modules from: no astmoddir in asterisk.conf and no makeopts in the tree",
            Some(
                "pass --moddir DIR (often /usr/lib/asterisk/modules), or run ./configure in the tree",
            ),
        )),
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct InstallReport {
    pub installed: PathBuf,
    pub from: PathBuf,
    pub sha256: String,
    /// The previous module, kept for `revert --install`; `None` when there was none.
    pub backup: Option<PathBuf>,
    /// The module was already exactly this one: nothing was written.
    pub unchanged: bool,
}

pub fn backup_path(moddir: &Path) -> PathBuf {
    moddir.join(format!("{MODULE}{BACKUP_SUFFIX}"))
}

/// True when a chan_sip binary carries astpatch's format strings (the address after From).
pub fn module_is_patched(bytes: &[u8]) -> bool {
    [
        &b"authenticate device %s (%s"[..],
        b"authenticate user %s (%s",
    ]
    .iter()
    .any(|n| memchr::memmem::find(bytes, n).is_some())
}

fn check_moddir(moddir: &Path) -> Result<()> {
    match fs::metadata(moddir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(Error::input(
                format!("{} is not a directory", moddir.display()),
                Some("pass the module directory itself with --moddir"),
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(Error::input(
                format!(
                    "the module directory {} does not exist; nothing was installed",
                    moddir.display()
                ),
                Some(
                    "install Asterisk first (`make install`), or pass the directory it loads modules from with --moddir",
                ),
            ));
        }
        Err(e) => return Err(Error::io(moddir, e)),
    }
    // Probe write access the way the install will use it: a file in that directory.
    match tempfile::Builder::new()
        .prefix(".astpatch-probe")
        .tempfile_in(moddir)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => Err(Error::environment(
            format!(
                "no write access to {}; nothing was installed",
                moddir.display()
            ),
            Some("run the install as root (sudo), or as the user that owns the module directory"),
        )),
        Err(e) => Err(Error::io(moddir, e)),
    }
}

/// The module must come from the patched chan_sip.c: newer than it, and carrying its strings.
fn check_built_from_patched_source(tree: &Path, built: &Path, bytes: &[u8]) -> Result<()> {
    let src = tree.join(crate::asterisk::tree::CHAN_SIP);
    let modified = |p: &Path| fs::metadata(p).and_then(|m| m.modified()).ok();
    if let (Some(so), Some(c)) = (modified(built), modified(&src)) {
        if so < c {
            return Err(Error::input(
                format!(
                    "{} is older than {}: it was built before the last change; nothing was installed",
                    built.display(),
                    src.display()
                ),
                Some("rebuild it first: add --rebuild"),
            ));
        }
    }
    if !module_is_patched(bytes) {
        return Err(Error::input(
            format!(
                "{} does not carry astpatch's log format; nothing was installed",
                built.display()
            ),
            Some("patch and rebuild first: astpatch apply --rebuild --install SRC"),
        ));
    }
    // The tree's tag is what the watcher will look for; a module built before the tag was
    // written (or from an earlier apply with another tag) would log lines it never trusts.
    if let Some(tag) = crate::patch::manifest::load(&src)?.and_then(|m| m.tag) {
        let carried = crate::patch::tag::in_module(bytes);
        if !carried.contains(&tag) {
            let has = if carried.is_empty() {
                "no tag".to_owned()
            } else {
                let list: Vec<String> = carried.iter().map(|t| t.to_string()).collect();
                format!("tag {}", list.join(", "))
            };
            return Err(Error::input(
                format!(
                    "{} carries {has}, but {} is patched with tag {tag}: the module was built before the last apply; nothing was installed",
                    built.display(),
                    src.display()
                ),
                Some("rebuild it first: add --rebuild"),
            ));
        }
    }
    Ok(())
}

/// Copy `tree`'s built chan_sip.so into `moddir` atomically, keeping the previous module.
pub fn install_module(tree: &Path, moddir: &Path) -> Result<InstallReport> {
    let built = tree.join("channels").join(MODULE);
    let bytes = fs::read(&built).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => Error::input(
            format!("{} is not built", built.display()),
            Some("build it first: astpatch apply --rebuild --install SRC"),
        ),
        _ => Error::io(&built, e),
    })?;
    check_built_from_patched_source(tree, &built, &bytes)?;
    check_moddir(moddir)?;
    let target = moddir.join(MODULE);
    let sha256 = crate::patch::manifest::sha256_hex(&bytes);
    let current = match fs::read(&target) {
        Ok(b) => Some(b),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::io(&target, e)),
    };
    let backup = backup_path(moddir);
    let mut report = InstallReport {
        installed: target.clone(),
        from: built,
        sha256,
        backup: None,
        unchanged: false,
    };
    if let Some(cur) = &current {
        if crate::patch::manifest::sha256_hex(cur) == report.sha256 {
            report.unchanged = true;
            report.backup = backup.exists().then_some(backup);
            return Ok(report);
        }
        // Keep the module astpatch first replaced: when the one installed now is astpatch's
        // own (an earlier install) and a backup exists, that backup is the one worth keeping.
        if !(module_is_patched(cur) && backup.exists()) {
            let mode = crate::atomic::mode_of(&target).map_err(|e| Error::io(&target, e))?;
            crate::atomic::write(&backup, cur, Some(mode)).map_err(|e| Error::io(&backup, e))?;
        }
        report.backup = Some(backup);
    }
    crate::atomic::write(&target, &bytes, Some(0o755)).map_err(|e| Error::io(&target, e))?;
    Ok(report)
}

#[derive(Debug, Clone, Serialize)]
pub struct RestoreReport {
    pub restored: PathBuf,
    pub from: PathBuf,
}

/// Put the backup of chan_sip.so back in place (`revert --install`).
pub fn restore_backup(moddir: &Path) -> Result<RestoreReport> {
    let backup = backup_path(moddir);
    let bytes = match fs::read(&backup) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(Error::nothing_to_do(
                format!("no backup to restore: {} does not exist", backup.display()),
                Some(
                    "astpatch keeps the replaced module only when `apply --install` found one; check --moddir",
                ),
            ));
        }
        Err(e) => return Err(Error::io(&backup, e)),
    };
    check_moddir(moddir)?;
    let target = moddir.join(MODULE);
    let mode = crate::atomic::mode_of(&backup).unwrap_or(0o755);
    crate::atomic::write(&target, &bytes, Some(mode)).map_err(|e| Error::io(&target, e))?;
    fs::remove_file(&backup).map_err(|e| Error::io(&backup, e))?;
    crate::atomic::sync_dir(moddir).map_err(|e| Error::io(moddir, e))?;
    Ok(RestoreReport {
        restored: target,
        from: backup,
    })
}

/// The Asterisk CLI commands that make a running Asterisk use the new file. `module reload`
/// would only re-read sip.conf; the code changes only when the module is unloaded and loaded.
pub fn reload_commands() -> [String; 2] {
    [
        format!("module unload {MODULE}"),
        format!("module load {MODULE}"),
    ]
}

/// The same, as the operator types them, for the binary `asterisk` (a path, or a name
/// looked up in PATH) and its `-C`.
pub fn reload_hint(asterisk: &Path, conf: Option<&Path>) -> String {
    let c = conf
        .map(|p| format!(" -C {}", p.display()))
        .unwrap_or_default();
    let a = asterisk.display();
    let [unload, load] = reload_commands();
    format!("{a}{c} -rx '{unload}' && {a}{c} -rx '{load}'")
}

/// Where the running Asterisk's control socket is.
pub fn control_socket(root: &Path, dirs: &Directories) -> PathBuf {
    conf::under(root, &dirs.astrundir).join("asterisk.ctl")
}

pub fn socket_present(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

#[derive(Debug, Clone, Serialize)]
pub struct ReloadReport {
    pub commands: Vec<String>,
    pub output: String,
}

/// Unload and load chan_sip through `asterisk -rx`. A refused unload changes nothing; a
/// refused load puts the previous module back (when there is a backup) and loads that.
pub fn reload(asterisk: &Path, conf: Option<&Path>, moddir: &Path) -> Result<ReloadReport> {
    let [unload, load] = reload_commands();
    let mut output = String::new();
    let console = |cmd: &str| {
        let c = conf
            .map(|p| format!(" -C {}", p.display()))
            .unwrap_or_default();
        format!("{}{c} -rx '{cmd}'", asterisk.display())
    };
    let mut run = |cmd: &str| -> Result<String> {
        let mut c = Command::new(asterisk);
        if let Some(conf) = conf {
            c.arg("-C").arg(conf);
        }
        let out = c.arg("-rx").arg(cmd).output().map_err(|e| {
            Error::environment(
                format!("cannot run {}: {e}", asterisk.display()),
                Some("is Asterisk installed? load the module by hand with the command above"),
            )
        })?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let _ = writeln!(output, "> {cmd}\n{}", text.trim_end());
        if !out.status.success() || text.contains("Unable to connect") {
            return Err(Error::environment(
                format!(
                    "`{} -rx '{cmd}'` failed: {}",
                    asterisk.display(),
                    text.trim().lines().last().unwrap_or("no output")
                ),
                Some(
                    "check that Asterisk is running and you may use its control socket (often root or group asterisk)",
                ),
            ));
        }
        Ok(text)
    };
    let said = run(&unload)?;
    if said.contains("Unable to unload") {
        return Err(Error::environment(
            format!(
                "Asterisk refused to unload {MODULE}: {}; the new module is installed and loads at the next restart",
                said.trim()
            ),
            Some(&format!(
                "retry when no SIP calls are up, or restart Asterisk: {}",
                console("core restart when convenient")
            )),
        ));
    }
    let said = run(&load)?;
    if said.contains("Unable to load") {
        let restored = restore_backup(moddir).is_ok();
        let _ = run(&load);
        return Err(Error::environment(
            format!(
                "Asterisk could not load the new {MODULE}: {}; {}",
                said.trim(),
                if restored {
                    "the previous module was put back and loaded"
                } else {
                    "there was no previous module to put back: chan_sip is not loaded now"
                }
            ),
            Some(&format!(
                "check the Asterisk log (`{}`, its messages file) for the reason",
                console("core show version")
            )),
        ));
    }
    Ok(ReloadReport {
        commands: vec![unload, load],
        output,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn built_tree(d: &Path, content: &[u8]) -> PathBuf {
        let tree = d.join("tree");
        fs::create_dir_all(tree.join("channels")).unwrap();
        fs::write(tree.join("channels/chan_sip.so"), content).unwrap();
        tree
    }

    #[test]
    fn install_keeps_the_stock_module_across_repeated_installs_and_restores_it() {
        let d = tempfile::tempdir().unwrap();
        let moddir = d.path().join("modules");
        fs::create_dir(&moddir).unwrap();
        fs::write(moddir.join(MODULE), b"stock module").unwrap();
        let tree = built_tree(d.path(), b"Failed to authenticate device %s (%s) v1");
        let r = install_module(&tree, &moddir).unwrap();
        assert_eq!(r.backup.as_deref(), Some(backup_path(&moddir).as_path()));
        assert_eq!(fs::read(backup_path(&moddir)).unwrap(), b"stock module");
        let again = install_module(&tree, &moddir).unwrap();
        assert!(again.unchanged);
        fs::write(
            tree.join("channels/chan_sip.so"),
            b"Failed to authenticate device %s (%s) v2",
        )
        .unwrap();
        install_module(&tree, &moddir).unwrap();
        assert_eq!(
            fs::read(backup_path(&moddir)).unwrap(),
            b"stock module",
            "first backup kept"
        );
        assert!(fs::read(moddir.join(MODULE)).unwrap().ends_with(b"v2"));
        restore_backup(&moddir).unwrap();
        assert_eq!(fs::read(moddir.join(MODULE)).unwrap(), b"stock module");
        assert!(!backup_path(&moddir).exists());
        let e = restore_backup(&moddir).unwrap_err();
        assert_eq!(e.exit_code(), crate::exit_codes::CHECK_FAILED);
        let names: Vec<_> = fs::read_dir(&moddir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [MODULE], "no temp or probe files left");
    }

    #[test]
    fn a_module_without_the_trees_tag_is_refused_as_stale() {
        let d = tempfile::tempdir().unwrap();
        let moddir = d.path().join("modules");
        fs::create_dir(&moddir).unwrap();
        let tag: crate::patch::tag::Tag = "00112233445566ff".parse().unwrap();
        let tree = built_tree(d.path(), b"Failed to authenticate device %s (%s)\n");
        let record = crate::patch::manifest::Manifest {
            format: crate::patch::manifest::FORMAT,
            astpatch_version: "test".into(),
            patch: "shape-7.patch".into(),
            original_sha256: "a".into(),
            patched_sha256: "b".into(),
            changed_lines: vec![1],
            applied_at: 0,
            tag: Some(tag),
            original_statements: vec!["x".into()],
        };
        crate::patch::manifest::store(&tree.join(crate::asterisk::tree::CHAN_SIP), &record)
            .unwrap();
        for (module, has) in [
            (
                &b"Failed to authenticate device %s (%s)\n"[..],
                "carries no tag",
            ),
            (
                b"Failed to authenticate device %s (%s) [astpatch:aaaaaaaaaaaaaaaa]\n",
                "carries tag aaaaaaaaaaaaaaaa",
            ),
        ] {
            fs::write(tree.join("channels/chan_sip.so"), module).unwrap();
            let e = install_module(&tree, &moddir).unwrap_err();
            let msg = e.to_string();
            assert!(
                msg.contains(has) && msg.contains("patched with tag 00112233445566ff"),
                "{msg}"
            );
            assert_eq!(e.hint().as_deref(), Some("rebuild it first: add --rebuild"));
            assert!(!moddir.join(MODULE).exists(), "nothing installed");
        }
        fs::write(
            tree.join("channels/chan_sip.so"),
            b"Failed to authenticate device %s (%s) [astpatch:00112233445566ff]\n",
        )
        .unwrap();
        install_module(&tree, &moddir).unwrap();
        assert!(moddir.join(MODULE).exists());
    }

    #[test]
    fn missing_module_dir_and_unbuilt_tree_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let tree = built_tree(d.path(), b"stock: Failed to authenticate device %s\n");
        let e = install_module(&tree, d.path()).unwrap_err();
        assert!(
            e.to_string()
                .contains("does not carry astpatch's log format"),
            "{e}"
        );
        fs::write(
            tree.join("channels/chan_sip.so"),
            b"Failed to authenticate device %s (%s)",
        )
        .unwrap();
        let e = install_module(&tree, &d.path().join("nope")).unwrap_err();
        assert!(e.to_string().contains("does not exist"), "{e}");
        fs::remove_file(tree.join("channels/chan_sip.so")).unwrap();
        let e = install_module(&tree, d.path()).unwrap_err();
        assert!(e.to_string().contains("is not built"), "{e}");
    }

    #[test]
    fn moddir_prefers_the_flag_then_asterisk_conf_then_makeopts() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        let tree = d.path().join("tree");
        fs::create_dir_all(&tree).unwrap();
        assert!(resolve_moddir(None, Some(&tree), &root).is_err());
        fs::write(
            tree.join("makeopts"),
            "prefix = /usr\nlibdir = ${prefix}/lib\nASTMODDIR = ${libdir}/asterisk/modules\n",
        )
        .unwrap();
        let m = resolve_moddir(None, Some(&tree), &root).unwrap();
        assert_eq!(m.source, ModdirSource::Makeopts);
        assert_eq!(m.path, root.join("usr/lib/asterisk/modules"));
        fs::create_dir_all(root.join("etc/asterisk")).unwrap();
        fs::write(
            root.join("etc/asterisk/asterisk.conf"),
            "[directories]\nastmoddir => /usr/lib64/asterisk/modules\n",
        )
        .unwrap();
        let m = resolve_moddir(None, Some(&tree), &root).unwrap();
        assert_eq!(m.source, ModdirSource::AsteriskConf);
        assert_eq!(m.path, root.join("usr/lib64/asterisk/modules"));
        assert!(m.note.unwrap().contains("would use"));
        let m = resolve_moddir(Some(Path::new("/x")), Some(&tree), &root).unwrap();
        assert_eq!(
            (m.path.as_path(), m.source),
            (Path::new("/x"), ModdirSource::Flag)
        );
    }

    #[test]
    fn the_reload_hint_unloads_and_loads() {
        assert_eq!(
            reload_hint(Path::new("asterisk"), None),
            "asterisk -rx 'module unload chan_sip.so' && asterisk -rx 'module load chan_sip.so'"
        );
        assert_eq!(
            reload_hint(
                Path::new("/opt/ast20/sbin/asterisk"),
                Some(Path::new("/opt/ast20/etc/asterisk/asterisk.conf"))
            ),
            "/opt/ast20/sbin/asterisk -C /opt/ast20/etc/asterisk/asterisk.conf -rx 'module unload chan_sip.so' && /opt/ast20/sbin/asterisk -C /opt/ast20/etc/asterisk/asterisk.conf -rx 'module load chan_sip.so'"
        );
    }
}
