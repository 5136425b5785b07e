//! Turning the configuration into the data plane's immutable snapshot.
//!
//! Scheduler state belongs to the service and outlives snapshots: a
//! service keeps its scheduler instance (and so its rr/wrr position) across
//! changes of other services, gets `update` only when its own destination
//! list changed, and a new instance only when `-E -s` changed the
//! scheduler or its flags.

use crate::model::Model;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use xvs_config::svc::{Persist, SvcKey};
use xvs_dataplane::neigh::NeighTable;
use xvs_dataplane::svc::{DestRt, NeighCell, SchedState, ServiceRt, Snapshot, V4Key};

/// What decides whether a destination list changed for the scheduler.
type DestSig = Vec<(IpAddr, u16, i32, i32, u32, u32)>;

struct SvcState {
    id: u32,
    sched: String,
    flags: u32,
    sig: DestSig,
    state: Arc<Mutex<SchedState>>,
}

/// Identity of a destination: its service and address:port.
type DestIdent = (SvcKey, IpAddr, u16);

/// Stable small integers for services and destinations (connections refer
/// to them by id), reused only once nothing refers to them any more.
#[derive(Default)]
struct Ids {
    next: u32,
    free: Vec<u32>,
}

impl Ids {
    fn take(&mut self) -> u32 {
        self.free.pop().unwrap_or_else(|| {
            self.next += 1;
            self.next - 1
        })
    }
}

/// Builds snapshots, carrying scheduler state from one to the next.
#[derive(Default)]
pub struct SnapshotBuilder {
    services: HashMap<SvcKey, SvcState>,
    svc_ids: Ids,
    dest_ids: Ids,
    dests: HashMap<DestIdent, u32>,
    /// Deleted destinations still counted by connections or templates.
    trash: Vec<Arc<DestRt>>,
    /// The live destinations of the last snapshot.
    last: Vec<Arc<DestRt>>,
}

impl std::fmt::Debug for SnapshotBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotBuilder")
            .field("services", &self.services.len())
            .finish()
    }
}

impl SnapshotBuilder {
    /// A builder with no history.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether deleted destinations are still waiting for their last
    /// connection to go (the daemon rebuilds periodically to free them).
    pub fn has_trash(&self) -> bool {
        !self.trash.is_empty()
    }

    /// The snapshot of `model`. Next hops get their MAC cells from `neigh`
    /// (IPv6 real servers, which the data plane does not forward to yet,
    /// get a cell that never resolves).
    pub fn build(&mut self, model: &Model, neigh: &NeighTable) -> Snapshot {
        let mut live = HashMap::new();
        let mut out = Vec::new();
        let mut all_dests: Vec<Arc<DestRt>> = Vec::new();
        let mut live_dests: HashMap<DestIdent, u32> = HashMap::new();
        let mut prev_dests = std::mem::take(&mut self.dests);
        for s in &model.services {
            let dests: Vec<Arc<DestRt>> = s
                .dests
                .iter()
                .map(|d| {
                    let ident = (s.key, d.addr, d.port);
                    let id = prev_dests
                        .remove(&ident)
                        .unwrap_or_else(|| self.dest_ids.take());
                    live_dests.insert(ident, id);
                    let mut view = xvs_scheduler::Dest::new(d.addr, d.port, d.weight);
                    view.last_weight = d.last_weight;
                    view.u_threshold = d.u_threshold;
                    view.l_threshold = d.l_threshold;
                    view.load = d.load.clone();
                    let cell = match d.addr {
                        IpAddr::V4(a) => neigh.cell(a),
                        IpAddr::V6(_) => Arc::new(NeighCell::default()),
                    };
                    Arc::new(DestRt {
                        id,
                        in_service: true,
                        sched: view,
                        fwd: d.fwd,
                        tun: d.tun.kind(),
                        stats: d.counters.clone(),
                        neigh: cell,
                    })
                })
                .collect();
            all_dests.extend(dests.iter().cloned());
            let sig: DestSig = s
                .dests
                .iter()
                .map(|d| {
                    (
                        d.addr,
                        d.port,
                        d.weight,
                        d.last_weight,
                        d.u_threshold,
                        d.l_threshold,
                    )
                })
                .collect();
            let prev = self.services.remove(&s.key);
            let st = match prev {
                Some(mut p) => {
                    {
                        let mut g = p.state.lock().unwrap_or_else(|e| e.into_inner());
                        if p.sched != s.sched || p.flags != s.flags {
                            if let Ok(new) = xvs_scheduler::new(&s.sched, s.flags) {
                                g.set_dests(dests.clone());
                                g.set_scheduler(new);
                            }
                        } else if p.sig != sig {
                            g.set_dests(dests.clone());
                        } else {
                            // Same list: refresh the runtime objects (e.g. a
                            // forwarding-method edit) without a reset.
                            g.set_dests_keep_position(dests.clone());
                        }
                    }
                    p.sched = s.sched.clone();
                    p.flags = s.flags;
                    p.sig = sig;
                    p
                }
                None => {
                    // The model only accepts scheduler names that exist.
                    let Ok(sched) = xvs_scheduler::new(&s.sched, s.flags) else {
                        continue;
                    };
                    SvcState {
                        id: self.svc_ids.take(),
                        sched: s.sched.clone(),
                        flags: s.flags,
                        sig,
                        state: Arc::new(Mutex::new(SchedState::new(sched, dests))),
                    }
                }
            };
            let persist = s
                .persistence
                .map(|timeout| Persist::new(timeout, s.netmask));
            out.push(Arc::new(ServiceRt {
                id: st.id,
                persist,
                key: s.key,
                stats: s.counters.clone(),
                sched: st.state.clone(),
            }));
            live.insert(s.key, st);
        }
        // Services gone: their ids are free (their connections keep
        // forwarding through their destinations, which go to the trash).
        for (_, gone) in self.services.drain() {
            self.svc_ids.free.push(gone.id);
        }
        self.services = live;
        // Destinations gone: to the trash while still referenced.
        for (_, id) in prev_dests.drain() {
            if let Some(d) = self.last.iter().find(|d| d.id == id) {
                self.trash.push(Arc::new(DestRt {
                    id,
                    in_service: false,
                    sched: d.sched.clone(),
                    fwd: d.fwd,
                    tun: d.tun,
                    stats: d.stats.clone(),
                    neigh: d.neigh.clone(),
                }));
            } else {
                self.dest_ids.free.push(id);
            }
        }
        let mut kept = Vec::new();
        for d in self.trash.drain(..) {
            let l = &d.sched.load;
            if l.active() + l.inactive() + l.persist() > 0 {
                kept.push(d);
            } else {
                self.dest_ids.free.push(d.id);
            }
        }
        self.trash = kept;
        self.dests = live_dests;
        self.last = all_dests.clone();
        all_dests.extend(self.trash.iter().cloned());
        let marks = model.marks.iter().filter_map(|(k, mark)| match *k {
            SvcKey::Addr {
                proto,
                vip: IpAddr::V4(vip),
                port,
            } => Some((V4Key { proto, vip, port }, *mark)),
            _ => None,
        });
        Snapshot::new(out, all_dests, marks, model.timeouts)
    }
}
