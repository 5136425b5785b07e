//! The neighbour thread follows the kernel's neighbour and route changes as
//! they are announced: a MAC that changes, a route that moves to another
//! gateway, a neighbour that is deleted, each shows in the cells within a
//! fraction of a second (the safety resync is 30 s away).
//!
//! The test re-runs itself in a network namespace of its own
//! (`unshare -n`), so the thread's netlink sockets see only its veth pair.

use std::net::Ipv4Addr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};
use xvs_dataplane::neigh::NeighTable;
use xvs_tests::unshared::{ifindex, ip, permanent, rerun_unshared, until, veth_pair};

const INNER: &str = "XVS_NEIGH_E2E_INNER";
const NAME: &str = "neighbour_cells_follow_kernel_changes_without_polling";

#[test]
fn neighbour_cells_follow_kernel_changes_without_polling() {
    if rerun_unshared(INNER, NAME) {
        return;
    }
    veth_pair("xv0", "xv1");
    ip(&["addr", "add", "198.18.5.1/24", "dev", "xv0"]);
    let m2 = [2, 0, 0, 0, 5, 2];
    let m3 = [2, 0, 0, 0, 5, 3];
    let m4 = [2, 0, 0, 0, 5, 4];
    permanent("xv0", "198.18.5.2", "02:00:00:00:05:02");
    let table = NeighTable::new(vec![ifindex("xv0")]);
    let stop = Arc::new(AtomicBool::new(false));
    let thread = table.spawn(stop.clone());
    let fast = Duration::from_millis(500);

    // On-link: resolved from the first read, with its route.
    let direct = table.cell(Ipv4Addr::new(198, 18, 5, 2));
    until(&direct, Some(m2), Duration::from_secs(2), "first read");
    assert_eq!(direct.oif(), Some(ifindex("xv0")));
    assert_eq!(direct.src(), Some(Ipv4Addr::new(198, 18, 5, 1)));

    // The MAC changes: announced, followed.
    permanent("xv0", "198.18.5.2", "02:00:00:00:05:03");
    until(&direct, Some(m3), fast, "changed MAC");

    // Behind a gateway: the gateway's MAC.
    ip(&["route", "add", "198.18.6.0/24", "via", "198.18.5.2"]);
    let behind = table.cell(Ipv4Addr::new(198, 18, 6, 9));
    until(&behind, Some(m3), fast, "new server behind a gateway");

    // The route moves to another gateway: followed without waiting for a
    // periodic route read.
    permanent("xv0", "198.18.5.4", "02:00:00:00:05:04");
    ip(&["route", "replace", "198.18.6.0/24", "via", "198.18.5.4"]);
    until(&behind, Some(m4), fast, "route moved to another gateway");
    assert_eq!(direct.mac(), Some(m3));

    // The gateway's entry is deleted: no MAC (the thread asks the kernel to
    // resolve it again; nobody answers on the veth's far end).
    ip(&["neigh", "del", "198.18.5.4", "dev", "xv0"]);
    until(&behind, None, fast, "gateway entry deleted");

    // The route goes: unreachable.
    ip(&["route", "del", "198.18.6.0/24"]);
    let start = Instant::now();
    while behind.oif().is_some() {
        assert!(start.elapsed() < fast, "route deletion not followed");
        std::thread::sleep(Duration::from_millis(5));
    }

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    thread.join().expect("neighbour thread");
}
