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
//! | [`firewall`] | iptables, ipset, nftables backends behind one trait | runs firewall commands |
//! | [`ban`] | counting failures, ban policy, trust in a line's tail, durable state, the watcher engine, scan | journal and state files |
//! | [`verify`] | the whole chain, link by link | reads everything, changes nothing |
//! | [`cli`] | arguments, output, one file per command: parse, call, print | terminal |
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
