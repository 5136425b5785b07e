//! The per-queue loop: one thread per RX queue, pinned to a core, reading
//! batches from its port, running the pipeline over each frame in place,
//! and picking up new configuration snapshots between batches.

use crate::io::{FrameAccounting, Port};
use crate::pipeline::{prefetch, Pipeline, PipelineStats};
use crate::svc::SnapshotCell;
use crate::verdict::{DropReason, Verdict};
use crossbeam::channel::{Receiver, Sender};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Longest a worker sleeps waiting for frames.
const POLL_MS: i32 = 10;

/// A question the control thread asks a worker between batches.
#[derive(Debug)]
pub enum Request {
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
    let (mut gen, snap) = cell.load();
    pipeline.set_snapshot(snap);
    let table = pipeline.table().clone();
    while !stop.load(Ordering::Relaxed) {
        let now = crate::clock::now_ns();
        let pipe = &mut pipeline;
        let res = port.poll_prefetch(
            POLL_MS,
            |stage, frame| prefetch(&table, stage, frame),
            |ingress, frame| match pipe.process_on(now, ingress, frame) {
                Verdict::Pass => {
                    // Frames reach an AF_XDP socket only when the steering
                    // program chose them; there is no way back to the kernel.
                    pipe.count_drop(DropReason::PassUnavailable);
                    Verdict::Drop(DropReason::PassUnavailable)
                }
                v => v,
            },
        );
        if let Err(e) = res {
            eprintln!("xvsd: worker {name}: poll: {e}");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        pipeline.expire(crate::clock::now_ns());
        if cell.generation() != gen {
            let (g, snap) = cell.load();
            gen = g;
            pipeline.set_snapshot(snap);
        }
        while let Ok(req) = requests.try_recv() {
            answer(&pipeline, &port, req);
        }
    }
    let report = Report {
        name,
        stats: pipeline.stats().clone(),
        frames: port.accounting(),
    };
    (port, report)
}

fn answer<P: Port>(pipeline: &Pipeline, port: &P, req: Request) {
    match req {
        Request::Stats(tx) => {
            let _ = tx.send((pipeline.stats().clone(), port.accounting()));
        }
    }
}
