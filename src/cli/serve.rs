//! `coffer [--board FILE] serve`: runs the appliance service (see [`coffer::service`]).

use std::process::ExitCode;

use clap::Args as ClapArgs;

use super::Ctx;

/// Arguments of `coffer serve` (the board comes from the global `--board`).
#[derive(Debug, ClapArgs)]
pub struct ServeArgs {}

/// Runs `coffer serve` until SIGTERM or SIGINT.
pub fn run(ctx: &Ctx, _a: ServeArgs) -> anyhow::Result<ExitCode> {
    coffer::service::serve(ctx.board()?, &ctx.state)?;
    Ok(ExitCode::SUCCESS)
}
