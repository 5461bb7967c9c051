//! Tape: the drive layer over SSC commands ([`drive::TapeDrive`]). The tape target (parts
//! written in fixed blocks, a filemark per part as its durability point, early warning to the
//! next cartridge) and the library manager build on it.

pub mod drive;
