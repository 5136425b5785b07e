//! `xvs-bench micro`: every in-memory microbenchmark in one run and one
//! table: the pipeline per forwarding method (new connection and
//! established packet), the connection table at growing sizes (the same
//! pipeline run over 10k, 1M and 10M live connections) and the
//! schedulers. Adding a forwarding method is one line in [`METHODS`].

use crate::pipeline::{self, PipelineResult};
use crate::sched;
use std::fmt::Write;

/// A pipeline benchmark of one forwarding method: `(flows, servers,
/// packets)` → result.
pub type PipelineBench = fn(usize, u8, u64) -> PipelineResult;

/// The forwarding methods benchmarked, by name.
pub const METHODS: &[(&str, PipelineBench)] = &[
    ("DR", pipeline::run),
    ("NAT in", pipeline::run_nat_in),
    ("NAT out", pipeline::run_nat_out),
    ("TUN", pipeline::run_tun),
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

/// Goal of the established path at the smallest table, ns per packet.
pub const GOAL_ESTABLISHED_NS: f64 = 35.0;
/// Goal of a new connection at the smallest table, ns.
pub const GOAL_NEW_CONN_NS: f64 = 150.0;

/// Arguments of `xvs-bench micro`.
#[derive(Debug, Clone, clap::Args)]
pub struct MicroArgs {
    /// Table sizes (live connections) of the pipeline runs; the goals are
    /// checked on the first.
    #[arg(long, value_delimiter = ',', default_value = "10000,1000000,10000000")]
    pub flows: Vec<usize>,
    /// Packets timed per pipeline run (at least one round of the flows).
    #[arg(long, default_value_t = 20_000_000)]
    pub packets: u64,
    /// Real servers behind the service.
    #[arg(long, default_value_t = 3)]
    pub servers: u8,
    /// Timed runs per scheduler measurement (median).
    #[arg(long, default_value_t = 5)]
    pub sched_runs: usize,
    /// Skip the schedulers.
    #[arg(long)]
    pub no_sched: bool,
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "NOT met"
    }
}

fn human(n: usize) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n >= 1_000 && n % 1_000 == 0 => format!("{}k", n / 1_000),
        n => n.to_string(),
    }
}

/// Run everything and return the summary table.
pub fn run(a: &MicroArgs) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<44} {:>16} {:>10} {:>8}",
        "benchmark (one core, in memory)", "result", "goal", "status"
    );
    for (name, bench) in METHODS {
        for (i, &flows) in a.flows.iter().enumerate() {
            eprintln!("micro: pipeline {name}, {flows} flows ...");
            let r = bench(flows, a.servers, a.packets);
            let first = i == 0;
            let row = |out: &mut String, what: String, v: f64, unit: &str, goal: Option<f64>| {
                let (g, s) = match goal {
                    Some(g) => (format!("< {g:.0}"), verdict(v < g)),
                    None => ("-".into(), "-"),
                };
                let _ = writeln!(
                    out,
                    "{what:<44} {:>16} {g:>10} {s:>8}",
                    format!("{v:.1} {unit}")
                );
            };
            row(
                &mut out,
                format!("pipeline {name} established, {} conns", human(flows)),
                r.ns_per_packet,
                "ns/pkt",
                first.then_some(GOAL_ESTABLISHED_NS),
            );
            row(
                &mut out,
                format!("pipeline {name} new connection, {} conns", human(flows)),
                r.ns_per_new_conn,
                "ns/conn",
                first.then_some(GOAL_NEW_CONN_NS),
            );
            row(
                &mut out,
                format!("conn table memory, {} conns", human(flows)),
                r.bytes_per_conn,
                "B/conn",
                None,
            );
        }
    }
    if !a.no_sched {
        eprintln!("micro: schedulers ...");
        let r = sched::run(a.sched_runs);
        let sizes: Vec<String> = sched::SIZES.iter().map(|n| n.to_string()).collect();
        for row in &r.rows {
            let vals: Vec<String> = row.ns.iter().map(|v| format!("{v:.0}")).collect();
            let _ = writeln!(
                out,
                "{:<44} {:>16} {:>10} {:>8}",
                format!("sched {} ns, {} dests", row.name, sizes.join("/")),
                vals.join("/"),
                format!("<{:.0}/<{:.0}", row.goal_ns(), row.goal_1000_ns()),
                verdict(row.met())
            );
        }
        let _ = writeln!(
            out,
            "{:<44} {:>16} {:>10} {:>8}",
            "sched mh table rebuild, 1000 dests",
            format!("{:.2} ms", r.mh_rebuild_ms),
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
    fn small_run_produces_a_table() {
        let t = run(&MicroArgs {
            flows: vec![1000],
            packets: 10_000,
            servers: 3,
            sched_runs: 1,
            no_sched: true,
        });
        assert!(t.contains("pipeline DR established, 1k conns"), "{t}");
        assert_eq!(human(10_000_000), "10M");
    }
}
