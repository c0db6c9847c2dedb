//! `causeway`: one binary for the gateway, the controller and the CLI.

mod cli;
mod demo;

use std::process::ExitCode;

use clap::Parser;

/// Faster than the system allocator for the data path's many small
/// buffers (docs/benchmarks.md, "Allocator").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    cli::init_logging(args.default_log_filter());
    causeway_trust::tls::install_default_provider();
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            cli::report_error(&e);
            ExitCode::from(1)
        }
    }
}
