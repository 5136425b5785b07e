//! What the health-check tests watch: the effective weights in `-Ln` and
//! the `-Ln --check` lines, polled with deadlines, and bounded runs of
//! client connections through a VIP.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::daemon::Xvsd;
use crate::lans::{TunLan, TunType, GUE_PORT};
use crate::listing;
use crate::netns::DrLan;
use crate::node::{ClientSummary, Clients};

/// Tests of one file take turns: on two cores, one test's busy daemon
/// would starve another's probes into timeouts.
static NET: Mutex<()> = Mutex::new(());

/// Takes the turn of the calling test (a panicked holder's turn is taken
/// over, not poisoned).
pub fn net_lock() -> MutexGuard<'static, ()> {
    NET.lock().unwrap_or_else(|e| e.into_inner())
}

/// The DR LAN with xvsd on the director; `ipv6` turns IPv6 on first.
pub fn lan_and_xvsd(ipv6: bool) -> (DrLan, Xvsd) {
    crate::bin("xvsd");
    crate::bin("xvsadm");
    let lan = DrLan::new();
    let xvsd = xvsd_on(&lan, ipv6);
    (lan, xvsd)
}

/// The TUN LAN whose real servers take GUE on [`GUE_PORT`], with xvsd
/// on the director; `ipv6` turns IPv6 on first.
pub fn gue_lan_and_xvsd(ipv6: bool) -> (TunLan, Xvsd) {
    crate::bin("xvsd");
    crate::bin("xvsadm");
    let lan = TunLan::new(TunType::Gue { port: GUE_PORT });
    let xvsd = xvsd_on(&lan, ipv6);
    (lan, xvsd)
}

/// xvsd on `lan`'s director, after turning IPv6 on if `ipv6`.
fn xvsd_on(lan: &DrLan, ipv6: bool) -> Xvsd {
    if ipv6 {
        lan.enable_ipv6();
    }
    Xvsd::start(&lan.director.ns, &[&lan.director.iface])
}

/// The timings of the quick checks: interval 1 s, timeout 1 s, rise 1,
/// fall 1.
pub const FAST: [&str; 8] = [
    "--check-interval",
    "1",
    "--check-timeout",
    "1",
    "--check-rise",
    "1",
    "--check-fall",
    "1",
];

/// Adds service `svc` (`-s rr`) with `check` (`--check KIND` and its
/// options, a sorry server...) and the [`FAST`] timings.
pub fn add_fast_checked(xvsd: &Xvsd, svc: &str, check: &[&str]) {
    let mut args = vec!["-A", "-t", svc, "-s", "rr"];
    args.extend_from_slice(check);
    args.extend(FAST);
    xvsd.adm_ok(&args);
}

/// Adds each of `servers` (`addr` or `addr:port`) to `svc`, tunnelled in
/// GUE on UDP port `gue_port`.
pub fn add_gue(xvsd: &Xvsd, svc: &str, servers: &[String], gue_port: u16) {
    let port = gue_port.to_string();
    for r in servers {
        xvsd.adm_ok(&[
            "-a",
            "-t",
            svc,
            "-r",
            r,
            "-i",
            "--tun-type",
            "gue",
            "--tun-port",
            &port,
        ]);
    }
}

/// Effective weights of `svc`'s real servers in `-Ln`, by address as
/// listed (`addr:port` or `[addr]:port`).
pub fn weights(xvsd: &Xvsd, svc: &str) -> HashMap<String, i64> {
    let l = listing::parse(&xvsd.adm_ok(&["-Ln"]));
    let Some(s) = l.iter().find(|s| s.addr == svc) else {
        return HashMap::new();
    };
    s.dests
        .iter()
        .filter_map(|d| Some((d.addr.clone(), d.fields.get(1)?.parse().ok()?)))
        .collect()
}

/// Whether every one of `addrs` has `weight` in `w`.
pub fn all(w: &HashMap<String, i64>, addrs: &[&str], weight: i64) -> bool {
    addrs.iter().all(|a| w.get(*a) == Some(&weight))
}

/// Polls `-Ln` until `want` holds for `svc`'s weights; panics with the
/// check listing and xvsd's log if it does not within `within`. Returns
/// the time it took.
pub fn wait_weights(
    xvsd: &Xvsd,
    svc: &str,
    within: Duration,
    what: &str,
    want: impl Fn(&HashMap<String, i64>) -> bool,
) -> Duration {
    let t0 = Instant::now();
    loop {
        let w = weights(xvsd, svc);
        if want(&w) {
            return t0.elapsed();
        }
        if t0.elapsed() >= within {
            panic!(
                "{what}: not within {within:?}; weights {w:?}\n-Ln --check:\n{}\nxvsd stderr:\n{}",
                String::from_utf8_lossy(&xvsd.adm(&["-Ln", "--check"]).stdout),
                xvsd.stderr_so_far()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The `-Ln --check` line of server `addr`, once `want` holds for it;
/// panics with the listing if it does not within `within`.
pub fn wait_check_line(
    xvsd: &Xvsd,
    addr: &str,
    within: Duration,
    want: impl Fn(&str) -> bool,
) -> String {
    let t0 = Instant::now();
    loop {
        let check = xvsd.adm_ok(&["-Ln", "--check"]);
        let line = check
            .lines()
            .find(|l| l.contains(&format!("-> {addr} ")))
            .unwrap_or_else(|| panic!("{addr} not in -Ln --check:\n{check}"));
        if want(line) {
            return line.to_string();
        }
        assert!(
            t0.elapsed() < within,
            "{addr}: not as expected within {within:?}:\n{check}\n{}",
            xvsd.stderr_so_far()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `count` sequential connections from the LAN's client to `target`
/// (2 s each, 30 s in all, at most 5 failures before it gives up).
pub fn clients(lan: &DrLan, target: &str, count: u64) -> ClientSummary {
    Clients::default().run(&lan.client.ns, target, count)
}
