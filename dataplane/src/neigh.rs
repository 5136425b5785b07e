//! Next-hop MACs mirrored from the kernel's neighbour table.
//!
//! Every real server address has one [`NeighCell`] shared by all the
//! snapshots and connections that name it. A background thread keeps the
//! cells right by following the kernel's announcements (neighbour, route
//! and address changes, IPv4 and IPv6 alike) instead of polling: it reads the tables in
//! full only at start, when an address is added, when announcements were
//! lost or a dump was interrupted, and at a slow safety period. It asks the
//! kernel to resolve next hops that have no MAC. A worker never waits for
//! resolution: it drops the packet, counts it, and flags the cell, which
//! the thread notices within a tick.
//!
//! IPv6 next hops come from the kernel's NDP table exactly as IPv4's come
//! from ARP: the same cells, keyed by `IpAddr`. An IPv6 route's gateway is
//! usually link-local; it is looked up with the route's interface, which
//! is what makes it unique. A cell keeps an IPv4 source address only (the
//! outer source of IPv4 tunnels): an IPv6 route stores its interface and
//! no source.

use crate::io::netlink::{Event, Events, Netlink, Route};
use crate::svc::NeighCell;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often the thread looks at flagged cells, kicks and the stop flag
/// when the kernel announces nothing.
const TICK: Duration = Duration::from_millis(20);
/// How often resolution of a missing MAC is asked for again.
const RETRY: Duration = Duration::from_millis(500);
/// How soon resolution is asked for again when a worker wants the MAC.
const WANTED_RETRY: Duration = Duration::from_millis(100);
/// How often the tables are read in full although no announcement said
/// so (a safety net: announcements are the normal path).
pub const RESYNC: Duration = Duration::from_secs(30);

#[derive(Debug)]
struct Entry {
    cell: Arc<NeighCell>,
    last_request: Option<Instant>,
    /// The route last read (outgoing interface of ours, gateway, source).
    route: Option<Route>,
    /// Whether the route has been read at all.
    looked_up: bool,
}

/// The IPv4 source a cell stores (see the module doc: none for IPv6).
fn v4_src(a: Option<IpAddr>) -> Option<std::net::Ipv4Addr> {
    match a {
        Some(IpAddr::V4(v4)) => Some(v4),
        _ => None,
    }
}

/// The set of next hops the data plane needs MACs for.
#[derive(Debug)]
pub struct NeighTable {
    entries: Mutex<HashMap<IpAddr, Entry>>,
    ifindexes: Vec<u32>,
    /// Set when a new address needs resolving now.
    kicked: AtomicBool,
}

/// What the thread knows of the kernel: the usable neighbours, by
/// (address, interface).
type Mirror = HashMap<(IpAddr, u32), [u8; 6]>;

impl NeighTable {
    /// A table resolving on the interfaces `ifindexes` (routes through
    /// other interfaces count as no route).
    pub fn new(ifindexes: Vec<u32>) -> Arc<Self> {
        Arc::new(NeighTable {
            entries: Mutex::new(HashMap::new()),
            ifindexes,
            kicked: AtomicBool::new(false),
        })
    }

    /// The cell of `addr`, created on first use (which wakes the thread so
    /// that resolution starts at once, before the first packet).
    pub fn cell(&self, addr: impl Into<IpAddr>) -> Arc<NeighCell> {
        let addr = addr.into();
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
                        looked_up: false,
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

    /// Make the thread read the routes of new addresses and the neighbour
    /// table at its next tick.
    pub fn kick(&self) {
        self.kicked.store(true, Ordering::Relaxed);
    }

    /// Read the kernel's tables: the routes of every address (`all`) or of
    /// those never looked up, then the whole neighbour table, which
    /// replaces `mirror`. Addresses no snapshot refers to are forgotten.
    fn resync(&self, nl: &mut Netlink, mirror: &mut Mirror, all: bool) -> std::io::Result<()> {
        let due: Vec<IpAddr> = {
            let mut m = self.entries.lock().unwrap_or_else(|e| e.into_inner());
            m.retain(|_, e| Arc::strong_count(&e.cell) > 1);
            m.iter()
                .filter(|(_, e)| all || !e.looked_up)
                .map(|(a, _)| *a)
                .collect()
        };
        // No lock held while the kernel answers.
        let routes: Vec<(IpAddr, Option<Route>)> = due
            .into_iter()
            .map(|a| {
                let r = nl
                    .route_get(a)
                    .ok()
                    .filter(|r| self.ifindexes.is_empty() || self.ifindexes.contains(&r.oif));
                (a, r)
            })
            .collect();
        {
            let mut m = self.entries.lock().unwrap_or_else(|e| e.into_inner());
            for (a, r) in routes {
                if let Some(e) = m.get_mut(&a) {
                    e.route = r;
                    e.looked_up = true;
                    match r {
                        Some(r) => {
                            e.cell.set_route(r.oif, v4_src(r.prefsrc));
                            e.cell.set_src6(match r.prefsrc {
                                Some(IpAddr::V6(a)) => Some(a),
                                _ => None,
                            });
                        }
                        None => {
                            e.cell.set_route(0, None);
                            e.cell.set_src6(None);
                        }
                    }
                }
            }
        }
        *mirror = nl
            .neighbours()?
            .into_iter()
            .filter(|n| n.usable())
            .filter_map(|n| Some(((n.addr, n.ifindex), n.mac?)))
            .collect();
        Ok(())
    }

    /// Store the next hops' MACs from `mirror` in the cells and ask the
    /// kernel to resolve those still missing (again after [`RETRY`], or
    /// [`WANTED_RETRY`] when a worker wants one).
    fn apply(&self, nl: &mut Netlink, mirror: &Mirror) {
        let now = Instant::now();
        let mut to_resolve = Vec::new();
        {
            let mut m = self.entries.lock().unwrap_or_else(|e| e.into_inner());
            for (addr, e) in m.iter_mut() {
                let Some(route) = e.route else {
                    // No route through an interface of ours: unreachable.
                    e.cell.set(None);
                    continue;
                };
                let hop = route.hop(*addr);
                match mirror.get(&(hop, route.oif)) {
                    Some(mac) => e.cell.set(Some(*mac)),
                    None => {
                        e.cell.set(None);
                        let wait = if e.cell.take_wanted() {
                            WANTED_RETRY
                        } else {
                            RETRY
                        };
                        if e.last_request.is_none_or(|t| now.duration_since(t) >= wait) {
                            e.last_request = Some(now);
                            to_resolve.push((route.oif, hop));
                        }
                    }
                }
            }
        }
        for (oif, hop) in to_resolve {
            // A failure here is retried after RETRY.
            let _ = nl.resolve(oif, hop);
        }
    }

    /// Follow the kernel's tables until `stop` is set (the thread's body).
    fn run(&self, stop: &AtomicBool) -> std::io::Result<()> {
        // Subscribe before the first read so that no change falls between.
        let mut events = Events::open()?;
        let mut nl = Netlink::open()?;
        let mut mirror = Mirror::new();
        let mut full = true;
        let mut last_full = Instant::now();
        let mut last_err: Option<String> = None;
        // After a failed read, the next one waits for RETRY (a kernel that
        // keeps refusing is not asked 50 times a second).
        let mut not_before: Option<Instant> = None;
        while !stop.load(Ordering::Relaxed) {
            let held = not_before.is_some_and(|t| Instant::now() < t);
            let new = !held && self.kicked.swap(false, Ordering::Relaxed);
            if !held && (full || new || last_full.elapsed() >= RESYNC) {
                let all = full || last_full.elapsed() >= RESYNC;
                match self.resync(&mut nl, &mut mirror, all) {
                    Ok(()) => {
                        if all {
                            full = false;
                            last_full = Instant::now();
                        }
                        last_err = None;
                        not_before = None;
                    }
                    Err(e) => {
                        // Interrupted dump or kernel error: read again.
                        full = true;
                        not_before = Some(Instant::now() + RETRY);
                        let s = e.to_string();
                        if last_err.as_deref() != Some(&s) {
                            eprintln!("xvsd: neighbour resync: {s}");
                        }
                        last_err = Some(s);
                    }
                }
            }
            self.apply(&mut nl, &mirror);
            let pending = events.wait(TICK).and_then(|ready| {
                if ready {
                    events.drain(|ev| match ev {
                        Event::Neighbour(n) => match n.mac.filter(|_| n.usable()) {
                            Some(mac) => {
                                mirror.insert((n.addr, n.ifindex), mac);
                            }
                            None => {
                                mirror.remove(&(n.addr, n.ifindex));
                            }
                        },
                        Event::NeighbourGone(n) => {
                            mirror.remove(&(n.addr, n.ifindex));
                        }
                        Event::Routes | Event::Lost => full = true,
                    })?;
                }
                Ok(())
            });
            if let Err(e) = pending {
                // Whatever was missed is read again in full.
                eprintln!("xvsd: neighbour events: {e}");
                full = true;
                std::thread::sleep(TICK);
            }
        }
        Ok(())
    }

    /// Run the thread until `stop` is set.
    pub fn spawn(self: &Arc<Self>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
        let me = self.clone();
        std::thread::Builder::new()
            .name("xvs-neigh".into())
            .spawn(move || {
                if let Err(e) = me.run(&stop) {
                    eprintln!("xvsd: neighbour thread: {e}");
                }
            })
            .expect("spawn neighbour thread")
    }
}
