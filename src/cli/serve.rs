//! `coffer [--board FILE] serve`: runs the appliance service (see [`coffer::service`]).

use std::process::ExitCode;

use clap::Args as ClapArgs;

use super::Ctx;

/// Arguments of `coffer serve` (the board comes from the global `--board`).
#[derive(Debug, ClapArgs)]
pub struct ServeArgs {}

/// Runs `coffer serve` until SIGTERM or SIGINT.
pub fn run(ctx: &Ctx, _a: ServeArgs) -> anyhow::Result<ExitCode> {
    let board_file = ctx.board_file.clone();
    let executor: coffer::service::Executor =
        std::sync::Arc::new(move |call| super::through::execute(call, board_file.clone()));
    coffer::service::serve(ctx.board()?, &ctx.state, Some(executor))?;
    Ok(ExitCode::SUCCESS)
}
