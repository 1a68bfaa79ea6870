//! Asterisk's security events straight from the Asterisk Manager Interface: a second source
//! of failures beside the log files, whose fields cannot be spliced into each other because
//! each arrives on its own line. [`message`] frames and parses AMI's `Key: Value` blocks;
//! [`security`] decides, per event and service, whether the address is one Asterisk took from
//! the packet or TCP peer (believed) or one the sender steers (chan_sip's, never believed);
//! [`client`] logs in, subscribes to the security class only, and reconnects with backoff on
//! its own thread, so the watcher loop never waits on the network.
//!
//! Asterisk 11's manager has no security class: there, logs are the only source.

pub mod client;
pub mod message;
pub mod security;
