//! The words the control plane and the data plane both speak.
//!
//! The control plane (grammar, model, listings) and the data plane (the
//! workers) describe the same services, real servers, tunnels and timeouts.
//! Each of those has exactly one type, here, so that neither side has to
//! translate the other's, and so that `xvsadm` builds without the data
//! plane (and without clang or libxdp). This crate does no I/O.
//!
//! [`config::Config`] is the hand-over point: the control model produces
//! it, the data plane turns it into the snapshot its workers run.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod check;
pub mod config;
pub mod state;
pub mod stats;
pub mod svc;
pub mod sync;
pub mod time;
pub mod tun;

pub use check::{CheckConf, CheckKind, CheckSpec, Health, HealthStatus, OnFail, Quorum};
pub use config::{Config, DestConf, ServiceConf};
pub use state::{TcpState, Timeouts};
pub use stats::{CounterValues, Counters};
pub use svc::{Fwd, Persist, SvcKey};
pub use sync::{SyncConn, SyncDaemonConf, SyncRole};
pub use tun::{TunConf, TunCsum, TunKind, TunType};
