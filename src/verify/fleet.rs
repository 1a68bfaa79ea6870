//! The fleet link, shown only with `[crowdsec]`: the machine login and the bouncer key answer,
//! and the watcher pulls ([`crate::fleet::verify`] does the asking).
use super::*;

pub(super) fn check_fleet(settings: &Settings, state_dir: &Path) -> Vec<Check> {
    use crate::fleet::verify::Verdict;
    crate::fleet::verify::rows(
        settings,
        state::watcher_running(state_dir),
        crate::clock::now_secs(),
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
