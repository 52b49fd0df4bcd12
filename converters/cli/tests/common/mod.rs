//! Helpers shared by the CLI's integration tests.

use std::process::{Command, Output};

/// Runs the `nodestamp` binary built for these tests.
pub fn nodestamp(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nodestamp"))
        .args(args)
        .output()
        .expect("running nodestamp")
}

/// Output bytes as text.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}
