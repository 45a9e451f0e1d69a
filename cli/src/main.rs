//! `gatewayctl`: the command-line client of the gateway's admin gRPC API.
//!
//! Flags are parsed by [`args`], each verb lives in [`commands`], and every failure becomes an
//! exit code in one place ([`error`]): 0 success, 1 a rejected request, 2 a usage error, 3 a
//! `diff --exit-code` that found changes. It talks only to the admin API, never to etcd.

use std::process::ExitCode;

use clap::Parser as _;

mod args;
mod client;
mod commands;
mod error;
mod input;
mod kind;
mod output;

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(error::REJECTED);
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            error::report(&err);
            ExitCode::from(error::exit_code(&err))
        }
    }
}
