//! The remote status endpoint's answers, as a pure function of the request and a snapshot of
//! the appliance: `GET /healthz` (no auth; `ok` or `degraded`, nothing else), `GET
//! /api/status` (JSON), `GET /metrics` (Prometheus text), `GET /` (a small page that
//! refreshes itself). Everything but /healthz needs the board's bearer token, compared in
//! constant time. Read-only: any other method is refused. The HTTP server around it is in
//! [`super::http`].

use serde::Serialize;

/// Longest request path answered; longer ones are refused before anything else.
pub const MAX_PATH: usize = 256;

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

/// An answer: status code, content type, body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// HTTP status code.
    pub status: u16,
    /// Content type.
    pub content_type: &'static str,
    /// Body.
    pub body: String,
}

fn answer(status: u16, content_type: &'static str, body: impl Into<String>) -> Answer {
    Answer { status, content_type, body: body.into() }
}

const TEXT: &str = "text/plain; charset=utf-8";

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether an `Authorization` header carries `token` as a bearer token.
fn authorized(header: Option<&[u8]>, token: &str) -> bool {
    header.and_then(|h| h.strip_prefix(b"Bearer ")).is_some_and(|t| constant_time_eq(t, token.as_bytes()))
}

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
        return answer(200, TEXT, if s.healthy { "ok\n" } else { "degraded\n" });
    }
    if !matches!(path, "/" | "/api/status" | "/metrics") {
        return answer(404, TEXT, "no such page: try /, /healthz, /api/status or /metrics\n");
    }
    if !authorized(auth, token) {
        return answer(401, TEXT, "a bearer token is needed (Authorization: Bearer TOKEN)\n");
    }
    match path {
        "/api/status" => {
            answer(200, "application/json", serde_json::to_string(s).expect("a snapshot serializes"))
        }
        "/metrics" => answer(200, "text/plain; version=0.0.4; charset=utf-8", metrics(s)),
        _ => answer(200, "text/html; charset=utf-8", page(s)),
    }
}

/// Prometheus text exposition.
pub fn metrics(s: &Snapshot) -> String {
    let latest = s.latest.as_ref();
    let lines = [
        ("coffer_up", "gauge", "1 when the service is healthy", u64::from(s.healthy)),
        ("coffer_uptime_seconds", "counter", "seconds since the service started", s.uptime),
        ("coffer_sessions", "gauge", "sessions in the catalog", s.sessions),
        ("coffer_media", "gauge", "media in the catalog", s.media),
        (
            "coffer_latest_session_objects",
            "gauge",
            "objects of the newest session",
            latest.map_or(0, |l| l.objects),
        ),
        (
            "coffer_latest_session_bytes",
            "gauge",
            "bytes of the newest session",
            latest.map_or(0, |l| l.bytes),
        ),
    ];
    let mut out = String::new();
    for (name, kind, help, value) in lines {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"));
    }
    out
}

/// Escapes text for HTML.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The status page: plain HTML that refreshes itself every 5 s.
pub fn page(s: &Snapshot) -> String {
    let latest = s.latest.as_ref().map_or("none yet".to_owned(), |l| {
        format!("session {} — {} — {} objects, {} bytes", l.id, esc(&l.status), l.objects, l.bytes)
    });
    let devices: String = s.devices.iter().map(|d| format!("<li>{}</li>", esc(d))).collect();
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"5\">\
         <title>coffer {board}</title></head><body><h1>coffer {board}</h1>\
         <p id=\"health\">{health}</p><p id=\"activity\">{activity}</p>\
         <p>sessions: <span id=\"sessions\">{sessions}</span>; media: {media}; up {uptime} s</p>\
         <p id=\"latest\">latest: {latest}</p><ul id=\"devices\">{devices}</ul></body></html>\n",
        board = esc(&s.board),
        health = if s.healthy { "healthy" } else { "DEGRADED" },
        activity = esc(&s.activity),
        sessions = s.sessions,
        media = s.media,
        uptime = s.uptime,
    )
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const TOKEN: &str = "0123456789abcdef";

    fn snap() -> Snapshot {
        Snapshot {
            board: "box<1>".into(),
            healthy: true,
            activity: "idle".into(),
            sessions: 3,
            latest: Some(SessionLine { id: 3, status: "complete".into(), objects: 10, bytes: 4096 }),
            media: 2,
            devices: vec!["vlib: virtual, 2 drives".into()],
            uptime: 60,
        }
    }

    #[test]
    fn health_needs_no_token_and_says_nothing_else() {
        let a = respond("GET", "/healthz", None, TOKEN, &snap());
        assert_eq!((a.status, a.body.as_str()), (200, "ok\n"));
        let degraded = Snapshot { healthy: false, ..snap() };
        assert_eq!(respond("GET", "/healthz", None, TOKEN, &degraded).body, "degraded\n");
    }

    #[test]
    fn everything_else_needs_the_token() {
        for path in ["/", "/api/status", "/metrics"] {
            assert_eq!(respond("GET", path, None, TOKEN, &snap()).status, 401, "{path}");
            let wrong = format!("Bearer {}x", &TOKEN[..15]);
            assert_eq!(respond("GET", path, Some(wrong.as_bytes()), TOKEN, &snap()).status, 401);
            let a = respond("GET", path, Some(format!("Bearer {TOKEN}").as_bytes()), TOKEN, &snap());
            assert_eq!(a.status, 200, "{path}");
            if path == "/" {
                assert!(
                    a.body.contains("box&lt;1&gt;") && !a.body.contains("box<1>"),
                    "unescaped: {}",
                    a.body
                );
            }
        }
        let a = respond("GET", "/api/status", Some(format!("Bearer {TOKEN}").as_bytes()), TOKEN, &snap());
        let v: serde_json::Value = serde_json::from_str(&a.body).unwrap();
        assert_eq!(v["sessions"], 3);
    }

    #[test]
    fn bad_requests_are_refused_plainly() {
        assert_eq!(respond("POST", "/api/status", None, TOKEN, &snap()).status, 405);
        assert_eq!(respond("GET", "/etc/passwd", None, TOKEN, &snap()).status, 404);
        assert_eq!(respond("GET", &"/a".repeat(200), None, TOKEN, &snap()).status, 414);
    }

    #[test]
    fn metrics_are_prometheus_text() {
        let m = metrics(&snap());
        for line in m.lines().filter(|l| !l.starts_with('#')) {
            let (name, value) = line.split_once(' ').unwrap();
            assert!(name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'), "{line}");
            value.parse::<f64>().unwrap();
        }
        assert!(m.contains("coffer_sessions 3\n"));
    }

    proptest! {
        #[test]
        fn any_request_gets_an_answer_and_no_secret(method in "[A-Z]{0,8}", path in "\\PC{0,300}", auth in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40))) {
            let a = respond(&method, &path, auth.as_deref(), TOKEN, &snap());
            if a.status != 200 || path.split('?').next() == Some("/healthz") {
                prop_assert!(!a.body.contains("sessions"));
            }
        }
    }
}
