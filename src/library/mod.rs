//! The library manager: one tape library (its robot and drives) shared by every tape target
//! and reader of the process. It keeps the inventory (READ ELEMENT STATUS at start and after
//! every move), hands out drives ([`Lease`]: one user at a time, offline drives never), moves
//! cartridges, and remembers which cartridges must not be written (write-protected, a label
//! that is not its barcode, another program's data) and which are full.
//!
//! Libraries are named in the board file and opened on first use through [`open`], after
//! the command line or the service [`configure`]d the board. The virtual library (the
//! built-in default) keeps its cartridges as files under `<state>/library/<name>`.
//!
//! Drive health: after each unload and each job the drive's TapeAlert flags are read, and a
//! drive that asks is cleaned (see [`cleaning`], decisions in [`health`]).
//!
//! Locking: the manager's state is behind one mutex held only for bookkeeping and robot
//! moves; tape I/O happens on a leased drive outside it, so drives stream in parallel.

pub mod changer;
pub mod cleaning;
pub mod health;
pub mod inventory;
pub mod ops;
pub mod standalone;
pub mod vault;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use crate::board::{Board, Library as LibraryConfig};
use crate::device::DeviceError;
use crate::lifecycle::pools::Allocation;
use crate::scsi::transport::Transport;
use crate::tape::{TapeDrive, TapeIo};

pub use inventory::{Inventory, Known, Place};

/// How the ask of a writer waiting for a cartridge starts.
pub const WAITING_MEDIA: &str = "WAITING MEDIA";

/// How long a reader or writer waits for a free drive before giving up.
const LEASE_WAIT: Duration = Duration::from_secs(600);

/// Counters of what the library's drives did, for reports and tests.
#[derive(Debug, Default)]
pub struct Stats {
    /// Data blocks read.
    pub blocks_read: AtomicU64,
    /// Data blocks written.
    pub blocks_written: AtomicU64,
    /// Seeks (LOCATE, or the SPACE fallback).
    pub seeks: AtomicU64,
    /// Robot moves.
    pub moves: AtomicU64,
    /// Robot moves whose first attempt failed and that were issued again.
    pub moves_retried: AtomicU64,
}

/// One drive bay: the drive, unless leased, and whether it may be used.
struct Bay {
    address: u16,
    io: Option<Box<dyn TapeIo>>,
    offline: Option<String>,
}

struct Inner {
    changer: Box<dyn Transport + Send>,
    inventory: Inventory,
    bays: Vec<Bay>,
    known: Known,
    tending: cleaning::Tending,
}

/// A tape library.
pub struct Library {
    name: String,
    capacity: u64,
    rate: Option<u64>,
    inner: Mutex<Inner>,
    freed: Condvar,
    /// A lock file held while the library is open (the virtual library's).
    held: Mutex<Option<std::fs::File>>,
    /// The virtual library's own view, for its drives' counters.
    sim: Mutex<Option<crate::sim::Changer>>,
    /// File keeping which drives were taken offline, across runs.
    offline_file: Mutex<Option<PathBuf>>,
    /// What the library waits for a person to do, by what asks (shown on the console, the
    /// front panel and the endpoint until done).
    asks: Mutex<std::collections::BTreeMap<String, String>>,
    /// What the drives did.
    pub stats: Stats,
}

impl std::fmt::Debug for Library {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Library").field("name", &self.name).finish_non_exhaustive()
    }
}

/// A drive handed to one user; it goes back to the library when dropped.
pub struct Lease {
    lib: Arc<Library>,
    bay: usize,
    io: Option<Box<dyn TapeIo>>,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease").field("library", &self.lib.name).field("bay", &self.bay).finish()
    }
}

impl Lease {
    /// The drive.
    pub fn io(&mut self) -> &mut dyn TapeIo {
        self.io.as_deref_mut().expect("a lease holds its drive until dropped")
    }

    /// The drive's number in the library (data transfer element order).
    pub fn drive(&self) -> usize {
        self.bay
    }

    /// The library.
    pub fn library(&self) -> &Arc<Library> {
        &self.lib
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut g = self.lib.lock();
        g.bays[self.bay].io = self.io.take();
        drop(g);
        self.lib.freed.notify_all();
    }
}

impl Library {
    /// A library of `changer` and `drives` (in data transfer element order); `capacity` is a
    /// cartridge's nominal size, `rate` a drive's streaming rate if known.
    pub fn new(
        name: &str,
        mut changer: Box<dyn Transport + Send>,
        drives: Vec<Box<dyn TapeIo>>,
        capacity: u64,
        rate: Option<u64>,
    ) -> Result<Arc<Library>, DeviceError> {
        let inventory = changer::read_inventory(&mut *changer).map_err(|e| fail(name, e))?;
        let addresses = inventory.drives();
        if addresses.len() != drives.len() {
            return Err(fail(
                name,
                format!(
                    "the changer reports {} drives, the board names {}: list every drive, in element order",
                    addresses.len(),
                    drives.len()
                ),
            ));
        }
        let drives_n = drives.len();
        let bays = addresses
            .into_iter()
            .zip(drives)
            .map(|(address, io)| Bay { address, io: Some(io), offline: None })
            .collect();
        let tending = cleaning::Tending {
            hard_errors: vec![0; drives_n],
            pending: vec![crate::scsi::pages::TapeAlert::default(); drives_n],
            ..cleaning::Tending::default()
        };
        let inner = Inner { changer, inventory, bays, known: Known::default(), tending };
        Ok(Arc::new(Library {
            name: name.to_owned(),
            capacity,
            rate,
            inner: Mutex::new(inner),
            freed: Condvar::new(),
            offline_file: Mutex::new(None),
            asks: Mutex::new(Default::default()),
            sim: Mutex::new(None),
            held: Mutex::new(None),
            stats: Stats::default(),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Its name in the board file.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `library:NAME`, where its media are found again.
    pub fn location(&self) -> String {
        if self.name.starts_with("tape:") { self.name.clone() } else { format!("library:{}", self.name) }
    }

    /// A cartridge's nominal capacity.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// A drive's streaming rate, if known.
    pub fn rate(&self) -> Option<u64> {
        self.rate
    }

    /// Number of drives, and how many are online.
    pub fn drive_counts(&self) -> (usize, usize) {
        let g = self.lock();
        (g.bays.len(), g.bays.iter().filter(|b| b.offline.is_none()).count())
    }

    /// The inventory as last read.
    pub fn inventory(&self) -> Inventory {
        self.lock().inventory.clone()
    }

    /// Reads the inventory again (after someone opened the door, or on request).
    pub fn refresh(&self) -> Result<Inventory, DeviceError> {
        let mut g = self.lock();
        let inv = changer::read_inventory(&mut *g.changer).map_err(|e| fail(&self.name, e))?;
        g.inventory = inv.clone();
        Ok(inv)
    }

    /// Each drive: number, why it is offline, the barcode loaded, whether it is in use.
    pub fn drives(&self) -> Vec<ops::DriveState> {
        drive_states(&self.lock())
    }

    /// The drives and the inventory, or `None` when the library is busy (a robot move holds
    /// it, which on a real library takes up to minutes): for a status display that must not
    /// wait.
    pub fn try_view(&self) -> Option<(Vec<ops::DriveState>, Inventory)> {
        let g = match self.inner.try_lock() {
            Ok(g) => g,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return None,
        };
        Some((drive_states(&g), g.inventory.clone()))
    }

    /// Takes drive `drive` out of use (with why), or puts it back (`None`).
    pub fn set_offline(&self, drive: usize, why: Option<String>) -> Result<(), DeviceError> {
        let mut g = self.lock();
        let bay = g.bays.get_mut(drive).ok_or_else(|| fail(&self.name, format!("no drive {drive}")))?;
        if let Some(w) = &why {
            tracing::warn!(target: "library", "{} drive {drive} offline: {w}", self.name);
        }
        bay.offline = why;
        let lines: String = g
            .bays
            .iter()
            .enumerate()
            .filter_map(|(i, b)| Some(format!("{i} {}\n", b.offline.as_ref()?)))
            .collect();
        drop(g);
        self.freed.notify_all();
        if let Some(path) = self.offline_file.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            std::fs::write(path, lines)
                .map_err(DeviceError::io("save the offline drives", path.display().to_string()))?;
        }
        Ok(())
    }

    /// Keeps the offline drives in `path` from now on, taking offline those it lists.
    pub fn persist_offline(&self, path: PathBuf) -> Result<(), DeviceError> {
        if let Ok(text) = std::fs::read_to_string(&path) {
            let mut g = self.lock();
            for line in text.lines() {
                let (n, why) = line.split_once(' ').unwrap_or((line, "taken offline"));
                if let Some(bay) = n.parse::<usize>().ok().and_then(|i| g.bays.get_mut(i)) {
                    bay.offline = Some(why.to_owned());
                }
            }
        }
        *self.offline_file.lock().unwrap_or_else(|e| e.into_inner()) = Some(path);
        Ok(())
    }

    /// Tells the manager what the catalog knows: barcode → pool of coffer's cartridges, and
    /// which are full.
    pub fn learn(
        &self,
        pools: impl IntoIterator<Item = (String, String)>,
        full: impl IntoIterator<Item = String>,
    ) {
        let mut g = self.lock();
        g.known.pool.extend(pools);
        g.known.full.extend(full);
    }

    /// Replaces the set of cartridges whose every session has expired.
    pub fn learn_recyclable(&self, barcodes: impl IntoIterator<Item = (String, u64)>) {
        self.lock().known.recyclable = barcodes.into_iter().collect();
    }

    /// Whether `barcode`'s sessions have all expired, so that it is written from its start.
    pub fn is_recyclable(&self, barcode: &str) -> bool {
        self.lock().known.recyclable.contains_key(barcode)
    }

    /// `barcode` carries a label of `pool` made at `created` (a new media set began then).
    pub fn note_label(&self, barcode: &str, pool: &str, created: u64) {
        let mut g = self.lock();
        g.known.pool.insert(barcode.to_owned(), pool.to_owned());
        g.known.labelled.insert(barcode.to_owned(), created);
    }

    /// `barcode` was labelled anew for `pool`: it is empty and writable.
    pub fn recycled(&self, barcode: &str, pool: &str) {
        let mut g = self.lock();
        g.known.recyclable.remove(barcode);
        g.known.full.remove(barcode);
        g.known.pool.insert(barcode.to_owned(), pool.to_owned());
    }

    /// Marks `barcode` full (it reached early warning).
    pub fn mark_full(&self, barcode: &str) {
        self.lock().known.full.insert(barcode.to_owned());
    }

    /// Marks `barcode` as never to be written, with why.
    pub fn mark_unusable(&self, barcode: &str, why: String) {
        tracing::warn!(target: "library", "{}: {barcode} will not be written: {why}", self.name);
        self.lock().known.unusable.insert(barcode.to_owned(), why);
    }

    /// Cartridges that will not be written, with why.
    pub fn unusable(&self) -> Vec<(String, String)> {
        let mut v: Vec<_> = self.lock().known.unusable.clone().into_iter().collect();
        v.sort();
        v
    }

    /// Records that `barcode` was labelled for `pool`.
    pub fn note_pool(&self, barcode: &str, pool: &str) {
        self.lock().known.pool.insert(barcode.to_owned(), pool.to_owned());
    }

    /// Chooses and claims the next cartridge to write for `pool` (the one in `loaded` if it
    /// fits), or `None` when none is left.
    pub fn claim(&self, pool: &str, loaded: Option<&str>) -> Option<String> {
        let mut g = self.lock();
        // A cartridge in another drive is in use there while that drive is leased, or stuck in
        // it while it is offline (one left in an idle online drive is fetched from it); one in
        // a mail slot is on its way out to the vault, or not imported yet.
        let in_mail = |at: u16| {
            g.inventory.at(at).is_some_and(|e| e.kind == crate::scsi::cdb::ElementType::ImportExport)
        };
        let carts: Vec<(String, u16)> = g
            .inventory
            .data_cartridges()
            .into_iter()
            .filter(|(b, at)| {
                Some(b.as_str()) == loaded
                    || !g
                        .bays
                        .iter()
                        .any(|bay| bay.address == *at && (bay.io.is_none() || bay.offline.is_some()))
            })
            .filter(|(_, at)| !in_mail(*at))
            .collect();
        let board = board();
        let range_pool = |b: &str| crate::lifecycle::pools::pool_of(&board.pools, b).map(|p| p.name.clone());
        let allocation = board.pools.iter().find(|p| p.name == pool).map(|p| p.allocation());
        let append = match allocation {
            None | Some(Allocation::Append) => inventory::Appending::Any,
            Some(Allocation::New) => inventory::Appending::Never,
            Some(a) => inventory::Appending::Since(a.set_start(crate::clock::unix_now()).unwrap_or(0)),
        };
        let pick = inventory::choose(&carts, &g.known, pool, loaded, &range_pool, append)?;
        g.known.claimed.insert(pick.clone());
        Some(pick)
    }

    /// How long a writer waits for a cartridge it can write before it fails: the board's
    /// `media_wait` for this library (none for a library the board does not name).
    pub fn media_wait(&self) -> Duration {
        let board = board();
        board.libraries.iter().find(|l| l.name() == &self.name).map_or(Duration::ZERO, |l| l.media_wait())
    }

    /// Whether a writer of any open library waits for a cartridge now (a job that waits so is
    /// not stalled).
    pub fn waiting_for_media() -> bool {
        opened().iter().any(|l| l.asks().iter().any(|a| a.starts_with(WAITING_MEDIA)))
    }

    /// Whether a writer holds `barcode` now.
    pub fn is_claimed(&self, barcode: &str) -> bool {
        self.lock().known.claimed.contains(barcode)
    }

    /// Shows `text` to people under `key` until it is cleared with `None`.
    pub fn ask(&self, key: &str, text: Option<String>) {
        let mut asks = self.asks.lock().unwrap_or_else(|e| e.into_inner());
        match text {
            Some(t) => asks.insert(key.to_owned(), t),
            None => asks.remove(key),
        };
    }

    /// What the library waits for a person to do.
    pub fn asks(&self) -> Vec<String> {
        self.asks.lock().unwrap_or_else(|e| e.into_inner()).values().cloned().collect()
    }

    /// The hands of a person at the virtual library's mail slots (`None` for a real library,
    /// whose mail slots people reach themselves).
    pub fn hands(&self) -> Option<crate::sim::Changer> {
        self.sim.lock().unwrap_or_else(|e| e.into_inner()).as_ref().map(crate::sim::Changer::share)
    }

    /// Gives up a claim.
    pub fn release(&self, barcode: &str) {
        self.lock().known.claimed.remove(barcode);
    }

    /// Why nothing can be claimed for `pool`, for the error.
    pub fn why_none(&self, pool: &str) -> String {
        let g = self.lock();
        let carts = g.inventory.data_cartridges();
        let full = carts.iter().filter(|(b, _)| g.known.full.contains(b)).count();
        let other = carts.iter().filter(|(b, _)| g.known.pool.get(b).is_some_and(|p| p != pool)).count();
        let mut why = format!(
            "no cartridge left to write for pool '{pool}': {} data cartridges, {full} full, {other} in other pools, {} in use",
            carts.len(),
            g.known.claimed.len()
        );
        for (b, w) in &g.known.unusable {
            why.push_str(&format!("; {b}: {w}"));
        }
        why + "; load blank cartridges (coffer media load) or free some"
    }

    /// A free online drive, preferring one that holds `want`; waits while all are busy.
    pub fn lease(self: &Arc<Self>, want: Option<&str>) -> Result<Lease, DeviceError> {
        let deadline = std::time::Instant::now() + LEASE_WAIT;
        let mut g = self.lock();
        loop {
            let online: Vec<usize> = (0..g.bays.len()).filter(|&i| g.bays[i].offline.is_none()).collect();
            if online.is_empty() {
                return Err(fail(
                    &self.name,
                    "every drive is offline: check them and bring one online".into(),
                ));
            }
            let holds = |g: &Inner, i: usize, b: &str| {
                g.inventory.at(g.bays[i].address).and_then(|e| e.volume_tag.as_deref()) == Some(b)
            };
            let empty = |g: &Inner, i: usize| g.inventory.at(g.bays[i].address).is_none_or(|e| !e.full);
            let free: Vec<usize> = online.iter().copied().filter(|&i| g.bays[i].io.is_some()).collect();
            let pick = want
                .and_then(|b| free.iter().copied().find(|&i| holds(&g, i, b)))
                .or_else(|| free.iter().copied().find(|&i| empty(&g, i)))
                .or_else(|| free.first().copied());
            if let Some(i) = pick {
                let io = g.bays[i].io.take();
                return Ok(Lease { lib: self.clone(), bay: i, io });
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return Err(fail(&self.name, format!("all {} online drives stayed busy", online.len())));
            }
            g = self.freed.wait_timeout(g, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    /// Drive `drive` itself, waiting while it is busy; an offline drive is an error.
    pub fn lease_drive(self: &Arc<Self>, drive: usize) -> Result<Lease, DeviceError> {
        let deadline = std::time::Instant::now() + LEASE_WAIT;
        let mut g = self.lock();
        loop {
            let bay = g.bays.get_mut(drive).ok_or_else(|| fail(&self.name, format!("no drive {drive}")))?;
            if let Some(why) = &bay.offline {
                return Err(fail(
                    &self.name,
                    format!("drive {drive} is offline ({why}): bring it online first"),
                ));
            }
            if let Some(io) = bay.io.take() {
                return Ok(Lease { lib: self.clone(), bay: drive, io: Some(io) });
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return Err(fail(&self.name, format!("drive {drive} stayed busy")));
            }
            g = self.freed.wait_timeout(g, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    /// The barcode in the leased drive, as the inventory says.
    pub fn loaded(&self, lease: &Lease) -> Option<String> {
        let g = self.lock();
        g.inventory
            .at(g.bays[lease.bay].address)
            .and_then(|e| e.volume_tag.clone())
            .filter(|_| g.inventory.at(g.bays[lease.bay].address).is_some_and(|e| e.full))
    }

    /// Puts `barcode` into the leased drive (returning what it held to its slot) and waits
    /// until the drive is ready. The position is then the beginning of the tape.
    pub fn load(&self, lease: &mut Lease, barcode: &str) -> Result<(), DeviceError> {
        if self.loaded(lease).as_deref() == Some(barcode) {
            return lease.io().ready().map_err(|e| fail(&self.name, e.to_string()));
        }
        if self.name.starts_with("tape:") {
            return Err(DeviceError::MissingMedium {
                barcode: barcode.to_owned(),
                target: self.location(),
                detail: "this drive has no changer: load the cartridge into it by hand".into(),
            });
        }
        self.unload(lease)?;
        let mut g = self.lock();
        let from = g.inventory.find(barcode).ok_or_else(|| DeviceError::MissingMedium {
            barcode: barcode.to_owned(),
            target: self.location(),
            detail: "no element holds it: put it in a mail slot and run `coffer media inventory`".into(),
        })?;
        let from = from.address;
        if let Some(other) = g.bays.iter_mut().find(|b| b.address == from) {
            // In another drive: take it out if that drive is idle, else it is in use.
            let Some(io) = other.io.as_mut() else {
                return Err(fail(&self.name, format!("{barcode} is in use in another drive")));
            };
            if let Err(e) = io.unload() {
                tracing::debug!(target: "library", "unload of {barcode}: {e}");
            }
        }
        let to = g.bays[lease.bay].address;
        self.robot_move(&mut g, from, to)?;
        drop(g);
        lease.io().ready().map_err(|e| fail(&self.name, e.to_string()))
    }

    /// Unloads the leased drive's cartridge and returns it to its slot (nothing if empty).
    pub fn unload(&self, lease: &mut Lease) -> Result<(), DeviceError> {
        let Some(barcode) = self.loaded(lease) else { return Ok(()) };
        if let Err(e) = lease.io().unload() {
            // A drive without a threaded tape says so; the robot can still take it.
            tracing::debug!(target: "library", "unload of {barcode}: {e}");
        }
        let mut g = self.lock();
        let from = g.bays[lease.bay].address;
        let to = g.inventory.home_for(from).ok_or_else(|| {
            fail(&self.name, format!("no empty slot to put {barcode} back: take a cartridge out"))
        })?;
        self.robot_move(&mut g, from, to)?;
        drop(g);
        self.tend(lease);
        Ok(())
    }

    /// Drive `drive` if it is online and idle, without waiting.
    pub fn try_lease_drive(self: &Arc<Self>, drive: usize) -> Option<Lease> {
        let mut g = self.lock();
        let bay = g.bays.get_mut(drive).filter(|b| b.offline.is_none())?;
        let io = bay.io.take()?;
        Some(Lease { lib: self.clone(), bay: drive, io: Some(io) })
    }

    /// Moves a cartridge between two elements named by address.
    pub fn move_between(&self, from: u16, to: u16) -> Result<(), DeviceError> {
        let mut g = self.lock();
        self.robot_move(&mut g, from, to)
    }

    fn robot_move(&self, g: &mut Inner, from: u16, to: u16) -> Result<(), DeviceError> {
        let robot = g.inventory.robot().unwrap_or(0);
        self.stats.moves.fetch_add(1, Ordering::Relaxed);
        let moved = changer::move_medium(&mut *g.changer, robot, from, to);
        if moved.retried {
            self.stats.moves_retried.fetch_add(1, Ordering::Relaxed);
        }
        // The inventory is read again whatever happened: a failed move may have moved.
        match changer::read_inventory(&mut *g.changer) {
            Ok(inv) => g.inventory = inv,
            Err(e) => tracing::warn!(target: "library", "{}: inventory after a move: {e}", self.name),
        }
        moved.result.map_err(|e| fail(&self.name, e))
    }
}

fn fail(name: &str, detail: String) -> DeviceError {
    DeviceError::Failed { what: format!("library {name}"), detail }
}

/// The board and state directory libraries are opened from.
struct Registry {
    board: Board,
    state: PathBuf,
    open: HashMap<String, Arc<Library>>,
}

static REGISTRY: Mutex<Option<Registry>> = Mutex::new(None);

fn registry() -> MutexGuard<'static, Option<Registry>> {
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

/// Says which board describes the box and where the state lives (virtual cartridges go under
/// `<state>/library/<name>` unless the board says otherwise). Libraries opened before are
/// forgotten.
pub fn configure(board: Board, state: PathBuf) {
    *registry() = Some(Registry { board, state, open: HashMap::new() });
}

/// Pools made by command (kept in the catalog), as [`learn_catalog`] last saw them.
static COMMAND_POOLS: Mutex<Vec<crate::lifecycle::pools::PoolSpec>> = Mutex::new(Vec::new());

/// The board [`configure`] was given (the built-in one if none was), with the pools made by
/// command beside the board's own.
pub fn board() -> Board {
    let mut board = registry().as_ref().map_or_else(Board::default_board, |r| r.board.clone());
    let made = COMMAND_POOLS.lock().unwrap_or_else(|e| e.into_inner());
    for p in made.iter() {
        if !board.pools.iter().any(|b| b.name == p.name) {
            board.pools.push(p.clone());
        }
    }
    board
}

/// The stand-alone drive at `path` (`/dev/nstN` through st, `/dev/sgN` by SG_IO), opened on
/// first use.
pub fn open_drive(path: &str) -> Result<Arc<Library>, DeviceError> {
    let key = format!("tape:{path}");
    let mut g = registry();
    let r = g.get_or_insert_with(|| Registry {
        board: Board::default_board(),
        state: PathBuf::from(Board::default_board().state),
        open: HashMap::new(),
    });
    if let Some(l) = r.open.get(&key) {
        return Ok(l.clone());
    }
    let fail = |detail: String| DeviceError::Failed { what: key.clone(), detail };
    let io: Box<dyn TapeIo> = if path.starts_with("/dev/sg") {
        let sg = crate::scsi::sg::SgDevice::open(path).map_err(|e| fail(e.to_string()))?;
        Box::new(TapeDrive::new(Box::new(sg), path.to_owned()))
    } else {
        Box::new(crate::tape::StDrive::open(path).map_err(|e| fail(e.to_string()))?)
    };
    let lib = standalone::open(path, io)?;
    r.open.insert(key, lib.clone());
    Ok(lib)
}

/// The library `name` of the configured board, opened on first use.
pub fn open(name: &str) -> Result<Arc<Library>, DeviceError> {
    let mut g = registry();
    let r = g.get_or_insert_with(|| Registry {
        board: Board::default_board(),
        state: PathBuf::from(Board::default_board().state),
        open: HashMap::new(),
    });
    if let Some(l) = r.open.get(name) {
        return Ok(l.clone());
    }
    let config = r.board.libraries.iter().find(|l| l.name() == name).cloned().ok_or_else(|| {
        let names: Vec<&String> = r.board.libraries.iter().map(|l| l.name()).collect();
        DeviceError::BadSpec {
            spec: format!("library:{name}"),
            detail: format!("the board has no library '{name}' (it has {names:?})"),
        }
    })?;
    let lib = match &config {
        LibraryConfig::Virtual(v) => open_virtual(v, &r.state)?,
        LibraryConfig::Scsi(s) => open_scsi(s)?,
    };
    // Drives a person took offline stay offline until brought back.
    let dir = r.state.join("library");
    std::fs::create_dir_all(&dir).map_err(DeviceError::io("create", dir.display().to_string()))?;
    lib.persist_offline(dir.join(format!("{name}.offline")))?;
    r.open.insert(name.to_owned(), lib.clone());
    Ok(lib)
}

fn open_virtual(
    v: &crate::board::VirtualLibrary,
    state: &std::path::Path,
) -> Result<Arc<Library>, DeviceError> {
    let dir = v.dir.as_ref().map_or_else(|| state.join("library").join(&v.name), PathBuf::from);
    let store = crate::sim::FileStore::open(&dir)
        .map_err(DeviceError::io("open the cartridge store", dir.display().to_string()))?;
    // One process at a time drives the virtual library: two would each keep their own idea
    // of where the cartridges are and write the same cartridge files.
    let lock_path = dir.join("lock");
    let lock = std::fs::File::create(&lock_path)
        .map_err(DeviceError::io("create", lock_path.display().to_string()))?;
    lock.try_lock().map_err(|_| {
        fail(
            &v.name,
            format!(
                "in use by another coffer process (the service?): stop it, or wait for it (lock {})",
                lock_path.display()
            ),
        )
    })?;
    let clock: Arc<dyn crate::sim::Clock> = Arc::new(crate::sim::SystemClock::default());
    let opened = crate::sim::open(v, Box::new(store), clock).map_err(|e| fail(&v.name, e.to_string()))?;
    let drives: Vec<Box<dyn TapeIo>> = opened
        .drives
        .into_iter()
        .enumerate()
        .map(|(i, d)| {
            Box::new(TapeDrive::new(Box::new(d), format!("{} drive {i}", v.name))) as Box<dyn TapeIo>
        })
        .collect();
    let rate = v.drive_rate.as_deref().and_then(crate::device::spec::parse_size);
    let view = opened.changer.share();
    let lib = Library::new(&v.name, Box::new(opened.changer), drives, v.capacity_bytes(), rate)?;
    *lib.sim.lock().unwrap_or_else(|e| e.into_inner()) = Some(view);
    *lib.held.lock().unwrap_or_else(|e| e.into_inner()) = Some(lock);
    Ok(lib)
}

fn open_scsi(s: &crate::board::ScsiLibrary) -> Result<Arc<Library>, DeviceError> {
    let open_sg =
        |path: &str| crate::scsi::sg::SgDevice::open(path).map_err(|e| fail(&s.name, format!("{path}: {e}")));
    let changer = open_sg(&s.changer)?;
    let mut drives: Vec<Box<dyn TapeIo>> = Vec::new();
    for path in &s.drives {
        // A non-rewinding st node goes through the kernel's tape driver; an sg node gets SSC
        // commands directly.
        if path.starts_with("/dev/nst") {
            let d = crate::tape::StDrive::open(path).map_err(|e| fail(&s.name, e.to_string()))?;
            drives.push(Box::new(d));
        } else {
            drives.push(Box::new(TapeDrive::new(Box::new(open_sg(path)?), path.clone())));
        }
    }
    // A real cartridge's size is not known in advance: the drive's early warning says when
    // it is full.
    Library::new(&s.name, Box::new(changer), drives, u64::MAX / 4, None)
}

fn drive_states(g: &Inner) -> Vec<ops::DriveState> {
    g.bays
        .iter()
        .enumerate()
        .map(|(drive, b)| ops::DriveState {
            drive,
            offline: b.offline.clone(),
            barcode: g.inventory.at(b.address).and_then(|e| e.volume_tag.clone()),
            // A leased drive's I/O is with its user.
            busy: b.io.is_none(),
        })
        .collect()
}

/// The libraries opened so far in this process, by name.
pub fn opened() -> Vec<Arc<Library>> {
    let mut v: Vec<Arc<Library>> =
        registry().as_ref().map(|r| r.open.values().cloned().collect()).unwrap_or_default();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

/// Tells every open library what the catalog knows of its cartridges (pools, which are full,
/// which hold only expired sessions by the board's pools now).
pub fn learn_catalog(catalog: &crate::catalog::Catalog) {
    *COMMAND_POOLS.lock().unwrap_or_else(|e| e.into_inner()) =
        crate::lifecycle::pools::effective(&[], catalog);
    let pools = board().pools;
    let verdicts = crate::lifecycle::report::verdicts(catalog, &pools, crate::clock::unix_now());
    for lib in opened() {
        let location = lib.location();
        // A damaged cartridge is never written again, expired or not.
        let usable = |m: &&crate::catalog::Medium| m.state() != crate::catalog::MediumState::Error;
        let recyclable =
            catalog.media().filter(|m| m.info().location == location).filter(usable).filter(|m| {
                let mut sessions = catalog.sessions_on(m.id()).peekable();
                sessions.peek().is_some()
                    && sessions.all(|s| verdicts.get(&s.id()).is_some_and(|v| v.expired()))
            });
        let last_write = |m: &crate::catalog::Medium| {
            catalog.sessions_on(m.id()).map(|s| s.start().started).max().unwrap_or(0)
        };
        lib.learn_recyclable(recyclable.map(|m| (m.barcode().to_owned(), last_write(m))).collect::<Vec<_>>());
        let ours = catalog.media().filter(|m| m.info().location == location);
        let (pools, full): (Vec<_>, Vec<_>) = ours
            .map(|m| {
                let full =
                    (m.state() != crate::catalog::MediumState::Writable).then(|| m.barcode().to_owned());
                ((m.barcode().to_owned(), m.info().pool.clone()), full)
            })
            .unzip();
        lib.learn(pools, full.into_iter().flatten());
        lib.lock().known.labelled.extend(
            catalog
                .media()
                .filter(|m| m.info().location == location)
                .map(|m| (m.barcode().to_owned(), m.info().created)),
        );
        let limits = board()
            .libraries
            .iter()
            .find(|l| l.name() == lib.name())
            .map_or_else(crate::board::HealthLimits::default, |l| l.health_limits());
        let cleaning = catalog.cleaning_cartridges(lib.name()).map(|(b, c)| {
            (b.to_owned(), health::CleaningKnown { uses: c.uses, retired: c.retired.is_some() })
        });
        let name = lib.name().to_owned();
        lib.learn_health(limits, cleaning.collect::<Vec<_>>(), |d| {
            catalog.drive_hard_errors(&name, u16::try_from(d).unwrap_or(u16::MAX))
        });
    }
}

/// Reads the flags of every idle online drive of the open libraries (after a job): a drive
/// that asks for cleaning or reports hard errors has its cartridge unloaded, which tends it;
/// an empty drive is tended at once.
pub fn tend_all() {
    for lib in opened() {
        for drive in 0..lib.drive_counts().0 {
            let Some(mut lease) = lib.try_lease_drive(drive) else { continue };
            if lib.loaded(&lease).is_none() {
                lib.tend(&mut lease);
                continue;
            }
            if let Ok(a) = lease.io().tape_alerts()
                && (a.cleaning_required() || a.cleaning_requested() || a.hard_error())
            {
                lib.note_alerts(drive, a);
                if let Err(e) = lib.unload(&mut lease) {
                    tracing::warn!(target: "library", "{} drive {drive}: unloading to clean it: {e}", lib.name);
                }
            }
        }
    }
}

/// What the health checks of one library found.
#[derive(Debug, Clone)]
pub struct HealthReport {
    /// The library's name in the board.
    pub library: String,
    /// Where its media are (`library:NAME`), as the catalog's media say.
    pub location: String,
    /// Its limits.
    pub limits: crate::board::HealthLimits,
    /// What happened, oldest first.
    pub events: Vec<health::HealthEvent>,
}

/// What the health checks of every open library found since the last call.
pub fn take_health_events() -> Vec<HealthReport> {
    opened()
        .iter()
        .map(|l| {
            let limits = l.lock().tending.limits;
            HealthReport {
                library: l.name.clone(),
                location: l.location(),
                limits,
                events: l.take_health_events(),
            }
        })
        .filter(|r| !r.events.is_empty())
        .collect()
}

/// What a library's drives and robot did in this process.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Activity {
    /// The library.
    pub library: String,
    /// Seeks (LOCATE or SPACE).
    pub seeks: u64,
    /// Data blocks read.
    pub blocks_read: u64,
    /// Data blocks written.
    pub blocks_written: u64,
    /// Robot moves.
    pub moves: u64,
    /// Robot moves that failed once and were retried.
    pub moves_retried: u64,
    /// Repositions (shoe-shine) per drive, where the library can tell (the virtual one).
    pub repositions: Option<Vec<u64>>,
}

/// What the open libraries did in this process, by library name.
pub fn activity() -> Vec<Activity> {
    opened()
        .iter()
        .map(|l| {
            let s = &l.stats;
            let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
            let sim = l.sim.lock().unwrap_or_else(|e| e.into_inner());
            Activity {
                library: l.name.clone(),
                seeks: get(&s.seeks),
                blocks_read: get(&s.blocks_read),
                blocks_written: get(&s.blocks_written),
                moves: get(&s.moves),
                moves_retried: get(&s.moves_retried),
                repositions: sim.as_ref().map(|c| c.drive_counters().iter().map(|d| d.repositions).collect()),
            }
        })
        .collect()
}
