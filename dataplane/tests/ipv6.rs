//! IPv6 through the whole pipeline, table-driven: what each frame (well
//! formed, with extension headers, fragmented, malformed or truncated)
//! gets, then direct routing, schedulers and persistence on IPv6 keys.

use std::net::Ipv6Addr;
use xvs_dataplane::pipeline::{DropReason, Verdict};
use xvs_dataplane::svc::{Fwd, Persist};
use xvs_dataplane::testkit::frame::tcp;
use xvs_dataplane::testkit::v6::{
    eth6, icmp6_packet, ip6, ip6_fragments, ip6_packet, ip6_raw, rip6, service6, tcp6_frame,
    udp6_frame, Ext, CIP6, DEST_OPTS, VIP6,
};
use xvs_dataplane::testkit::{rs_mac, Fixture, CLIENT_MAC, DIR_MAC};
use xvs_dataplane::xmit::tun::TunKind;

const NOW: u64 = 1_000_000_000;
const TCP: u8 = 6;
const UDP: u8 = 17;

fn dr(n: usize) -> Vec<(Fwd, TunKind)> {
    vec![(Fwd::Dr, TunKind::Ipip); n]
}

fn fixture(sched: &str, n: usize, persist: Option<Persist>) -> Fixture {
    Fixture::new(service6(sched, &dr(n), TCP, 80, persist), 1000)
}

/// A client SYN to [VIP6]:80 from `cip`:`sport` behind `ext` headers.
fn syn_with(cip: Ipv6Addr, sport: u16, ext: &[Ext]) -> Vec<u8> {
    let mut ip = ip6(cip, VIP6);
    for e in ext {
        ip = ip.ext(e.clone());
    }
    eth6(
        CLIENT_MAC,
        DIR_MAC,
        &ip6_packet(&ip, &tcp(sport, 80).syn(), b""),
    )
}

fn process(f: &mut Fixture, frame: &[u8]) -> (Verdict, Vec<u8>) {
    let mut fr = frame.to_vec();
    (f.pipeline.process(NOW, &mut fr), fr)
}

/// Which real server (1-based) a frame sent out went to, by its MAC.
fn server_of(out: &[u8]) -> u8 {
    (1..=16)
        .find(|&i| out[..6] == rs_mac(i))
        .expect("sent to a real server's MAC")
}

#[test]
fn each_ipv6_frame_gets_its_verdict() {
    let malformed = Verdict::Drop(DropReason::Malformed);
    let good = syn_with(CIP6, 1000, &[]);
    let mut cut_tcp = good.clone();
    cut_tcp.truncate(good.len() - 8);
    let mut long_payload = good.clone();
    long_payload[18..20].copy_from_slice(&100u16.to_be_bytes());
    let mut bad_version = good.clone();
    bad_version[14] = 0x45;
    let other_vip = eth6(
        CLIENT_MAC,
        DIR_MAC,
        &ip6_packet(&ip6(CIP6, rip6(9)), &tcp(1000, 80).syn(), b""),
    );
    let other_port = eth6(
        CLIENT_MAC,
        DIR_MAC,
        &ip6_packet(&ip6(CIP6, VIP6), &tcp(1000, 81).syn(), b""),
    );
    let mut other_host = good.clone();
    other_host[..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x99]);
    let nine = vec![Ext::DestOpts(0); 9];
    let eight = vec![Ext::DestOpts(0); 8];
    let frags = ip6_fragments(&ip6(CIP6, VIP6), &tcp(1000, 80).syn(), &[7u8; 64], 32, 5);
    let cases: Vec<(&str, Vec<u8>, Verdict)> = vec![
        ("plain SYN", good.clone(), Verdict::Tx(0)),
        (
            "hop-by-hop, destination options",
            syn_with(CIP6, 1001, &[Ext::HopByHop(1), Ext::DestOpts(0)]),
            Verdict::Tx(0),
        ),
        (
            "eight extension headers",
            syn_with(CIP6, 1002, &eight),
            Verdict::Tx(0),
        ),
        (
            "nine extension headers",
            syn_with(CIP6, 1003, &nine),
            malformed,
        ),
        (
            "hop-by-hop not first",
            syn_with(CIP6, 1004, &[Ext::DestOpts(0), Ext::HopByHop(0)]),
            malformed,
        ),
        (
            "extension header longer than the packet",
            syn_with(
                CIP6,
                1005,
                &[Ext::Raw {
                    kind: DEST_OPTS,
                    bytes: vec![0, 200, 1, 4, 0, 0, 0, 0],
                }],
            ),
            malformed,
        ),
        (
            "extension header cut short",
            eth6(
                CLIENT_MAC,
                DIR_MAC,
                &ip6_raw(&ip6(CIP6, VIP6), DEST_OPTS, &[6]),
            ),
            malformed,
        ),
        ("TCP header truncated", cut_tcp, malformed),
        ("payload length past the frame", long_payload, malformed),
        (
            "fixed header truncated",
            good[..14 + 30].to_vec(),
            malformed,
        ),
        ("not version 6", bad_version, malformed),
        (
            "first fragment",
            eth6(CLIENT_MAC, DIR_MAC, &frags[0]),
            Verdict::Pass,
        ),
        (
            "later fragment",
            eth6(CLIENT_MAC, DIR_MAC, &frags[1]),
            Verdict::Pass,
        ),
        (
            "routing header",
            syn_with(CIP6, 1006, &[Ext::Routing(0)]),
            Verdict::Pass,
        ),
        (
            "ICMPv6 echo",
            eth6(
                CLIENT_MAC,
                DIR_MAC,
                &icmp6_packet(&ip6(CIP6, VIP6), 128, 0, [0; 4], b"ping"),
            ),
            Verdict::Pass,
        ),
        (
            "ICMPv6 error quoting too little",
            eth6(
                CLIENT_MAC,
                DIR_MAC,
                &icmp6_packet(&ip6(CIP6, VIP6), 1, 4, [0; 4], &good[14..14 + 40 + 4]),
            ),
            Verdict::Pass,
        ),
        (
            "ICMPv6 error about no connection",
            eth6(
                CLIENT_MAC,
                DIR_MAC,
                &icmp6_packet(&ip6(CIP6, VIP6), 1, 4, [0; 4], &good[14..]),
            ),
            Verdict::Pass,
        ),
        ("not a VIP", other_vip, Verdict::Pass),
        ("not a virtual port", other_port, Verdict::Pass),
        (
            "another host's MAC",
            other_host,
            Verdict::Drop(DropReason::OtherHost),
        ),
        (
            "UDP to a TCP service",
            udp6_frame(CIP6, 1000, 80, b"x"),
            Verdict::Pass,
        ),
    ];
    for (what, frame, want) in cases {
        let mut f = fixture("rr", 2, None);
        let (got, out) = process(&mut f, &frame);
        assert_eq!(got, want, "{what}");
        if got == Verdict::Tx(0) {
            // Direct routing: only the MACs change (hop limit too stays).
            assert_eq!(out[14..], frame[14..], "{what}");
            assert_eq!(out[6..12], DIR_MAC, "{what}");
            assert_eq!(f.pipeline.partition6().len(), 1, "{what}");
        } else {
            assert_eq!(out, frame, "{what}: left as it was");
            assert_eq!(f.pipeline.partition6().len(), 0, "{what}");
        }
        assert_eq!(f.pipeline.partition().len(), 0, "{what}: no IPv4 entry");
    }
}

#[test]
fn direct_routing_splits_ipv6_connections_round_robin_and_keeps_them() {
    let mut f = fixture("rr", 3, None);
    let mut first = Vec::new();
    for p in 0..30u16 {
        let (v, out) = process(&mut f, &tcp6_frame(CIP6, 2000 + p, 80, true, false, b""));
        assert_eq!(v, Verdict::Tx(0));
        first.push(server_of(&out));
    }
    for i in 1..=3 {
        assert_eq!(first.iter().filter(|&&s| s == i).count(), 10, "server {i}");
    }
    // Later segments of each connection go where its SYN went.
    for p in 0..30u16 {
        let (v, out) = process(
            &mut f,
            &tcp6_frame(CIP6, 2000 + p, 80, false, true, b"data"),
        );
        assert_eq!(v, Verdict::Tx(0));
        assert_eq!(server_of(&out), first[p as usize], "port {}", 2000 + p);
    }
    assert_eq!(f.pipeline.partition6().len(), 30);
    let listed: Vec<_> = f.pipeline.table6().iter().collect();
    assert_eq!(listed.len(), 30);
    assert!(listed
        .iter()
        .all(|v| v.flow().cip == CIP6 && v.flow().vip == VIP6));
    // Without a connection, a non-SYN segment is dropped as for IPv4.
    let (v, _) = process(&mut f, &tcp6_frame(CIP6, 3000, 80, false, true, b"x"));
    assert_eq!(v, Verdict::Drop(DropReason::NoConn));
}

#[test]
fn source_hashing_and_persistence_use_whole_ipv6_addresses_and_prefixes() {
    // sh: one client, one server, whatever its port; clients that differ
    // only in their high bits are hashed apart too.
    let mut f = fixture("sh", 8, None);
    let client = |hi: u16, lo: u16| Ipv6Addr::new(0x2001, 2, hi, 0, 0, 0, 0, lo);
    let mut seen = std::collections::BTreeSet::new();
    for hi in 0..16u16 {
        let mut servers = std::collections::BTreeSet::new();
        for p in 0..4u16 {
            let (v, out) = process(
                &mut f,
                &tcp6_frame(client(hi, 1), 4000 + p, 80, true, false, b""),
            );
            assert_eq!(v, Verdict::Tx(0));
            servers.insert(server_of(&out));
        }
        assert_eq!(servers.len(), 1, "one server for client {hi}");
        seen.extend(servers);
    }
    assert!(seen.len() > 2, "clients spread over servers: {seen:?}");

    // Persistence with a /64 mask: every client of one /64 follows the
    // first one's server; rr moves on for the next /64.
    let persist = Persist::new(300, 64);
    assert_eq!(persist.prefix, 64);
    let mut f = fixture("rr", 3, Some(persist));
    let mut per_net = Vec::new();
    for net in 0..3u16 {
        let mut servers = std::collections::BTreeSet::new();
        for host in 1..=5u16 {
            let (v, out) = process(
                &mut f,
                &tcp6_frame(client(net, host), 5000 + host, 80, true, false, b""),
            );
            assert_eq!(v, Verdict::Tx(0));
            servers.insert(server_of(&out));
        }
        assert_eq!(servers.len(), 1, "one server for /64 number {net}");
        per_net.extend(servers);
    }
    per_net.sort();
    assert_eq!(per_net, vec![1, 2, 3], "each /64 its own server");
    let templates = f
        .pipeline
        .table6()
        .iter()
        .filter(|v| v.key.template)
        .count();
    assert_eq!(templates, 3);
    assert_eq!(f.pipeline.partition6().len(), 3 + 15);
}

#[test]
fn ipv4_and_ipv6_connections_live_in_their_own_tables() {
    use xvs_dataplane::svc::Snapshot;
    use xvs_dataplane::testkit::{dr_service, tcp_frame, CIP};
    let (s4, _) = dr_service("rr", 2, None);
    let (s6, _) = service6("rr", &dr(2), TCP, 80, None);
    let s6 = std::sync::Arc::new(xvs_dataplane::svc::ServiceRt {
        id: 1,
        persist: None,
        key: s6.key,
        stats: s6.stats.clone(),
        sched: s6.sched.clone(),
    });
    let snap = Snapshot::of_services(&[s4, s6], Default::default());
    let mut p = xvs_dataplane::pipeline::Pipeline::new(std::sync::Arc::new(snap), 100, DIR_MAC);
    for port in 0..4u16 {
        let mut a = tcp_frame(CIP, 100 + port, 80, true, false, b"");
        let mut b = tcp6_frame(CIP6, 100 + port, 80, true, false, b"");
        assert_eq!(p.process(NOW, &mut a), Verdict::Tx(0));
        assert_eq!(p.process(NOW, &mut b), Verdict::Tx(0));
    }
    assert_eq!(p.partition().len(), 4);
    assert_eq!(p.partition6().len(), 4);
    assert_eq!(p.stats().conns_created, 8);
    // Both expire by the same sweep.
    for s in 1..=400u64 {
        p.expire(NOW + s * 1_000_000_000);
    }
    assert_eq!(p.partition().len(), 0);
    assert_eq!(p.partition6().len(), 0);
}

#[test]
fn ipv6_udp_connections_go_by_direct_routing() {
    let mut f = Fixture::new(service6("rr", &dr(2), UDP, 53, None), 100);
    let (v, _) = process(&mut f, &udp6_frame(CIP6, 999, 53, b"q"));
    assert_eq!(v, Verdict::Tx(0));
    assert_eq!(f.pipeline.partition6().len(), 1);
}

/// IPv6 in IPv6 for each encapsulation: the frame out is byte for byte the
/// tunnel built from scratch around the client's packet, from the
/// director's address to the real server's.
#[test]
fn ipv6_tunnels_encapsulate_in_ipv6_for_every_kind() {
    use xvs_dataplane::testkit::v6::{tunnel, Outer, DIR_IP6};
    for kind in [
        TunKind::Ipip,
        TunKind::Gre,
        TunKind::Gue {
            port: 6080,
            checksum: false,
        },
        TunKind::Gue {
            port: 6080,
            checksum: true,
        },
    ] {
        let mut f = Fixture::new(service6("rr", &[(Fwd::Tun, kind)], TCP, 80, None), 100);
        let syn = tcp6_frame(CIP6, 7000, 80, true, false, b"hello");
        let (v, out) = process(&mut f, &syn);
        assert_eq!(v, Verdict::Tx(0), "{kind:?}");
        let sport = match kind {
            TunKind::Gue { .. } => {
                let p = u16::from_be_bytes([out[54], out[55]]);
                assert!(p >= 49152, "{kind:?}: GUE source port {p}");
                p
            }
            _ => 0,
        };
        let outer = Outer::V6(ip6(DIR_IP6, rip6(1)));
        // Over IPv6, GUE's UDP checksum is always there.
        let built = match kind {
            TunKind::Gue { port, .. } => TunKind::Gue {
                port,
                checksum: true,
            },
            k => k,
        };
        let want = eth6(
            DIR_MAC,
            rs_mac(1),
            &tunnel(built, &outer, &syn[14..], sport),
        );
        assert_eq!(out, want, "{kind:?}");
        // The same flow keeps its outer header.
        let (_, again) = process(&mut f, &tcp6_frame(CIP6, 7000, 80, false, true, b"hello"));
        assert_eq!(again[..62], want[..62], "{kind:?}: same outer headers");
    }
}

/// A packet that would not fit the tunnel (IPv6 is never fragmented on
/// the way) is answered with an ICMPv6 packet too big from the VIP,
/// announcing the MTU left inside the tunnel; one that fits goes.
#[test]
fn a_packet_too_big_for_an_ipv6_tunnel_gets_an_icmpv6_packet_too_big() {
    use xvs_dataplane::testkit::v6::packet_too_big;
    let mut f = Fixture::new(
        service6("rr", &[(Fwd::Tun, TunKind::Ipip)], TCP, 80, None),
        100,
    );
    // 1500 - 40: the largest packet that fits.
    let fits = tcp6_frame(CIP6, 7001, 80, true, false, &[1u8; 1460 - 60]);
    let (v, out) = process(&mut f, &fits);
    assert_eq!(v, Verdict::Tx(0));
    assert_eq!(out.len(), 14 + 1500);
    let big = tcp6_frame(CIP6, 7002, 80, true, false, &[2u8; 1460 - 59]);
    let (v, out) = process(&mut f, &big);
    assert_eq!(v, Verdict::Tx(0), "answered on the port it came in on");
    let want = eth6(
        DIR_MAC,
        CLIENT_MAC,
        &packet_too_big(VIP6, CIP6, 1460, &big[14..]),
    );
    assert_eq!(out, want);
    assert_eq!(out.len(), 14 + 1280, "within the minimum MTU");
    assert_eq!(f.pipeline.stats().frag_needed, 1);
}

/// NAT of IPv6, both ways, TCP and UDP, with port mapping: every frame out
/// is byte for byte the frame built from scratch with the rewritten
/// address and port (so every checksum updated incrementally is right).
#[test]
fn ipv6_nat_rewrites_address_port_and_checksum_both_ways() {
    use xvs_dataplane::testkit::frame::{udp, L4};
    let nat = vec![(Fwd::Nat, TunKind::Ipip); 2];
    /// A service, and the segments of one exchange as the client sends and
    /// gets them and as the real server gets and sends them.
    struct Case {
        what: &'static str,
        proto: u8,
        vport: u16,
        c_in: L4,
        s_in: L4,
        s_out: L4,
        c_out: L4,
    }
    let cases = [
        Case {
            what: "TCP 80 → 8080",
            proto: TCP,
            vport: 80,
            c_in: tcp(40000, 80).syn(),
            s_in: tcp(40000, 8080).syn(),
            s_out: tcp(8080, 40000).syn().ack(1001),
            c_out: tcp(80, 40000).syn().ack(1001),
        },
        Case {
            what: "UDP 53",
            proto: UDP,
            vport: 53,
            c_in: udp(40001, 53),
            s_in: udp(40001, 53),
            s_out: udp(53, 40001),
            c_out: udp(53, 40001),
        },
    ];
    for Case {
        what,
        proto,
        vport,
        c_in,
        s_in,
        s_out,
        c_out,
    } in cases
    {
        let mut f = Fixture::new(service6("rr", &nat, proto, vport, None), 100);
        let payload = b"some payload bytes";
        let from_client = eth6(
            CLIENT_MAC,
            DIR_MAC,
            &ip6_packet(&ip6(CIP6, VIP6).ext(Ext::DestOpts(0)), &c_in, payload),
        );
        let (v, out) = process(&mut f, &from_client);
        assert_eq!(v, Verdict::Tx(0), "{what}");
        let rs = server_of(&out);
        let want = eth6(
            DIR_MAC,
            rs_mac(rs),
            &ip6_packet(&ip6(CIP6, rip6(rs)).ext(Ext::DestOpts(0)), &s_in, payload),
        );
        assert_eq!(out, want, "{what}: to the real server");
        // The real server's reply goes back as from [VIP]:vport.
        let reply = eth6(
            rs_mac(rs),
            DIR_MAC,
            &ip6_packet(&ip6(rip6(rs), CIP6), &s_out, payload),
        );
        let (v, out) = process(&mut f, &reply);
        assert_eq!(v, Verdict::Tx(0), "{what}: reply");
        let want = eth6(
            DIR_MAC,
            CLIENT_MAC,
            &ip6_packet(&ip6(VIP6, CIP6), &c_out, payload),
        );
        assert_eq!(out, want, "{what}: back to the client");
        // A reply that names no connection is not translated.
        let stray = eth6(
            rs_mac(rs),
            DIR_MAC,
            &ip6_packet(&ip6(rip6(rs), rip6(9)), &s_out, payload),
        );
        let (v, out) = process(&mut f, &stray);
        assert_ne!(v, Verdict::Tx(0), "{what}: stray reply");
        assert_eq!(out, stray);
    }
}

/// ICMPv6 errors about a VIP's flows: forwarded to the connection's real
/// server by direct routing as they are; translated both ways for NAT
/// (outer address, quoted address, port and checksum, ICMPv6 checksum),
/// each frame out byte for byte the error built from scratch; an error
/// about no connection is the kernel's.
#[test]
fn icmpv6_errors_reach_the_right_real_server_and_are_translated_for_nat() {
    use xvs_dataplane::testkit::v6::icmp6_error;
    let router: Ipv6Addr = "2001:2:0:9::1".parse().unwrap();
    // DR: a router says the client's path is too small for a reply.
    let mut f = fixture("rr", 3, None);
    let (_, out) = process(&mut f, &tcp6_frame(CIP6, 2000, 80, true, false, b""));
    let rs = server_of(&out);
    let reply = ip6_packet(&ip6(VIP6, CIP6), &tcp(80, 2000).syn().ack(1001), &[3; 64]);
    let err = eth6(
        CLIENT_MAC,
        DIR_MAC,
        &icmp6_error(router, VIP6, 2, 0, 1400, &reply),
    );
    let (v, out) = process(&mut f, &err);
    assert_eq!(v, Verdict::Tx(0));
    assert_eq!(out[..6], rs_mac(rs), "to the connection's server");
    assert_eq!(out[12..], err[12..], "unchanged above Ethernet");
    // About a flow without a connection: the kernel's.
    let other = ip6_packet(&ip6(VIP6, CIP6), &tcp(80, 2001).ack(1), b"");
    let stray = eth6(
        CLIENT_MAC,
        DIR_MAC,
        &icmp6_error(router, VIP6, 2, 0, 1400, &other),
    );
    assert_eq!(process(&mut f, &stray).0, Verdict::Pass);

    // NAT, from the client's side: about a reply it got from [VIP]:80.
    let nat = vec![(Fwd::Nat, TunKind::Ipip); 2];
    let mut f = Fixture::new(service6("rr", &nat, TCP, 80, None), 100);
    let (_, out) = process(&mut f, &tcp6_frame(CIP6, 40000, 80, true, false, b""));
    let rs = server_of(&out);
    let seen = |src, sport| {
        ip6_packet(
            &ip6(src, CIP6),
            &tcp(sport, 40000).syn().ack(1001),
            &[5; 32],
        )
    };
    let unreach = |from, to, about: &[u8]| icmp6_error(from, to, 1, 4, 0, about);
    let err = eth6(CLIENT_MAC, DIR_MAC, &unreach(CIP6, VIP6, &seen(VIP6, 80)));
    let (v, out) = process(&mut f, &err);
    assert_eq!(v, Verdict::Tx(0));
    let want = eth6(
        DIR_MAC,
        rs_mac(rs),
        &unreach(CIP6, rip6(rs), &seen(rip6(rs), 8080)),
    );
    assert_eq!(out, want, "client-side error, translated");

    // From the real server's side: about a packet forwarded to it.
    let sent = |dst, dport| ip6_packet(&ip6(CIP6, dst), &tcp(40000, dport).ack(1), &[6; 32]);
    let err = eth6(
        rs_mac(rs),
        DIR_MAC,
        &unreach(rip6(rs), CIP6, &sent(rip6(rs), 8080)),
    );
    let (v, out) = process(&mut f, &err);
    assert_eq!(v, Verdict::Tx(0));
    let want = eth6(DIR_MAC, CLIENT_MAC, &unreach(VIP6, CIP6, &sent(VIP6, 80)));
    assert_eq!(out, want, "server-side error, translated back");
}

/// A one-server tunnel service: `vip` (either family) port 80, the server
/// at `rip` (either family) with MAC `rs_mac(1)`, reached through `kind`,
/// the director's addresses towards it [`DIR_IP`] and `DIR_IP6`.
fn tunnel_service(
    vip: std::net::IpAddr,
    rip: std::net::IpAddr,
    kind: TunKind,
) -> (
    std::sync::Arc<xvs_dataplane::svc::ServiceRt>,
    Vec<std::sync::Arc<xvs_dataplane::svc::DestRt>>,
) {
    use std::sync::{Arc, Mutex};
    use xvs_dataplane::svc::{DestRt, NeighCell, SchedState, ServiceRt, SvcKey};
    use xvs_dataplane::testkit::v6::DIR_IP6;
    use xvs_dataplane::testkit::DIR_IP;
    let neigh = Arc::new(NeighCell::default());
    neigh.set(Some(rs_mac(1)));
    neigh.set_route(0, Some(std::net::Ipv4Addr::from(DIR_IP)));
    neigh.set_src6(Some(DIR_IP6));
    let dest = Arc::new(DestRt {
        id: 1,
        in_service: true,
        sched: xvs_scheduler::Dest::new(rip, 80, 1),
        fwd: Fwd::Tun,
        tun: kind,
        stats: Arc::default(),
        neigh,
        outer4: DestRt::outer4_of(kind, rip),
        nat4: None,
    });
    let sched = xvs_scheduler::new("rr", 0).expect("rr");
    let svc = Arc::new(ServiceRt {
        id: 0,
        persist: None,
        key: SvcKey::Addr {
            proto: TCP,
            vip,
            port: 80,
        },
        stats: Arc::default(),
        sched: Arc::new(Mutex::new(SchedState::new(sched, vec![dest.clone()]))),
    });
    (svc, vec![dest])
}

/// The tunnel's outer header follows the real server's family: IPv6 in
/// IPv4 and IPv4 in IPv6, for every encapsulation, byte for byte the
/// tunnel built from scratch (the IPv4 outer header takes the worker's
/// next identification, DF set, the inner traffic class and hop limit).
#[test]
fn tunnels_across_families_take_the_real_servers_family() {
    use std::net::{IpAddr, Ipv4Addr};
    use xvs_dataplane::testkit::frame::ip;
    use xvs_dataplane::testkit::v6::{tunnel, Outer, DIR_IP6};
    use xvs_dataplane::testkit::{rip, tcp_frame, CIP, DIR_IP, VIP};
    let kinds = [
        TunKind::Ipip,
        TunKind::Gre,
        TunKind::Gue {
            port: 6080,
            checksum: true,
        },
    ];
    for kind in kinds {
        // IPv6 in IPv4.
        let svc = tunnel_service(IpAddr::V6(VIP6), IpAddr::V4(Ipv4Addr::from(rip(1))), kind);
        let mut f = Fixture::new(svc, 100);
        let syn = tcp6_frame(CIP6, 7100, 80, true, false, b"six in four");
        let (v, out) = process(&mut f, &syn);
        assert_eq!(v, Verdict::Tx(0), "6in4 {kind:?}");
        let sport = u16::from_be_bytes([out[34], out[35]]);
        let outer = Outer::V4(ip(DIR_IP, rip(1)).with(|i| i.ident = 1));
        let want = xvs_dataplane::testkit::frame::eth(
            DIR_MAC,
            rs_mac(1),
            &tunnel(kind, &outer, &syn[14..], sport),
        );
        assert_eq!(out, want, "6in4 {kind:?}");

        // IPv4 in IPv6.
        let svc = tunnel_service(IpAddr::V4(Ipv4Addr::from(VIP)), IpAddr::V6(rip6(1)), kind);
        let mut f = Fixture::new(svc, 100);
        let syn = tcp_frame(CIP, 7200, 80, true, false, b"four in six");
        let (v, out) = process(&mut f, &syn);
        assert_eq!(v, Verdict::Tx(0), "4in6 {kind:?}");
        let sport = u16::from_be_bytes([out[54], out[55]]);
        let outer = Outer::V6(ip6(DIR_IP6, rip6(1)));
        let want = eth6(DIR_MAC, rs_mac(1), &tunnel(kind, &outer, &syn[14..], sport));
        assert_eq!(out, want, "4in6 {kind:?}");
    }

    // Too big: IPv6 inside IPv4 gets a packet too big (1500 - 20), IPv4
    // with DF inside IPv6 a fragmentation needed (1500 - 40).
    let svc = tunnel_service(
        IpAddr::V6(VIP6),
        IpAddr::V4(Ipv4Addr::from(rip(1))),
        TunKind::Ipip,
    );
    let mut f = Fixture::new(svc, 100);
    let big = tcp6_frame(CIP6, 7300, 80, true, false, &[1u8; 1481 - 60]);
    let (v, out) = process(&mut f, &big);
    assert_eq!(v, Verdict::Tx(0));
    assert_eq!(out[14 + 40], 2, "ICMPv6 packet too big");
    assert_eq!(out[14 + 40 + 4..14 + 40 + 8], 1480u32.to_be_bytes());
    let svc = tunnel_service(
        IpAddr::V4(Ipv4Addr::from(VIP)),
        IpAddr::V6(rip6(1)),
        TunKind::Ipip,
    );
    let mut f = Fixture::new(svc, 100);
    let big = tcp_frame(CIP, 7400, 80, true, false, &[1u8; 1460 - 39]);
    let (v, out) = process(&mut f, &big);
    assert_eq!(v, Verdict::Tx(0));
    assert_eq!(
        (out[14 + 20], out[14 + 21]),
        (3, 4),
        "ICMP fragmentation needed"
    );
    assert_eq!(out[14 + 26..14 + 28], 1460u16.to_be_bytes());
    assert_eq!(f.pipeline.stats().frag_needed, 1);
}

/// A connection tunnelled to a real server of the other family is not
/// synced (a record's three addresses share one family, as in IPVS); a
/// record naming such a server, made by hand, is still installed, bound to
/// the local tunnel server by its address.
#[test]
fn connections_tunnelled_across_families_are_not_synced() {
    use std::net::{IpAddr, Ipv4Addr};
    use std::sync::Arc;
    use xvs_dataplane::sync::{flags, SyncConn, SyncPort};
    use xvs_dataplane::testkit::{tcp_frame, CIP, VIP};
    let kind = TunKind::Gue {
        port: 6080,
        checksum: true,
    };
    let rip = IpAddr::V6(rip6(1));
    let mut f = Fixture::new(
        tunnel_service(IpAddr::V4(Ipv4Addr::from(VIP)), rip, kind),
        100,
    );
    let port = Arc::new(SyncPort::new(1));
    f.pipeline.set_sync(port.clone(), 0);
    port.set_master(true);
    port.set_backup(true);
    for (syn, ack) in [(true, false), (false, true), (false, true), (false, true)] {
        let mut fr = tcp_frame(CIP, 7200, 80, syn, ack, b"four in six");
        assert_eq!(f.pipeline.process(NOW, &mut fr), Verdict::Tx(0));
    }
    assert_eq!(port.drain_out(&mut |c| panic!("sent {c:?}")), 0);
    assert_eq!(port.counters().emitted, 0);

    let rec = SyncConn {
        protocol: TCP,
        flags: flags::TUNNEL,
        state: 1,
        cport: 7201,
        vport: 80,
        dport: 80,
        fwmark: 0,
        timeout: 600,
        caddr: IpAddr::V4(Ipv4Addr::from(CIP)),
        vaddr: IpAddr::V4(Ipv4Addr::from(VIP)),
        daddr: rip,
    };
    assert!(port.push_in(rec));
    f.pipeline.sync_in(NOW);
    let c = port.counters();
    assert_eq!(
        (c.installed, c.unbound, c.rejected_family),
        (1, 0, 0),
        "{c:?}"
    );
    let mut fr = tcp_frame(CIP, 7201, 80, false, true, b"mid-stream");
    assert_eq!(f.pipeline.process(NOW, &mut fr), Verdict::Tx(0));
    assert_eq!(u16::from_be_bytes([fr[12], fr[13]]), 0x86dd, "IPv4 in IPv6");
    // The same record by direct routing cannot reach an IPv6 server.
    let dr = SyncConn {
        flags: flags::DROUTE,
        cport: 7202,
        daddr: IpAddr::V6(rip6(9)),
        ..rec
    };
    assert!(port.push_in(dr));
    f.pipeline.sync_in(NOW);
    assert_eq!(port.counters().rejected_family, 1);
}

#[test]
fn an_ipv6_firewall_mark_service_groups_marked_ports_and_keeps_a_client_on_one_server() {
    use std::sync::Arc;
    use xvs_dataplane::conn::state::Timeouts;
    use xvs_dataplane::pipeline::Pipeline;
    use xvs_dataplane::svc::{ServiceRt, Snapshot, SvcKey, V6Key};
    // `-A -f 7 -6 -s rr -p 300` over three DR servers, and
    // `--set-mark 7 -t [VIP6]:80`, `--set-mark 7 -t [VIP6]:443`.
    let (svc, _dests) = service6("rr", &dr(3), TCP, 80, Some(Persist::new(300, 128)));
    let svc = Arc::new(ServiceRt {
        id: svc.id,
        key: SvcKey::Fwmark { mark: 7, v6: true },
        persist: svc.persist,
        stats: svc.stats.clone(),
        sched: svc.sched.clone(),
    });
    let mut snap = Snapshot::of_services(std::slice::from_ref(&svc), Timeouts::default());
    let marked = |port| V6Key {
        proto: TCP,
        vip: VIP6,
        port,
    };
    snap.set_marks6([(marked(80), 7), (marked(443), 7)]);
    assert!(snap.lookup6(TCP, VIP6, 80).is_some());
    assert!(snap.lookup6(TCP, VIP6, 443).is_some());
    assert!(snap.lookup6(TCP, VIP6, 22).is_none(), "an unmarked port");
    assert!(snap.fwmark_of(7, true).is_some() && snap.fwmark_of(7, false).is_none());
    assert_eq!(snap.v6_keys().count(), 2);
    let mut p = Pipeline::new(Arc::new(snap), 1000, DIR_MAC);

    // Each client sticks to one server on both marked ports; rr gives the
    // next client the next server.
    let mut per_client = Vec::new();
    for c in 1..=3u16 {
        let cip = Ipv6Addr::new(0x2001, 2, 0, 9, 0, 0, 0, c);
        let mut servers = std::collections::BTreeSet::new();
        for (i, port) in [80u16, 443, 80, 443].into_iter().enumerate() {
            let mut fr = tcp6_frame(cip, 6000 + i as u16, port, true, false, b"");
            assert_eq!(
                p.process(NOW, &mut fr),
                Verdict::Tx(0),
                "client {c} port {port}"
            );
            servers.insert(server_of(&fr));
        }
        assert_eq!(
            servers.len(),
            1,
            "client {c}: one server for every marked port"
        );
        per_client.extend(servers);
    }
    per_client.sort();
    assert_eq!(per_client, vec![1, 2, 3]);
    let mut fr = tcp6_frame(CIP6, 7000, 22, true, false, b"");
    assert_ne!(
        p.process(NOW, &mut fr),
        Verdict::Tx(0),
        "port 22 is not marked"
    );
}
