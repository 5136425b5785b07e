//! `xvs-bench pipeline --workers N`: does the pipeline scale with cores?
//!
//! N threads, each pinned to its own core, each a worker as xvsd runs it:
//! its own partition of one shared connection table, the same shared
//! snapshot of services (and so the same destinations, their load
//! counters and the counter shards of each worker), and the batch loop of
//! `worker::run` (the port's prefetch pass, then `process_hinted` per frame)
//! over an in-memory port that hands out established DR packets of the
//! worker's own flows. The same code runs with one worker, then with N,
//! alternately, so the ratio of their packet rates shows what sharing
//! costs: anything well under N× is contention (a shared cache line
//! written by both, a lock), not work. The rate needs idle cores; the CPU
//! time each worker thread spent per packet (its own clock, which stops
//! while it is not running) does not, so it still tells contention apart
//! from a busy machine: with no sharing it is the same for one worker as
//! for each of N.

use crate::micro::Spread;
use crate::pipeline::{set_flow, stride, thread_cpu_ns};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};
use xvs_dataplane::conn::state::Timeouts;
use xvs_dataplane::conn::table::ConnTable;
use xvs_dataplane::io::{FrameAccounting, FrameBuf, Port};
use xvs_dataplane::pipeline::{Hints, Pipeline, Verdict};
use xvs_dataplane::svc::{Fwd, Snapshot};
use xvs_dataplane::testkit::{service_with, tcp_frame, DIR_MAC};
use xvs_dataplane::xmit::tun::TunKind;

/// Frames per batch, as an AF_XDP port hands them out.
const BATCH: usize = 64;

/// An in-memory port that never runs dry: every poll refills its batch
/// with the next flows of its worker (visited in a scattered order) and
/// runs the prefetch pass before processing, as the AF_XDP port does.
/// Nothing is kept: transmitted frames are counted and reused.
pub struct LoopPort {
    frames: Vec<Vec<u8>>,
    /// First flow number of this port's worker.
    base: usize,
    flows: usize,
    step: usize,
    next: usize,
    /// Frames the pipeline transmitted.
    pub tx: u64,
    /// Frames it did not.
    pub other: u64,
}

impl LoopPort {
    /// A port cycling through flows `base..base + flows` of `template`.
    pub fn new(template: &[u8], base: usize, flows: usize) -> Self {
        let flows = flows.max(1);
        LoopPort {
            frames: (0..BATCH).map(|_| template.to_vec()).collect(),
            base,
            flows,
            step: stride(flows),
            next: 0,
            tx: 0,
            other: 0,
        }
    }
}

impl Port for LoopPort {
    fn poll<F: FnMut(u8, &mut dyn FrameBuf) -> Verdict>(
        &mut self,
        timeout_ms: i32,
        f: F,
    ) -> std::io::Result<usize> {
        self.poll_prefetch(timeout_ms, |_, _| {}, f)
    }

    fn poll_prefetch<P: FnMut(u8, &[u8]), F: FnMut(u8, &mut dyn FrameBuf) -> Verdict>(
        &mut self,
        _timeout_ms: i32,
        mut pre: P,
        mut f: F,
    ) -> std::io::Result<usize> {
        // DR rewrites only the MACs: the flow and the destination MAC are
        // set again.
        for fr in self.frames.iter_mut() {
            set_flow(fr, self.base + self.next);
            self.next += self.step;
            if self.next >= self.flows {
                self.next -= self.flows;
            }
        }
        for stage in 0..2 {
            for fr in &self.frames {
                pre(stage, fr);
            }
        }
        for fr in self.frames.iter_mut() {
            match f(0, fr) {
                Verdict::Tx(_) => self.tx += 1,
                _ => self.other += 1,
            }
        }
        Ok(self.frames.len())
    }

    fn accounting(&self) -> FrameAccounting {
        let n = self.frames.len() as u64;
        FrameAccounting {
            total: n,
            free: n,
            ..Default::default()
        }
    }
}

/// Result of one run with some number of workers.
#[derive(Debug, Clone)]
pub struct WorkersRun {
    /// Workers.
    pub workers: usize,
    /// Packets per second of all workers together.
    pub pps: f64,
    /// Packets per second of each worker.
    pub per_worker: Vec<f64>,
    /// Thread CPU time per packet of each worker, ns.
    pub cpu_ns: Vec<f64>,
}

/// Run `workers` pinned workers (worker `w` on `cores[w % len]`), each
/// over `flows` established DR connections of its own, for `secs`. With
/// `private`, each worker has a snapshot of its own (the same service,
/// separate objects): a diagnosis, to tell the cost of sharing the
/// services (their counters, the destinations' load) from the rest.
pub fn run_once(
    workers: usize,
    flows: usize,
    servers: u8,
    secs: f64,
    cores: &[usize],
    private: bool,
) -> WorkersRun {
    let workers = workers.max(1);
    let flows = flows.max(1);
    xvs_dataplane::stats::set_workers(workers);
    let fwds = vec![(Fwd::Dr, TunKind::Ipip); usize::from(servers.max(1))];
    let (svc, _dests) = service_with("wrr", &fwds, None, 80, None);
    let snap = Arc::new(Snapshot::of_services(&[svc], Timeouts::default()));
    let snaps: Vec<Arc<Snapshot>> = (0..workers)
        .map(|_| {
            if private {
                let (svc, _) = service_with("wrr", &fwds, None, 80, None);
                Arc::new(Snapshot::of_services(&[svc], Timeouts::default()))
            } else {
                snap.clone()
            }
        })
        .collect();
    let (table, parts) = ConnTable::new(flows * workers, workers);
    let table = Arc::new(table);
    let start = Arc::new(Barrier::new(workers + 1));
    let stop = Arc::new(AtomicBool::new(false));
    let now = 1_000_000_000u64;
    let handles: Vec<_> = parts
        .into_iter()
        .enumerate()
        .map(|(w, part)| {
            let core = (!cores.is_empty()).then(|| cores[w % cores.len()]);
            let (start, stop) = (start.clone(), stop.clone());
            let (snap, table) = (snaps[w].clone(), table.clone());
            std::thread::Builder::new()
                .name(format!("bench-w{w}"))
                .spawn(move || {
                    if let Some(id) = core {
                        core_affinity::set_for_current(core_affinity::CoreId { id });
                    }
                    // Built here, not by the spawning thread: what a worker
                    // writes per packet (its pipeline's counters, its
                    // port) lives on its own stack and in its own
                    // allocations, never in a cache line next to another
                    // worker's (two closures allocated one after the other
                    // by one thread can be neighbours on the heap).
                    let mut p = Pipeline::with_table(snap, table, part, DIR_MAC);
                    p.set_writer(w);
                    let base = w * flows;
                    // Open this worker's connections (SYN), then one round
                    // of ACKs: ESTABLISHED from here on.
                    let payload = b"0123456789abcdef";
                    for (syn, ack) in [(true, false), (false, true)] {
                        let t = tcp_frame([198, 18, 0, 1], 1024, 80, syn, ack, payload);
                        let mut f = t.clone();
                        for i in 0..flows {
                            f.clear();
                            f.extend_from_slice(&t);
                            set_flow(&mut f, base + i);
                            assert_eq!(p.process(now, &mut f), Verdict::Tx(0), "set-up frame");
                        }
                    }
                    let ack = tcp_frame([198, 18, 0, 1], 1024, 80, false, true, payload);
                    let mut port = LoopPort::new(&ack, base, flows);
                    let table = p.table().clone();
                    let hints = Hints::default();
                    start.wait();
                    let t = Instant::now();
                    let cpu0 = thread_cpu_ns();
                    let mut round = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let mut batch = p.batch();
                        let ts = now + round;
                        port.poll_prefetch(
                            0,
                            |stage, f| hints.prefetch(&table, stage, f),
                            |ingress, f| batch.process_hinted(ts, ingress, f, &hints.take()),
                        )
                        .expect("an in-memory port does not fail");
                        round += 1;
                    }
                    let el = t.elapsed().as_secs_f64();
                    let cpu = thread_cpu_ns().saturating_sub(cpu0) as f64;
                    assert_eq!(port.other, 0, "every established packet is forwarded");
                    let n = port.tx.max(1) as f64;
                    (port.tx as f64 / el, cpu / n)
                })
                .expect("spawn a worker")
        })
        .collect();
    start.wait();
    std::thread::sleep(Duration::from_secs_f64(secs.clamp(0.01, 600.0)));
    stop.store(true, Ordering::Relaxed);
    let (per_worker, cpu_ns): (Vec<f64>, Vec<f64>) = handles
        .into_iter()
        .map(|h| h.join().expect("a worker panicked"))
        .unzip();
    WorkersRun {
        workers,
        pps: per_worker.iter().sum(),
        per_worker,
        cpu_ns,
    }
}

/// One worker against `workers`, `reps` times alternately.
#[derive(Debug, Clone)]
pub struct Scaling {
    /// Workers of the second configuration.
    pub workers: usize,
    /// Each worker had its own snapshot (see [`run_once`]).
    pub private: bool,
    /// Connections per worker.
    pub flows: usize,
    /// Packets per second of one worker, per repetition.
    pub one: Vec<f64>,
    /// Packets per second of all `workers`, per repetition.
    pub many: Vec<f64>,
    /// Each repetition's ratio many / one.
    pub ratios: Vec<f64>,
    /// CPU ns per packet of the one worker, per repetition.
    pub one_cpu_ns: Vec<f64>,
    /// CPU ns per packet of the `workers` (their mean), per repetition.
    pub many_cpu_ns: Vec<f64>,
}

/// The goal for two workers: at least this times one worker's rate.
pub const GOAL_RATIO_2: f64 = 1.8;

/// Measure one worker and `workers` workers alternately, `reps` times
/// (`private`: see [`run_once`]).
pub fn scaling(
    workers: usize,
    flows: usize,
    (servers, secs, reps): (u8, f64, usize),
    cores: &[usize],
    private: bool,
) -> Scaling {
    let mut s = Scaling {
        workers,
        private,
        flows,
        one: Vec::new(),
        many: Vec::new(),
        ratios: Vec::new(),
        one_cpu_ns: Vec::new(),
        many_cpu_ns: Vec::new(),
    };
    for rep in 0..reps.max(1) {
        eprintln!("pipeline: rep {}: 1 worker ...", rep + 1);
        let one_run = run_once(1, flows, servers, secs, cores, private);
        let one = one_run.pps;
        eprintln!("pipeline: rep {}: {workers} workers ...", rep + 1);
        let many = run_once(workers, flows, servers, secs, cores, private);
        eprintln!(
            "pipeline: rep {}: {:.2} Mpps, {workers} workers {:.2} Mpps ({})",
            rep + 1,
            one / 1e6,
            many.pps / 1e6,
            many.per_worker
                .iter()
                .map(|p| format!("{:.2}", p / 1e6))
                .collect::<Vec<_>>()
                .join(" + ")
        );
        s.one.push(one);
        s.many.push(many.pps);
        s.ratios.push(many.pps / one.max(1.0));
        s.one_cpu_ns.extend(one_run.cpu_ns.first().copied());
        s.many_cpu_ns
            .push(many.cpu_ns.iter().sum::<f64>() / many.cpu_ns.len().max(1) as f64);
    }
    s
}

/// The result as a table.
pub fn table(s: &Scaling) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let (one, many, r) = (
        Spread::of(&s.one),
        Spread::of(&s.many),
        Spread::of(&s.ratios),
    );
    let _ = writeln!(
        out,
        "pipeline, DR established, {} conns per worker, {} repetitions (1 and {} workers alternately), services {}",
        s.flows,
        s.one.len(),
        s.workers,
        if s.private {
            "private (a snapshot per worker)"
        } else {
            "shared"
        }
    );
    let _ = writeln!(
        out,
        "{:<22} {:>12} {:>12} {:>7} {:>9} {:>8}",
        "", "median", "min", "spread", "goal", "status"
    );
    let _ = writeln!(
        out,
        "{:<22} {:>12} {:>12} {:>6.0}% {:>9} {:>8}",
        "1 worker Mpps",
        format!("{:.2}", one.median / 1e6),
        format!("{:.2}", one.min / 1e6),
        one.pct(),
        "-",
        "-"
    );
    let _ = writeln!(
        out,
        "{:<22} {:>12} {:>12} {:>6.0}% {:>9} {:>8}",
        format!("{} workers Mpps", s.workers),
        format!("{:.2}", many.median / 1e6),
        format!("{:.2}", many.min / 1e6),
        many.pct(),
        "-",
        "-"
    );
    for (what, v) in [
        ("1 worker CPU ns/pkt".to_string(), &s.one_cpu_ns),
        (format!("{} workers CPU ns/pkt", s.workers), &s.many_cpu_ns),
    ] {
        let f = Spread::of(v);
        let _ = writeln!(
            out,
            "{:<22} {:>12} {:>12} {:>6.0}% {:>9} {:>8}",
            what,
            format!("{:.1}", f.median),
            format!("{:.1}", f.min),
            f.pct(),
            "-",
            "-"
        );
    }
    let goal = (s.workers == 2).then_some(GOAL_RATIO_2);
    let _ = writeln!(
        out,
        "{:<22} {:>12} {:>12} {:>6.0}% {:>9} {:>8}",
        format!("{} / 1 workers", s.workers),
        format!("{:.2}x", r.median),
        format!("{:.2}x", r.min),
        r.pct(),
        goal.map_or("-".into(), |g| format!(">= {g:.1}x")),
        goal.map_or("-", |g| if r.median >= g { "met" } else { "NOT met" })
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_workers_forward_every_packet_of_their_own_flows() {
        let r = run_once(2, 500, 3, 0.05, &[], false);
        assert_eq!(r.per_worker.len(), 2);
        assert!(r.per_worker.iter().all(|&p| p > 0.0), "{r:?}");
        let s = scaling(2, 200, (3, 0.02, 1), &[], false);
        let t = table(&s);
        assert!(t.contains("2 / 1 workers"), "{t}");
        assert!(t.contains(">= 1.8x"), "{t}");
    }
}
