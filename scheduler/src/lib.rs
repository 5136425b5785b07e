//! The LVS schedulers, one file each behind the one [`Scheduler`] trait.
//!
//! A scheduler sees the service's destination list ([`DestSet`], newest
//! first, as IPVS keeps it) and the flow being scheduled, nothing else. The
//! data plane holds one scheduler instance per service, shared by all
//! workers behind a per-service lock that is taken only when a *new*
//! connection is scheduled, so sequences (rr, wrr, ...) are exact whichever
//! queue a connection arrives on. Established packets never reach this crate.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

mod cache;
mod common;
pub mod dh;
pub mod fo;
pub mod lblc;
pub mod lblcr;
pub mod lc;
mod least;
pub mod mh;
pub mod nq;
pub mod ovf;
pub mod rr;
pub mod sed;
pub mod sh;
pub mod twos;
pub mod watch;
pub mod wlc;
pub mod wrr;

pub use dh::DestHash;
pub use fo::WeightedFailover;
pub use lblc::LocalityLeastConn;
pub use lblcr::LocalityLeastConnRepl;
pub use lc::LeastConn;
pub use mh::MaglevHash;
pub use nq::NeverQueue;
pub use ovf::Overflow;
pub use rr::RoundRobin;
pub use sed::ShortestExpectedDelay;
pub use sh::SourceHash;
pub use twos::TwoChoices;
pub use wlc::WeightedLeastConn;
pub use wrr::WeightedRoundRobin;

/// Scheduler flag bit 1 (`sh-fallback`, `mh-fallback`, `flag-1`).
pub const SCHED_FLAG_1: u32 = 0x0008;
/// Scheduler flag bit 2 (`sh-port`, `mh-port`, `flag-2`).
pub const SCHED_FLAG_2: u32 = 0x0010;
/// Scheduler flag bit 3 (`flag-3`; for mh, `mh-sorted`: fill the table in
/// address order, so directors agree whatever order servers were added in;
/// IPVS's own mh ignores this bit).
pub const SCHED_FLAG_3: u32 = 0x0020;

/// Live connection counters of one real server.
///
/// Shared (behind an `Arc`) by every worker and every configuration
/// snapshot, so counts survive edits of the service. Updated only when a
/// connection is bound, changes between active and inactive, or is unbound.
///
/// Whoever changes a counter or the overload flag directly must call
/// [`DestLoad::changed`] afterwards ([`Dest::note_bound`],
/// [`Dest::note_unbound`] and [`DestLoad::set_overloaded`] do it), so the
/// least-load schedulers, which re-read only changed destinations, see it.
#[derive(Debug, Default)]
pub struct DestLoad {
    /// Connections in ESTABLISHED state.
    pub active: AtomicU32,
    /// Connections in any other state.
    pub inactive: AtomicU32,
    /// Persistence templates pointing at this server.
    pub persist: AtomicU32,
    /// IPVS's `IP_VS_DEST_F_OVERLOAD`: set when the total reaches the upper
    /// threshold, cleared when it falls below the lower one.
    pub overloaded: AtomicBool,
    /// The slot on the service's change board, once a least-load scheduler
    /// watches these counters (see [`watch`]).
    watch: OnceLock<watch::Watch>,
}

impl DestLoad {
    /// Active connections now.
    pub fn active(&self) -> u32 {
        self.active.load(Ordering::Relaxed)
    }

    /// Inactive connections now.
    pub fn inactive(&self) -> u32 {
        self.inactive.load(Ordering::Relaxed)
    }

    /// Persistence templates now.
    pub fn persist(&self) -> u32 {
        self.persist.load(Ordering::Relaxed)
    }

    /// IPVS overhead: `active * 256 + inactive`.
    pub fn overhead(&self) -> u64 {
        u64::from(self.active()) * 256 + u64::from(self.inactive())
    }

    /// Whether the overload flag is set.
    pub fn is_overloaded(&self) -> bool {
        self.overloaded.load(Ordering::Relaxed)
    }

    /// Set or clear the overload flag (and report the change).
    pub fn set_overloaded(&self, on: bool) {
        self.overloaded.store(on, Ordering::Relaxed);
        self.changed();
    }

    /// Report that a counter or the overload flag changed: marks this
    /// destination on its board when a scheduler watches it (one load and
    /// a branch when none does).
    #[inline]
    pub fn changed(&self) {
        if let Some(w) = self.watch.get() {
            w.board.mark(w.slot);
        }
    }

    /// Whether these counters report to `board`, taking a slot on it if
    /// they report nowhere yet. False when they report to another board
    /// or `board` is full.
    pub(crate) fn watched_by(&self, board: &Arc<watch::LoadBoard>) -> bool {
        if self.watch.get().is_none() {
            if let Some(w) = watch::Watch::new(board) {
                // Losing a race to another board drops `w`, freeing its slot.
                let _ = self.watch.set(w);
            }
        }
        self.watch
            .get()
            .is_some_and(|w| Arc::ptr_eq(&w.board, board))
    }

    /// The board and slot these counters report to, if any.
    pub(crate) fn watch(&self) -> Option<&watch::Watch> {
        self.watch.get()
    }
}

/// What a scheduler sees of one real server.
#[derive(Debug, Clone)]
pub struct Dest {
    /// Real server address.
    pub addr: IpAddr,
    /// Real server port (host order).
    pub port: u16,
    /// Current weight; 0 means quiesced (no new connections).
    pub weight: i32,
    /// Last non-zero weight (used by mh so quiescing moves no other flow).
    pub last_weight: i32,
    /// Upper connection threshold (`-x`), 0 = none.
    pub u_threshold: u32,
    /// Lower connection threshold (`-y`), 0 = 3/4 of the upper one.
    pub l_threshold: u32,
    /// Live counters, shared across snapshots.
    pub load: Arc<DestLoad>,
}

impl Dest {
    /// A destination with the given weight and fresh counters.
    pub fn new(addr: IpAddr, port: u16, weight: i32) -> Self {
        Dest {
            addr,
            port,
            weight,
            last_weight: weight,
            u_threshold: 0,
            l_threshold: 0,
            load: Arc::new(DestLoad::default()),
        }
    }

    /// Usable for a new connection: weight > 0 and not overloaded.
    pub fn available(&self) -> bool {
        self.weight > 0 && !self.load.is_overloaded()
    }

    /// Total connections counted against the thresholds.
    pub fn total_conns(&self) -> u32 {
        self.load
            .active()
            .saturating_add(self.load.inactive())
            .saturating_add(self.load.persist())
    }

    /// Re-evaluate the overload flag after a connection or template was
    /// bound to this destination (IPVS sets it when total >= `-x`).
    pub fn note_bound(&self) {
        if self.u_threshold != 0 && self.total_conns() >= self.u_threshold {
            self.load.overloaded.store(true, Ordering::Relaxed);
        }
        self.load.changed();
    }

    /// Re-evaluate the overload flag after a connection or template was
    /// unbound (cleared below `-y`, or below 3/4 of `-x` when `-y` is 0).
    pub fn note_unbound(&self) {
        let total = u64::from(self.total_conns());
        let clear = if self.u_threshold == 0 {
            true
        } else if self.l_threshold != 0 {
            total < u64::from(self.l_threshold)
        } else {
            total * 4 < u64::from(self.u_threshold) * 3
        };
        if clear {
            self.load.overloaded.store(false, Ordering::Relaxed);
        }
        self.load.changed();
    }
}

/// A service's destination list in IPVS order: newest first.
pub type DestSet = [Dest];

/// The flow a scheduler may hash on (addresses as seen from the client).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Flow {
    /// IP protocol number (6 TCP, 17 UDP, 132 SCTP).
    pub proto: u8,
    /// Client address.
    pub saddr: IpAddr,
    /// Client port (host order).
    pub sport: u16,
    /// Virtual address the client connected to.
    pub daddr: IpAddr,
    /// Virtual port (host order).
    pub dport: u16,
}

/// The error for a scheduler name that does not exist.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Scheduler or persistence engine not found")]
pub struct NotFound;

/// One LVS scheduling algorithm.
///
/// `update` is called whenever the destination set changes (add, edit,
/// delete, weight or threshold change) and before the first `schedule`;
/// table schedulers (sh, dh, mh) rebuild there. `schedule` returns the
/// index into `dests` of the chosen destination, or `None` for "no
/// destination". `dests` is always the set last passed to `update`.
/// `schedule` must not allocate.
pub trait Scheduler: Send {
    /// The name as ipvsadm spells it (`rr`, `wlc`, ...).
    fn name(&self) -> &'static str;
    /// The destination set changed: reset or rebuild state as IPVS does.
    fn update(&mut self, dests: &DestSet);
    /// Choose a destination for a new connection. `now_ns` is a monotonic
    /// clock in nanoseconds (for schedulers that age a cache).
    fn schedule(&mut self, dests: &DestSet, flow: &Flow, now_ns: u64) -> Option<usize>;
    /// The same list (servers, order, weights, thresholds) in new `Dest`
    /// values: re-read whatever is cached about them without resetting
    /// any sequence. The least-load schedulers re-attach to the counters;
    /// the others need nothing.
    fn refresh(&mut self, dests: &DestSet) {
        let _ = dests;
    }
}

/// Every scheduler name ipvsadm accepts, in ipvsadm(8) order.
pub const NAMES: &[&str] = &[
    "rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "twos", "mh",
];

/// Create the scheduler named `name` with scheduler flags `flags`.
///
/// Only sh and mh read the flags (`SCHED_FLAG_1` = fallback,
/// `SCHED_FLAG_2` = port, and for mh only `SCHED_FLAG_3` = sorted); the
/// others ignore them, as IPVS does. The new
/// scheduler has seen no destinations: call [`Scheduler::update`] with the
/// service's set before the first `schedule`.
pub fn new(name: &str, flags: u32) -> Result<Box<dyn Scheduler>, NotFound> {
    Ok(match name {
        "rr" => Box::new(RoundRobin::new()),
        "wrr" => Box::new(WeightedRoundRobin::new()),
        "lc" => Box::new(LeastConn::new()),
        "wlc" => Box::new(WeightedLeastConn::new()),
        "lblc" => Box::new(LocalityLeastConn::new()),
        "lblcr" => Box::new(LocalityLeastConnRepl::new()),
        "dh" => Box::new(DestHash::new()),
        "sh" => Box::new(SourceHash::new(flags)),
        "sed" => Box::new(ShortestExpectedDelay::new()),
        "nq" => Box::new(NeverQueue::new()),
        "fo" => Box::new(WeightedFailover::new()),
        "ovf" => Box::new(Overflow::new()),
        "twos" => Box::new(TwoChoices::new()),
        "mh" => Box::new(MaglevHash::new(flags)),
        _ => return Err(NotFound),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::testutil::*;

    #[test]
    fn every_name_constructs_and_reports_its_name() {
        for &name in NAMES {
            let s = new(name, 0).unwrap();
            assert_eq!(s.name(), name);
        }
        assert_eq!(NAMES.len(), 14);
    }

    #[test]
    fn unknown_name_is_not_found() {
        assert_eq!(new("bogus", 0).err(), Some(NotFound));
        assert_eq!(new("", 0).err(), Some(NotFound));
        assert_eq!(new("RR", 0).err(), Some(NotFound));
        assert_eq!(
            NotFound.to_string(),
            "Scheduler or persistence engine not found"
        );
    }

    #[test]
    fn every_scheduler_handles_empty_and_unusable_sets() {
        for &name in NAMES {
            for flags in [0, SCHED_FLAG_1 | SCHED_FLAG_2] {
                let mut s = new(name, flags).unwrap();
                s.update(&[]);
                assert_eq!(s.schedule(&[], &any_flow(), 0), None, "{name}");
                let dests = [dest(1, 0), dest(2, 3)];
                set_overloaded(&dests[1], true);
                s.update(&dests);
                for t in 0..5 {
                    assert_eq!(s.schedule(&dests, &any_flow(), t), None, "{name}");
                }
            }
        }
    }

    #[test]
    fn every_scheduler_picks_a_lone_server() {
        for &name in NAMES {
            let mut s = new(name, 0).unwrap();
            let dests = [dest(1, 1)];
            s.update(&dests);
            for t in 0..5 {
                assert_eq!(s.schedule(&dests, &any_flow(), t), Some(0), "{name}");
            }
        }
    }

    #[test]
    fn every_scheduler_survives_random_churn() {
        // Property: after any series of adds, edits and deletes, every
        // choice is a usable index of the current set (or None), and
        // nothing panics. Hash schedulers may legitimately return None for
        // an unusable target, so only validity is checked for them.
        let mut seed = 0xdead_beef_cafe_f00du64;
        let mut rnd = move |m: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % m
        };
        for &name in NAMES {
            let mut s = new(name, SCHED_FLAG_1).unwrap();
            let mut dests: Vec<Dest> = Vec::new();
            s.update(&dests);
            for step in 0..400u64 {
                match rnd(6) {
                    0 | 1 if dests.len() < 12 => {
                        let n = rnd(250) as u8 + 1;
                        if !dests.iter().any(|d| d.addr == ip(n)) {
                            dests.insert(0, dest(n, rnd(5) as i32));
                            s.update(&dests);
                        }
                    }
                    2 if !dests.is_empty() => {
                        let i = rnd(dests.len() as u64) as usize;
                        dests.remove(i);
                        s.update(&dests);
                    }
                    3 if !dests.is_empty() => {
                        let i = rnd(dests.len() as u64) as usize;
                        let w = rnd(5) as i32;
                        dests[i].weight = w;
                        if w > 0 {
                            dests[i].last_weight = w;
                        }
                        s.update(&dests);
                    }
                    4 if !dests.is_empty() => {
                        let i = rnd(dests.len() as u64) as usize;
                        set_conns(&dests[i], rnd(8) as u32, rnd(8) as u32);
                        set_overloaded(&dests[i], rnd(4) == 0);
                    }
                    _ => {}
                }
                let f = flow(ip(rnd(250) as u8), rnd(60000) as u16);
                let now = step * 3_600_000_000_000;
                if let Some(i) = s.schedule(&dests, &f, now) {
                    assert!(i < dests.len(), "{name}");
                    assert!(dests[i].available(), "{name} chose unusable {i}");
                } else if !matches!(name, "sh" | "dh" | "mh") {
                    assert!(
                        dests.iter().all(|d| !d.available()) || matches!(name, "ovf"),
                        "{name} gave None with a usable server"
                    );
                }
            }
        }
    }
}
