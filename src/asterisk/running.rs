//! The Asterisk that is really running, and the chan_sip it has loaded.
//!
//! The file on disk says what Asterisk *will* load; only the process says what it *has*
//! loaded. After `install` without a reload the process still maps the replaced module (its
//! `/proc/PID/maps` line ends in ` (deleted)`, with another inode than the installed file), and
//! on a host with two installs the one running may read another `asterisk.conf` (`-C`), with
//! its own module, log and run directories. Everything that acts on "the Asterisk" (reload,
//! verify, the logging check, tail trust) starts here.
//!
//! Paths read from /proc are taken in the namespace of `root` (`/` on a live system, a fake
//! tree in tests); `proc_root` is `/proc` or a fake of it. The parsing is pure and separate.
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::asterisk::conf::{self, Directories, under};
use crate::error::Error;
use crate::patch::tag::ModuleKind;

/// The module this crate cares about, by its file name in the maps.
pub const CHAN_SIP: &str = "chan_sip.so";
const DELETED: &str = " (deleted)";

/// One running Asterisk (a daemon or foreground server, not a remote console).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub pid: u32,
    /// `readlink /proc/PID/exe`, without ` (deleted)`.
    pub exe: PathBuf,
    /// The binary it runs was replaced or removed on disk (an upgrade not yet restarted).
    pub exe_deleted: bool,
    /// The asterisk.conf it runs with: `-C FILE`, else the one compiled into its binary.
    pub config: PathBuf,
    /// True when `-C` was given.
    pub explicit_config: bool,
    /// From that asterisk.conf, over the defaults compiled into the binary.
    pub dirs: Directories,
    /// `astrundir/astctl` (astctl defaults to asterisk.ctl).
    pub ctl_socket: PathBuf,
    /// `None` when no chan_sip.so is mapped (or the maps could not be read: see `maps_error`).
    pub chan_sip: Option<MappedModule>,
    /// Why /proc/PID/maps could not be read (not root, hidepid): the module is then unknown,
    /// which is not the same as "not loaded".
    pub maps_error: Option<String>,
}

/// A shared object as the process maps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappedModule {
    /// As in /proc/PID/maps, without ` (deleted)`.
    pub path: PathBuf,
    pub inode: u64,
    /// The file it was loaded from has been replaced or removed.
    pub deleted: bool,
    /// Read through /proc/PID/map_files (works when deleted), else the path; `Err` says why
    /// neither could be read.
    pub kind: Result<ModuleKind, String>,
}

impl Instance {
    /// The `-C` to pass to a remote console, when the instance was started with one (without
    /// it the same binary reads the same compiled-in file).
    pub fn conf_arg(&self) -> Option<&Path> {
        self.explicit_config.then_some(self.config.as_path())
    }

    /// `pid 123: /opt/ast20/sbin/asterisk -C /opt/ast20/etc/asterisk/asterisk.conf`.
    pub fn describe(&self) -> String {
        let mut s = format!("pid {}: {}", self.pid, self.exe.display());
        if self.exe_deleted {
            s.push_str(" (binary replaced on disk)");
        }
        if self.explicit_config {
            s.push_str(&format!(" -C {}", self.config.display()));
        } else {
            s.push_str(&format!(" (default {})", self.config.display()));
        }
        s
    }

    /// The command that runs `cmd` in this instance's CLI.
    pub fn rx(&self, cmd: &str) -> String {
        let c = self
            .conf_arg()
            .map(|p| format!(" -C {}", p.display()))
            .unwrap_or_default();
        format!("{}{c} -rx '{cmd}'", self.exe.display())
    }
}

// ---------------------------------------------------------------------------------------------
// Pure parsing.

/// `/proc/PID/cmdline`: NUL-separated argv (the final NUL is a terminator, not an empty arg).
pub fn parse_cmdline(raw: &[u8]) -> Vec<OsString> {
    let raw = raw.strip_suffix(b"\0").unwrap_or(raw);
    if raw.is_empty() {
        return vec![];
    }
    raw.split(|&b| b == 0)
        .map(|a| OsString::from_vec(a.to_vec()))
        .collect()
}

/// What Asterisk's command line says, read the way its getopt reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Args {
    /// `-C FILE`.
    pub config: Option<PathBuf>,
    /// `-r`, `-R` or `-x` (or started as `rasterisk`): a remote console, not a server.
    pub remote: bool,
}

/// Asterisk's option string: letters followed by `:` take a value. Parsing by it keeps
/// `-x 'core show -C'` from being read as options.
const GETOPT: &str = "BC:cde:FfG:ghIiL:M:mnpqRrs:TtU:VvWXx:";

fn takes_value(c: u8) -> Option<bool> {
    let g = GETOPT.as_bytes();
    let at = g.iter().position(|&x| x == c && x != b':')?;
    Some(g.get(at + 1) == Some(&b':'))
}

pub fn parse_args(argv: &[OsString]) -> Args {
    let mut a = Args::default();
    if let Some(argv0) = argv.first() {
        let name = Path::new(argv0).file_name().unwrap_or(argv0.as_os_str());
        a.remote = name == "rasterisk";
    }
    let mut i = 1;
    while i < argv.len() {
        let arg = argv[i].as_bytes();
        i += 1;
        if arg == b"--" {
            break;
        }
        // GNU getopt permutes: a non-option argument does not end the options.
        if arg.len() < 2 || arg[0] != b'-' {
            continue;
        }
        let mut k = 1;
        while k < arg.len() {
            let c = arg[k];
            k += 1;
            match takes_value(c) {
                Some(true) => {
                    let value = if k < arg.len() {
                        Some(OsStr::from_bytes(&arg[k..]).to_owned())
                    } else {
                        i += 1;
                        argv.get(i - 1).cloned()
                    };
                    match c {
                        b'C' => a.config = value.map(PathBuf::from),
                        b'x' => a.remote = true,
                        _ => {}
                    }
                    break;
                }
                Some(false) if c == b'r' || c == b'R' => a.remote = true,
                _ => {}
            }
        }
    }
    a
}

/// `/proc/PID/exe`'s target: the path, and whether the kernel marked it ` (deleted)`.
pub fn strip_deleted(p: &Path) -> (PathBuf, bool) {
    let b = p.as_os_str().as_bytes();
    match b.strip_suffix(DELETED.as_bytes()) {
        Some(rest) => (PathBuf::from(OsStr::from_bytes(rest)), true),
        None => (p.to_owned(), false),
    }
}

/// One line of /proc/PID/maps that maps a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapsLine {
    /// `start-end` as the kernel writes it: also the entry's name in /proc/PID/map_files.
    pub range: String,
    pub inode: u64,
    pub path: PathBuf,
    pub deleted: bool,
}

/// `7f…000-7f…000 r-xp 00001000 fd:01 1234  /usr/lib/asterisk/modules/chan_sip.so (deleted)`.
/// The path is the rest of the line after the five fields (it may hold spaces).
pub fn parse_maps_line(line: &[u8]) -> Option<MapsLine> {
    let mut rest = line;
    let mut fields = [&b""[..]; 5];
    for f in &mut fields {
        let s = rest.iter().position(|b| *b != b' ')?;
        rest = &rest[s..];
        let e = rest.iter().position(|b| *b == b' ').unwrap_or(rest.len());
        *f = &rest[..e];
        rest = &rest[e..];
    }
    let path = rest.trim_ascii_start();
    if !path.starts_with(b"/") {
        return None; // anonymous, [heap], [stack], [vdso]
    }
    let range = std::str::from_utf8(fields[0]).ok()?;
    let (s, e) = range.split_once('-')?;
    u64::from_str_radix(s, 16).ok()?;
    u64::from_str_radix(e, 16).ok()?;
    let inode = std::str::from_utf8(fields[4]).ok()?.parse().ok()?;
    let (path, deleted) = strip_deleted(Path::new(OsStr::from_bytes(path)));
    Some(MapsLine {
        range: range.to_owned(),
        inode,
        path,
        deleted,
    })
}

/// The mapping of the module called `name` (file name). A module maps several segments of
/// one file; should two files of that name be mapped (an unload that did not unmap), the one
/// still on disk is the one loaded last.
pub fn find_module(maps: &[u8], name: &str) -> Option<MapsLine> {
    let mut found: Vec<MapsLine> = maps
        .split(|&b| b == b'\n')
        .filter_map(parse_maps_line)
        .filter(|m| m.path.file_name() == Some(OsStr::new(name)))
        .collect();
    found.sort_by_key(|m| m.deleted); // stable: first non-deleted, else first
    found.into_iter().next()
}

/// What an Asterisk binary was built to use when nothing overrides it: the strings of
/// `defaults.h` (DEFAULT_CONFIG_FILE, DEFAULT_MODULE_DIR, …) are in the binary verbatim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Builtins {
    pub config_file: PathBuf,
    pub dirs: Directories,
    pub socket: PathBuf,
}

/// Absolute NUL-terminated strings in `bytes` that end with `suffix`.
fn c_strings_ending<'a>(bytes: &'a [u8], suffix: &'a [u8]) -> impl Iterator<Item = &'a [u8]> {
    memchr::memmem::find_iter(bytes, suffix).filter_map(move |at| {
        let end = at + suffix.len();
        if bytes.get(end) != Some(&0) {
            return None;
        }
        let start = bytes[..at]
            .iter()
            .rposition(|&b| b == 0)
            .map_or(0, |p| p + 1);
        let s = &bytes[start..end];
        (s.starts_with(b"/") && s.iter().all(|b| b.is_ascii_graphic())).then_some(s)
    })
}

/// The compiled-in defaults, from the binary's strings; what is not found follows the
/// configure convention from the binary's location (`PREFIX/sbin/asterisk`: `/usr` means
/// /etc and /var, any other prefix `PREFIX/etc` and `PREFIX/var`).
pub fn builtins(exe_bytes: Option<&[u8]>, exe: &Path) -> Builtins {
    let prefix = exe
        .parent()
        .filter(|d| d.file_name() == Some(OsStr::new("sbin")))
        .and_then(Path::parent)
        .filter(|p| *p != Path::new("/usr") && *p != Path::new("/"));
    let mut dirs = match prefix {
        None => Directories::default(),
        Some(p) => Directories {
            astetcdir: p.join("etc/asterisk"),
            astmoddir: p.join("lib/asterisk/modules"),
            astlogdir: p.join("var/log/asterisk"),
            astrundir: p.join("var/run/asterisk"),
            moddir_from_file: false,
        },
    };
    let mut config_file = dirs.astetcdir.join("asterisk.conf");
    let mut socket = None;
    if let Some(b) = exe_bytes {
        let first = |suffix: &'static [u8]| {
            c_strings_ending(b, suffix)
                .next()
                .map(|s| PathBuf::from(OsStr::from_bytes(s)))
        };
        if let Some(f) = first(b"/asterisk.conf") {
            if let Some(d) = f.parent() {
                dirs.astetcdir = d.to_owned();
            }
            config_file = f;
        }
        if let Some(s) = first(b"/asterisk.ctl") {
            if let Some(d) = s.parent() {
                dirs.astrundir = d.to_owned();
            }
            socket = Some(s);
        }
        if let Some(m) = first(b"/asterisk/modules") {
            dirs.astmoddir = m;
        }
        if let Some(l) = first(b"/log/asterisk") {
            dirs.astlogdir = l;
        }
    }
    Builtins {
        socket: socket.unwrap_or_else(|| dirs.astrundir.join("asterisk.ctl")),
        config_file,
        dirs,
    }
}

// ---------------------------------------------------------------------------------------------
// Reading /proc.

/// True when an asterisk.conf sets every directory astpatch uses (no built-in default needed).
fn sets_every_directory(text: &str) -> bool {
    let a = conf::parse_over(text, Directories::default());
    let b = conf::parse_over(
        text,
        Directories {
            astetcdir: "/\0".into(),
            astmoddir: "/\0".into(),
            astlogdir: "/\0".into(),
            astrundir: "/\0".into(),
            moddir_from_file: false,
        },
    );
    a == b
}

fn is_asterisk(exe: &Path) -> bool {
    exe.file_name() == Some(OsStr::new("asterisk"))
}

/// Every running Asterisk server, by pid. Processes that vanish while being read, kernel
/// threads and other users' processes whose exe cannot be read are skipped.
pub fn discover(proc_root: &Path, root: &Path) -> io::Result<Vec<Instance>> {
    let mut pids: Vec<u32> = fs::read_dir(proc_root)?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    Ok(pids
        .into_iter()
        .filter_map(|pid| inspect(proc_root, root, pid))
        .collect())
}

/// One pid, when it is a running Asterisk server.
pub fn inspect(proc_root: &Path, root: &Path, pid: u32) -> Option<Instance> {
    let dir = proc_root.join(pid.to_string());
    let argv = parse_cmdline(&fs::read(dir.join("cmdline")).ok()?);
    let (exe, exe_deleted) = match fs::read_link(dir.join("exe")) {
        Ok(p) => strip_deleted(&p),
        // Another user's process seen by a non-root user: its exe link is closed, but comm and
        // cmdline are not. It is still an Asterisk that runs, never "not running".
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            let comm = fs::read_to_string(dir.join("comm")).ok()?;
            if comm.trim_end() != "asterisk" {
                return None;
            }
            (PathBuf::from(argv.first()?), false)
        }
        Err(_) => return None,
    };
    if !is_asterisk(&exe) {
        return None;
    }
    let args = parse_args(&argv);
    if args.remote || argv.is_empty() {
        return None; // a remote console, or a zombie
    }
    let explicit_config = args.config.is_some();
    // A relative -C is relative to the directory Asterisk was started in.
    let explicit = args.config.map(|c| match fs::read_link(dir.join("cwd")) {
        Ok(cwd) if c.is_relative() => cwd.join(&c),
        _ => c,
    });
    let read_conf = |p: &Path| {
        fs::read(under(root, p))
            .ok()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    };
    let explicit_text = explicit.as_deref().and_then(read_conf);
    // The binary's compiled-in defaults (read through /proc, which works when it was replaced
    // on disk) are needed only for what the command line and the file leave out: reading a
    // large binary is the slow part of discovery.
    let complete = explicit_text.as_deref().is_some_and(sets_every_directory);
    let built = if complete {
        builtins(None, &exe)
    } else {
        let exe_bytes = fs::read(dir.join("exe"))
            .or_else(|_| fs::read(under(root, &exe)))
            .ok();
        builtins(exe_bytes.as_deref(), &exe)
    };
    let (config, text) = match explicit {
        Some(c) => (c, explicit_text),
        None => {
            let c = built.config_file.clone();
            let t = read_conf(&c);
            (c, t)
        }
    };
    let (dirs, ctl_socket) = match &text {
        // Asterisk itself falls back to all built-in defaults when its file is missing.
        None => (built.dirs.clone(), built.socket.clone()),
        Some(t) => {
            let d = conf::parse_over(t, built.dirs.clone());
            let name = conf::ctl_name(t).unwrap_or_else(|| "asterisk.ctl".into());
            let sock = d.astrundir.join(name);
            (d, sock)
        }
    };
    let (chan_sip, maps_error) = match fs::read(dir.join("maps")) {
        Ok(maps) => (
            find_module(&maps, CHAN_SIP).map(|m| mapped(&dir, root, m)),
            None,
        ),
        Err(e) => (
            None,
            Some(format!("cannot read {}: {e}", dir.join("maps").display())),
        ),
    };
    Some(Instance {
        pid,
        exe,
        exe_deleted,
        config,
        explicit_config,
        dirs,
        ctl_socket,
        chan_sip,
        maps_error,
    })
}

/// What a mapped module is, read from the mapping itself when the kernel lets us (the only
/// way to see a module whose file was replaced), else from its path when that is still the
/// same file.
fn mapped(pid_dir: &Path, root: &Path, m: MapsLine) -> MappedModule {
    let via_map = pid_dir.join("map_files").join(&m.range);
    let kind = match fs::read(&via_map) {
        Ok(bytes) => Ok(ModuleKind::of(&bytes)),
        Err(e) if m.deleted => Err(format!(
            "{} was replaced on disk, and the loaded copy cannot be read through {}: {e}",
            m.path.display(),
            via_map.display()
        )),
        Err(_) => {
            let on_disk = under(root, &m.path);
            match fs::metadata(&on_disk).map(|md| md.ino()) {
                Ok(ino) if ino == m.inode => fs::read(&on_disk)
                    .map(|b| ModuleKind::of(&b))
                    .map_err(|e| format!("cannot read {}: {e}", on_disk.display())),
                Ok(_) => Err(format!(
                    "{} is no longer the file that was loaded (another inode)",
                    m.path.display()
                )),
                Err(e) => Err(format!("cannot read {}: {e}", on_disk.display())),
            }
        }
    };
    MappedModule {
        path: m.path,
        inode: m.inode,
        deleted: m.deleted,
        kind,
    }
}

fn same_file(root: &Path, a: &Path, b: &Path) -> bool {
    if a == b {
        return true;
    }
    match (
        fs::canonicalize(under(root, a)),
        fs::canonicalize(under(root, b)),
    ) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// The one instance to act on: `asterisk_conf` names it when several run; with several and
/// no name, the error lists them. `Ok(None)`: none runs, or none runs with `asterisk_conf`
/// (the caller may still act on that file's install, which is stopped).
pub fn select(
    found: Vec<Instance>,
    asterisk_conf: Option<&Path>,
) -> Result<Option<Instance>, Error> {
    select_in(found, asterisk_conf, Path::new("/"))
}

/// [`select`] with the config paths compared inside `root`.
pub fn select_in(
    found: Vec<Instance>,
    asterisk_conf: Option<&Path>,
    root: &Path,
) -> Result<Option<Instance>, Error> {
    if let Some(conf) = asterisk_conf {
        let mut matching: Vec<Instance> = found
            .into_iter()
            .filter(|i| same_file(root, &i.config, conf))
            .collect();
        return match matching.len() {
            0 => Ok(None),
            1 => Ok(matching.pop()),
            _ => Err(Error::input(
                format!(
                    "{} Asterisk processes run with {}:\n{}",
                    matching.len(),
                    conf.display(),
                    list(&matching)
                ),
                Some(
                    "stop the extra ones: two servers on one control socket cannot both be reloaded",
                ),
            )),
        };
    }
    match found.len() {
        0 | 1 => Ok(found.into_iter().next()),
        n => Err(Error::input(
            format!(
                "{n} Asterisk servers are running; which one do you mean?\n{}",
                list(&found)
            ),
            Some("name its asterisk.conf with --asterisk-conf FILE (the -C it runs with)"),
        )),
    }
}

/// [`select`], where a `--moddir` given without `--asterisk-conf` also names the instance:
/// the one that loads modules from there (none when no running one does).
pub fn select_by(
    found: Vec<Instance>,
    asterisk_conf: Option<&Path>,
    moddir: Option<&Path>,
) -> Result<Option<Instance>, Error> {
    match (asterisk_conf, moddir) {
        (None, Some(m)) => {
            let root = Path::new("/");
            let matching: Vec<Instance> = found
                .into_iter()
                .filter(|i| same_file(root, &i.dirs.astmoddir, m))
                .collect();
            select_in(matching, None, root)
        }
        _ => select(found, asterisk_conf),
    }
}

fn list(found: &[Instance]) -> String {
    found
        .iter()
        .map(|i| format!("  {}", i.describe()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The running instance as the commands see it: on the live system (`root` is `/`) the
/// processes are looked at; under another `--root` (a copy of a system, a test) there are
/// none of its own.
pub fn find(root: &Path, asterisk_conf: Option<&Path>) -> Result<Option<Instance>, Error> {
    if root != Path::new("/") {
        return Ok(None);
    }
    let found = discover(Path::new("/proc"), root).map_err(|e| Error::io("/proc", e))?;
    select(found, asterisk_conf)
}

/// What an instance maps compared with the module file at `installed` (inode `inode`) that
/// holds `expected`: `Ok` when it is exactly that file, else what it maps instead, in words.
pub fn confirm_loaded(
    now: Option<&Instance>,
    pid: u32,
    installed: &Path,
    inode: u64,
    expected: &ModuleKind,
) -> Result<(), String> {
    let Some(i) = now else {
        return Err(format!("the Asterisk with pid {pid} is no longer running"));
    };
    if let Some(e) = &i.maps_error {
        return Err(format!("what pid {pid} has loaded cannot be seen: {e}"));
    }
    let Some(m) = &i.chan_sip else {
        return Err(format!("pid {pid} has no {CHAN_SIP} loaded"));
    };
    if m.path != installed {
        return Err(format!(
            "pid {pid} maps {}, not the file installed at {}",
            m.path.display(),
            installed.display()
        ));
    }
    if m.deleted || m.inode != inode {
        return Err(format!(
            "pid {pid} still maps {} {}, not the file installed at {}",
            m.path.display(),
            if m.deleted {
                "(deleted: the module it replaced)".to_owned()
            } else {
                format!("(inode {})", m.inode)
            },
            installed.display()
        ));
    }
    match &m.kind {
        Ok(k) if k == expected => Ok(()),
        Ok(k) => Err(format!(
            "pid {pid} maps {} but it reads as {} where {} was expected",
            m.path.display(),
            kind_word(k),
            kind_word(expected)
        )),
        Err(e) => Err(e.clone()),
    }
}

/// `stock`, `patched without a tag`, `patched (tag …)`.
pub fn kind_word(k: &ModuleKind) -> String {
    match k {
        ModuleKind::Stock => "stock".into(),
        ModuleKind::Untagged => "patched without a tag".into(),
        ModuleKind::Tagged(t) => format!(
            "patched (tag {})",
            t.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn argv(s: &[&str]) -> Vec<OsString> {
        s.iter().map(OsString::from).collect()
    }

    #[test]
    fn cmdline_splits_on_nul_and_keeps_empty_and_spaced_arguments() {
        assert_eq!(
            parse_cmdline(b"/usr/sbin/asterisk\0-C\0/etc/a b/asterisk.conf\0\0-f\0"),
            argv(&[
                "/usr/sbin/asterisk",
                "-C",
                "/etc/a b/asterisk.conf",
                "",
                "-f"
            ])
        );
        assert_eq!(parse_cmdline(b""), Vec::<OsString>::new());
        assert_eq!(parse_cmdline(b"asterisk"), argv(&["asterisk"]));
    }

    #[test]
    fn the_config_and_remote_flags_are_read_like_getopt() {
        let p = |s: &[&str]| parse_args(&argv(s));
        assert_eq!(p(&["asterisk"]), Args::default());
        assert_eq!(
            p(&["asterisk", "-C", "/opt/a.conf", "-f"]).config,
            Some(PathBuf::from("/opt/a.conf"))
        );
        assert_eq!(
            p(&["asterisk", "-C/opt/b.conf"]).config,
            Some("/opt/b.conf".into())
        );
        // Grouped flags, the value in the next argument.
        let a = p(&["asterisk", "-fvvvC", "/opt/c.conf", "-g"]);
        assert_eq!((a.config, a.remote), (Some("/opt/c.conf".into()), false));
        // A value is not read as options: `-U r` is a user named r, not -r.
        assert!(!p(&["asterisk", "-U", "r", "-G", "-x"]).remote);
        assert!(p(&["asterisk", "-r"]).remote);
        assert!(p(&["asterisk", "-vvvR"]).remote);
        let a = p(&["asterisk", "-C", "/x.conf", "-rx", "module show like -C"]);
        assert!(a.remote);
        assert_eq!(a.config, Some("/x.conf".into()));
        assert!(p(&["asterisk", "-x", "core show version"]).remote);
        assert!(p(&["/usr/sbin/rasterisk"]).remote);
        // After `--` nothing is an option.
        assert!(!p(&["asterisk", "-f", "--", "-r"]).remote);
    }

    #[test]
    fn maps_lines_with_and_without_deleted() {
        let l = parse_maps_line(b"7f0a1c000000-7f0a1c020000 r-xp 00004000 fd:01 1048602                    /usr/lib/asterisk/modules/chan_sip.so (deleted)").unwrap();
        assert_eq!(l.range, "7f0a1c000000-7f0a1c020000");
        assert_eq!(l.inode, 1048602);
        assert_eq!(l.path, Path::new("/usr/lib/asterisk/modules/chan_sip.so"));
        assert!(l.deleted);
        let l =
            parse_maps_line(b"55d0-55e0 r--p 00000000 08:02 77 /opt/my mods/chan_sip.so").unwrap();
        assert_eq!(l.path, Path::new("/opt/my mods/chan_sip.so"));
        assert!(!l.deleted);
        for not_a_file in [
            &b"7ffc-7ffd rw-p 00000000 00:00 0                          [stack]"[..],
            b"7ffc-7ffd rw-p 00000000 00:00 0",
            b"",
            b"garbage",
            b"zz-7ffd r--p 00000000 08:02 77 /x",
        ] {
            assert_eq!(parse_maps_line(not_a_file), None);
        }
    }

    #[test]
    fn the_module_still_on_disk_wins_over_a_deleted_one() {
        let maps = b"1000-2000 r--p 00000000 08:02 5 /m/chan_sip.so (deleted)\n\
            3000-4000 r--p 00000000 08:02 9 /m/chan_sip.so\n\
            5000-6000 r--p 00000000 08:02 7 /m/chan_sip.so.astpatch-bak\n\
            7000-8000 r--p 00000000 08:02 8 /m/res_chan_sip.so.x\n";
        let m = find_module(maps, CHAN_SIP).unwrap();
        assert_eq!((m.inode, m.deleted), (9, false));
        assert_eq!(
            find_module(b"1000-2000 r--p 0 08:02 5 /m/chan_iax2.so\n", CHAN_SIP),
            None
        );
    }

    #[test]
    fn compiled_in_defaults_come_from_the_binary_else_from_its_prefix() {
        let bin = b"\x7fELF\0-C\0usage: asterisk.conf\0/opt/ast20/etc/asterisk/asterisk.conf\0\
            /opt/ast20/lib64/asterisk/modules\0/opt/ast20/var/log/asterisk\0\
            /opt/ast20/var/run/asterisk/asterisk.ctl\0";
        let b = builtins(Some(bin), Path::new("/somewhere/else/asterisk"));
        assert_eq!(
            b.config_file,
            Path::new("/opt/ast20/etc/asterisk/asterisk.conf")
        );
        assert_eq!(
            b.dirs.astmoddir,
            Path::new("/opt/ast20/lib64/asterisk/modules")
        );
        assert_eq!(b.dirs.astlogdir, Path::new("/opt/ast20/var/log/asterisk"));
        assert_eq!(b.dirs.astrundir, Path::new("/opt/ast20/var/run/asterisk"));
        assert_eq!(
            b.socket,
            Path::new("/opt/ast20/var/run/asterisk/asterisk.ctl")
        );
        let b = builtins(None, Path::new("/opt/ast13/sbin/asterisk"));
        assert_eq!(
            b.config_file,
            Path::new("/opt/ast13/etc/asterisk/asterisk.conf")
        );
        assert_eq!(
            b.dirs.astmoddir,
            Path::new("/opt/ast13/lib/asterisk/modules")
        );
        let b = builtins(Some(b"nothing useful"), Path::new("/usr/sbin/asterisk"));
        assert_eq!(b.config_file, Path::new("/etc/asterisk/asterisk.conf"));
        assert_eq!(b.dirs, Directories::default());
        assert_eq!(b.socket, Path::new("/var/run/asterisk/asterisk.ctl"));
    }

    /// A fake /proc and filesystem root.
    struct Fake {
        _d: tempfile::TempDir,
        proc_: PathBuf,
        root: PathBuf,
    }

    impl Fake {
        fn new() -> Fake {
            let d = tempfile::tempdir().unwrap();
            let proc_ = d.path().join("proc");
            let root = d.path().join("root");
            fs::create_dir_all(&proc_).unwrap();
            fs::create_dir_all(&root).unwrap();
            Fake { proc_, root, _d: d }
        }
        fn file(&self, path: &str, bytes: &[u8]) -> u64 {
            let p = under(&self.root, Path::new(path));
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(&p, bytes).unwrap();
            fs::metadata(&p).unwrap().ino()
        }
        fn process(&self, pid: u32, exe: &str, cmdline: &[u8], maps: Option<&str>) -> PathBuf {
            let d = self.proc_.join(pid.to_string());
            fs::create_dir_all(d.join("map_files")).unwrap();
            symlink(exe, d.join("exe")).unwrap();
            fs::write(d.join("cmdline"), cmdline).unwrap();
            if let Some(m) = maps {
                fs::write(d.join("maps"), m).unwrap();
            }
            d
        }
    }

    const TAGGED: &[u8] =
        b"\x7fELF\0Failed to authenticate device %s (%s) [astpatch:00112233445566ff]\n\0";
    const STOCK: &[u8] = b"\x7fELF\0Failed to authenticate device %s\n\0";

    #[test]
    fn discovery_on_a_fake_proc_two_installs_a_console_and_a_stranger() {
        let f = Fake::new();
        // The stopped install in the default paths.
        f.file("/usr/sbin/asterisk", b"\0/etc/asterisk/asterisk.conf\0");
        f.file(
            "/etc/asterisk/asterisk.conf",
            b"[directories]\nastmoddir => /usr/lib/asterisk/modules\n",
        );
        // The running one under /opt/ast20, started with -C; its conf leaves astrundir out and
        // renames the socket.
        f.file(
            "/opt/ast20/sbin/asterisk",
            b"\0/opt/ast20/etc/asterisk/asterisk.conf\0/opt/ast20/var/run/asterisk/asterisk.ctl\0",
        );
        f.file(
            "/srv/pbx/asterisk.conf",
            b"[directories]\nastmoddir => /opt/ast20/lib/asterisk/modules\nastlogdir => /srv/pbx/log\n[files]\nastctl => pbx.ctl\n",
        );
        let ino = f.file("/opt/ast20/lib/asterisk/modules/chan_sip.so", TAGGED);
        let maps = format!(
            "55d0-55e0 r-xp 00000000 08:02 4242 /opt/ast20/sbin/asterisk\n\
             7f00-7f10 r--p 00000000 08:02 {ino} /opt/ast20/lib/asterisk/modules/chan_sip.so\n\
             7f10-7f20 r-xp 00001000 08:02 {ino} /opt/ast20/lib/asterisk/modules/chan_sip.so\n"
        );
        f.process(
            300,
            "/opt/ast20/sbin/asterisk",
            b"/opt/ast20/sbin/asterisk\0-f\0-C\0/srv/pbx/asterisk.conf\0",
            Some(&maps),
        );
        // Its remote console, and a process that merely mentions asterisk.
        f.process(
            301,
            "/opt/ast20/sbin/asterisk",
            b"/opt/ast20/sbin/asterisk\0-C\0/srv/pbx/asterisk.conf\0-rx\0core show version\0",
            Some(""),
        );
        f.process(
            302,
            "/usr/bin/vim",
            b"vim\0/etc/asterisk/asterisk.conf\0",
            Some(""),
        );
        fs::create_dir_all(f.proc_.join("self")).unwrap();
        fs::create_dir_all(f.proc_.join("303")).unwrap(); // a kernel thread: no exe

        let found = discover(&f.proc_, &f.root).unwrap();
        assert_eq!(found.len(), 1, "{found:#?}");
        let i = &found[0];
        assert_eq!(i.pid, 300);
        assert_eq!(i.exe, Path::new("/opt/ast20/sbin/asterisk"));
        assert!(i.explicit_config && !i.exe_deleted);
        assert_eq!(i.config, Path::new("/srv/pbx/asterisk.conf"));
        assert_eq!(
            i.dirs.astmoddir,
            Path::new("/opt/ast20/lib/asterisk/modules")
        );
        assert_eq!(i.dirs.astlogdir, Path::new("/srv/pbx/log"));
        assert_eq!(
            i.ctl_socket,
            Path::new("/opt/ast20/var/run/asterisk/pbx.ctl")
        );
        let m = i.chan_sip.as_ref().unwrap();
        assert_eq!((m.inode, m.deleted), (ino, false));
        // map_files is empty in the fake: read through the path, whose inode matches.
        assert!(matches!(m.kind, Ok(ModuleKind::Tagged(_))), "{:?}", m.kind);
        assert_eq!(
            i.rx("module load chan_sip.so"),
            "/opt/ast20/sbin/asterisk -C /srv/pbx/asterisk.conf -rx 'module load chan_sip.so'"
        );
        assert_eq!(select(found.clone(), None).unwrap().unwrap().pid, 300);
    }

    #[test]
    fn a_replaced_module_is_read_through_map_files_or_said_unreadable() {
        let f = Fake::new();
        f.file("/usr/sbin/asterisk", b"");
        // The file on disk now is the patched one; the process maps the stock one, deleted.
        let new_ino = f.file("/usr/lib/asterisk/modules/chan_sip.so", TAGGED);
        let maps = format!(
            "7f00-7f10 r--p 00000000 08:02 {} /usr/lib/asterisk/modules/chan_sip.so (deleted)\n",
            new_ino + 1000
        );
        let d = f.process(
            400,
            "/usr/sbin/asterisk (deleted)",
            b"/usr/sbin/asterisk\0",
            Some(&maps),
        );
        let i = inspect(&f.proc_, &f.root, 400).unwrap();
        assert!(i.exe_deleted);
        assert_eq!(i.exe, Path::new("/usr/sbin/asterisk"));
        assert!(!i.explicit_config);
        assert_eq!(i.config, Path::new("/etc/asterisk/asterisk.conf"));
        assert_eq!(i.ctl_socket, Path::new("/var/run/asterisk/asterisk.ctl"));
        let m = i.chan_sip.unwrap();
        assert!(m.deleted);
        // Not the path's bytes (those are the patched file): unreadable, and said so.
        let why = m.kind.unwrap_err();
        assert!(why.contains("was replaced on disk"), "{why}");
        // The kernel's map_files entry holds the loaded bytes.
        fs::write(d.join("map_files/7f00-7f10"), STOCK).unwrap();
        let m = inspect(&f.proc_, &f.root, 400).unwrap().chan_sip.unwrap();
        assert_eq!(m.kind, Ok(ModuleKind::Stock));
        // No chan_sip mapped at all, and maps unreadable, are told apart.
        fs::write(d.join("maps"), "").unwrap();
        let i = inspect(&f.proc_, &f.root, 400).unwrap();
        assert_eq!((i.chan_sip, i.maps_error), (None, None));
        fs::remove_file(d.join("maps")).unwrap();
        let i = inspect(&f.proc_, &f.root, 400).unwrap();
        assert!(i.maps_error.unwrap().contains("maps"));
    }

    #[test]
    fn several_instances_need_a_name_and_the_name_picks_one() {
        let f = Fake::new();
        f.file("/a/asterisk.conf", b"");
        f.file("/b/asterisk.conf", b"");
        f.process(
            10,
            "/usr/sbin/asterisk",
            b"asterisk\0-C\0/a/asterisk.conf\0",
            Some(""),
        );
        f.process(
            11,
            "/opt/x/sbin/asterisk",
            b"asterisk\0-C\0/b/asterisk.conf\0",
            Some(""),
        );
        let found = discover(&f.proc_, &f.root).unwrap();
        assert_eq!(found.len(), 2);
        let e = select_in(found.clone(), None, &f.root).unwrap_err();
        let text = e.to_string();
        assert!(text.starts_with("2 Asterisk servers are running"), "{text}");
        assert!(
            text.contains("pid 10: /usr/sbin/asterisk -C /a/asterisk.conf")
                && text.contains("pid 11: /opt/x/sbin/asterisk -C /b/asterisk.conf"),
            "{text}"
        );
        assert!(e.hint().unwrap().contains("--asterisk-conf"));
        assert_eq!(e.exit_code(), crate::exit_codes::INPUT_ERROR);
        let pick = |c: &str| {
            select_in(found.clone(), Some(Path::new(c)), &f.root)
                .unwrap()
                .map(|i| i.pid)
        };
        assert_eq!(pick("/b/asterisk.conf"), Some(11));
        // The same file by another spelling.
        assert_eq!(pick("/b/../a/asterisk.conf"), Some(10));
        // A stopped install: nothing runs with it.
        assert_eq!(pick("/etc/asterisk/asterisk.conf"), None);
        assert_eq!(select(vec![], None).unwrap(), None);
        // A module dir names the instance that loads from it.
        let mut by_dir = found.clone();
        by_dir[1].dirs.astmoddir = "/opt/x/lib/asterisk/modules".into();
        let pick = |m: &str| {
            select_by(by_dir.clone(), None, Some(Path::new(m)))
                .unwrap()
                .map(|i| i.pid)
        };
        assert_eq!(pick("/opt/x/lib/asterisk/modules"), Some(11));
        assert_eq!(pick("/somewhere/else"), None);
        // Two loading from the same directory: still asked.
        let mut same = by_dir.clone();
        same[1].dirs.astmoddir = same[0].dirs.astmoddir.clone();
        assert!(select_by(same, None, Some(Path::new("/usr/lib/asterisk/modules"))).is_err());
    }

    #[test]
    fn a_reload_is_confirmed_only_by_the_installed_inode_and_kind() {
        let inst = |m: Option<MappedModule>| Instance {
            pid: 7,
            exe: "/usr/sbin/asterisk".into(),
            exe_deleted: false,
            config: "/etc/asterisk/asterisk.conf".into(),
            explicit_config: false,
            dirs: Directories::default(),
            ctl_socket: "/var/run/asterisk/asterisk.ctl".into(),
            chan_sip: m,
            maps_error: None,
        };
        let module = |inode, deleted, kind| {
            Some(MappedModule {
                path: "/m/chan_sip.so".into(),
                inode,
                deleted,
                kind,
            })
        };
        let want = ModuleKind::Untagged;
        let p = Path::new("/m/chan_sip.so");
        let ok = inst(module(5, false, Ok(ModuleKind::Untagged)));
        assert_eq!(confirm_loaded(Some(&ok), 7, p, 5, &want), Ok(()));
        let e = confirm_loaded(
            Some(&inst(module(4, true, Ok(ModuleKind::Stock)))),
            7,
            p,
            5,
            &want,
        )
        .unwrap_err();
        assert!(e.contains("still maps") && e.contains("deleted"), "{e}");
        let e = confirm_loaded(
            Some(&inst(module(5, false, Ok(ModuleKind::Stock)))),
            7,
            p,
            5,
            &want,
        )
        .unwrap_err();
        assert!(e.contains("reads as stock"), "{e}");
        // The same inode number on another path (another filesystem) is another file.
        let e =
            confirm_loaded(Some(&ok), 7, Path::new("/other/chan_sip.so"), 5, &want).unwrap_err();
        assert!(
            e.contains("not the file installed at /other/chan_sip.so"),
            "{e}"
        );
        assert!(
            confirm_loaded(Some(&inst(None)), 7, p, 5, &want)
                .unwrap_err()
                .contains("no chan_sip.so loaded")
        );
        assert!(
            confirm_loaded(None, 7, p, 5, &want)
                .unwrap_err()
                .contains("no longer running")
        );
    }

    #[test]
    fn the_binary_is_read_only_when_the_file_leaves_a_directory_out() {
        assert!(sets_every_directory(
            "[directories]\nastetcdir => /a\nastmoddir => /b\nastlogdir => /c\nastrundir => /d\n"
        ));
        assert!(!sets_every_directory(
            "[directories]\nastetcdir => /a\nastmoddir => /b\nastlogdir => /c\n"
        ));
        // Complete file, unreadable binary: the file's directories, the binary not needed.
        let f = Fake::new();
        f.file(
            "/srv/a.conf",
            b"[directories]\nastetcdir => /a\nastmoddir => /b\nastlogdir => /c\nastrundir => /d\n",
        );
        f.process(
            13,
            "/nowhere/sbin/asterisk",
            b"asterisk\0-C\0/srv/a.conf\0",
            None,
        );
        let i = inspect(&f.proc_, &f.root, 13).unwrap();
        assert_eq!(i.dirs.astmoddir, Path::new("/b"));
        assert_eq!(i.ctl_socket, Path::new("/d/asterisk.ctl"));
    }

    #[test]
    fn a_relative_config_is_taken_from_the_working_directory() {
        let f = Fake::new();
        f.file(
            "/srv/pbx/asterisk.conf",
            b"[directories]\nastmoddir => /srv/mods\n",
        );
        let d = f.process(
            12,
            "/usr/sbin/asterisk",
            b"asterisk\0-C\0asterisk.conf\0",
            None,
        );
        symlink("/srv/pbx", d.join("cwd")).unwrap();
        let i = inspect(&f.proc_, &f.root, 12).unwrap();
        assert_eq!(i.config, Path::new("/srv/pbx/asterisk.conf"));
        assert_eq!(i.dirs.astmoddir, Path::new("/srv/mods"));
    }
}
