//! The firewall link: astpatch's objects exist, INPUT reaches them, and every ban in the
//! state is in the kernel.
use super::*;

pub(super) fn check_firewall(
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
        .active_bans(crate::clock::now_secs())
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
