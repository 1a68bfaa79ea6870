//! Log lines in, failures out. [`read`] and [`follow`] deliver whole lines (rotation,
//! truncation, gzip); [`frame`] splits off the date/level/thread/file frame of every Asterisk
//! and syslog style; [`recognise`] says which messages are failed logins and whom they blame,
//! taking the address only from a field Asterisk writes; [`provenance`] says which physical
//! lines Asterisk can only have written whole.

pub mod follow;
pub mod frame;
pub mod provenance;
pub mod read;
pub mod recognise;
