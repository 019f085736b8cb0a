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
/// `mi_option_generic_collect` in the enum of mimalloc 3, the version built (it is 36 in 2).
const MI_OPTION_GENERIC_COLLECT: libmimalloc_sys::mi_option_t = 34;

fn main() -> ExitCode {
    // Memory freed is given back to the OS at once rather than after mimalloc 3's default
    // second: under load, pages freed by one thread sat unused for that second while others
    // took new ones, a fifth of the resident memory; the cost in CPU was within the noise.
    // A thread also collects what other threads freed of its memory every 1,000 slow-path
    // allocations rather than 10,000: ingest allocates on request threads and the store's
    // writer frees, and that memory sat unreused in the meantime (peak RSS half a MiB lower
    // under load, throughput the same).
    // Only the defaults change: `MIMALLOC_PURGE_DELAY` and `MIMALLOC_GENERIC_COLLECT` in the
    // environment still win.
    // SAFETY: sets plain options, before any other thread exists.
    unsafe {
        libmimalloc_sys::mi_option_set_default(MI_OPTION_PURGE_DELAY, 0);
        libmimalloc_sys::mi_option_set_default(MI_OPTION_GENERIC_COLLECT, 1000);
    }
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
