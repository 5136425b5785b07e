//! Connection table behaviour through the pipeline: one table shared by
//! several workers, persistence templates (-p, -M, port 0), expiry with an
//! injected clock, and the active/inactive/persistent counts.

use std::sync::Arc;
use xvs_dataplane::conn::state::Timeouts;
use xvs_dataplane::conn::table::ConnTable;
use xvs_dataplane::pipeline::{DropReason, Pipeline, Verdict};
use xvs_dataplane::svc::Persist;
use xvs_dataplane::testkit::frame::{eth, ip, ip_packet, tcp, L4};
use xvs_dataplane::testkit::{dr_service, service, snapshot, Fixture, CLIENT_MAC, DIR_MAC, VIP};

const S: u64 = 1_000_000_000;

/// A segment client `cip`:`sport` → VIP:`dport`.
fn seg(cip: [u8; 4], l4: L4) -> Vec<u8> {
    eth(CLIENT_MAC, DIR_MAC, &ip_packet(&ip(cip, VIP), &l4, b""))
}

fn syn(cip: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    seg(cip, tcp(sport, dport).syn())
}

fn ack(cip: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    seg(cip, tcp(sport, dport).ack(1))
}

fn fin(cip: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    seg(cip, tcp(sport, dport).ack(1).fin())
}

/// The real server a transmitted frame went to (last byte of its MAC).
fn sent_to(p: &mut Pipeline, now: u64, mut frame: Vec<u8>) -> Option<u8> {
    match p.process(now, &mut frame) {
        Verdict::Tx(0) => Some(frame[5] - 0x10),
        _ => None,
    }
}

#[test]
fn a_flow_arriving_on_two_workers_has_one_connection() {
    let (svc, dests) = dr_service("rr", 3, None);
    let snap = snapshot(&[svc], Timeouts::default());
    let (table, mut parts) = ConnTable::new(1000, 2);
    let table = Arc::new(table);
    let mut b = Pipeline::with_table(snap.clone(), table.clone(), parts.pop().unwrap(), DIR_MAC);
    let mut a = Pipeline::with_table(snap, table.clone(), parts.pop().unwrap(), DIR_MAC);
    let c = [198, 18, 0, 10];
    let first = sent_to(&mut a, S, syn(c, 5000, 80)).unwrap();
    // The rest of the flow lands on the other worker's queue.
    for _ in 0..5 {
        assert_eq!(sent_to(&mut b, S, ack(c, 5000, 80)), Some(first));
    }
    assert_eq!(table.iter().count(), 1);
    let total: u32 = dests
        .iter()
        .map(|d| d.sched.load.active() + d.sched.load.inactive())
        .sum();
    assert_eq!(total, 1);
    assert_eq!(
        dests.iter().map(|d| d.sched.load.active()).sum::<u32>(),
        1,
        "ACK made it active"
    );
}

#[test]
fn expiry_follows_ipvs_timeouts_with_an_injected_clock() {
    let Fixture {
        pipeline: mut p,
        dests,
        ..
    } = Fixture::new(dr_service("rr", 1, None), 100);
    let c = [198, 18, 0, 10];
    p.expire(S);
    assert!(sent_to(&mut p, S, syn(c, 1, 80)).is_some());
    // SYN_RECV lives 60 s.
    p.expire(30 * S);
    assert_eq!(p.table().iter().count(), 1);
    assert!(sent_to(&mut p, 30 * S, ack(c, 1, 80)).is_some());
    // ESTABLISHED lives 900 s.
    p.expire(900 * S);
    assert_eq!(p.table().iter().count(), 1);
    assert_eq!(dests[0].sched.load.active(), 1);
    assert!(sent_to(&mut p, 900 * S, fin(c, 1, 80)).is_some());
    assert_eq!(dests[0].sched.load.active(), 0, "FIN_WAIT is inactive");
    assert_eq!(dests[0].sched.load.inactive(), 1);
    // FIN_WAIT lives 120 s: swept after that.
    p.expire(1000 * S);
    assert_eq!(p.table().iter().count(), 1);
    p.expire(1021 * S);
    p.expire(1022 * S);
    assert_eq!(p.table().iter().count(), 0);
    assert_eq!(dests[0].sched.load.inactive(), 0);
    assert_eq!(p.stats().conns_expired, 1);
    // A non-SYN for the expired flow has no connection.
    let mut f = ack(c, 1, 80);
    assert_eq!(
        p.process(1023 * S, &mut f),
        Verdict::Drop(DropReason::NoConn)
    );
}

#[test]
fn persistence_keeps_a_client_on_one_server_and_templates_outlive_their_timeout_while_used() {
    let persist = Persist {
        timeout: 2,
        mask: u32::MAX,
        prefix: 32,
    };
    let Fixture {
        pipeline: mut p,
        dests,
        ..
    } = Fixture::new(service("rr", 3, None, 80, Some(persist)), 1000);
    let a = [198, 18, 0, 10];
    let first = sent_to(&mut p, S, syn(a, 1000, 80)).unwrap();
    for port in 1001..1010 {
        assert_eq!(
            sent_to(&mut p, S, syn(a, port, 80)),
            Some(first),
            "same client, same server"
        );
    }
    // Other clients spread (rr over the remaining schedules).
    let others: Vec<u8> = (11..14)
        .map(|i| sent_to(&mut p, S, syn([198, 18, 0, i], 1000, 80)).unwrap())
        .collect();
    let mut all = others.clone();
    all.push(first);
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 3, "clients spread over all servers: {others:?}");
    let persist_count: u32 = dests.iter().map(|d| d.sched.load.persist()).sum();
    assert_eq!(persist_count, 4, "one template per client");
    // Long after the 2 s timeout the template still controls connections
    // (SYN_RECV: 60 s), so the client sticks.
    p.expire(2 * S);
    p.expire(10 * S);
    p.expire(11 * S);
    assert_eq!(sent_to(&mut p, 11 * S, syn(a, 2000, 80)), Some(first));
    // Once every connection has gone and the template's time has passed,
    // the client is scheduled afresh.
    for t in [80, 81, 82, 83, 84, 85] {
        p.expire(t * S);
    }
    assert_eq!(p.table().iter().filter(|v| !v.key.template).count(), 0);
    assert_eq!(p.table().iter().count(), 0, "templates expired once unused");
    assert_eq!(dests.iter().map(|d| d.sched.load.persist()).sum::<u32>(), 0);
    // Scheduled afresh: rr moves on from where it was.
    let next = sent_to(&mut p, 86 * S, syn(a, 3000, 80)).unwrap();
    assert_ne!(next, first, "a new template, a new choice");
}

#[test]
fn port_zero_service_groups_every_port_and_netmask_groups_clients() {
    let persist = Persist {
        timeout: 360,
        mask: 0xffff_ff00,
        prefix: 24,
    };
    let mut p = Fixture::new(service("rr", 3, None, 0, Some(persist)), 1000).pipeline;
    let first = sent_to(&mut p, S, syn([198, 18, 0, 10], 1000, 80)).unwrap();
    assert_eq!(
        sent_to(&mut p, S, syn([198, 18, 0, 10], 1001, 443)),
        Some(first)
    );
    assert_eq!(
        sent_to(&mut p, S, syn([198, 18, 0, 10], 1002, 22)),
        Some(first)
    );
    // Same /24: same template.
    assert_eq!(
        sent_to(&mut p, S, syn([198, 18, 0, 77], 1003, 8080)),
        Some(first)
    );
    // Another /24: scheduled (rr moves on).
    let other = sent_to(&mut p, S, syn([198, 18, 1, 10], 1000, 80)).unwrap();
    assert_ne!(other, first);
}

#[test]
fn closed_connections_release_a_short_template_within_two_sweeps() {
    let persist = Persist {
        timeout: 2,
        mask: u32::MAX,
        prefix: 32,
    };
    let t = Timeouts {
        tcp: 900,
        tcp_fin: 2,
        udp: 300,
    };
    let mut p =
        Fixture::with_timeouts(service("rr", 3, None, 80, Some(persist)), 1 << 20, t).pipeline;
    let a = [198, 18, 0, 10];
    let ms = S / 1000;
    let mut now = S;
    let mut first = None;
    for port in 1..=3u16 {
        let s1 = sent_to(&mut p, now, syn(a, port, 80)).unwrap();
        first.get_or_insert(s1);
        sent_to(&mut p, now, ack(a, port, 80)).unwrap();
        sent_to(&mut p, now, fin(a, port, 80)).unwrap();
        sent_to(&mut p, now, ack(a, port, 80)).unwrap();
        now += 5 * ms;
    }
    // Sweep every 10 ms for 8 s.
    for _ in 0..800 {
        now += 10 * ms;
        p.expire(now);
    }
    assert_eq!(
        p.table().iter().count(),
        0,
        "{:?}",
        p.table().iter().collect::<Vec<_>>()
    );
    let again = sent_to(&mut p, now, syn(a, 99, 80)).unwrap();
    assert_ne!(Some(again), first);
}
