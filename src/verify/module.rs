//! The module links: the built chan_sip.so, the installed one, and the one the running Asterisk
//! has loaded — each must carry the patched format strings and the tree's tag.
use super::*;

pub(super) fn check_built(src: Option<&Path>, st: Option<&SourceState>) -> Check {
    const NAME: &str = "built-module";
    let (Some(src), Some(st)) = (src, st) else {
        return Check::new(NAME, Status::Skipped, "no source tree given");
    };
    let Ok((c_path, bytes, scan)) = &st.result else {
        return Check::new(NAME, Status::Skipped, "the source could not be read");
    };
    let so = src.join("channels").join(install::MODULE);
    let rebuild = format!("astpatch apply --rebuild {}", shown(src));
    let Ok(module) = fs::read(&so) else {
        return Check::new(NAME, Status::Fail, format!("{} is not built", shown(&so))).fix(rebuild);
    };
    let mtime = |p: &Path| fs::metadata(p).and_then(|m| m.modified()).ok();
    if mtime(&so) < mtime(c_path) {
        return Check::new(
            NAME,
            Status::Fail,
            format!("{} is older than chan_sip.c", shown(&so)),
        )
        .fix(rebuild);
    }
    if scan.state() != PatchState::Patched {
        return Check::new(
            NAME,
            Status::Fail,
            format!("{} is built from an unpatched chan_sip.c", shown(&so)),
        )
        .fix(rebuild);
    }
    if let Some(tag) = st.tag {
        let tags = tag::in_module(&module);
        if !tags.contains(&tag) {
            return Check::new(
                NAME,
                Status::Fail,
                format!(
                    "{} carries {}, but chan_sip.c is patched with tag {tag}: it was built before the last apply",
                    shown(&so),
                    carried(&tags)
                ),
            )
            .fix(rebuild);
        }
    }
    let strings = site_format_strings(bytes, scan);
    let missing = strings
        .iter()
        .filter(|s| memchr::memmem::find(&module, s).is_none())
        .count();
    if missing > 0 || strings.is_empty() {
        return Check::new(
            NAME,
            Status::Fail,
            format!(
                "{} lacks {missing} of the {} patched format strings",
                shown(&so),
                strings.len()
            ),
        )
        .fix(rebuild);
    }
    let tagged = st
        .tag
        .map(|t| format!(", tag {t}"))
        .unwrap_or_else(|| ", no tag".into());
    Check::new(
        NAME,
        Status::Pass,
        format!(
            "{}: newer than chan_sip.c, carries all {} patched format strings{tagged}",
            shown(&so),
            strings.len()
        ),
    )
}

/// The installed-module check, and the module file it judged (for the loaded-module check).
pub(super) fn check_installed(inp: &Inputs, tree_tag: Option<Tag>) -> (Check, Option<PathBuf>) {
    const NAME: &str = "installed-module";
    let from = match inp.running {
        Running::Instance(i) => install::ModdirFrom::Running(i),
        _ => install::ModdirFrom::Conf(inp.asterisk_conf.unwrap_or(Path::new(conf::DEFAULT_PATH))),
    };
    let moddir = match install::resolve_moddir_from(inp.moddir, inp.src, inp.root, from) {
        Ok(m) => m,
        Err(_) => {
            return (Check::new(
                NAME,
                Status::Skipped,
                "module directory unknown: no astmoddir in asterisk.conf and no configured tree (makeopts)",
            )
            .fix("pass --moddir DIR (often /usr/lib/asterisk/modules)"), None);
        }
    };
    let path = moddir.path.join(install::MODULE);
    (installed_check(inp, &path, tree_tag), Some(path))
}

pub(super) fn installed_check(inp: &Inputs, path: &Path, tree_tag: Option<Tag>) -> Check {
    const NAME: &str = "installed-module";
    let path = path.to_owned();
    // Named the way verify found it, so the command picks the same Asterisk.
    let conf = match inp.running {
        Running::Instance(i) if i.explicit_config => {
            format!(" --asterisk-conf {}", shown(&i.config))
        }
        _ => inp
            .asterisk_conf
            .map(|c| format!(" --asterisk-conf {}", shown(c)))
            .unwrap_or_default(),
    };
    let install_cmd = format!(
        "astpatch apply --rebuild --install{conf} {}",
        src_arg(inp.src)
    );
    let Ok(installed) = fs::read(&path) else {
        return Check::new(
            NAME,
            Status::Fail,
            format!("{} does not exist", shown(&path)),
        )
        .fix(install_cmd);
    };
    if !install::module_is_patched(&installed) {
        return Check::new(
            NAME,
            Status::Fail,
            format!("{} does not carry the patched format strings", shown(&path)),
        )
        .fix(install_cmd);
    }
    let tags = match ModuleKind::of(&installed) {
        ModuleKind::Tagged(tags) => tags,
        _ => {
            return Check::new(
                NAME,
                Status::Fail,
                format!(
                    "{} is patched but carries no tag: the watcher cannot tell its lines from forged ones and trusts them only with patched = true",
                    shown(&path)
                ),
            )
            .fix(install_cmd);
        }
    };
    if let Some(tag) = tree_tag
        && !tags.contains(&tag)
    {
        return Check::new(
            NAME,
            Status::Fail,
            format!(
                "{} carries {}, but {} is patched with tag {tag}: it is from another build",
                shown(&path),
                carried(&tags),
                src_arg(inp.src)
            ),
        )
        .fix(install_cmd);
    }
    let hash = crate::patch::manifest::sha256_hex(&installed);
    let built = inp
        .src
        .and_then(|s| fs::read(s.join("channels").join(install::MODULE)).ok());
    match built {
        Some(b) if crate::patch::manifest::sha256_hex(&b) != hash => Check::new(
            NAME,
            Status::Fail,
            format!("{} differs from the built module", shown(&path)),
        )
        .fix(install_cmd),
        Some(_) => Check::new(
            NAME,
            Status::Pass,
            format!(
                "{}: same as the built module, {} (sha256 {})",
                shown(&path),
                carried(&tags),
                &hash[..12]
            ),
        ),
        None => Check::new(
            NAME,
            Status::Pass,
            format!(
                "{}: carries the patched format strings, {} (sha256 {})",
                shown(&path),
                carried(&tags),
                &hash[..12]
            ),
        ),
    }
}

/// Whether the running Asterisk has the installed module loaded: the file on disk only says
/// what the next load will use.
pub(super) fn check_loaded(inp: &Inputs, installed: Option<&Path>) -> Check {
    const NAME: &str = "loaded-module";
    let i = match inp.running {
        Running::NotLooked => {
            return Check::new(
                NAME,
                Status::Skipped,
                "processes are not looked at under --root",
            );
        }
        Running::None => {
            return Check::new(
                NAME,
                Status::Skipped,
                match inp.asterisk_conf {
                    Some(c) => format!("no Asterisk is running with {}", shown(c)),
                    None => "no Asterisk is running".into(),
                },
            );
        }
        Running::Instance(i) => i,
    };
    let on_disk = installed.and_then(|p| {
        let bytes = fs::read(p).ok()?;
        let ino = std::os::unix::fs::MetadataExt::ino(&fs::metadata(p).ok()?);
        // Inode numbers repeat across filesystems: a module mapped from another path is not
        // the installed file whatever its number (0 is no file's inode).
        // The kernel names mappings by their real path: compare with symlinks resolved.
        let real = fs::canonicalize(p).unwrap_or_else(|_| p.to_owned());
        let mapped_here = i.chan_sip.as_ref().is_none_or(|m| m.path == real);
        Some((if mapped_here { ino } else { 0 }, ModuleKind::of(&bytes)))
    });
    judge_loaded(i, inp.src, on_disk.as_ref())
}

/// The loaded-module decision, free of effects: the instance as /proc showed it, and the
/// installed file's inode and kind.
pub fn judge_loaded(
    i: &Instance,
    src: Option<&Path>,
    installed: Option<&(u64, ModuleKind)>,
) -> Check {
    const NAME: &str = "loaded-module";
    let who = format!("the running Asterisk (pid {})", i.pid);
    let conf = if i.explicit_config {
        format!(" --asterisk-conf {}", shown(&i.config))
    } else {
        String::new()
    };
    let reload = format!(
        "{} && {}",
        i.rx(&format!("module unload {}", install::MODULE)),
        i.rx(&format!("module load {}", install::MODULE))
    );
    let apply = format!("astpatch apply --install --reload{conf} {}", src_arg(src));
    if let Some(e) = &i.maps_error {
        return Check::new(NAME, Status::Fail, format!("{who}: {e}"))
            .fix("run verify as root (or as the user Asterisk runs as)");
    }
    let Some(m) = &i.chan_sip else {
        return Check::new(
            NAME,
            Status::Fail,
            format!("{who} has no {} loaded", install::MODULE),
        )
        .fix(i.rx(&format!("module load {}", install::MODULE)));
    };
    let loaded = match &m.kind {
        Ok(k) => k,
        Err(e) => {
            return Check::new(NAME, Status::Fail, format!("{who}: {e}")).fix("run verify as root");
        }
    };
    let same_file = installed.is_some_and(|(ino, _)| *ino == m.inode) && !m.deleted;
    let installed_kind = installed.map(|(_, k)| k);
    match (loaded, installed_kind) {
        (ModuleKind::Stock, Some(k)) if k.is_patched() => Check::new(
            NAME,
            Status::Fail,
            format!("the installed {} is patched but {who} still has the stock module loaded", install::MODULE),
        )
        .fix(apply),
        (ModuleKind::Stock, _) => Check::new(
            NAME,
            Status::Fail,
            format!("{who} has the stock {} loaded", install::MODULE),
        )
        .fix(format!("astpatch apply --rebuild --install --reload{conf} {}", src_arg(src))),
        (k, Some(ModuleKind::Stock)) => Check::new(
            NAME,
            Status::Fail,
            format!(
                "the installed {} is stock but {who} still has the {} module loaded",
                install::MODULE,
                kind_word(k)
            ),
        )
        .fix(reload),
        (k, _) if !same_file => {
            let detail = format!(
                "{who} has a {} {} loaded that is no longer the installed file{}",
                kind_word(k),
                install::MODULE,
                if m.deleted { " (deleted on disk)" } else { "" }
            );
            // The same build under another inode (reinstalled) changes nothing the log shows.
            if installed_kind == Some(k) {
                Check::new(NAME, Status::Warn, detail).fix(reload)
            } else {
                Check::new(NAME, Status::Fail, detail).fix(reload)
            }
        }
        (ModuleKind::Untagged, _) => Check::new(
            NAME,
            Status::Warn,
            format!(
                "{who} has the installed {} loaded, patched without a tag: its lines cannot be told from forged ones, only patched = true trusts them",
                install::MODULE
            ),
        )
        .fix(format!("astpatch apply --rebuild --install --reload{conf} {}", src_arg(src))),
        (k, _) => Check::new(
            NAME,
            Status::Pass,
            format!("{who} has the installed {} loaded, {}", install::MODULE, kind_word(k)),
        ),
    }
}
