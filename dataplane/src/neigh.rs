//! Next-hop MACs mirrored from the kernel's neighbour table.
//!
//! Every real server address has one [`NeighCell`] shared by all the
//! snapshots and connections that name it. A background thread dumps the
//! kernel's table (netlink) every few milliseconds, stores the MACs in the
//! cells, and asks the kernel to resolve the addresses that have none. A
//! worker never waits for resolution: it drops the packet, counts it, and
//! flags the cell.

use crate::io::netlink::{Netlink, Route};
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
/// How often an address's route is read again (routes change rarely; a
/// change is picked up within this time).
pub const ROUTE_REFRESH: Duration = Duration::from_secs(2);
/// Route look-ups per refresh at most (a large configuration is covered
/// over several periods instead of stalling one).
pub const ROUTES_PER_REFRESH: usize = 512;

#[derive(Debug)]
struct Entry {
    cell: Arc<NeighCell>,
    last_request: Option<Instant>,
    /// The route last read (outgoing interface of ours, gateway, source).
    route: Option<Route>,
    /// When it was read (`None`: never).
    route_at: Option<Instant>,
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
                        route: None,
                        route_at: None,
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

    /// Read the kernel's tables once: the neighbour table (one dump), and
    /// the routes of the addresses whose route is unknown or older than
    /// [`ROUTE_REFRESH`] (at most [`ROUTES_PER_REFRESH`] of them); store the
    /// next hops' MACs and routes in the cells, ask for resolution of the
    /// next hops still missing, and forget addresses no snapshot refers to.
    pub fn refresh(&self, nl: &mut Netlink) -> std::io::Result<()> {
        let now = Instant::now();
        let due: Vec<Ipv4Addr> = {
            let mut m = self.entries.lock().unwrap_or_else(|e| e.into_inner());
            m.retain(|_, e| Arc::strong_count(&e.cell) > 1);
            if m.is_empty() {
                return Ok(());
            }
            m.iter()
                .filter(|(_, e)| {
                    e.route_at
                        .is_none_or(|t| now.duration_since(t) >= ROUTE_REFRESH)
                })
                .map(|(a, _)| *a)
                .take(ROUTES_PER_REFRESH)
                .collect()
        };
        let routes: Vec<(Ipv4Addr, Option<Route>)> = due
            .into_iter()
            .map(|a| {
                let r = nl
                    .route_get(a)
                    .ok()
                    .filter(|r| self.ifindexes.is_empty() || self.ifindexes.contains(&r.oif));
                (a, r)
            })
            .collect();
        let kernel: HashMap<(Ipv4Addr, u32), [u8; 6]> = nl
            .neighbours()?
            .into_iter()
            .filter(|n| n.usable())
            .filter_map(|n| Some(((n.addr, n.ifindex), n.mac?)))
            .collect();
        let mut to_resolve = Vec::new();
        {
            let mut m = self.entries.lock().unwrap_or_else(|e| e.into_inner());
            for (a, r) in routes {
                if let Some(e) = m.get_mut(&a) {
                    e.route = r;
                    e.route_at = Some(now);
                    match r {
                        Some(r) => e.cell.set_route(r.oif, r.prefsrc),
                        None => e.cell.set_route(0, None),
                    }
                }
            }
            for (addr, e) in m.iter_mut() {
                let Some(route) = e.route else {
                    // No route through an interface of ours: unreachable.
                    e.cell.set(None);
                    continue;
                };
                let hop = route.hop(*addr);
                match kernel.get(&(hop, route.oif)) {
                    Some(mac) => e.cell.set(Some(*mac)),
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
