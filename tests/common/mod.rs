//! Running the `vigil` binary as a user would.

use std::path::Path;
use std::process::{Command, Output};

pub fn vigil(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vigil"))
        // Tests must not pick up a developer's vigil.toml or VIGIL__ variables.
        .current_dir(std::env::temp_dir())
        .env_clear()
        .args(args)
        .output()
        .expect("vigil runs")
}

/// Runs `vigil` and insists it succeeds.
pub fn ok(args: &[&str]) -> String {
    let out = vigil(args);
    assert!(
        out.status.success(),
        "vigil {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}
