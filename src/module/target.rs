//! The Asterisk an install, a restore or a reload is for: the running server (found in /proc)
//! or, with none running, the asterisk.conf named or the default one. Found before anything is
//! written, so a module never lands in the wrong directory.
use std::path::{Path, PathBuf};

use crate::asterisk::conf;
use crate::asterisk::running::{self, Instance};
use crate::error::{Error, Result};
use crate::module::install;

/// The Asterisk an install, a restore or a reload is for.
#[derive(Debug, Clone)]
pub struct Target {
    /// The running server, found in /proc (on the live system only).
    pub instance: Option<Instance>,
    /// With no instance: the asterisk.conf in use (inside `root`).
    pub conf: PathBuf,
    /// `--asterisk-conf` was given.
    pub explicit: bool,
    pub root: PathBuf,
    /// Servers running with another asterisk.conf than the one named.
    pub others: Vec<String>,
}

/// Find the Asterisk to act on before anything is written: several running and none named
/// is an error, so no module lands in the wrong directory.
pub fn find_target(
    root: &Path,
    asterisk_conf: Option<&Path>,
    moddir: Option<&Path>,
) -> Result<Target> {
    let mut t = Target {
        instance: None,
        conf: asterisk_conf
            .map(Path::to_owned)
            .unwrap_or_else(|| conf::DEFAULT_PATH.into()),
        explicit: asterisk_conf.is_some(),
        root: root.to_owned(),
        others: vec![],
    };
    // Under another --root (a copy of a system, a test) there are no processes of its own.
    if root != Path::new("/") {
        return t.named_file_exists();
    }
    let found = running::discover(Path::new(PROC), root).map_err(|e| Error::io(PROC, e))?;
    let all: Vec<(u32, String)> = found.iter().map(|i| (i.pid, i.describe())).collect();
    t.instance = running::select_by(found, asterisk_conf, moddir)?;
    let chosen = t.instance.as_ref().map(|i| i.pid);
    t.others = all
        .into_iter()
        .filter(|(pid, _)| Some(*pid) != chosen)
        .map(|(_, d)| d)
        .collect();
    if t.instance.is_some() {
        return Ok(t);
    }
    t.named_file_exists()
}

/// Where the processes are read from.
pub const PROC: &str = "/proc";

impl Target {
    /// A named asterisk.conf that no process uses must at least exist: a typo would
    /// otherwise install by the tree's makeopts.
    fn named_file_exists(self) -> Result<Target> {
        let path = conf::under(&self.root, &self.conf);
        if self.explicit && !path.is_file() {
            let mut msg = format!(
                "--asterisk-conf {}: no such file, and no running Asterisk uses it",
                path.display()
            );
            if !self.others.is_empty() {
                msg.push_str(&format!("; running: {}", self.others.join("; ")));
            }
            return Err(Error::input(
                msg,
                Some("name the asterisk.conf the Asterisk you mean runs with (its -C)"),
            ));
        }
        Ok(self)
    }

    pub fn moddir_from(&self) -> install::ModdirFrom<'_> {
        match &self.instance {
            Some(i) => install::ModdirFrom::Running(i),
            None => install::ModdirFrom::Conf(&self.conf),
        }
    }

    /// `-C` for a console when no instance is known: the named file, or under another root.
    pub fn conf_flag(&self) -> Option<PathBuf> {
        if self.root != Path::new("/") {
            Some(conf::under(&self.root, &self.conf))
        } else {
            self.explicit.then(|| self.conf.clone())
        }
    }

    /// The modules directory to install into or restore from: `--moddir`, else this Asterisk's,
    /// else the tree's makeopts.
    pub fn moddir(&self, explicit: Option<&Path>, src: &Path) -> Result<install::Moddir> {
        install::resolve_moddir_from(explicit, Some(src), &self.root, self.moddir_from())
    }

    /// What the operator runs to load the module into this Asterisk.
    pub fn load_command(&self) -> String {
        match &self.instance {
            Some(i) => install::reload_hint(&i.exe, i.conf_arg()),
            None => install::reload_hint(Path::new("asterisk"), self.conf_flag().as_deref()),
        }
    }
}
