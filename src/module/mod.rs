//! From patched source to the module Asterisk loads: rebuild chan_sip.so alone ([`build`]) and
//! install it beside a backup by rename, so the modules directory never holds half a file
//! ([`install`]).

pub mod build;
pub mod install;
pub mod target;
