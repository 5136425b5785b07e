//! Next-hop MACs mirrored from the kernel's neighbour table.
//!
//! Every real server address has one [`NeighCell`] shared by all the
//! snapshots and connections that name it. A background thread dumps the
//! kernel's table (netlink) every few milliseconds, stores the MACs in the
//! cells, and asks the kernel to resolve the addresses that have none. A
//! worker never waits for resolution: it drops the packet, counts it, and
//! flags the cell.

use crate::io::netlink::Netlink;
use crate::svc::NeighCell;
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How often the kernel's table is read.
const REFRESH: Duration = Duration::from_millis(50);
/// How often resolution of a missing MAC is asked for again.
const RETRY: Duration = Duration::from_millis(500);

#[derive(Debug)]
struct Entry {
    cell: Arc<NeighCell>,
    last_request: Option<Instant>,
}

/// The set of next hops the data plane needs MACs for.
#[derive(Debug)]
pub struct NeighTable {
    entries: Mutex<HashMap<Ipv4Addr, Entry>>,
    ifindexes: Vec<u32>,
    /// Set (and signalled) when a new address needs resolving now.
    wake: (Mutex<bool>, Condvar),
}

impl NeighTable {
    /// A table resolving on the interfaces `ifindexes` (the first is used
    /// to ask for resolution).
    pub fn new(ifindexes: Vec<u32>) -> Arc<Self> {
        Arc::new(NeighTable {
            entries: Mutex::new(HashMap::new()),
            ifindexes,
            wake: (Mutex::new(false), Condvar::new()),
        })
    }

    /// The cell of `addr`, created on first use (which wakes the thread so
    /// that resolution starts at once, before the first packet).
    pub fn cell(&self, addr: Ipv4Addr) -> Arc<NeighCell> {
        let mut created = false;
        let cell = {
            let mut m = self.entries.lock().unwrap_or_else(|e| e.into_inner());
            m.entry(addr)
                .or_insert_with(|| {
                    created = true;
                    Entry {
                        cell: Arc::new(NeighCell::default()),
                        last_request: None,
                    }
                })
                .cell
                .clone()
        };
        if created {
            self.kick();
        }
        cell
    }

    /// Make the thread refresh now instead of at its next period.
    pub fn kick(&self) {
        let (m, cv) = &self.wake;
        *m.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cv.notify_one();
    }

    /// Wait for a kick or the refresh period, whichever comes first.
    fn wait(&self) {
        let (m, cv) = &self.wake;
        let g = m.lock().unwrap_or_else(|e| e.into_inner());
        let (mut g, _) = cv
            .wait_timeout_while(g, REFRESH, |kicked| !*kicked)
            .unwrap_or_else(|e| e.into_inner());
        *g = false;
    }

    /// Read the kernel's tables once: for every address, its route (the
    /// outgoing interface, gateway and source address) and the next hop's
    /// MAC; ask for resolution of the next hops still missing.
    pub fn refresh(&self, nl: &mut Netlink) -> std::io::Result<()> {
        let addrs: Vec<Ipv4Addr> = {
            let m = self.entries.lock().unwrap_or_else(|e| e.into_inner());
            m.keys().copied().collect()
        };
        if addrs.is_empty() {
            return Ok(());
        }
        let kernel = nl.neighbours()?;
        let now = Instant::now();
        let mut to_resolve = Vec::new();
        for addr in addrs {
            let route = nl.route_get(addr).ok();
            let mut m = self.entries.lock().unwrap_or_else(|e| e.into_inner());
            let Some(e) = m.get_mut(&addr) else { continue };
            let Some(route) =
                route.filter(|r| self.ifindexes.is_empty() || self.ifindexes.contains(&r.oif))
            else {
                // No route through an interface of ours: unreachable.
                e.cell.set(None);
                e.cell.set_route(0, None);
                continue;
            };
            e.cell.set_route(route.oif, route.prefsrc);
            let hop = route.hop(addr);
            let found = kernel
                .iter()
                .find(|n| n.addr == hop && n.ifindex == route.oif && n.usable());
            match found {
                Some(n) => e.cell.set(n.mac),
                None => {
                    e.cell.set(None);
                    let wanted = e.cell.take_wanted();
                    let due = e
                        .last_request
                        .is_none_or(|t| now.duration_since(t) >= RETRY);
                    if due || (wanted && e.last_request.is_none()) {
                        e.last_request = Some(now);
                        to_resolve.push((route.oif, hop));
                    }
                }
            }
        }
        for (oif, hop) in to_resolve {
            // A failure here is retried at the next period.
            let _ = nl.resolve(oif, hop);
        }
        Ok(())
    }

    /// Run `refresh` every few milliseconds until `stop` is set.
    pub fn spawn(self: &Arc<Self>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
        let me = self.clone();
        std::thread::Builder::new()
            .name("xvs-neigh".into())
            .spawn(move || {
                let mut nl = match Netlink::open() {
                    Ok(nl) => nl,
                    Err(e) => {
                        eprintln!("xvsd: neighbour thread: cannot open netlink: {e}");
                        return;
                    }
                };
                let mut last_err: Option<String> = None;
                while !stop.load(Ordering::Relaxed) {
                    if let Err(e) = me.refresh(&mut nl) {
                        let s = e.to_string();
                        if last_err.as_deref() != Some(&s) {
                            eprintln!("xvsd: neighbour refresh: {s}");
                        }
                        last_err = Some(s);
                    }
                    me.wait();
                }
            })
            .expect("spawn neighbour thread")
    }
}
