//! `astpatch verify`'s fleet rows: the watcher machine logs in, the bouncer key is taken, and
//! the running watcher's link pulled recently. Returned as (name, ok|warn|fail, detail, fix)
//! for `verify.rs` to turn into its checks.
use super::client::{Http, Lapi};
use crate::settings::Settings;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Warn,
    Fail,
}

pub struct Row {
    pub name: &'static str,
    pub verdict: Verdict,
    pub detail: String,
    pub fix: Option<String>,
}

pub fn rows(settings: &Settings, watcher_running: bool, now: i64) -> Vec<Row> {
    let Some(cs) = settings.crowdsec.as_ref() else {
        return vec![];
    };
    let url = cs.base_url();
    let creds = match cs.credentials() {
        Ok(c) => c,
        Err(e) => {
            return vec![Row {
                name: "fleet-login",
                verdict: Verdict::Fail,
                detail: format!("crowdsec: {e}"),
                fix: e.hint().or(Some(
                    "write the password / bouncer key into the file named in [crowdsec]".into(),
                )),
            }];
        }
    };
    let mut lapi = Http::new(url);
    let mut out = vec![];
    if let Some((id, pw)) = &creds.machine {
        out.push(match lapi.login(id, pw) {
            Ok(_) => Row {
                name: "fleet-login",
                verdict: Verdict::Pass,
                detail: format!("{url}: logged in as watcher machine {id} (push)"),
                fix: None,
            },
            Err(e) => Row {
                name: "fleet-login",
                verdict: Verdict::Fail,
                detail: format!("{url}: machine {id}: {e}"),
                fix: Some(if e.is_auth() {
                    format!(
                        "on the LAPI host: cscli machines add {id} --password '…' (or cscli machines validate {id}); the same password in password_file"
                    )
                } else {
                    "check crowdsec.url and that the LAPI runs (systemctl status crowdsec; cscli lapi status)".into()
                }),
            },
        });
    }
    if let Some(key) = &creds.api_key {
        let link = super::link::read(&super::dir(&settings.state_dir));
        let row = match lapi.probe_key(key) {
            Err(e) => Row {
                name: "fleet-stream",
                verdict: Verdict::Fail,
                detail: format!("{url}: bouncer key: {e}"),
                fix: Some(if e.is_auth() {
                    "on the LAPI host: cscli bouncers add astpatch-HOSTNAME, and put the key in api_key_file".into()
                } else {
                    "check crowdsec.url and that the LAPI runs (cscli lapi status)".into()
                }),
            },
            Ok(()) => {
                let due = 3 * cs.pull_every.as_secs() as i64 + 5;
                match link.filter(|_| watcher_running) {
                    None => Row {
                        name: "fleet-stream",
                        verdict: Verdict::Pass,
                        detail: format!(
                            "{url}: bouncer key taken (the watcher is not running: no stream yet)"
                        ),
                        fix: None,
                    },
                    Some(l) if l.last_pull.is_some_and(|t| now - t <= due) => Row {
                        name: "fleet-stream",
                        verdict: Verdict::Pass,
                        detail: format!(
                            "{url}: bouncer key taken; the watcher pulled {}s ago, {} fleet decisions held, {} enforced, {} pushes queued",
                            now - l.last_pull.unwrap_or(now),
                            l.decisions_held,
                            l.enforced,
                            l.pushes_queued
                        ),
                        fix: None,
                    },
                    Some(l) => Row {
                        name: "fleet-stream",
                        verdict: Verdict::Warn,
                        detail: format!(
                            "{url}: bouncer key taken, but the watcher's last pull was {} ({})",
                            l.last_pull
                                .map_or("never".into(), |t| format!("{}s ago", now - t)),
                            l.last_error.unwrap_or_else(|| "no error recorded".into())
                        ),
                        fix: Some("see the watcher's log: journalctl -u astpatch".into()),
                    },
                }
            }
        };
        out.push(row);
    }
    out
}
