//! `[crowdsec]`: the Local API this PBX shares its bans through. Secrets may sit in files of
//! their own (mode 600, outside the world-readable settings file); they are read at start.
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Crowdsec {
    /// The LAPI, e.g. `http://127.0.0.1:8080`.
    pub url: String,
    /// The watcher machine (`cscli machines add ID --password …`); needed to push.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// The bouncer key (`cscli bouncers add NAME`); needed to pull.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_file: Option<PathBuf>,
    #[serde(
        default = "default_pull_every",
        with = "crate::settings::duration_serde"
    )]
    pub pull_every: Duration,
    /// Send our bans to the fleet.
    #[serde(default = "yes")]
    pub push: bool,
    /// Enforce the fleet's bans here.
    #[serde(default = "yes")]
    pub pull: bool,
}

fn default_pull_every() -> Duration {
    Duration::from_secs(10)
}

fn yes() -> bool {
    true
}

/// The secrets, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub machine: Option<(String, String)>,
    pub api_key: Option<String>,
}

impl Crowdsec {
    /// Checks that need no file: the settings file is rejected at load when these fail.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let url = self.url.trim_end_matches('/');
        if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() < 10 {
            return Err(format!(
                "crowdsec.url: \"{}\" is not an http:// or https:// URL",
                self.url
            ));
        }
        if self.pull_every < Duration::from_secs(1) {
            return Err("crowdsec.pull_every: must be at least 1s".into());
        }
        if self.password.is_some() && self.password_file.is_some() {
            return Err("crowdsec: set password or password_file, not both".into());
        }
        if self.api_key.is_some() && self.api_key_file.is_some() {
            return Err("crowdsec: set api_key or api_key_file, not both".into());
        }
        if self.push {
            if self.machine_id.as_deref().is_none_or(str::is_empty) {
                return Err("crowdsec.machine_id: needed to push (or push = false)".into());
            }
            if self.password.is_none() && self.password_file.is_none() {
                return Err(
                    "crowdsec: push needs password or password_file (or push = false)".into(),
                );
            }
        }
        if self.pull && self.api_key.is_none() && self.api_key_file.is_none() {
            return Err("crowdsec: pull needs api_key or api_key_file (or pull = false)".into());
        }
        Ok(())
    }

    pub fn base_url(&self) -> &str {
        self.url.trim_end_matches('/')
    }

    /// Read the secret files (first line, trimmed).
    pub fn credentials(&self) -> Result<Credentials> {
        let read = |inline: &Option<String>, file: &Option<PathBuf>| -> Result<Option<String>> {
            match (inline, file) {
                (Some(v), _) => Ok(Some(v.clone())),
                (None, Some(p)) => read_secret(p).map(Some),
                (None, None) => Ok(None),
            }
        };
        let password = if self.push {
            read(&self.password, &self.password_file)?
        } else {
            None
        };
        let api_key = if self.pull {
            read(&self.api_key, &self.api_key_file)?
        } else {
            None
        };
        Ok(Credentials {
            machine: self.machine_id.clone().zip(password),
            api_key,
        })
    }
}

fn read_secret(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let s = text.lines().next().unwrap_or("").trim().to_owned();
    if s.is_empty() {
        return Err(Error::input(
            format!("{}: empty secret file", path.display()),
            Some("write the password or bouncer key on its first line"),
        ));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(t: &str) -> Crowdsec {
        toml::from_str(t).unwrap()
    }

    #[test]
    fn defaults_push_and_pull_every_10s() {
        let c = parse(
            "url = \"http://127.0.0.1:8080\"\nmachine_id = \"a\"\npassword = \"p\"\napi_key = \"k\"",
        );
        assert!(c.push && c.pull);
        assert_eq!(c.pull_every, Duration::from_secs(10));
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(
            c.credentials().unwrap(),
            Credentials {
                machine: Some(("a".into(), "p".into())),
                api_key: Some("k".into())
            }
        );
    }

    #[test]
    fn what_is_missing_for_push_or_pull_is_named() {
        let c = parse("url = \"http://x:8080\"\napi_key = \"k\"");
        assert!(c.validate().unwrap_err().contains("machine_id"));
        let c = parse("url = \"http://x:8080\"\napi_key = \"k\"\npush = false");
        assert_eq!(c.validate(), Ok(()));
        let c = parse("url = \"http://x:8080\"\npush = false");
        assert!(c.validate().unwrap_err().contains("api_key"));
        let c = parse("url = \"ftp://x\"\npush = false\npull = false");
        assert!(c.validate().unwrap_err().contains("crowdsec.url"));
        let c = parse(
            "url = \"http://x:8080\"\nmachine_id = \"a\"\npassword = \"p\"\npassword_file = \"/f\"\npull = false",
        );
        assert!(c.validate().unwrap_err().contains("not both"));
    }

    #[test]
    fn secrets_come_from_their_files_first_line() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("pw"), "s3cret\n").unwrap();
        std::fs::write(d.path().join("key"), "").unwrap();
        let c = Crowdsec {
            url: "http://x:8080".into(),
            machine_id: Some("a".into()),
            password: None,
            password_file: Some(d.path().join("pw")),
            api_key: None,
            api_key_file: Some(d.path().join("key")),
            pull_every: Duration::from_secs(10),
            push: true,
            pull: true,
        };
        let e = c.credentials().unwrap_err().to_string();
        assert!(e.contains("empty secret"), "{e}");
        std::fs::write(d.path().join("key"), "abc \n").unwrap();
        let cr = c.credentials().unwrap();
        assert_eq!(cr.machine, Some(("a".into(), "s3cret".into())));
        assert_eq!(cr.api_key.as_deref(), Some("abc"));
    }
}
