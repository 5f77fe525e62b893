//! The `paxos` binary: parse the command line, then hand over to `cli`.

fn main() -> std::process::ExitCode {
    paxos::cli::main()
}
