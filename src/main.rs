//! The `provision` binary: run the CLI, print the error chain once, exit with its code.

use std::process::ExitCode;

fn main() -> ExitCode {
    reset_sigpipe();
    match provision::cli::run() {
        Ok(exit) => ExitCode::from(exit as u8),
        Err(err) => {
            provision::commands::print_error(&err);
            ExitCode::from(1)
        }
    }
}

/// Die quietly when stdout is closed early (`provision plan | head`), as Unix tools do.
fn reset_sigpipe() {
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
