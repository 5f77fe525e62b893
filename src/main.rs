//! The `paxos` binary: parse the command line, then hand over to `cli`.

// The heap-profiling build (feature `dhat-heap`, benches/heap-profile.sh).
#[cfg(feature = "dhat-heap")]
#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

fn main() -> std::process::ExitCode {
    // With PAXOS_DHAT_FILE set, the profile is written there when main
    // returns (`paxos serve` returns on SIGTERM/SIGINT); `{pid}` in the name
    // becomes the process id, so each node of `paxos up` writes its own.
    #[cfg(feature = "dhat-heap")]
    let _profiler = std::env::var("PAXOS_DHAT_FILE").ok().map(|file| {
        let file = file.replace("{pid}", &std::process::id().to_string());
        dhat::Profiler::builder().file_name(file).trim_backtraces(Some(16)).build()
    });
    paxos::cli::main()
}
