//! What the changer reported (READ ELEMENT STATUS) and the choices made from it: which drive
//! holds what, where a cartridge goes back to, which cartridge to write next. Pure data and
//! rules; the changer commands are in [`super::changer`].

use std::collections::{HashMap, HashSet};

use crate::scsi::cdb::ElementType;
use crate::scsi::pages::Element;

/// Barcodes of cleaning cartridges start with this (the industry convention).
pub const CLEANING_PREFIX: &str = "CLN";

/// A library's elements as last reported.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inventory {
    /// Every element, in address order.
    pub elements: Vec<Element>,
}

/// A cartridge's place, for people and for `coffer media inventory`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Place {
    /// `drive 0`, `slot 3`, `mail slot 1`.
    pub element: String,
    /// Its element address.
    pub address: u16,
    /// The barcode, if full and labelled.
    pub barcode: Option<String>,
    /// The element holds a cartridge.
    pub full: bool,
}

impl Inventory {
    /// Elements of `kind`, in address order.
    pub fn of(&self, kind: ElementType) -> impl Iterator<Item = &Element> + '_ {
        self.elements.iter().filter(move |e| e.kind == kind)
    }

    /// The robot's address.
    pub fn robot(&self) -> Option<u16> {
        self.of(ElementType::Transport).next().map(|e| e.address)
    }

    /// Addresses of the drives, in data transfer element order.
    pub fn drives(&self) -> Vec<u16> {
        self.of(ElementType::DataTransfer).map(|e| e.address).collect()
    }

    /// The element holding `barcode`.
    pub fn find(&self, barcode: &str) -> Option<&Element> {
        self.elements.iter().find(|e| e.full && e.volume_tag.as_deref() == Some(barcode))
    }

    /// The element at `address`.
    pub fn at(&self, address: u16) -> Option<&Element> {
        self.elements.iter().find(|e| e.address == address)
    }

    /// Where the cartridge in `from` (a drive) goes back to: the slot it came from if that is
    /// an empty storage slot, else the first empty storage slot.
    pub fn home_for(&self, from: u16) -> Option<u16> {
        let free = |e: &Element| e.kind == ElementType::Storage && !e.full && self.reachable(e);
        if let Some(src) = self.at(from).and_then(|e| e.source)
            && self.at(src).is_some_and(free)
        {
            return Some(src);
        }
        self.of(ElementType::Storage).find(|e| free(e)).map(|e| e.address)
    }

    /// Whether the robot can reach `e`: its ACCESS bit, where the library reports that bit at
    /// all. Linux tgt never sets it, on any element; a library that sets it on none is taken
    /// not to report it, rather than to have no reachable slot.
    fn reachable(&self, e: &Element) -> bool {
        e.access || !self.elements.iter().any(|x| x.access)
    }

    /// Cartridges that can hold data (not cleaning ones), each with the element it is in.
    pub fn data_cartridges(&self) -> Vec<(String, u16)> {
        self.elements
            .iter()
            .filter(|e| e.full && e.kind != ElementType::Transport)
            .filter_map(|e| Some((e.volume_tag.clone()?, e.address)))
            .filter(|(b, _)| !b.starts_with(CLEANING_PREFIX))
            .collect()
    }

    /// Every cartridge with a barcode in the library, cleaning ones too.
    pub fn barcodes(&self) -> Vec<String> {
        self.elements
            .iter()
            .filter(|e| e.full && e.kind != ElementType::Transport)
            .filter_map(|e| e.volume_tag.clone())
            .collect()
    }

    /// Cleaning cartridges in storage slots, by barcode, in address order.
    pub fn cleaning_cartridges(&self) -> Vec<String> {
        self.of(ElementType::Storage)
            .filter(|e| e.full)
            .filter_map(|e| e.volume_tag.clone())
            .filter(|b| b.starts_with(CLEANING_PREFIX))
            .collect()
    }

    /// Every element for people: `drive 0`, `slot 1`…, `mail slot 1`….
    pub fn places(&self) -> Vec<Place> {
        let mut counts: HashMap<ElementType, usize> = HashMap::new();
        self.elements
            .iter()
            .filter(|e| e.kind != ElementType::Transport)
            .map(|e| {
                let n = counts.entry(e.kind).or_default();
                *n += 1;
                let element = match e.kind {
                    ElementType::DataTransfer => format!("drive {}", *n - 1),
                    ElementType::Storage => format!("slot {n}"),
                    ElementType::ImportExport => format!("mail slot {n}"),
                    ElementType::Transport => unreachable!("filtered above"),
                };
                Place { element, address: e.address, barcode: e.volume_tag.clone(), full: e.full }
            })
            .collect()
    }

    /// The address of a place named as people do: `slot 3`, `drive 0`, `mail 1`.
    pub fn address_of(&self, name: &str) -> Option<u16> {
        let name = name.trim().replace("mail slot", "mail");
        self.places().into_iter().find(|p| p.element.replace("mail slot", "mail") == name).map(|p| p.address)
    }
}

/// What coffer knows about the cartridges when choosing one to write.
#[derive(Debug, Clone, Default)]
pub struct Known {
    /// Barcode → pool, for cartridges coffer labelled.
    pub pool: HashMap<String, String>,
    /// Cartridges that are full.
    pub full: HashSet<String>,
    /// Cartridges that must not be written, each with why (write-protected, wrong label,
    /// another program's data).
    pub unusable: HashMap<String, String>,
    /// Cartridges other writers hold now.
    pub claimed: HashSet<String>,
    /// Cartridges whose every session has expired, each with when it was last written (its
    /// newest session's start): written again from their start, least recently written first,
    /// for any pool whose barcodes they may carry.
    pub recyclable: HashMap<String, u64>,
    /// When each of coffer's cartridges got its current label (its media set began).
    pub labelled: HashMap<String, u64>,
}

/// Which of the pool's cartridges with room a session may go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appending {
    /// Any.
    Any,
    /// None: each session starts a cartridge.
    Never,
    /// One labelled at or after this time (the current media set's start).
    Since(u64),
}

/// The cartridge to write next for `pool`, from `cartridges` (barcode, element), preferring
/// `loaded` (already in the writer's drive): first one of the pool with room, then a
/// cartridge coffer does not know (blank, or to be checked), then one whose sessions have all
/// expired (recycled), in barcode order. `range_pool` says which pool's barcode range a
/// cartridge lies in: one in another pool's range is never drawn for this one. `append` says
/// which of the pool's cartridges a session may go on (else it takes a new one).
pub fn choose(
    cartridges: &[(String, u16)],
    known: &Known,
    pool: &str,
    loaded: Option<&str>,
    range_pool: &dyn Fn(&str) -> Option<String>,
    append: Appending,
) -> Option<String> {
    let recyclable = |b: &str| known.recyclable.contains_key(b);
    let free = |b: &str| {
        !known.full.contains(b) && !known.unusable.contains_key(b) && !known.claimed.contains(b)
            || recyclable(b) && !known.claimed.contains(b) && !known.unusable.contains_key(b)
    };
    let in_set = |b: &str| match append {
        Appending::Any => true,
        Appending::Never => false,
        Appending::Since(t) => known.labelled.get(b).is_some_and(|&l| l >= t),
    };
    let ours = |b: &str| in_set(b) && known.pool.get(b).is_some_and(|p| p == pool) && !recyclable(b);
    let may_draw = |b: &str| range_pool(b).is_none_or(|p| p == pool);
    let unknown = |b: &str| !known.pool.contains_key(b) && may_draw(b);
    let expired = |b: &str| recyclable(b) && may_draw(b);
    if let Some(l) = loaded
        && free(l)
        && ours(l)
    {
        return Some(l.to_owned());
    }
    let mut sorted: Vec<&str> = cartridges.iter().map(|(b, _)| b.as_str()).filter(|b| free(b)).collect();
    sorted.sort_unstable();
    let least_recent = || sorted.iter().filter(|b| expired(b)).min_by_key(|b| known.recyclable[**b]);
    sorted
        .iter()
        .find(|b| ours(b))
        .or_else(|| sorted.iter().find(|b| unknown(b)))
        .or_else(least_recent)
        .map(|b| (*b).to_owned())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An element of `kind` at `address`, full with `tag` when there is one.
    pub(crate) fn el(kind: ElementType, address: u16, tag: Option<&str>) -> Element {
        let mut e = Element::empty(kind, address);
        e.full = tag.is_some();
        e.volume_tag = tag.map(str::to_owned);
        e
    }

    fn inv() -> Inventory {
        Inventory {
            elements: vec![
                el(ElementType::Transport, 0, None),
                el(ElementType::DataTransfer, 0x100, Some("A2")),
                el(ElementType::DataTransfer, 0x101, None),
                el(ElementType::Storage, 0x1000, Some("A1")),
                el(ElementType::Storage, 0x1001, None),
                el(ElementType::Storage, 0x1002, Some("CLN001L1")),
                el(ElementType::ImportExport, 0x2000, Some("A3")),
            ],
        }
    }

    #[test]
    fn places_and_addresses_read_as_people_say_them() {
        let i = inv();
        assert_eq!(i.robot(), Some(0));
        assert_eq!(i.drives(), vec![0x100, 0x101]);
        assert_eq!(i.find("A3").map(|e| e.address), Some(0x2000));
        assert_eq!(i.address_of("slot 2"), Some(0x1001));
        assert_eq!(i.address_of("drive 1"), Some(0x101));
        assert_eq!(i.address_of("mail 1"), Some(0x2000));
        assert_eq!(i.address_of("mail slot 1"), Some(0x2000));
        assert_eq!(i.address_of("slot 9"), None);
        let data: Vec<String> = i.data_cartridges().into_iter().map(|(b, _)| b).collect();
        assert_eq!(data, vec!["A2", "A1", "A3"]);
    }

    #[test]
    fn a_cartridge_goes_home_or_to_the_first_empty_slot() {
        let mut i = inv();
        assert_eq!(i.home_for(0x100), Some(0x1001));
        i.elements[1].source = Some(0x1001);
        assert_eq!(i.home_for(0x100), Some(0x1001));
        i.elements[1].source = Some(0x1000); // occupied: first empty instead
        assert_eq!(i.home_for(0x100), Some(0x1001));
        i.elements[4].full = true;
        assert_eq!(i.home_for(0x100), None);
    }

    #[test]
    fn access_counts_only_where_the_library_reports_it() {
        // Linux tgt sets ACCESS on no element: its empty slots are still where cartridges go.
        let mut i = inv();
        i.elements.iter_mut().for_each(|e| e.access = false);
        assert_eq!(i.home_for(0x100), Some(0x1001));
        // A library that reports it: a slot it says the robot cannot reach is not used.
        i.elements[0].access = true;
        assert_eq!(i.home_for(0x100), None);
    }

    #[test]
    fn the_choice_prefers_the_loaded_then_the_pool_then_unknown_and_skips_the_rest() {
        let carts: Vec<(String, u16)> = ["B1", "B2", "B3", "B4", "B5"]
            .iter()
            .enumerate()
            .map(|(i, b)| (b.to_string(), i as u16))
            .collect();
        let mut k = Known::default();
        k.pool.insert("B1".into(), "weekly".into());
        k.pool.insert("B2".into(), "default".into());
        k.pool.insert("B3".into(), "default".into());
        k.full.insert("B2".into());
        k.unusable.insert("B4".into(), "write-protected".into());
        let none = |_: &str| None;
        assert_eq!(choose(&carts, &k, "default", None, &none, Appending::Any).as_deref(), Some("B3"));
        assert_eq!(choose(&carts, &k, "default", Some("B3"), &none, Appending::Any).as_deref(), Some("B3"));
        // A loaded cartridge of another pool is not taken.
        assert_eq!(choose(&carts, &k, "default", Some("B1"), &none, Appending::Any).as_deref(), Some("B3"));
        k.claimed.insert("B3".into());
        assert_eq!(choose(&carts, &k, "default", None, &none, Appending::Any).as_deref(), Some("B5"));
        // A blank cartridge in another pool's barcode range is not drawn.
        let weekly_b5 = |b: &str| (b == "B5").then(|| "weekly".to_owned());
        assert_eq!(choose(&carts, &k, "default", None, &weekly_b5, Appending::Any), None);
        k.claimed.insert("B5".into());
        assert_eq!(choose(&carts, &k, "default", None, &none, Appending::Any), None);
        assert_eq!(choose(&carts, &k, "weekly", None, &none, Appending::Any).as_deref(), Some("B1"));
        // Once every session on B2 (full) and B1 expired, they are drawn last, by any pool,
        // and B1 no longer counts as weekly's to append to.
        k.recyclable.extend([("B1".to_owned(), 20), ("B2".to_owned(), 30)]);
        assert_eq!(choose(&carts, &k, "default", None, &none, Appending::Any).as_deref(), Some("B1"));
        k.recyclable.insert("B2".to_owned(), 10);
        assert_eq!(
            choose(&carts, &k, "default", None, &none, Appending::Any).as_deref(),
            Some("B2"),
            "least recently written first"
        );
        k.recyclable.insert("B2".to_owned(), 30);
        assert_eq!(choose(&carts, &k, "default", None, &weekly_b5, Appending::Any).as_deref(), Some("B1"));
        let weekly_b1 = |b: &str| (b == "B1").then(|| "weekly".to_owned());
        assert_eq!(choose(&carts, &k, "default", None, &weekly_b1, Appending::Any).as_deref(), Some("B2"));
        k.claimed.remove("B3");
        assert_eq!(
            choose(&carts, &k, "default", None, &none, Appending::Any).as_deref(),
            Some("B3"),
            "appending comes first"
        );
        // A pool that starts each session on a new cartridge: not B3 (written before, loaded),
        // but the expired one least recently written.
        assert_eq!(choose(&carts, &k, "default", Some("B3"), &none, Appending::Never).as_deref(), Some("B1"));
        // A pool with a media set per week: B3 is appended to while labelled in this set.
        k.labelled.insert("B3".into(), 700);
        assert_eq!(choose(&carts, &k, "default", None, &none, Appending::Since(700)).as_deref(), Some("B3"));
        assert_eq!(
            choose(&carts, &k, "default", None, &none, Appending::Since(701)).as_deref(),
            Some("B1"),
            "a cartridge of an earlier set is not appended to"
        );
    }
}
