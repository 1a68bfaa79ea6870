//! The fleet thread: push what the journal holds and the LAPI lacks, pull the decision stream
//! every `pull_every`, keep the fleet objects equal to what is held, and say how the link is.
//! The watcher's loop only [`Handle::nudge`]s it (a bounded channel, `try_send`: never waits).
use std::collections::{BTreeSet, HashSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::Duration;

use ipnet::IpNet;

use super::client::{Lapi, LinkError};
use super::enforce::Enforcer;
use super::link::Link;
use super::pull::Fleet;
use super::push::{Ledger, alert_for, pending};
use super::settings::{Credentials, Crowdsec};
use crate::ban::state::State;
use crate::clock::now_secs;
use crate::settings::Settings;

/// Alerts per `POST /v1/alerts`.
const PUSH_CHUNK: usize = 100;
/// Pushed alerts whose decision ids are asked for per round.
const LEARN_PER_ROUND: usize = 10;
/// After a failed push, wait this long before the next try (pulls keep their own rhythm).
const PUSH_BACKOFF: i64 = 5;
/// How often the fleet objects are checked for outside damage (a flush, a reboot's rules).
/// How often the whole decision list is pulled again (`startup=true`) instead of the delta:
/// 1.4.6 keeps one "last pull" per bouncer key, so a second caller with our key (another
/// bouncer given the same key by mistake) would take changes our next delta is owed.
const FULL_EVERY: i64 = 3600;

pub struct Handle {
    tx: SyncSender<Msg>,
    join: Option<std::thread::JoinHandle<()>>,
    shared: std::sync::Arc<std::sync::Mutex<Settings>>,
}

enum Msg {
    Nudge,
    Stop,
}

impl Handle {
    /// Something changed (a ban was recorded): look now rather than at the next second.
    pub fn nudge(&self) {
        match self.tx.try_send(Msg::Nudge) {
            Ok(()) | Err(TrySendError::Full(_)) => {}
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

impl Drop for Handle {
    /// Asks the thread to stop and does not wait: it may be inside an HTTP call (up to its
    /// timeout), and the watcher's shutdown must not hang on the network. Everything it
    /// writes is replaced whole (temp + rename), so ending the process under it is safe.
    fn drop(&mut self) {
        let _ = self.tx.try_send(Msg::Stop);
        drop(self.join.take());
    }
}

pub struct Worker {
    pub cs: Crowdsec,
    pub creds: Credentials,
    pub settings: Settings,
    shared: std::sync::Arc<std::sync::Mutex<Settings>>,
    pub lapi: Box<dyn Lapi>,
    pub enforcer: Option<Enforcer>,
    pub fleet_dir: PathBuf,
    pub state_dir: PathBuf,
    pub local_now: fn() -> Vec<IpAddr>,
    pub ipv6: bool,
    pub say: Box<dyn FnMut(String) + Send>,
    token: Option<(String, i64)>,
    state: Option<State>,
    ledger: Ledger,
    fleet: Fleet,
    link: Link,
    started: bool,
    last_full: i64,
    /// Pulls run on the monotonic clock, to the millisecond: `pull_every` is the promise
    /// of how soon a fleet ban reaches this PBX.
    next_pull: std::time::Instant,
    next_push: i64,
    last_check: i64,
    refused_said: HashSet<(IpNet, String)>,
    dirty: bool,
    check_every: i64,
    /// Local bans at the last enforcement.
    last_local: BTreeSet<IpNet>,
    /// The last enforcement failed (or none ran yet): try again next round.
    enforce_pending: bool,
    /// The LAPI's addresses (from the URL; a name is resolved once, at start).
    lapi_addrs: Vec<IpAddr>,
    /// The push and the pull side's current error.
    errors: [Option<String>; 2],
}

impl Worker {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cs: Crowdsec,
        creds: Credentials,
        settings: Settings,
        lapi: Box<dyn Lapi>,
        enforcer: Option<Enforcer>,
        ipv6: bool,
        say: Box<dyn FnMut(String) + Send>,
    ) -> crate::error::Result<Worker> {
        let state_dir = settings.state_dir.clone();
        let check_every = (settings.firewall_check.as_secs() as i64).max(1);
        let fleet_dir = super::dir(&state_dir);
        std::fs::create_dir_all(&fleet_dir).map_err(|e| crate::error::Error::io(&fleet_dir, e))?;
        let ledger = Ledger::load(&fleet_dir)?;
        let fleet = Fleet::load(&fleet_dir).unwrap_or_default();
        let link = Link {
            url: cs.url.clone(),
            push: cs.push,
            pull: cs.pull,
            ..super::link::read(&fleet_dir).unwrap_or_default()
        };
        Ok(Worker {
            cs,
            creds,
            shared: std::sync::Arc::new(std::sync::Mutex::new(settings.clone())),
            settings,
            lapi,
            enforcer,
            fleet_dir,
            state_dir,
            local_now: crate::firewall::host::local_addresses,
            ipv6,
            say,
            token: None,
            state: None,
            ledger,
            fleet,
            link,
            started: false,
            last_full: i64::MIN,
            next_pull: std::time::Instant::now(),
            next_push: i64::MIN,
            last_check: i64::MIN,
            refused_said: HashSet::new(),
            dirty: true,
            // The same interval as the local bans' check (setting firewall_check).
            check_every,
            last_local: BTreeSet::new(),
            enforce_pending: true,
            lapi_addrs: vec![],
            errors: [None, None],
        })
    }

    /// Run on a thread of its own until the handle is dropped.
    pub fn spawn(mut self) -> Handle {
        let (tx, rx) = sync_channel(16);
        let shared = self.shared.clone();
        let join = std::thread::Builder::new()
            .name("astpatch-fleet".into())
            .spawn(move || self.run(rx))
            .expect("spawn fleet thread");
        Handle {
            tx,
            join: Some(join),
            shared,
        }
    }

    fn run(&mut self, rx: Receiver<Msg>) {
        self.lapi_addrs = lapi_addrs(self.cs.base_url());
        // Fleet bans held before a restart go back in at once, before the LAPI answers.
        self.enforce(now_secs());
        loop {
            self.round(now_secs());
            let wait = self
                .next_pull
                .saturating_duration_since(std::time::Instant::now())
                .clamp(Duration::from_millis(10), Duration::from_millis(500));
            match rx.recv_timeout(wait) {
                Ok(Msg::Stop) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                Ok(Msg::Nudge) | Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            }
            // Several nudges in a burst are one round.
            while let Ok(m) = rx.try_recv() {
                if matches!(m, Msg::Stop) {
                    return;
                }
            }
        }
    }

    /// Push and pull fail and recover apart (a wrong password leaves the pull working):
    /// each side says its own error once and its recovery once; `status` shows the latest.
    fn error(&mut self, what: &'static str, e: &LinkError, now: i64) {
        let text = format!("{what}: {e}");
        let slot = usize::from(what == "pull");
        if self.errors[slot].as_deref() != Some(&text) {
            (self.say)(format!("fleet: {text}; local banning goes on"));
            self.errors[slot] = Some(text.clone());
        }
        self.link.last_error = Some(text);
        self.link.last_error_at = Some(now);
        self.dirty = true;
    }

    fn ok(&mut self, what: &'static str) {
        let slot = usize::from(what == "pull");
        let had = self.errors[slot].take().is_some();
        if had {
            (self.say)(format!("fleet: {what} works again"));
        }
        // Also an error a previous run of the watcher left in link.json.
        let stale = self
            .link
            .last_error
            .as_deref()
            .is_some_and(|e| e.starts_with(what));
        if had || stale {
            self.link.last_error = self.errors[1 - slot].clone();
            self.dirty = true;
        }
    }

    /// One pass: push, pull when due, enforce, publish.
    pub fn round(&mut self, now: i64) {
        let mut reloaded = false;
        if let Ok(s) = self.shared.lock() {
            if *s != self.settings {
                self.settings = s.clone();
                reloaded = true;
            }
        }
        let local_bans = self.local_bans(now);
        if self.cs.push {
            self.push(&local_bans, now);
        }
        let mut changed = reloaded;
        if self.cs.pull && std::time::Instant::now() >= self.next_pull {
            self.next_pull = std::time::Instant::now() + self.cs.pull_every;
            // A full list now and then heals a delta another caller with our key took.
            if self.started && now.saturating_sub(self.last_full) >= FULL_EVERY {
                self.started = false;
            }
            changed |= self.pull(now);
        }
        changed |= self.fleet.expire(now) > 0;
        let lifted = super::pull::load_lifted(&self.fleet_dir);
        if lifted != self.fleet.lifted {
            self.fleet.lifted = lifted;
            changed = true;
        }
        // The firewall is looked at only when something it depends on changed (the held
        // decisions, the local bans, what was lifted), after a failure, or for the periodic
        // check: a pull that brought nothing costs one HTTP round trip and no command.
        let local_set: BTreeSet<IpNet> = local_bans.iter().map(|b| b.net).collect();
        if changed
            || self.enforce_pending
            || local_set != self.last_local
            || now.saturating_sub(self.last_check) >= self.check_every
        {
            self.last_local = local_set;
            self.enforce_with(&local_bans, now);
        }
        if self.dirty {
            self.link.updated_at = now;
            if let Err(e) = super::link::write(&self.fleet_dir, &self.link) {
                (self.say)(format!("fleet: cannot write link status: {e}"));
            }
            self.dirty = false;
        }
    }

    fn local_bans(&mut self, now: i64) -> Vec<crate::ban::state::Ban> {
        if self.state.is_none() {
            self.state = State::load(&self.state_dir).ok();
        }
        match self.state.as_mut() {
            Some(st) => {
                let _ = st.refresh();
                st.active_bans(now)
            }
            None => vec![],
        }
    }

    fn token(&mut self, now: i64) -> Result<String, LinkError> {
        if let Some((t, exp)) = &self.token {
            // Renewed five minutes before it runs out.
            if *exp - 300 > now {
                return Ok(t.clone());
            }
        }
        let (id, pw) = self.creds.machine.clone().expect("push implies a machine");
        let (t, exp) = self.lapi.login(&id, &pw)?;
        self.token = Some((t.clone(), exp));
        Ok(t)
    }

    fn push(&mut self, active: &[crate::ban::state::Ban], now: i64) {
        let work = pending(active, &self.ledger, now);
        let queued = (work.push.len(), work.delete.len());
        if queued != (self.link.pushes_queued, self.link.deletes_queued) {
            self.link.pushes_queued = queued.0;
            self.link.deletes_queued = queued.1;
            self.dirty = true;
        }
        if !work.forget.is_empty() {
            for n in &work.forget {
                self.ledger.pushed.remove(n);
            }
            self.save_ledger();
        }
        if now < self.next_push {
            return;
        }
        if work.push.is_empty() && work.delete.is_empty() {
            self.learn_ids(now);
            return;
        }
        let mut result = self.push_now(work, now);
        if result.as_ref().is_err_and(LinkError::is_auth) && self.token.take().is_some() {
            // A LAPI restarted with a new signing key (1.4.6 draws one per start) refuses
            // the token it gave us: log in again at once, once.
            result = self.push_now(pending(active, &self.ledger, now), now);
        }
        if let Err(e) = result {
            if e.is_auth() {
                self.token = None;
            }
            self.next_push = now + PUSH_BACKOFF;
            self.error("push", &e, now);
        } else {
            self.ok("push");
        }
    }

    /// Ask the LAPI for the decision ids of a few pushed alerts that lack them.
    fn learn_ids(&mut self, now: i64) {
        let todo: Vec<(IpNet, String)> = self
            .ledger
            .pushed
            .iter()
            .filter(|(_, p)| p.decisions.is_empty() && p.until.is_none_or(|u| u > now))
            .take(LEARN_PER_ROUND)
            .map(|(n, p)| (*n, p.alert_id.clone()))
            .collect();
        if todo.is_empty() {
            return;
        }
        let Ok(token) = self.token(now) else { return };
        for (net, alert) in todo {
            match self.lapi.alert_decisions(&token, &alert) {
                Ok(ids) if !ids.is_empty() => {
                    if let Some(p) = self.ledger.pushed.get_mut(&net) {
                        p.decisions = ids;
                    }
                }
                _ => return,
            }
        }
        self.save_ledger();
    }

    fn save_ledger(&mut self) {
        if let Err(e) = self.ledger.save(&self.fleet_dir) {
            (self.say)(format!("fleet: cannot write the push ledger: {e}"));
        }
    }

    fn push_now(&mut self, work: super::push::Work, now: i64) -> Result<(), LinkError> {
        let token = self.token(now)?;
        let machine = self.cs.machine_id.clone().unwrap_or_default();
        for chunk in work.push.chunks(PUSH_CHUNK) {
            let alerts: Vec<_> = chunk.iter().map(|b| alert_for(b, &machine, now)).collect();
            let ids = self.lapi.push(&token, &alerts)?;
            if ids.len() != chunk.len() {
                return Err(LinkError::Protocol(format!(
                    "{} alerts sent, {} ids back",
                    chunk.len(),
                    ids.len()
                )));
            }
            let few = chunk.len() <= LEARN_PER_ROUND;
            for (b, id) in chunk.iter().zip(ids) {
                // The decision ids (what an unban deletes, how our own decisions are known in
                // the stream): asked for at once after a few pushes, a few per round after a
                // burst (a backlog of thousands must not become thousands of requests at once).
                let decisions = if few {
                    self.lapi.alert_decisions(&token, &id).unwrap_or_default()
                } else {
                    vec![]
                };
                self.ledger.pushed.insert(
                    b.net,
                    super::push::Pushed {
                        banned_at: b.banned_at,
                        until: b.until,
                        alert_id: id,
                        decisions,
                    },
                );
            }
            self.save_ledger();
            self.link.pushes_queued = self.link.pushes_queued.saturating_sub(chunk.len());
            self.link.last_push = Some(now);
            self.dirty = true;
            (self.say)(format!(
                "fleet: pushed {} ban{} to {}",
                chunk.len(),
                if chunk.len() == 1 { "" } else { "s" },
                self.cs.base_url()
            ));
        }
        for (net, ids) in work.delete {
            let mut ids = ids;
            if ids.is_empty() {
                let alert = self.ledger.pushed.get(&net).map(|p| p.alert_id.clone());
                if let Some(a) = alert {
                    ids = self.lapi.alert_decisions(&token, &a)?;
                }
            }
            for id in &ids {
                self.lapi.delete_decision(&token, *id)?;
                // Gone now; not applied here in the moment before the stream says so.
                self.fleet.held.remove(id);
            }
            self.ledger.pushed.remove(&net);
            self.save_ledger();
            self.link.deletes_queued = self.link.deletes_queued.saturating_sub(1);
            self.dirty = true;
            (self.say)(format!(
                "fleet: {net} was unbanned here; deleted its decision on the LAPI"
            ));
        }
        Ok(())
    }

    /// True when what is held changed.
    fn pull(&mut self, now: i64) -> bool {
        let key = self.creds.api_key.clone().expect("pull implies a key");
        match self.lapi.stream(&key, !self.started) {
            Ok(s) => {
                if !self.started {
                    self.last_full = now;
                }
                // Our own decisions deleted on the LAPI (`cscli decisions delete`): the fleet
                // lifted that ban, so it ends here too.
                let gone: BTreeSet<i64> = s.deleted.iter().flatten().map(|d| d.id).collect();
                let ours: Vec<(IpNet, i64)> = self
                    .ledger
                    .pushed
                    .iter()
                    .filter(|(_, p)| {
                        !p.decisions.is_empty() && p.decisions.iter().all(|d| gone.contains(d))
                    })
                    .map(|(n, p)| (*n, p.banned_at))
                    .collect();
                for (net, banned_at) in ours {
                    self.lift_local(net, banned_at, now);
                }
                let startup = !self.started;
                self.started = true;
                let (added, removed) = self.fleet.take(s, startup, now);
                self.link.last_pull = Some(now);
                self.link.decisions_held = self.fleet.held.len();
                self.dirty = true;
                self.ok("pull");
                if added + removed > 0 || startup {
                    (self.say)(format!(
                        "fleet: {}{added} new, {removed} ended; {} decisions held",
                        if startup { "full list: " } else { "" },
                        self.fleet.held.len()
                    ));
                    if let Err(e) = self.fleet.save(&self.fleet_dir) {
                        (self.say)(format!("fleet: cannot keep the decisions: {e}"));
                    }
                    return true;
                }
                false
            }
            Err(e) => {
                self.error("pull", &e, now);
                false
            }
        }
    }

    /// End the local ban of `net` (if it is still the one we pushed): recorded, then taken
    /// out of the local firewall objects, as `astpatch unban` does.
    fn lift_local(&mut self, net: IpNet, banned_at: i64, now: i64) {
        self.ledger.pushed.remove(&net);
        self.save_ledger();
        let result = (|| -> crate::error::Result<bool> {
            let mut st = State::open(&self.state_dir)?;
            if st.get(&net).is_none_or(|b| b.banned_at != banned_at) {
                return Ok(false);
            }
            st.record_unban(net, "decision deleted on the LAPI", now)?;
            let mut fw = crate::firewall::for_backend_with(
                self.settings.backend,
                Box::new(crate::firewall::SystemRunner::host()),
                self.ipv6,
            );
            fw.unban(net)?;
            Ok(true)
        })();
        match result {
            Ok(true) => (self.say)(format!(
                "fleet: unban {net}: its decision was deleted on the LAPI"
            )),
            Ok(false) => {}
            Err(e) => (self.say)(format!(
                "error: fleet: {net}'s decision was deleted on the LAPI but the local ban stays: {e}"
            )),
        }
    }

    fn enforce(&mut self, now: i64) {
        let local = self.local_bans(now);
        self.enforce_with(&local, now);
    }

    fn enforce_with(&mut self, local: &[crate::ban::state::Ban], now: i64) {
        let Some(enf) = self.enforcer.as_mut() else {
            return;
        };
        let bans: BTreeSet<IpNet> = local.iter().map(|b| b.net).collect();
        let addrs = (self.local_now)();
        let own: BTreeSet<i64> = self
            .ledger
            .pushed
            .values()
            .flat_map(|p| p.decisions.iter().copied())
            .collect();
        let mut want = super::pull::desired(
            &self.fleet,
            &self.settings,
            &addrs,
            &bans,
            &own,
            self.ipv6,
            now,
        );
        // A decision on the LAPI's own address would cut the fleet link itself.
        let lapi = self.lapi_addrs.clone();
        want.nets.retain(|net, _| {
            let hit = lapi.iter().any(|a| net.contains(a));
            if hit {
                let origin = self
                    .fleet
                    .held
                    .values()
                    .find(|h| h.net == *net)
                    .map_or(String::new(), |h| h.origin.clone());
                want.refused.push((
                    *net,
                    origin,
                    format!("it covers the LAPI's address ({})", self.cs.base_url()),
                ));
            }
            !hit
        });
        let mut msgs = vec![];
        for (net, origin, why) in &want.refused {
            if self.refused_said.insert((*net, origin.clone())) {
                msgs.push(format!(
                    "fleet: not enforcing {net} (decision from {origin}): {why}"
                ));
            }
        }
        if now.saturating_sub(self.last_check) >= self.check_every {
            self.last_check = now;
            if enf.held() > 0 || !want.nets.is_empty() {
                match enf.intact(now) {
                    Ok(true) => {}
                    Ok(false) => {
                        msgs.push(
                            "fleet: the fleet firewall objects were gone; loading them again"
                                .into(),
                        );
                        enf.reload_next();
                    }
                    Err(e) => msgs.push(format!("fleet: firewall check: {e}")),
                }
            }
        }
        let result = enf.apply(&want.nets, now);
        self.enforce_pending = result.is_err();
        match result {
            Ok(r) => {
                if r.added + r.removed > 0 {
                    msgs.push(format!(
                        "fleet: firewall +{} -{}{}; {} fleet bans in place",
                        r.added,
                        r.removed,
                        if r.full { " (full load)" } else { "" },
                        enf.held()
                    ));
                }
            }
            Err(e) => msgs.push(format!("error: fleet firewall: {e}; trying again")),
        }
        let held = enf.held();
        if (held, want.refused.len()) != (self.link.enforced, self.link.refused) {
            self.link.enforced = held;
            self.link.refused = want.refused.len();
            self.dirty = true;
        }
        for m in msgs {
            (self.say)(m);
        }
    }
}

/// The addresses the LAPI's URL names (a literal, or what the name resolves to now).
pub fn lapi_addrs(url: &str) -> Vec<IpAddr> {
    use std::net::ToSocketAddrs;
    let rest = url.split("://").nth(1).unwrap_or(url);
    let hostport = rest.split('/').next().unwrap_or(rest);
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(':') && p.parse::<u16>().is_ok() => {
            (h, p.parse().unwrap_or(80))
        }
        _ => (hostport, if url.starts_with("https") { 443 } else { 80 }),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(a) = host.parse::<IpAddr>() {
        return vec![a];
    }
    (host, port)
        .to_socket_addrs()
        .map(|it| it.map(|sa| sa.ip()).collect())
        .unwrap_or_default()
}

/// A cheap clone of the handle's sender, for the log loop.
#[derive(Clone)]
pub struct Nudger(SyncSender<Msg>);

impl Nudger {
    pub fn nudge(&self) {
        let _ = self.0.try_send(Msg::Nudge);
    }
}

impl Handle {
    pub fn nudger(&self) -> Nudger {
        Nudger(self.tx.clone())
    }

    /// New settings after SIGHUP: a new ignoreip (or ipv6_prefix) holds for the fleet's
    /// decisions from the next round on. The link itself changes only with a restart.
    pub fn set_settings(&self, s: &Settings) {
        if let Ok(mut g) = self.shared.lock() {
            *g = s.clone();
        }
        let _ = self.tx.try_send(Msg::Nudge);
    }
}

/// Start the fleet thread when `[crowdsec]` is set: the secrets are read (an unreadable file
/// is an error at start, not a silent fleet of one), the firewall objects are those of the
/// watcher's backend.
pub fn start(settings: &Settings, ipv6: bool) -> crate::error::Result<Option<Handle>> {
    let Some(cs) = settings.crowdsec.clone() else {
        return Ok(None);
    };
    let creds = cs.credentials()?;
    let enforcer = cs.pull.then(|| {
        Enforcer::new(
            settings.backend,
            Box::new(crate::firewall::SystemRunner::host()),
            ipv6,
        )
    });
    println!(
        "fleet: CrowdSec LAPI {} (push {}, pull {} every {})",
        cs.base_url(),
        if cs.push { "on" } else { "off" },
        if cs.pull { "on" } else { "off" },
        crate::duration::format(cs.pull_every)
    );
    let lapi = Box::new(super::client::Http::new(cs.base_url()));
    let w = Worker::new(
        cs,
        creds,
        settings.clone(),
        lapi,
        enforcer,
        ipv6,
        Box::new(|m| {
            use std::io::Write;
            let mut o = std::io::stdout().lock();
            let _ = writeln!(o, "{m}");
            let _ = o.flush();
        }),
    )?;
    Ok(Some(w.spawn()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::client::{Alert, LinkResult, Stream};
    use std::sync::{Arc, Mutex};

    #[derive(Default)]
    struct Lapi0 {
        up: bool,
        logins: usize,
        /// Tokens it accepts (a restart forgets them).
        valid: Vec<String>,
        alerts: Vec<Alert>,
        expire_in: i64,
        stream: Stream,
    }

    #[derive(Clone, Default)]
    struct FakeLapi(Arc<Mutex<Lapi0>>);

    impl FakeLapi {
        fn down(&self) -> Result<(), LinkError> {
            if self.0.lock().unwrap().up {
                Ok(())
            } else {
                Err(LinkError::Unreachable("connection refused".into()))
            }
        }
    }

    impl Lapi for FakeLapi {
        fn login(&mut self, _: &str, _: &str) -> LinkResult<(String, i64)> {
            self.down()?;
            let mut l = self.0.lock().unwrap();
            l.logins += 1;
            let t = format!("t{}", l.logins);
            l.valid.push(t.clone());
            Ok((t, now_secs() + l.expire_in))
        }
        fn push(&mut self, token: &str, alerts: &[Alert]) -> LinkResult<Vec<String>> {
            self.down()?;
            let mut l = self.0.lock().unwrap();
            if !l.valid.iter().any(|t| t == token) {
                return Err(LinkError::Refused {
                    code: 401,
                    message: "signature is invalid".into(),
                });
            }
            let base = l.alerts.len();
            l.alerts.extend_from_slice(alerts);
            Ok((0..alerts.len())
                .map(|i| (base + i + 1).to_string())
                .collect())
        }
        fn alert_decisions(&mut self, _: &str, id: &str) -> LinkResult<Vec<i64>> {
            Ok(vec![id.parse().unwrap()])
        }
        fn delete_decision(&mut self, _: &str, _: i64) -> LinkResult<bool> {
            self.down()?;
            Ok(true)
        }
        fn stream(&mut self, _: &str, startup: bool) -> LinkResult<Stream> {
            self.down()?;
            Ok(if startup {
                self.0.lock().unwrap().stream.clone()
            } else {
                Stream::default()
            })
        }
        fn probe_key(&mut self, _: &str) -> LinkResult<()> {
            Ok(())
        }
    }

    fn worker(dir: &std::path::Path, lapi: FakeLapi) -> Worker {
        let cs: Crowdsec = toml::from_str(
            "url = \"http://lapi:8080\"\nmachine_id = \"pbx-a\"\npassword = \"p\"\npull = false",
        )
        .unwrap();
        let creds = cs.credentials().unwrap();
        let settings = Settings {
            state_dir: dir.to_owned(),
            ..Settings::default()
        };
        Worker::new(
            cs,
            creds,
            settings,
            Box::new(lapi),
            None,
            true,
            Box::new(|_| {}),
        )
        .unwrap()
    }

    fn ban(st: &mut State, net: &str, now: i64) {
        st.record_ban(crate::ban::state::Ban {
            net: net.parse().unwrap(),
            until: Some(now + 3600),
            reason: "chan_sip".into(),
            failures: 5,
            banned_at: now,
        })
        .unwrap();
    }

    #[test]
    fn pushes_wait_while_the_lapi_is_away_and_survive_a_restart_of_the_watcher() {
        let d = tempfile::tempdir().unwrap();
        let lapi = FakeLapi::default();
        lapi.0.lock().unwrap().expire_in = 3600;
        let mut st = State::open(d.path()).unwrap();
        let now = now_secs();
        ban(&mut st, "203.0.113.7/32", now);
        let mut w = worker(d.path(), lapi.clone());
        w.round(now);
        assert_eq!(w.link.pushes_queued, 1);
        assert!(
            w.link
                .last_error
                .as_deref()
                .unwrap()
                .contains("unreachable")
        );
        // The watcher dies; a new one finds the same ban still to push (the journal is the
        // queue), and pushes it once the LAPI answers.
        drop(w);
        let mut w = worker(d.path(), lapi.clone());
        lapi.0.lock().unwrap().up = true;
        w.round(now + 10);
        assert_eq!(lapi.0.lock().unwrap().alerts.len(), 1);
        assert_eq!(w.link.pushes_queued, 0);
        assert!(w.link.last_error.is_none());
        // Pushed once: later rounds send nothing more.
        w.round(now + 11);
        assert_eq!(lapi.0.lock().unwrap().alerts.len(), 1);
        // And a fresh watcher knows it from the ledger.
        let mut w = worker(d.path(), lapi.clone());
        w.round(now + 12);
        assert_eq!(lapi.0.lock().unwrap().alerts.len(), 1);
    }

    #[test]
    fn the_token_is_renewed_before_it_expires_and_at_once_after_a_refusal() {
        let d = tempfile::tempdir().unwrap();
        let lapi = FakeLapi::default();
        {
            let mut l = lapi.0.lock().unwrap();
            l.up = true;
            l.expire_in = 3600;
        }
        let mut st = State::open(d.path()).unwrap();
        let now = now_secs();
        let mut w = worker(d.path(), lapi.clone());
        ban(&mut st, "203.0.113.7/32", now);
        w.round(now);
        ban(&mut st, "203.0.113.8/32", now);
        w.round(now + 1);
        assert_eq!(lapi.0.lock().unwrap().logins, 1, "one token for both");
        // Within five minutes of its end: renewed.
        ban(&mut st, "203.0.113.9/32", now);
        w.round(now + 3400);
        assert_eq!(lapi.0.lock().unwrap().logins, 2);
        // The LAPI restarted and forgot every token: refused once, logged in again, pushed.
        lapi.0.lock().unwrap().valid.clear();
        ban(&mut st, "203.0.113.10/32", now);
        w.round(now + 3401);
        let l = lapi.0.lock().unwrap();
        assert_eq!(l.logins, 3);
        assert_eq!(l.alerts.len(), 4);
        assert!(w.link.last_error.is_none());
    }

    #[test]
    fn a_new_ignoreip_after_sighup_takes_a_fleet_ban_out_at_the_next_round() {
        use crate::firewall::fake::Recorder;
        let d = tempfile::tempdir().unwrap();
        let lapi = FakeLapi::default();
        {
            let mut l = lapi.0.lock().unwrap();
            l.up = true;
            l.stream = Stream {
                new: Some(vec![crate::fleet::client::Decision {
                    id: 7,
                    origin: "cscli".into(),
                    scenario: "manual".into(),
                    scope: "Ip".into(),
                    kind: "ban".into(),
                    value: "203.0.113.7".into(),
                    duration: "1h".into(),
                }]),
                deleted: None,
            };
        }
        let cs: Crowdsec =
            toml::from_str("url = \"http://lapi:8080\"\napi_key = \"k\"\npush = false").unwrap();
        let creds = cs.credentials().unwrap();
        let settings = Settings {
            state_dir: d.path().to_owned(),
            ..Settings::default()
        };
        let rec = Recorder::default();
        let enf = Enforcer::new(
            crate::firewall::Backend::Nftables,
            Box::new(rec.clone()),
            true,
        );
        let mut w = Worker::new(
            cs,
            creds,
            settings.clone(),
            Box::new(lapi),
            Some(enf),
            true,
            Box::new(|_| {}),
        )
        .unwrap();
        w.local_now = Vec::new;
        let now = now_secs();
        w.round(now);
        assert!(
            rec.stdin_of("nft -f -")
                .unwrap()
                .contains("203.0.113.7 timeout"),
            "{:?}",
            rec.calls()
        );
        *w.shared.lock().unwrap() = Settings {
            ignoreip: vec!["203.0.113.0/24".parse().unwrap()],
            ..settings
        };
        w.round(now);
        let calls = rec.calls.lock().unwrap().clone();
        let last = calls.last().unwrap().1.clone().unwrap();
        assert!(
            last.contains("delete element inet astpatch-fleet addr4 { 203.0.113.7 }"),
            "{last}"
        );
        assert_eq!(w.link.refused, 1);
    }

    #[test]
    fn after_a_burst_the_decision_ids_are_learned_a_few_per_round() {
        let d = tempfile::tempdir().unwrap();
        let lapi = FakeLapi::default();
        {
            let mut l = lapi.0.lock().unwrap();
            l.up = true;
            l.expire_in = 3600;
        }
        let mut st = State::open(d.path()).unwrap();
        let now = now_secs();
        for i in 0..25 {
            ban(&mut st, &format!("203.0.113.{i}/32"), now);
        }
        let mut w = worker(d.path(), lapi.clone());
        w.round(now);
        assert_eq!(lapi.0.lock().unwrap().alerts.len(), 25, "one POST");
        let unknown = |w: &Worker| {
            w.ledger
                .pushed
                .values()
                .filter(|p| p.decisions.is_empty())
                .count()
        };
        assert_eq!(unknown(&w), 25);
        w.round(now + 1);
        assert_eq!(unknown(&w), 15);
        w.round(now + 2);
        w.round(now + 3);
        assert_eq!(unknown(&w), 0);
        assert_eq!(
            Ledger::load(&w.fleet_dir).unwrap(),
            w.ledger,
            "kept on disk"
        );
    }

    #[test]
    fn the_lapi_address_comes_from_the_url() {
        assert_eq!(
            lapi_addrs("http://10.0.0.10:8080"),
            vec!["10.0.0.10".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(
            lapi_addrs("https://[2001:db8::10]:8443/"),
            vec!["2001:db8::10".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(
            lapi_addrs("http://192.0.2.1"),
            vec!["192.0.2.1".parse::<IpAddr>().unwrap()]
        );
    }
}
