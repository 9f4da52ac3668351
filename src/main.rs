//! The `vigil` command line: wires the crates together; the work is theirs.

mod admin;
mod alloc;
mod bench;
mod cli;
mod demo;
mod generate;
mod models;
mod replay;
mod scrape;

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
