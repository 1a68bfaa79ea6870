//! Presentation of `astpatch detect`.
use std::path::Path;

use crate::cli::output::{Style, print_json};
use crate::error::Result;
use crate::exit_codes;
use crate::patch::detect::{self, DetectReport, TagState};
use crate::patch::sites::{PatchState, SiteKind};

/// Exit 0 when a patch fits the file (or it is already patched), 1 when astpatch could not
/// patch it (no inbound sites, or sites in a shape it does not know).
pub fn run(src: &Path, json: bool, style: Style) -> Result<u8> {
    let report = detect::detect(src)?;
    if json {
        print_json(&report);
    } else {
        print_text(&report, style);
    }
    let fits = report.patch.is_some() || report.state == PatchState::Patched;
    Ok(if fits {
        exit_codes::SUCCESS
    } else {
        exit_codes::CHECK_FAILED
    })
}

fn print_text(r: &DetectReport, style: Style) {
    let label = |s: &str| style.bold(&format!("{s:<9}"));
    println!("{} {}", label("tree"), r.tree.display());
    println!(
        "{} {} (from {})",
        label("version"),
        r.version.raw,
        r.version.source
    );
    let notes = r
        .series_notes
        .as_deref()
        .map(|n| format!("; {n}"))
        .unwrap_or_default();
    println!(
        "{} {}, chan_sip {}{notes}",
        label("series"),
        r.series,
        r.chan_sip
    );
    let shape = match (&r.shape, &r.expected_shape) {
        (Some(got), Some(want)) if got == want => {
            format!(
                "{got} (as expected for {}, confirmed by content)",
                r.version.raw
            )
        }
        (Some(got), Some(want)) => format!(
            "{got} (by content; version {} suggests {want})",
            r.version.raw
        ),
        (Some(got), None) => format!("{got} (by content)"),
        (None, _) if r.sites.is_empty() => "none: no inbound failure is logged".to_owned(),
        (None, _) => "unknown: these sites match no known shape".to_owned(),
    };
    println!("{} {shape}", label("shape"));
    if let Some(api) = r.address_api {
        println!(
            "{} {}",
            label("address"),
            serde_json::to_value(api)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default()
        );
    }
    println!(
        "{} {}",
        label("patch"),
        r.patch.as_deref().unwrap_or("none fits")
    );
    let patched = r.sites.iter().filter(|s| s.patched).count();
    let state = format!(
        "{}: {patched} of {} inbound sites carry the source address",
        r.state,
        r.sites.len()
    );
    let state = match r.state {
        PatchState::Patched => style.ok(&state),
        PatchState::NoSites => state,
        _ => style.warn(&state),
    };
    println!("{} {state}", label("state"));
    let tagged = r
        .sites
        .iter()
        .filter(|s| s.tag.is_some() && s.tag == r.tag)
        .count();
    let again = format!(
        "re-run `astpatch apply {}` to add the tag the watcher needs",
        r.tree.display()
    );
    let tag_line = match (r.tag_state, r.tag) {
        (TagState::NoSites, _) => None,
        (TagState::Unpatched, _) => Some("none (unpatched)".to_owned()),
        (TagState::Tagged, Some(t)) => Some(style.ok(&format!(
            "{t}: every site ends its message with [astpatch:{t}]"
        ))),
        (TagState::Untagged, _) => Some(style.warn(&format!(
            "none: patched without tag, so the watcher does not trust these lines by default; {again}"
        ))),
        (_, t) => Some(style.warn(&format!(
            "mixed: {tagged} of {} sites carry the tree's tag {}; {again}",
            r.sites.len(),
            t.map(|t| t.to_string()).unwrap_or_else(|| "(none)".into())
        ))),
    };
    if let Some(line) = tag_line {
        println!("{} {line}", label("tag"));
    }
    if !r.sites.is_empty() {
        println!();
        println!("  {:>6}  {:<34} {:<12} patched", "line", "function", "kind");
        for s in &r.sites {
            let kind = match s.kind {
                SiteKind::FailedAuth => "failed-auth",
                SiteKind::FakeAuth => "fake-auth",
            };
            let yes = match (s.patched, s.tag) {
                (true, Some(t)) if Some(t) == r.tag => style.ok("yes, tagged"),
                (true, Some(_)) => style.warn("yes, other tag"),
                (true, None) => style.warn("yes, no tag"),
                (false, _) => style.warn("no"),
            };
            println!("  {:>6}  {:<34} {:<12} {yes}", s.line, s.function, kind);
        }
    }
    for w in &r.warnings {
        eprintln!("{} {w}", style.warn("warning:"));
    }
    match r.state {
        PatchState::Unpatched | PatchState::PartlyPatched if r.patch.is_some() => {
            println!();
            println!("next: astpatch apply --dry-run {}", r.tree.display());
        }
        PatchState::Patched
            if r.patch.is_some() && matches!(r.tag_state, TagState::Untagged | TagState::Mixed) =>
        {
            println!();
            println!("next: astpatch apply {}", r.tree.display());
        }
        _ => {}
    }
}
