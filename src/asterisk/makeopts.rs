//! A configured tree's `makeopts`: `KEY = value` lines whose values refer to each other as
//! `${var}` or `$(var)` (`ASTMODDIR = ${libdir}/asterisk/modules`). Only what astpatch needs:
//! where `make install` puts modules.
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Parse the assignments of a makeopts text (later assignments win, as in make).
pub fn parse(text: &str) -> HashMap<String, String> {
    let mut vars = HashMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim_end_matches([':', '?', '+']).trim();
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            continue;
        }
        vars.insert(key.to_owned(), value.trim().to_owned());
    }
    vars
}

/// Expand `${X}` / `$(X)` references from `vars`; unknown names expand to nothing, as in make.
pub fn expand(value: &str, vars: &HashMap<String, String>) -> String {
    expand_depth(value, vars, 0)
}

fn expand_depth(value: &str, vars: &HashMap<String, String>, depth: usize) -> String {
    if depth > 16 {
        return value.to_owned();
    }
    let mut out = String::new();
    let mut rest = value;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let close = match after.chars().next() {
            Some('{') => '}',
            Some('(') => ')',
            _ => {
                out.push('$');
                rest = after;
                continue;
            }
        };
        let Some(end) = after.find(close) else {
            out.push_str(&rest[at..]);
            return out;
        };
        let name = &after[1..end];
        if let Some(v) = vars.get(name) {
            out.push_str(&expand_depth(v, vars, depth + 1));
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// The module directory `make install` uses: `ASTMODDIR` (10 and later), else
/// `ASTLIBDIR/modules` (1.8), else `libdir/asterisk/modules` (1.4, 1.6).
pub fn moddir(text: &str) -> Option<PathBuf> {
    let vars = parse(text);
    let get = |k: &str| {
        vars.get(k)
            .map(|v| expand(v, &vars))
            .filter(|v| !v.is_empty())
    };
    if let Some(d) = get("ASTMODDIR") {
        return Some(PathBuf::from(d));
    }
    if let Some(d) = get("ASTLIBDIR") {
        return Some(Path::new(&d).join("modules"));
    }
    get("libdir").map(|d| Path::new(&d).join("asterisk/modules"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_era_names_its_module_dir() {
        let eleven = "CC=gcc\nprefix = /usr\nexec_prefix = ${prefix}\nlibdir = ${exec_prefix}/lib\nASTLIBDIR = ${libdir}\nASTMODDIR = ${libdir}/asterisk/modules\n";
        assert_eq!(
            moddir(eleven).unwrap(),
            Path::new("/usr/lib/asterisk/modules")
        );
        let one_eight = "prefix = /opt/ast\nexec_prefix = ${prefix}\nlibdir = ${exec_prefix}/lib64\nASTLIBDIR = ${libdir}/asterisk\n";
        assert_eq!(
            moddir(one_eight).unwrap(),
            Path::new("/opt/ast/lib64/asterisk/modules")
        );
        let one_four =
            "prefix = /usr/local\nexec_prefix = $(prefix)\nlibdir = $(exec_prefix)/lib\n";
        assert_eq!(
            moddir(one_four).unwrap(),
            Path::new("/usr/local/lib/asterisk/modules")
        );
        assert_eq!(moddir("# nothing\n"), None);
    }

    #[test]
    fn expansion_survives_loops_and_odd_text() {
        let vars = parse("a = ${b}\nb = ${a}x\nplain = 5$\n");
        let _ = expand("${a}", &vars); // terminates
        assert_eq!(expand("cost $5 ${plain}", &vars), "cost $5 5$");
        assert_eq!(expand("${unclosed", &vars), "${unclosed");
        assert_eq!(expand("${nope}/x", &vars), "/x");
    }
}
