//! The configuration as the data plane needs it: plain data, produced by
//! the control model, consumed by the data plane's snapshot builder.
//!
//! Keeping this hand-over in plain types is what lets the control plane
//! build without the data plane: neither side constructs the other's
//! objects. The live parts (traffic counters, connection counts) are the
//! `Arc`s the model owns, shared as they are so no count is ever lost.

use std::net::IpAddr;
use std::sync::Arc;

use xvs_scheduler::DestLoad;

use crate::state::Timeouts;
use crate::stats::Counters;
use crate::svc::{Fwd, Persist, SvcKey};
use crate::tun::TunKind;

/// One real server of a service.
#[derive(Debug, Clone)]
pub struct DestConf {
    /// Real server address.
    pub addr: IpAddr,
    /// Real server port.
    pub port: u16,
    /// Weight; 0 = quiesced.
    pub weight: i32,
    /// Last non-zero weight (mh keeps its table on it).
    pub last_weight: i32,
    /// Upper connection threshold (0 = none).
    pub u_threshold: u32,
    /// Lower connection threshold.
    pub l_threshold: u32,
    /// Forwarding method.
    pub fwd: Fwd,
    /// Encapsulation, for [`Fwd::Tun`].
    pub tun: TunKind,
    /// Live connection counts, written by the workers.
    pub load: Arc<DestLoad>,
    /// Traffic counters, written by the workers.
    pub counters: Arc<Counters>,
}

/// One virtual service.
#[derive(Debug, Clone)]
pub struct ServiceConf {
    /// Identity.
    pub key: SvcKey,
    /// Scheduler name (one of `xvs_scheduler::NAMES`).
    pub sched: String,
    /// Scheduler flags (`SCHED_FLAG_*`).
    pub flags: u32,
    /// Persistence, if `-p`.
    pub persist: Option<Persist>,
    /// Real servers, newest first (the order schedulers walk).
    pub dests: Vec<DestConf>,
    /// Traffic counters, written by the workers.
    pub counters: Arc<Counters>,
}

/// The whole configuration the data plane runs.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// Services, in the model's order.
    pub services: Vec<ServiceConf>,
    /// Firewall-mark assignments `(protocol, VIP, port) → mark`.
    pub marks: Vec<(SvcKey, u32)>,
    /// Protocol timeouts.
    pub timeouts: Timeouts,
    /// Open a connection on any TCP segment without RST, not only on a
    /// SYN (IPVS's `sloppy_tcp`): a flow that a router moves here from
    /// another director mid-stream then goes on instead of being dropped.
    pub sloppy_tcp: bool,
}
