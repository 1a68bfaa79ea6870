//! The fleet's part of `astpatch status`, as text (the data is [`crate::fleet::status`]).
use std::time::Duration;

use crate::cli::output::Style;
use crate::fleet::status::{FleetStatus, ago};

pub fn print_fleet(f: &FleetStatus, now: i64, style: Style) {
    match &f.link {
        None => println!(
            "Fleet (CrowdSec):   {} (no link yet: the watcher with --ban starts it)",
            f.url
        ),
        Some(l) => {
            println!(
                "Fleet (CrowdSec):   {} (push {}, pull {}); last pull {}, last push {}",
                f.url,
                if l.push { "on" } else { "off" },
                if l.pull { "on" } else { "off" },
                ago(l.last_pull, now),
                ago(l.last_push, now)
            );
            println!(
                "Fleet decisions:    {} held, {} enforced here, {} refused (protected addresses)",
                l.decisions_held, l.enforced, l.refused
            );
            println!(
                "Fleet pushes:       {} queued, {} unbans queued",
                l.pushes_queued, l.deletes_queued
            );
            match &l.last_error {
                Some(e) => println!(
                    "Fleet last error:   {} ({})",
                    style.bad(e),
                    ago(l.last_error_at, now)
                ),
                None => println!("Fleet last error:   {}", style.ok("none")),
            }
        }
    }
    println!("Fleet bans ({}):", f.bans.len());
    for b in &f.bans {
        println!(
            "  {:<24} {:<14} {} ({}){}",
            b.net.to_string(),
            format!(
                "{} left",
                crate::duration::format(Duration::from_secs(b.expires_in.max(0) as u64))
            ),
            b.origin,
            b.scenario,
            match (&b.refused, b.lifted) {
                (Some(why), _) => format!("  not enforced: {why}"),
                (None, true) => "  lifted here".into(),
                (None, false) => String::new(),
            }
        );
    }
}
