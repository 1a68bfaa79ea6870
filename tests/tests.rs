//! Every integration test in one binary, a module per feature; `common` holds the shared
//! helpers (the binary under test, temp trees and settings, network namespaces, fixtures).
//! Tests that need root print `SKIP … needs root` when not root; with ASTPATCH_REQUIRE_ROOT=1
//! a skip is a failure.

mod common;

mod ami;
mod apply;
mod apply_hostile_fs;
mod asterisk_tags;
mod closed_pipe;
mod control;
mod corpus;
mod detect;
mod example_tree;
mod firewall;
mod fleet;
mod install;
mod log_formats;
mod mini_tree;
mod packaging;
mod provenance_fuzz;
mod real_captures;
mod real_tree;
mod rebuild;
mod recognise_fuzz;
mod running;
mod scan;
mod setup;
mod soak;
mod unprivileged;
mod verify;
mod watch;
