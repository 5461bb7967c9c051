//! `coffer job …` and `coffer status`: requests to the running service over its control
//! socket (the service holds the state and the libraries while it runs).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args as ClapArgs, Subcommand};
use coffer::catalog::LogLevel;
use coffer::control::Request;
use coffer::control::client::Client;
use coffer::jobs::calendar;
use serde_json::Value;

use super::Ctx;

/// `coffer job …`.
#[derive(Debug, ClapArgs)]
pub struct JobArgs {
    #[command(subcommand)]
    pub what: JobCommand,
}

/// What to do with jobs.
#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// Save a job from a job file; it runs when its schedule says.
    Submit {
        /// The job file (TOML).
        file: PathBuf,
        /// Keep it from running until released.
        #[arg(long)]
        hold: bool,
    },
    /// Replace a job's definition with a job file.
    Modify {
        /// Job id.
        job: u64,
        /// The job file.
        file: PathBuf,
    },
    /// List the jobs.
    List,
    /// A job's definition, history and log.
    Show {
        /// Job id.
        job: u64,
    },
    /// Keep a READY job from running.
    Hold {
        /// Job id.
        job: u64,
    },
    /// Let a held job run when due.
    Release {
        /// Job id.
        job: u64,
    },
    /// Run a job now.
    Run {
        /// Job id.
        job: u64,
    },
    /// Cancel a job (all its sub-jobs).
    Cancel {
        /// Job id.
        job: u64,
        /// Queue it again for its next scheduled time.
        #[arg(long)]
        reschedule: bool,
    },
    /// Queue a DONE, FAILED or CANCELLED job again.
    Resubmit {
        /// Job id.
        job: u64,
    },
    /// Move a job's next run: `now`, `+30m`, `+2h`, `2026-12-01 22:00` (UTC).
    Reschedule {
        /// Job id.
        job: u64,
        /// When.
        at: String,
    },
    /// Delete a job that is not running.
    Delete {
        /// Job id.
        job: u64,
    },
    /// The activity log.
    Log {
        /// Only this job's entries.
        #[arg(long)]
        job: Option<u64>,
        /// errors, warnings, notes or debug.
        #[arg(long, default_value = "notes", value_parser = ["errors", "warnings", "notes", "debug"])]
        level: String,
        /// At most this many entries.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
}

fn read_job_file(path: &PathBuf) -> anyhow::Result<String> {
    let meta = std::fs::metadata(path).with_context(|| format!("cannot read job file {}", path.display()))?;
    if meta.len() > coffer::catalog::MAX_DEFINITION_LEN as u64 {
        bail!("job file {} is over {} KiB", path.display(), coffer::catalog::MAX_DEFINITION_LEN >> 10);
    }
    std::fs::read_to_string(path)
        .with_context(|| format!("cannot read job file {} (UTF-8 text?)", path.display()))
}

/// Runs `coffer job …`.
pub fn run(ctx: &Ctx, a: JobArgs) -> anyhow::Result<ExitCode> {
    let req = match a.what {
        JobCommand::Submit { file, hold } => Request::Submit { definition: read_job_file(&file)?, hold },
        JobCommand::Modify { job, file } => Request::Modify { job, definition: read_job_file(&file)? },
        JobCommand::List => Request::List {},
        JobCommand::Show { job } => Request::Show { job },
        JobCommand::Hold { job } => Request::Hold { job },
        JobCommand::Release { job } => Request::Release { job },
        JobCommand::Run { job } => Request::Run { job },
        JobCommand::Cancel { job, reschedule } => Request::Cancel { job, reschedule },
        JobCommand::Resubmit { job } => Request::Resubmit { job },
        JobCommand::Reschedule { job, at } => Request::Reschedule { job, at },
        JobCommand::Delete { job } => Request::Delete { job },
        JobCommand::Log { job, level, limit } => {
            let level = match level.as_str() {
                "errors" => LogLevel::Error,
                "warnings" => LogLevel::Warning,
                "debug" => LogLevel::Debug,
                _ => LogLevel::Note,
            };
            Request::Log { job, level, limit }
        }
    };
    let data = call(ctx, &req)?;
    if ctx.json {
        super::print_json(ctx, &data);
        return Ok(ExitCode::SUCCESS);
    }
    match req {
        Request::List {} => print_jobs(&data),
        Request::Show { .. } => print_job(&data),
        Request::Log { .. } => print_log(&data),
        Request::Submit { .. } => println!("job {} ({}) submitted", data["job"], text(&data["name"])),
        _ if data.get("id").is_some() => print_jobs(&Value::Array(vec![data])),
        _ => println!("{data}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `coffer status`.
pub fn status(ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let data = call(ctx, &Request::Status {})?;
    if ctx.json {
        super::print_json(ctx, &data);
        return Ok(ExitCode::SUCCESS);
    }
    println!("{}: {}", text(&data["board"]), if data["healthy"] == true { "healthy" } else { "DEGRADED" });
    println!("  {}", text(&data["activity"]));
    for ask in data["asks"].as_array().into_iter().flatten() {
        println!("  ASKS: {}", text(ask));
    }
    println!("  sessions {}, media {}, up {} s", data["sessions"], data["media"], data["uptime"]);
    if let Some(d) = data["devices"].as_array() {
        for x in d {
            println!("  {}", text(x));
        }
    }
    for a in data["agents"].as_array().into_iter().flatten() {
        let conn =
            a["address"].as_str().map_or_else(|| text(&a["state"]), |addr| format!("connected from {addr}"));
        let last = &a["last_backup"];
        let last = if last.is_object() {
            format!("last backup: session {} {}", last["session"], text(&last["status"]))
        } else {
            "no backup yet".to_owned()
        };
        println!(
            "  agent {}: {conn}, {}/s, {last}",
            text(&a["name"]),
            super::human_bytes(a["bytes_per_s"].as_u64().unwrap_or(0))
        );
    }
    let e = &data["endpoint"];
    if e.is_object() {
        println!("  status endpoint {}", text(&e["url"]));
        if let Some(f) = e["fingerprint"].as_str() {
            println!("  certificate SHA-256 {f}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One request to the service; its data, or its refusal as the error.
/// One request to the running service and its data; a refusal is an error.
pub(super) fn call(ctx: &Ctx, req: &Request) -> anyhow::Result<Value> {
    let mut client = Client::connect(&ctx.state)?;
    let reply = client.call(req)?;
    if !reply.ok {
        bail!("{}", reply.error.unwrap_or_else(|| "refused".into()));
    }
    Ok(reply.data)
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        v => v.to_string(),
    }
}

fn when(v: &Value) -> String {
    v.as_u64().map_or("-".into(), calendar::format)
}

fn print_jobs(v: &Value) {
    println!("{:>5}  {:<20} {:<9} {:<19}  last", "job", "name", "state", "next run (UTC)");
    for j in v.as_array().into_iter().flatten() {
        println!(
            "{:>5}  {:<20} {:<9} {:<19}  {}",
            text(&j["id"]),
            text(&j["name"]),
            text(&j["state"]).to_uppercase(),
            when(&j["next_run"]),
            text(&j["last"])
        );
    }
}

fn print_job(v: &Value) {
    print_jobs(&Value::Array(vec![v.clone()]));
    println!("definition:");
    for l in text(&v["definition"]).lines() {
        println!("  {l}");
    }
    println!("history:");
    for h in v["history"].as_array().into_iter().flatten() {
        println!("  {}  {:<9} {}", when(&h["at"]), text(&h["state"]).to_uppercase(), text(&h["message"]));
    }
    println!("log:");
    print_log(&v["log"]);
}

fn print_log(v: &Value) {
    for e in v.as_array().into_iter().flatten() {
        let job = e["job"].as_u64().map_or(String::new(), |j| format!("job {j}: "));
        println!("  {}  {:<7} {job}{}", when(&e["at"]), text(&e["level"]), text(&e["message"]));
    }
}
