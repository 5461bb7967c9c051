//! Commands that need the state, while the service holds it. On a running box the service owns
//! the state lock, so `ls`, `restore`, `verify`, `scan`, `catalog prune`, `journal check` and `media …`
//! go to it over the control socket: it runs the same command code in its own process, on the
//! state it holds, and streams the command's output and exit code back ([`forward`],
//! [`execute`]). `backup` becomes a job of the service's queue, run at once, its progress shown
//! here and Ctrl-C cancelling it ([`backup`]). Who may do this is who may open the socket
//! (mode 0660: root and the socket's group). Such a command runs as the service runs, as root:
//! the group's members may restore anywhere, as at the console. `drain` is not run so: it
//! writes to a target a job may be writing to; it waits for the service to stop.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use coffer::control::client::Client;
use coffer::control::{Reply, Request, SOCKET_NAME};
use serde_json::{Value, json};

use super::backup::{BackupArgs, EXIT_CANCELLED};
use super::job::call;
use super::{Ctx, human_bytes};
use crate::{Args, Command};

/// How often a backup run through the service is looked at.
const POLL: Duration = Duration::from_millis(500);

/// Whether `command` works on the state (and so goes through a running service).
pub fn needs_state(command: &Command) -> bool {
    matches!(
        command,
        Command::Backup(_)
            | Command::Restore(_)
            | Command::Verify(_)
            | Command::Ls(_)
            | Command::Scan(_)
            | Command::Journal { .. }
            | Command::Catalog { .. }
            | Command::Media(_)
            | Command::Pool { .. }
    ) || matches!(command, Command::Agent(a) if a.what.on_the_box())
}

/// Whether a service holds the state in `state`: its control socket is there and the state
/// lock is taken (or not ours to take: a member of the socket's group need not be able to write
/// the state). Another command holding the lock has no socket: that one is waited out by hand.
pub fn service_holds(state: &Path) -> bool {
    if !state.join(SOCKET_NAME).exists() {
        return false;
    }
    match std::fs::File::options().read(true).write(true).open(state.join("lock")) {
        Ok(lock) => matches!(lock.try_lock(), Err(std::fs::TryLockError::WouldBlock)),
        Err(e) => e.kind() == std::io::ErrorKind::PermissionDenied,
    }
}

/// Runs the command `argv` in the service and passes its output and exit code on.
pub fn forward(ctx: &Ctx, argv: Option<Vec<String>>) -> anyhow::Result<ExitCode> {
    let not_utf8 = "arguments and a current directory that are not UTF-8 cannot go through the \
                    service: rename, or run the command with the service stopped";
    let argv = argv.context(not_utf8)?;
    let cwd = std::env::current_dir().context("cannot tell the current directory")?;
    let cwd = cwd.to_str().context(not_utf8)?.to_owned();
    let mut client = Client::connect(&ctx.state)?;
    client.wait_for_ever()?;
    let req = Request::Command { argv, cwd };
    client.send(&req)?;
    loop {
        let reply = client.receive()?;
        if let Some(code) = shown(&reply)? {
            return Ok(ExitCode::from(code));
        }
    }
}

/// Prints one reply of a command run in the service; its exit code once it ended.
fn shown(reply: &Reply) -> anyhow::Result<Option<u8>> {
    if !reply.ok {
        bail!("{}", reply.error.as_deref().unwrap_or("the service refused the command"));
    }
    if let Some(text) = reply.data["out"].as_str() {
        print!("{text}");
        let _ = std::io::stdout().flush();
    }
    if let Some(text) = reply.data["err"].as_str() {
        eprint!("{text}");
    }
    Ok(reply.data["exit"].as_u64().map(|c| c.min(255) as u8))
}

/// A command the service runs for a client (see [`coffer::service::CommandCall`]): parsed as
/// here, relative paths taken from the client's directory, on the service's state and board.
/// Returns the exit code.
pub fn execute(call: coffer::service::CommandCall, board: Option<PathBuf>) -> u8 {
    let coffer::service::CommandCall { argv, cwd, store, out, mut err, agents } = call;
    let args = match Args::try_parse_from(std::iter::once("coffer".to_owned()).chain(argv)) {
        Ok(a) => a,
        Err(e) => {
            let _ = write!(err, "{}", e.render());
            return 2;
        }
    };
    let mut command = args.command;
    if !needs_state(&command) || matches!(command, Command::Backup(_)) {
        let _ = writeln!(err, "coffer: this command is not run by the service: run it directly");
        return 2;
    }
    absolute_paths(&mut command, &cwd);
    let state = store.lock().path().to_owned();
    let ctx = Ctx {
        state,
        json: args.json,
        board_file: board,
        out: std::cell::RefCell::new(out),
        shared: Some(store),
        agents: Some(agents),
    };
    match super::dispatch(&ctx, command) {
        Ok(code) => exit_number(code),
        Err(e) => {
            let _ = writeln!(err, "coffer: {e:#}");
            2
        }
    }
}

/// The number of an exit code the commands return.
fn exit_number(code: ExitCode) -> u8 {
    [0u8, 1, 2, EXIT_CANCELLED].into_iter().find(|&n| code == ExitCode::from(n)).unwrap_or(2)
}

/// Makes the paths a command names absolute, from the client's directory `cwd`.
fn absolute_paths(command: &mut Command, cwd: &Path) {
    let abs = |p: &mut PathBuf| {
        if p.is_relative() {
            *p = cwd.join(&*p);
        }
    };
    let spec = |s: &mut String| absolute_spec(s, cwd);
    // `agent:NAME:/dir` names a directory on the agent.
    let on_agent = |p: &PathBuf| p.to_str().is_some_and(|t| t.starts_with("agent:"));
    match command {
        Command::Restore(a) if !on_agent(&a.to) => abs(&mut a.to),
        Command::Verify(a) => {
            if let Some(p) = a.compare.as_mut().filter(|p| !on_agent(p)) {
                abs(p);
            }
        }
        Command::Scan(a) => {
            if let Some(t) = a.target.as_mut() {
                spec(t)
            }
        }
        _ => {}
    }
}

/// Makes the path of a `disk:` or `nvram:` target absolute, from `cwd`.
fn absolute_spec(s: &mut String, cwd: &Path) {
    if let Some((kind, path)) = s.split_once(':')
        && matches!(kind, "disk" | "nvram")
        && !path.is_empty()
        && !path.starts_with('/')
    {
        *s = format!("{kind}:{}", cwd.join(path).display());
    }
}

/// `coffer backup` while the service runs: a one-time job of its queue, run at once. Progress
/// goes to stderr while a person watches; Ctrl-C cancels the job (what was read is written and
/// closed, as when the job is cancelled at the console). Exit codes as for a backup run here.
pub fn backup(ctx: &Ctx, a: BackupArgs) -> anyhow::Result<ExitCode> {
    if let Some(what) = not_in_a_job(&a) {
        bail!(
            "{what} is not available while the service runs (a job takes sources, targets, \
             --incremental, --one-file-system and compression): stop the service, or leave it out"
        );
    }
    // Ctrl-C from here on cancels the job (caught before the job exists, so that none is
    // lost between submitting it and watching it); a second one ends this command at once.
    let interrupted = coffer::pipeline::Cancel::default();
    super::backup::cancel_on_signals(&interrupted)?;
    let cwd = std::env::current_dir().context("cannot tell the current directory")?;
    // An agent's source names a path on the agent: left as written.
    let is_agent = |p: &PathBuf| p.to_str().is_some_and(|s| s.starts_with("agent:"));
    let sources: Vec<PathBuf> =
        a.sources.iter().map(|p| if is_agent(p) { p.clone() } else { cwd.join(p) }).collect();
    let mut targets = a.targets.clone();
    targets.iter_mut().for_each(|t| absolute_spec(t, &cwd));
    let definition = toml::to_string(&json!({
        "name": "backup-by-hand",
        "sources": sources,
        "to": targets,
        "backup": if a.incremental { "incremental" } else { "full" },
        "one_file_system": a.one_file_system,
        "compression": !a.no_compression,
    }))
    .context("cannot write the job file")?;
    let submitted = call(ctx, &Request::Submit { definition, hold: true })?;
    let job = submitted["job"].as_u64().context("the service's answer names no job")?;
    if let Err(e) = call(ctx, &Request::Run { job }) {
        let _ = call(ctx, &Request::Delete { job });
        return Err(e.context(format!("job {job} could not start (deleted)")));
    }
    if !ctx.json {
        eprintln!("backup runs in the service as job {job} (Ctrl-C cancels it)");
    }
    let mut cancelled = false;
    let mut session = None;
    let shown = loop {
        if interrupted.is_cancelled() && !cancelled {
            // Refused only when the job has just ended: its end is shown below.
            let _ = call(ctx, &Request::Cancel { job, reschedule: false });
            cancelled = true;
        }
        let status = call(ctx, &Request::Status {})?;
        let mine = status["jobs"].as_array().and_then(|js| js.iter().find(|j| j["id"] == job)).cloned();
        if let Some(p) = mine.as_ref().map(|j| &j["progress"]).filter(|p| !p.is_null()) {
            session = p["session"].as_u64().or(session);
            if ctx.interactive() {
                eprint!(
                    "\r{} in, {} stored, {} objects   ",
                    human_bytes(p["bytes_in"].as_u64().unwrap_or(0)),
                    human_bytes(p["bytes_stored"].as_u64().unwrap_or(0)),
                    p["objects"].as_u64().unwrap_or(0)
                );
            }
        }
        let show = call(ctx, &Request::Show { job })?;
        if matches!(show["state"].as_str(), Some("done" | "failed" | "cancelled")) {
            break show;
        }
        std::thread::sleep(POLL);
    };
    if ctx.interactive() {
        eprintln!();
    }
    // A job quicker than a look shows no progress: its session is the one the job started.
    let session = match session {
        Some(s) => Some(s),
        None => session_of(ctx, job)?,
    };
    report(ctx, job, session, &shown)
}

/// The newest session job `job` started, as the service's `ls` lists it.
fn session_of(ctx: &Ctx, job: u64) -> anyhow::Result<Option<u64>> {
    let argv = ["--json", "ls"].map(str::to_owned).to_vec();
    let mut client = Client::connect(&ctx.state)?;
    client.send(&Request::Command { argv, cwd: "/".into() })?;
    let mut out = String::new();
    loop {
        let reply = client.receive()?;
        if !reply.ok {
            bail!("{}", reply.error.unwrap_or_default());
        }
        if let Some(text) = reply.data["out"].as_str() {
            out.push_str(text);
        }
        if !reply.data["exit"].is_null() {
            break;
        }
    }
    let rows: Value = serde_json::from_str(out.trim()).context("the service's session list is malformed")?;
    let mine = rows.as_array().into_iter().flatten().filter(|r| r["job"] == job);
    Ok(mine.filter_map(|r| r["session"].as_u64()).max())
}

/// The first backup option a job cannot carry.
fn not_in_a_job(a: &BackupArgs) -> Option<&'static str> {
    if a.stage.is_some() {
        Some("--stage")
    } else if a.plan_only {
        Some("--plan-only")
    } else if a.unit != coffer::pipeline::DEFAULT_UNIT {
        Some("--unit")
    } else if a.file_threshold != coffer::source::mode::DEFAULT_FILE_THRESHOLD {
        Some("--file-threshold")
    } else if a.mode != coffer::source::mode::RequestedMode::Auto {
        Some("--mode")
    } else {
        None
    }
}

/// Prints how the job's backup went, from its last state change and its session.
fn report(ctx: &Ctx, job: u64, session: Option<u64>, shown: &Value) -> anyhow::Result<ExitCode> {
    let state = shown["state"].as_str().unwrap_or("failed");
    let message = shown["history"].as_array().and_then(|h| h.last()).map(|h| h["message"].clone());
    let message = message.as_ref().and_then(Value::as_str).unwrap_or("").to_owned();
    let code = match state {
        "done" => 0,
        "cancelled" => EXIT_CANCELLED,
        _ => 2,
    };
    if ctx.json {
        super::print_json(ctx, &json!({"job": job, "session": session, "state": state, "message": message}));
    } else {
        crate::outln!(ctx, "job {job} {}: {message}", state.to_uppercase());
    }
    Ok(ExitCode::from(code))
}
