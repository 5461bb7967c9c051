//! `coffer board secrets FILE` on a copy of the image's board: the example token and PIN are
//! replaced by random ones (a 43-character base64url token, a 6-digit PIN), the file rewritten
//! mode 0600 and passing `coffer board check`, the secrets printed once. A second run leaves the
//! board alone (the first-boot unit runs at every boot: it must not change the secrets someone
//! wrote down), unless `--force`. The service refuses the board as shipped.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::*;

const IMAGE_BOARD: &str = include_str!("../image/board.toml");

fn secrets_of(text: &str) -> (String, String) {
    let v: toml::Value = toml::from_str(text).unwrap();
    (v["status"]["token"].as_str().unwrap().to_owned(), v["console"]["pin"].as_str().unwrap().to_owned())
}

#[test]
fn first_boot_secrets_replace_the_example_ones_once() {
    let env = Env::new();
    let board = env.path("board.toml");
    std::fs::write(&board, IMAGE_BOARD).unwrap();
    std::fs::set_permissions(&board, std::fs::Permissions::from_mode(0o644)).unwrap();
    let path = board.to_str().unwrap();

    // As shipped, the board is refused: the example token on 0.0.0.0.
    let r = env.coffer(&["board", "check", path]);
    assert_ne!(r.code, 0, "{r}");
    assert!(r.stderr.contains("status.token") && r.stderr.contains("example"), "{r}");
    let r = env.coffer(&["--board", path, "serve"]);
    assert_ne!(r.code, 0, "{r}");
    assert!(r.stderr.contains("status.token") && r.stderr.contains("coffer board secrets"), "{r}");

    let r = env.coffer(&["board", "secrets", path]);
    r.expect_code(0);
    let text = std::fs::read_to_string(&board).unwrap();
    let (token, pin) = secrets_of(&text);
    assert_eq!(token.len(), 43, "{token}");
    assert!(token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{token}");
    assert!(pin.len() == 6 && pin.bytes().all(|b| b.is_ascii_digit()), "{pin}");
    assert!(r.stdout.contains(&token) && r.stdout.contains(&pin), "shown once: {r}");
    let mode = std::fs::metadata(&board).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the board holds secrets");
    env.coffer(&["board", "check", path]).expect_code(0);
    // The rest of the board is as it was, comments included.
    let rest = |t: &str| t.lines().filter(|l| !l.starts_with("token =") && !l.starts_with("pin =")).count();
    assert_eq!(rest(&text), rest(IMAGE_BOARD));

    // A second run changes nothing and shows nothing.
    let r = env.coffer(&["board", "secrets", path]);
    r.expect_code(0);
    assert_eq!(std::fs::read_to_string(&board).unwrap(), text);
    assert!(!r.stdout.contains(&token) && r.stdout.contains("nothing changed"), "{r}");
    // Unless forced.
    let r = env.coffer_json(&["board", "secrets", path, "--force"]);
    r.expect_code(0);
    let (token2, pin2) = secrets_of(&std::fs::read_to_string(&board).unwrap());
    assert_ne!(token2, token);
    assert_eq!(r.json()["token"], token2.as_str());
    assert_eq!(r.json()["pin"], pin2.as_str());
}
