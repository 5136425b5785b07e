//! The NAT and TUN topologies without xvsd: they come up with the intended
//! addressing and routes, go away on drop, and real TCP/UDP/ICMP traffic
//! passes through the data plane's own NAT and tunnel rewrites, run by
//! `xvs-decap` (user-space NAT on the director; user-space encapsulation on
//! the director and decapsulation on the real servers, since this kernel has
//! no `ipip` module).

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use xvs_tests::lans::NAT_DIP_SERVER;
use xvs_tests::lans::{NatLan, TunLan, TunType, DECAP_DEV, GUE_PORT, NAT_DIP_CLIENT};
use xvs_tests::netns::{self, Host, Proc};
use xvs_tests::node::{ClientSummary, Clients};

const NODE: &str = env!("CARGO_BIN_EXE_xvs-node");
const DECAP: &str = env!("CARGO_BIN_EXE_xvs-decap");
/// The TUN device of the director-side encapsulator.
const ENCAP_DEV: &str = "xencap0";

/// Tests that push traffic take turns (few cores).
static NET: Mutex<()> = Mutex::new(());

fn net_lock() -> MutexGuard<'static, ()> {
    NET.lock().unwrap_or_else(|e| e.into_inner())
}

fn ping(h: &Host, dst: &str) -> bool {
    h.exec(&["ping", "-c", "1", "-W", "2", dst])
        .status
        .success()
}

fn client_run(h: &Host, target: &str, count: u64, udp: bool) -> (ClientSummary, String) {
    let out = Clients::new(2000, 30_000, 3)
        .udp(udp)
        .output(&h.ns, target, count);
    (
        ClientSummary::from_output(&out),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn one_rx_queue(h: &Host) -> bool {
    let out = h.exec_ok(&["ls", &format!("/sys/class/net/{}/queues", h.iface)]);
    let mut q: Vec<&str> = out.split_whitespace().collect();
    q.sort_unstable();
    q == ["rx-0", "tx-0"]
}

fn tx_csum_on(h: &Host) -> bool {
    h.exec_ok(&["ethtool", "-k", &h.iface])
        .lines()
        .any(|l| l.trim() == "tx-checksumming: on")
}

#[test]
fn nat_lan_has_two_segments_and_routes_replies_through_the_director() {
    let _g = net_lock();
    let names;
    {
        let lan = NatLan::new();
        names = lan.namespace_names();
        for h in lan.hosts() {
            assert!(one_rx_queue(h), "{} has more than one queue", h.iface);
            assert!(tx_csum_on(h), "{} has TX checksum offload off", h.iface);
        }
        // Each segment works; the VIP answers on the client segment.
        assert!(ping(&lan.client, &NAT_DIP_CLIENT.to_string()));
        assert!(ping(&lan.client, &lan.vip.to_string()));
        for h in &lan.rs {
            assert!(ping(h, &NAT_DIP_SERVER.to_string()), "{}", h.role);
            let r = h.exec_ok(&["ip", "route", "show", "default"]);
            assert!(r.contains("via 198.18.2.1"), "{}: {r}", h.role);
        }
        // The client knows nothing of the server segment.
        assert!(!ping(&lan.client, &lan.rs[0].ip.to_string()));
        // With kernel forwarding (and a route on the client), a real server
        // reaches the client through the director: its default route is
        // right for NAT replies.
        lan.set_director_forwarding(true);
        lan.client.exec_ok(&[
            "ip",
            "route",
            "add",
            "198.18.2.0/24",
            "via",
            &NAT_DIP_CLIENT.to_string(),
        ]);
        assert!(ping(&lan.rs[0], &lan.client.ip.to_string()));
        lan.set_director_forwarding(false);
        assert!(!ping(&lan.rs[0], &lan.client.ip.to_string()));
    }
    let left = netns::list_netns();
    for n in names {
        assert!(!left.contains(&n), "namespace {n} left behind");
    }
}

/// The director hands the VIP to user space: the kernel must neither answer
/// for it (a RST to the client's SYN) nor route; the client reaches it
/// through a static neighbour entry.
fn vip_to_user_space(director: &Host, client: &Host, vip: &str) {
    director.exec_ok(&[
        "ip",
        "addr",
        "del",
        &format!("{vip}/32"),
        "dev",
        &director.iface,
    ]);
    client.exec_ok(&[
        "ip",
        "neigh",
        "replace",
        vip,
        "lladdr",
        &director.mac,
        "dev",
        &client.iface,
        "nud",
        "permanent",
    ]);
}

#[test]
fn nat_rewrites_carry_real_tcp_udp_and_icmp() {
    let _g = net_lock();
    let lan = NatLan::new();
    let vip = lan.vip.to_string();
    vip_to_user_space(&lan.director, &lan.client, &vip);
    let rs1 = &lan.rs[0];
    let _tcp = rs1.spawn_ready(&[NODE, "serve", "--name", "rs1", "--port", "8080"]);
    let _udp = rs1.spawn_ready(&[NODE, "serve", "--name", "rs1", "--port", "5353", "--udp"]);
    let nat = |vport: &str, rport: &str| -> Proc {
        netns::spawn_ready(
            &lan.director.ns,
            &[
                DECAP,
                "nat",
                "--client-if",
                &lan.director.iface,
                "--server-if",
                &lan.director_rs.iface,
                "--client-mac",
                &lan.client.mac,
                "--rs-mac",
                &rs1.mac,
                "--vip",
                &vip,
                "--vport",
                vport,
                "--rip",
                &rs1.ip.to_string(),
                "--rport",
                rport,
                "--lifetime-s",
                "120",
            ],
        )
    };
    let _n1 = nat("80", "8080");
    let _n2 = nat("53", "5353");
    let _n3 = nat("54", "5454"); // nothing listens on 5454

    let (s, err) = client_run(&lan.client, &format!("{vip}:80"), 30, false);
    assert_eq!((s.ok, s.failed), (30, 0), "TCP through NAT: {s:?}\n{err}");
    assert_eq!(s.count("rs1"), 30);
    let (s, err) = client_run(&lan.client, &format!("{vip}:53"), 30, true);
    assert_eq!((s.ok, s.failed), (30, 0), "UDP through NAT: {s:?}\n{err}");
    // rs1's port unreachable (about client → RIP:5454) reaches the client
    // as one about client → VIP:54: its connected socket sees a refusal.
    let (s, err) = client_run(&lan.client, &format!("{vip}:54"), 1, true);
    assert_eq!(s.ok, 0);
    assert!(
        err.contains("refused"),
        "the translated ICMP error did not reach the client's socket:\n{err}"
    );
}

/// Starts the director-side encapsulator towards rs1 and routes the VIP
/// into it.
fn start_encap(lan: &TunLan, tun: TunType, mtu: u16) -> Proc {
    let rs1 = &lan.rs[0];
    let mut cmd: Vec<String> = [
        DECAP,
        "encap",
        "--dev",
        ENCAP_DEV,
        "--iface",
        &lan.director.iface,
        "--src",
        &lan.director.ip.to_string(),
        "--rip",
        &rs1.ip.to_string(),
        "--rs-mac",
        &rs1.mac,
        "--peer-mac",
        &lan.client.mac,
        "--mtu",
        &mtu.to_string(),
        "--lifetime-s",
        "120",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    cmd.extend(tun.decap_args());
    if let TunType::Gue { .. } = tun {
        cmd.push("--gue-csum".into());
    }
    let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
    let p = netns::spawn_ready(&lan.director.ns, &cmd);
    let vip = lan.vip.to_string();
    vip_to_user_space(&lan.director, &lan.client, &vip);
    netns::sysctl(&lan.director.ns, &[("net.ipv4.ip_forward", "1")]);
    lan.director
        .exec_ok(&["ip", "route", "add", &format!("{vip}/32"), "dev", ENCAP_DEV]);
    p
}

fn tunnel_carries_tcp_and_udp(tun: TunType) {
    let _g = net_lock();
    let mut lan = TunLan::new(tun);
    let rs1 = &lan.rs[0];
    let _tcp = rs1.spawn_ready(&[NODE, "serve", "--name", "rs1", "--port", "80"]);
    let _udp = rs1.spawn_ready(&[
        NODE,
        "serve",
        "--name",
        "rs1",
        "--port",
        "53",
        "--udp",
        "--bind",
        "198.18.0.100",
    ]);
    let _encap = start_encap(&lan, tun, 1500);
    let vip = lan.vip.to_string();
    let (s, err) = client_run(&lan.client, &format!("{vip}:80"), 30, false);
    assert_eq!(
        (s.ok, s.failed),
        (30, 0),
        "TCP through {tun:?}: {s:?}\n{err}"
    );
    assert_eq!(s.count("rs1"), 30);
    let (s, err) = client_run(&lan.client, &format!("{vip}:53"), 10, true);
    assert_eq!(
        (s.ok, s.failed),
        (10, 0),
        "UDP through {tun:?}: {s:?}\n{err}"
    );
    // Every request went through rs1's decapsulator (30 connections of at
    // least 4 client packets each, 10 datagrams).
    assert!(lan.decapsulated(0) >= 130, "{}", lan.decapsulated(0));
    assert_eq!(lan.decapsulated(1), 0);
    assert!(lan.decaps_running());
}

#[test]
fn tun_ipip_carries_real_tcp_and_udp() {
    tunnel_carries_tcp_and_udp(TunType::Ipip);
}

#[test]
fn tun_gue_carries_real_tcp_and_udp() {
    tunnel_carries_tcp_and_udp(TunType::Gue { port: GUE_PORT });
}

#[test]
fn tun_gre_carries_real_tcp_and_udp() {
    tunnel_carries_tcp_and_udp(TunType::Gre);
}

#[test]
fn tun_frag_needed_lowers_the_clients_path_mtu() {
    let _g = net_lock();
    let lan = TunLan::new(TunType::Ipip);
    let _encap = start_encap(&lan, TunType::Ipip, 1400);
    let vip = lan.vip.to_string();
    // 1372 + 8 + 20 = 1400 bytes: too big for a 1400-byte tunnel.
    let out = lan
        .client
        .exec(&["ping", "-M", "do", "-s", "1372", "-c", "1", "-W", "2", &vip]);
    assert!(!out.status.success());
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let r = lan.client.exec_ok(&["ip", "route", "get", &vip]);
        if r.contains("mtu 1380") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the client did not learn MTU 1380 for the VIP: {r}\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // What fits in the tunnel gets there and back (rs1 answers from the VIP).
    assert!(lan
        .client
        .exec(&["ping", "-M", "do", "-s", "1352", "-c", "1", "-W", "2", &vip])
        .status
        .success());
    let rx = lan.rs[0].exec_ok(&[
        "cat",
        &format!("/sys/class/net/{DECAP_DEV}/statistics/rx_packets"),
    ]);
    assert_eq!(rx.trim(), "1", "only the packet that fits was tunnelled");
}
