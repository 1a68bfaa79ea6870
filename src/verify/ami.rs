//! The AMI link, shown only with `[ami]`: manager.conf enables the manager and gives the user a
//! `read` that covers security events, and (on the live system) the manager answers and takes
//! the login.
use std::io::Write;
use std::time::Duration;

use super::*;

const NAME: &str = "ami";

pub(super) fn check_ami(inp: &Inputs, dirs: Option<&Directories>) -> Option<Check> {
    let cfg = inp.settings.ami.as_ref()?;
    let defaults = Directories::default();
    let dirs = dirs.unwrap_or(&defaults);
    let path = under(inp.root, &dirs.astetcdir.join("manager.conf"));
    let text = match fs::read(&path) {
        Ok(t) => String::from_utf8_lossy(&t).into_owned(),
        Err(e) => {
            return Some(
                Check::new(NAME, Status::Fail, format!("{}: {e}", shown(&path))).fix(format!(
                    "create it with [general] enabled = yes, bindaddr = 127.0.0.1 and a [{}] section with a secret and read = security",
                    cfg.username
                )),
            );
        }
    };
    if let Err(why) = manager_user_reads_security(&text, &cfg.username) {
        return Some(
            Check::new(NAME, Status::Fail, format!("{}: {why}", shown(&path))).fix(format!(
                "in {}: [general] enabled = yes; [{}] with its secret and read = security; then asterisk -rx 'manager reload'",
                shown(&path),
                cfg.username
            )),
        );
    }
    if inp.root != Path::new("/") {
        return Some(Check::new(
            NAME,
            Status::Pass,
            format!(
                "{}: user {} reads security events (login not tried under --root)",
                shown(&path),
                cfg.username
            ),
        ));
    }
    Some(match login(cfg) {
        Ok(banner) => Check::new(
            NAME,
            Status::Pass,
            format!(
                "{}:{} ({banner}) takes the login of {}, who reads security events",
                cfg.host, cfg.port, cfg.username
            ),
        ),
        Err(why) => Check::new(NAME, Status::Fail, why).fix(format!(
            "check that Asterisk runs with the manager on {}:{} and that [ami] secret matches manager.conf's [{}]",
            cfg.host, cfg.port, cfg.username
        )),
    })
}

/// manager.conf (INI as Asterisk reads it: `key = value` or `key => value`, `;` comments,
/// repeated `read` lines adding up): the manager is enabled and `user` may read security.
pub fn manager_user_reads_security(text: &str, user: &str) -> Result<(), String> {
    let mut section = String::new();
    let mut enabled = false;
    let mut found = false;
    let mut reads: Vec<String> = vec![];
    for raw in text.lines() {
        let line = raw.split(';').next().unwrap_or("").trim();
        if let Some(name) = line.strip_prefix('[') {
            section = name.split(']').next().unwrap_or("").trim().to_owned();
            found |= section == user;
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let (k, v) = (k.trim(), v.trim_start_matches('>').trim());
        if section.eq_ignore_ascii_case("general") && k.eq_ignore_ascii_case("enabled") {
            enabled = matches!(v.to_ascii_lowercase().as_str(), "yes" | "true" | "on" | "1");
        }
        if section == user && k.eq_ignore_ascii_case("read") {
            reads.extend(v.split(',').map(|c| c.trim().to_ascii_lowercase()));
        }
    }
    if !enabled {
        return Err("the manager is not enabled ([general] enabled = yes)".into());
    }
    if !found {
        return Err(format!("no [{user}] user"));
    }
    if !reads.iter().any(|c| c == "security" || c == "all") {
        return Err(format!(
            "[{user}] may not read security events (read = {})",
            if reads.is_empty() {
                "nothing".to_owned()
            } else {
                reads.join(",")
            }
        ));
    }
    Ok(())
}

/// Log in (no events), and log off: the banner, or why not.
fn login(cfg: &crate::settings::AmiSettings) -> Result<String, String> {
    let mut s = crate::ami::client::login(cfg, "off", Some(Duration::from_secs(3)))?;
    let _ = s.stream.write_all(b"Action: Logoff\r\n\r\n");
    Ok(s.banner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manager_user_must_read_security() {
        let ok = "[general]\nenabled = yes\nbindaddr = 127.0.0.1\n\n[astpatch]\nsecret = s\nread = system\nread => security ; events\nwrite =\n";
        assert_eq!(manager_user_reads_security(ok, "astpatch"), Ok(()));
        assert!(
            manager_user_reads_security(&ok.replace("security", "call"), "astpatch")
                .unwrap_err()
                .contains("may not read security")
        );
        assert!(
            manager_user_reads_security(ok, "other")
                .unwrap_err()
                .contains("no [other]")
        );
        assert!(
            manager_user_reads_security(&ok.replace("enabled = yes", "enabled = no"), "astpatch")
                .unwrap_err()
                .contains("not enabled")
        );
        assert_eq!(
            manager_user_reads_security("[general]\nenabled=yes\n[a]\nread=all\n", "a"),
            Ok(())
        );
    }
}
