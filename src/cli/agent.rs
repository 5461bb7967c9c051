//! `coffer agent …`: backup agents. On the box (through the service while it runs): `add`
//! makes an agent and its one-time token, `list` and `show` tell who is enrolled and connected,
//! `revoke` refuses one from now on. On a client machine: `enroll` trades the token for a
//! certificate, `run` stays connected to the box (what `systemd/coffer-agent.service` runs).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args as ClapArgs, Subcommand};
use coffer::catalog::{Agent, AgentAdded, AgentRevoked, AgentState, Record, agent_name_ok};
use coffer::jobs::calendar;
use coffer::net::ca::BoxCa;
use coffer::net::token;
use coffer::store::State;
use serde_json::{Value, json};

use super::Ctx;
use crate::outln;

/// Exit code of `agent run` when the box refuses the agent: restarting will not help
/// (`RestartPreventExitStatus=` in the unit).
pub const EXIT_REFUSED: u8 = 3;

/// Arguments of `coffer agent`.
#[derive(Debug, ClapArgs)]
pub struct AgentArgs {
    #[command(subcommand)]
    pub what: AgentCommand,
}

/// What to do with agents.
#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// On the box: add an agent (or give a pending or revoked one a new token) and print its
    /// one-time enrolment token (valid 1 h) and the box's certificate fingerprint.
    Add {
        /// The agent's name: letters, digits, '.', '_', '-' (at most 64).
        name: String,
        /// Absolute paths on the agent it may be backed up under (comma-separated; default /).
        #[arg(long, value_delimiter = ',', value_name = "PATH,...")]
        paths: Vec<String>,
        /// Absolute paths on the agent its data may be restored into (comma-separated; default:
        /// none, the agent restores nothing to itself).
        #[arg(long, value_delimiter = ',', value_name = "PATH,...")]
        restore_to: Vec<String>,
    },
    /// On the box: the agents, their state and whether they are connected.
    List,
    /// On the box: one agent in full.
    Show {
        /// The agent's name.
        name: String,
    },
    /// On the box: refuse the agent from now on (its connection is closed at once).
    Revoke {
        /// The agent's name.
        name: String,
    },
    /// On a client: enrol with the box, keeping the key and certificate in the state
    /// directory's `agent/` (0600).
    Enroll {
        /// The box's agent address, HOST:PORT (the board's `[agents] listen`).
        #[arg(long, value_name = "HOST:PORT")]
        server: String,
        /// The token `coffer agent add` printed on the box.
        #[arg(long)]
        token: String,
        /// The box's certificate fingerprint `coffer agent add` printed (SHA-256, colons
        /// optional).
        #[arg(long)]
        fingerprint: String,
    },
    /// On a client: stay connected to the box and do what it asks.
    Run,
}

impl AgentCommand {
    /// Whether it works on the box's state (and so goes through a running service).
    pub fn on_the_box(&self) -> bool {
        !matches!(self, AgentCommand::Enroll { .. } | AgentCommand::Run)
    }
}

/// The agent's own directory in the state directory: its key, certificate and box.
pub fn agent_dir(ctx: &Ctx) -> PathBuf {
    ctx.state.join("agent")
}

/// Runs `coffer agent`.
pub fn run(ctx: &Ctx, a: AgentArgs) -> anyhow::Result<ExitCode> {
    match a.what {
        AgentCommand::Add { name, paths, restore_to } => add(ctx, name, paths, restore_to),
        AgentCommand::List => list(ctx),
        AgentCommand::Show { name } => show(ctx, &name),
        AgentCommand::Revoke { name } => revoke(ctx, &name),
        AgentCommand::Enroll { server, token, fingerprint } => enroll(ctx, &server, &token, &fingerprint),
        AgentCommand::Run => run_agent(ctx),
    }
}

fn add(ctx: &Ctx, name: String, paths: Vec<String>, restore_to: Vec<String>) -> anyhow::Result<ExitCode> {
    if !agent_name_ok(&name) {
        bail!(
            "'{name}' cannot name an agent: use 1 to 64 letters, digits, '.', '_' or '-', not starting with '.' or '-'"
        );
    }
    let board = ctx.board()?;
    let mut held = ctx.hold_state()?;
    if held.read(|c| c.agent(&name).map(Agent::state)) == Some(AgentState::Enrolled) {
        bail!("agent {name} is enrolled: `coffer agent revoke {name}` first to enrol it again");
    }
    let ca = BoxCa::load_or_create(&ctx.state, &board.name).context("cannot make the box's agent CA")?;
    let token = token::make(&name)?;
    let now = coffer::clock::unix_now();
    let paths = if paths.is_empty() { vec!["/".to_owned()] } else { paths };
    let added = AgentAdded {
        name: name.clone(),
        paths,
        restore_to,
        token_sha256: token::digest(&token),
        added: now,
        expires: now + token::TOKEN_VALID_SECS,
    };
    if let Err(why) = coffer::catalog::RecordBody::validate(&added) {
        bail!("agent {name}: {why}");
    }
    held.commit(&[Record::from(added.clone())]).with_context(|| format!("cannot record agent {name}"))?;
    let listen = board.agents.as_ref().map(|a| a.listen.clone());
    if ctx.json {
        super::print_json(
            ctx,
            &json!({
                "agent": name, "token": token, "fingerprint": ca.fingerprint(), "expires": added.expires,
                "listen": listen, "paths": added.paths, "restore_to": added.restore_to,
            }),
        );
    } else {
        outln!(ctx, "agent {name} added; on it, within the hour, run:");
        outln!(
            ctx,
            "  coffer agent enroll --server {} --token {token} --fingerprint {}",
            listen.as_deref().map_or("BOX:PORT".to_owned(), |l| l.replace("0.0.0.0", "BOX")),
            ca.fingerprint()
        );
        outln!(ctx, "backed up under: {}", added.paths.join(", "));
        outln!(ctx, "restores into:   {}", list_or_none(&added.restore_to));
        if listen.is_none() {
            outln!(ctx, "the board has no [agents] listen address: add one, or agents cannot connect");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn list_or_none(paths: &[String]) -> String {
    if paths.is_empty() { "(none)".to_owned() } else { paths.join(", ") }
}

fn state_name(s: AgentState) -> &'static str {
    match s {
        AgentState::Pending => "pending",
        AgentState::Enrolled => "enrolled",
        AgentState::Revoked => "revoked",
    }
}

/// One agent as JSON, with its connection when it has one.
fn agent_json(ctx: &Ctx, a: &Agent) -> Value {
    let conn = ctx.agents.as_ref().and_then(|c| c.list().remove(a.name()));
    json!({
        "agent": a.name(),
        "state": state_name(a.state()),
        "paths": a.added().paths,
        "restore_to": a.added().restore_to,
        "added": a.added().added,
        "token_expires": (a.state() == AgentState::Pending).then_some(a.added().expires),
        "enrolled": a.enrolled().map(|e| e.at),
        "certificate_sha256": a.enrolled().map(|e| hex(&e.cert_sha256)),
        "revoked": a.revoked().map(|r| r.at),
        "connected": conn.as_ref().map(|c| json!({
            "address": c.address.to_string(), "since": c.since, "version": c.version,
        })),
    })
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn list(ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let held = ctx.hold_state()?;
    let c = &*held.catalog();
    if ctx.json {
        let rows: Vec<Value> = c.agents().map(|a| agent_json(ctx, a)).collect();
        super::print_json(ctx, &json!(rows));
        return Ok(ExitCode::SUCCESS);
    }
    if c.agents().next().is_none() {
        outln!(ctx, "no agents: `coffer agent add NAME` adds one");
        return Ok(ExitCode::SUCCESS);
    }
    outln!(ctx, "{:<20}  {:<9}  {:<26}  paths", "agent", "state", "connected");
    let connected = ctx.agents.as_ref().map(|c| c.list()).unwrap_or_default();
    for a in c.agents() {
        let conn = connected.get(a.name()).map_or_else(|| "-".to_owned(), |c| c.address.to_string());
        outln!(
            ctx,
            "{:<20}  {:<9}  {:<26}  {}",
            a.name(),
            state_name(a.state()),
            conn,
            a.added().paths.join(",")
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn show(ctx: &Ctx, name: &str) -> anyhow::Result<ExitCode> {
    let held = ctx.hold_state()?;
    let c = &*held.catalog();
    let a = c.agent(name).with_context(|| format!("no agent {name}: `coffer agent list` lists them"))?;
    let v = agent_json(ctx, a);
    if ctx.json {
        super::print_json(ctx, &v);
        return Ok(ExitCode::SUCCESS);
    }
    let when = |t: &Value| t.as_u64().map_or("-".to_owned(), calendar::format);
    outln!(ctx, "agent        {name}");
    outln!(ctx, "state        {}", state_name(a.state()));
    outln!(ctx, "paths        {}", a.added().paths.join(", "));
    outln!(ctx, "restore to   {}", list_or_none(&a.added().restore_to));
    outln!(ctx, "added        {}", when(&v["added"]));
    if a.state() == AgentState::Pending {
        outln!(ctx, "token until  {}", when(&v["token_expires"]));
    }
    if let Some(e) = a.enrolled() {
        outln!(ctx, "enrolled     {}", calendar::format(e.at));
        outln!(ctx, "certificate  SHA-256 {}", hex(&e.cert_sha256));
    }
    if let Some(r) = a.revoked() {
        outln!(ctx, "revoked      {}", calendar::format(r.at));
    }
    match &v["connected"] {
        Value::Null => outln!(ctx, "connected    no"),
        c => outln!(
            ctx,
            "connected    from {} since {} (coffer {})",
            c["address"].as_str().unwrap_or("?"),
            when(&c["since"]),
            c["version"].as_str().unwrap_or("?")
        ),
    }
    Ok(ExitCode::SUCCESS)
}

fn revoke(ctx: &Ctx, name: &str) -> anyhow::Result<ExitCode> {
    let mut held = ctx.hold_state()?;
    match held.read(|c| c.agent(name).map(Agent::state)) {
        None => bail!("no agent {name}: `coffer agent list` lists them"),
        Some(AgentState::Revoked) => bail!("agent {name} is revoked already"),
        Some(_) => {}
    }
    let record = AgentRevoked { name: name.to_owned(), at: coffer::clock::unix_now() };
    held.commit(&[Record::from(record)])
        .with_context(|| format!("cannot record the revocation of {name}"))?;
    let closed = ctx.agents.as_ref().is_some_and(|c| c.kick(name));
    if ctx.json {
        super::print_json(ctx, &json!({"agent": name, "state": "revoked", "disconnected": closed}));
    } else if closed {
        outln!(ctx, "agent {name} revoked; its connection was closed");
    } else {
        outln!(ctx, "agent {name} revoked");
    }
    Ok(ExitCode::SUCCESS)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the runtime")
}

fn enroll(ctx: &Ctx, server: &str, token: &str, fingerprint: &str) -> anyhow::Result<ExitCode> {
    let dir = agent_dir(ctx);
    let done = runtime()?
        .block_on(coffer::agent::enroll(server, token, fingerprint, &dir))
        .context("enrolment failed")?;
    if ctx.json {
        super::print_json(
            ctx,
            &json!({"agent": done.name, "server": server, "fingerprint": done.fingerprint, "dir": dir}),
        );
    } else {
        outln!(
            ctx,
            "enrolled as agent {} with the box at {server}; identity in {}",
            done.name,
            dir.display()
        );
        outln!(ctx, "now run `coffer agent run` (or enable coffer-agent.service)");
    }
    Ok(ExitCode::SUCCESS)
}

/// Tells systemd (when it started us) and the log how the connection goes.
struct Notify {
    ready: bool,
}

impl coffer::agent::Report for Notify {
    fn status(&mut self, line: &str) {
        tracing::info!(target: "agent", "{line}");
        let mut states = vec![sd_notify::NotifyState::Status(line)];
        if !self.ready {
            states.push(sd_notify::NotifyState::Ready);
            self.ready = true;
        }
        let _ = sd_notify::notify(&states);
    }
}

fn run_agent(ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let dir = agent_dir(ctx);
    let rt = runtime()?;
    let mut report = Notify { ready: false };
    let stop = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("a SIGTERM handler on a fresh runtime");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    };
    match rt.block_on(coffer::agent::run(&dir, &mut report, stop)) {
        Ok(()) => {
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
            Ok(ExitCode::SUCCESS)
        }
        Err(e @ coffer::agent::AgentError::Refused { .. }) => {
            eprintln!("coffer: {e}");
            Ok(ExitCode::from(EXIT_REFUSED))
        }
        Err(e) => Err(anyhow::Error::new(e).context(format!("the agent cannot run from {}", dir.display()))),
    }
}
