//! The `bitget-poller` binary; everything lives in the library.

fn main() -> std::process::ExitCode {
    bitget_poller::cli::main()
}
