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
    }
}
