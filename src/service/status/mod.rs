//! The remote status endpoint's answers, as a pure function of the request and a snapshot of
//! the appliance: `GET /healthz` (no auth; `ok`, or `degraded` with status 503; nothing else), `GET
//! /api/status` (JSON of the whole [`Snapshot`]), `GET /metrics` (Prometheus text, [`prom`]),
//! `GET /` (a page that refreshes itself, [`html`]). Read-only: any other method is refused.
//!
//! Everything but /healthz needs the board's token, as a bearer token or as the password of
//! HTTP Basic auth ([`auth`]); a refusal carries a `WWW-Authenticate` challenge, Basic for the
//! page so that a browser asks for it. An unauthorized request sees only fixed text: nothing
//! from the snapshot. The snapshot holds what people may see on the status page and nothing
//! more: job names but never job definitions or source paths. The HTTP server around it is in
//! [`super::http`].

mod auth;
mod html;
mod prom;

use serde::Serialize;

pub use auth::{authorized, constant_time_eq, decode_base64};
pub use html::page;
pub use prom::metrics;

/// Longest request path answered; longer ones are refused before anything else.
pub const MAX_PATH: usize = 256;

/// The states a job can be in, as [`JobLine::state`] spells them.
pub const JOB_STATES: [&str; 6] = ["ready", "hold", "active", "done", "failed", "cancelled"];

/// What the endpoint shows: a snapshot taken when the request arrives.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Snapshot {
    /// The box's name.
    pub board: String,
    /// The service is healthy (journal open for writing, data plane alive).
    pub healthy: bool,
    /// What the service is doing, for people.
    pub activity: String,
    /// Sessions in the catalog.
    pub sessions: u64,
    /// The newest session: id, status, objects, bytes.
    pub latest: Option<SessionLine>,
    /// Media in the catalog.
    pub media: u64,
    /// Libraries and targets on the board.
    pub devices: Vec<String>,
    /// Seconds since the service started.
    pub uptime: u64,
    /// The scheduled jobs.
    pub jobs: Vec<JobLine>,
    /// The tape drives, one line per (library, drive).
    pub drives: Vec<DriveLine>,
    /// The cartridges the libraries hold.
    pub cartridges: Vec<CartridgeLine>,
    /// Data rates and totals.
    pub throughput: Throughput,
    /// The journal.
    pub journal: JournalLine,
    /// The front panel's two lines (20 characters each), as shown on the box.
    pub panel: [String; 2],
    /// The status endpoint itself, when the board has one.
    pub endpoint: Option<EndpointLine>,
    /// The backup agents: enrolled or connected, their throughput and last backup.
    pub agents: Vec<AgentLine>,
    /// What the box waits for a person to do (`EXPORT: …`, `WAITING MEDIA: …`).
    pub asks: Vec<String>,
}

/// A backup agent, as shown.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct AgentLine {
    /// Its name.
    pub name: String,
    /// pending, enrolled or revoked.
    pub state: String,
    /// Where it is connected from, when it is.
    pub address: Option<String>,
    /// Since when (seconds since the epoch), when connected.
    pub since: Option<u64>,
    /// Bytes it sent to backups now, per second, over the last refresh.
    pub bytes_per_s: u64,
    /// Bytes it sent to backups on this connection.
    pub bytes: u64,
    /// Its newest session: id, status, when it started.
    pub last_backup: Option<AgentBackup>,
}

/// An agent's newest session.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct AgentBackup {
    /// Session id.
    pub session: u64,
    /// complete, failed, running…
    pub status: String,
    /// Started, seconds since the epoch.
    pub started: u64,
}

/// The status endpoint, as shown: where to reach it and how to know it is the box.
#[derive(Debug, Clone, Default, Serialize)]
pub struct EndpointLine {
    /// Its URL, e.g. `https://0.0.0.0:8470/`.
    pub url: String,
    /// SHA-256 fingerprint of its TLS certificate (colon-separated hex); none for plain HTTP
    /// on loopback.
    pub fingerprint: Option<String>,
    /// Connections open now.
    pub connections: u64,
    /// Connections closed at once because too many were open, since the service started.
    pub refused: u64,
}

/// One session, as shown.
#[derive(Debug, Clone, Serialize)]
pub struct SessionLine {
    /// Id.
    pub id: u64,
    /// How it ended, or "running".
    pub status: String,
    /// Objects.
    pub objects: u64,
    /// Bytes read from the sources.
    pub bytes: u64,
}

/// One scheduled job, as shown: its name and state, never its definition or source paths.
#[derive(Debug, Clone, Default, Serialize)]
pub struct JobLine {
    /// Id.
    pub id: u64,
    /// Name, as the job file gives it.
    pub name: String,
    /// One of [`JOB_STATES`].
    pub state: String,
    /// When it runs next (Unix seconds), if it is scheduled.
    pub next_run: Option<u64>,
    /// The last thing it said, for people.
    pub last: String,
    /// How far the current run is, while it is active.
    pub progress: Option<JobProgress>,
}

/// The progress of a running job.
#[derive(Debug, Clone, Default, Serialize)]
pub struct JobProgress {
    /// Bytes read from the sources so far.
    pub bytes_in: u64,
    /// Bytes written to the target so far.
    pub bytes_stored: u64,
    /// Objects so far.
    pub objects: u64,
    /// The session being written.
    pub session: u64,
    /// Streams writing in parallel.
    pub streams: u16,
}

/// One tape drive, as shown.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DriveLine {
    /// The library it is in.
    pub library: String,
    /// Its number in the library.
    pub drive: u32,
    /// It answers.
    pub online: bool,
    /// Barcode of the cartridge in it.
    pub loaded: Option<String>,
    /// Reading or writing now.
    pub busy: bool,
    /// Tape repositions (back-hitches) since the service started.
    pub repositions: u64,
}

/// One cartridge, as shown.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CartridgeLine {
    /// The library holding it.
    pub library: String,
    /// Barcode.
    pub barcode: String,
    /// Where it is: `slot 3`, `drive 0`, `ie 1`.
    pub place: String,
    /// The pool it belongs to.
    pub pool: Option<String>,
    /// `writable`, `full`, `unusable`, `blank`, `cleaning`, ...
    pub state: String,
    /// How full it is, in percent.
    pub used_percent: Option<u8>,
}

/// Data rates (recent) and totals (since the service started).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Throughput {
    /// Bytes per second read from the sources.
    pub in_bytes_per_s: u64,
    /// Bytes per second written to the targets.
    pub stored_bytes_per_s: u64,
    /// Bytes read from the sources in all.
    pub in_bytes_total: u64,
    /// Bytes written to the targets in all.
    pub stored_bytes_total: u64,
}

/// The journal, as shown.
#[derive(Debug, Clone, Default, Serialize)]
pub struct JournalLine {
    /// Records in it.
    pub records: u64,
    /// Its size.
    pub bytes: u64,
    /// Open for writing (false: the service runs read-only).
    pub writable: bool,
}

/// An answer: status code, content type, an authentication challenge, body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// HTTP status code.
    pub status: u16,
    /// Content type.
    pub content_type: &'static str,
    /// The `WWW-Authenticate` header of a 401.
    pub www_authenticate: Option<&'static str>,
    /// Body.
    pub body: String,
}

fn answer(status: u16, content_type: &'static str, body: impl Into<String>) -> Answer {
    Answer { status, content_type, www_authenticate: None, body: body.into() }
}

const TEXT: &str = "text/plain; charset=utf-8";

/// The challenge of the page: a browser asks its user for a name and password (the token).
pub const BASIC_CHALLENGE: &str = "Basic realm=\"coffer\", charset=\"UTF-8\"";
/// The challenge of the machine-read endpoints.
pub const BEARER_CHALLENGE: &str = "Bearer realm=\"coffer\"";

/// The answer to `method path` with `auth` (the Authorization header, if any).
pub fn respond(method: &str, path: &str, auth: Option<&[u8]>, token: &str, s: &Snapshot) -> Answer {
    if path.len() > MAX_PATH {
        return answer(414, TEXT, "path too long\n");
    }
    if method != "GET" && method != "HEAD" {
        return answer(405, TEXT, "read-only: only GET\n");
    }
    let path = path.split('?').next().unwrap_or("");
    if path == "/healthz" {
        // A degraded box answers 503, so that a load balancer or a monitor that reads only
        // the status code sees it.
        return if s.healthy { answer(200, TEXT, "ok\n") } else { answer(503, TEXT, "degraded\n") };
    }
    if !matches!(path, "/" | "/api/status" | "/metrics") {
        return answer(404, TEXT, "no such page: try /, /healthz, /api/status or /metrics\n");
    }
    if !authorized(auth, token) {
        let challenge = if path == "/" { BASIC_CHALLENGE } else { BEARER_CHALLENGE };
        return Answer {
            www_authenticate: Some(challenge),
            ..answer(
                401,
                TEXT,
                "the status token is needed: Authorization: Bearer TOKEN, \
                 or Basic auth with any user name and the token as password\n",
            )
        };
    }
    match path {
        "/api/status" => {
            answer(200, "application/json", serde_json::to_string(s).expect("a snapshot serializes"))
        }
        "/metrics" => answer(200, "text/plain; version=0.0.4; charset=utf-8", metrics(s)),
        _ => answer(200, "text/html; charset=utf-8", page(s)),
    }
}

#[cfg(test)]
pub(super) mod tests {
    use proptest::prelude::*;

    use super::auth::tests::encode_base64;
    use super::*;

    const TOKEN: &str = "0123456789abcdef";

    /// Text that only the snapshot holds: none of it may reach an unauthorized client.
    const SECRETS: [&str; 6] = ["box-name-q7", "job-name-q7", "BC0001Q7", "pool-q7", "panel-q7", "lib-q7"];

    /// A snapshot with something in every field.
    pub fn full_snapshot() -> Snapshot {
        let job = |id, name: &str, state: &str| JobLine {
            id,
            name: name.into(),
            state: state.into(),
            next_run: Some(1_700_000_000),
            last: format!("{name}: waiting"),
            progress: None,
        };
        let cart = |barcode: &str, place: &str, state: &str, used| CartridgeLine {
            library: "vlib".into(),
            barcode: barcode.into(),
            place: place.into(),
            pool: Some("weekly".into()),
            state: state.into(),
            used_percent: used,
        };
        Snapshot {
            board: "box<1>".into(),
            healthy: true,
            activity: "backing up nightly".into(),
            sessions: 3,
            latest: Some(SessionLine { id: 3, status: "complete".into(), objects: 10, bytes: 4096 }),
            media: 2,
            devices: vec!["vlib: virtual, 2 drives".into()],
            uptime: 60,
            jobs: vec![
                JobLine {
                    progress: Some(JobProgress {
                        bytes_in: 5000,
                        bytes_stored: 3000,
                        objects: 4,
                        session: 4,
                        streams: 2,
                    }),
                    ..job(7, "nightly <home>", "active")
                },
                JobLine { progress: Some(JobProgress::default()), ..job(8, "weekly", "ready") },
                job(9, "old", "done"),
            ],
            drives: vec![
                DriveLine {
                    library: "vlib".into(),
                    drive: 0,
                    online: true,
                    loaded: Some("VX0001".into()),
                    busy: true,
                    repositions: 12,
                },
                DriveLine { library: "vlib".into(), drive: 1, ..DriveLine::default() },
            ],
            cartridges: vec![
                cart("VX0001", "drive 0", "writable", Some(40)),
                cart("VX0002", "slot 2", "writable", None),
                cart("VX0003", "slot 3", "full", Some(97)),
            ],
            throughput: Throughput {
                in_bytes_per_s: 100_000,
                stored_bytes_per_s: 60_000,
                in_bytes_total: 9_000_000,
                stored_bytes_total: 5_000_000,
            },
            journal: JournalLine { records: 42, bytes: 8192, writable: true },
            agents: vec![AgentLine {
                name: "db<1>".into(),
                state: "enrolled".into(),
                address: Some("192.0.2.7:50412".into()),
                since: Some(1000),
                bytes_per_s: 2_000_000,
                bytes: 9_000_000,
                last_backup: Some(AgentBackup { session: 3, status: "complete".into(), started: 900 }),
            }],
            panel: ["BACKUP 42%  2.0MB/s".into(), "vlib d0 VX0001 write".into()],
            asks: vec!["EXPORT: 1 cartridge(s) wait for the mail slots of <vlib>".into()],
            endpoint: Some(EndpointLine {
                url: "https://0.0.0.0:8470/".into(),
                fingerprint: Some("AB:CD".into()),
                connections: 2,
                refused: 1,
            }),
        }
    }

    /// A snapshot whose every name is one of [`SECRETS`].
    fn secret_snapshot() -> Snapshot {
        let mut s = full_snapshot();
        s.board = SECRETS[0].into();
        s.jobs.iter_mut().for_each(|j| j.name = SECRETS[1].into());
        s.drives[0].loaded = Some(SECRETS[2].into());
        s.cartridges[0].barcode = SECRETS[2].into();
        s.cartridges[0].pool = Some(SECRETS[3].into());
        s.panel = [SECRETS[4].into(), SECRETS[4].into()];
        s.drives.iter_mut().for_each(|d| d.library = SECRETS[5].into());
        s.cartridges.iter_mut().for_each(|c| c.library = SECRETS[5].into());
        s.devices = vec![SECRETS[5].into()];
        s.asks = vec![format!("EXPORT: {} waits", SECRETS[2])];
        s
    }

    fn bearer() -> String {
        format!("Bearer {TOKEN}")
    }

    fn basic(user: &str, password: &str) -> String {
        format!("Basic {}", encode_base64(format!("{user}:{password}").as_bytes()))
    }

    #[test]
    fn health_needs_no_token_and_says_nothing_else() {
        let a = respond("GET", "/healthz", None, TOKEN, &full_snapshot());
        assert_eq!((a.status, a.body.as_str()), (200, "ok\n"));
        let degraded = Snapshot { healthy: false, ..full_snapshot() };
        let a = respond("GET", "/healthz", None, TOKEN, &degraded);
        assert_eq!((a.status, a.body.as_str()), (503, "degraded\n"));
    }

    #[test]
    fn everything_else_needs_the_token_as_bearer_or_basic_password() {
        let s = full_snapshot();
        for path in ["/", "/api/status", "/metrics"] {
            let a = respond("GET", path, None, TOKEN, &s);
            assert_eq!(a.status, 401, "{path}");
            assert!(a.www_authenticate.is_some(), "a 401 says how to authenticate");
            let wrong = format!("Bearer {}x", &TOKEN[..15]);
            assert_eq!(respond("GET", path, Some(wrong.as_bytes()), TOKEN, &s).status, 401);
            let wrong = basic("coffer", &format!("{}x", &TOKEN[..15]));
            assert_eq!(respond("GET", path, Some(wrong.as_bytes()), TOKEN, &s).status, 401);
            for good in [bearer(), basic("coffer", TOKEN), basic("anyone", TOKEN)] {
                let a = respond("GET", path, Some(good.as_bytes()), TOKEN, &s);
                assert_eq!((a.status, a.www_authenticate), (200, None), "{path} {good}");
                if path == "/" {
                    assert!(a.body.contains("box&lt;1&gt;") && !a.body.contains("box<1>"), "unescaped");
                }
            }
        }
    }

    #[test]
    fn the_page_challenges_for_basic_and_the_rest_for_bearer() {
        let s = full_snapshot();
        let page = respond("GET", "/", None, TOKEN, &s);
        assert_eq!(page.www_authenticate, Some(BASIC_CHALLENGE));
        assert!(BASIC_CHALLENGE.starts_with("Basic realm=\"coffer\""));
        for path in ["/api/status", "/metrics?x=1"] {
            assert_eq!(respond("GET", path, None, TOKEN, &s).www_authenticate, Some(BEARER_CHALLENGE));
        }
        for (path, status) in [("/healthz", 200), ("/nope", 404)] {
            let a = respond("GET", path, None, TOKEN, &s);
            assert_eq!((a.status, a.www_authenticate), (status, None), "{path}");
        }
    }

    #[test]
    fn the_api_serialises_every_field() {
        let a = respond("GET", "/api/status", Some(bearer().as_bytes()), TOKEN, &full_snapshot());
        let v: serde_json::Value = serde_json::from_str(&a.body).unwrap();
        assert_eq!(v["sessions"], 3);
        assert_eq!(v["jobs"][0]["name"], "nightly <home>");
        assert_eq!(v["jobs"][0]["progress"]["bytes_in"], 5000);
        assert_eq!(v["jobs"][0]["progress"]["streams"], 2);
        assert_eq!(v["jobs"][2]["progress"], serde_json::Value::Null);
        assert_eq!(v["drives"][0]["loaded"], "VX0001");
        assert_eq!(v["drives"][0]["repositions"], 12);
        assert_eq!(v["cartridges"][2]["place"], "slot 3");
        assert_eq!(v["cartridges"][2]["used_percent"], 97);
        assert_eq!(v["throughput"]["stored_bytes_total"], 5_000_000);
        assert_eq!(v["journal"]["records"], 42);
        assert_eq!(v["journal"]["writable"], true);
        assert_eq!(v["panel"][1], "vlib d0 VX0001 write");
        assert_eq!(v["endpoint"]["fingerprint"], "AB:CD");
        assert_eq!(v["endpoint"]["refused"], 1);
    }

    #[test]
    fn bad_requests_are_refused_plainly() {
        let s = full_snapshot();
        assert_eq!(respond("POST", "/api/status", None, TOKEN, &s).status, 405);
        assert_eq!(respond("GET", "/etc/passwd", None, TOKEN, &s).status, 404);
        assert_eq!(respond("GET", &"/a".repeat(200), None, TOKEN, &s).status, 414);
    }

    /// Authorization headers a client might send: none, garbage, near misses of both schemes.
    fn any_auth() -> impl Strategy<Value = Option<Vec<u8>>> {
        let near = "\\PC{0,20}".prop_map(|t| t.replace(TOKEN, ""));
        prop_oneof![
            Just(None),
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(Some),
            near.clone().prop_map(|t| Some(format!("Bearer {t}").into_bytes())),
            ("[^:]{0,8}", near).prop_map(|(u, t)| Some(basic(&u, &t).into_bytes())),
            "[^:]{0,8}".prop_map(|u| Some(basic(TOKEN, &u).into_bytes())),
        ]
    }

    proptest! {
        #[test]
        fn no_unauthorized_request_sees_anything_of_the_snapshot(
            method in "GET|HEAD|[A-Z]{0,8}",
            path in "/|/api/status|/metrics|/healthz|\\PC{0,300}",
            auth in any_auth(),
        ) {
            let s = secret_snapshot();
            let a = respond(&method, &path, auth.as_deref(), TOKEN, &s);
            if auth.as_deref().is_some_and(|h| authorized(Some(h), TOKEN)) {
                // Only near misses are generated; a hit would be a generator bug.
                prop_assert!(false, "generated the token: {auth:?}");
            }
            for secret in SECRETS {
                prop_assert!(!a.body.contains(secret), "{} {} leaked {}: {}", method, path, secret, a.body);
            }
            prop_assert!(a.status != 200 || path.split('?').next() == Some("/healthz"));
        }
    }
}
