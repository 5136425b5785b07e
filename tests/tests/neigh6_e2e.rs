//! IPv6 next hops come from the kernel's NDP table as IPv4's come from
//! ARP: the neighbour thread reads IPv6 routes (gateways that are
//! link-local addresses included) and neighbours, follows their changes as
//! they are announced, and asks the kernel to solicit a missing one.
//!
//! Like `neigh_e2e`, the test re-runs itself in a network namespace of its
//! own (`unshare -n`). Addresses are from 2001:2::/48 (RFC 5180), without
//! duplicate address detection.

use std::net::Ipv6Addr;
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};
use xvs_dataplane::neigh::NeighTable;
use xvs_dataplane::svc::NeighCell;

const INNER: &str = "XVS_NEIGH6_E2E_INNER";
const NAME: &str = "ipv6_neighbour_cells_follow_ndp_and_routes";

fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The interface's index, from `ip -o link`.
fn ifindex(name: &str) -> u32 {
    ip(&["-o", "link", "show", name])
        .split(':')
        .next()
        .unwrap_or("")
        .trim()
        .parse()
        .expect("ifindex")
}

/// Wait until `f` holds (at most `within`).
fn wait(within: Duration, what: &str, f: impl Fn() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < within, "{what}: not after {within:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Wait until `cell` holds `mac`.
fn until(cell: &NeighCell, mac: Option<[u8; 6]>, within: Duration, what: &str) {
    wait(
        within,
        &format!("{what} (cell holds {:?}, want {mac:?})", cell.mac()),
        || cell.mac() == mac,
    );
}

fn permanent(addr: &str, mac: &str) {
    ip(&[
        "-6",
        "neigh",
        "replace",
        addr,
        "lladdr",
        mac,
        "dev",
        "xv0",
        "nud",
        "permanent",
    ]);
}

#[test]
fn ipv6_neighbour_cells_follow_ndp_and_routes() {
    if std::env::var_os(INNER).is_none() {
        let exe = std::env::current_exe().expect("test binary");
        let out = Command::new("unshare")
            .arg("-n")
            .arg(exe)
            .args(["--exact", NAME, "--nocapture", "--test-threads", "1"])
            .env(INNER, "1")
            .output()
            .expect("run unshare");
        let log = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "in a new network namespace:\n{log}");
        assert!(log.contains("1 passed"), "{log}");
        return;
    }
    ip(&["link", "set", "lo", "up"]);
    ip(&["link", "add", "xv0", "type", "veth", "peer", "name", "xv1"]);
    ip(&["link", "set", "xv0", "up"]);
    ip(&["link", "set", "xv1", "up"]);
    ip(&["-6", "addr", "add", "2001:2:5::1/64", "dev", "xv0", "nodad"]);
    permanent("2001:2:5::2", "02:00:00:00:05:02");
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
    permanent("2001:2:5::2", "02:00:00:00:05:03");
    until(&direct, Some(m3), fast, "changed MAC");

    // Behind a global gateway: the gateway's MAC.
    ip(&["-6", "route", "add", "2001:2:6::/64", "via", "2001:2:5::2"]);
    let behind = table.cell("2001:2:6::9".parse::<Ipv6Addr>().unwrap());
    until(&behind, Some(m3), fast, "new server behind a gateway");

    // The route moves to a link-local gateway (as router advertisements
    // give them): its entry on the route's interface is the one used.
    permanent("fe80::4", "02:00:00:00:05:04");
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
