//! The AMI connection, on a thread of its own: connect, read the banner, log in subscribed to
//! the security class only, then turn every block into a [`Note`] for the watcher. Down or
//! refused, it says so and tries again with a growing pause (1 s up to 60 s), so a restart of
//! Asterisk costs at most a minute of events, and the watcher loop never waits on the network.
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::mpsc::SyncSender;
use std::time::Duration;

use super::message::Splitter;
use super::security::{Verdict, judge_block};
use crate::settings::AmiSettings;

/// What the connection tells the watcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// Logged in; events flow. `banner` is the manager's (`Asterisk Call Manager/9.0.0`).
    Up { banner: String },
    /// Logged in, but this manager has no security class (Asterisk 11): no events will come.
    NoSecurityClass { banner: String },
    /// One security event, judged.
    Event(Verdict),
    /// Lost or not reached; trying again in `retry_in`.
    Down { why: String, retry_in: Duration },
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Start the connection thread. It ends when the watcher drops the receiving end.
pub fn spawn(cfg: AmiSettings, tx: SyncSender<Note>) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("astpatch-ami".into())
        .spawn(move || run(&cfg, &tx))
        .expect("a thread starts")
}

fn run(cfg: &AmiSettings, tx: &SyncSender<Note>) {
    let mut backoff = Duration::from_secs(1);
    loop {
        let (why, was_up) = match session(cfg, tx) {
            Ok(()) => return, // the watcher is gone
            Err(e) => e,
        };
        if was_up {
            backoff = Duration::from_secs(1);
        }
        if tx
            .send(Note::Down {
                why,
                retry_in: backoff,
            })
            .is_err()
        {
            return;
        }
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// A logged-in manager connection: the stream, what was read past the login response, and
/// the banner.
pub struct Session {
    pub stream: TcpStream,
    pub split: Splitter,
    pub banner: String,
    pub addr: std::net::SocketAddr,
}

/// Connect and log in with `Events: {events}` (`security` for the watcher, `off` for verify).
/// Why not, in one sentence, when the manager cannot be reached or refuses the login.
pub fn login(
    cfg: &AmiSettings,
    events: &str,
    read_timeout: Option<Duration>,
) -> Result<Session, String> {
    let secret = cfg.secret()?;
    // A value with CR or LF would be an action of its own: refused, not sent.
    if cfg.username.contains(['\r', '\n']) || secret.contains(['\r', '\n']) {
        return Err("the AMI username or secret holds a line break".into());
    }
    let addr = (cfg.host.as_str(), cfg.port)
        .to_socket_addrs()
        .map_err(|e| format!("{}:{}: {e}", cfg.host, cfg.port))?
        .next()
        .ok_or_else(|| format!("{}: no address", cfg.host))?;
    let mut stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)
        .map_err(|e| format!("cannot connect to the manager at {addr}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(read_timeout);
    stream
        .write_all(
            format!(
                "Action: Login\r\nUsername: {}\r\nSecret: {secret}\r\nEvents: {events}\r\n\r\n",
                cfg.username
            )
            .as_bytes(),
        )
        .map_err(|e| format!("{addr}: {e}"))?;
    let mut split = Splitter::default();
    let mut buf = [0u8; 4096];
    let mut banner = None;
    loop {
        let n = stream.read(&mut buf).map_err(|e| format!("{addr}: {e}"))?;
        if n == 0 {
            return Err(format!("{addr} closed the connection"));
        }
        split.push(&buf[..n]);
        if banner.is_none() {
            banner = split.banner();
            if banner.is_none() {
                continue;
            }
        }
        if let Some(block) = split.next_block() {
            let Ok(block) = block else { continue };
            let text = String::from_utf8_lossy(block);
            if !text.contains("Response: Success") {
                let why = text
                    .lines()
                    .find_map(|l| l.strip_prefix("Message: "))
                    .unwrap_or("no success response");
                return Err(format!("login as {} refused: {why}", cfg.username));
            }
            let _ = stream.set_read_timeout(None);
            return Ok(Session {
                stream,
                split,
                banner: banner.unwrap_or_default(),
                addr,
            });
        }
    }
}

/// One connection, until it fails (why, and whether it had logged in) or the watcher is gone.
fn session(cfg: &AmiSettings, tx: &SyncSender<Note>) -> Result<(), (String, bool)> {
    let Session {
        mut stream,
        mut split,
        banner,
        addr,
    } = login(cfg, "security", None).map_err(|e| (e, false))?;
    let note = if has_security_class(&banner) {
        Note::Up { banner }
    } else {
        Note::NoSecurityClass { banner }
    };
    if tx.send(note).is_err() {
        return Ok(());
    }
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // Blocks already read with the login response first, then the socket.
        while let Some(block) = split.next_block() {
            let Ok(block) = block else { continue };
            let v = judge_block(block);
            if v != Verdict::NotFailure && tx.send(Note::Event(v)).is_err() {
                return Ok(());
            }
        }
        let n = stream
            .read(&mut buf)
            .map_err(|e| (format!("{addr}: {e}"), true))?;
        if n == 0 {
            return Err((format!("{addr} closed the connection"), true));
        }
        split.push(&buf[..n]);
    }
}

/// Asterisk 11's manager (protocol 1.x) has no security class; 12 and later (2.x+) do.
pub fn has_security_class(banner: &str) -> bool {
    banner
        .rsplit('/')
        .next()
        .and_then(|v| v.split('.').next())
        .and_then(|m| m.trim().parse::<u32>().ok())
        .is_none_or(|major| major >= 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manager_versions_with_and_without_security_events() {
        assert!(has_security_class("Asterisk Call Manager/9.0.0"));
        assert!(has_security_class("Asterisk Call Manager/2.10.6"));
        assert!(!has_security_class("Asterisk Call Manager/1.3"));
    }
}
