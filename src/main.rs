//! The `vigil` command line: wires the crates together; the work is theirs.

mod admin;
mod alloc;
mod backtest;
mod bench;
mod broker;
mod cli;
mod config;
mod demo;
mod feed;
mod generate;
mod migrate;
mod models;
mod output;
mod progress;
mod replay;
mod scrape;
mod serve;
mod train;

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
