//! `xvs-bench micro`: every in-memory microbenchmark in one run and one
//! table: the pipeline per forwarding method (new connection and
//! established packet) over 10k, 1M and 10M live connections, and the
//! schedulers.
//!
//! One run of one case varies by up to 2× on a shared machine (another
//! process's cache traffic, frequency changes, a neighbour VM). So every
//! case runs `--reps` times, the cases interleaved (all cases once, then
//! all again), so a slow period hits every case a little rather than one
//! case entirely; the table gives the minimum, the median and the spread
//! ((max − min) / median), and a goal is met or not by the median. NAT
//! and TUN are held to a ratio to DR, taken per repetition (the two ran
//! moments apart) and then its median. Adding a forwarding method is one
//! line in [`METHODS`].

use crate::pipeline::{self, PipelineResult};
use crate::sched;
use std::fmt::Write;

/// A pipeline benchmark of one forwarding method: `(flows, servers,
/// packets)` → result.
pub type PipelineBench = fn(usize, u8, u64) -> PipelineResult;

/// The forwarding methods benchmarked at every table size, by name (DR
/// first: the others are compared with it).
pub const METHODS: &[(&str, PipelineBench)] = &[
    ("DR", pipeline::run),
    ("NAT in", pipeline::run_nat_in),
    ("NAT out", pipeline::run_nat_out),
    ("TUN", pipeline::run_tun),
    ("DR IPv6", run_dr6),
];

/// Goal of IPv6 DR against IPv4 DR, established path (issue 15: within
/// 1.2×).
pub const GOAL_V6_VS_DR: f64 = 1.2;

/// DR of IPv6 connections, as [`pipeline::run`] measures IPv4's: `flows`
/// new connections (SYN: parse, lookup miss, schedule, insert), then
/// established packets in batches of 64 visiting the flows in a scattered
/// order, from reused frames (DR rewrites only the MACs). The IPv6 table
/// holds `flows` entries; the prefetch pass runs as a worker runs it
/// (it gives IPv6 frames no hints yet, so their lookups are not
/// prefetched).
pub fn run_dr6(flows: usize, servers: u8, packets: u64) -> PipelineResult {
    use std::net::Ipv6Addr;
    use std::sync::Arc;
    use std::time::Instant;
    use xvs_dataplane::conn::table::ConnTable;
    use xvs_dataplane::pipeline::Pipeline;
    use xvs_dataplane::svc::{Fwd, Snapshot};
    use xvs_dataplane::testkit::v6::{service6, tcp6_frame};
    use xvs_dataplane::testkit::DIR_MAC;
    use xvs_dataplane::xmit::tun::TunKind;
    let flows = flows.max(1);
    xvs_dataplane::stats::set_workers(1);
    let fwds = vec![(Fwd::Dr, TunKind::Ipip); usize::from(servers.max(1))];
    let (svc, _dests) = service6("wrr", &fwds, 6, 80, None);
    let snap = Arc::new(Snapshot::of_services(&[svc], Default::default()));
    let mut p = Pipeline::new(snap, 1, DIR_MAC);
    let (t6, mut parts) = ConnTable::<Ipv6Addr>::empty(flows, 1);
    p.set_table6(Arc::new(t6), parts.pop().expect("one partition"));
    p.set_writer(0);
    let now = 1_000_000_000u64;
    let cip: Ipv6Addr = "2001:2:0:1::".parse().expect("an address");
    const BATCH: usize = 64;
    let batches = |p: &mut Pipeline, template: &[u8], n: u64, first: u64| {
        let mut batch: Vec<Vec<u8>> = (0..BATCH).map(|_| template.to_vec()).collect();
        let mut order = pipeline::Scattered::new(flows, first as usize);
        let rounds = n.div_ceil(BATCH as u64);
        pipeline::batches(p, &mut batch, rounds, now, true, &mut order, |f, i| {
            pipeline::set_flow6(f, i)
        })
    };
    let syn = tcp6_frame(cip, 1024, 80, true, false, b"0123456789abcdef");
    let t = Instant::now();
    let cpu0 = pipeline::thread_cpu_ns();
    // Whole batches: a few flows get a second SYN (a lookup hit), as many
    // as the last batch overshoots.
    let sent = batches(&mut p, &syn, flows as u64, 0);
    let ns_per_new_conn = t.elapsed().as_nanos() as f64 / sent as f64;
    let cpu_ns_per_new_conn = pipeline::thread_cpu_ns().saturating_sub(cpu0) as f64 / sent as f64;
    assert_eq!(p.partition6().len(), flows, "every SYN made a connection");
    let ack = tcp6_frame(cip, 1024, 80, false, true, b"0123456789abcdef");
    // One warm-up round: ESTABLISHED from here on.
    batches(&mut p, &ack, flows as u64, 0);
    let n = packets.max(flows as u64).div_ceil(BATCH as u64) * BATCH as u64;
    let t = Instant::now();
    let cpu0 = pipeline::thread_cpu_ns();
    let tx = batches(&mut p, &ack, n, 0);
    let el = t.elapsed().as_nanos() as f64;
    let cpu = pipeline::thread_cpu_ns().saturating_sub(cpu0) as f64;
    assert_eq!(tx, n, "every established IPv6 packet is forwarded");
    PipelineResult {
        flows,
        packets: n,
        ns_per_packet: el / n as f64,
        ns_per_new_conn,
        bytes_per_conn: p.table6().bytes_per_entry(),
        cpu_ns_per_packet: cpu / n as f64,
        cpu_ns_per_new_conn,
    }
}

/// Variants of DR measured at the smallest table only: the cost of
/// completing a partial checksum, by frame size. No goal (the goals are
/// for the plain frames above).
pub const CSUM_VARIANTS: &[(&str, PipelineBench)] = &[
    ("DR 70 B", |f, s, p| {
        pipeline::run_dr_csum(f, s, p, 16, false)
    }),
    ("DR 70 B partial csum", |f, s, p| {
        pipeline::run_dr_csum(f, s, p, 16, true)
    }),
    ("DR 1514 B", |f, s, p| {
        pipeline::run_dr_csum(f, s, p, 1460, false)
    }),
    ("DR 1514 B partial csum", |f, s, p| {
        pipeline::run_dr_csum(f, s, p, 1460, true)
    }),
];

/// Goal of the DR established path, ns per packet, at a table of `flows`
/// connections: 35 up to 10k, 60 above (1M and 10M).
pub fn goal_established_ns(flows: usize) -> f64 {
    if flows <= 10_000 {
        35.0
    } else {
        60.0
    }
}

/// Goal of a new connection (scheduling, insert, rewrite), ns, at a table
/// of `flows` connections: 150 up to 10k, 250 up to 1M, none above.
pub fn goal_new_conn_ns(flows: usize) -> Option<f64> {
    match flows {
        0..=10_000 => Some(150.0),
        10_001..=1_000_000 => Some(250.0),
        _ => None,
    }
}

/// NAT (both directions) and TUN established: at most this times DR at
/// the same table size.
pub const GOAL_VS_DR: f64 = 1.3;

/// Arguments of `xvs-bench micro`.
#[derive(Debug, Clone, clap::Args)]
pub struct MicroArgs {
    /// Table sizes (live connections) of the pipeline runs. 10M takes
    /// about 640 MB and several seconds per case: leave it out for a
    /// quick run.
    #[arg(long, value_delimiter = ',', default_value = "10000,1000000,10000000")]
    pub flows: Vec<usize>,
    /// Packets timed per pipeline run (at least one round of the flows).
    #[arg(long, default_value_t = 20_000_000)]
    pub packets: u64,
    /// Real servers behind the service.
    #[arg(long, default_value_t = 3)]
    pub servers: u8,
    /// Repetitions of every pipeline case, interleaved across the cases.
    #[arg(long, default_value_t = 5)]
    pub reps: usize,
    /// Timed runs per scheduler measurement (median).
    #[arg(long, default_value_t = 5)]
    pub sched_runs: usize,
    /// Skip the schedulers.
    #[arg(long)]
    pub no_sched: bool,
    /// Skip the checksum variants of DR.
    #[arg(long)]
    pub no_csum: bool,
}

/// Minimum, median and maximum of repeated measurements.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    /// Smallest value.
    pub min: f64,
    /// Median (the mean of the middle two for an even count).
    pub median: f64,
    /// Largest value.
    pub max: f64,
}

impl Spread {
    /// The spread of `v` (empty: all zero).
    pub fn of(v: &[f64]) -> Spread {
        if v.is_empty() {
            return Spread {
                min: 0.0,
                median: 0.0,
                max: 0.0,
            };
        }
        let mut s = v.to_vec();
        s.sort_by(f64::total_cmp);
        let n = s.len();
        let median = if n % 2 == 1 {
            s[n / 2]
        } else {
            (s[n / 2 - 1] + s[n / 2]) / 2.0
        };
        Spread {
            min: s[0],
            median,
            max: s[n - 1],
        }
    }

    /// (max − min) / median, in percent.
    pub fn pct(&self) -> f64 {
        if self.median > 0.0 {
            100.0 * (self.max - self.min) / self.median
        } else {
            0.0
        }
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "NOT met"
    }
}

/// `10000` → `10k`, `1000000` → `1M`.
pub fn human(n: usize) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n >= 1_000 && n % 1_000 == 0 => format!("{}k", n / 1_000),
        n => n.to_string(),
    }
}

/// One pipeline case: a method at a table size, and its repetitions.
#[derive(Debug, Clone)]
pub struct Case {
    /// The method's name.
    pub name: &'static str,
    bench: PipelineBench,
    /// Live connections in the table.
    pub flows: usize,
    /// Held to the goals (the checksum variants are not).
    pub goals: bool,
    /// One result per repetition, in order.
    pub runs: Vec<PipelineResult>,
}

/// Everything `micro` measured.
#[derive(Debug, Clone)]
pub struct MicroResult {
    /// Repetitions of every case.
    pub reps: usize,
    /// The table sizes, in order.
    pub flows: Vec<usize>,
    /// The pipeline cases.
    pub cases: Vec<Case>,
    /// The schedulers (unless skipped).
    pub sched: Option<sched::SchedResult>,
}

impl MicroResult {
    /// The case of `name` at `flows`.
    pub fn case(&self, name: &str, flows: usize) -> Option<&Case> {
        self.cases
            .iter()
            .find(|c| c.name == name && c.flows == flows)
    }

    /// Per repetition, `name`'s established cost over DR's at `flows`.
    pub fn vs_dr(&self, name: &str, flows: usize) -> Vec<f64> {
        match (self.case(name, flows), self.case("DR", flows)) {
            (Some(c), Some(dr)) => c
                .runs
                .iter()
                .zip(&dr.runs)
                .map(|(x, d)| x.ns_per_packet / d.ns_per_packet)
                .collect(),
            _ => Vec::new(),
        }
    }
}

impl Case {
    /// ns per established packet, per repetition.
    pub fn est(&self) -> Vec<f64> {
        self.runs.iter().map(|r| r.ns_per_packet).collect()
    }
    /// Thread CPU ns per established packet, per repetition.
    pub fn est_cpu(&self) -> Vec<f64> {
        self.runs.iter().map(|r| r.cpu_ns_per_packet).collect()
    }

    /// Thread CPU ns per new connection, per repetition.
    pub fn new_conn_cpu(&self) -> Vec<f64> {
        self.runs.iter().map(|r| r.cpu_ns_per_new_conn).collect()
    }

    /// ns per new connection, per repetition.
    pub fn new_conn(&self) -> Vec<f64> {
        self.runs.iter().map(|r| r.ns_per_new_conn).collect()
    }
}

/// The header of the table.
const HEADER: [&str; 7] = [
    "benchmark (one core, in memory)",
    "median",
    "min",
    "spread",
    "CPU median",
    "goal",
    "status",
];

fn line(out: &mut String, cols: [&str; 7]) {
    let _ = writeln!(
        out,
        "{:<54} {:>14} {:>14} {:>7} {:>14} {:>9} {:>8}",
        cols[0], cols[1], cols[2], cols[3], cols[4], cols[5], cols[6]
    );
}

/// A row of repeated measurements `v` in `unit` (and the thread's CPU
/// time of the same runs, `cpu`), with an upper-bound goal on `v`.
fn row(
    out: &mut String,
    what: &str,
    (v, cpu): (&[f64], Option<Vec<f64>>),
    unit: &str,
    goal: Option<(f64, String)>,
) {
    let s = Spread::of(v);
    let (g, ok) = match goal {
        Some((g, shown)) => (shown, verdict(s.median <= g)),
        None => ("-".into(), "-"),
    };
    let fmt = |v: f64| {
        if unit == "x" {
            format!("{v:.2}x")
        } else {
            format!("{v:.1} {unit}")
        }
    };
    line(
        out,
        [
            what,
            &fmt(s.median),
            &fmt(s.min),
            &format!("{:.0}%", s.pct()),
            &cpu.map_or("-".into(), |c| fmt(Spread::of(&c).median)),
            &g,
            ok,
        ],
    );
}

/// Run everything and return the summary table.
pub fn run(a: &MicroArgs) -> String {
    table(&measure(a))
}

/// Run every case `--reps` times, interleaved, and the schedulers.
pub fn measure(a: &MicroArgs) -> MicroResult {
    let reps = a.reps.max(1);
    let mut cases: Vec<Case> = Vec::new();
    for &flows in &a.flows {
        for &(name, bench) in METHODS {
            cases.push(Case {
                name,
                bench,
                flows,
                goals: true,
                runs: Vec::new(),
            });
        }
    }
    if !a.no_csum {
        if let Some(&flows) = a.flows.first() {
            for &(name, bench) in CSUM_VARIANTS {
                cases.push(Case {
                    name,
                    bench,
                    flows,
                    goals: false,
                    runs: Vec::new(),
                });
            }
        }
    }
    for rep in 0..reps {
        for c in cases.iter_mut() {
            eprintln!(
                "micro: rep {}/{reps}: pipeline {}, {} conns ...",
                rep + 1,
                c.name,
                human(c.flows)
            );
            c.runs.push((c.bench)(c.flows, a.servers, a.packets));
        }
    }
    let sched = (!a.no_sched).then(|| {
        eprintln!("micro: schedulers ...");
        sched::run(a.sched_runs)
    });
    MicroResult {
        reps,
        flows: a.flows.clone(),
        cases,
        sched,
    }
}

/// The result as the text table: median, minimum, spread, goal, status.
pub fn table(r: &MicroResult) -> String {
    let (reps, cases) = (r.reps, &r.cases);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{reps} repetitions of every pipeline case, interleaved; goals judged on the median (wall time); CPU: the thread's own time, without preemption"
    );
    line(&mut out, HEADER);
    for c in cases {
        let size = human(c.flows);
        let est_goal = c.goals && c.name == "DR";
        let g = goal_established_ns(c.flows);
        row(
            &mut out,
            &format!("pipeline {} established, {size} conns", c.name),
            (&c.est(), Some(c.est_cpu())),
            "ns/pkt",
            est_goal.then(|| (g, format!("<= {g:.0}"))),
        );
        if c.goals && c.name != "DR" {
            let ratios = r.vs_dr(c.name, c.flows);
            if !ratios.is_empty() {
                let g = if c.name == "DR IPv6" {
                    GOAL_V6_VS_DR
                } else {
                    GOAL_VS_DR
                };
                row(
                    &mut out,
                    &format!("  {} / DR established, {size} conns", c.name),
                    (&ratios, None),
                    "x",
                    Some((g, format!("<= {g:.1}x"))),
                );
            }
        }
        if c.goals {
            let ng = goal_new_conn_ns(c.flows);
            row(
                &mut out,
                &format!("pipeline {} new connection, {size} conns", c.name),
                (&c.new_conn(), Some(c.new_conn_cpu())),
                "ns/conn",
                ng.map(|g| (g, format!("<= {g:.0}"))),
            );
        }
    }
    for &flows in &r.flows {
        if let Some(r) = cases
            .iter()
            .find(|c| c.flows == flows)
            .and_then(|c| c.runs.first())
        {
            line(
                &mut out,
                [
                    &format!("conn table memory, {} conns", human(flows)),
                    &format!("{:.1} B/conn", r.bytes_per_conn),
                    "-",
                    "-",
                    "-",
                    "-",
                    "-",
                ],
            );
        }
    }
    if let Some(r) = &r.sched {
        let sizes: Vec<String> = sched::SIZES.iter().map(|n| n.to_string()).collect();
        for row in &r.rows {
            let vals: Vec<String> = row.ns.iter().map(|v| format!("{v:.0}")).collect();
            let _ = writeln!(
                out,
                "{:<54} {:>14} {:>14} {:>7} {:>14} {:>9} {:>8}",
                format!("sched {} ns, {} dests", row.name, sizes.join("/")),
                vals.join("/"),
                "-",
                "-",
                "-",
                format!("<{:.0}/<{:.0}", row.goal_ns(), row.goal_1000_ns()),
                verdict(row.met())
            );
        }
        let _ = writeln!(
            out,
            "{:<54} {:>14} {:>14} {:>7} {:>14} {:>9} {:>8}",
            "sched mh table rebuild, 1000 dests",
            format!("{:.2} ms", r.mh_rebuild_ms),
            "-",
            "-",
            "-",
            "< 10 ms",
            verdict(r.mh_rebuild_ms < 10.0)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_takes_the_median_and_the_range() {
        let s = Spread::of(&[30.0, 10.0, 20.0, 100.0, 25.0]);
        assert_eq!((s.min, s.median, s.max), (10.0, 25.0, 100.0));
        assert!((s.pct() - 360.0).abs() < 1e-9);
        assert_eq!(Spread::of(&[1.0, 3.0]).median, 2.0);
        assert_eq!(Spread::of(&[]).median, 0.0);
    }

    #[test]
    fn goals_follow_the_table_size() {
        assert_eq!(goal_established_ns(10_000), 35.0);
        assert_eq!(goal_established_ns(1_000_000), 60.0);
        assert_eq!(goal_established_ns(10_000_000), 60.0);
        assert_eq!(goal_new_conn_ns(10_000), Some(150.0));
        assert_eq!(goal_new_conn_ns(1_000_000), Some(250.0));
        assert_eq!(goal_new_conn_ns(10_000_000), None);
    }

    #[test]
    fn small_run_produces_a_table_with_every_case_and_ratio() {
        let t = run(&MicroArgs {
            flows: vec![1000],
            packets: 10_000,
            servers: 3,
            reps: 2,
            sched_runs: 1,
            no_sched: true,
            no_csum: false,
        });
        for want in [
            "pipeline DR established, 1k conns",
            "pipeline DR new connection, 1k conns",
            "NAT in / DR established, 1k conns",
            "NAT out / DR established, 1k conns",
            "TUN / DR established, 1k conns",
            "DR IPv6 / DR established, 1k conns",
            "pipeline DR IPv6 new connection, 1k conns",
            "pipeline DR 1514 B partial csum established, 1k conns",
            "conn table memory, 1k conns",
            "2 repetitions",
        ] {
            assert!(t.contains(want), "{want} missing from\n{t}");
        }
        assert_eq!(human(10_000_000), "10M");
    }
}
