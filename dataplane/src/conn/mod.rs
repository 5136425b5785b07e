//! Connections: the table that keeps every packet of a flow on one real
//! server (shared by all workers, see `table`), the IPVS TCP state machine
//! (`state`), persistence templates, and the active/inactive/persistent
//! counts that feed lc/wlc and the listings.

pub mod state;
pub mod table;

use crate::svc::DestRt;
use state::TcpState;
use std::sync::atomic::Ordering;

/// Count a new connection (in `state`) or template against `dest`, as
/// IPVS's bind does, and re-evaluate its overload flag.
pub fn bind(dest: &DestRt, template: bool, state: TcpState) {
    let load = &dest.sched.load;
    if template {
        load.persist.fetch_add(1, Ordering::Relaxed);
    } else if state.is_active() {
        load.active.fetch_add(1, Ordering::Relaxed);
    } else {
        load.inactive.fetch_add(1, Ordering::Relaxed);
    }
    dest.sched.note_bound();
}

/// Undo [`bind`] for a connection last in `state` (or a template).
pub fn unbind(dest: &DestRt, template: bool, state: TcpState) {
    let load = &dest.sched.load;
    let dec = |a: &std::sync::atomic::AtomicU32| {
        let _ = a.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
            Some(v.saturating_sub(1))
        });
    };
    if template {
        dec(&load.persist);
    } else if state.is_active() {
        dec(&load.active);
    } else {
        dec(&load.inactive);
    }
    dest.sched.note_unbound();
}

/// Move a connection's count between active and inactive when its state
/// crosses ESTABLISHED.
#[inline]
pub fn transition(dest: &DestRt, old: TcpState, new: TcpState) {
    let load = &dest.sched.load;
    match (old.is_active(), new.is_active()) {
        (false, true) => {
            let _ = load
                .inactive
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                    Some(v.saturating_sub(1))
                });
            load.active.fetch_add(1, Ordering::Relaxed);
        }
        (true, false) => {
            let _ = load
                .active
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                    Some(v.saturating_sub(1))
                });
            load.inactive.fetch_add(1, Ordering::Relaxed);
        }
        _ => {}
    }
}
