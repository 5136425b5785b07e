//! IPv6 next hops come from the kernel's NDP table as IPv4's come from
//! ARP: the neighbour thread reads IPv6 routes (gateways that are
//! link-local addresses included) and neighbours, follows their changes as
//! they are announced, and asks the kernel to solicit a missing one.
//!
//! Like `neigh_e2e`, the test re-runs itself in a network namespace of its
//! own (`unshare -n`). Addresses are from 2001:2::/48 (RFC 5180), without
//! duplicate address detection.

use std::net::Ipv6Addr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;
use xvs_dataplane::neigh::NeighTable;
use xvs_tests::unshared::{ifindex, ip, permanent, rerun_unshared, until, veth_pair, wait};

const INNER: &str = "XVS_NEIGH6_E2E_INNER";
const NAME: &str = "ipv6_neighbour_cells_follow_ndp_and_routes";

#[test]
fn ipv6_neighbour_cells_follow_ndp_and_routes() {
    if rerun_unshared(INNER, NAME) {
        return;
    }
    veth_pair("xv0", "xv1");
    ip(&["-6", "addr", "add", "2001:2:5::1/64", "dev", "xv0", "nodad"]);
    permanent("xv0", "2001:2:5::2", "02:00:00:00:05:02");
    let (m2, m3, m4) = ([2, 0, 0, 0, 5, 2], [2, 0, 0, 0, 5, 3], [2, 0, 0, 0, 5, 4]);
    let table = NeighTable::new(vec![ifindex("xv0")]);
    let stop = Arc::new(AtomicBool::new(false));
    let thread = table.spawn(stop.clone());
    let fast = Duration::from_millis(500);

    // On-link: resolved from the first read, with its route.
    let direct = table.cell("2001:2:5::2".parse::<Ipv6Addr>().unwrap());
    until(&direct, Some(m2), Duration::from_secs(2), "first read");
    assert_eq!(direct.oif(), Some(ifindex("xv0")));
    // A cell keeps an IPv4 source only.
    assert_eq!(direct.src(), None);

    // The MAC changes: announced, followed.
    permanent("xv0", "2001:2:5::2", "02:00:00:00:05:03");
    until(&direct, Some(m3), fast, "changed MAC");

    // Behind a global gateway: the gateway's MAC.
    ip(&["-6", "route", "add", "2001:2:6::/64", "via", "2001:2:5::2"]);
    let behind = table.cell("2001:2:6::9".parse::<Ipv6Addr>().unwrap());
    until(&behind, Some(m3), fast, "new server behind a gateway");

    // The route moves to a link-local gateway (as router advertisements
    // give them): its entry on the route's interface is the one used.
    permanent("xv0", "fe80::4", "02:00:00:00:05:04");
    ip(&[
        "-6",
        "route",
        "replace",
        "2001:2:6::/64",
        "via",
        "fe80::4",
        "dev",
        "xv0",
    ]);
    until(
        &behind,
        Some(m4),
        fast,
        "route moved to a link-local gateway",
    );
    assert_eq!(direct.mac(), Some(m3));

    // The gateway's entry is deleted: no MAC, and the thread asks the
    // kernel to solicit it (an entry appears, being resolved or failed:
    // nobody answers on the veth's far end).
    ip(&["-6", "neigh", "del", "fe80::4", "dev", "xv0"]);
    until(&behind, None, fast, "gateway entry deleted");
    wait(
        Duration::from_secs(2),
        "a neighbour solicitation asked for",
        || {
            let s = ip(&["-6", "neigh", "show", "fe80::4", "dev", "xv0"]);
            !s.trim().is_empty()
        },
    );

    // The route goes: unreachable.
    ip(&["-6", "route", "del", "2001:2:6::/64"]);
    wait(fast, "route deletion followed", || behind.oif().is_none());
    assert_eq!(direct.mac(), Some(m3));

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    thread.join().expect("neighbour thread");
}
