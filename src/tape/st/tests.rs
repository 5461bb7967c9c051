//! What can be tried without a tape drive: opening things that are not one. The device path
//! itself is exercised against real `st` in a VM.

use super::*;

fn open_err(path: &Path) -> (String, TapeError) {
    let e = StDrive::open(path).expect_err("not a tape drive");
    (e.to_string(), e)
}

#[test]
fn a_missing_device_names_the_path_and_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nst9");
    let (msg, e) = open_err(&path);
    assert!(msg.starts_with(&path.display().to_string()), "{msg}");
    assert!(msg.contains("cannot open the tape device"), "{msg}");
    assert!(msg.contains("/dev/nstN") && msg.contains("modprobe st"), "{msg}");
    match e {
        TapeError::Io { source, .. } => assert_eq!(source.raw_os_error(), Some(libc::ENOENT)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_regular_file_is_not_a_tape() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let (msg, e) = open_err(file.path());
    assert!(msg.starts_with(&file.path().display().to_string()), "{msg}");
    assert!(msg.contains("not a tape device") && msg.contains("/dev/nstN"), "{msg}");
    match e {
        TapeError::Io { source, .. } => assert_eq!(source.raw_os_error(), Some(libc::ENOTTY)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn dev_null_is_not_a_tape() {
    let (msg, e) = open_err(Path::new("/dev/null"));
    assert!(msg.starts_with("/dev/null: not a tape device"), "{msg}");
    assert!(matches!(e, TapeError::Io { .. }), "{e:?}");
}

#[test]
fn errnos_become_the_variants_callers_branch_on() {
    let e = |n| errno_error("/dev/nst0", "writing record 7", n);
    assert!(matches!(e(libc::ENOMEDIUM), TapeError::NoMedium { .. }));
    assert!(matches!(e(libc::EROFS), TapeError::WriteProtected { .. }));
    assert!(matches!(e(libc::EACCES), TapeError::WriteProtected { .. }));
    assert!(matches!(e(libc::ENOSPC), TapeError::EndOfMedium { .. }));
    let msg = e(libc::EIO).to_string();
    assert!(msg.starts_with("/dev/nst0: writing record 7: ") && msg.contains("rewind before"), "{msg}");
    assert!(!e(libc::EINVAL).to_string().contains("rewind"));
}
