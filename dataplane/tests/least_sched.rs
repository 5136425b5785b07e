//! The least-load schedulers through the pipeline: with 20 servers they
//! choose from their tree, which sees loads only through the counters'
//! change reports; every new connection must still go where IPVS's scan
//! over the counts of that moment sends it, while connections open,
//! become established, close and expire.

use xvs_dataplane::pipeline::{Pipeline, Verdict};
use xvs_dataplane::svc::DestRt;
use xvs_dataplane::testkit::frame::{eth, ip, ip_packet, tcp, L4};
use xvs_dataplane::testkit::{dr_service, Fixture, CLIENT_MAC, DIR_MAC, VIP};

const S: u64 = 1_000_000_000;
const CLIENT: [u8; 4] = [198, 18, 0, 10];

fn seg(l4: L4) -> Vec<u8> {
    eth(CLIENT_MAC, DIR_MAC, &ip_packet(&ip(CLIENT, VIP), &l4, b""))
}

/// The real server a transmitted frame went to (last byte of its MAC).
fn sent_to(p: &mut Pipeline, now: u64, mut frame: Vec<u8>) -> Option<u8> {
    match p.process(now, &mut frame) {
        Verdict::Tx(0) => Some(frame[5] - 0x10),
        _ => None,
    }
}

/// IPVS's lc/wlc scan over the counts now (all weights are 1): the first
/// server in list order with the least `active * 256 + inactive`.
fn scan(dests: &[std::sync::Arc<DestRt>]) -> u8 {
    let best = dests
        .iter()
        .min_by_key(|d| d.sched.load.overhead())
        .expect("servers");
    // min_by_key keeps the first of equal minima, as IPVS's strict `<`.
    best.id as u8
}

fn follow_the_scan(sched: &str) {
    let Fixture {
        pipeline: mut p,
        dests,
        ..
    } = Fixture::new(dr_service(sched, 20, None), 10_000);
    let mut seed = 0x1eed_5c4e_u64;
    let mut rnd = move |m: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % m
    };
    // (source port, server, established, closed)
    let mut conns: Vec<(u16, u8, bool, bool)> = Vec::new();
    let mut now = S;
    let mut port = 1000u16;
    let mut peak = 0;
    for step in 0..1500 {
        if step % 300 == 299 {
            // Past SYN_RECV (60 s) and FIN_WAIT (120 s), not ESTABLISHED
            // (900 s): the sweep unbinds the half-open and closed ones.
            now += 130 * S;
            p.expire(now);
            p.expire(now + S);
            now += S;
            conns.retain(|c| c.2 && !c.3);
        }
        match rnd(4) {
            0 | 1 => {
                port += 1;
                let want = scan(&dests);
                let got = sent_to(&mut p, now, seg(tcp(port, 80).syn())).expect("forwarded");
                assert_eq!(got, want, "{sched} step {step}");
                conns.push((port, got, false, false));
            }
            2 if !conns.is_empty() => {
                let k = rnd(conns.len() as u64) as usize;
                let (sport, rs, est, closed) = conns[k];
                if !est && !closed {
                    assert_eq!(sent_to(&mut p, now, seg(tcp(sport, 80).ack(1))), Some(rs));
                    conns[k].2 = true;
                }
            }
            3 if !conns.is_empty() => {
                let k = rnd(conns.len() as u64) as usize;
                let (sport, rs, est, closed) = conns[k];
                if est && !closed {
                    let f = seg(tcp(sport, 80).ack(1).fin());
                    assert_eq!(sent_to(&mut p, now, f), Some(rs));
                    conns[k].3 = true;
                }
            }
            _ => {}
        }
        now += 1000;
        let open: u32 = dests
            .iter()
            .map(|d| d.sched.load.active() + d.sched.load.inactive())
            .sum();
        peak = peak.max(open);
    }
    assert!(peak > 100, "the test built up load (at most {peak} open)");
}

#[test]
fn wlc_follows_the_scan_through_binds_transitions_and_expiry() {
    follow_the_scan("wlc");
}

#[test]
fn lc_follows_the_scan_through_binds_transitions_and_expiry() {
    follow_the_scan("lc");
}
