//! The xvs data plane: AF_XDP sockets fed by an XDP steering program, a
//! pure packet pipeline that schedules, tracks and rewrites frames in
//! place, and the per-queue workers that drive it.
//!
//! `unsafe` code lives in `io` only (the AF_XDP rings, UMEM and the
//! system calls around them); everywhere else it is a compile error.

#![deny(unsafe_code)]

pub mod build;
pub mod clock;
pub mod conn;
pub mod counters;
pub mod director;
pub mod flow;
pub mod frame;
#[allow(unsafe_code)]
pub mod io;
pub mod neigh;
pub mod packet;
pub mod pipeline;
pub mod stats;
pub mod svc;
pub mod sync;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod verdict;
pub mod wire;
pub mod worker;
pub mod xmit;
