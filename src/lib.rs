//! coffer: a backup appliance service. See `README.md` for how to run it and the module docs for
//! how each part works.

pub mod format;
