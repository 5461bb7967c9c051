//! `coffer console [--tty DEV]`: the serial console (see [`coffer::console`]), as
//! `systemd/coffer-console@.service` runs it on a tty.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args as ClapArgs;

use super::Ctx;

/// Arguments of `coffer console`.
#[derive(Debug, ClapArgs)]
pub struct ConsoleArgs {
    /// The tty (default: the board's `[console] tty`).
    #[arg(long)]
    tty: Option<PathBuf>,
}

/// Runs the console until its line hangs up.
pub fn run(ctx: &Ctx, a: ConsoleArgs) -> anyhow::Result<ExitCode> {
    let board = ctx.board()?;
    let console = board.console.as_ref().context(
        "the board has no [console] section: add one with tty, baud and pin (see board/default.toml)",
    )?;
    let options = coffer::console::tty::Options {
        tty: a.tty.unwrap_or_else(|| PathBuf::from(&console.tty)),
        baud: console.baud,
        state: ctx.state.clone(),
        board: board.name.clone(),
    };
    coffer::console::tty::run(&options)?;
    Ok(ExitCode::SUCCESS)
}
