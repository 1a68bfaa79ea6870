//! Which security events are failed attempts, and whether their `RemoteAddress` names the
//! sender. Field provenance, checked against each service's source:
//!
//! | service | RemoteAddress comes from | believed |
//! |---|---|---|
//! | `PJSIP` (res_pjsip/security_events.c) | the packet's source (`rdata->pkt_info.src_name`/`src_port`) | yes |
//! | `AMI` (main/manager.c) | the manager session's TCP peer | yes |
//! | `SIP` (chan_sip) | the dialog's `p->sa`, which `check_via()` sets from the Via header's `maddr=` | **never**: the sender chooses it |
//! | anything else | not checked | no |
//!
//! AccountID and SessionID are the sender's text. A value that carried a CRLF would add fields
//! of the sender's own: [`super::message::parse`] refuses a block with a key given twice, so a
//! spliced `RemoteAddress` (which precedes the real one only when injected into AccountID or
//! SessionID) never survives.
use std::net::IpAddr;

use super::message::{Malformed, Message};
use crate::logs::recognise::security_addr;

/// The security events that are failed attempts.
pub const FAILURES: [&str; 9] = [
    "InvalidAccountID",
    "InvalidPassword",
    "ChallengeResponseFailed",
    "FailedACL",
    "RequestNotAllowed",
    "AuthMethodNotAllowed",
    "RequestBadFormat",
    "UnexpectedAddress",
    "InvalidTransport",
];

/// What one AMI message says, for banning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A failed attempt from `addr`, which Asterisk took from the packet or the TCP peer.
    Failure {
        event: String,
        service: String,
        addr: IpAddr,
        /// EventTV, in unix seconds.
        time: Option<i64>,
    },
    /// A failure whose address the sender steers, or of a service whose source is unknown.
    Untrusted { event: String, service: String },
    /// A failure event without a readable RemoteAddress.
    NoAddress { event: String, service: String },
    /// Any other message (a response, SuccessfulAuth, ChallengeSent…).
    NotFailure,
    /// A block that is no well-formed message (see [`Malformed`]).
    Refused(Malformed),
}

/// Services whose RemoteAddress is the packet's or the TCP peer's.
fn trusted(service: &str) -> bool {
    matches!(service, "PJSIP" | "AMI")
}

/// Judge one message.
pub fn judge(msg: &Message) -> Verdict {
    let Some(event) = msg.get("Event") else {
        return Verdict::NotFailure;
    };
    if !FAILURES.contains(&event) {
        return Verdict::NotFailure;
    }
    let event = event.to_owned();
    let service = msg.get("Service").unwrap_or("").to_owned();
    if !trusted(&service) {
        return Verdict::Untrusted { event, service };
    }
    let Some(addr) = msg
        .get("RemoteAddress")
        .and_then(|v| security_addr(v.as_bytes()))
    else {
        return Verdict::NoAddress { event, service };
    };
    Verdict::Failure {
        event,
        service,
        addr,
        time: msg.get("EventTV").and_then(event_tv),
    }
}

/// Judge one raw block.
pub fn judge_block(block: &[u8]) -> Verdict {
    match super::message::parse(block) {
        Ok(m) => judge(&m),
        Err(e) => Verdict::Refused(e),
    }
}

/// `2026-11-30T05:39:47.285+0000` (or `…Z`) in unix seconds.
pub fn event_tv(v: &str) -> Option<i64> {
    let b = v.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> { v.get(r)?.parse().ok() };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let mut rest = &v[19..];
    if let Some(r) = rest.strip_prefix('.') {
        rest = r.trim_start_matches(|c: char| c.is_ascii_digit());
    }
    let offset = match rest {
        "" | "Z" => 0,
        _ => {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let hhmm = rest[1..].replace(':', "");
            if hhmm.len() != 4 || !hhmm.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            let hh: i64 = hhmm[..2].parse().ok()?;
            let mm: i64 = hhmm[2..].parse().ok()?;
            sign * (hh * 3600 + mm * 60)
        }
    };
    let days = crate::logs::frame::days_from_civil(y, mo as u32, d as u32);
    Some(days * 86_400 + h * 3600 + mi * 60 + s - offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(service: &str, remote: &str) -> Vec<u8> {
        format!(
            "Event: InvalidPassword\r\nPrivilege: security,all\r\nEventTV: 2026-11-30T05:39:47.302+0000\r\nSeverity: Error\r\nService: {service}\r\nEventVersion: 2\r\nAccountID: 100\r\nSessionID: 0x7f\r\nLocalAddress: IPV4/UDP/203.0.113.1/5060\r\nRemoteAddress: {remote}\r\nChallenge: 1\r\nReceivedChallenge: 1\r\nReceivedHash: ab"
        )
        .into_bytes()
    }

    #[test]
    fn pjsip_and_ami_failures_name_the_sender_chan_sips_never() {
        let v = judge_block(&block("PJSIP", "IPV4/UDP/10.96.0.2/5071"));
        assert_eq!(
            v,
            Verdict::Failure {
                event: "InvalidPassword".into(),
                service: "PJSIP".into(),
                addr: "10.96.0.2".parse().unwrap(),
                time: Some(1_796_017_187),
            }
        );
        let v = judge_block(&block("AMI", "IPV6/TCP/fd00:96::2/41222"));
        assert!(
            matches!(v, Verdict::Failure { addr, .. } if addr == "fd00:96::2".parse::<IpAddr>().unwrap())
        );
        // chan_sip's RemoteAddress is the Via maddr the sender chose.
        assert_eq!(
            judge_block(&block("SIP", "IPV4/UDP/192.0.2.1/5060")),
            Verdict::Untrusted {
                event: "InvalidPassword".into(),
                service: "SIP".into()
            }
        );
        assert_eq!(
            judge_block(&block("IAX2", "IPV4/UDP/192.0.2.1/4569")),
            Verdict::Untrusted {
                event: "InvalidPassword".into(),
                service: "IAX2".into()
            }
        );
        assert!(matches!(
            judge_block(&block("PJSIP", "nonsense")),
            Verdict::NoAddress { .. }
        ));
        assert_eq!(
            judge_block(b"Event: SuccessfulAuth\r\nService: PJSIP\r\nRemoteAddress: IPV4/UDP/10.96.0.3/5060"),
            Verdict::NotFailure
        );
        assert_eq!(
            judge_block(b"Response: Success\r\nMessage: Authentication accepted"),
            Verdict::NotFailure
        );
    }

    #[test]
    fn an_account_id_with_crlf_cannot_bring_its_own_address() {
        let b = b"Event: InvalidAccountID\r\nService: PJSIP\r\nAccountID: x\r\nRemoteAddress: IPV4/UDP/192.0.2.1/5060\r\nSessionID: s\r\nLocalAddress: IPV4/UDP/203.0.113.1/5060\r\nRemoteAddress: IPV4/UDP/10.96.0.2/5060";
        assert!(matches!(
            judge_block(b),
            Verdict::Refused(Malformed::Duplicate(_))
        ));
        // An empty line inside AccountID ends the event early and starts a block of the
        // sender's own; Asterisk's fields after AccountID, the real RemoteAddress among them,
        // land in that block too, so it holds the key twice and is refused.
        let forged = b"Event: InvalidAccountID\r\nService: PJSIP\r\nRemoteAddress: IPV4/UDP/192.0.2.1/5060\r\nSessionID: s\r\nRemoteAddress: IPV4/UDP/10.96.0.2/5060";
        assert!(matches!(judge_block(forged), Verdict::Refused(_)));
    }

    #[test]
    fn event_times() {
        assert_eq!(
            event_tv("2026-11-30T05:39:47.302+0000"),
            Some(1_796_017_187)
        );
        assert_eq!(event_tv("2026-11-30T06:39:47+0100"), Some(1_796_017_187));
        assert_eq!(event_tv("2026-11-30T05:39:47Z"), Some(1_796_017_187));
        assert_eq!(event_tv("2026-13-30T05:39:47Z"), None);
        assert_eq!(event_tv("yesterday"), None);
    }
}
