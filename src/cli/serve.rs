//! `coffer [--board FILE] serve`: runs the appliance service (see [`coffer::service`]).

use std::process::ExitCode;

use clap::Args as ClapArgs;

use super::Ctx;

/// Arguments of `coffer serve` (the board comes from the global `--board`).
#[derive(Debug, ClapArgs)]
pub struct ServeArgs {}

/// Runs `coffer serve` until SIGTERM or SIGINT.
pub fn run(ctx: &Ctx, _a: ServeArgs) -> anyhow::Result<ExitCode> {
    // The box receives agents' units (megabytes each) on many threads: glibc would raise its
    // mmap threshold after the first frees and serve them from per-thread arenas, which keep
    // the memory (the box's peak RSS doubled with four agents multiplexed). A fixed threshold
    // maps each large buffer and gives it back. Only here: elsewhere the page faults cost
    // more than the memory.
    // SAFETY: mallopt only sets an allocator parameter; no other thread allocates yet.
    unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 10) };
    let board_file = ctx.board_file.clone();
    let executor: coffer::service::Executor =
        std::sync::Arc::new(move |call| super::through::execute(call, board_file.clone()));
    coffer::service::serve(ctx.board()?, &ctx.state, Some(executor))?;
    Ok(ExitCode::SUCCESS)
}
