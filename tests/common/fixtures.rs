//! Small synthetic chan_sip.c files, one per shape in the shared census. They are written
//! from the census's description (which functions log, which words, which header getter,
//! which address variable), not copied from Asterisk: only the log statements match real ones.
#![allow(dead_code)]

use std::path::Path;

#[derive(Debug, Clone, Copy)]
pub struct ShapeSpec {
    pub id: &'static str,
    pub functions: &'static [&'static str],
    pub device: bool,
    pub fake: bool,
    pub sip_get_header: bool,
    pub subscribe_suffix: bool,
    /// "inet", "buf", "one", "sockaddr"
    pub api: &'static str,
    pub version: &'static str,
}

const CLASSIC: &[&str] = &["handle_request_invite", "handle_request_subscribe"];
const EIGHTEEN: &[&str] = &[
    "handle_request_options",
    "handle_request_invite",
    "handle_request_publish",
    "handle_request_subscribe",
];
const WITH_MESSAGE: &[&str] = &[
    "receive_message",
    "handle_request_options",
    "handle_request_invite",
    "handle_request_publish",
    "handle_request_subscribe",
];

pub const SHAPES: &[ShapeSpec] = &[
    ShapeSpec {
        id: "0",
        functions: &["handle_request"],
        device: false,
        fake: false,
        sip_get_header: false,
        subscribe_suffix: true,
        api: "buf",
        version: "1.0.12",
    },
    ShapeSpec {
        id: "0",
        functions: &["handle_request"],
        device: false,
        fake: false,
        sip_get_header: false,
        subscribe_suffix: true,
        api: "inet",
        version: "0.9.0",
    },
    ShapeSpec {
        id: "1",
        functions: CLASSIC,
        device: false,
        fake: false,
        sip_get_header: false,
        subscribe_suffix: true,
        api: "buf",
        version: "1.2.7.1",
    },
    ShapeSpec {
        id: "2",
        functions: CLASSIC,
        device: false,
        fake: true,
        sip_get_header: false,
        subscribe_suffix: true,
        api: "buf",
        version: "1.2.40",
    },
    ShapeSpec {
        id: "2",
        functions: CLASSIC,
        device: false,
        fake: true,
        sip_get_header: false,
        subscribe_suffix: true,
        api: "one",
        version: "1.4.40",
    },
    ShapeSpec {
        id: "3",
        functions: CLASSIC,
        device: true,
        fake: true,
        sip_get_header: false,
        subscribe_suffix: true,
        api: "one",
        version: "1.6.2.24",
    },
    ShapeSpec {
        id: "4",
        functions: EIGHTEEN,
        device: true,
        fake: true,
        sip_get_header: false,
        subscribe_suffix: true,
        api: "sockaddr",
        version: "1.8.20.1",
    },
    ShapeSpec {
        id: "4c",
        functions: WITH_MESSAGE,
        device: true,
        fake: true,
        sip_get_header: false,
        subscribe_suffix: true,
        api: "sockaddr",
        version: "1.8.11-cert10",
    },
    ShapeSpec {
        id: "5",
        functions: EIGHTEEN,
        device: true,
        fake: false,
        sip_get_header: false,
        subscribe_suffix: false,
        api: "sockaddr",
        version: "1.8.32.3",
    },
    ShapeSpec {
        id: "5c",
        functions: WITH_MESSAGE,
        device: true,
        fake: false,
        sip_get_header: false,
        subscribe_suffix: false,
        api: "sockaddr",
        version: "1.8.28-cert5",
    },
    ShapeSpec {
        id: "6",
        functions: WITH_MESSAGE,
        device: true,
        fake: true,
        sip_get_header: true,
        subscribe_suffix: true,
        api: "sockaddr",
        version: "11.2.1",
    },
    ShapeSpec {
        id: "7",
        functions: WITH_MESSAGE,
        device: true,
        fake: false,
        sip_get_header: true,
        subscribe_suffix: true,
        api: "sockaddr",
        version: "11.23.1",
    },
    ShapeSpec {
        id: "8",
        functions: &["send_check_user_failure_response"],
        device: true,
        fake: false,
        sip_get_header: true,
        subscribe_suffix: false,
        api: "sockaddr",
        version: "16.30.0",
    },
];

pub fn spec(id: &str, version: &str) -> ShapeSpec {
    *SHAPES
        .iter()
        .find(|s| s.id == id && s.version == version)
        .expect("known fixture")
}

/// Number of inbound sites the fixture holds.
pub fn site_count(s: &ShapeSpec) -> usize {
    if s.id == "0" {
        return 2;
    }
    s.functions.len() * if s.fake { 2 } else { 1 }
}

pub fn chan_sip(s: &ShapeSpec) -> Vec<u8> {
    let getter = if s.sip_get_header {
        "sip_get_header"
    } else {
        "get_header"
    };
    let noun = if s.device { "device" } else { "user" };
    let mut c = String::new();
    c.push_str(&format!(
        "/*\n * Synthetic chan_sip.c for astpatch's tests: shape {} ({}).\n",
        s.id, s.version
    ));
    c.push_str(" * Not Asterisk code; only the log statements have the real wording.\n */\n");
    c.push_str("#include \"fixture.h\"\n\nstatic int counter;\n\n");
    // How this era turns an address into text: the patch engine reads it from the file.
    let (param, helper) = match s.api {
        "inet" => (
            "struct sockaddr_in *sin",
            "\tast_verbose(\"peer %s\\n\", inet_ntoa(sin->sin_addr));\n",
        ),
        "buf" => (
            "struct sockaddr_in *sin",
            "\tast_verbose(\"peer %s\\n\", ast_inet_ntoa(iabuf, sizeof(iabuf), sin->sin_addr));\n",
        ),
        "one" => (
            "struct sockaddr_in *sin",
            "\tast_verbose(\"peer %s\\n\", ast_inet_ntoa(sin->sin_addr));\n",
        ),
        _ => (
            "struct ast_sockaddr *addr",
            "\tast_verbose(\"peer %s\\n\", ast_sockaddr_stringify(addr));\n",
        ),
    };
    c.push_str(&format!(
        "static void show_peer({param})\n{{\n\tchar iabuf[16];\n{helper}}}\n\n"
    ));
    // Outbound failures: must never be touched.
    c.push_str(&format!(
        "static int handle_response_invite(struct sip_pvt *p, int resp)\n{{\n\tif (resp == 403) {{\n\t\tast_log(LOG_NOTICE, \"Failed to authenticate on INVITE to '%s'\\n\", {getter}(&p->initreq, \"From\"));\n\t}}\n\treturn 0;\n}}\n\n"
    ));
    if s.id == "8" {
        c.push_str(&format!(
            "static void send_check_user_failure_response(struct sip_pvt *p, struct sip_request *req, int res, enum xmittype reliable)\n{{\n\tswitch (res) {{\n\tcase AUTH_SECRET_FAILED:\n\t\tast_log(LOG_NOTICE, \"Failed to authenticate device %s for %s, code = %d\\n\",\n\t\t\t{getter}(req, \"From\"), sip_methods[p->method].text, res);\n\t\tbreak;\n\tdefault:\n\t\tbreak;\n\t}}\n}}\n\n"
        ));
    } else if s.id == "0" {
        c.push_str(&format!(
            "static int handle_request(struct sip_pvt *p, struct sip_request *req, {param}, int *recount)\n{{\n\tint res = 0;\n\tif (!strcasecmp(cmd, \"INVITE\")) {{\n\t\tif (res < 0) {{\n\t\t\tast_log(LOG_NOTICE, \"Failed to authenticate {noun} %s\\n\", {getter}(req, \"From\"));\n\t\t}}\n\t}} else if (!strcasecmp(cmd, \"SUBSCRIBE\")) {{\n\t\tif (res < 0) {{\n\t\t\tast_log(LOG_NOTICE, \"Failed to authenticate {noun} %s for SUBSCRIBE\\n\", {getter}(req, \"From\"));\n\t\t}}\n\t}}\n\treturn res;\n}}\n\n"
        ));
    } else {
        for f in s.functions {
            let suffix = if *f == "handle_request_subscribe" && s.subscribe_suffix {
                " for SUBSCRIBE"
            } else {
                ""
            };
            let ret = if *f == "receive_message" {
                "void"
            } else {
                "int"
            };
            c.push_str(&format!("static {ret} {f}(struct sip_pvt *p, struct sip_request *req, {param}, const char *e)\n{{\n\tint res = check_user(p, req);\n\tif (res < 0) {{\n"));
            if s.fake {
                c.push_str(&format!(
                    "\t\tif (res == AUTH_FAKE_AUTH) {{\n\t\t\tast_log(LOG_NOTICE, \"Sending fake auth rejection for {noun} %s\\n\", {getter}(req, \"From\"));\n\t\t\ttransmit_fake_auth_response(p, req, XMIT_RELIABLE);\n\t\t}} else {{\n\t\t\tast_log(LOG_NOTICE, \"Failed to authenticate {noun} %s{suffix}\\n\", {getter}(req, \"From\"));\n\t\t}}\n"
                ));
            } else {
                c.push_str(&format!("\t\tast_log(LOG_NOTICE, \"Failed to authenticate {noun} %s{suffix}\\n\", {getter}(req, \"From\"));\n"));
            }
            c.push_str(&format!(
                "\t\tcounter++;\n\t}}\n\t{}\n}}\n\n",
                if ret == "void" {
                    "return;"
                } else {
                    "return 0;"
                }
            ));
        }
    }
    c.push_str("static int load_module(void)\n{\n\treturn 0;\n}\n");
    // Latin-1, as real releases have in comments: the file is not valid UTF-8.
    let mut bytes = c.into_bytes();
    bytes.extend_from_slice(b"/* Mantenido por Jos\xe9 */\n");
    bytes
}

/// Write a tree holding `.version` and channels/chan_sip.c.
pub fn write_tree(dir: &Path, s: &ShapeSpec) {
    std::fs::create_dir_all(dir.join("channels")).unwrap();
    std::fs::write(dir.join(".version"), format!("{}\n", s.version)).unwrap();
    std::fs::write(dir.join("channels/chan_sip.c"), chan_sip(s)).unwrap();
}

/// `bytes` with every ` [astpatch:TAG]` (16 hex digits) taken out: astpatch's wording before tags.
pub fn untag(bytes: &[u8]) -> Vec<u8> {
    let open = b" [astpatch:";
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let rest = &bytes[i..];
        if rest.starts_with(open)
            && rest.len() >= open.len() + 17
            && rest[open.len()..open.len() + 16]
                .iter()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
            && rest[open.len() + 16] == b']'
        {
            i += open.len() + 17;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// Make `dir` look like a tree an astpatch from before tags patched: untagged statements and a
/// format 1 manifest whose hashes match. Returns the patched bytes.
pub fn patch_like_before_tags(dir: &Path) -> Vec<u8> {
    astpatch::patch::apply::apply(dir, false).unwrap();
    let path = dir.join("channels/chan_sip.c");
    let legacy = untag(&std::fs::read(&path).unwrap());
    std::fs::write(&path, &legacy).unwrap();
    let mpath = dir.join("channels/chan_sip.c.astpatch.json");
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&mpath).unwrap()).unwrap();
    let o = m.as_object_mut().unwrap();
    o.insert("format".into(), 1.into());
    o.remove("tag");
    o.remove("original_statements");
    o.insert(
        "patched_sha256".into(),
        astpatch::patch::manifest::sha256_hex(&legacy).into(),
    );
    std::fs::write(&mpath, serde_json::to_string_pretty(&m).unwrap()).unwrap();
    legacy
}
