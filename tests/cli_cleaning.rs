//! Drive cleaning through the command line against the virtual library: a drive that asks for
//! cleaning during a backup is cleaned with the library's cleaning cartridge after the job,
//! the use counted in the journal; a worn cleaning cartridge is retired and reported, and the
//! drive stays in use.

mod common;

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use common::*;

/// A world with a virtual library `vlib` of one drive that asks for cleaning after 1 MiB
/// written, one cleaning cartridge good for `life` uses, and `extra` board lines.
struct World {
    env: Env,
    board: PathBuf,
    src: PathBuf,
}

impl World {
    fn new(life: u32) -> World {
        let env = Env::new();
        let board = env.path("board.toml");
        let text = format!(
            "name = \"t\"\n[[library]]\nname = \"vlib\"\nkind = \"virtual\"\ndrives = 1\nslots = 6\n\
             cartridges = 4\ncleaning = 1\ncapacity = \"256M\"\ndir = \"{}\"\ncleaning_ms = 20\n\
             cleaning_life = {life}\n\
             [[library.fault]]\nat = \"cleaning_required\"\ndrive = 0\nafter = \"1M\"\n",
            env.path("carts").display()
        );
        fs::write(&board, text).unwrap();
        let src = env.path("src");
        fs::create_dir_all(&src).unwrap();
        write_file(&src.join("a.bin"), &random_bytes(1, 3 << 20));
        World { env, board, src }
    }

    fn backup(&self) {
        let mut c: Command =
            self.env.command(&["--json", "backup", self.src.to_str().unwrap(), "--to", "library:vlib"]);
        c.env("COFFER_BOARD", &self.board);
        run(c).expect_code(0);
    }

    /// The catalog as the journal has it.
    fn catalog(&self) -> coffer::catalog::Catalog {
        let (store, _) =
            coffer::store::Store::open(&self.env.state, coffer::journal::Mode::ReadOnly).unwrap();
        store.catalog().clone()
    }

    /// Uses written to the cleaning cartridge's file by the virtual library (one-byte records
    /// after the 8-byte magic, 5 header bytes each).
    fn uses_on_cartridge(&self) -> u64 {
        let len = fs::metadata(self.env.path("carts/CLN001L1.tape")).map_or(8, |m| m.len());
        (len - 8) / 6
    }

    fn log(&self) -> Vec<String> {
        self.catalog().log().map(|e| e.message.clone()).collect()
    }
}

#[test]
fn a_drive_that_asks_for_cleaning_is_cleaned_after_the_backup_and_the_use_counted() {
    let w = World::new(50);
    w.backup();
    let c = w.catalog();
    let carts: Vec<_> = c.cleaning_cartridges("vlib").map(|(b, k)| (b.to_owned(), k.clone())).collect();
    assert_eq!(carts.len(), 1, "{carts:?}");
    assert_eq!(carts[0].0, "CLN001L1");
    assert_eq!(carts[0].1.uses, 1);
    assert_eq!(carts[0].1.last.map(|(_, d)| d), Some(0));
    assert!(carts[0].1.retired.is_none());
    assert_eq!(w.uses_on_cartridge(), 1, "the library loaded it once");
    let log = w.log();
    assert!(log.iter().any(|m| m == "library vlib drive 0 cleaned with CLN001L1 (use 1)"), "{log:?}");
    // The next run's drive gets dirty again: a second use is counted on the same cartridge.
    w.backup();
    let c = w.catalog();
    assert_eq!(c.cleaning_cartridges("vlib").next().unwrap().1.uses, 2);
    assert_eq!(w.uses_on_cartridge(), 2);
    assert!(!w.log().iter().any(|m| m.contains("taken offline")), "{:?}", w.log());
}

#[test]
fn a_worn_cleaning_cartridge_is_retired_and_reported_and_the_drive_stays_in_use() {
    let w = World::new(1);
    w.backup();
    assert_eq!(w.catalog().cleaning_cartridges("vlib").next().unwrap().1.uses, 1);
    // Its one use is spent: the drive reports it expired when it is loaded again.
    w.backup();
    let c = w.catalog();
    let (_, k) = c.cleaning_cartridges("vlib").next().unwrap();
    assert_eq!(k.uses, 1, "an expired cartridge cleans nothing");
    let why = &k.retired.as_ref().expect("retired").1;
    assert!(why.contains("expired"), "{why}");
    let log = w.log();
    assert!(log.iter().any(|m| m.contains("cleaning cartridge CLN001L1 retired")), "{log:?}");
    assert!(
        log.iter().any(|m| m.contains("drive 0 asks for cleaning but no usable cleaning cartridge")),
        "{log:?}"
    );
    assert!(!log.iter().any(|m| m.contains("taken offline")), "{log:?}");
    // A retired cartridge is never loaded again, and the drive still takes backups.
    w.backup();
    assert_eq!(w.uses_on_cartridge(), 1);
    let log = w.log();
    let missing = log.iter().filter(|m| m.contains("no usable cleaning cartridge")).count();
    assert_eq!(missing, 2, "{log:?}");
}
