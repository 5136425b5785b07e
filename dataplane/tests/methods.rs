//! Forwarding methods through the whole pipeline (in memory): NAT in both
//! directions with its ICMP errors, TUN with its fragmentation-needed
//! reply, and a mixed service whose connections keep their method.

use etherparse::{Icmpv4Type, PacketBuilder, SlicedPacket, TransportSlice};
use std::sync::Arc;
use xvs_dataplane::conn::state::Timeouts;
use xvs_dataplane::pipeline::{Pipeline, Verdict};
use xvs_dataplane::svc::{Fwd, Snapshot};
use xvs_dataplane::testkit::{
    rs_mac, service_with, tcp_frame, CIP, CLIENT_MAC, DIR_IP, DIR_MAC, VIP,
};
use xvs_dataplane::xmit::tun::TunKind;

const S: u64 = 1_000_000_000;

fn pipeline(fwds: &[(Fwd, TunKind)]) -> Pipeline {
    let (svc, _) = service_with("rr", fwds, None, 80, None);
    let snap = Arc::new(Snapshot::of_services(&[svc], Timeouts::default()));
    Pipeline::new(snap, 1000, DIR_MAC)
}

fn ipv4(frame: &[u8]) -> (std::net::Ipv4Addr, std::net::Ipv4Addr, u8) {
    let p = SlicedPacket::from_ethernet(frame).expect("valid frame");
    match p.net {
        Some(etherparse::InternetSlice::Ipv4(ip)) => {
            let h = ip.header();
            (h.source_addr(), h.destination_addr(), h.protocol().0)
        }
        _ => panic!("not IPv4"),
    }
}

#[test]
fn nat_rewrites_both_ways_and_translates_an_icmp_error_from_the_server() {
    let mut p = pipeline(&[(Fwd::Nat, TunKind::Ipip)]);
    // Client → VIP:80 becomes client → RIP:8080, checksums valid.
    let mut syn = tcp_frame(CIP, 5000, 80, true, false, b"");
    assert_eq!(p.process(S, &mut syn), Verdict::Tx(0));
    let (src, dst, _) = ipv4(&syn);
    assert_eq!((src.octets(), dst.octets()), (CIP, [198, 18, 0, 11]));
    let sl = SlicedPacket::from_ethernet(&syn).unwrap();
    match sl.transport {
        Some(TransportSlice::Tcp(t)) => {
            assert_eq!(t.destination_port(), 8080);
            assert_eq!(t.source_port(), 5000);
        }
        _ => panic!("TCP expected"),
    }
    assert_eq!(&syn[0..6], &rs_mac(1));

    // The reply RIP:8080 → client goes out as VIP:80 → client, to the MAC
    // the client's frame came from.
    let mut reply = Vec::new();
    PacketBuilder::ethernet2(rs_mac(1), DIR_MAC)
        .ipv4([198, 18, 0, 11], CIP, 64)
        .tcp(8080, 5000, 77, 65535)
        .syn()
        .ack(1001)
        .write(&mut reply, b"")
        .unwrap();
    assert_eq!(p.process(S, &mut reply), Verdict::Tx(0));
    let (src, dst, _) = ipv4(&reply);
    assert_eq!((src.octets(), dst.octets()), (VIP, CIP));
    assert_eq!(&reply[0..6], &CLIENT_MAC);
    let sl = SlicedPacket::from_ethernet(&reply).unwrap();
    match sl.transport {
        Some(TransportSlice::Tcp(t)) => assert_eq!(t.source_port(), 80),
        _ => panic!("TCP expected"),
    }

    // The server's port-unreachable about client → RIP:8080 (any error
    // quoting the connection) reaches the
    // client as an error about client → VIP:80.
    let mut quoted = Vec::new();
    PacketBuilder::ipv4(CIP, [198, 18, 0, 11], 63)
        .tcp(5000, 8080, 1000, 65535)
        .write(&mut quoted, b"")
        .unwrap();
    let mut icmp = Vec::new();
    PacketBuilder::ethernet2(rs_mac(1), DIR_MAC)
        .ipv4([198, 18, 0, 11], CIP, 64)
        .icmpv4(Icmpv4Type::DestinationUnreachable(
            etherparse::icmpv4::DestUnreachableHeader::Port,
        ))
        .write(&mut icmp, &quoted[..28])
        .unwrap();
    assert_eq!(p.process(S, &mut icmp), Verdict::Tx(0));
    let (src, dst, proto) = ipv4(&icmp);
    assert_eq!((src.octets(), dst.octets(), proto), (VIP, CIP, 1));
    // The quoted packet now reads client:5000 → VIP:80.
    let inner = &icmp[14 + 20 + 8..];
    assert_eq!(&inner[16..20], &VIP);
    assert_eq!(u16::from_be_bytes([inner[22], inner[23]]), 80);
    assert_eq!(&icmp[0..6], &CLIENT_MAC);
}

#[test]
fn tun_encapsulates_and_answers_frag_needed_when_too_big_with_df() {
    let mut p = pipeline(&[(Fwd::Tun, TunKind::Ipip)]);
    let mut f = tcp_frame(CIP, 4000, 80, true, false, b"");
    let inner_len = f.len() - 14;
    assert_eq!(p.process(S, &mut f), Verdict::Tx(0));
    let (src, dst, proto) = ipv4(&f);
    assert_eq!(
        (src.octets(), dst.octets(), proto),
        (DIR_IP, [198, 18, 0, 11], 4)
    );
    assert_eq!(f.len(), 14 + 20 + inner_len, "one outer header in front");
    assert_eq!(
        &f[14 + 20 + 12..14 + 20 + 20],
        &[198, 18, 0, 10, 198, 18, 0, 100],
        "inner intact"
    );

    // A full-size segment with DF cannot take 20 more bytes: the client
    // gets fragmentation-needed with MTU − 20.
    let mut big = tcp_frame(CIP, 4000, 80, false, true, &[0u8; 1460]);
    big[14 + 6] |= 0x40; // DF
    let sum = {
        big[14 + 10] = 0;
        big[14 + 11] = 0;
        xvs_dataplane::wire::checksum::checksum(&big[14..34])
    };
    big[14 + 10..14 + 12].copy_from_slice(&sum.to_be_bytes());
    assert_eq!(p.process(S, &mut big), Verdict::Tx(0));
    let (_, dst, proto) = ipv4(&big);
    assert_eq!((dst.octets(), proto), (CIP, 1));
    let icmp = &big[14 + 20..];
    assert_eq!((icmp[0], icmp[1]), (3, 4), "fragmentation needed");
    assert_eq!(u16::from_be_bytes([icmp[6], icmp[7]]), 1480);
    assert_eq!(p.stats().frag_needed, 1);
}

#[test]
fn a_mixed_service_binds_each_connection_to_its_servers_method() {
    let mut p = pipeline(&[
        (Fwd::Dr, TunKind::Ipip),
        (Fwd::Tun, TunKind::Ipip),
        (Fwd::Nat, TunKind::Ipip),
    ]);
    // rr walks newest first: server 3 (NAT), 2 (TUN), 1 (DR).
    let mut seen = Vec::new();
    for port in 1..=3u16 {
        let mut f = tcp_frame(CIP, port, 80, true, false, b"");
        assert_eq!(p.process(S, &mut f), Verdict::Tx(0));
        let (_, dst, proto) = ipv4(&f);
        seen.push((dst.octets(), proto));
    }
    assert_eq!(
        seen,
        vec![([198, 18, 0, 13], 6), ([198, 18, 0, 12], 4), (VIP, 6)],
        "NAT rewrites the destination, TUN encapsulates, DR leaves IP alone"
    );
    // Later packets of each connection keep the method.
    for (port, want) in [
        (1u16, ([198, 18, 0, 13], 6)),
        (2, ([198, 18, 0, 12], 4)),
        (3, (VIP, 6)),
    ] {
        let mut f = tcp_frame(CIP, port, 80, false, true, b"x");
        assert_eq!(p.process(S, &mut f), Verdict::Tx(0));
        let (_, dst, proto) = ipv4(&f);
        assert_eq!((dst.octets(), proto), want, "connection {port}");
    }
}

/// A small deterministic PRNG (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[test]
fn mutated_frames_never_panic_whatever_the_method() {
    let mut p = pipeline(&[
        (Fwd::Dr, TunKind::Ipip),
        (
            Fwd::Tun,
            TunKind::Gue {
                port: 6080,
                checksum: true,
            },
        ),
        (Fwd::Nat, TunKind::Ipip),
    ]);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut seeds: Vec<Vec<u8>> = Vec::new();
    for port in 1..=6u16 {
        seeds.push(tcp_frame(CIP, port, 80, true, false, b""));
        seeds.push(tcp_frame(CIP, port, 80, false, true, b"payload"));
    }
    let mut reply = Vec::new();
    PacketBuilder::ethernet2(rs_mac(3), DIR_MAC)
        .ipv4([198, 18, 0, 13], CIP, 64)
        .tcp(8080, 3, 1, 100)
        .write(&mut reply, b"r")
        .unwrap();
    seeds.push(reply);
    let mut quoted = Vec::new();
    PacketBuilder::ipv4(CIP, [198, 18, 0, 13], 63)
        .tcp(3, 8080, 1000, 65535)
        .write(&mut quoted, b"")
        .unwrap();
    let mut icmp = Vec::new();
    PacketBuilder::ethernet2(rs_mac(3), DIR_MAC)
        .ipv4([198, 18, 0, 13], CIP, 64)
        .icmpv4(Icmpv4Type::DestinationUnreachable(
            etherparse::icmpv4::DestUnreachableHeader::Port,
        ))
        .write(&mut icmp, &quoted[..28])
        .unwrap();
    seeds.push(icmp);
    // Establish the connections the seeds belong to.
    for s in seeds.clone() {
        let mut f = s;
        p.process(S, &mut f);
    }
    let drops_before: u64 = p.stats().drops.iter().sum();
    let mut verdicts = [0u64; 3];
    for i in 0..100_000u64 {
        let mut f = seeds[(rng.next() % seeds.len() as u64) as usize].clone();
        match rng.next() % 4 {
            0 => {
                let n = (rng.next() % f.len() as u64) as usize;
                f.truncate(n);
            }
            1 => {
                for _ in 0..1 + rng.next() % 4 {
                    let at = (rng.next() % f.len() as u64) as usize;
                    f[at] = rng.next() as u8;
                }
            }
            2 => {
                // Header bytes only (where parsing decides).
                let at = 12 + (rng.next() % 40) as usize;
                if at < f.len() {
                    f[at] = rng.next() as u8;
                }
            }
            _ => f.extend((0..rng.next() % 64).map(|_| rng.next() as u8)),
        }
        match p.process(S + i, &mut f) {
            Verdict::Tx(_) => verdicts[0] += 1,
            Verdict::Pass => verdicts[1] += 1,
            Verdict::Drop(_) => verdicts[2] += 1,
        }
    }
    assert!(
        verdicts.iter().all(|&n| n > 0),
        "every outcome reached: {verdicts:?}"
    );
    let drops: u64 = p.stats().drops.iter().sum();
    assert_eq!(drops - drops_before, verdicts[2], "every drop counted");
}
