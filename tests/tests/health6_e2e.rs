//! Health checks of IPv6 real servers end to end: xvsd on the DR LAN with
//! IPv6 turned on (2001:2::/48 only, no DAD), real servers answering on
//! `[::]`, and real IPv6 TCP connections through the VIP while the checks
//! take servers out and put them back.
//!
//! The bounds are those of `health_e2e.rs`: a server that stops answering
//! is out within interval × fall + timeout (+1 s), one that answers again
//! is back within interval × rise (+1 s).

use std::net::Ipv6Addr;
use std::time::Duration;

use xvs_tests::health::{
    add_fast_checked, add_gue, clients, gue_lan_and_xvsd, lan_and_xvsd, net_lock, wait_check_line,
    wait_weights, weights,
};
use xvs_tests::lan6::{addr6, endpoint6, VIP6};
use xvs_tests::lans::{TunLan, GUE_PORT};
use xvs_tests::netns::{DrLan, Host, Proc};
use xvs_tests::rig;

/// `xvs-node serve` on `h`, port 80, every address of both families.
fn serve(h: &Host) -> Proc {
    rig::serve(h, 80, &["--bind", "::"])
}

/// `[addr]:80` of real server `i`.
fn rs6(lan: &DrLan, i: usize) -> String {
    endpoint6(addr6(&lan.rs[i]), 80)
}

/// `tcp` on IPv6 servers, interval 1 s, fall 2, rise 2: a stopped
/// listener is out in time (weight 0 in `-Ln`, no new connection to it,
/// none fails) and back in time; with both servers down the IPv6 sorry
/// server takes the new connections, and stops as soon as one is back.
#[test]
fn tcp_check_and_sorry_server_with_ipv6_servers() {
    const INTERVAL: u64 = 1;
    const FALL: u64 = 2;
    const RISE: u64 = 2;
    const TIMEOUT: u64 = 1;
    let _g = net_lock();
    let (lan, xvsd) = lan_and_xvsd(true);
    let mut servers: Vec<Option<Proc>> = lan.rs.iter().map(|h| Some(serve(h))).collect();
    let svc = endpoint6(VIP6, 80);
    let (a1, a2, sorry) = (rs6(&lan, 0), rs6(&lan, 1), rs6(&lan, 2));
    xvsd.adm_ok(&[
        "-A",
        "-t",
        &svc,
        "-s",
        "rr",
        "--sorry-server",
        &sorry,
        "--check",
        "tcp",
        "--check-interval",
        &INTERVAL.to_string(),
        "--check-fall",
        &FALL.to_string(),
        "--check-rise",
        &RISE.to_string(),
        "--check-timeout",
        &TIMEOUT.to_string(),
    ]);
    for a in [&a1, &a2] {
        xvsd.adm_ok(&["-a", "-t", &svc, "-r", a, "-g"]);
    }
    // Added with a check, a server starts down.
    let w = weights(&xvsd, &svc);
    assert_eq!((w.get(&a1), w.get(&a2)), (Some(&0), Some(&0)), "{w:?}");
    wait_weights(&xvsd, &svc, Duration::from_secs(4), "both up", |w| {
        w.get(&a1) == Some(&1) && w.get(&a2) == Some(&1)
    });
    let s = clients(&lan, &svc, 20);
    assert_eq!(
        (s.ok, s.failed, s.count("rs1"), s.count("rs2")),
        (20, 0, 10, 10),
        "{s:?}"
    );

    // rs2's listener stops: out in time, nothing goes to it, nothing fails.
    servers[1] = None;
    let took = wait_weights(
        &xvsd,
        &svc,
        Duration::from_secs(INTERVAL * FALL + TIMEOUT + 1),
        "rs2 out",
        |w| w.get(&a2) == Some(&0) && w.get(&a1) == Some(&1),
    );
    eprintln!("rs2 out after {took:?}");
    let s = clients(&lan, &svc, 20);
    assert_eq!((s.ok, s.failed, s.count("rs1")), (20, 0, 20), "{s:?}");
    let log = xvsd.stderr_so_far();
    assert!(
        log.contains(&format!("check tcp {a2}: FALLING -> DOWN")),
        "transition not logged:\n{log}"
    );

    // It comes back.
    servers[1] = Some(serve(&lan.rs[1]));
    let took = wait_weights(
        &xvsd,
        &svc,
        Duration::from_secs(INTERVAL * RISE + 1),
        "rs2 back",
        |w| w.get(&a2) == Some(&1),
    );
    eprintln!("rs2 back after {took:?}");
    let s = clients(&lan, &svc, 20);
    assert_eq!((s.ok, s.failed, s.count("rs2")), (20, 0, 10), "{s:?}");

    // Both down: the sorry server (rs3) takes every new connection.
    servers[0] = None;
    servers[1] = None;
    wait_weights(
        &xvsd,
        &svc,
        Duration::from_secs(INTERVAL * FALL + TIMEOUT + 1),
        "both out",
        |w| w.get(&a1) == Some(&0) && w.get(&a2) == Some(&0),
    );
    let check = xvsd.adm_ok(&["-Ln", "--check"]);
    assert!(
        check.contains(&format!("TCP  {svc} up 0 quorum 1 sorry {sorry} in-use")),
        "{check}"
    );
    let s = clients(&lan, &svc, 20);
    assert_eq!((s.ok, s.failed, s.count("rs3")), (20, 0, 20), "{s:?}");

    // One back: the sorry server gets no new connection.
    servers[0] = Some(serve(&lan.rs[0]));
    wait_weights(
        &xvsd,
        &svc,
        Duration::from_secs(INTERVAL * RISE + 1),
        "rs1 back",
        |w| w.get(&a1) == Some(&1),
    );
    let s = clients(&lan, &svc, 20);
    assert_eq!((s.ok, s.failed, s.count("rs1")), (20, 0, 20), "{s:?}");
    drop(servers);
}

/// `ping` (ICMPv6 echo): an absent server is down, the present ones up.
/// `vip` (an IPv6 SYN to the VIP in a frame to the server's MAC, from
/// NDP): the server that does not take the VIP (no local route for it on
/// `lo`) is down and gets no connection, the others are up; with the
/// route back it comes up.
#[test]
fn ping_and_vip_checks_of_ipv6_servers() {
    let _g = net_lock();
    let (lan, xvsd) = lan_and_xvsd(true);
    let _servers: Vec<Proc> = lan.rs.iter().map(serve).collect();

    // ping: rs1, rs2 and an address on the LAN that nobody holds (on a
    // service of its own: direct routing keeps the service's port).
    let ping_svc = endpoint6(VIP6, 8080);
    let on_8080 = |a: Ipv6Addr| endpoint6(a, 8080);
    let (p1, p2) = (on_8080(addr6(&lan.rs[0])), on_8080(addr6(&lan.rs[1])));
    let absent = on_8080(Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0x99));
    add_fast_checked(&xvsd, &ping_svc, &["--check", "ping"]);
    for r in [&p1, &p2, &absent] {
        xvsd.adm_ok(&["-a", "-t", &ping_svc, "-r", r, "-g"]);
    }
    let (a1, a2, a3) = (rs6(&lan, 0), rs6(&lan, 1), rs6(&lan, 2));

    // vip: rs3 no longer takes the VIP.
    let vip_lo = format!("{VIP6}/128");
    lan.rs[2].exec_ok(&["ip", "-6", "route", "del", "local", &vip_lo, "dev", "lo"]);
    let svc = endpoint6(VIP6, 80);
    add_fast_checked(&xvsd, &svc, &["--check", "vip"]);
    for r in [&a1, &a2, &a3] {
        xvsd.adm_ok(&["-a", "-t", &svc, "-r", r, "-g"]);
    }

    wait_weights(&xvsd, &ping_svc, Duration::from_secs(4), "ping up", |w| {
        w.get(&p1) == Some(&1) && w.get(&p2) == Some(&1)
    });
    // No reply comes (or the kernel refuses to send once NDP failed).
    let line = wait_check_line(&xvsd, &absent, Duration::from_secs(4), |l| {
        l.contains("no echo reply") || l.contains("send:")
    });
    assert!(line.contains("ping") && line.contains("DOWN"), "{line}");
    assert_eq!(weights(&xvsd, &ping_svc).get(&absent), Some(&0));

    // The first probes may find no MAC yet: allow a few intervals.
    wait_weights(
        &xvsd,
        &svc,
        Duration::from_secs(6),
        "vip rs1, rs2 up",
        |w| w.get(&a1) == Some(&1) && w.get(&a2) == Some(&1),
    );
    // rs3 has been probed (rise 1: one answer would bring it up) and is
    // down for want of an answer.
    let line = wait_check_line(&xvsd, &a3, Duration::from_secs(4), |l| {
        l.contains("no answer")
    });
    assert!(line.contains("vip") && line.contains("DOWN"), "{line}");
    for a in [&a1, &a2] {
        let l = wait_check_line(&xvsd, a, Duration::ZERO, |_| true);
        assert!(l.contains("vip") && l.contains("UP"), "{l}");
    }
    assert_eq!(weights(&xvsd, &svc).get(&a3), Some(&0));
    let s = clients(&lan, &svc, 20);
    assert_eq!((s.ok, s.failed, s.count("rs3")), (20, 0, 0), "{s:?}");

    lan.rs[2].exec_ok(&["ip", "-6", "route", "add", "local", &vip_lo, "dev", "lo"]);
    wait_weights(&xvsd, &svc, Duration::from_secs(3), "rs3 up", |w| {
        w.get(&a3) == Some(&1)
    });
    let log = xvsd.stderr_so_far();
    assert!(
        log.contains(&format!(
            "check vip {svc} via {}: DOWN -> UP",
            addr6(&lan.rs[2])
        )),
        "transition not logged:\n{log}"
    );
}

/// `vip` through IPv6 tunnels: the IPv6 SYN goes to each server inside
/// GUE over IPv6; the server that does not take the VIP is down, the
/// others up, and connections go only to those.
#[test]
fn vip_check_reaches_ipv6_tun_servers_through_gue() {
    let lan = vip_check_through_gue6(|lan| {
        let vip_lo = format!("{VIP6}/128");
        lan.rs[2].exec_ok(&["ip", "-6", "route", "del", "local", &vip_lo, "dev", "lo"]);
        endpoint6(VIP6, 80)
    });
    // The SYNs came out of the servers' decapsulators.
    for i in 0..3 {
        assert!(
            lan.decapsulated(i) >= 1,
            "rs{}: nothing decapsulated",
            i + 1
        );
    }
}

/// `vip` across families: an IPv4 service whose real servers are reached
/// over IPv6 GUE. The IPv4 SYN travels inside GUE over IPv6, its source
/// the director's IPv4 address; the server without the IPv4 VIP on `lo`
/// is down, the others up.
#[test]
fn vip_check_of_an_ipv4_service_through_ipv6_gue_servers() {
    vip_check_through_gue6(|lan| {
        lan.rs[2].exec_ok(&["ip", "addr", "del", &format!("{}/32", lan.vip), "dev", "lo"]);
        format!("{}:80", lan.vip)
    });
}

/// A `vip`-checked service over three IPv6 GUE real servers, of which
/// `without_vip` (returning the service address) takes the VIP off the
/// third: the first two come up, the third is reported down for want of
/// an answer and gets none of 20 new connections. Returns the LAN for
/// further checks.
fn vip_check_through_gue6(without_vip: impl FnOnce(&TunLan) -> String) -> TunLan {
    let _g = net_lock();
    let (lan, xvsd) = gue_lan_and_xvsd(true);
    let _servers: Vec<Proc> = lan.rs.iter().map(serve).collect();
    let svc = without_vip(&lan);
    add_fast_checked(&xvsd, &svc, &["--check", "vip"]);
    let addrs: Vec<String> = (0..3).map(|i| rs6(&lan, i)).collect();
    add_gue(&xvsd, &svc, &addrs, GUE_PORT);
    wait_weights(&xvsd, &svc, Duration::from_secs(6), "rs1, rs2 up", |w| {
        w.get(&addrs[0]) == Some(&1) && w.get(&addrs[1]) == Some(&1)
    });
    let line = wait_check_line(&xvsd, &addrs[2], Duration::from_secs(4), |l| {
        l.contains("no answer")
    });
    assert!(line.contains("vip") && line.contains("DOWN"), "{line}");
    let s = clients(&lan, &svc, 20);
    assert_eq!((s.ok, s.failed, s.count("rs3")), (20, 0, 0), "{s:?}");
    drop(xvsd);
    lan
}
