//! Table-driven frame tests through the in-memory port: each case is a
//! description, an input frame, the expected verdict and, for transmitted
//! frames, the expected output frame.

use std::sync::Arc;
use xvs_dataplane::conn::state::Timeouts;
use xvs_dataplane::io::mem::MemPort;
use xvs_dataplane::io::Port;
use xvs_dataplane::pipeline::{DropReason, Pipeline, Verdict};
use xvs_dataplane::svc::{DestRt, ServiceRt, Snapshot};
use xvs_dataplane::testkit::{dr_service, rs_mac, tcp_frame, udp_frame, CIP, DIR_MAC};

struct Fixture {
    pipeline: Pipeline,
    dests: Vec<Arc<DestRt>>,
    svc: Arc<ServiceRt>,
}

fn fixture(sched: &str, n: u8, unresolved: Option<u8>) -> Fixture {
    let (svc, dests) = dr_service(sched, n, unresolved);
    let snap = Arc::new(Snapshot::of_services(
        std::slice::from_ref(&svc),
        Timeouts::default(),
    ));
    Fixture {
        pipeline: Pipeline::new(snap, 1024, DIR_MAC),
        dests,
        svc,
    }
}

fn tcp(sport: u16, dport: u16, syn: bool, ack: bool, payload: &[u8]) -> Vec<u8> {
    tcp_frame(CIP, sport, dport, syn, ack, payload)
}

fn udp(sport: u16, dport: u16) -> Vec<u8> {
    udp_frame(CIP, sport, dport, b"hi")
}

fn run(f: &mut Fixture, frames: Vec<Vec<u8>>) -> MemPort {
    let mut port = MemPort::new();
    for fr in frames {
        port.push(fr);
    }
    while !port.rx.is_empty() {
        port.poll(0, |_, fr| f.pipeline.process(1_000_000_000, fr))
            .expect("mem poll");
    }
    port
}

#[test]
fn malformed_frames_are_counted_drops_or_passes_never_panics() {
    let good = tcp(40000, 80, true, false, b"");
    let mut cases: Vec<(&str, Vec<u8>, Verdict)> = vec![
        ("empty frame", vec![], Verdict::Drop(DropReason::Malformed)),
        (
            "truncated inside ethernet",
            good[..10].to_vec(),
            Verdict::Drop(DropReason::Malformed),
        ),
        (
            "ethernet only",
            good[..14].to_vec(),
            Verdict::Drop(DropReason::Malformed),
        ),
        (
            "truncated inside ipv4",
            good[..30].to_vec(),
            Verdict::Drop(DropReason::Malformed),
        ),
        (
            "ipv4 without tcp",
            good[..34].to_vec(),
            Verdict::Drop(DropReason::Malformed),
        ),
        (
            "truncated inside tcp",
            good[..44].to_vec(),
            Verdict::Drop(DropReason::Malformed),
        ),
    ];
    let mut ihl4 = good.clone();
    ihl4[14] = 0x44;
    cases.push(("IHL < 5", ihl4, Verdict::Drop(DropReason::Malformed)));
    let mut ihl_big = good.clone();
    ihl_big[14] = 0x4f;
    cases.push((
        "IHL past the frame",
        ihl_big,
        Verdict::Drop(DropReason::Malformed),
    ));
    let mut long = good.clone();
    long[16..18].copy_from_slice(&1500u16.to_be_bytes());
    cases.push((
        "total length larger than the frame",
        long,
        Verdict::Drop(DropReason::Malformed),
    ));
    let mut short_total = good.clone();
    short_total[16..18].copy_from_slice(&10u16.to_be_bytes());
    cases.push((
        "total length below the header",
        short_total,
        Verdict::Drop(DropReason::Malformed),
    ));
    let mut v6 = good.clone();
    v6[14] = 0x65;
    cases.push((
        "IP version 6 in an IPv4 ethertype",
        v6,
        Verdict::Drop(DropReason::Malformed),
    ));
    let mut arp = good.clone();
    arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    cases.push(("ARP ethertype", arp, Verdict::Pass));
    let mut unknown = good.clone();
    unknown[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
    cases.push(("unknown ethertype", unknown, Verdict::Pass));
    let mut doff = good.clone();
    doff[14 + 20 + 12] = 0x30;
    cases.push((
        "TCP data offset < 5",
        doff,
        Verdict::Drop(DropReason::Malformed),
    ));
    let mut frag = good.clone();
    frag[20..22].copy_from_slice(&0x2000u16.to_be_bytes());
    cases.push(("IP fragment", frag, Verdict::Pass));
    let mut icmp = good.clone();
    icmp[23] = 1;
    cases.push(("ICMP to the VIP", icmp, Verdict::Pass));
    let mut udp_short = udp(5000, 53);
    udp_short.truncate(14 + 20 + 4);
    udp_short[16..18].copy_from_slice(&24u16.to_be_bytes());
    cases.push((
        "truncated UDP header",
        udp_short,
        Verdict::Drop(DropReason::Malformed),
    ));
    cases.push((
        "TCP to a port with no service",
        tcp(40000, 81, true, false, b""),
        Verdict::Pass,
    ));
    cases.push(("UDP to a TCP-only VIP", udp(5000, 80), Verdict::Pass));
    cases.push((
        "ACK with no connection",
        tcp(40001, 80, false, true, b""),
        Verdict::Drop(DropReason::NoConn),
    ));

    let mut f = fixture("rr", 3, None);
    let n = cases.len();
    let frames: Vec<Vec<u8>> = cases.iter().map(|c| c.1.clone()).collect();
    let port = run(&mut f, frames);
    assert_eq!(port.verdicts.len(), n);
    for (i, (desc, _, want)) in cases.iter().enumerate() {
        assert_eq!(port.verdicts[i], *want, "case {desc:?}");
    }
    let st = f.pipeline.stats();
    let drops: u64 = st.drops.iter().sum();
    let want_drops = cases
        .iter()
        .filter(|c| matches!(c.2, Verdict::Drop(_)))
        .count() as u64;
    let want_pass = cases.iter().filter(|c| c.2 == Verdict::Pass).count() as u64;
    assert_eq!(drops, want_drops, "every drop is counted");
    assert_eq!(st.pass, want_pass, "every pass is counted");
    assert_eq!(st.tx, 0);
    assert_eq!(
        f.pipeline.table().iter().count(),
        0,
        "no connection from bad frames"
    );
}

#[test]
fn every_truncation_of_a_valid_frame_is_handled() {
    let good = tcp(40000, 80, true, false, b"hello");
    let mut f = fixture("rr", 2, None);
    for cut in 0..good.len() {
        let mut fr = good[..cut].to_vec();
        let v = f.pipeline.process(1, &mut fr);
        assert!(
            matches!(v, Verdict::Drop(_) | Verdict::Pass),
            "cut at {cut}: {v:?}"
        );
    }
}

#[test]
fn dr_rewrites_only_the_macs_and_keeps_a_flow_on_one_server() {
    let mut f = fixture("rr", 3, None);
    let syn = tcp(40000, 80, true, false, b"");
    let ack = tcp(40000, 80, false, true, b"");
    let data = tcp(40000, 80, false, true, b"GET / HTTP/1.0\r\n\r\n");
    let port = run(&mut f, vec![syn.clone(), ack.clone(), data.clone()]);
    assert_eq!(port.verdicts, vec![Verdict::Tx(0); 3]);
    // rr walks the list from the front (newest first): server 3 first.
    for (out, input) in port.tx.iter().zip([&syn, &ack, &data]) {
        let mut want = input.clone();
        want[0..6].copy_from_slice(&rs_mac(3));
        want[6..12].copy_from_slice(&DIR_MAC);
        assert_eq!(out, &want, "only the Ethernet addresses change");
    }
    let d3 = &f.dests[0];
    assert_eq!(d3.stats.get().conns, 1);
    assert_eq!(d3.stats.get().inpkts, 3);
    assert_eq!(d3.sched.load.active(), 1, "ACK established the connection");
    assert_eq!(f.svc.stats.get().inpkts, 3);
    assert_eq!(
        f.svc.stats.get().inbytes,
        (syn.len() + ack.len() + data.len() - 3 * 14) as u64
    );
}

#[test]
fn rr_spreads_new_connections_in_list_order() {
    let mut f = fixture("rr", 3, None);
    let frames = (0..9)
        .map(|i| tcp(41000 + i, 80, true, false, b""))
        .collect();
    let port = run(&mut f, frames);
    let macs: Vec<u8> = port.tx.iter().map(|fr| fr[5]).collect();
    assert_eq!(
        macs,
        vec![0x13, 0x12, 0x11, 0x13, 0x12, 0x11, 0x13, 0x12, 0x11]
    );
    for d in &f.dests {
        assert_eq!(d.stats.get().conns, 3);
        assert_eq!(d.sched.load.inactive(), 3);
    }
}

#[test]
fn unresolved_next_hop_is_a_counted_drop_that_asks_for_resolution() {
    let mut f = fixture("rr", 1, Some(1));
    let port = run(&mut f, vec![tcp(40000, 80, true, false, b"")]);
    assert_eq!(port.verdicts, vec![Verdict::Drop(DropReason::NoNeigh)]);
    assert_eq!(f.pipeline.stats().drops[DropReason::NoNeigh as usize], 1);
    assert!(f.dests[0].neigh.take_wanted(), "resolution requested");
    // Once the MAC is known the retransmitted SYN goes through.
    f.dests[0].neigh.set(Some(rs_mac(1)));
    let port = run(&mut f, vec![tcp(40000, 80, true, false, b"")]);
    assert_eq!(port.verdicts, vec![Verdict::Tx(0)]);
}

#[test]
fn syn_on_a_closed_connection_reschedules() {
    let mut f = fixture("rr", 2, None);
    let mut rst = tcp(40000, 80, false, false, b"");
    rst[14 + 20 + 13] = 0x04; // RST
    let port = run(
        &mut f,
        vec![
            tcp(40000, 80, true, false, b""),
            tcp(40000, 80, false, true, b""),
            rst,
            tcp(40000, 80, true, false, b""),
        ],
    );
    assert_eq!(port.verdicts, vec![Verdict::Tx(0); 4]);
    assert_ne!(
        port.tx[0][5], port.tx[3][5],
        "the new SYN was scheduled again"
    );
    assert_eq!(f.pipeline.table().iter().count(), 1);
}

#[test]
fn full_table_drops_new_connections_and_keeps_established_ones() {
    let mut f = fixture("rr", 1, None);
    let mut fx = Fixture {
        pipeline: Pipeline::new(
            Arc::new(Snapshot::of_services(
                std::slice::from_ref(&f.svc),
                Timeouts::default(),
            )),
            2,
            DIR_MAC,
        ),
        dests: std::mem::take(&mut f.dests),
        svc: f.svc.clone(),
    };
    let port = run(
        &mut fx,
        vec![
            tcp(1, 80, true, false, b""),
            tcp(2, 80, true, false, b""),
            tcp(3, 80, true, false, b""),
            tcp(1, 80, false, true, b"x"),
        ],
    );
    assert_eq!(
        port.verdicts,
        vec![
            Verdict::Tx(0),
            Verdict::Tx(0),
            Verdict::Drop(DropReason::ConnTableFull),
            Verdict::Tx(0)
        ]
    );
}
