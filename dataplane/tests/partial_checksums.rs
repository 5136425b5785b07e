//! Frames from a sender with TX checksum offload (a partial checksum: the
//! pseudo-header sum only) leave the pipeline with a complete, correct
//! checksum by every forwarding method, TCP and UDP, both ways of NAT;
//! a corrupted checksum leaves as corrupted as it came.

use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};
use std::net::Ipv4Addr;
use std::sync::Arc;
use xvs_dataplane::conn::state::Timeouts;
use xvs_dataplane::pipeline::{Pipeline, Verdict};
use xvs_dataplane::stats::Counters;
use xvs_dataplane::svc::{Fwd, ServiceRt, Snapshot, SvcKey};
use xvs_dataplane::testkit::{rs_mac, service_with, tcp_frame, udp_frame, CIP, DIR_MAC, VIP};
use xvs_dataplane::wire::checksum::{fold, pseudo_header_sum};
use xvs_dataplane::xmit::tun::TunKind;

const S: u64 = 1_000_000_000;
const RS1: [u8; 4] = [198, 18, 0, 11];

/// A TCP and a UDP service on VIP:80, both forwarded by `fwd` to rs1.
fn pipeline(fwd: Fwd) -> Pipeline {
    let (tcp, _) = service_with("rr", &[(fwd, TunKind::Ipip)], None, 80, None);
    let udp = Arc::new(ServiceRt {
        id: 1,
        key: SvcKey::Addr {
            proto: 17,
            vip: Ipv4Addr::from(VIP).into(),
            port: 80,
        },
        persist: None,
        stats: Arc::new(Counters::default()),
        sched: tcp.sched.clone(),
    });
    let snap = Arc::new(Snapshot::of_services(&[tcp, udp], Timeouts::default()));
    Pipeline::new(snap, 1000, DIR_MAC)
}

/// Offset of the L4 checksum field of an Ethernet + IPv4 (no options)
/// frame.
fn check_at(frame: &[u8]) -> usize {
    14 + 20 + if frame[23] == 6 { 16 } else { 6 }
}

/// Turn the frame's correct checksum into the partial one Linux sends
/// with TX checksum offload.
fn make_partial(frame: &mut [u8]) {
    let ip = &frame[14..];
    let len = u16::from_be_bytes([ip[2], ip[3]]) - 20;
    let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    let p = fold(pseudo_header_sum(src, dst, ip[9], len));
    let at = check_at(frame);
    frame[at..at + 2].copy_from_slice(&p.to_be_bytes());
}

/// Whether the TCP or UDP checksum of IPv4 packet `ip` is what etherparse
/// computes for it.
fn l4_ok(ip: &[u8]) -> bool {
    let p = SlicedPacket::from_ip(ip).expect("valid IPv4 packet");
    let Some(etherparse::NetSlice::Ipv4(v4)) = p.net else {
        panic!("not IPv4");
    };
    let (src, dst) = (v4.header().source(), v4.header().destination());
    match p.transport {
        Some(TransportSlice::Tcp(t)) => t.calc_checksum_ipv4(src, dst).unwrap() == t.checksum(),
        Some(TransportSlice::Udp(u)) => {
            let h = u.to_header();
            h.calc_checksum_ipv4_raw(src, dst, u.payload()).unwrap() == h.checksum
        }
        _ => panic!("TCP or UDP expected"),
    }
}

/// Small and large TCP and UDP frames client → VIP:80; the large ones
/// are `room` bytes short of a 1500-byte IP packet.
fn frames(room: usize) -> Vec<Vec<u8>> {
    vec![
        tcp_frame(CIP, 5000, 80, true, false, b""),
        tcp_frame(CIP, 5000, 80, false, true, &vec![0xa5; 1460 - room]),
        udp_frame(CIP, 5001, 80, b"query"),
        udp_frame(CIP, 5001, 80, &vec![0x3c; 1472 - room]),
    ]
}

#[test]
fn dr_and_nat_forward_completed_checksums() {
    for fwd in [Fwd::Dr, Fwd::Nat] {
        let mut p = pipeline(fwd);
        for good in frames(0) {
            let mut f = good.clone();
            make_partial(&mut f);
            assert!(!l4_ok(&f[14..]), "the partial checksum is not complete");
            assert_eq!(p.process(S, &mut f), Verdict::Tx(0), "{fwd:?}");
            assert!(l4_ok(&f[14..]), "{fwd:?}: complete after forwarding");
            if fwd == Fwd::Dr {
                assert_eq!(&f[12..], &good[12..], "DR: the client's own checksum");
            }
        }
    }
}

#[test]
fn tun_encapsulates_a_completed_inner_packet() {
    let mut p = pipeline(Fwd::Tun);
    for good in frames(20) {
        let mut f = good.clone();
        make_partial(&mut f);
        assert_eq!(p.process(S, &mut f), Verdict::Tx(0));
        assert_eq!(f[14 + 9], 4, "IPIP");
        assert_eq!(
            &f[14 + 20..],
            &good[14..],
            "the inner packet as it should be"
        );
        assert!(l4_ok(&f[14 + 20..]));
    }
}

#[test]
fn nat_replies_with_partial_checksums_are_completed() {
    let mut p = pipeline(Fwd::Nat);
    let mut syn = tcp_frame(CIP, 6000, 80, true, false, b"");
    assert_eq!(p.process(S, &mut syn), Verdict::Tx(0));
    let mut dgram = udp_frame(CIP, 6001, 80, b"q");
    assert_eq!(p.process(S, &mut dgram), Verdict::Tx(0));
    let mut tcp_reply = Vec::new();
    PacketBuilder::ethernet2(rs_mac(1), DIR_MAC)
        .ipv4(RS1, CIP, 64)
        .tcp(8080, 6000, 77, 65535)
        .syn()
        .ack(1001)
        .write(&mut tcp_reply, &[0x11; 1000])
        .unwrap();
    let mut udp_reply = Vec::new();
    PacketBuilder::ethernet2(rs_mac(1), DIR_MAC)
        .ipv4(RS1, CIP, 64)
        .udp(8080, 6001)
        .write(&mut udp_reply, b"answer")
        .unwrap();
    for mut f in [tcp_reply, udp_reply] {
        make_partial(&mut f);
        assert_eq!(p.process(S, &mut f), Verdict::Tx(0));
        assert_eq!(&f[26..30], &VIP, "translated back to the VIP");
        assert!(l4_ok(&f[14..]), "complete after the reverse NAT");
    }
}

#[test]
fn a_corrupted_checksum_stays_corrupted() {
    for fwd in [Fwd::Dr, Fwd::Nat] {
        let mut p = pipeline(fwd);
        for good in frames(0) {
            let mut f = good.clone();
            let last = f.len() - 1;
            f[last] ^= 0x40;
            assert!(!l4_ok(&f[14..]));
            assert_eq!(p.process(S, &mut f), Verdict::Tx(0));
            assert!(!l4_ok(&f[14..]), "{fwd:?}: not repaired");
        }
    }
}
