//! A crafted medium through the real binary: a session whose object records were rewritten on
//! the medium (with their CRCs made right again, as an attacker would) to name paths outside
//! the tree. `verify --compare` must report them as refused, never look at what they name.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::*;

/// Record header length and field offsets of the on-media format (see `coffer::format`).
const HEADER_LEN: usize = 48;
const MAGIC: &[u8] = b"CFFR";
const KIND_OBJECT_META: u8 = 3;

/// Renames an object on the medium: replaces `from` by `to` (same length) inside the object
/// metadata record that holds it, and writes that record's CRC again. Returns how many records
/// were changed.
fn rename_on_medium(volume: &Path, from: &[u8], to: &[u8]) -> usize {
    assert_eq!(from.len(), to.len(), "a forged name keeps the record's length");
    let mut bytes = fs::read(volume).unwrap();
    let mut changed = 0;
    let mut at = 0;
    while let Some(found) = bytes[at..].windows(from.len()).position(|w| w == from).map(|p| p + at) {
        at = found + 1;
        // The record holding it: the nearest header before it.
        let Some(h) = bytes[..found].windows(MAGIC.len()).rposition(|w| w == MAGIC) else { continue };
        let stored = u32::from_le_bytes(bytes[h + 36..h + 40].try_into().unwrap()) as usize;
        let payload = h + HEADER_LEN..h + HEADER_LEN + stored;
        if bytes[h + 5] != KIND_OBJECT_META || !payload.contains(&found) {
            continue;
        }
        bytes[found..found + to.len()].copy_from_slice(to);
        let mut crc = crc32fast::Hasher::new();
        crc.update(&bytes[h..h + 44]);
        crc.update(&bytes[payload]);
        bytes[h + 44..h + 48].copy_from_slice(&crc.finalize().to_le_bytes());
        changed += 1;
    }
    fs::write(volume, bytes).unwrap();
    changed
}

#[test]
fn verify_compare_refuses_paths_a_crafted_medium_names_outside_the_tree() {
    let env = Env::new();
    let src = env.path("src");
    // Large enough for records of their own (not packed), names as long as the forged ones.
    write_file(&src.join("zzzzzzzzzzzzzzzz"), &random_bytes(1, 200_000));
    write_file(&src.join("yyyyyyyyyyy"), &random_bytes(2, 200_000));
    write_file(&src.join("kept"), &random_bytes(3, 200_000));
    let id = env.backup_ok(&src, &["--unit", "64K"])["session"].as_u64().unwrap().to_string();
    // Beside the compared tree, a file the crafted medium reaches for.
    let secret = env.path("secret-target");
    write_file(&secret, b"not yours");
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();

    let volume = env.only_volume();
    assert_eq!(rename_on_medium(&volume, b"zzzzzzzzzzzzzzzz", b"../secret-target"), 1);
    assert_eq!(rename_on_medium(&volume, b"yyyyyyyyyyy", b"/etc/shadow"), 1);

    let r = env.coffer_json(&["verify", &id, "--compare", src.to_str().unwrap()]);
    assert_ne!(r.code, 0, "a session with refused paths does not verify clean: {r}");
    let differences = strings(&r.json()["differences"]);
    for forged in ["../secret-target", "/etc/shadow"] {
        let said: Vec<&String> =
            differences.iter().filter(|d| d.starts_with(&format!("{forged}: "))).collect();
        assert_eq!(said.len(), 1, "{forged} not reported once: {r}");
        assert!(said[0].contains("not compared") && said[0].contains("crafted"), "{}", said[0]);
        for leaked in ["size", "mode", "owner", "modification", "missing"] {
            assert!(!said[0].contains(leaked), "{forged} was looked at: {}", said[0]);
        }
    }
    // The object the medium did not rename is compared as before: no difference.
    assert_eq!(differences.len(), 2, "{r}");
}
