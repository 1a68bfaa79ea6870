//! What astpatch knows about Asterisk itself: which version a tree is and which chan_sip shape
//! that release ships, where a tree's files are, what its build configuration and
//! `asterisk.conf`/`logger.conf` say, and which Asterisk is running with which chan_sip loaded.
//! Nothing here changes anything.

pub mod conf;
pub mod logger_conf;
pub mod makeopts;
pub mod running;
pub mod tree;
pub mod version;
pub mod version_source;
pub mod versions_table;
