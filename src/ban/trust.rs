//! Which chan_sip tails a reader believes. A stock chan_sip ends its failure lines with the
//! sender's From header, so a tail is believed only on a line that carries the tag of a patched
//! build ([`crate::patch::tag`]): the tags are learnt from the chan_sip.so Asterisk loads. Lines
//! patched without a tag are believed only when the operator says so with `patched = true`.
use std::io;
use std::path::{Path, PathBuf};

use crate::asterisk::conf::{self, Directories};
use crate::asterisk::running::Instance;
use crate::logs::recognise::RecogniseOptions;
use crate::module::install;
use crate::patch::tag::{ModuleKind, Tag};
use crate::settings::{Patched, Settings};

/// What a reader believes, and the reason in words for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TailTrust {
    pub options: RecogniseOptions,
    pub reason: String,
}

impl TailTrust {
    /// True when some chan_sip tail can be believed at all.
    pub fn trusted(&self) -> bool {
        !self.options.known_tags.is_empty() || self.options.trust_untagged
    }

    /// The one start-up line that says what was decided and why.
    pub fn line(&self) -> String {
        let verdict = if self.trusted() {
            "chan_sip tails trusted"
        } else {
            "chan_sip tails not trusted"
        };
        format!("{verdict}: {}", self.reason)
    }
}

const UNTRUSTED: &str = "stock chan_sip failures are counted without an address";

fn tag_list(tags: &[Tag]) -> String {
    tags.iter().map(Tag::as_str).collect::<Vec<_>>().join(", ")
}

/// What a reader found out about the modules, before the settings are applied.
#[derive(Debug, Clone)]
pub struct Evidence {
    pub known: KnownTags,
    /// The installed chan_sip.so and what reading it showed.
    pub installed: PathBuf,
    pub installed_kind: Result<ModuleKind, io::ErrorKind>,
}

/// The pure part: what the `patched` setting and the settings' tags make of the evidence.
pub fn judge(patched: Patched, extra: &[Tag], ev: &Evidence) -> TailTrust {
    if patched == Patched::False {
        return off();
    }
    let p = ev.installed.display();
    let mut known: Vec<Tag> = ev.known.tags.clone();
    let mut reason = if known.is_empty() {
        match &ev.installed_kind {
            Ok(ModuleKind::Untagged) => format!(
                "{p} is patched without astpatch's tag (by hand, or by an astpatch without \
                 tags): re-run astpatch apply --rebuild --install --reload to tag it"
            ),
            Ok(_) => format!("{p} has no astpatch format"),
            Err(io::ErrorKind::NotFound) => format!("{p} does not exist"),
            Err(e) => format!("cannot read {p} ({e})"),
        }
    } else {
        let mut places: Vec<&str> = vec![];
        for (_, place) in &ev.known.sources {
            if !places.contains(&place.as_str()) {
                places.push(place);
            }
        }
        format!(
            "lines tagged by build {} are believed ({})",
            tag_list(&known),
            places.join(", ")
        )
    };
    if !extra.is_empty() {
        for t in extra {
            if !known.contains(t) {
                known.push(*t);
            }
        }
        reason.push_str(&format!("; tags from the settings: {}", tag_list(extra)));
    }
    if ev.known.running != RunningModule::NoInstance {
        reason.push_str(&format!("; {}", ev.known.running.describe()));
    }
    // Evidence of a stock module wins over the setting: its lines end in the From header.
    let stock_running = matches!(ev.known.running, RunningModule::Stock { .. });
    let trust_untagged = patched == Patched::True && !stock_running;
    if trust_untagged {
        reason
            .push_str("; patched = true: lines without a tag are believed too (verify flags this)");
    } else if patched == Patched::True {
        reason.push_str("; patched = true is overruled: untagged lines are not believed");
    } else if known.is_empty() {
        reason.push_str(&format!("; {UNTRUSTED}"));
    }
    for n in &ev.known.notes {
        reason.push_str(&format!("; {n}"));
    }
    TailTrust {
        options: RecogniseOptions {
            known_tags: known,
            trust_untagged,
            tails_off: false,
        },
        reason,
    }
}

/// Where Asterisk loads chan_sip.so from on the system at `root`: asterisk.conf's `astmoddir`
/// (as verify and install find it), else the first usual module directory that holds one.
pub fn installed_module(root: &Path) -> PathBuf {
    if let Ok(m) = install::resolve_moddir(None, None, root) {
        return m.path.join(install::MODULE);
    }
    // Distribution packages for 64-bit Red Hat-likes use lib64; everyone else Asterisk's default.
    let candidates = [
        Directories::default().astmoddir,
        PathBuf::from("/usr/lib64/asterisk/modules"),
    ]
    .map(|d| conf::under(root, &d).join(install::MODULE));
    candidates
        .iter()
        .find(|p| p.exists())
        .unwrap_or(&candidates[0])
        .clone()
}

/// `patched = false`: no chan_sip tail is believed, none is judged forged.
fn off() -> TailTrust {
    TailTrust {
        options: RecogniseOptions {
            tails_off: true,
            ..RecogniseOptions::default()
        },
        reason: format!("patched = false in the settings; {UNTRUSTED}"),
    }
}

/// Decide for the `patched` setting and the settings' `tags` on the system at `root` from the
/// modules on disk alone (no running Asterisk is looked at: a system root, a test).
pub fn decide(patched: Patched, extra: &[Tag], root: &Path) -> TailTrust {
    if patched == Patched::False {
        return off();
    }
    judge(patched, extra, &evidence(root, None, None))
}

fn evidence(root: &Path, running: Option<&Instance>, state_dir: Option<&Path>) -> Evidence {
    let installed = match running {
        Some(i) => conf::under(root, &i.dirs.astmoddir).join(install::MODULE),
        None => installed_module(root),
    };
    let installed_kind = std::fs::read(&installed)
        .map(|b| ModuleKind::of(&b))
        .map_err(|e| e.kind());
    Evidence {
        known: known_tags(root, running, state_dir),
        installed,
        installed_kind,
    }
}

/// Decide on the live system, as the watcher and scan do: the running Asterisk (the one
/// `asterisk_conf` names when several run) and the module it has mapped, the installed module
/// and its backup, the state dir's record of tags, and the settings.
pub fn decide_live(settings: &Settings) -> TailTrust {
    if settings.patched == Patched::False {
        return off();
    }
    let root = Path::new("/");
    let (running, note) = match crate::asterisk::running::discover(Path::new("/proc"), root) {
        Ok(found) if found.len() > 1 && settings.asterisk_conf.is_none() => (
            None,
            Some(format!(
                "{} Asterisk servers run: set asterisk_conf in the settings to say which one's \
                 module counts",
                found.len()
            )),
        ),
        Ok(found) => {
            match crate::asterisk::running::select(found, settings.asterisk_conf.as_deref()) {
                Ok(r) => (r, None),
                Err(e) => (
                    None,
                    Some(format!("the running Asterisk is not looked at: {e}")),
                ),
            }
        }
        Err(e) => (None, Some(format!("cannot look at the processes ({e})"))),
    };
    let state = Some(settings.state_dir.as_path()).filter(|d| d.is_dir());
    let mut ev = evidence(root, running.as_ref(), state);
    ev.known.notes.extend(note);
    judge(settings.patched, &settings.tags, &ev)
}

/// The file in the state dir that keeps every tag astpatch has seen in a module, so lines a
/// module wrote stay believable after it is replaced (a replay, `scan` of old logs).
pub const TAGS_FILE: &str = "tags.json";

/// What the running Asterisk has loaded, as far as tags go (for the start-up line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunningModule {
    /// No running Asterisk was given (none runs, or processes were not looked at).
    NoInstance,
    /// It runs with no chan_sip.so mapped.
    NotLoaded {
        pid: u32,
    },
    /// Mapped, but its bytes could not be read (the reason).
    Unreadable {
        pid: u32,
        why: String,
    },
    Stock {
        pid: u32,
    },
    Untagged {
        pid: u32,
    },
    Tagged {
        pid: u32,
        tags: Vec<Tag>,
    },
}

impl RunningModule {
    pub fn of(i: &Instance) -> RunningModule {
        let pid = i.pid;
        if let Some(why) = &i.maps_error {
            return RunningModule::Unreadable {
                pid,
                why: why.clone(),
            };
        }
        match i.chan_sip.as_ref().map(|m| &m.kind) {
            None => RunningModule::NotLoaded { pid },
            Some(Err(why)) => RunningModule::Unreadable {
                pid,
                why: why.clone(),
            },
            Some(Ok(ModuleKind::Stock)) => RunningModule::Stock { pid },
            Some(Ok(ModuleKind::Untagged)) => RunningModule::Untagged { pid },
            Some(Ok(ModuleKind::Tagged(tags))) => RunningModule::Tagged {
                pid,
                tags: tags.clone(),
            },
        }
    }

    /// In words: `the running Asterisk (pid 7) has the stock chan_sip.so loaded`.
    pub fn describe(&self) -> String {
        let who = |pid: &u32| format!("the running Asterisk (pid {pid})");
        match self {
            RunningModule::NoInstance => "no running Asterisk found".into(),
            RunningModule::NotLoaded { pid } => format!("{} has no chan_sip.so loaded", who(pid)),
            RunningModule::Unreadable { pid, why } => {
                format!("{}: its chan_sip.so cannot be read ({why})", who(pid))
            }
            RunningModule::Stock { pid } => {
                format!("{} has the stock chan_sip.so loaded", who(pid))
            }
            RunningModule::Untagged { pid } => format!(
                "{} has a chan_sip.so loaded that is patched without a tag",
                who(pid)
            ),
            RunningModule::Tagged { pid, tags } => format!(
                "{} has the patched chan_sip.so loaded (tag {})",
                who(pid),
                tags.iter().map(Tag::as_str).collect::<Vec<_>>().join(", ")
            ),
        }
    }
}

/// Every tag a chan_sip line may end with to be believed, and where each was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownTags {
    /// Deduplicated, in the order found: running module, installed, backup, recorded.
    pub tags: Vec<Tag>,
    /// Where each tag was seen, one entry per (tag, place).
    pub sources: Vec<(Tag, String)>,
    pub running: RunningModule,
    /// What could not be read (a corrupt tags.json), for the operator.
    pub notes: Vec<String>,
}

impl KnownTags {
    pub fn knows(&self, t: &Tag) -> bool {
        self.tags.contains(t)
    }

    fn add(&mut self, tags: &[Tag], from: &str) {
        for t in tags {
            if !self.tags.contains(t) {
                self.tags.push(*t);
            }
            self.sources.push((*t, from.to_owned()));
        }
    }
}

/// Gather the tags a reader may believe: from the module `running` maps, the installed
/// chan_sip.so and its `.astpatch-bak` (in `running`'s module dir, else the one found under
/// `root`), and the state dir's record. `state_dir` is a path on this system (not under
/// `root`). Reads only; [`record`] keeps what was learnt.
pub fn known_tags(root: &Path, running: Option<&Instance>, state_dir: Option<&Path>) -> KnownTags {
    let mut k = KnownTags {
        tags: vec![],
        sources: vec![],
        running: running.map_or(RunningModule::NoInstance, RunningModule::of),
        notes: vec![],
    };
    if let RunningModule::Tagged { pid, tags } = &k.running {
        let from = format!("the module pid {pid} has loaded");
        k.add(&tags.clone(), &from);
    }
    let installed = match running {
        Some(i) => conf::under(root, &i.dirs.astmoddir).join(install::MODULE),
        None => installed_module(root),
    };
    let backup = installed.with_file_name(format!("{}{}", install::MODULE, install::BACKUP_SUFFIX));
    for p in [installed, backup] {
        if let Ok(bytes) = std::fs::read(&p) {
            k.add(
                &crate::patch::tag::in_module(&bytes),
                &p.display().to_string(),
            );
        }
    }
    if let Some(dir) = state_dir {
        match recorded(dir) {
            Ok(tags) => k.add(&tags, &dir.join(TAGS_FILE).display().to_string()),
            Err(e) => k.notes.push(e),
        }
    }
    k
}

/// The tags recorded in `state_dir` (none when the file does not exist).
pub fn recorded(state_dir: &Path) -> Result<Vec<Tag>, String> {
    let path = state_dir.join(TAGS_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| format!("{} is not a list of tags ({e}); ignored", path.display())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(vec![]),
        Err(e) => Err(format!("cannot read {} ({e}); ignored", path.display())),
    }
}

/// Add `tags` to the state dir's record (atomically; a corrupt record is replaced).
pub fn record(state_dir: &Path, tags: &[Tag]) -> io::Result<()> {
    let mut all = recorded(state_dir).unwrap_or_default();
    let before = all.len();
    for t in tags {
        if !all.contains(t) {
            all.push(*t);
        }
    }
    let path = state_dir.join(TAGS_FILE);
    if all.len() == before && path.exists() {
        return Ok(());
    }
    let mut text = serde_json::to_vec_pretty(&all).map_err(io::Error::other)?;
    text.push(b'\n');
    crate::atomic::write(&path, &text, Some(0o644))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TAGGED: &[u8] =
        b"\x7fELF..NOTICE Failed to authenticate device %s (%s) [astpatch:00112233445566ff]\0..";
    const UNTAGGED: &[u8] = b"\x7fELF..NOTICE Failed to authenticate device %s (%s)\0..";
    const STOCK: &[u8] = b"\x7fELF..NOTICE Failed to authenticate device %s\0..";

    fn tag(s: &str) -> Tag {
        s.parse().unwrap()
    }

    /// Evidence as a reader with only the installed module at /m/chan_sip.so would find it.
    fn ev(read: Result<&[u8], io::ErrorKind>, running: RunningModule) -> Evidence {
        let kind = read.map(ModuleKind::of);
        let tags = match &kind {
            Ok(ModuleKind::Tagged(t)) => t.clone(),
            _ => vec![],
        };
        Evidence {
            known: KnownTags {
                sources: tags.iter().map(|t| (*t, "/m/chan_sip.so".into())).collect(),
                tags,
                running,
                notes: vec![],
            },
            installed: "/m/chan_sip.so".into(),
            installed_kind: kind,
        }
    }

    #[test]
    fn only_a_tagged_module_makes_lines_believed_by_default() {
        let none = RunningModule::NoInstance;
        let t = judge(Patched::Auto, &[], &ev(Ok(TAGGED), none.clone()));
        assert_eq!(t.options.known_tags, vec![tag("00112233445566ff")]);
        assert!(!t.options.trust_untagged);
        assert_eq!(
            t.line(),
            "chan_sip tails trusted: lines tagged by build 00112233445566ff are believed (/m/chan_sip.so)"
        );
        let t = judge(Patched::Auto, &[], &ev(Ok(UNTAGGED), none.clone()));
        assert!(!t.trusted(), "{t:?}");
        assert!(t.reason.contains("re-run astpatch apply"), "{}", t.reason);
        let t = judge(Patched::Auto, &[], &ev(Ok(STOCK), none.clone()));
        assert!(!t.trusted());
        assert!(
            t.line()
                .starts_with("chan_sip tails not trusted: /m/chan_sip.so has no astpatch format;"),
            "{}",
            t.line()
        );
        let t = judge(
            Patched::Auto,
            &[],
            &ev(Err(io::ErrorKind::NotFound), none.clone()),
        );
        assert!(!t.trusted() && t.reason.contains("does not exist"), "{t:?}");
        let t = judge(
            Patched::Auto,
            &[],
            &ev(Err(io::ErrorKind::PermissionDenied), none.clone()),
        );
        assert!(!t.trusted() && t.reason.starts_with("cannot read"), "{t:?}");
        assert!(!judge(Patched::Auto, &[], &ev(Ok(b""), none)).trusted());
    }

    /// The issue-10 story: the patched module installed but the stock one still loaded. Its
    /// tag is known (so lines the patched module will write are believed), and the running
    /// module is named; a stock module loaded overrules `patched = true` for untagged lines.
    #[test]
    fn a_stock_module_loaded_wins_over_patched_true() {
        let stock = RunningModule::Stock { pid: 7 };
        let t = judge(Patched::Auto, &[], &ev(Ok(TAGGED), stock.clone()));
        assert!(
            t.reason
                .contains("the running Asterisk (pid 7) has the stock chan_sip.so loaded"),
            "{}",
            t.reason
        );
        assert!(!t.options.trust_untagged);
        let t = judge(Patched::True, &[], &ev(Ok(UNTAGGED), stock));
        assert!(!t.options.trust_untagged, "{t:?}");
        assert!(
            t.reason.contains("patched = true is overruled"),
            "{}",
            t.reason
        );
        let t = judge(
            Patched::True,
            &[],
            &ev(Ok(UNTAGGED), RunningModule::Untagged { pid: 7 }),
        );
        assert!(t.options.trust_untagged, "{t:?}");
    }

    #[test]
    fn settings_tags_add_and_patched_true_believes_untagged_lines_loudly() {
        let none = RunningModule::NoInstance;
        let t = judge(
            Patched::Auto,
            &[tag("aaaaaaaaaaaaaaaa")],
            &ev(Ok(TAGGED), none.clone()),
        );
        assert_eq!(
            t.options.known_tags,
            vec![tag("00112233445566ff"), tag("aaaaaaaaaaaaaaaa")]
        );
        let t = judge(Patched::True, &[], &ev(Ok(UNTAGGED), none.clone()));
        assert!(t.options.trust_untagged && t.trusted());
        assert!(t.reason.contains("patched = true"), "{}", t.reason);
        // false wins over everything, tags included.
        let t = judge(
            Patched::False,
            &[tag("aaaaaaaaaaaaaaaa")],
            &ev(Ok(TAGGED), none),
        );
        assert!(!t.trusted(), "{t:?}");
        assert!(t.options.tails_off);
    }

    #[test]
    fn decide_reads_nothing_for_false_and_finds_no_module_nowhere() {
        let nowhere = Path::new("/nonexistent-astpatch-root");
        assert!(decide(Patched::True, &[], nowhere).trusted());
        assert!(!decide(Patched::False, &[], nowhere).trusted());
        assert!(!decide(Patched::Auto, &[], nowhere).trusted());
    }

    fn module_with(t: &str) -> Vec<u8> {
        format!("\x7fELF\0Failed to authenticate device %s (%s) [astpatch:{t}]\n\0").into_bytes()
    }

    fn instance(moddir: &Path, kind: Option<Result<ModuleKind, String>>) -> Instance {
        Instance {
            pid: 42,
            exe: "/opt/ast20/sbin/asterisk".into(),
            exe_deleted: false,
            config: "/opt/ast20/etc/asterisk/asterisk.conf".into(),
            explicit_config: true,
            dirs: Directories {
                astmoddir: moddir.to_owned(),
                ..Directories::default()
            },
            ctl_socket: "/opt/ast20/var/run/asterisk/asterisk.ctl".into(),
            chan_sip: kind.map(|kind| crate::asterisk::running::MappedModule {
                path: moddir.join("chan_sip.so"),
                inode: 1,
                deleted: true,
                kind,
            }),
            maps_error: None,
        }
    }

    #[test]
    fn tags_come_from_the_running_module_the_installed_one_its_backup_and_the_record() {
        let d = tempfile::tempdir().unwrap();
        let moddir = d.path().join("mods");
        let state = d.path().join("state");
        std::fs::create_dir_all(&moddir).unwrap();
        std::fs::create_dir_all(&state).unwrap();
        let (run, inst, bak, old) = (
            "1111111111111111",
            "2222222222222222",
            "3333333333333333",
            "4444444444444444",
        );
        std::fs::write(moddir.join("chan_sip.so"), module_with(inst)).unwrap();
        std::fs::write(moddir.join("chan_sip.so.astpatch-bak"), module_with(bak)).unwrap();
        record(&state, &[tag(old), tag(inst)]).unwrap();
        let i = instance(&moddir, Some(Ok(ModuleKind::Tagged(vec![tag(run)]))));
        let k = known_tags(Path::new("/"), Some(&i), Some(&state));
        assert_eq!(k.tags, [tag(run), tag(inst), tag(bak), tag(old)]);
        assert!(k.knows(&tag(old)) && !k.knows(&tag("5555555555555555")));
        assert_eq!(k.sources.len(), 5, "inst is seen twice: {:?}", k.sources);
        assert_eq!(
            k.running.describe(),
            format!("the running Asterisk (pid 42) has the patched chan_sip.so loaded (tag {run})")
        );
        assert!(k.notes.is_empty());
        // The stock module loaded: its lines prove nothing, but the files still name tags.
        let i = instance(&moddir, Some(Ok(ModuleKind::Stock)));
        let k = known_tags(Path::new("/"), Some(&i), None);
        assert_eq!(k.running, RunningModule::Stock { pid: 42 });
        assert_eq!(k.tags, [tag(inst), tag(bak)]);
        let i = instance(&moddir, None);
        assert_eq!(
            known_tags(Path::new("/"), Some(&i), None).running,
            RunningModule::NotLoaded { pid: 42 }
        );
        let i = instance(&moddir, Some(Err("gone".into())));
        assert!(matches!(
            known_tags(Path::new("/"), Some(&i), None).running,
            RunningModule::Unreadable { .. }
        ));
        // No instance: the installed module is found under the root, as before.
        let root = d.path().join("root");
        let m = root.join("usr/lib/asterisk/modules");
        std::fs::create_dir_all(&m).unwrap();
        std::fs::write(m.join("chan_sip.so"), module_with(inst)).unwrap();
        let k = known_tags(&root, None, None);
        assert_eq!(
            (k.tags, k.running),
            (vec![tag(inst)], RunningModule::NoInstance)
        );
    }

    #[test]
    fn the_record_grows_atomically_and_a_corrupt_one_is_said_and_replaced() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(recorded(d.path()), Ok(vec![]));
        record(d.path(), &[tag("aaaaaaaaaaaaaaaa")]).unwrap();
        record(
            d.path(),
            &[tag("bbbbbbbbbbbbbbbb"), tag("aaaaaaaaaaaaaaaa")],
        )
        .unwrap();
        assert_eq!(
            recorded(d.path()).unwrap(),
            [tag("aaaaaaaaaaaaaaaa"), tag("bbbbbbbbbbbbbbbb")]
        );
        std::fs::write(d.path().join(TAGS_FILE), "[\"not-a-tag\"]").unwrap();
        let k = known_tags(
            Path::new("/nonexistent-astpatch-root"),
            None,
            Some(d.path()),
        );
        assert!(k.tags.is_empty());
        assert!(
            k.notes[0].contains("is not a list of tags"),
            "{:?}",
            k.notes
        );
        record(d.path(), &[tag("cccccccccccccccc")]).unwrap();
        assert_eq!(recorded(d.path()).unwrap(), [tag("cccccccccccccccc")]);
        let names: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [TAGS_FILE], "no temp files left");
    }
}
