//! The neighbour thread follows the kernel's neighbour and route changes as
//! they are announced: a MAC that changes, a route that moves to another
//! gateway, a neighbour that is deleted, each shows in the cells within a
//! fraction of a second (the safety resync is 30 s away).
//!
//! The test re-runs itself in a network namespace of its own
//! (`unshare -n`), so the thread's netlink sockets see only its veth pair.

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};
use xvs_dataplane::neigh::NeighTable;
use xvs_dataplane::svc::NeighCell;

const INNER: &str = "XVS_NEIGH_E2E_INNER";
const NAME: &str = "neighbour_cells_follow_kernel_changes_without_polling";

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The interface's index, from `ip -o link` (/sys still shows the
/// namespace the test started in).
fn ifindex(name: &str) -> u32 {
    let out = Command::new("ip")
        .args(["-o", "link", "show", name])
        .output()
        .expect("run ip");
    let s = String::from_utf8_lossy(&out.stdout);
    s.split(':')
        .next()
        .unwrap_or("")
        .trim()
        .parse()
        .expect("ifindex")
}

/// Wait until `cell` holds `mac` (at most `within`); returns how long.
fn until(cell: &NeighCell, mac: Option<[u8; 6]>, within: Duration, what: &str) -> Duration {
    let start = Instant::now();
    while cell.mac() != mac {
        assert!(
            start.elapsed() < within,
            "{what}: cell holds {:?}, not {mac:?}, after {within:?}",
            cell.mac()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    start.elapsed()
}

#[test]
fn neighbour_cells_follow_kernel_changes_without_polling() {
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
    ip(&["addr", "add", "198.18.5.1/24", "dev", "xv0"]);
    let m2 = [2, 0, 0, 0, 5, 2];
    let m3 = [2, 0, 0, 0, 5, 3];
    let m4 = [2, 0, 0, 0, 5, 4];
    ip(&[
        "neigh",
        "add",
        "198.18.5.2",
        "lladdr",
        "02:00:00:00:05:02",
        "dev",
        "xv0",
        "nud",
        "permanent",
    ]);
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
    ip(&[
        "neigh",
        "replace",
        "198.18.5.2",
        "lladdr",
        "02:00:00:00:05:03",
        "dev",
        "xv0",
        "nud",
        "permanent",
    ]);
    until(&direct, Some(m3), fast, "changed MAC");

    // Behind a gateway: the gateway's MAC.
    ip(&["route", "add", "198.18.6.0/24", "via", "198.18.5.2"]);
    let behind = table.cell(Ipv4Addr::new(198, 18, 6, 9));
    until(&behind, Some(m3), fast, "new server behind a gateway");

    // The route moves to another gateway: followed without waiting for a
    // periodic route read.
    ip(&[
        "neigh",
        "add",
        "198.18.5.4",
        "lladdr",
        "02:00:00:00:05:04",
        "dev",
        "xv0",
        "nud",
        "permanent",
    ]);
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
