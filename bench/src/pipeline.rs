//! Microbenchmark of `Pipeline::process` on DR flows: connection setup
//! (SYN: lookup miss, schedule, insert) and the established path (lookup,
//! state, counters, MAC rewrite) over `flows` live connections visited in
//! a scattered order, on one core, with no I/O.

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
    /// Packets processed in the timed established part.
    pub packets: u64,
    /// Nanoseconds per packet (established path).
    pub ns_per_packet: f64,
    /// Nanoseconds per new connection (SYN: lookup miss, schedule, insert).
    pub ns_per_new_conn: f64,
    /// Bytes of table memory per connection (entry + index + free list).
    pub bytes_per_conn: f64,
}

/// Write flow `i`'s client address and port into `frame` (up to 2^25
/// distinct clients inside 198.18.0.0/15, 256 ports each).
#[inline]
fn set_flow(frame: &mut [u8], i: usize) {
    let cip = [
        198,
        18 | ((i >> 24) & 1) as u8,
        (i >> 16) as u8,
        (i >> 8) as u8,
    ];
    frame[26..30].copy_from_slice(&cip);
    frame[34..36].copy_from_slice(&(1024 + (i & 0xff) as u16).to_be_bytes());
}

/// Visit order: a stride coprime with `flows`, so every flow is visited
/// once per round in a cache-unfriendly order.
fn stride(flows: usize) -> usize {
    let mut s = (flows as f64 * 0.618_033_988_7) as usize | 1;
    while gcd(s, flows) != 1 {
        s += 2;
    }
    s
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Run the benchmark with `flows` established connections over `servers`
/// DR real servers for at least `packets` packets.
pub fn run(flows: usize, servers: u8, packets: u64) -> PipelineResult {
    let flows = flows.max(1);
    xvs_dataplane::stats::set_workers(1);
    let (svc, _dests) = dr_service("wrr", servers, None);
    let snap = Arc::new(Snapshot::of_services(&[svc], Timeouts::default()));
    let mut p = Pipeline::new(snap, flows, DIR_MAC);
    p.set_writer(0);
    let now = 1_000_000_000u64;
    let step = stride(flows);

    // Frames go through in batches of 64, as a worker receives them: the
    // prefetch pass requests every frame's table memory first.
    const BATCH: usize = 64;
    let mut batch: Vec<Vec<u8>> = (0..BATCH)
        .map(|_| tcp_frame([198, 18, 0, 1], 1024, 80, true, false, b"0123456789abcdef"))
        .collect();
    let t = Instant::now();
    let mut j = 0usize;
    let mut done = 0usize;
    while done < flows {
        let k = BATCH.min(flows - done);
        for f in &mut batch[..k] {
            set_flow(f, j);
            j = (j + step) % flows;
        }
        for stage in 0..2 {
            for f in &batch[..k] {
                p.prefetch(stage, f);
            }
        }
        for f in &mut batch[..k] {
            let v = p.process(now, f);
            assert_eq!(v, Verdict::Tx(0), "SYN must be forwarded");
        }
        done += k;
    }
    let ns_per_new_conn = t.elapsed().as_nanos() as f64 / flows as f64;

    let mut batch: Vec<Vec<u8>> = (0..BATCH)
        .map(|_| tcp_frame([198, 18, 0, 1], 1024, 80, false, true, b"0123456789abcdef"))
        .collect();
    // One warm-up round (ESTABLISHED from here on).
    for i in 0..flows {
        set_flow(&mut batch[0], i);
        p.process(now, &mut batch[0]);
    }
    let rounds = packets.max(flows as u64).div_ceil(BATCH as u64);
    let n = rounds * BATCH as u64;
    let t = Instant::now();
    let mut tx = 0u64;
    let mut j = 0usize;
    for r in 0..rounds {
        for f in batch.iter_mut() {
            set_flow(f, j);
            j += step;
            if j >= flows {
                j -= flows;
            }
        }
        for stage in 0..2 {
            for f in &batch {
                p.prefetch(stage, f);
            }
        }
        for f in batch.iter_mut() {
            if p.process(now + r, f) == Verdict::Tx(0) {
                tx += 1;
            }
        }
    }
    let el = t.elapsed().as_nanos() as f64;
    assert_eq!(tx, n, "every established packet is forwarded");
    PipelineResult {
        flows,
        packets: n,
        ns_per_packet: el / n as f64,
        ns_per_new_conn,
        bytes_per_conn: p.table().bytes_per_entry(),
    }
}
