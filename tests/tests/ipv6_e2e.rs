//! IPv6 end to end: a real client, a real xvsd on the director's veth and
//! three real servers on the DR LAN with IPv6 turned on (addresses from
//! 2001:2::/48 only, no DAD), real TCP connections over IPv6, and an
//! IPv4 service whose real servers are reached over IPv6 GUE.

use std::sync::{Mutex, MutexGuard};
use xvs_tests::daemon::Xvsd;
use xvs_tests::lan6::{addr6, endpoint6, NAT_VIP6, VIP6};
use xvs_tests::lans::{NatLan, TunLan, TunType, GUE_PORT};
use xvs_tests::listing;
use xvs_tests::netns::{self, DrLan, Host};
use xvs_tests::node::{ClientSummary, Clients};
use xvs_tests::rig;

const NODE: &str = env!("CARGO_BIN_EXE_xvs-node");
const CONNS: u64 = 300;

/// The tests take turns: on two cores, one test's busy worker would
/// starve another's clients into timeouts.
static NET: Mutex<()> = Mutex::new(());

/// Every test's first step: take the turn, and check that the binaries
/// it runs are built.
fn begin() -> MutexGuard<'static, ()> {
    let turn = NET.lock().unwrap_or_else(|e| e.into_inner());
    xvs_tests::bin("xvsd");
    xvs_tests::bin("xvsadm");
    turn
}

/// A DR LAN with IPv6 on, `xvs-node serve` on each of `ports` of every
/// real server, and xvsd on the director's interface (no services yet).
fn dr6(ports: &[u16]) -> (DrLan, Vec<netns::Proc>, Xvsd) {
    let lan = DrLan::new();
    lan.enable_ipv6();
    let servers = ports
        .iter()
        .flat_map(|&p| rig::serve_on(&lan.rs, p, &["--bind", "::"]))
        .collect();
    let xvsd = Xvsd::start(&lan.director.ns, &[&lan.director.iface]);
    (lan, servers, xvsd)
}

/// Add virtual service `svc` (`-t VIP`, `-u VIP` or `-f MARK -6`) with
/// options `opts`, and real servers `rips`, each with options `fwd`.
fn service(xvsd: &Xvsd, svc: &[&str], opts: &[&str], rips: &[String], fwd: &[&str]) {
    xvsd.adm_ok(&[&["-A"], svc, opts].concat());
    for rip in rips {
        xvsd.adm_ok(&[&["-a"], svc, &["-r", rip.as_str()], fwd].concat());
    }
}

/// `[addr6]:port` of every host of `hosts`.
fn rips(hosts: &[Host], port: u16) -> Vec<String> {
    hosts.iter().map(|h| endpoint6(addr6(h), port)).collect()
}

/// Stop xvsd and check its clean exit: every worker accounts for all its
/// frames.
fn stop_clean(xvsd: Xvsd) {
    let exit = xvsd.stop();
    assert!(
        exit.status.success(),
        "xvsd: {}\n{}",
        exit.status,
        exit.stderr
    );
    let workers = exit.worker_frames();
    assert!(!workers.is_empty(), "{}", exit.stderr);
    for w in &workers {
        assert_eq!(w.lost, 0, "worker {} lost frames: {w:?}", w.worker);
    }
}

/// `count` sequential TCP connections (or UDP exchanges) from the
/// client in `ns` to `target`.
fn client_in(ns: &str, target: &str, count: u64, udp: bool) -> ClientSummary {
    Clients::new(2000, 60_000, 10)
        .udp(udp)
        .run(ns, target, count)
}

/// `count` sequential TCP connections from the DR LAN's client.
fn client_run(lan: &DrLan, target: &str, count: u64) -> ClientSummary {
    client_in(&lan.client.ns, target, count, false)
}

#[test]
fn ipv6_dr_rr_splits_300_connections_exactly() {
    let _g = begin();
    let (lan, _servers, xvsd) = dr6(&[80]);
    // The real servers answer over IPv6 directly (the LAN works).
    for h in &lan.rs {
        let s = client_run(&lan, &endpoint6(addr6(h), 80), 2);
        assert_eq!((s.ok, s.count(&h.role)), (2, 2), "{}: {s:?}", h.role);
    }

    let vip = endpoint6(VIP6, 80);
    service(
        &xvsd,
        &["-t", &vip],
        &["-s", "rr"],
        &rips(&lan.rs, 80),
        &["-g"],
    );
    assert!(lan.director_has_xdp(), "no XDP program on the director");

    let s = client_run(&lan, &vip, CONNS);
    assert_eq!((s.ok, s.failed), (CONNS, 0), "{s:?}");
    let got: Vec<u64> = lan.rs.iter().map(|h| s.count(&h.role)).collect();
    assert_eq!(got, vec![CONNS / 3; 3], "rr over rs1..rs3: {s:?}");

    let out = xvsd.adm_ok(&["-Ln", "--stats"]);
    let l = listing::parse(&out);
    let svc = l
        .iter()
        .find(|s| s.addr == vip)
        .unwrap_or_else(|| panic!("{vip} not listed:\n{out}"));
    let total = svc.stats().expect("stats columns");
    assert_eq!(total.conns, CONNS, "service Conns:\n{out}");
    assert!(total.in_pkts >= 4 * CONNS, "service InPkts:\n{out}");
    assert_eq!(total.out_pkts, 0, "DR sees no replies:\n{out}");
    for h in &lan.rs {
        let d = svc
            .dest(&endpoint6(addr6(h), 80))
            .unwrap_or_else(|| panic!("{} not listed:\n{out}", h.role));
        assert_eq!(d.stats().expect("stats").conns, CONNS / 3, "{out}");
    }

    // Every connection is listed, with its IPv6 addresses.
    let lnc = xvsd.adm_ok(&["-Lnc"]);
    let listed = lnc.lines().filter(|l| l.contains(&vip)).count();
    assert_eq!(listed as u64, CONNS, "-Lnc:\n{lnc}");
    stop_clean(xvsd);
    assert!(!lan.director_has_xdp(), "XDP program left attached");
}

#[test]
fn ipv6_nat_maps_ports_and_answers_udp_through_the_director() {
    let _g = begin();
    let lan = NatLan::new();
    lan.enable_ipv6();
    let mut servers = Vec::new();
    for h in &lan.rs {
        for extra in [&["--port", "8080"][..], &["--port", "53", "--udp"]] {
            let mut args = vec![NODE, "serve", "--name", &h.role, "--bind", "::"];
            args.extend_from_slice(extra);
            servers.push(h.spawn_ready(&args));
        }
    }
    let xvsd = Xvsd::start(
        &lan.director.ns,
        &[&lan.director.iface, &lan.director_rs.iface],
    );
    let (tcp_vip, udp_vip) = (endpoint6(NAT_VIP6, 80), endpoint6(NAT_VIP6, 53));
    let rr = ["-s", "rr"];
    service(&xvsd, &["-t", &tcp_vip], &rr, &rips(&lan.rs, 8080), &["-m"]);
    service(&xvsd, &["-u", &udp_vip], &rr, &rips(&lan.rs, 53), &["-m"]);
    let tcp = client_in(&lan.client.ns, &tcp_vip, 30, false);
    assert_eq!(
        (tcp.ok, tcp.failed),
        (30, 0),
        "NAT'd TCP over IPv6: {tcp:?}"
    );
    for h in &lan.rs {
        assert_eq!(tcp.count(&h.role), 10, "rr over 3 NAT servers: {tcp:?}");
    }
    // A new server's MAC is resolved on first use: the first datagrams
    // may go while NDP runs, and UDP does not retransmit.
    client_in(&lan.client.ns, &udp_vip, 3, true);
    let udp = client_in(&lan.client.ns, &udp_vip, 30, true);
    assert_eq!(
        (udp.ok, udp.failed),
        (30, 0),
        "NAT'd UDP over IPv6: {udp:?}"
    );
    let stats = xvsd.adm_ok(&["-Ln", "--stats", "--exact"]);
    let listed = listing::parse(&stats);
    let svc = listed
        .iter()
        .find(|s| s.addr == tcp_vip)
        .unwrap_or_else(|| panic!("{tcp_vip} not listed:\n{stats}"));
    let st = svc.stats().expect("stats listed");
    assert_eq!(st.conns, 30, "{stats}");
    assert!(st.out_pkts >= 30 * 3, "replies counted as OutPkts: {stats}");
    stop_clean(xvsd);
}

#[test]
fn ipv6_persistence_with_a_64_prefix_keeps_a_network_on_one_server() {
    let _g = begin();
    let (lan, _servers, xvsd) = dr6(&[80, 8080]);
    let (p64, p128) = (endpoint6(VIP6, 80), endpoint6(VIP6, 8080));
    let opts = ["-s", "rr", "-p", "300", "-M", "64"];
    service(&xvsd, &["-t", &p64], &opts, &rips(&lan.rs, 80), &["-g"]);
    service(
        &xvsd,
        &["-t", &p128],
        &opts[..4],
        &rips(&lan.rs, 8080),
        &["-g"],
    );
    // Three clients of one /64, ten connections each, to both services.
    let mut by64 = std::collections::BTreeMap::new();
    let mut by128 = std::collections::BTreeMap::new();
    for host in [0x21u16, 0x22, 0x23] {
        let src = std::net::Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, host);
        lan.client_source6(VIP6, src);
        for (svc, seen) in [(&p64, &mut by64), (&p128, &mut by128)] {
            let s = client_run(&lan, svc, 10);
            assert_eq!((s.ok, s.failed), (10, 0), "{svc} from {src}: {s:?}");
            let on: Vec<&str> = lan
                .rs
                .iter()
                .filter(|h| s.count(&h.role) > 0)
                .map(|h| h.role.as_str())
                .collect();
            assert_eq!(on.len(), 1, "one client, one server: {s:?}");
            seen.insert(src, on[0].to_owned());
        }
    }
    let servers64: std::collections::BTreeSet<_> = by64.values().collect();
    let servers128: std::collections::BTreeSet<_> = by128.values().collect();
    assert_eq!(
        servers64.len(),
        1,
        "-M 64: one server for the /64: {by64:?}"
    );
    assert_eq!(servers128.len(), 3, "/128: each client its own: {by128:?}");
    stop_clean(xvsd);
}

/// A GUE tunnel LAN with IPv6 on, a server on port 80 of every real
/// server, and xvsd balancing `vip` (rr) over the real servers' IPv6
/// addresses through GUE over IPv6.
fn gue6_service(vip: &str) -> (TunLan, Vec<netns::Proc>, Xvsd) {
    let lan = TunLan::new(TunType::Gue { port: GUE_PORT });
    lan.enable_ipv6();
    let servers = rig::serve_on(&lan.rs, 80, &["--bind", "::"]);
    let xvsd = Xvsd::start(&lan.director.ns, &[&lan.director.iface]);
    gue_service(&xvsd, &["-t", vip], &rips(&lan.rs, 80));
    (lan, servers, xvsd)
}

/// Add virtual service `svc` (rr) over `rips`, each reached through a
/// GUE tunnel to [`GUE_PORT`].
fn gue_service(xvsd: &Xvsd, svc: &[&str], rips: &[String]) {
    let port = GUE_PORT.to_string();
    let gue = ["-i", "--tun-type", "gue", "--tun-port", &port];
    service(xvsd, svc, &["-s", "rr"], rips, &gue);
}

#[test]
fn ipv6_in_ipv6_gue_tunnels_carry_tcp_and_udp_and_answer_packet_too_big() {
    let _g = begin();
    let vip = endpoint6(VIP6, 80);
    let (lan, _servers, xvsd) = gue6_service(&vip);
    let s = client_run(&lan, &vip, 30);
    assert_eq!((s.ok, s.failed), (30, 0), "IPv6 in IPv6 GUE: {s:?}");
    for (i, h) in lan.rs.iter().enumerate() {
        assert_eq!(s.count(&h.role), 10, "rr over 3 tunnels: {s:?}");
        // Each connection's packets came out of the decapsulator.
        assert!(lan.decapsulated(i) >= 3 * 10, "{}: decapsulated", h.role);
    }

    // UDP, the servers answering from the VIP (a local route there, so
    // binding to it needs ip_nonlocal_bind).
    let udp_vip = endpoint6(VIP6, 53);
    let bind = VIP6.to_string();
    let _udp: Vec<_> = lan
        .rs
        .iter()
        .map(|h| {
            netns::sysctl(&h.ns, &[("net.ipv6.ip_nonlocal_bind", "1")]);
            rig::serve(h, 53, &["--udp", "--bind", &bind])
        })
        .collect();
    gue_service(&xvsd, &["-u", &udp_vip], &rips(&lan.rs, 53));
    // The new destinations' next hops are looked up on first use: the
    // first datagram may be dropped (no_neigh) meanwhile, as for IPv4.
    client_in(&lan.client.ns, &udp_vip, 3, true);
    let udp = client_in(&lan.client.ns, &udp_vip, 30, true);
    assert_eq!((udp.ok, udp.failed), (30, 0), "UDP in IPv6 GUE: {udp:?}");

    // A datagram that fits the link but not the tunnel (1500 bytes + 52
    // of IPv6, UDP and GUE headers): the director answers with an ICMPv6
    // packet too big, and the client's kernel learns the path's MTU.
    let sized = |size: &str| {
        let out = lan.client.exec(&[
            NODE,
            "client",
            "--udp",
            "--connect",
            &udp_vip,
            "--count",
            "1",
            "--size",
            size,
            "--timeout-ms",
            "1000",
        ]);
        ClientSummary::from_output(&out)
    };
    let big = sized("1452");
    assert_eq!(big.ok, 0, "1500 bytes cannot cross the tunnel: {big:?}");
    let vip6 = VIP6.to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    loop {
        let r = lan.client.exec_ok(&["ip", "-6", "route", "get", &vip6]);
        if r.contains("mtu 1448") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the client did not learn MTU 1448 for the VIP: {r}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // What fits the tunnel gets there and back.
    let fits = sized("1400");
    assert_eq!((fits.ok, fits.failed), (1, 0), "1448 bytes fit: {fits:?}");
    stop_clean(xvsd);
}

#[test]
fn an_ipv4_vip_reaches_ipv6_real_servers_through_gue_over_ipv6() {
    let _g = begin();
    let vip = format!("{}:80", netns::VIP);
    let (lan, _servers, xvsd) = gue6_service(&vip);
    let ln = xvsd.adm_ok(&["-Ln"]);
    for h in &lan.rs {
        assert!(ln.contains(&endpoint6(addr6(h), 80)), "{ln}");
    }
    let s = client_run(&lan, &vip, 30);
    assert_eq!((s.ok, s.failed), (30, 0), "IPv4 in IPv6 GUE: {s:?}");
    for (i, h) in lan.rs.iter().enumerate() {
        assert_eq!(s.count(&h.role), 10, "rr over 3 tunnels: {s:?}");
        // Each connection's packets came out of the decapsulator.
        assert!(lan.decapsulated(i) >= 3 * 10, "{}: decapsulated", h.role);
    }
    // The connections are listed with their IPv6 real servers.
    let lnc = xvsd.adm_ok(&["-Lnc"]);
    let listed = lnc
        .lines()
        .filter(|l| l.contains(&format!(" {vip} ")) && l.contains(" [2001:2:"))
        .count();
    assert_eq!(listed, 30, "-Lnc:\n{lnc}");
    stop_clean(xvsd);
}

#[test]
fn an_ipv6_firewall_mark_service_keeps_a_client_on_one_server_across_marked_ports() {
    let _g = begin();
    let (lan, _servers, xvsd) = dr6(&[80, 81]);
    let hosts: Vec<String> = lan.rs.iter().map(|h| addr6(h).to_string()).collect();
    service(
        &xvsd,
        &["-f", "7", "-6"],
        &["-s", "rr", "-p", "60"],
        &hosts,
        &["-g"],
    );
    for port in [80, 81] {
        xvsd.adm_ok(&["--set-mark", "7", "-t", &endpoint6(VIP6, port)]);
    }
    let ln = xvsd.adm_ok(&["-Ln"]);
    assert!(ln.contains("FWM  7 IPv6 rr persistent 60"), "{ln}");

    // One client, both marked ports: one server, the one persistence chose.
    let first = client_run(&lan, &endpoint6(VIP6, 80), 6);
    let second = client_run(&lan, &endpoint6(VIP6, 81), 6);
    assert_eq!(
        (first.ok + second.ok, first.failed + second.failed),
        (12, 0)
    );
    let chosen: Vec<&str> = lan
        .rs
        .iter()
        .filter(|h| first.count(&h.role) + second.count(&h.role) > 0)
        .map(|h| h.role.as_str())
        .collect();
    assert_eq!(chosen.len(), 1, "{first:?} {second:?}");
    let lnc = xvsd.adm_ok(&["-Lnc"]);
    assert!(lnc.contains(&endpoint6(VIP6, 81)), "{lnc}");
    stop_clean(xvsd);
}
