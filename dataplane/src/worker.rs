//! The per-queue loop: one thread per RX queue, pinned to a core, reading
//! batches from its port, running the pipeline over each frame in place,
//! and picking up new configuration snapshots between batches.

use crate::io::{FrameAccounting, Port};
use crate::pipeline::{DropReason, Pipeline, PipelineStats, Verdict};
use crate::svc::SnapshotCell;
use crossbeam::channel::{Receiver, Sender};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Connection-table slots examined for expiry per loop iteration.
const EXPIRE_BUDGET: usize = 256;
/// Longest a worker sleeps waiting for frames.
const POLL_MS: i32 = 10;

/// One connection, as listed by `xvsadm -c`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnInfo {
    /// Protocol number.
    pub proto: u8,
    /// State name.
    pub state: &'static str,
    /// Seconds until expiry.
    pub expire_secs: u64,
    /// Client.
    pub cip: Ipv4Addr,
    /// Client port.
    pub cport: u16,
    /// VIP.
    pub vip: Ipv4Addr,
    /// Virtual port.
    pub vport: u16,
    /// Real server.
    pub rip: std::net::IpAddr,
    /// Real server port.
    pub rport: u16,
}

/// A question the control thread asks a worker between batches.
#[derive(Debug)]
pub enum Request {
    /// List the worker's connections.
    Conns(Sender<Vec<ConnInfo>>),
    /// Report the worker's counters.
    Stats(Sender<(PipelineStats, FrameAccounting)>),
}

/// What a worker reports when it stops.
#[derive(Debug, Clone)]
pub struct Report {
    /// `iface:queue`.
    pub name: String,
    /// Pipeline counters.
    pub stats: PipelineStats,
    /// Where the frames were after draining.
    pub frames: FrameAccounting,
}

/// Run the loop until `stop` is set.
pub fn run<P: Port>(
    name: String,
    mut port: P,
    mut pipeline: Pipeline,
    cell: Arc<SnapshotCell>,
    stop: Arc<AtomicBool>,
    requests: Receiver<Request>,
) -> (P, Report) {
    let t0 = Instant::now();
    let (mut gen, snap) = cell.load();
    pipeline.set_snapshot(snap);
    while !stop.load(Ordering::Relaxed) {
        let now = t0.elapsed().as_nanos() as u64;
        let res = port.poll(POLL_MS, |frame| match pipeline.process(now, frame) {
            Verdict::Pass => {
                // Frames reach an AF_XDP socket only when the steering
                // program chose them; there is no way back to the kernel.
                pipeline.count_drop(DropReason::PassUnavailable);
                Verdict::Drop(DropReason::PassUnavailable)
            }
            v => v,
        });
        if let Err(e) = res {
            eprintln!("xvsd: worker {name}: poll: {e}");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        pipeline.expire(t0.elapsed().as_nanos() as u64, EXPIRE_BUDGET);
        if cell.generation() != gen {
            let (g, snap) = cell.load();
            gen = g;
            pipeline.set_snapshot(snap);
        }
        while let Ok(req) = requests.try_recv() {
            answer(&pipeline, &port, t0.elapsed().as_nanos() as u64, req);
        }
    }
    let report = Report {
        name,
        stats: pipeline.stats().clone(),
        frames: port.accounting(),
    };
    (port, report)
}

fn answer<P: Port>(pipeline: &Pipeline, port: &P, now: u64, req: Request) {
    match req {
        Request::Conns(tx) => {
            let list = pipeline
                .conns()
                .iter()
                .filter(|c| c.expires > now)
                .map(|c| ConnInfo {
                    proto: c.key.proto,
                    state: if c.key.proto == crate::wire::ipv4::PROTO_TCP {
                        c.state.name()
                    } else {
                        "UDP"
                    },
                    expire_secs: (c.expires - now).div_ceil(1_000_000_000),
                    cip: c.key.cip,
                    cport: c.key.cport,
                    vip: c.key.vip,
                    vport: c.key.vport,
                    rip: c.dest.sched.addr,
                    rport: c.dest.sched.port,
                })
                .collect();
            let _ = tx.send(list);
        }
        Request::Stats(tx) => {
            let _ = tx.send((pipeline.stats().clone(), port.accounting()));
        }
    }
}
