//! The LAPI over HTTP, as CrowdSec 1.4.6 answers it (shapes seen with curl against the real
//! daemon, see tests/common/crowdsec.rs):
//!
//! - `POST /v1/watchers/login` `{"machine_id","password"}` → `{"code":200,"expire":RFC3339,"token"}`
//!   (401 `{"message":"incorrect Username or Password"}`);
//! - `POST /v1/alerts` (Bearer) `[alert…]` → `["12", …]`, the new alert ids; an alert that
//!   carries decisions keeps them (the profiles only fill in alerts without any);
//! - `GET /v1/alerts/ID` (Bearer) → the alert with `decisions[].id`;
//! - `DELETE /v1/decisions/ID` (Bearer) → `{"nbDeleted":"1"}`; a bouncer key may not delete;
//! - `GET /v1/decisions/stream?startup=true` (`X-Api-Key`) → `{"new":[…]|null,"deleted":[…]|null}`,
//!   each `{"id","origin","scenario","scope","type","value","duration":"59m51.7s"}`; later
//!   calls without `startup` return what changed since this bouncer's previous pull.
//!
//! Why `ureq`: blocking (the fleet runs on a thread of its own, no async runtime to carry),
//! small, widely used and maintained, with rustls for an https LAPI across the fleet.
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What went wrong talking to the LAPI, in the words `status` shows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("LAPI unreachable: {0}")]
    Unreachable(String),
    #[error("LAPI refused us (HTTP {code}): {message}")]
    Refused { code: u16, message: String },
    #[error("LAPI answered something unexpected: {0}")]
    Protocol(String),
}

impl LinkError {
    pub fn is_auth(&self) -> bool {
        matches!(
            self,
            LinkError::Refused {
                code: 401 | 403,
                ..
            }
        )
    }
}

pub type LinkResult<T> = std::result::Result<T, LinkError>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub id: i64,
    #[serde(default)]
    pub origin: String,
    #[serde(default)]
    pub scenario: String,
    pub scope: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub value: String,
    /// Go's duration text: `59m51.747906665s`, `-14.75ms` (negative once deleted or expired).
    pub duration: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Stream {
    #[serde(default)]
    pub new: Option<Vec<Decision>>,
    #[serde(default)]
    pub deleted: Option<Vec<Decision>>,
}

/// One alert as `POST /v1/alerts` takes it (the fields 1.4.6 requires).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    pub scenario: String,
    pub scenario_hash: String,
    pub scenario_version: String,
    pub message: String,
    pub events_count: i32,
    pub start_at: String,
    pub stop_at: String,
    pub capacity: i32,
    pub leakspeed: String,
    pub simulated: bool,
    pub remediation: bool,
    pub source: Source,
    pub events: Vec<Event>,
    pub decisions: Vec<NewDecision>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Source {
    pub scope: String,
    pub value: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub range: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    pub timestamp: String,
    pub meta: Vec<Meta>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Meta {
    pub key: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewDecision {
    pub duration: String,
    pub origin: String,
    pub scenario: String,
    pub scope: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub value: String,
    pub simulated: bool,
}

/// The calls the fleet makes; [`Http`] is the real one, tests substitute their own.
pub trait Lapi: Send {
    /// A watcher token and its expiry (unix seconds).
    fn login(&mut self, machine_id: &str, password: &str) -> LinkResult<(String, i64)>;
    /// Alert ids, in order.
    fn push(&mut self, token: &str, alerts: &[Alert]) -> LinkResult<Vec<String>>;
    /// The decision ids an alert carries.
    fn alert_decisions(&mut self, token: &str, alert_id: &str) -> LinkResult<Vec<i64>>;
    /// Delete one decision; false when it was already gone.
    fn delete_decision(&mut self, token: &str, id: i64) -> LinkResult<bool>;
    fn stream(&mut self, api_key: &str, startup: bool) -> LinkResult<Stream>;
    /// Check a bouncer key without moving its stream on: a second `stream` caller with the
    /// same key would take the changes the watcher's next delta pull is owed (1.4.6 keeps
    /// one "last pull" per bouncer). `GET /v1/decisions?ip=` for an address of TEST-NET-1.
    fn probe_key(&mut self, api_key: &str) -> LinkResult<()>;
}

pub struct Http {
    base: String,
    agent: ureq::Agent,
}

impl Http {
    /// Short timeouts: a slow LAPI delays only the fleet thread, and the next round retries.
    pub fn new(base: &str) -> Http {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(3))
            .timeout(Duration::from_secs(30))
            .user_agent(concat!("astpatch/", env!("CARGO_PKG_VERSION")))
            .build();
        Http {
            base: base.trim_end_matches('/').to_owned(),
            agent,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

fn link_error(e: ureq::Error) -> LinkError {
    match e {
        ureq::Error::Status(code, resp) => {
            let body = resp.into_string().unwrap_or_default();
            let message = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["message"].as_str().map(str::to_owned))
                .unwrap_or(body);
            LinkError::Refused {
                code,
                message: message.trim().chars().take(200).collect(),
            }
        }
        ureq::Error::Transport(t) => LinkError::Unreachable(t.to_string()),
    }
}

fn json<T: serde::de::DeserializeOwned>(r: ureq::Response) -> LinkResult<T> {
    r.into_json::<T>()
        .map_err(|e| LinkError::Protocol(e.to_string()))
}

impl Lapi for Http {
    fn login(&mut self, machine_id: &str, password: &str) -> LinkResult<(String, i64)> {
        #[derive(Deserialize)]
        struct Answer {
            token: String,
            expire: String,
        }
        let r = self
            .agent
            .post(&self.url("/v1/watchers/login"))
            .send_json(serde_json::json!({"machine_id": machine_id, "password": password}))
            .map_err(link_error)?;
        let a: Answer = json(r)?;
        let now = crate::clock::now_secs();
        let tc = crate::logs::frame::TimeContext::utc(now);
        // Unparseable: assume the LAPI's default hour, renewed well before.
        let expire =
            crate::logs::frame::parse_date(a.expire.as_bytes(), &tc).map_or(now + 3600, |(t, _)| t);
        Ok((a.token, expire))
    }

    fn push(&mut self, token: &str, alerts: &[Alert]) -> LinkResult<Vec<String>> {
        let r = self
            .agent
            .post(&self.url("/v1/alerts"))
            .set("Authorization", &format!("Bearer {token}"))
            .send_json(alerts)
            .map_err(link_error)?;
        json(r)
    }

    fn alert_decisions(&mut self, token: &str, alert_id: &str) -> LinkResult<Vec<i64>> {
        let r = self
            .agent
            .get(&self.url(&format!("/v1/alerts/{alert_id}")))
            .set("Authorization", &format!("Bearer {token}"))
            .call()
            .map_err(link_error)?;
        let v: serde_json::Value = json(r)?;
        Ok(v["decisions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| d["id"].as_i64())
            .collect())
    }

    fn delete_decision(&mut self, token: &str, id: i64) -> LinkResult<bool> {
        let r = self
            .agent
            .delete(&self.url(&format!("/v1/decisions/{id}")))
            .set("Authorization", &format!("Bearer {token}"))
            .call();
        match r {
            Ok(r) => {
                let v: serde_json::Value = json(r)?;
                Ok(v["nbDeleted"].as_str().is_some_and(|n| n != "0"))
            }
            // 1.4.6 answers 500 "decision with id 'N' doesn't exist" for a gone one.
            Err(ureq::Error::Status(_, resp)) => {
                let body = resp.into_string().unwrap_or_default();
                if body.contains("doesn't exist") || body.contains("not found") {
                    Ok(false)
                } else {
                    Err(LinkError::Refused {
                        code: 500,
                        message: body.trim().chars().take(200).collect(),
                    })
                }
            }
            Err(e) => Err(link_error(e)),
        }
    }

    fn stream(&mut self, api_key: &str, startup: bool) -> LinkResult<Stream> {
        let path = if startup {
            "/v1/decisions/stream?startup=true"
        } else {
            "/v1/decisions/stream"
        };
        let r = self
            .agent
            .get(&self.url(path))
            .set("X-Api-Key", api_key)
            .call()
            .map_err(link_error)?;
        json(r)
    }

    fn probe_key(&mut self, api_key: &str) -> LinkResult<()> {
        self.agent
            .get(&self.url("/v1/decisions?ip=192.0.2.1"))
            .set("X-Api-Key", api_key)
            .call()
            .map_err(link_error)?;
        Ok(())
    }
}
