//! Traffic counters shared between the workers (writers) and the control
//! thread (reader for listings and rates).
//!
//! The control model owns them too, so they live in `xvs-config`; they are
//! re-exported here for the data plane's code.

pub use xvs_config::stats::*;
