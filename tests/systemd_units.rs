//! The systemd units in `systemd/` pass `systemd-analyze verify` with no complaint (it exits 0
//! even for unknown keys or bad values, so its output must be empty too). The units name
//! /usr/bin/coffer; the test points them at the binary under test.

use std::path::Path;
use std::process::Command;

/// The units, side by side in a temporary directory (one needs the other), running the binary
/// under test.
fn units() -> tempfile::TempDir {
    // Not a hidden directory: systemd does not look for units in one.
    let dir = tempfile::Builder::new().prefix("coffer-units-").tempdir().unwrap();
    for unit in
        ["coffer.service", "coffer-console@.service", "coffer-secrets.service", "coffer-agent.service"]
    {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd").join(unit);
        let text = std::fs::read_to_string(&src).unwrap();
        assert!(text.contains("/usr/bin/coffer"), "{unit} does not run /usr/bin/coffer");
        let text = text.replace("/usr/bin/coffer", env!("CARGO_BIN_EXE_coffer"));
        std::fs::write(dir.path().join(unit), text).unwrap();
    }
    dir
}

fn verify(unit: &str, instances: &[&str]) {
    let dir = units();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(instances)
        .current_dir(dir.path())
        .output()
        .expect("systemd-analyze runs (package systemd; .ci/run installs it)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let ours: Vec<&str> =
        stderr.lines().filter(|l| l.contains(dir.path().to_str().unwrap()) || l.contains(unit)).collect();
    assert!(out.status.success() && ours.is_empty(), "{unit}: {}\n{stderr}", out.status);
}

#[test]
fn the_service_unit_verifies_cleanly() {
    verify("coffer.service", &["coffer.service"]);
}

#[test]
fn the_console_unit_verifies_cleanly() {
    // It requires the service: both are loaded.
    verify("coffer-console@.service", &["coffer.service", "coffer-console@ttyS0.service"]);
}

#[test]
fn the_first_boot_secrets_unit_verifies_cleanly_and_runs_before_the_service() {
    verify("coffer-secrets.service", &["coffer-secrets.service", "coffer.service"]);
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/coffer-secrets.service"))
            .unwrap();
    let has = |line: &str| text.lines().any(|l| l == line);
    // Before the service (which refuses the example token) and the console (which checks the
    // PIN); after the board the HIL harness hands in, so that one is left alone.
    assert!(has("Before=coffer.service coffer-console@ttyS0.service"), "{text}");
    assert!(has("After=local-fs.target coffer-hil-board.service"), "{text}");
    // The secrets go to the console, never to the journal.
    assert!(has("StandardOutput=tty") && has("TTYPath=/dev/console"), "{text}");
    assert!(has("ExecStart=/usr/bin/coffer board secrets /etc/coffer/board.toml"), "{text}");
    let condition =
        format!("ExecCondition=/usr/bin/grep -qF {} /etc/coffer/board.toml", coffer::board::EXAMPLE_TOKEN);
    assert!(has(&condition), "the condition names the example token: {text}");
}

#[test]
fn the_agent_unit_verifies_cleanly() {
    // systemd-analyze verify does not check that ReadWritePaths exist; systemd does when it
    // starts the unit, so the unit's /srv/restore is written `-/srv/restore` (ignored when
    // missing): most machines have none.
    verify("coffer-agent.service", &["coffer-agent.service"]);
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/coffer-agent.service"))
            .unwrap();
    let has = |line: &str| text.lines().any(|l| l == line);
    // `coffer agent run` tells systemd when it is up and how its connection goes; refused by
    // the box it exits 3 (`EXIT_REFUSED` in src/cli/agent.rs) and is not restarted.
    assert!(text.contains("Type=notify"), "{text}");
    assert!(text.contains("RestartPreventExitStatus=3"), "{text}");
    assert!(has("Type=notify") && has("RestartPreventExitStatus=3") && has("Restart=on-failure"), "{text}");
    assert!(has("ExecStart=/usr/bin/coffer --state /var/lib/coffer-agent agent run"), "{text}");
    assert!(has("StateDirectory=coffer-agent") && has("StateDirectoryMode=0700"), "{text}");
    // It reads everything it backs up and writes only its state and where it restores.
    assert!(text.contains("CAP_DAC_READ_SEARCH"), "{text}");
    assert!(
        has("ProtectSystem=strict") && has("ReadWritePaths=/var/lib/coffer-agent -/srv/restore"),
        "{text}"
    );
}

#[test]
fn a_broken_unit_is_caught() {
    // The check itself: a unit with a bad value must not pass.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.service"), "[Service]\nType=notifyy\nExecStart=/bin/true\n").unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no", "bad.service"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.service"), "{out:?}");
}
