//! `astpatch verify`: prove, link by link, that a failed SIP login ends in a kernel drop rule:
//! patched source → built module → installed module → log file → watcher → firewall.
//! Each check reads the real thing (the .so's bytes, logger.conf, the kernel's rules) and
//! says how to fix what is wrong in one line.
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::Serialize;

use crate::asterisk_conf::{self, Directories, under};
use crate::config::{Backend, Settings};
use crate::detect::TagState;
use crate::firewall::Firewall;
use crate::install;
use crate::logger_conf;
use crate::module_tag::{self, ModuleKind, Tag};
use crate::running::{Instance, kind_word};
use crate::sites::{self, PatchState};
use crate::state;
use crate::watcher_unit::{self, UnitState};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Pass,
    /// Works, but something deserves attention; does not fail verify.
    Warn,
    Fail,
    /// Does not apply here (no tree given, no watcher installed yet).
    Skipped,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    fn new(name: &'static str, status: Status, detail: impl Into<String>) -> Check {
        Check {
            name,
            status,
            detail: detail.into(),
            fix: None,
        }
    }
    fn fix(mut self, fix: impl Into<String>) -> Check {
        self.fix = Some(fix.into());
        self
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// True when no applicable check failed.
    pub ok: bool,
    pub checks: Vec<Check>,
}

pub struct Inputs<'a> {
    pub src: Option<&'a Path>,
    /// The system Asterisk and the watcher run on (`/` normally; a temp dir in tests).
    pub root: &'a Path,
    pub moddir: Option<&'a Path>,
    pub settings: &'a Settings,
    /// The running Asterisk, as [`crate::running`] found it.
    pub running: Running<'a>,
    /// The asterisk.conf to read when no instance runs [default: /etc/asterisk/asterisk.conf].
    pub asterisk_conf: Option<&'a Path>,
}

/// What the caller learnt about the running Asterisk.
#[derive(Debug, Clone, Copy)]
pub enum Running<'a> {
    /// Processes were not looked at (a `--root` other than `/`).
    NotLooked,
    /// No Asterisk server runs (with the named asterisk.conf, when one was named).
    None,
    Instance(&'a Instance),
}

/// A row only when `patched` overrides the default: both overrides deserve a look.
fn check_trust_setting(patched: crate::config::Patched) -> Option<Check> {
    use crate::config::Patched;
    const NAME: &str = "trust";
    match patched {
        Patched::Auto => None,
        Patched::True => Some(
            Check::new(
                NAME,
                Status::Warn,
                "patched = true: untagged chan_sip tails are believed; on a stock module they end in the attacker's From header",
            )
            .fix("tag the module (astpatch apply --rebuild --install --reload SRC), then remove patched = true"),
        ),
        Patched::False => Some(
            Check::new(
                NAME,
                Status::Warn,
                "patched = false: chan_sip failure lines never ban, tagged or not",
            )
            .fix("remove patched = false once the module is patched: tagged lines are then believed"),
        ),
    }
}

/// Run every check. `firewall` opens the backend the watcher uses (argv runner inside).
pub fn verify(inp: &Inputs, firewall: &dyn Fn(Backend) -> Box<dyn Firewall>) -> VerifyReport {
    // The running instance's directories are the ones that matter; else its asterisk.conf.
    let dirs = match inp.running {
        Running::Instance(i) => Some(i.dirs.clone()),
        _ => asterisk_conf::load_file(
            inp.root,
            inp.asterisk_conf
                .unwrap_or(Path::new(asterisk_conf::DEFAULT_PATH)),
        )
        .ok()
        .flatten(),
    };
    let src_state = inp.src.map(source_state);
    let tree_tag = src_state.as_ref().and_then(|st| st.tag);
    let (installed, installed_path) = check_installed(inp, tree_tag);
    let mut checks = vec![
        check_source(inp.src, src_state.as_ref()),
        check_built(inp.src, src_state.as_ref()),
        installed,
        check_loaded(inp, installed_path.as_deref()),
    ];
    let (logging, notice_files) = check_logging(inp, dirs.as_ref());
    checks.push(logging);
    let state_dir = under(inp.root, &inp.settings.state_dir);
    checks.push(check_watcher(inp.root, &state_dir, &notice_files));
    checks.push(check_firewall(&state_dir, inp.settings, firewall));
    checks.extend(check_trust_setting(inp.settings.patched));
    checks.extend(check_fleet(inp.settings, &state_dir));
    VerifyReport {
        ok: checks.iter().all(|c| c.status != Status::Fail),
        checks,
    }
}

fn shown(p: &Path) -> String {
    p.display().to_string()
}

fn src_arg(src: Option<&Path>) -> String {
    src.map(shown).unwrap_or_else(|| "SRC".into())
}

/// What the tree's chan_sip.c says, read once for the source and built-module checks.
struct SourceState {
    result: Result<(PathBuf, Vec<u8>, sites::SiteScan), crate::error::Error>,
    /// The tree's tag (manifest, else the sites'), which built and installed modules must carry.
    tag: Option<Tag>,
    tag_state: TagState,
}

fn source_state(src: &Path) -> SourceState {
    let result = crate::apply::load(src).map(|l| (l.path, l.bytes, l.scan));
    let (tag, tag_state) = match &result {
        Ok((path, bytes, scan)) => {
            let tag = crate::apply::tree_tag(path, bytes, scan);
            let patched: Vec<bool> = scan.sites.iter().map(|s| s.patched).collect();
            let tags = crate::apply::site_tags(bytes, scan);
            (tag, TagState::of(&patched, &tags, tag))
        }
        Err(_) => (None, TagState::NoSites),
    };
    SourceState {
        result,
        tag,
        tag_state,
    }
}

/// "tag X" / "no tag" / "tags X, Y", for messages about a module.
fn carried(tags: &[Tag]) -> String {
    match tags {
        [] => "no tag".into(),
        [t] => format!("tag {t}"),
        many => format!(
            "tags {}",
            many.iter()
                .map(|t| t.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn check_source(src: Option<&Path>, st: Option<&SourceState>) -> Check {
    const NAME: &str = "source";
    let (Some(src), Some(st)) = (src, st) else {
        return Check::new(
            NAME,
            Status::Skipped,
            "no source tree given (astpatch verify SRC checks it)",
        );
    };
    match &st.result {
        Err(e) => Check::new(NAME, Status::Fail, e.to_string())
            .fix(e.hint().unwrap_or_else(|| "check the path".into())),
        Ok((path, _, scan)) => {
            let n = scan.sites.len();
            let patched = scan.sites.iter().filter(|s| s.patched).count();
            match (scan.state(), st.tag_state, st.tag) {
                (PatchState::Patched, TagState::Tagged, Some(tag)) => Check::new(
                    NAME,
                    Status::Pass,
                    format!(
                        "{}: all {n} inbound sites log the source address, tagged {tag}",
                        shown(path)
                    ),
                ),
                (PatchState::Patched, ..) => Check::new(
                    NAME,
                    Status::Fail,
                    format!(
                        "{}: all {n} inbound sites log the source address, but not all end with the tree's tag: the watcher does not trust their lines by default",
                        shown(path)
                    ),
                )
                .fix(format!(
                    "astpatch apply --rebuild --install {} (adds the tag)",
                    shown(src)
                )),
                (PatchState::NoSites, ..) => Check::new(
                    NAME,
                    Status::Skipped,
                    format!("{}: no inbound failed-auth log statements", shown(path)),
                ),
                _ => Check::new(
                    NAME,
                    Status::Fail,
                    format!(
                        "{}: {patched} of {n} inbound sites log the source address",
                        shown(path)
                    ),
                )
                .fix(format!("astpatch apply {}", shown(src))),
            }
        }
    }
}

/// The format strings of the file's inbound log statements, as the compiler stores them.
pub fn site_format_strings(src: &[u8], scan: &sites::SiteScan) -> Vec<Vec<u8>> {
    scan.sites
        .iter()
        .filter_map(|s| first_literal(&src[s.span.clone()]))
        .collect()
}

/// The first string literal of a statement (adjacent literals joined), with C escapes undone.
fn first_literal(stmt: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut i = stmt.iter().position(|&b| b == b'"')?;
    loop {
        i += 1;
        while i < stmt.len() && stmt[i] != b'"' {
            if stmt[i] == b'\\' && i + 1 < stmt.len() {
                i += 1;
                out.push(match stmt[i] {
                    b'n' => b'\n',
                    b't' => b'\t',
                    b'r' => b'\r',
                    b'0' => 0,
                    other => other,
                });
            } else {
                out.push(stmt[i]);
            }
            i += 1;
        }
        // Another literal right after (only whitespace between) continues the string.
        let next = stmt[(i + 1).min(stmt.len())..]
            .iter()
            .position(|b| !b.is_ascii_whitespace());
        match next {
            Some(off) if stmt[i + 1 + off] == b'"' => i = i + 1 + off,
            _ => return Some(out),
        }
    }
}

fn check_built(src: Option<&Path>, st: Option<&SourceState>) -> Check {
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
        let tags = module_tag::in_module(&module);
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
fn check_installed(inp: &Inputs, tree_tag: Option<Tag>) -> (Check, Option<PathBuf>) {
    const NAME: &str = "installed-module";
    let from = match inp.running {
        Running::Instance(i) => install::ModdirFrom::Running(i),
        _ => install::ModdirFrom::Conf(
            inp.asterisk_conf
                .unwrap_or(Path::new(asterisk_conf::DEFAULT_PATH)),
        ),
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

fn installed_check(inp: &Inputs, path: &Path, tree_tag: Option<Tag>) -> Check {
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
    let hash = crate::manifest::sha256_hex(&installed);
    let built = inp
        .src
        .and_then(|s| fs::read(s.join("channels").join(install::MODULE)).ok());
    match built {
        Some(b) if crate::manifest::sha256_hex(&b) != hash => Check::new(
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
fn check_loaded(inp: &Inputs, installed: Option<&Path>) -> Check {
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

/// The security log level exists from Asterisk 1.8 on; unknown versions are assumed to have it.
pub fn has_security_level(version: Option<&str>) -> bool {
    let Some(v) = version else { return true };
    let mut nums = v
        .trim()
        .trim_start_matches(|c: char| !c.is_ascii_digit())
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().unwrap_or(0));
    match (nums.next(), nums.next()) {
        (Some(1), Some(minor)) => minor >= 8,
        _ => true,
    }
}

fn hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    (rc == 0).then(|| {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    })
}

/// The logging check, and the files NOTICE goes to (for the watcher check).
fn check_logging(inp: &Inputs, dirs: Option<&Directories>) -> (Check, Vec<PathBuf>) {
    const NAME: &str = "logging";
    let defaults = Directories::default();
    let dirs = dirs.unwrap_or(&defaults);
    let conf_path = under(inp.root, &dirs.astetcdir.join("logger.conf"));
    // The running instance's own binary and -C, when there is one.
    let reload = match inp.running {
        Running::Instance(i) => format!("then: {}", i.rx("logger reload")),
        _ => "then: asterisk -rx 'logger reload'".to_owned(),
    };
    let reload = reload.as_str();
    let text = match fs::read(&conf_path) {
        Ok(t) => String::from_utf8_lossy(&t).into_owned(),
        Err(_) => {
            return (
                Check::new(NAME, Status::Fail, format!("{} does not exist", shown(&conf_path)))
                    .fix(format!(
                        "create it with `[logfiles]` and `messages => notice,warning,error,security`; {reload}"
                    )),
                vec![],
            );
        }
    };
    let conf = logger_conf::parse(&text);
    let host = conf.appendhostname.then(hostname).flatten();
    let logdir = &dirs.astlogdir;
    let watched: BTreeSet<PathBuf> = inp
        .settings
        .logs
        .iter()
        .map(|l| under(inp.root, l))
        .collect();
    let files_with = |level: &str| -> Vec<PathBuf> {
        conf.channels
            .iter()
            .filter(|c| c.is_file() && c.has(level))
            .map(|c| {
                under(
                    inp.root,
                    &logger_conf::file_path(c, logdir, host.as_deref()),
                )
            })
            .collect()
    };
    let version = inp
        .src
        .and_then(|s| fs::read_to_string(s.join(".version")).ok());
    let mut levels = vec!["notice"];
    if has_security_level(version.as_deref()) {
        levels.push("security");
    }
    let mut problems = Vec::new();
    let mut fix = None;
    let mut notice_files = Vec::new();
    let mut good = Vec::new();
    for level in levels {
        let files = files_with(level);
        let read: Vec<&PathBuf> = files.iter().filter(|f| watched.contains(*f)).collect();
        if level == "notice" {
            notice_files = files.clone();
        }
        if let Some(f) = read.first() {
            good.push(format!("{} → {}", level.to_ascii_uppercase(), shown(f)));
        } else if let Some(f) = files.first() {
            problems.push(format!(
                "{} goes to {}, which the watcher does not read",
                level.to_ascii_uppercase(),
                shown(f)
            ));
            fix.get_or_insert(format!(
                "add \"{}\" to logs in astpatch.toml and restart the watcher",
                shown(f)
            ));
        } else {
            problems.push(format!(
                "no file channel gets {} in {}",
                level.to_ascii_uppercase(),
                shown(&conf_path)
            ));
            fix.get_or_insert(format!(
                "add `{} => {level}` under [logfiles] in {}; {reload}",
                if level == "notice" {
                    "messages"
                } else {
                    "security"
                },
                shown(&conf_path)
            ));
        }
    }
    if !problems.is_empty() {
        let mut c = Check::new(NAME, Status::Fail, problems.join("; "));
        c.fix = fix;
        return (c, notice_files);
    }
    if let Some(df) = conf
        .dateformat
        .as_deref()
        .filter(|df| !logger_conf::watcher_reads_dateformat(df))
    {
        let sample = logger_conf::render_dateformat(df).unwrap_or_default();
        return (
            Check::new(
                NAME,
                Status::Warn,
                format!(
                    "{}; but dateformat={df} (\"{sample}\") is a date the watcher cannot read",
                    good.join(", ")
                ),
            )
            .fix(format!(
                "set `dateformat = %F %T` under [general] in {} (or remove it); {reload}",
                shown(&conf_path)
            )),
            notice_files,
        );
    }
    // Packet traces (`sip set debug on`, `pjsip set logger on`) are written at VERBOSE, raw
    // packets and all: every line of them is the sender's, frame included, and reads like
    // Asterisk's own. A file the watcher bans from should not receive them.
    let traced: Vec<String> = conf
        .channels
        .iter()
        .filter(|c| c.is_file() && (c.has("verbose") || c.has("debug")))
        .map(|c| {
            under(
                inp.root,
                &logger_conf::file_path(c, logdir, host.as_deref()),
            )
        })
        .filter(|f| watched.contains(f))
        .map(|f| shown(&f))
        .collect();
    if let Some(f) = traced.first() {
        return (
            Check::new(
                NAME,
                Status::Warn,
                format!(
                    "{}; but {f} also gets VERBOSE/DEBUG, where SIP packet traces put lines a remote party writes in full",
                    good.join(", ")
                ),
            )
            .fix(format!(
                "log verbose and debug to another file (e.g. `full => verbose,debug`) and keep the watched one to `notice,warning,error,security` in {}; {reload}",
                shown(&conf_path)
            )),
            notice_files,
        );
    }
    (
        Check::new(NAME, Status::Pass, good.join(", ")),
        notice_files,
    )
}

/// What a pid names, judged from its command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcKind {
    /// `astpatch … watch … --ban`.
    Banning,
    /// `astpatch … watch` without `--ban`: it reports, it bans nothing.
    ReportOnly,
    /// No such process, or something else that reused the pid.
    Other,
}

/// Classify a `/proc/PID/cmdline` (NUL-separated argv).
pub fn classify_cmdline(cmdline: &[u8]) -> ProcKind {
    let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
    let Some(me) = args.iter().position(|a| {
        let name = a.rsplit(|&b| b == b'/').next().unwrap_or(a);
        memchr::memmem::find(name, b"astpatch").is_some()
    }) else {
        return ProcKind::Other;
    };
    let rest = &args[me + 1..];
    if !rest.iter().any(|a| *a == b"watch") {
        ProcKind::Other
    } else if rest.iter().any(|a| *a == b"--ban") {
        ProcKind::Banning
    } else {
        ProcKind::ReportOnly
    }
}

/// What `pid` is now (pid files outlive crashes, and pids are reused).
fn process_kind(pid: u32) -> ProcKind {
    // SAFETY: signal 0 only checks for existence and permission.
    let exists = unsafe { libc::kill(pid as libc::pid_t, 0) } == 0
        || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    if !exists {
        return ProcKind::Other;
    }
    match fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(cmd) => classify_cmdline(&cmd),
        // /proc hidden (hidepid): the process exists, and the pid file says it bans.
        Err(_) => ProcKind::Banning,
    }
}

/// The watcher as its pid file and the process it names show it.
#[derive(Debug, Clone)]
pub enum WatcherProcess {
    NoPidFile,
    Gone(u32),
    Running(state::PidFile, ProcKind),
    /// No banning watcher, but `astpatch watch` without --ban runs (these pids).
    OnlyReportOnly(Vec<u32>),
}

/// Pids of `astpatch watch` processes without --ban, from a /proc-like directory.
pub fn report_only_watchers(proc_dir: &Path) -> Vec<u32> {
    let Ok(entries) = fs::read_dir(proc_dir) else {
        return vec![];
    };
    let mut pids: Vec<u32> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != std::process::id())
        .filter(|pid| {
            fs::read(proc_dir.join(pid.to_string()).join("cmdline"))
                .is_ok_and(|c| classify_cmdline(&c) == ProcKind::ReportOnly)
        })
        .collect();
    pids.sort_unstable();
    pids
}

const START_WATCHER: &str = "start it: systemctl start astpatch (unit from `astpatch install-watcher`), or run `astpatch watch --ban`";
const RESTART_WITH_BAN: &str = "restart it with --ban: stop it, then `astpatch watch --ban` or systemctl restart astpatch (unit from `astpatch install-watcher`)";

fn check_watcher(root: &Path, state_dir: &Path, notice_files: &[PathBuf]) -> Check {
    let unit = watcher_unit::unit_state(root, &watcher_unit::SystemSystemctl);
    let process = if !state_dir.is_dir() {
        WatcherProcess::NoPidFile
    } else {
        match state::read_pid_file(state_dir) {
            None => WatcherProcess::NoPidFile,
            Some(p) => match process_kind(p.pid) {
                ProcKind::Other => WatcherProcess::Gone(p.pid),
                kind => WatcherProcess::Running(p, kind),
            },
        }
    };
    // A report-only watcher writes no pid file; look for one, but only on the real system
    // (a temp --root has no processes of its own).
    let process = match process {
        WatcherProcess::NoPidFile | WatcherProcess::Gone(_) if root == Path::new("/") => {
            match report_only_watchers(Path::new("/proc")) {
                pids if pids.is_empty() => process,
                pids => WatcherProcess::OnlyReportOnly(pids),
            }
        }
        p => p,
    };
    judge_watcher(root, state_dir, &process, &unit, notice_files)
}

fn unit_without_ban_fix(f: &watcher_unit::UnitFile) -> String {
    format!(
        "{} runs the watcher without --ban: put --ban back on its ExecStart= (or re-run `astpatch install-watcher`), then systemctl daemon-reload && systemctl restart astpatch",
        shown(&f.path)
    )
}

/// The watcher check's decision, free of effects: pid file and process, systemd's view of
/// the unit, and the files NOTICE goes to.
pub fn judge_watcher(
    root: &Path,
    state_dir: &Path,
    process: &WatcherProcess,
    unit: &UnitState,
    notice_files: &[PathBuf],
) -> Check {
    const NAME: &str = "watcher";
    let report_only_runs = matches!(process, WatcherProcess::OnlyReportOnly(_));
    if !state_dir.is_dir() && !unit.installed() && !report_only_runs {
        return Check::new(
            NAME,
            Status::Skipped,
            format!(
                "no watcher installed yet ({} does not exist)",
                shown(state_dir)
            ),
        );
    }
    let with_unit = |detail: String| match unit.describe() {
        Some(u) => format!("{detail}; {u}"),
        None => detail,
    };
    let unit_report_only = unit.file.as_ref().filter(|f| !f.bans);
    let pid = match process {
        WatcherProcess::Running(pid, ProcKind::Banning) => pid,
        WatcherProcess::Running(pid, _) => {
            return Check::new(
                NAME,
                Status::Fail,
                with_unit(format!(
                    "running (pid {}) report-only, without --ban: it bans nothing",
                    pid.pid
                )),
            )
            .fix(RESTART_WITH_BAN);
        }
        WatcherProcess::OnlyReportOnly(pids) => {
            let list: Vec<String> = pids.iter().map(u32::to_string).collect();
            return Check::new(
                NAME,
                Status::Fail,
                with_unit(format!(
                    "no watcher bans: `astpatch watch` runs report-only, without --ban (pid {}); it bans nothing",
                    list.join(", ")
                )),
            )
            .fix(match unit_report_only {
                Some(f) => unit_without_ban_fix(f),
                None => RESTART_WITH_BAN.into(),
            });
        }
        not_running => {
            let why = match not_running {
                WatcherProcess::Gone(pid) => {
                    format!("not running: pid {pid} from {} is gone", state::PID_FILE)
                }
                _ => format!(
                    "not running: no {} in {}",
                    state::PID_FILE,
                    shown(state_dir)
                ),
            };
            let fix = if let Some(f) = unit_report_only {
                unit_without_ban_fix(f)
            } else {
                match unit.loaded() {
                    Some(s) if s.active == "active" => format!(
                        "systemctl restart astpatch; if it still writes no pid file, its --config must use state_dir {}",
                        shown(state_dir)
                    ),
                    Some(s) if s.enabled == "enabled" => {
                        "systemctl restart astpatch (journalctl -u astpatch says why it stopped)"
                            .into()
                    }
                    Some(_) => "systemctl enable --now astpatch".into(),
                    None => START_WATCHER.into(),
                }
            };
            return Check::new(NAME, Status::Fail, with_unit(why)).fix(fix);
        }
    };
    let follows: BTreeSet<PathBuf> = pid.logs.iter().map(|l| under(root, l)).collect();
    match notice_files.iter().find(|f| follows.contains(*f)) {
        None if !notice_files.is_empty() => Check::new(
            NAME,
            Status::Fail,
            with_unit(format!(
                "running (pid {}) but not following {}, where NOTICE goes",
                pid.pid,
                shown(&notice_files[0])
            )),
        )
        .fix(format!(
            "add \"{}\" to logs in astpatch.toml and restart the watcher",
            shown(&notice_files[0])
        )),
        followed => {
            let mut detail = format!("running (pid {}, backend {})", pid.pid, pid.backend);
            if let Some(f) = followed {
                detail.push_str(&format!(", following {}", shown(f)));
            }
            let detail = with_unit(detail);
            // Running now, but a unit that is not enabled will not bring it back after a reboot.
            match unit.loaded() {
                Some(s) if s.enabled != "enabled" => Check::new(NAME, Status::Warn, detail)
                    .fix("systemctl enable astpatch, so it starts at boot"),
                _ => Check::new(NAME, Status::Pass, detail),
            }
        }
    }
}

/// The CrowdSec link, when `[crowdsec]` is set ([`crate::fleet::verify`]).
fn check_fleet(settings: &Settings, state_dir: &Path) -> Vec<Check> {
    use crate::fleet::verify::Verdict;
    crate::fleet::verify::rows(
        settings,
        state::watcher_running(state_dir),
        crate::firewall::now_secs(),
    )
    .into_iter()
    .map(|r| {
        let status = match r.verdict {
            Verdict::Pass => Status::Pass,
            Verdict::Warn => Status::Warn,
            Verdict::Fail => Status::Fail,
        };
        let c = Check::new(r.name, status, r.detail);
        match r.fix {
            Some(f) => c.fix(f),
            None => c,
        }
    })
    .collect()
}

fn check_firewall(
    state_dir: &Path,
    settings: &Settings,
    firewall: &dyn Fn(Backend) -> Box<dyn Firewall>,
) -> Check {
    const NAME: &str = "firewall";
    if !state_dir.is_dir() {
        return Check::new(
            NAME,
            Status::Skipped,
            format!(
                "no watcher installed yet ({} does not exist)",
                shown(state_dir)
            ),
        );
    }
    let backend = state::read_pid_file(state_dir)
        .map(|p| p.backend)
        .unwrap_or(settings.backend);
    let restart = "restart the watcher (it creates, hooks and restores exactly the state's bans): systemctl restart astpatch";
    let fw = firewall(backend);
    match fw.hooked() {
        Err(e) => {
            return Check::new(NAME, Status::Fail, format!("{backend}: {e}"))
                .fix(e.hint().unwrap_or_else(|| restart.into()));
        }
        Ok(false) => {
            return Check::new(
                NAME,
                Status::Fail,
                format!("{backend}: astpatch's rules are missing or not hooked into INPUT"),
            )
            .fix(restart);
        }
        Ok(true) => {}
    }
    let kernel: BTreeSet<IpNet> = match fw.list() {
        Ok(v) => v.into_iter().map(|n| n.trunc()).collect(),
        Err(e) => return Check::new(NAME, Status::Fail, format!("{backend}: {e}")).fix(restart),
    };
    let st = match state::State::load(state_dir) {
        Ok(s) => s,
        Err(e) => {
            return Check::new(NAME, Status::Fail, format!("ban state: {e}"))
                .fix(e.hint().unwrap_or_else(|| restart.into()));
        }
    };
    let active: BTreeSet<IpNet> = st
        .active_bans(crate::firewall::now_secs())
        .into_iter()
        .map(|b| b.net.trunc())
        .collect();
    let missing: Vec<String> = active.difference(&kernel).map(|n| n.to_string()).collect();
    let unknown: Vec<String> = kernel.difference(&active).map(|n| n.to_string()).collect();
    let list = |v: &[String]| {
        let mut s = v.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
        if v.len() > 5 {
            s.push_str(&format!(" and {} more", v.len() - 5));
        }
        s
    };
    let mut problems = Vec::new();
    if !missing.is_empty() {
        problems.push(format!(
            "{} active ban(s) not in the kernel: {}",
            missing.len(),
            list(&missing)
        ));
    }
    if !unknown.is_empty() {
        problems.push(format!(
            "the kernel holds {} entr(ies) the ban state does not know: {}",
            unknown.len(),
            list(&unknown)
        ));
    }
    if problems.is_empty() {
        Check::new(
            NAME,
            Status::Pass,
            format!(
                "{backend}: hooked into INPUT; all {} active ban(s) are in the kernel, nothing else",
                active.len()
            ),
        )
    } else {
        Check::new(
            NAME,
            Status::Fail,
            format!("{backend}: {}", problems.join("; ")),
        )
        .fix(restart)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_overridden_patched_setting_gets_a_trust_row() {
        use crate::config::Patched;
        assert!(check_trust_setting(Patched::Auto).is_none());
        let t = check_trust_setting(Patched::True).unwrap();
        assert_eq!(t.status, Status::Warn);
        assert!(t.detail.contains("From header") && t.fix.unwrap().contains("--reload"));
        assert_eq!(
            check_trust_setting(Patched::False).unwrap().status,
            Status::Warn
        );
    }

    #[test]
    fn format_strings_come_out_of_statements_as_compiled() {
        let stmt = b"ast_log(LOG_NOTICE, \"Failed to authenticate device %s (%s) for %s, \"\n\t\t\"code = %d\\n\", a, b);";
        assert_eq!(
            first_literal(stmt).unwrap(),
            b"Failed to authenticate device %s (%s) for %s, code = %d\n"
        );
        assert_eq!(
            first_literal(b"x(\"a\\\"b\\tc\", \"separate\")").unwrap(),
            b"a\"b\tc"
        );
        assert_eq!(first_literal(b"no literal"), None);
    }

    #[test]
    fn a_watcher_is_astpatch_watch_and_bans_only_with_the_flag() {
        let c = |args: &[&str]| classify_cmdline(args.join("\0").as_bytes());
        assert_eq!(
            c(&[
                "/usr/local/bin/astpatch",
                "watch",
                "--ban",
                "--config",
                "/etc/a.toml"
            ]),
            ProcKind::Banning
        );
        assert_eq!(
            c(&["astpatch", "watch", "--log", "/x"]),
            ProcKind::ReportOnly
        );
        // The pid was reused by another astpatch command, or by something else entirely.
        assert_eq!(c(&["astpatch", "status"]), ProcKind::Other);
        assert_eq!(
            c(&["/usr/sbin/asterisk", "watch", "--ban"]),
            ProcKind::Other
        );
        assert_eq!(c(&["vim", "/etc/astpatch/watch", "--ban"]), ProcKind::Other);
    }

    fn pid(n: u32) -> state::PidFile {
        state::PidFile {
            pid: n,
            logs: vec!["/var/log/asterisk/messages".into()],
            backend: Backend::Iptables,
            started_at: 0,
        }
    }

    fn systemd(active: &str, enabled: &str) -> Option<watcher_unit::Systemd> {
        Some(watcher_unit::Systemd {
            active: active.into(),
            enabled: enabled.into(),
        })
    }

    fn unit_file(bans: bool) -> Option<watcher_unit::UnitFile> {
        Some(watcher_unit::UnitFile {
            path: "/etc/systemd/system/astpatch-watch.service".into(),
            bans,
        })
    }

    /// (status, detail, fix) for one situation, with the state dir present.
    fn judge(process: WatcherProcess, unit: UnitState) -> (Status, String, String) {
        let dir = tempfile::tempdir().unwrap();
        let c = judge_watcher(
            Path::new("/"),
            dir.path(),
            &process,
            &unit,
            &["/var/log/asterisk/messages".into()],
        );
        (c.status, c.detail, c.fix.unwrap_or_default())
    }

    #[test]
    fn a_report_only_watcher_fails() {
        let (st, detail, fix) = judge(
            WatcherProcess::Running(pid(7), ProcKind::ReportOnly),
            UnitState::default(),
        );
        assert_eq!(st, Status::Fail);
        assert!(detail.contains("report-only"), "{detail}");
        assert!(fix.starts_with("restart it with --ban"), "{fix}");
    }

    #[test]
    fn report_only_watchers_are_found_in_proc() {
        let proc_dir = tempfile::tempdir().unwrap();
        for (pid, argv) in [
            ("100", "/usr/bin/astpatch\0watch\0--log\0/x\0"),
            ("101", "/usr/bin/astpatch\0watch\0--ban\0"),
            ("102", "sleep\0x600\0"),
            ("self", "/usr/bin/astpatch\0watch\0"),
            ("7", "astpatch\0watch\0"),
        ] {
            let d = proc_dir.path().join(pid);
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join("cmdline"), argv).unwrap();
        }
        fs::create_dir_all(proc_dir.path().join("103")).unwrap(); // exited: no cmdline
        assert_eq!(report_only_watchers(proc_dir.path()), [7, 100]);
        let (st, detail, fix) = judge(
            WatcherProcess::OnlyReportOnly(vec![7, 100]),
            UnitState::default(),
        );
        assert_eq!(st, Status::Fail);
        assert!(
            detail.contains("report-only, without --ban (pid 7, 100)"),
            "{detail}"
        );
        assert_eq!(fix, RESTART_WITH_BAN);
    }

    #[test]
    fn a_banning_watcher_passes_and_shows_the_unit() {
        let (st, detail, _) = judge(
            WatcherProcess::Running(pid(7), ProcKind::Banning),
            UnitState::default(),
        );
        assert_eq!(st, Status::Pass);
        assert_eq!(
            detail,
            "running (pid 7, backend iptables), following /var/log/asterisk/messages"
        );
        let (st, detail, _) = judge(
            WatcherProcess::Running(pid(7), ProcKind::Banning),
            UnitState {
                file: unit_file(true),
                systemd: systemd("active", "enabled"),
            },
        );
        assert_eq!(st, Status::Pass);
        assert!(
            detail.ends_with("; unit astpatch-watch.service active, enabled"),
            "{detail}"
        );
        // Running by hand while the unit is disabled: gone after a reboot.
        let (st, _, fix) = judge(
            WatcherProcess::Running(pid(7), ProcKind::Banning),
            UnitState {
                file: unit_file(true),
                systemd: systemd("inactive", "disabled"),
            },
        );
        assert_eq!(st, Status::Warn);
        assert!(fix.starts_with("systemctl enable astpatch"), "{fix}");
    }

    #[test]
    fn a_missing_or_stale_pid_file_gets_the_systemd_fix() {
        for (process, active, enabled, want) in [
            (
                WatcherProcess::NoPidFile,
                "inactive",
                "disabled",
                "systemctl enable --now astpatch",
            ),
            (
                WatcherProcess::Gone(9),
                "failed",
                "enabled",
                "systemctl restart astpatch (journalctl",
            ),
            (
                WatcherProcess::Gone(9),
                "active",
                "enabled",
                "systemctl restart astpatch; if it still",
            ),
        ] {
            let (st, detail, fix) = judge(
                process,
                UnitState {
                    file: unit_file(true),
                    systemd: systemd(active, enabled),
                },
            );
            assert_eq!(st, Status::Fail);
            assert!(detail.starts_with("not running"), "{detail}");
            assert!(
                detail.ends_with(&format!(
                    "; unit astpatch-watch.service {active}, {enabled}"
                )),
                "{detail}"
            );
            assert!(fix.starts_with(want), "{fix}");
        }
        // A unit whose ExecStart lost --ban: that is the fix, whatever systemd says.
        let (_, _, fix) = judge(
            WatcherProcess::NoPidFile,
            UnitState {
                file: unit_file(false),
                systemd: systemd("active", "enabled"),
            },
        );
        assert!(fix.contains("without --ban: put --ban back"), "{fix}");
        // The unit file is there but systemd does not run: detail only, the manual fix.
        let (st, detail, fix) = judge(
            WatcherProcess::NoPidFile,
            UnitState {
                file: unit_file(true),
                systemd: None,
            },
        );
        assert_eq!(st, Status::Fail);
        assert!(
            detail.ends_with("present but systemd is not running here"),
            "{detail}"
        );
        assert_eq!(fix, START_WATCHER);
    }

    #[test]
    fn no_state_dir_and_no_unit_is_skipped_but_a_unit_alone_is_not() {
        let c = |unit: &UnitState| {
            judge_watcher(
                Path::new("/"),
                Path::new("/nonexistent/astpatch-state"),
                &WatcherProcess::NoPidFile,
                unit,
                &[],
            )
            .status
        };
        assert_eq!(c(&UnitState::default()), Status::Skipped);
        // A report-only watcher creates no state dir, yet it is a watcher that bans nothing.
        let only = judge_watcher(
            Path::new("/"),
            Path::new("/nonexistent/astpatch-state"),
            &WatcherProcess::OnlyReportOnly(vec![5]),
            &UnitState::default(),
            &[],
        );
        assert_eq!(only.status, Status::Fail);
        assert_eq!(
            c(&UnitState {
                file: unit_file(true),
                systemd: systemd("failed", "enabled"),
            }),
            Status::Fail
        );
    }

    #[test]
    fn loaded_module_verdicts_for_what_proc_shows() {
        use crate::module_tag::Tag;
        use crate::running::MappedModule;
        let t = |s: &str| s.parse::<Tag>().unwrap();
        let inst = |m: Option<MappedModule>| Instance {
            pid: 9,
            exe: "/opt/ast20/sbin/asterisk".into(),
            exe_deleted: false,
            config: "/opt/ast20/etc/asterisk/asterisk.conf".into(),
            explicit_config: true,
            dirs: Directories::default(),
            ctl_socket: "/opt/ast20/var/run/asterisk/asterisk.ctl".into(),
            chan_sip: m,
            maps_error: None,
        };
        let mapped = |inode, deleted, kind| {
            Some(MappedModule {
                path: "/m/chan_sip.so".into(),
                inode,
                deleted,
                kind: Ok(kind),
            })
        };
        let a = ModuleKind::Tagged(vec![t("aaaaaaaaaaaaaaaa")]);
        let b = ModuleKind::Tagged(vec![t("bbbbbbbbbbbbbbbb")]);
        let judge = |i: &Instance, installed: (u64, ModuleKind)| {
            let c = judge_loaded(i, Some(Path::new("/src")), Some(&installed));
            (c.status, c.detail, c.fix.unwrap_or_default())
        };
        // Nothing loaded: the fix loads it in that instance.
        let (st, detail, fix) = judge(&inst(None), (1, a.clone()));
        assert_eq!(st, Status::Fail);
        assert_eq!(
            detail,
            "the running Asterisk (pid 9) has no chan_sip.so loaded"
        );
        assert_eq!(
            fix,
            "/opt/ast20/sbin/asterisk -C /opt/ast20/etc/asterisk/asterisk.conf -rx 'module load chan_sip.so'"
        );
        // An older patched build still loaded (replaced on disk): another tag, so fail.
        let (st, detail, fix) = judge(&inst(mapped(1, true, a.clone())), (2, b.clone()));
        assert_eq!(st, Status::Fail);
        assert!(
            detail.contains("no longer the installed file (deleted on disk)"),
            "{detail}"
        );
        assert!(fix.contains("-rx 'module unload chan_sip.so' && "), "{fix}");
        // The same build reinstalled under another inode: its lines look the same, so warn.
        let (st, _, _) = judge(&inst(mapped(1, true, a.clone())), (2, a.clone()));
        assert_eq!(st, Status::Warn);
        // The installed file itself, tagged: pass.
        let (st, detail, _) = judge(&inst(mapped(2, false, b.clone())), (2, b.clone()));
        assert_eq!(st, Status::Pass, "{detail}");
        // /proc/PID/maps unreadable: not "not loaded", and said so.
        let mut hidden = inst(None);
        hidden.maps_error = Some("cannot read /proc/9/maps: permission denied".into());
        let (st, detail, fix) = judge(&hidden, (2, b));
        assert_eq!(st, Status::Fail);
        assert!(detail.contains("permission denied"), "{detail}");
        assert!(fix.contains("as root"), "{fix}");
    }

    #[test]
    fn security_level_from_1_8_on() {
        for (v, has) in [
            (Some("1.4.44"), false),
            (Some("1.6.2.24"), false),
            (Some("1.8.32.3"), true),
            (Some("certified/1.8.28-cert5"), true),
            (Some("11.23.1\n"), true),
            (Some("20.10.0"), true),
            (None, true),
        ] {
            assert_eq!(has_security_level(v), has, "{v:?}");
        }
    }
}
