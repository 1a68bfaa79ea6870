//! A fleet of PBXes sharing bans through a real CrowdSec Local API (issue 14). No mock: Debian's
//! crowdsec 1.4.6 runs as `crowdsec -no-cs` on sqlite in a temp dir (tests/common/crowdsec.rs).
mod common;

use common::crowdsec::{Lapi, require_crowdsec};

/// The harness itself: a LAPI comes up, takes a machine and a bouncer, and both can log in
/// or pull; the decisions list starts empty.
#[test]
fn lapi_harness_starts_and_takes_a_machine_and_a_bouncer() {
    if !require_crowdsec("lapi_harness_starts_and_takes_a_machine_and_a_bouncer") {
        return;
    }
    let lapi = Lapi::start(None, "127.0.0.1");
    lapi.add_machine("pbx-a", "pbx-a-password-0123456789");
    let key = lapi.add_bouncer("astpatch-pbx-a");
    assert!(!key.is_empty());
    assert!(lapi.decisions().is_empty());
    lapi.cscli_ok(&[
        "decisions",
        "add",
        "--ip",
        "198.51.100.9",
        "--duration",
        "1h",
    ]);
    let d = lapi.decisions();
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].0, "198.51.100.9");
    assert_eq!(d[0].1, "cscli");
}
