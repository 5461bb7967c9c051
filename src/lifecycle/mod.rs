//! Media over time: pools of cartridges, how long their sessions are kept, and which sessions
//! have expired. Pure rules over what the board and the catalog say; the commands that show
//! them are in the command line, and the journal is not touched here.

pub mod index_prune;
pub mod pools;
pub mod report;
pub mod retention;
pub mod vault;
