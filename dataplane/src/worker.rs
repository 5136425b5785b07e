//! The per-queue loop: one thread per RX queue, pinned to a core, reading
//! batches from its port, running the pipeline over each frame in place,
//! and picking up new configuration snapshots between batches.

use crate::counters::WorkerCounters;
use crate::io::{FrameAccounting, Port};
use crate::pipeline::{Hints, Pipeline};
use crate::svc::SnapshotCell;
use crate::verdict::{DropReason, Verdict};
use crossbeam::channel::{Receiver, Sender};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Longest a worker sleeps waiting for frames.
const POLL_MS: i32 = 10;
/// Poll errors in a row after which the ring is given up as broken (about
/// a second): the worker stops, and the daemon with it, so that the
/// service manager restarts it.
const POLL_ERRORS_MAX: u32 = 100;

/// A question the control thread asks a worker between batches.
#[derive(Debug)]
pub enum Request {
    /// Report the worker's counters.
    Stats(Sender<(WorkerCounters, FrameAccounting)>),
    /// Interface `.0`'s MAC changed to `.1` (see
    /// [`Pipeline::set_port_mac`]).
    PortMac(u32, [u8; 6]),
}

/// What a worker reports when it stops.
#[derive(Debug, Clone)]
pub struct Report {
    /// `iface:queue`.
    pub name: String,
    /// Counters (pipeline and rings).
    pub counters: WorkerCounters,
    /// Where the frames were after draining.
    pub frames: FrameAccounting,
}

/// Run the loop until `stop` is set, or until the port fails
/// [`POLL_ERRORS_MAX`] times in a row (the thread then ends early, which
/// the director reports as this worker's failure).
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
    let table6 = pipeline.table6().clone();
    // The frames the pass reads as NAT replies first (the snapshot's).
    let mut filter = pipeline.reply_filter();
    // The prefetch pass's findings, from the port's prefetch callback to
    // its processing callback.
    let hints = Hints::default();
    // Frames read, and frames the pipeline passed that the port cannot
    // give back to the kernel (counted as that drop, not as passed).
    let mut rx = 0u64;
    let mut unavailable = 0u64;
    let mut errors = 0u32;
    while !stop.load(Ordering::Relaxed) {
        let now = crate::clock::now_ns();
        // The snapshot is taken once for the batch (it changes only
        // between batches, below).
        let mut batch = pipeline.batch();
        let unavail = &mut unavailable;
        let res = port.poll_prefetch(
            POLL_MS,
            |stage, frame| hints.prefetch_filtered(&table, &table6, filter.as_ref(), stage, frame),
            |ingress, frame| match batch.process_hinted(now, ingress, frame, &hints.take()) {
                Verdict::Pass => {
                    // Frames reach an AF_XDP socket only when the steering
                    // program chose them; there is no way back to the kernel.
                    *unavail += 1;
                    Verdict::Drop(DropReason::PassUnavailable)
                }
                v => v,
            },
        );
        drop(batch);
        match res {
            Ok(n) => {
                rx += n as u64;
                errors = 0;
            }
            Err(e) => {
                errors += 1;
                if errors >= POLL_ERRORS_MAX {
                    eprintln!("xvsd: worker {name}: poll: {e}: giving up after {errors} errors");
                    break;
                }
                if errors == 1 {
                    eprintln!("xvsd: worker {name}: poll: {e}");
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
        let now = crate::clock::now_ns();
        pipeline.sync_in(now);
        pipeline.expire(now);
        if cell.generation() != gen {
            let (g, snap) = cell.load();
            gen = g;
            pipeline.set_snapshot(snap);
            filter = pipeline.reply_filter();
        }
        while let Ok(req) = requests.try_recv() {
            match req {
                Request::Stats(tx) => {
                    let c = counters(&pipeline, &port, rx, unavailable);
                    let _ = tx.send((c, port.accounting()));
                }
                Request::PortMac(ifindex, mac) => pipeline.set_port_mac(ifindex, mac),
            }
        }
    }
    let report = Report {
        name,
        counters: counters(&pipeline, &port, rx, unavailable),
        frames: port.accounting(),
    };
    (port, report)
}

/// The worker's counters: `unavailable` of the pipeline's passed frames
/// were dropped instead.
fn counters<P: Port>(pipeline: &Pipeline, port: &P, rx: u64, unavailable: u64) -> WorkerCounters {
    let mut p = pipeline.stats().clone();
    // Exact: every unavailable frame was first counted as passed.
    p.pass -= unavailable;
    p.drops[DropReason::PassUnavailable as usize] += unavailable;
    WorkerCounters {
        rx,
        pipeline: p,
        rings: port.rings(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::svc::Snapshot;
    use std::time::{Duration, Instant};

    /// A port whose every poll fails (a ring that went away).
    struct Broken {
        polls: u32,
    }

    impl Port for Broken {
        fn poll<F: FnMut(u8, &mut dyn crate::io::FrameBuf) -> Verdict>(
            &mut self,
            _timeout_ms: i32,
            _f: F,
        ) -> std::io::Result<usize> {
            self.polls += 1;
            Err(std::io::Error::from_raw_os_error(libc::ENXIO))
        }

        fn accounting(&self) -> FrameAccounting {
            FrameAccounting::default()
        }
    }

    #[test]
    fn a_port_that_keeps_failing_stops_the_worker_on_its_own() {
        let cell = Arc::new(SnapshotCell::new(Snapshot::default()));
        let pipeline = Pipeline::new(cell.load().1, 64, [2, 0, 0, 0, 0, 1]);
        let stop = Arc::new(AtomicBool::new(false));
        let (_tx, rx) = crossbeam::channel::unbounded();
        let start = Instant::now();
        let (port, _) = run(
            "t:0".into(),
            Broken { polls: 0 },
            pipeline,
            cell,
            stop.clone(),
            rx,
        );
        // It gave up by itself (stop was never set), after the limit.
        assert!(!stop.load(Ordering::Relaxed));
        assert_eq!(port.polls, POLL_ERRORS_MAX);
        assert!(start.elapsed() < Duration::from_secs(30));
    }
}
