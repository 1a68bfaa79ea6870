//! The logging link: logger.conf sends the failure lines (NOTICE, and SECURITY where the
//! release has it) to a file the watcher follows.
use super::*;

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

pub(super) fn hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    (rc == 0).then(|| {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    })
}

/// The logging check, and the files NOTICE goes to (for the watcher check).
pub(super) fn check_logging(inp: &Inputs, dirs: Option<&Directories>) -> (Check, Vec<PathBuf>) {
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
