//! Connections: the table that keeps every packet of a flow on one real
//! server, the IPVS TCP state machine, and the active/inactive counters
//! that feed lc/wlc and the listings.
//!
//! This first cut keeps one table per worker (no sharing, no locks): with
//! RSS hashing the 5-tuple, every inbound packet of a flow reaches the same
//! queue, which is all a DR/TUN director sees.

pub mod state;
pub mod table;

use crate::flow::FlowKey;
use crate::stats::Counters;
use crate::svc::DestRt;
use state::TcpState;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// One connection through the director.
#[derive(Debug)]
pub struct Conn {
    /// The flow.
    pub key: FlowKey,
    /// TCP state (`None` for UDP).
    pub state: TcpState,
    /// When it expires, in nanoseconds of the worker's clock.
    pub expires: u64,
    /// The real server it is bound to, with its forwarding method.
    pub dest: Arc<DestRt>,
    /// The service's counters.
    pub svc: Arc<Counters>,
}

impl Conn {
    /// A new connection bound to `dest`, counted inactive or active by its
    /// state as IPVS's bind does.
    pub fn bind(
        key: FlowKey,
        state: TcpState,
        expires: u64,
        dest: Arc<DestRt>,
        svc: Arc<Counters>,
    ) -> Conn {
        let load = &dest.sched.load;
        if state.is_active() {
            load.active.fetch_add(1, Ordering::Relaxed);
        } else {
            load.inactive.fetch_add(1, Ordering::Relaxed);
        }
        dest.sched.note_bound();
        Conn {
            key,
            state,
            expires,
            dest,
            svc,
        }
    }

    /// Move to `new`, moving the connection between the active and
    /// inactive counts when that changes.
    #[inline]
    pub fn set_state(&mut self, new: TcpState) {
        if new == self.state {
            return;
        }
        let load = &self.dest.sched.load;
        match (self.state.is_active(), new.is_active()) {
            (false, true) => {
                load.inactive.fetch_sub(1, Ordering::Relaxed);
                load.active.fetch_add(1, Ordering::Relaxed);
            }
            (true, false) => {
                load.active.fetch_sub(1, Ordering::Relaxed);
                load.inactive.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
        self.state = new;
    }
}

impl Drop for Conn {
    /// Unbind: the destination loses the connection from its counts.
    fn drop(&mut self) {
        let load = &self.dest.sched.load;
        if self.state.is_active() {
            load.active.fetch_sub(1, Ordering::Relaxed);
        } else {
            load.inactive.fetch_sub(1, Ordering::Relaxed);
        }
        self.dest.sched.note_unbound();
    }
}
