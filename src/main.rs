//! The `astpatch` binary: everything lives in the library; this only hands over the process.
fn main() -> std::process::ExitCode {
    // `astpatch scan … | head` must stop quietly like any Unix filter: Rust ignores SIGPIPE, so
    // the first print after the reader left would panic instead. The long-running watcher keeps
    // it ignored, so a vanished reader shows up as an error it can report.
    if std::env::args_os().nth(1).is_none_or(|c| c != "watch") {
        // SAFETY: restoring the default disposition before any thread is started.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    astpatch::cli::args::main()
}
