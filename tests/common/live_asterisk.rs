//! A live stand-in for a running Asterisk, written for astpatch's tests (not Asterisk code),
//! compiled with gcc: a program named `asterisk` that
//! - reads `astmoddir` and `astrundir` from its asterisk.conf (`-C FILE`, else the path compiled
//!   into it, like Asterisk's DEFAULT_CONFIG_FILE), falling back to its built-in directories;
//! - dlopens `astmoddir/chan_sip.so` and prints `ready`;
//! - serves `module unload chan_sip.so` / `module load chan_sip.so` on `astrundir/asterisk.ctl`
//!   with Asterisk's wording; `asterisk [-C FILE] -rx CMD` is its remote console, and
//!   `asterisk -r` a console that waits (loading no module).
//!
//! and a `chan_sip.so` holding astpatch's log format strings (tagged, untagged or stock).
#![allow(dead_code)]

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

const ASTERISK_C: &str = r#"/* Stand-in Asterisk server for astpatch's tests. Not Asterisk code. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>

/* What the test tree's chan_sip.c refers to (it is built against stub declarations): its
 * data must resolve when it is loaded; its functions are never called (RTLD_LAZY). */
struct sip_method { const char *text; };
const struct sip_method sip_methods[] = { { "INVITE" } };
const char *cmd = "";

/* Built-in defaults, as Asterisk's defaults.h puts them in the binary. */
static const char builtin_conf[] = PREFIX "/etc/asterisk/asterisk.conf";
static const char builtin_mods[] = PREFIX "/lib/asterisk/modules";
static const char builtin_socket[] = PREFIX "/var/run/asterisk/asterisk.ctl";

static void conf_value(const char *conf, const char *key, char *out, size_t len)
{
	char line[1024];
	FILE *f = fopen(conf, "r");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		char *p = line;
		size_t k = strlen(key);
		while (*p == ' ' || *p == '\t')
			p++;
		if (strncmp(p, key, k))
			continue;
		p += k;
		while (*p == ' ' || *p == '\t' || *p == '=' || *p == '>')
			p++;
		p[strcspn(p, " \t\r\n;")] = 0;
		snprintf(out, len, "%s", p);
	}
	fclose(f);
}

int main(int argc, char **argv)
{
	const char *conf = builtin_conf, *rx = NULL;
	char mods[512], sock[600], so[700], run[512] = "";
	struct sockaddr_un sa;
	void *h;
	int opt, lfd, remote = 0;

	while ((opt = getopt(argc, argv, "C:frx:")) != -1) {
		if (opt == 'C')
			conf = optarg;
		else if (opt == 'r')
			remote = 1;
		else if (opt == 'x')
			rx = optarg;
	}
	snprintf(mods, sizeof(mods), "%s", builtin_mods);
	conf_value(conf, "astmoddir", mods, sizeof(mods));
	conf_value(conf, "astrundir", run, sizeof(run));
	if (*run)
		snprintf(sock, sizeof(sock), "%s/asterisk.ctl", run);
	else
		snprintf(sock, sizeof(sock), "%s", builtin_socket);
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);

	if (rx) {
		char buf[512];
		ssize_t n;
		int fd = socket(AF_UNIX, SOCK_STREAM, 0);
		if (connect(fd, (struct sockaddr *) &sa, sizeof(sa))) {
			printf("Unable to connect to remote asterisk (does %s exist?)\n", sock);
			return 1;
		}
		if (write(fd, rx, strlen(rx)) < 0)
			return 1;
		shutdown(fd, SHUT_WR);
		while ((n = read(fd, buf, sizeof(buf))) > 0)
			fwrite(buf, 1, n, stdout);
		return 0;
	}

	if (remote) {
		/* An interactive remote console: it loads no modules and waits for its operator. */
		pause();
		return 0;
	}
	snprintf(so, sizeof(so), "%s/chan_sip.so", mods);
	h = dlopen(so, RTLD_LAZY);
	if (!h) {
		fprintf(stderr, "%s\n", dlerror());
		return 1;
	}
	unlink(sock);
	lfd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (bind(lfd, (struct sockaddr *) &sa, sizeof(sa)) || listen(lfd, 4)) {
		perror(sock);
		return 1;
	}
	printf("ready\n");
	fflush(stdout);
	for (;;) {
		char cmd[256], reply[512];
		size_t got = 0;
		ssize_t n;
		int c = accept(lfd, NULL, NULL);
		if (c < 0)
			continue;
		while (got < sizeof(cmd) - 1 && (n = read(c, cmd + got, sizeof(cmd) - 1 - got)) > 0)
			got += n;
		cmd[got] = 0;
		if (!strcmp(cmd, "module unload chan_sip.so")) {
			if (h && !dlclose(h)) {
				h = NULL;
				snprintf(reply, sizeof(reply), "Unloaded chan_sip.so\n");
			} else {
				snprintf(reply, sizeof(reply), "Unable to unload resource chan_sip.so\n");
			}
		} else if (!strcmp(cmd, "module load chan_sip.so")) {
			if (!h)
				h = dlopen(so, RTLD_LAZY);
			snprintf(reply, sizeof(reply), h ? "Loaded chan_sip.so\n" : "Unable to load module chan_sip.so\n");
		} else {
			snprintf(reply, sizeof(reply), "No such command '%s'\n", cmd);
		}
		if (write(c, reply, strlen(reply)) < 0)
			perror("write");
		close(c);
	}
}
"#;

fn gcc(args: &[&str]) {
    let out = Command::new("gcc").args(args).output().expect("gcc");
    assert!(
        out.status.success(),
        "gcc {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Compile the stand-in to `PREFIX/sbin/asterisk` (its built-in paths under `prefix`).
pub fn build_asterisk(prefix: &Path) -> PathBuf {
    let sbin = prefix.join("sbin");
    fs::create_dir_all(&sbin).unwrap();
    let c = sbin.join("asterisk.c");
    fs::write(&c, ASTERISK_C).unwrap();
    let exe = sbin.join("asterisk");
    gcc(&[
        "-O1",
        "-rdynamic",
        &format!("-DPREFIX=\"{}\"", prefix.display()),
        "-o",
        exe.to_str().unwrap(),
        c.to_str().unwrap(),
        "-ldl",
    ]);
    fs::remove_file(&c).unwrap();
    exe
}

/// What the module's format strings say.
#[derive(Debug, Clone, Copy)]
pub enum Module<'a> {
    Stock,
    Untagged,
    Tagged(&'a str),
}

/// Compile a chan_sip.so holding the failed-auth format strings of one kind, at `path`
/// (written next to it, then renamed over it: the way an install replaces a module).
pub fn build_module(path: &Path, kind: Module) {
    let formats = match kind {
        Module::Stock => vec![
            "Failed to authenticate device %s\\n".to_owned(),
            "Sending fake auth rejection for device %s\\n".to_owned(),
        ],
        Module::Untagged => vec![
            "Failed to authenticate device %s (%s)\\n".to_owned(),
            "Sending fake auth rejection for device %s (%s)\\n".to_owned(),
        ],
        Module::Tagged(t) => vec![
            format!("Failed to authenticate device %s (%s) [astpatch:{t}]\\n"),
            format!("Sending fake auth rejection for device %s (%s) [astpatch:{t}]\\n"),
        ],
    };
    let dir = path.parent().unwrap();
    fs::create_dir_all(dir).unwrap();
    let c = dir.join(format!(".chan_sip-{}.c", std::process::id()));
    let body: String = formats.iter().map(|f| format!("\t\"{f}\",\n")).collect();
    fs::write(
        &c,
        format!(
            "/* Test module for astpatch. Not Asterisk code. */\n__attribute__((used)) const char *const chan_sip_formats[] = {{\n{body}}};\n"
        ),
    )
    .unwrap();
    let tmp = dir.join(format!(".chan_sip-{}.so", std::process::id()));
    gcc(&[
        "-shared",
        "-fPIC",
        "-o",
        tmp.to_str().unwrap(),
        c.to_str().unwrap(),
    ]);
    fs::remove_file(&c).unwrap();
    fs::rename(&tmp, path).unwrap();
}

/// A running stand-in, killed and reaped on drop; it holds a [`super::StandIn`] slot while it
/// runs.
pub struct Running(pub Child, super::StandIn);

impl Running {
    /// Start `exe` with `args` and wait until it has loaded its module.
    pub fn start(exe: &Path, args: &[&str]) -> Running {
        let slot = super::StandIn::take();
        let mut child = Command::new(exe)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        if line != "ready\n" {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{} did not start: {}",
                exe.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Running(child, slot)
    }

    /// A process that is already running (a console, say), under its own slot.
    pub fn adopt(child: Child) -> Running {
        Running(child, super::StandIn::take())
    }

    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
