//! Microbenchmark of `Pipeline::process` on DR flows: connection setup
//! (SYN: lookup miss, schedule, insert) and the established path (lookup,
//! state, counters, MAC rewrite) over `flows` live connections visited in
//! a scattered order, on one core, with no I/O.

use std::ops::DerefMut;
use std::sync::Arc;
use std::time::Instant;
use xvs_dataplane::conn::state::Timeouts;
use xvs_dataplane::frame::{FixedFrame, FrameBuf};
use xvs_dataplane::pipeline::{Pipeline, Verdict};
use xvs_dataplane::svc::Snapshot;
use xvs_dataplane::testkit::{tcp_frame, DIR_MAC};

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
    /// CPU time of the thread per established packet, ns: the same work
    /// as `ns_per_packet` without the time the thread was not running
    /// (preempted on a busy machine).
    pub cpu_ns_per_packet: f64,
    /// CPU time of the thread per new connection, ns.
    pub cpu_ns_per_new_conn: f64,
}

/// CPU time of the calling thread, ns (its clock stops while it does not
/// run).
pub fn thread_cpu_ns() -> u64 {
    use nix::time::{clock_gettime, ClockId};
    clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(0)
}

/// Write flow `i`'s client address and port (and the director's MAC) into `frame` (up to 2^25
/// distinct clients inside 198.18.0.0/15, 256 ports each).
#[inline]
pub fn set_flow(frame: &mut [u8], i: usize) {
    // A reused frame that DR forwarded carries the real server's MAC: put
    // the director's back, as a NIC hands the director frames addressed
    // to it (others are dropped as another host's).
    frame[0..6].copy_from_slice(&DIR_MAC);
    let cip = [
        198,
        18 | ((i >> 24) & 1) as u8,
        (i >> 16) as u8,
        (i >> 8) as u8,
    ];
    frame[26..30].copy_from_slice(&cip);
    frame[34..36].copy_from_slice(&(1024 + (i & 0xff) as u16).to_be_bytes());
}

/// Write flow `i` into an IPv6 TCP/UDP `frame` as [`set_flow`] does: the
/// client's address ends in the flow's number, its port in the number's
/// low byte, and the director's MAC is put back on a reused frame.
#[inline]
pub fn set_flow6(frame: &mut [u8], i: usize) {
    frame[0..6].copy_from_slice(&DIR_MAC);
    frame[34..38].copy_from_slice(&(i as u32).to_be_bytes());
    frame[54..56].copy_from_slice(&(1024 + (i & 0xff) as u16).to_be_bytes());
}

/// Send the SYN of each of `flows` clients (`syn` with the client's
/// address and port of [`set_flow`], or [`set_flow6`] if `v6`), visited
/// [`stride`] apart, through `p` in batches of `batch.len()` frames with
/// the prefetch pass the worker runs, each batch under one snapshot
/// ([`Pipeline::batch`]) as the worker processes it; returns how many went out on port
/// 0. The batch's frames are the caller's, so that making them is not
/// part of what a caller times.
pub fn send_syns(
    p: &mut Pipeline,
    batch: &mut [FixedFrame],
    syn: &FixedFrame,
    flows: usize,
    v6: bool,
    now: u64,
) -> usize {
    let step = stride(flows);
    let (mut j, mut done, mut tx) = (0usize, 0usize, 0usize);
    while done < flows {
        let k = batch.len().min(flows - done);
        for f in &mut batch[..k] {
            f.receive(syn);
            if v6 {
                set_flow6(f, j);
            } else {
                set_flow(f, j);
            }
            j = (j + step) % flows;
        }
        for stage in 0..2 {
            for f in &batch[..k] {
                p.prefetch(stage, f);
            }
        }
        let mut b = p.batch();
        for f in &mut batch[..k] {
            if b.process(now, f) == Verdict::Tx(0) {
                tx += 1;
            }
        }
        done += k;
    }
    tx
}

/// Visit order: a stride coprime with `flows`, so every flow is visited
/// once per round in a cache-unfriendly order.
pub fn stride(flows: usize) -> usize {
    let mut s = (flows as f64 * 0.618_033_988_7) as usize | 1;
    while gcd(s, flows) != 1 {
        s += 2;
    }
    s
}

/// Flows visited `step` apart (see [`stride`]), wrapping at `flows`.
pub(crate) struct Scattered {
    flows: usize,
    step: usize,
    next: usize,
}

impl Scattered {
    /// The order of `flows` flows from flow `first`.
    pub(crate) fn new(flows: usize, first: usize) -> Self {
        Scattered {
            flows,
            step: stride(flows),
            next: first % flows,
        }
    }

    /// The next flow to visit.
    #[inline]
    fn next_flow(&mut self) -> usize {
        let j = self.next;
        self.next += self.step;
        if self.next >= self.flows {
            self.next -= self.flows;
        }
        j
    }
}

/// The timed loop: `rounds` batches through `p`, as a worker runs them.
/// Each round refills every frame of `batch` with `fill(frame, flow)` for
/// the next flows of `order`, runs the prefetch pass over the batch (with
/// `prefetch`), then processes each frame at time `now + round`. Returns
/// how many frames went out port 0.
#[inline]
pub(crate) fn batches<F: FrameBuf + DerefMut<Target = [u8]>>(
    p: &mut Pipeline,
    batch: &mut [F],
    rounds: u64,
    now: u64,
    prefetch: bool,
    order: &mut Scattered,
    mut fill: impl FnMut(&mut F, usize),
) -> u64 {
    let mut tx = 0u64;
    for r in 0..rounds {
        for f in batch.iter_mut() {
            fill(f, order.next_flow());
        }
        if prefetch {
            for stage in 0..2 {
                for f in batch.iter() {
                    p.prefetch(stage, f);
                }
            }
        }
        // One snapshot for the batch, as a worker takes it.
        let mut b = p.batch();
        for f in batch.iter_mut() {
            if b.process(now + r, f) == Verdict::Tx(0) {
                tx += 1;
            }
        }
    }
    tx
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The forwarding method a run exercises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Direct routing (MAC rewrite).
    Dr,
    /// NAT, client → server (address, port, checksums).
    NatIn,
    /// NAT, a real server's reply → client (reply-index lookup).
    NatOut,
    /// IPIP tunnel (a 20-byte header in front; the packet moves).
    Tun,
}

/// Run the benchmark with `flows` established connections over `servers`
/// DR real servers for at least `packets` packets.
pub fn run(flows: usize, servers: u8, packets: u64) -> PipelineResult {
    run_method(Method::Dr, flows, servers, packets)
}

/// [`run`] for NAT, client to server.
pub fn run_nat_in(flows: usize, servers: u8, packets: u64) -> PipelineResult {
    run_method(Method::NatIn, flows, servers, packets)
}

/// [`run`] for NAT replies (one real server, so every reply's source is
/// known).
pub fn run_nat_out(flows: usize, _servers: u8, packets: u64) -> PipelineResult {
    run_method(Method::NatOut, flows, 1, packets)
}

/// [`run`] for IPIP tunnelling.
pub fn run_tun(flows: usize, servers: u8, packets: u64) -> PipelineResult {
    run_method(Method::Tun, flows, servers, packets)
}

/// A reply of real server 1 (NAT, port 8080) to flow `i`'s client.
fn set_reply(frame: &mut [u8], i: usize) {
    let cip = [
        198,
        18 | ((i >> 24) & 1) as u8,
        (i >> 16) as u8,
        (i >> 8) as u8,
    ];
    frame[30..34].copy_from_slice(&cip);
    frame[36..38].copy_from_slice(&(1024 + (i & 0xff) as u16).to_be_bytes());
}

/// DR with the client's TCP checksum rewritten into every packet before it
/// is processed: the pseudo-header sum alone (`partial`: what a sender with
/// TX checksum offload sends, which the pipeline completes) or its
/// complement (a complete-looking value, left alone), over segments of
/// `payload` bytes. The two differ only by the completion's cost.
pub fn run_dr_csum(
    flows: usize,
    servers: u8,
    packets: u64,
    payload: usize,
    partial: bool,
) -> PipelineResult {
    run_with(
        Method::Dr,
        flows,
        servers,
        packets,
        Some((payload, partial)),
    )
}

/// Write into TCP frame `f` (no IP options) its partial checksum, or the
/// complement of it when not `partial`.
#[inline]
fn set_csum(f: &mut [u8], partial: bool) {
    use xvs_dataplane::wire::checksum::{fold, pseudo_header_sum};
    let ip = &f[14..34];
    let len = u16::from_be_bytes([ip[2], ip[3]]) - 20;
    let src = std::net::Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst = std::net::Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    let p = fold(pseudo_header_sum(src, dst, ip[9], len));
    let v = if partial { p } else { !p };
    f[50..52].copy_from_slice(&v.to_be_bytes());
}

/// Run one method over `flows` established connections visited in a
/// scattered order, in batches of 64 with the prefetch pass a worker does.
pub fn run_method(method: Method, flows: usize, servers: u8, packets: u64) -> PipelineResult {
    run_with(method, flows, servers, packets, None)
}

/// [`run_method`], with `csum` = `(payload, partial)` as in [`run_dr_csum`].
fn run_with(
    method: Method,
    flows: usize,
    servers: u8,
    packets: u64,
    csum: Option<(usize, bool)>,
) -> PipelineResult {
    use xvs_dataplane::svc::Fwd;
    use xvs_dataplane::testkit::{frame, rip, rs_mac, service_with};
    use xvs_dataplane::xmit::tun::TunKind;
    let flows = flows.max(1);
    xvs_dataplane::stats::set_workers(1);
    let fwd = match method {
        Method::Dr => Fwd::Dr,
        Method::NatIn | Method::NatOut => Fwd::Nat,
        Method::Tun => Fwd::Tun,
    };
    let fwds = vec![(fwd, TunKind::Ipip); usize::from(servers.max(1))];
    let (svc, _dests) = service_with("wrr", &fwds, None, 80, None);
    let snap = Arc::new(Snapshot::of_services(&[svc], Timeouts::default()));
    let mut p = Pipeline::new(snap, flows, DIR_MAC);
    p.set_writer(0);
    // As xvsd runs it, with a sync port (no sync daemon: master off), so
    // the per-packet sync checks are in the figures.
    p.set_sync(Arc::new(xvs_dataplane::sync::SyncPort::new(1)), 0);
    let now = 1_000_000_000u64;

    // Frames go through in batches of 64, as a worker receives them: the
    // prefetch pass requests every frame's table memory first.
    const BATCH: usize = 64;
    let syn = tcp_frame([198, 18, 0, 1], 1024, 80, true, false, b"0123456789abcdef");
    let syn = FixedFrame::new(&syn);
    let mut batch: Vec<FixedFrame> = (0..BATCH).map(|_| syn.clone()).collect();
    let t = Instant::now();
    let cpu0 = thread_cpu_ns();
    let sent = send_syns(&mut p, &mut batch, &syn, flows, false, now);
    assert_eq!(sent, flows, "every SYN must be forwarded ({method:?})");
    let ns_per_new_conn = t.elapsed().as_nanos() as f64 / flows as f64;
    // DR and TUN forward a SYN the table refuses without an entry: the
    // table must hold every flow all the same.
    assert_eq!(
        p.partition().len(),
        flows,
        "every SYN made a connection ({method:?})"
    );
    let cpu_ns_per_new_conn = thread_cpu_ns().saturating_sub(cpu0) as f64 / flows as f64;

    let data = match csum {
        Some((payload, _)) => vec![0x5a; payload],
        None => b"0123456789abcdef".to_vec(),
    };
    let ack = tcp_frame([198, 18, 0, 1], 1024, 80, false, true, &data);
    // A reply: from rs1 (198.18.0.11:8080) to the client, MACs rs1 → director.
    let reply = frame::eth(
        rs_mac(1),
        DIR_MAC,
        &frame::ip_packet(
            &frame::ip(rip(1), [198, 18, 0, 1]),
            &frame::tcp(8080, 1024).ack(1),
            b"0123456789abcdef",
        ),
    );
    let template = if method == Method::NatOut {
        &reply
    } else {
        &ack
    };
    // Frames live in fixed buffers, as UMEM frames do (growing one does
    // not clear the bytes it takes in). DR rewrites only the MACs: its
    // frames are reused (the flow and the destination MAC are set again);
    // NAT and TUN rewrite more, so those receive a fresh copy each time,
    // as a NIC writes each frame (two cache lines copied, counted in
    // their cost).
    let template = FixedFrame::new(template);
    let fill = |f: &mut FixedFrame, i: usize| {
        if method != Method::Dr {
            f.receive(&template);
        }
        if method == Method::NatOut {
            set_reply(f, i);
        } else {
            set_flow(f, i);
        }
        if let Some((_, partial)) = csum {
            set_csum(f, partial);
        }
    };
    let ack = FixedFrame::new(&ack);
    let mut batch: Vec<FixedFrame> = (0..BATCH).map(|_| ack.clone()).collect();
    // One warm-up round (ESTABLISHED from here on), in one reused buffer.
    let mut f = ack.clone();
    for i in 0..flows {
        f.receive(&ack);
        set_flow(&mut f, i);
        p.process(now, &mut f);
    }
    let rounds = packets.max(flows as u64).div_ceil(BATCH as u64);
    let n = rounds * BATCH as u64;
    // XVS_NO_PREFETCH=1 measures the same loop without the prefetch pass
    // (read once: an environment lookup takes a lock, not for the loop).
    let prefetch = std::env::var_os("XVS_NO_PREFETCH").is_none();
    let mut order = Scattered::new(flows, 0);
    let t = Instant::now();
    let cpu0 = thread_cpu_ns();
    let tx = batches(&mut p, &mut batch, rounds, now, prefetch, &mut order, fill);
    let el = t.elapsed().as_nanos() as f64;
    let cpu = thread_cpu_ns().saturating_sub(cpu0) as f64;
    assert_eq!(tx, n, "every established packet is forwarded ({method:?})");
    PipelineResult {
        flows,
        packets: n,
        ns_per_packet: el / n as f64,
        ns_per_new_conn,
        bytes_per_conn: p.table().bytes_per_entry(),
        cpu_ns_per_packet: cpu / n as f64,
        cpu_ns_per_new_conn,
    }
}
