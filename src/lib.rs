//! astpatch: make Asterisk's chan_sip log the real source address of failed logins, prove the
//! chain, and ban the offenders through the firewall.
//!
//! The tree is the pipeline, one folder per stage; dependencies point down this list, never up:
//!
//! | stage | what it knows | effects |
//! |---|---|---|
//! | [`asterisk`] | versions, source trees, `makeopts`, `asterisk.conf`, `logger.conf`, the running process | reads files and `/proc` |
//! | [`patch`] | every inbound failed-auth site of every chan_sip shape; apply, revert, manifest, the build tag | rewrites `chan_sip.c` atomically |
//! | [`module`] | build chan_sip.so only, install it by rename | runs `make`, writes the modules dir |
//! | [`logs`] | read and follow log files, line frames, which lines are failures and whom they blame, line provenance | reads files |
//! | [`ami`] | Asterisk's security events over the manager interface, and whose address each service's events carry | a TCP connection to the manager |
//! | [`firewall`] | iptables, ipset, nftables backends behind one trait | runs firewall commands |
//! | [`ban`] | counting failures, ban policy, trust in a line's tail, durable state, the watcher engine, scan | journal and state files |
//! | [`fleet`] | sharing bans with other PBXes through CrowdSec's Local API: push, pull, fleet-only firewall objects | HTTP to the LAPI, its own firewall objects |
//! | [`verify`] | the whole chain, link by link | reads everything, changes nothing |
//! | [`cli`] | arguments, output, one file per command: parse, call, print | terminal |
//!
//! One exception to "down the list": `ban::control` (ban, unban, status) also reads and lifts the
//! fleet's records, so an unban or a status covers both origins.
//!
//! Beneath them all: [`settings`] (the one settings file, every command's overrides),
//! [`error`] and [`exit_codes`], [`atomic`] (crash-safe file replacement), [`clock`] and
//! [`duration`].
//!
//! Pure logic (version parsing, patch matching, log recognition, provenance, trust, ban decisions)
//! is free of side effects; files, `make`, the firewall and the clock sit behind small traits so
//! the logic is unit-tested fast and the effects are integration-tested for real.

pub mod ami;
pub mod asterisk;
pub mod atomic;
pub mod ban;
pub mod cli;
pub mod clock;
pub mod duration;
pub mod error;
pub mod exit_codes;
pub mod firewall;
pub mod fleet;
pub mod logs;
pub mod module;
pub mod patch;
pub mod settings;
pub mod verify;
