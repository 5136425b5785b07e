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
use xvs_dataplane::conn::state::Timeouts;
use xvs_dataplane::neigh::NeighTable;
use xvs_dataplane::svc::{DestRt, NeighCell, SchedState, ServiceRt, Snapshot, SvcKey};

/// What decides whether a destination list changed for the scheduler.
type DestSig = Vec<(IpAddr, u16, i32, i32, u32, u32)>;

struct SvcState {
    sched: String,
    flags: u32,
    sig: DestSig,
    state: Arc<Mutex<SchedState>>,
}

/// Builds snapshots, carrying scheduler state from one to the next.
#[derive(Default)]
pub struct SnapshotBuilder {
    services: HashMap<SvcKey, SvcState>,
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

    /// The snapshot of `model`. Next hops get their MAC cells from `neigh`
    /// (IPv6 real servers, which the data plane does not forward to yet,
    /// get a cell that never resolves).
    pub fn build(&mut self, model: &Model, neigh: &NeighTable) -> Snapshot {
        let mut live = HashMap::new();
        let mut out = Vec::new();
        for s in &model.services {
            let dests: Vec<Arc<DestRt>> = s
                .dests
                .iter()
                .map(|d| {
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
                        sched: view,
                        fwd: d.fwd,
                        stats: d.counters.clone(),
                        neigh: cell,
                    })
                })
                .collect();
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
                        sched: s.sched.clone(),
                        flags: s.flags,
                        sig,
                        state: Arc::new(Mutex::new(SchedState::new(sched, dests))),
                    }
                }
            };
            out.push(Arc::new(ServiceRt {
                key: s.key,
                stats: s.counters.clone(),
                sched: st.state.clone(),
            }));
            live.insert(s.key, st);
        }
        self.services = live;
        let t = &model.timeouts;
        Snapshot::new(
            out,
            Timeouts {
                tcp: t.tcp,
                tcp_fin: t.tcpfin,
                udp: t.udp,
            },
        )
    }
}
