//! The `chatbridge` binary: parses the command line and hands it to the library.

use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of the system allocator: ingest allocates on request threads and frees on
/// the store's writer thread, a pattern glibc's allocator handles poorly (it was a sixth of
/// all CPU time under load). Built without its transparent huge pages: each 2 MiB page an
/// arena touched counted whole, which made a third of the resident memory under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc's option enum (the same place in its versions 2 and 3).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() -> ExitCode {
    // Memory freed is given back to the OS at once rather than after mimalloc 3's default
    // second: under load, pages freed by one thread sat unused for that second while others
    // took new ones, a fifth of the resident memory; the cost in CPU was within the noise.
    // Only the default changes: `MIMALLOC_PURGE_DELAY` in the environment still wins.
    // SAFETY: sets a plain option, before any other thread exists.
    unsafe { libmimalloc_sys::mi_option_set_default(MI_OPTION_PURGE_DELAY, 0) };
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
