//! The `chatbridge` binary: parses the command line and hands it to the library.

use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of the system allocator: ingest allocates on request threads and frees on
/// the store's writer thread, a pattern glibc's allocator handles poorly (it was a sixth of
/// all CPU time under load). Built without its transparent huge pages: each 2 MiB page an
/// arena touched counted whole, which made a third of the resident memory under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = chatbridge::cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(chatbridge::cli::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
