//! The `vigil` command line: wires the crates together; the work is theirs.

mod admin;
mod alloc;
mod bench;
mod cli;
mod demo;
mod generate;
mod models;
mod replay;
mod rules;

/// Counting every allocation costs an atomic add each: only `vigil bench memory` needs it, so
/// only a build with the `bench-memory` feature has it.
#[cfg(feature = "bench-memory")]
#[global_allocator]
static ALLOCATOR: alloc::Counting = alloc::Counting;

fn main() -> std::process::ExitCode {
    match cli::run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
