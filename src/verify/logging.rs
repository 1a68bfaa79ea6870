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
    let defaults = Directories::default();
    let dirs = dirs.unwrap_or(&defaults);
    let conf_path = under(inp.root, &dirs.astetcdir.join("logger.conf"));
    // The running instance's own binary and -C, when there is one.
    let reload = match inp.running {
        Running::Instance(i) => format!("then: {}", i.rx("logger reload")),
        _ => "then: asterisk -rx 'logger reload'".to_owned(),
    };
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
    let files = Files {
        conf: &conf,
        root: inp.root,
        logdir: &dirs.astlogdir,
        host: conf.appendhostname.then(hostname).flatten(),
        watched: inp
            .settings
            .logs
            .iter()
            .map(|l| under(inp.root, l))
            .collect(),
    };
    let version = inp
        .src
        .and_then(|s| fs::read_to_string(s.join(".version")).ok());
    let routed = route_levels(
        &files,
        has_security_level(version.as_deref()),
        &conf_path,
        &reload,
    );
    if !routed.problems.is_empty() {
        let mut c = Check::new(NAME, Status::Fail, routed.problems.join("; "));
        c.fix = routed.fix;
        return (c, routed.notice_files);
    }
    let good = routed.good.join(", ");
    let warning = unreadable_dates(&conf, &good, &conf_path, &reload)
        .or_else(|| packet_traces(&files, &good, &conf_path, &reload));
    (
        warning.unwrap_or_else(|| Check::new(NAME, Status::Pass, good)),
        routed.notice_files,
    )
}

const NAME: &str = "logging";

/// Where logger.conf's file channels write, inside `root`, and which of them the watcher reads.
struct Files<'a> {
    conf: &'a logger_conf::LoggerConf,
    root: &'a Path,
    logdir: &'a Path,
    host: Option<String>,
    watched: BTreeSet<PathBuf>,
}

impl Files<'_> {
    /// The files that get `level`.
    fn with(&self, level: &str) -> Vec<PathBuf> {
        self.with_any(&[level])
    }

    fn with_any(&self, levels: &[&str]) -> Vec<PathBuf> {
        self.conf
            .channels
            .iter()
            .filter(|c| c.is_file() && levels.iter().any(|l| c.has(l)))
            .map(|c| {
                under(
                    self.root,
                    &logger_conf::file_path(c, self.logdir, self.host.as_deref()),
                )
            })
            .collect()
    }
}

/// Whether each level the failures are logged at reaches a file the watcher reads.
#[derive(Default)]
struct Routed {
    good: Vec<String>,
    problems: Vec<String>,
    fix: Option<String>,
    notice_files: Vec<PathBuf>,
}

fn route_levels(files: &Files, security: bool, conf_path: &Path, reload: &str) -> Routed {
    let mut levels = vec!["notice"];
    if security {
        levels.push("security");
    }
    let mut r = Routed::default();
    for level in levels {
        let to = files.with(level);
        let read: Vec<&PathBuf> = to.iter().filter(|f| files.watched.contains(*f)).collect();
        if level == "notice" {
            r.notice_files = to.clone();
        }
        if let Some(f) = read.first() {
            r.good
                .push(format!("{} → {}", level.to_ascii_uppercase(), shown(f)));
        } else if let Some(f) = to.first() {
            r.problems.push(format!(
                "{} goes to {}, which the watcher does not read",
                level.to_ascii_uppercase(),
                shown(f)
            ));
            r.fix.get_or_insert(format!(
                "add \"{}\" to logs in astpatch.toml and restart the watcher",
                shown(f)
            ));
        } else {
            r.problems.push(format!(
                "no file channel gets {} in {}",
                level.to_ascii_uppercase(),
                shown(conf_path)
            ));
            r.fix.get_or_insert(format!(
                "add `{} => {level}` under [logfiles] in {}; {reload}",
                if level == "notice" {
                    "messages"
                } else {
                    "security"
                },
                shown(conf_path)
            ));
        }
    }
    r
}

/// A dateformat the watcher cannot read would make every line undated.
fn unreadable_dates(
    conf: &logger_conf::LoggerConf,
    good: &str,
    conf_path: &Path,
    reload: &str,
) -> Option<Check> {
    let df = conf
        .dateformat
        .as_deref()
        .filter(|df| !logger_conf::watcher_reads_dateformat(df))?;
    let sample = logger_conf::render_dateformat(df).unwrap_or_default();
    Some(
        Check::new(
            NAME,
            Status::Warn,
            format!("{good}; but dateformat={df} (\"{sample}\") is a date the watcher cannot read"),
        )
        .fix(format!(
            "set `dateformat = %F %T` under [general] in {} (or remove it); {reload}",
            shown(conf_path)
        )),
    )
}

/// Packet traces (`sip set debug on`, `pjsip set logger on`) are written at VERBOSE, raw
/// packets and all: every line of them is the sender's, frame included, and reads like
/// Asterisk's own. A file the watcher bans from should not receive them.
fn packet_traces(files: &Files, good: &str, conf_path: &Path, reload: &str) -> Option<Check> {
    let traced = files
        .with_any(&["verbose", "debug"])
        .into_iter()
        .find(|f| files.watched.contains(f))?;
    Some(
        Check::new(
            NAME,
            Status::Warn,
            format!(
                "{good}; but {} also gets VERBOSE/DEBUG, where SIP packet traces put lines a remote party writes in full",
                shown(&traced)
            ),
        )
        .fix(format!(
            "log verbose and debug to another file (e.g. `full => verbose,debug`) and keep the watched one to `notice,warning,error,security` in {}; {reload}",
            shown(conf_path)
        )),
    )
}
