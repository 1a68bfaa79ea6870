//! `astpatch unban` and the fleet: a local unban of a ban we pushed deletes its decision on
//! the LAPI (the watcher's fleet thread does it; with no watcher running, `unban` itself);
//! an unban of a fleet ban lifts it here only, and says which `cscli` command lifts it
//! fleet-wide (a bouncer may not delete decisions, and another PBX's decision is theirs).
use ipnet::IpNet;

use super::client::{Http, Lapi};
use super::pull::{Fleet, load_lifted, save_lifted};
use super::push::Ledger;
use crate::error::Result;
use crate::firewall::Backend;
use crate::settings::Settings;

/// `cscli decisions delete --ip X` or `--range X`.
pub fn cscli_delete(net: &IpNet) -> String {
    if net.prefix_len() == net.max_prefix_len() {
        format!("cscli decisions delete --ip {}", net.addr())
    } else {
        format!("cscli decisions delete --range {net}")
    }
}

/// After `net` was unbanned here: what became of the decision we pushed for it (None when
/// we pushed none). `watcher` is true when a watcher runs (its fleet thread deletes it).
pub fn after_local_unban(settings: &Settings, net: &IpNet, watcher: bool) -> Option<String> {
    let cs = settings.crowdsec.as_ref().filter(|c| c.push)?;
    let dir = super::dir(&settings.state_dir);
    let mut ledger = Ledger::load(&dir).ok()?;
    let pushed = ledger.pushed.get(net)?.clone();
    if watcher {
        return Some(format!(
            "fleet: the watcher deletes its decision on {} (at once, or when the LAPI answers again)",
            cs.base_url()
        ));
    }
    let fail = |e: String| {
        Some(format!(
            "fleet: could not delete its decision on {} ({e}); the watcher retries at its next start, or lift it fleet-wide now: {}",
            cs.base_url(),
            cscli_delete(net)
        ))
    };
    let creds = match cs.credentials() {
        Ok(c) => c,
        Err(e) => return fail(e.to_string()),
    };
    let (id, pw) = creds.machine?;
    let mut lapi = Http::new(cs.base_url());
    let result = (|| {
        let (token, _) = lapi.login(&id, &pw)?;
        let ids = if pushed.decisions.is_empty() {
            lapi.alert_decisions(&token, &pushed.alert_id)?
        } else {
            pushed.decisions.clone()
        };
        for d in &ids {
            lapi.delete_decision(&token, *d)?;
        }
        Ok::<usize, super::client::LinkError>(ids.len())
    })();
    match result {
        Ok(n) => {
            ledger.pushed.remove(net);
            let _ = ledger.save(&dir);
            Some(format!(
                "fleet: deleted its decision{} on {}",
                if n == 1 { "" } else { "s" },
                cs.base_url()
            ))
        }
        Err(e) => fail(e.to_string()),
    }
}

/// Lift the fleet's ban of `net` here. None when the fleet holds none for it.
pub fn lift_fleet_ban(
    settings: &Settings,
    backend: Backend,
    net: &IpNet,
    watcher: bool,
    now: i64,
) -> Result<Option<String>> {
    if settings.crowdsec.is_none() {
        return Ok(None);
    }
    let dir = super::dir(&settings.state_dir);
    let fleet = Fleet::load(&dir)?;
    let held: Vec<_> = fleet
        .held
        .values()
        .filter(|h| h.net == *net && h.until > now)
        .collect();
    let Some(until) = held.iter().map(|h| h.until).max() else {
        return Ok(None);
    };
    let mut lifted = load_lifted(&dir);
    lifted.insert(*net, until);
    save_lifted(&dir, &lifted)?;
    if !watcher {
        super::enforce::remove_one(backend, &crate::firewall::SystemRunner::host(), net)?;
    }
    let from: Vec<String> = held
        .iter()
        .map(|h| format!("{} ({})", h.origin, h.scenario))
        .collect();
    Ok(Some(format!(
        "lifted the fleet's ban of {net} here (decision from {}); it stands on the rest of the fleet: `{}` lifts it everywhere",
        from.join(", "),
        cscli_delete(net)
    )))
}

/// After a local unban: the fleet's own ban of the same network stands (kept apart).
pub fn still_held(settings: &Settings, net: &IpNet, now: i64) -> Option<String> {
    settings.crowdsec.as_ref()?;
    let fleet = Fleet::load(&super::dir(&settings.state_dir)).ok()?;
    let ledger = Ledger::load(&super::dir(&settings.state_dir)).unwrap_or_default();
    let own: Vec<i64> = ledger
        .pushed
        .values()
        .flat_map(|p| p.decisions.clone())
        .collect();
    let h = fleet
        .held
        .iter()
        .find(|(id, h)| h.net == *net && h.until > now && !own.contains(id))?
        .1;
    Some(format!(
        "fleet: {net} stays banned by the fleet (decision from {} ({})): `astpatch unban {}` again lifts it here, `{}` everywhere",
        h.origin,
        h.scenario,
        net,
        cscli_delete(net)
    ))
}
