//! The xvs data plane: AF_XDP sockets fed by an XDP steering program, a
//! pure packet pipeline that schedules, tracks and rewrites frames in
//! place, and the per-queue workers that drive it.

pub mod clock;
pub mod conn;
pub mod counters;
pub mod director;
pub mod flow;
pub mod io;
pub mod neigh;
pub mod pipeline;
pub mod stats;
pub mod svc;
pub mod testkit;
pub mod wire;
pub mod worker;
pub mod xmit;
