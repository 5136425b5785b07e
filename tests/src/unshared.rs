//! Tests of the neighbour thread need a network namespace to themselves
//! (its netlink sockets must see only the test's links) but no LAN: they
//! re-run their own binary under `unshare -n` and set up one veth pair
//! there with `ip`. This is what those tests share.

use std::net::IpAddr;
use std::process::Command;
use std::time::{Duration, Instant};
use xvs_dataplane::svc::NeighCell;

/// Run test `name` of this test binary again in a new network namespace
/// of its own, with the variable `inner` set, and check that it passed.
/// Returns false in that inner run (where the test goes on), true in the
/// outer one once the inner run passed.
pub fn rerun_unshared(inner: &str, name: &str) -> bool {
    if std::env::var_os(inner).is_some() {
        return false;
    }
    let exe = std::env::current_exe().expect("test binary");
    let out = Command::new("unshare")
        .arg("-n")
        .arg(exe)
        .args(["--exact", name, "--nocapture", "--test-threads", "1"])
        .env(inner, "1")
        .output()
        .expect("run unshare");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "in a new network namespace:\n{log}");
    assert!(log.contains("1 passed"), "{log}");
    true
}

/// Run `ip` with `args`; panics if it fails; returns its output.
pub fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The interface's index, from `ip -o link` (/sys still shows the
/// namespace the test started in).
pub fn ifindex(name: &str) -> u32 {
    ip(&["-o", "link", "show", name])
        .split(':')
        .next()
        .unwrap_or("")
        .trim()
        .parse()
        .expect("ifindex")
}

/// `lo` up, and the veth pair `a`–`b`, both ends up.
pub fn veth_pair(a: &str, b: &str) {
    ip(&["link", "set", "lo", "up"]);
    ip(&["link", "add", a, "type", "veth", "peer", "name", b]);
    ip(&["link", "set", a, "up"]);
    ip(&["link", "set", b, "up"]);
}

/// A permanent neighbour entry: `addr` (either family) is at `mac` on
/// `dev`, added or replacing the one there.
pub fn permanent(dev: &str, addr: &str, mac: &str) {
    let family = match addr.parse::<IpAddr>().expect("an address") {
        IpAddr::V4(_) => "-4",
        IpAddr::V6(_) => "-6",
    };
    ip(&[
        family,
        "neigh",
        "replace",
        addr,
        "lladdr",
        mac,
        "dev",
        dev,
        "nud",
        "permanent",
    ]);
}

/// Wait until `f` holds (at most `within`).
pub fn wait(within: Duration, what: &str, f: impl Fn() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < within, "{what}: not after {within:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Wait until `cell` holds `mac` (at most `within`).
pub fn until(cell: &NeighCell, mac: Option<[u8; 6]>, within: Duration, what: &str) {
    let start = Instant::now();
    while cell.mac() != mac {
        assert!(
            start.elapsed() < within,
            "{what}: cell holds {:?}, not {mac:?}, after {within:?}",
            cell.mac()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}
