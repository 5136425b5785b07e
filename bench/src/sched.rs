//! Microbenchmark of the schedulers: the cost of one `schedule()` call of
//! every IPVS scheduler over 1, 10, 100 and 1000 destinations, and the time
//! Maglev takes to rebuild its table for 1000 destinations.
//!
//! `schedule()` runs under the service's lock on every new connection, so
//! its cost bounds the new-connection rate of a service. The destinations
//! carry varied weights and connection counts (so the least-connection
//! family compares for real), and the flows vary in client address, port
//! and virtual address (so the hashing and locality schedulers touch
//! different buckets and cache entries instead of one hot line).
//!
//! Two figures per scheduler and size: the decision alone, with counts
//! that do not change, and the decision under churn, where every call is
//! followed by what the data plane does around it (bind one connection to
//! the chosen server, close the one opened [`WINDOW`] calls earlier), so
//! the least-load schedulers pay for following changing loads. The goal
//! (≤ 50 ns at 100 destinations, ≤ 100 ns at 1000) applies to both.

use std::collections::VecDeque;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::Ordering;
use std::time::Instant;
use xvs_scheduler::{Dest, Flow, Scheduler, NAMES};

/// Destination counts measured.
pub const SIZES: [usize; 4] = [1, 10, 100, 1000];
/// Distinct flows cycled through (a power of two).
const FLOWS: usize = 4096;
/// Distinct virtual addresses among the flows (for dh, lblc, lblcr).
const VIPS: u32 = 1024;

/// Connections open per service in the churn runs: each call closes the
/// connection bound this many calls earlier.
pub const WINDOW: usize = 1024;

/// Cost of one scheduler at every destination count.
#[derive(Debug, Clone)]
pub struct SchedRow {
    /// Scheduler name.
    pub name: &'static str,
    /// Median ns per `schedule()` with unchanging counts, one per entry
    /// of [`SIZES`].
    pub ns: Vec<f64>,
    /// Median ns per `schedule()` plus one bind and one unbind, one per
    /// entry of [`SIZES`].
    pub churn_ns: Vec<f64>,
}

/// The value of `v` at `n` destinations.
fn at(v: &[f64], n: usize) -> f64 {
    let i = SIZES.iter().position(|&s| s == n).unwrap_or(0);
    v.get(i).copied().unwrap_or(f64::NAN)
}

impl SchedRow {
    /// The goal at 100 destinations, in ns.
    pub fn goal_ns(&self) -> f64 {
        50.0
    }

    /// The goal at 1000 destinations, in ns.
    pub fn goal_1000_ns(&self) -> f64 {
        100.0
    }

    /// The measured cost at 100 destinations (unchanging counts).
    pub fn at_100(&self) -> f64 {
        at(&self.ns, 100)
    }

    /// Whether both figures meet both goals (NaN never does).
    pub fn met(&self) -> bool {
        [&self.ns, &self.churn_ns]
            .iter()
            .all(|v| at(v, 100) <= self.goal_ns() && at(v, 1000) <= self.goal_1000_ns())
    }
}

/// Result of a full run.
#[derive(Debug, Clone)]
pub struct SchedResult {
    /// One row per scheduler, in ipvsadm(8) order.
    pub rows: Vec<SchedRow>,
    /// Median Maglev table rebuild time for 1000 destinations, in ms.
    pub mh_rebuild_ms: f64,
    /// Runs each median was taken over.
    pub runs: usize,
}

/// Real server `i`: an address in 198.18.0.0/15, weights 1..=8 and
/// connection counts spread so that no two neighbours look alike.
pub fn dests(n: usize) -> Vec<Dest> {
    (0..n)
        .map(|i| {
            let k = i as u32;
            let addr = IpAddr::V4(Ipv4Addr::from(0xC612_0000 | (k + 1)));
            let d = Dest::new(addr, 80, 1 + (i % 8) as i32);
            let mix = k.wrapping_mul(2_654_435_761);
            d.load.active.store(mix % 13, Ordering::Relaxed);
            d.load.inactive.store((mix >> 8) % 29, Ordering::Relaxed);
            d
        })
        .collect()
}

/// The flows cycled through: client 198.19.x.y (varied), source port,
/// virtual address 198.18.128.0 + (i mod VIPS).
pub fn flows() -> Vec<Flow> {
    (0..FLOWS as u32)
        .map(|i| {
            let mix = i.wrapping_mul(0x9E37_79B9);
            Flow {
                proto: 6,
                saddr: IpAddr::V4(Ipv4Addr::from(0xC613_0000 | (mix >> 16))),
                sport: 1024 + (mix & 0x7fff) as u16,
                daddr: IpAddr::V4(Ipv4Addr::from(0xC612_8000 | (i % VIPS))),
                dport: 80,
            }
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Median ns per `schedule()` of `sched` over `dests` (already updated),
/// `runs` timed runs of `iters` calls each after one warm-up run.
fn time_schedule(
    sched: &mut dyn Scheduler,
    dests: &[Dest],
    flows: &[Flow],
    iters: usize,
    runs: usize,
) -> f64 {
    let mask = flows.len() - 1;
    // The clock the cache schedulers see: advancing, far below 24 h.
    let mut now = 1_000_000_000u64;
    let mut one_run = |sched: &mut dyn Scheduler| {
        let t = Instant::now();
        for k in 0..iters {
            now += 1000;
            let f = &flows[k & mask];
            black_box(sched.schedule(black_box(dests), f, now));
        }
        t.elapsed().as_nanos() as f64 / iters as f64
    };
    one_run(sched);
    median((0..runs).map(|_| one_run(sched)).collect())
}

/// Like [`time_schedule`], but every call is followed by a bind on the
/// chosen destination and the unbind of the connection bound [`WINDOW`]
/// calls earlier, as the data plane does (counters, overload flag and
/// change report). Counts are restored afterwards.
fn time_churn(
    sched: &mut dyn Scheduler,
    dests: &[Dest],
    flows: &[Flow],
    iters: usize,
    runs: usize,
) -> f64 {
    let mask = flows.len() - 1;
    let mut now = 1_000_000_000u64;
    let mut open: VecDeque<usize> = VecDeque::with_capacity(WINDOW + 1);
    let mut one_run = |sched: &mut dyn Scheduler, open: &mut VecDeque<usize>| {
        let t = Instant::now();
        for k in 0..iters {
            now += 1000;
            let f = &flows[k & mask];
            if let Some(i) = sched.schedule(black_box(dests), f, now) {
                let d = &dests[i];
                d.load.active.fetch_add(1, Ordering::Relaxed);
                d.note_bound();
                open.push_back(i);
            }
            if open.len() > WINDOW {
                if let Some(j) = open.pop_front() {
                    let d = &dests[j];
                    d.load.active.fetch_sub(1, Ordering::Relaxed);
                    d.note_unbound();
                }
            }
        }
        t.elapsed().as_nanos() as f64 / iters as f64
    };
    one_run(sched, &mut open);
    let m = median((0..runs).map(|_| one_run(sched, &mut open)).collect());
    for j in open {
        let d = &dests[j];
        d.load.active.fetch_sub(1, Ordering::Relaxed);
        d.note_unbound();
    }
    m
}

/// Calls per timed run for `n` destinations: about the same total work
/// whatever the size, enough to cover every flow several times.
fn iters_for(n: usize) -> usize {
    match n {
        0..=10 => 400_000,
        11..=100 => 200_000,
        _ => 40_000,
    }
}

/// Measure every scheduler at every size, and the mh rebuild.
pub fn run(runs: usize) -> SchedResult {
    let runs = runs.max(1);
    let flows = flows();
    let mut rows = Vec::new();
    for &name in NAMES {
        let mut ns = Vec::new();
        let mut churn_ns = Vec::new();
        for &n in &SIZES {
            let ds = dests(n);
            // The flags that make sh and mh do the most work per call.
            let flags = xvs_scheduler::SCHED_FLAG_1 | xvs_scheduler::SCHED_FLAG_2;
            let mut s = xvs_scheduler::new(name, flags).expect("every listed name exists");
            s.update(&ds);
            ns.push(time_schedule(s.as_mut(), &ds, &flows, iters_for(n), runs));
            churn_ns.push(time_churn(s.as_mut(), &ds, &flows, iters_for(n), runs));
        }
        rows.push(SchedRow { name, ns, churn_ns });
    }
    let ds = dests(1000);
    let mut mh = xvs_scheduler::MaglevHash::new(0);
    mh.update(&ds);
    let mh_rebuild_ms = median(
        (0..runs)
            .map(|_| {
                let t = Instant::now();
                mh.update(black_box(&ds));
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect(),
    );
    SchedResult {
        rows,
        mh_rebuild_ms,
        runs,
    }
}

/// The result as a table, one line per scheduler: the decision alone,
/// then under churn, each with its goals and verdict.
pub fn table(r: &SchedResult) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "ns per schedule() (median of {} runs), by number of destinations;",
        r.runs
    );
    let _ = writeln!(
        out,
        "'static': counts unchanged; 'churn': each call also binds one connection and closes one ({WINDOW} open)"
    );
    let _ = write!(out, "{:<6} {:<6}", "sched", "loads");
    for n in SIZES {
        let _ = write!(out, " {:>9}", format!("n={n}"));
    }
    let _ = writeln!(out, "  goal@100 goal@1000");
    let mut missed = Vec::new();
    for row in &r.rows {
        for (label, v) in [("static", &row.ns), ("churn", &row.churn_ns)] {
            let _ = write!(out, "{:<6} {:<6}", row.name, label);
            for x in v {
                let _ = write!(out, " {x:>9.1}");
            }
            let ok = at(v, 100) <= row.goal_ns() && at(v, 1000) <= row.goal_1000_ns();
            let _ = writeln!(
                out,
                "  <={:<7.0} <={:<7.0} {}",
                row.goal_ns(),
                row.goal_1000_ns(),
                if ok { "met" } else { "NOT MET" }
            );
        }
        if !row.met() {
            missed.push(row.name);
        }
    }
    let mh_ok = r.mh_rebuild_ms < 10.0;
    let _ = writeln!(
        out,
        "mh table rebuild, 1000 destinations: {:.3} ms (goal <10 ms {})",
        r.mh_rebuild_ms,
        if mh_ok { "met" } else { "NOT MET" }
    );
    if !mh_ok {
        missed.push("mh rebuild");
    }
    if missed.is_empty() {
        let _ = writeln!(out, "all goals met");
    } else {
        let _ = writeln!(out, "goals not met: {}", missed.join(", "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_stay_in_the_benchmark_range() {
        for d in dests(1000) {
            let IpAddr::V4(a) = d.addr else {
                panic!("v4 only")
            };
            assert_eq!(a.octets()[..2], [198, 18]);
            assert!((1..=8).contains(&d.weight));
        }
        let f = flows();
        assert_eq!(f.len(), FLOWS);
        assert!(f.len().is_power_of_two());
        for fl in &f {
            let (IpAddr::V4(s), IpAddr::V4(d)) = (fl.saddr, fl.daddr) else {
                panic!("v4 only")
            };
            assert_eq!(s.octets()[..2], [198, 19]);
            assert_eq!(d.octets()[..2], [198, 18]);
        }
    }

    #[test]
    fn table_flags_missed_goals() {
        let r = SchedResult {
            rows: vec![
                SchedRow {
                    name: "rr",
                    ns: vec![1.0, 2.0, 3.0, 4.0],
                    churn_ns: vec![1.0, 2.0, 3.0, 4.0],
                },
                SchedRow {
                    name: "lblcr",
                    ns: vec![1.0, 2.0, 50.0, 4.0],
                    churn_ns: vec![1.0, 2.0, 3.0, 101.0],
                },
                SchedRow {
                    name: "wlc",
                    ns: vec![1.0, 2.0, 51.0, 4.0],
                    churn_ns: vec![1.0, 2.0, 3.0, 4.0],
                },
            ],
            mh_rebuild_ms: 1.5,
            runs: 3,
        };
        let t = table(&r);
        assert!(t.contains("rr"), "{t}");
        assert!(t.contains("goals not met: lblcr, wlc"), "{t}");
        assert!(r.rows[0].met() && !r.rows[1].met() && !r.rows[2].met());
        assert!(t.contains("1.500 ms"), "{t}");
    }
}
