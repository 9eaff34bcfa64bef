//! The `provision` binary: run the CLI, print the error chain once, exit with its code.

use std::process::ExitCode;

fn main() -> ExitCode {
    match provision::cli::run() {
        Ok(exit) => ExitCode::from(exit as u8),
        Err(err) => {
            provision::commands::print_error(&err);
            ExitCode::from(1)
        }
    }
}
