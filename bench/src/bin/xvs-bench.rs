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
    /// ns per packet of the in-memory pipeline on established DR flows.
    Pipeline {
        /// Established flows to cycle through.
        #[arg(long, default_value_t = 10_000)]
        flows: usize,
        /// Real servers behind the service.
        #[arg(long, default_value_t = 3)]
        servers: u8,
        /// Packets to time (at least).
        #[arg(long, default_value_t = 20_000_000)]
        packets: u64,
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
    /// The AF_XDP generator `fwd` runs inside its namespace.
    Gen {
        #[arg(long)]
        iface: String,
        #[arg(long)]
        src_mac: String,
        #[arg(long)]
        dst_mac: String,
        #[arg(long, default_value_t = 1000)]
        flows: u16,
        #[arg(long, default_value_t = 64)]
        size: usize,
        #[arg(long, default_value_t = 5.0)]
        secs: f64,
        /// Stop after this many frames.
        #[arg(long, default_value_t = 100_000_000)]
        max: u64,
    },
}

fn mac(s: &str) -> [u8; 6] {
    xvs_dataplane::director::parse_mac(s).unwrap_or_else(|| {
        eprintln!("xvs-bench: bad MAC {s:?}");
        std::process::exit(2)
    })
}

fn main() {
    match Cli::parse().cmd {
        Cmd::Pipeline {
            flows,
            servers,
            packets,
        } => {
            let r = xvs_bench::pipeline::run(flows, servers, packets);
            println!(
                "pipeline DR established: {:.1} ns/packet ({} packets over {} flows); new connection: {:.1} ns",
                r.ns_per_packet, r.packets, r.flows, r.ns_per_new_conn
            );
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
        Cmd::Gen {
            iface,
            src_mac,
            dst_mac,
            flows,
            size,
            secs,
            max,
        } => match xvs_bench::fwd::generate(&iface, mac(&src_mac), mac(&dst_mac), flows, size, secs.clamp(0.0, 60.0), max) {
            Ok(n) => xvs_bench::fwd::print_sent(n),
            Err(e) => {
                eprintln!("xvs-bench gen: {e}");
                std::process::exit(1);
            }
        },
    }
}
