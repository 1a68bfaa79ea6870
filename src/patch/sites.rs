//! Finds every inbound failed-authentication log statement in a chan_sip.c, by content.
//!
//! chan_sip.c is treated as bytes: real releases contain Latin-1 in comments, and vendors ship
//! CRLF copies. Nothing here allocates per byte of the file; the scan is a few memchr passes.
use std::ops::Range;

use memchr::memmem;
use serde::{Deserialize, Serialize};

/// The two inbound log statements that must carry the source address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SiteKind {
    /// `Failed to authenticate user|device %s…`
    FailedAuth,
    /// `Sending fake auth rejection for user|device %s` (alwaysauthreject on, unknown peer):
    /// the line scanners trigger most, so it needs the address as much as the other.
    FakeAuth,
}

/// Which noun the release uses; 1.2–1.4 say "user", 1.6 and later "device".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Wording {
    User,
    Device,
}

/// How the file turns the request's source into text; decides the address expression we add.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AddressApi {
    /// 0.x: libc `inet_ntoa(sin->sin_addr)`.
    InetNtoa,
    /// 1.0–1.2: `ast_inet_ntoa(buf, len, sin->sin_addr)`.
    AstInetNtoaBuf,
    /// 1.4–1.6: `ast_inet_ntoa(sin->sin_addr)`.
    AstInetNtoa,
    /// 1.8 and later: `ast_sockaddr_stringify(addr)`, which prints `[v6]:port` for IPv6.
    AstSockaddr,
}

/// One inbound log statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Site {
    /// The C function the statement sits in.
    pub function: String,
    /// 1-based line of the `ast_log(` that starts the statement.
    pub line: usize,
    pub kind: SiteKind,
    pub wording: Wording,
    /// True when the format already carries an address right after the From header.
    pub patched: bool,
    /// Byte range of the whole statement, `ast_log(` through `;`.
    #[serde(skip)]
    pub span: Range<usize>,
}

impl Site {
    /// The statement with whitespace outside string literals removed: how hunks are compared,
    /// so re-indentation and re-wrapping between releases do not matter.
    pub fn normalized(&self, src: &[u8]) -> Vec<u8> {
        normalize(&src[self.span.clone()])
    }
}

/// Everything the scanner learned from one chan_sip.c.
#[derive(Debug, Clone, Serialize)]
pub struct SiteScan {
    pub sites: Vec<Site>,
    pub address_api: Option<AddressApi>,
    /// `sip_get_header` (10.0 on) or the older `get_header`.
    pub header_getter: Option<&'static str>,
}

/// Overall state of a file, as `detect` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PatchState {
    NoSites,
    Unpatched,
    PartlyPatched,
    Patched,
}

impl std::fmt::Display for PatchState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PatchState::NoSites => "no inbound sites",
            PatchState::Unpatched => "unpatched",
            PatchState::PartlyPatched => "partly patched",
            PatchState::Patched => "patched",
        })
    }
}

impl SiteScan {
    pub fn state(&self) -> PatchState {
        let patched = self.sites.iter().filter(|s| s.patched).count();
        match (self.sites.len(), patched) {
            (0, _) => PatchState::NoSites,
            (_, 0) => PatchState::Unpatched,
            (n, p) if n == p => PatchState::Patched,
            _ => PatchState::PartlyPatched,
        }
    }

    /// The shape (see `asterisk-versions.json` and the README) this file's sites imply.
    /// `None` when the combination was never seen in a release.
    pub fn shape(&self) -> Option<&'static str> {
        let has = |f: &str| self.sites.iter().any(|s| s.function == f);
        let fake = self.sites.iter().any(|s| s.kind == SiteKind::FakeAuth);
        let wording = self.sites.first()?.wording;
        if has("send_check_user_failure_response") {
            return Some("8");
        }
        if has("handle_request") {
            return Some("0");
        }
        let message = has("receive_message");
        match (self.header_getter?, wording) {
            ("get_header", Wording::User) => Some(if fake { "2" } else { "1" }),
            ("get_header", Wording::Device) => {
                if !has("handle_request_publish") && !has("handle_request_options") {
                    fake.then_some("3")
                } else {
                    Some(match (fake, message) {
                        (true, false) => "4",
                        (true, true) => "4c",
                        (false, false) => "5",
                        (false, true) => "5c",
                    })
                }
            }
            ("sip_get_header", Wording::Device) => Some(if fake { "6" } else { "7" }),
            _ => None,
        }
    }
}

const NEEDLES: [(&[u8], SiteKind, Wording); 4] = [
    (
        b"\"Failed to authenticate user %s",
        SiteKind::FailedAuth,
        Wording::User,
    ),
    (
        b"\"Failed to authenticate device %s",
        SiteKind::FailedAuth,
        Wording::Device,
    ),
    (
        b"\"Sending fake auth rejection for user %s",
        SiteKind::FakeAuth,
        Wording::User,
    ),
    (
        b"\"Sending fake auth rejection for device %s",
        SiteKind::FakeAuth,
        Wording::Device,
    ),
];

/// Scan a chan_sip.c.
pub fn scan(src: &[u8]) -> SiteScan {
    let functions = function_definitions(src);
    let mut sites = Vec::new();
    for (needle, kind, wording) in NEEDLES {
        for at in memmem::find_iter(src, needle) {
            let Some(span) = statement_around(src, at) else {
                continue;
            };
            let function = functions
                .iter()
                .take_while(|(offset, _)| *offset < span.start)
                .last()
                .map(|(_, name)| name.clone())
                .unwrap_or_default();
            let after = &src[at + needle.len()..];
            // Patched formats continue `%s (%s`; anything else after the From is stock text.
            let patched = after.starts_with(b" (%s");
            let line = memchr::memchr_iter(b'\n', &src[..span.start]).count() + 1;
            sites.push(Site {
                function,
                line,
                kind,
                wording,
                patched,
                span,
            });
        }
    }
    sites.sort_by_key(|s| s.span.start);
    sites.dedup_by_key(|s| s.span.start);
    SiteScan {
        sites,
        address_api: address_api(src),
        header_getter: header_getter(src),
    }
}

fn header_getter(src: &[u8]) -> Option<&'static str> {
    if memmem::find(src, b"sip_get_header(req, \"From\")").is_some() {
        Some("sip_get_header")
    } else if memmem::find(src, b"get_header(req, \"From\")").is_some() {
        Some("get_header")
    } else {
        None
    }
}

fn address_api(src: &[u8]) -> Option<AddressApi> {
    if memmem::find(src, b"ast_sockaddr_stringify(").is_some() {
        return Some(AddressApi::AstSockaddr);
    }
    let mut one_arg = false;
    for at in memmem::find_iter(src, b"ast_inet_ntoa(") {
        let args = &src[at + b"ast_inet_ntoa(".len()..];
        let end = args
            .iter()
            .position(|&b| b == b')' || b == b'\n')
            .unwrap_or(args.len());
        if memmem::find(&args[..end], b"sizeof").is_some() {
            return Some(AddressApi::AstInetNtoaBuf);
        }
        one_arg = true;
    }
    if one_arg {
        return Some(AddressApi::AstInetNtoa);
    }
    memmem::find(src, b"inet_ntoa(").map(|_| AddressApi::InetNtoa)
}

/// The `ast_log(`…`;` statement containing the string literal that starts at `at`.
fn statement_around(src: &[u8], at: usize) -> Option<Range<usize>> {
    // Back to `ast_log(` on the same or a previous line, stopping at any statement boundary.
    let window_start = at.saturating_sub(400);
    let before = &src[window_start..at];
    let call = memmem::rfind(before, b"ast_log(")? + window_start;
    if src[call..at]
        .iter()
        .any(|&b| b == b';' || b == b'{' || b == b'}')
    {
        return None;
    }
    // Forward: balance parentheses, skipping string and character literals.
    let mut depth = 0i32;
    let mut i = call + b"ast_log".len();
    let limit = (at + 2000).min(src.len());
    while i < limit {
        match src[i] {
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth == 0 {
                    let rest = &src[i + 1..limit];
                    let semi = rest.iter().position(|&b| !b.is_ascii_whitespace())?;
                    return (rest[semi] == b';').then(|| call..i + 1 + semi + 1);
                }
            }
            b'"' | b'\'' => i = skip_literal(src, i)?,
            _ => {}
        }
        i += 1;
    }
    None
}

/// Index of the closing quote of the literal opening at `start`.
fn skip_literal(src: &[u8], start: usize) -> Option<usize> {
    let quote = src[start];
    let mut i = start + 1;
    while i < src.len() {
        match src[i] {
            b'\\' => i += 1,
            b'\n' => return None,
            c if c == quote => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

/// Offsets and names of function definitions: a line at column 0 naming `ident(` whose
/// parameter list is followed by `{` rather than `;`. That is how every release is laid out.
pub fn function_definitions(src: &[u8]) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut line_start = 0;
    while line_start < src.len() {
        let line_end =
            memchr::memchr(b'\n', &src[line_start..]).map_or(src.len(), |e| line_start + e);
        let line = &src[line_start..line_end];
        if let Some(name) = definition_name(src, line_start, line) {
            out.push((line_start, name));
        }
        line_start = line_end + 1;
    }
    out
}

fn definition_name(src: &[u8], line_start: usize, line: &[u8]) -> Option<String> {
    let first = *line.first()?;
    if !(first.is_ascii_alphabetic() || first == b'_') {
        return None;
    }
    let paren = memchr::memchr(b'(', line)?;
    let head = &line[..paren];
    if head.contains(&b'=')
        || head.starts_with(b"typedef")
        || head.starts_with(b"struct ") && !head.contains(&b' ')
    {
        return None;
    }
    let name_end = head.iter().rposition(|b| !b.is_ascii_whitespace())? + 1;
    let name_start = head[..name_end]
        .iter()
        .rposition(|&b| !(b.is_ascii_alphanumeric() || b == b'_'))
        .map_or(0, |p| p + 1);
    let name = &head[name_start..name_end];
    if name.is_empty() || name[0].is_ascii_digit() {
        return None;
    }
    // Find the end of the parameter list, then the first significant byte after it.
    let mut depth = 0i32;
    let mut i = line_start + paren;
    let limit = (i + 4000).min(src.len());
    while i < limit {
        match src[i] {
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            b';' | b'{' => return None,
            _ => {}
        }
        i += 1;
    }
    let rest = src.get(i + 1..limit)?;
    let next = rest.iter().find(|b| !b.is_ascii_whitespace())?;
    (*next == b'{').then(|| String::from_utf8_lossy(name).into_owned())
}

/// Remove whitespace outside string literals.
pub fn normalize(stmt: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(stmt.len());
    let mut i = 0;
    while i < stmt.len() {
        let b = stmt[i];
        if b == b'"' || b == b'\'' {
            let end = skip_literal(stmt, i).unwrap_or(stmt.len() - 1);
            out.extend_from_slice(&stmt[i..=end]);
            i = end + 1;
            continue;
        }
        if !b.is_ascii_whitespace() {
            out.push(b);
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: &str = r#"
static int handle_request_invite(struct sip_pvt *p, struct sip_request *req, struct ast_sockaddr *addr)
{
	if (res < 0) {
		ast_log(LOG_NOTICE, "Failed to authenticate device %s\n", get_header(req, "From"));
	}
	ast_log(LOG_NOTICE, "Failed to authenticate on INVITE to '%s'\n", get_header(&p->initreq, "From"));
	return 0;
}

static void send_check_user_failure_response(struct sip_pvt *p, struct sip_request *req, int res)
{
		ast_log(LOG_NOTICE, "Failed to authenticate device %s (%s) for %s, code = %d\n",
			sip_get_header(req, "From"), ast_sockaddr_stringify(&p->recv), "INVITE", res);
}
"#;

    #[test]
    fn finds_inbound_sites_only_with_functions_and_lines() {
        let scan = scan(SMALL.as_bytes());
        assert_eq!(scan.sites.len(), 2);
        let a = &scan.sites[0];
        assert_eq!(
            (a.function.as_str(), a.line, a.patched),
            ("handle_request_invite", 5, false)
        );
        let b = &scan.sites[1];
        assert_eq!(
            (b.function.as_str(), b.line, b.patched),
            ("send_check_user_failure_response", 13, true)
        );
        assert!(SMALL.as_bytes()[b.span.clone()].ends_with(b"res);"));
        assert_eq!(scan.state(), PatchState::PartlyPatched);
        assert_eq!(scan.address_api, Some(AddressApi::AstSockaddr));
    }

    #[test]
    fn normalize_keeps_literals_and_drops_layout() {
        assert_eq!(
            normalize(b"ast_log( LOG_NOTICE,\n\t\"a  b\" , x );"),
            b"ast_log(LOG_NOTICE,\"a  b\",x);".to_vec()
        );
    }

    #[test]
    fn tolerates_garbage_and_latin1() {
        let mut bytes = b"\xe9\xff\0 \"Failed to authenticate user %s".to_vec();
        bytes.extend_from_slice(b"ast_log(\"Failed to authenticate device %s\n");
        let s = scan(&bytes);
        assert!(s.sites.is_empty());
        assert_eq!(s.state(), PatchState::NoSites);
    }

    #[test]
    fn address_api_eras() {
        assert_eq!(
            address_api(b"inet_ntoa(p->sa.sin_addr)"),
            Some(AddressApi::InetNtoa)
        );
        assert_eq!(
            address_api(b"ast_inet_ntoa(iabuf, sizeof(iabuf), x)"),
            Some(AddressApi::AstInetNtoaBuf)
        );
        assert_eq!(
            address_api(b"ast_inet_ntoa(sin->sin_addr)"),
            Some(AddressApi::AstInetNtoa)
        );
        assert_eq!(address_api(b"nothing"), None);
    }
}
