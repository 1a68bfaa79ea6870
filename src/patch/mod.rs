//! Patching `channels/chan_sip.c`: find every inbound failed-auth site by content ([`sites`]),
//! match it to the shape's unified diff ([`engine`]), apply all-or-nothing with a manifest that
//! makes revert exact ([`apply`], [`revert`], [`manifest`]), and stamp every patched line with
//! the tree's secret build tag ([`tag`]) so readers can tell it from a forgery.

pub mod apply;
pub mod detect;
pub mod engine;
pub mod manifest;
pub mod revert;
pub mod sites;
pub mod tag;
