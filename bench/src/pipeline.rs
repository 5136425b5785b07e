//! Microbenchmark of `Pipeline::process` on established DR flows: the
//! frames of `flows` connections are pushed through the pipeline round
//! after round, on one core, with no I/O.

use std::sync::Arc;
use std::time::Instant;
use xvs_dataplane::conn::state::Timeouts;
use xvs_dataplane::pipeline::{Pipeline, Verdict};
use xvs_dataplane::svc::Snapshot;
use xvs_dataplane::testkit::{dr_service, tcp_frame, DIR_MAC};

/// Result of one run.
#[derive(Debug, Clone, Copy)]
pub struct PipelineResult {
    /// Established flows cycled through.
    pub flows: usize,
    /// Packets processed in the timed part.
    pub packets: u64,
    /// Nanoseconds per packet (established path).
    pub ns_per_packet: f64,
    /// Nanoseconds per new connection (SYN: lookup miss, schedule, insert).
    pub ns_per_new_conn: f64,
}

fn flow_frame(i: usize, syn: bool) -> Vec<u8> {
    // Up to 2^25 distinct clients inside 198.18.0.0/15.
    let cip = [
        198,
        18 | ((i >> 24) & 1) as u8,
        (i >> 16) as u8,
        (i >> 8) as u8,
    ];
    tcp_frame(
        cip,
        1024 + (i & 0xff) as u16,
        80,
        syn,
        !syn,
        b"0123456789abcdef",
    )
}

/// Run the benchmark with `flows` established connections over `servers`
/// DR real servers for at least `packets` packets.
pub fn run(flows: usize, servers: u8, packets: u64) -> PipelineResult {
    xvs_dataplane::stats::set_workers(1);
    let (svc, _dests) = dr_service("wrr", servers, None);
    let snap = Arc::new(Snapshot::new([svc], Timeouts::default()));
    let mut p = Pipeline::new(snap, flows + 16, DIR_MAC);
    p.set_writer(0);
    let now = 1_000_000_000u64;

    let mut syns: Vec<Vec<u8>> = (0..flows).map(|i| flow_frame(i, true)).collect();
    let t = Instant::now();
    for f in &mut syns {
        let v = p.process(now, f);
        assert_eq!(v, Verdict::Tx, "SYN must be forwarded");
    }
    let ns_per_new_conn = t.elapsed().as_nanos() as f64 / flows as f64;

    let mut acks: Vec<Vec<u8>> = (0..flows).map(|i| flow_frame(i, false)).collect();
    // One warm-up round (ESTABLISHED from here on).
    for f in &mut acks {
        p.process(now, f);
    }
    let rounds = packets.div_ceil(flows as u64).max(1);
    let t = Instant::now();
    let mut tx = 0u64;
    for r in 0..rounds {
        let at = now + r * 1000;
        for f in &mut acks {
            if p.process(at, f) == Verdict::Tx {
                tx += 1;
            }
        }
    }
    let el = t.elapsed().as_nanos() as f64;
    let n = rounds * flows as u64;
    assert_eq!(tx, n, "every established packet is forwarded");
    PipelineResult {
        flows,
        packets: n,
        ns_per_packet: el / n as f64,
        ns_per_new_conn,
    }
}
