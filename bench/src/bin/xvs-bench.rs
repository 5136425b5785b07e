//! `xvs-bench`: benchmarks of xvs (see the subcommands' help).

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xvs-bench", about = "Benchmarks of the xvs load balancer")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// ns per packet of the in-memory pipeline: new connections and
    /// established DR flows (one run per --flows value); with --workers,
    /// the packet rate of one worker against that many on their own
    /// cores, sharing the services and the table.
    Pipeline {
        /// Established flows to cycle through (comma list); with
        /// --workers, connections per worker (the first value).
        #[arg(long, value_delimiter = ',', default_value = "10000")]
        flows: Vec<usize>,
        /// Real servers behind the service.
        #[arg(long, default_value_t = 3)]
        servers: u8,
        /// Packets to time (at least).
        #[arg(long, default_value_t = 20_000_000)]
        packets: u64,
        /// Compare one worker with this many (one partition and one core
        /// each).
        #[arg(long)]
        workers: Option<usize>,
        /// Seconds per timed run (with --workers).
        #[arg(long, default_value_t = 2.0)]
        secs: f64,
        /// Repetitions, alternating one worker and --workers (with
        /// --workers).
        #[arg(long, default_value_t = 3)]
        reps: usize,
        /// Cores of the workers, e.g. 0,1 (default: every core, in order).
        #[arg(long, value_delimiter = ',')]
        cores: Vec<usize>,
        /// Give each worker a snapshot of its own instead of sharing the
        /// services (a diagnosis: what sharing them costs).
        #[arg(long)]
        private_services: bool,
    },
    /// ns per schedule() of every scheduler at 1..1000 destinations, and
    /// the mh table rebuild time.
    Sched {
        /// Timed runs per measurement (the median is printed).
        #[arg(long, default_value_t = 7)]
        runs: usize,
    },
    /// AF_XDP forward rate through xvsd (DR) on a veth pair (needs root).
    Fwd {
        /// Seconds to send for.
        #[arg(long, default_value_t = 5.0)]
        secs: f64,
        /// Distinct flows (UDP source ports).
        #[arg(long, default_value_t = 1000)]
        flows: u16,
        /// Frame size in bytes, FCS included.
        #[arg(long, default_value_t = 64)]
        size: usize,
    },
    /// Time `xvsadm -R` of a large table in the control plane (restore,
    /// save, first snapshot build).
    Restore {
        /// Virtual services.
        #[arg(long, default_value_t = 10_000)]
        services: usize,
        /// Real servers per service.
        #[arg(long, default_value_t = 10)]
        dests: usize,
        /// Timed runs (the median is printed).
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
    /// AF_XDP packet generator (with --rx also the sink: the tester).
    Gen(xvs_bench::gen::GenArgs),
    /// AF_XDP sink: counts, loss, reordering, one-way latency.
    Sink(xvs_bench::sink::SinkArgs),
    /// MAC-swapping AF_XDP reflector (the ceiling of a forwarder).
    Reflect(xvs_bench::reflect::ReflectArgs),
    /// The same traffic through the reflector, xvs DR/TUN/NAT and nftables
    /// DNAT on a namespace topology built here: table, JSON and chart.
    Compare(xvs_bench::compare::CompareArgs),
    /// Every in-memory microbenchmark (pipeline per method, connection
    /// table sizes, schedulers) in one table.
    Micro(xvs_bench::micro::MicroArgs),
    /// What connection sync costs: records and bytes per short and
    /// long-lived connection, and the sender's, receiver's and one
    /// installing worker's records per second (in memory and loopback).
    Sync(xvs_bench::sync::SyncArgs),
    /// The whole set (micro, two workers, compare) as the Markdown of
    /// README's Performance section, with the date and the machine.
    Report(xvs_bench::report::ReportArgs),
}

fn main() {
    match Cli::parse().cmd {
        Cmd::Pipeline {
            flows,
            servers,
            workers: Some(workers),
            secs,
            reps,
            cores,
            private_services,
            ..
        } => {
            let cores = if cores.is_empty() {
                core_affinity::get_core_ids()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|c| c.id)
                    .collect()
            } else {
                cores
            };
            let per_worker = flows.first().copied().unwrap_or(10_000);
            let s = xvs_bench::workers::scaling(
                workers,
                per_worker,
                (servers, secs, reps),
                &cores,
                private_services,
            );
            print!("{}", xvs_bench::workers::table(&s));
        }
        Cmd::Pipeline {
            flows,
            servers,
            packets,
            workers: None,
            ..
        } => {
            println!("{:>10} {:>14} {:>14} {:>12}", "flows", "estab ns/pkt", "new conn ns", "bytes/conn");
            for f in flows {
                let r = xvs_bench::pipeline::run(f, servers, packets);
                println!(
                    "{:>10} {:>14.1} {:>14.1} {:>12.1}",
                    r.flows, r.ns_per_packet, r.ns_per_new_conn, r.bytes_per_conn
                );
            }
        }
        Cmd::Restore {
            services,
            dests,
            runs,
        } => {
            let r = xvs_bench::restore::run(services, dests, runs.clamp(1, 100));
            println!(
                "restore of {} services x {} servers ({} rules, {} bytes): restore {:.1} ms, save {:.1} ms, snapshot build {:.1} ms (median of {runs})",
                r.services,
                r.dests,
                r.lines,
                r.bytes,
                r.restore.as_secs_f64() * 1e3,
                r.save.as_secs_f64() * 1e3,
                r.snapshot.as_secs_f64() * 1e3,
            );
        }
        Cmd::Sched { runs } => {
            print!("{}", xvs_bench::sched::table(&xvs_bench::sched::run(runs)));
        }
        Cmd::Fwd { secs, flows, size } => match xvs_bench::fwd::run(secs.clamp(0.1, 60.0), flows, size) {
            Ok(r) => println!(
                "afxdp DR forward on veth: {:.3} Mpps forwarded of {:.3} Mpps offered ({} of {} frames in {:.1} s, {size}-byte frames, {flows} flows)",
                r.fwd_mpps(),
                r.sent_mpps(),
                r.forwarded,
                r.sent,
                r.secs
            ),
            Err(e) => {
                eprintln!("xvs-bench fwd: {e}");
                std::process::exit(1);
            }
        },
        Cmd::Gen(a) => std::process::exit(xvs_bench::gen::main(&a)),
        Cmd::Sink(a) => match xvs_bench::sink::main(&a) {
            Ok(r) => println!("{}", serde_json::to_string(&r).expect("a report serialises")),
            Err(e) => {
                eprintln!("xvs-bench sink: {e}");
                std::process::exit(1);
            }
        },
        Cmd::Reflect(a) => match xvs_bench::reflect::main(&a) {
            Ok(n) => eprintln!("reflect: {n} frames"),
            Err(e) => {
                eprintln!("xvs-bench reflect: {e}");
                std::process::exit(1);
            }
        },
        Cmd::Compare(a) => std::process::exit(xvs_bench::compare::main(&a)),
        Cmd::Micro(a) => print!("{}", xvs_bench::micro::run(&a)),
        Cmd::Sync(a) => match xvs_bench::sync::run(&a) {
            Ok(r) if a.json => {
                println!("{}", serde_json::to_string(&r).expect("a report serialises"))
            }
            Ok(r) => print!("{}", xvs_bench::sync::text(&r)),
            Err(e) => {
                eprintln!("xvs-bench sync: {e}");
                std::process::exit(1);
            }
        },
        Cmd::Report(a) => match xvs_bench::report::run(&a) {
            Ok(md) => print!("{md}"),
            Err(e) => {
                eprintln!("xvs-bench report: {e}");
                std::process::exit(1);
            }
        },
    }
}
