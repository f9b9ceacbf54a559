//! The `bitget-poller` command line: parsing, logging setup, signals and exit codes.
//!
//! Exit codes: 0 success, 2 bad usage or configuration (nothing was started), 1 a runtime
//! failure.

use std::process::ExitCode;

use clap::Parser;

/// `println!` that ignores a closed stdout (`| head`) instead of panicking.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

mod args;
mod backfill;
mod export;
mod poll;
mod sim;
mod stop;
mod usage;

use args::{Cli, Command};

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    // The poller makes at most a few dozen requests a second: one thread serves that with
    // no cross-thread wake-ups, which are most of a multi-threaded runtime's CPU at this
    // rate. The simulator serves many clients and keeps every core.
    let builder = match cli.command {
        Command::Sim(_) => tokio::runtime::Builder::new_multi_thread(),
        _ => tokio::runtime::Builder::new_current_thread(),
    };
    let runtime = match { builder }.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(1);
        }
    };
    match cli.command {
        Command::Run(args) => runtime.block_on(poll::run(args, None)),
        Command::Gateway(args) => runtime.block_on(poll::run(args.run, Some(args.listen))),
        Command::Demo(args) => runtime.block_on(poll::demo(args)),
        Command::CheckConfig(args) => poll::check_config(&args.file),
        Command::Usage(args) => usage::usage(&args),
        Command::Export(args) => export::export(&args),
        Command::Backfill(args) => runtime.block_on(backfill::backfill(args)),
        Command::Sim(args) => {
            sim::init_console_logging();
            runtime.block_on(sim::serve(*args))
        }
    }
}
