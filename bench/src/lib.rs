//! Benchmarks of xvs: the pipeline in memory (ns per packet on one core),
//! the AF_XDP forward rate through a real xvsd on a veth pair, and the
//! side-by-side comparison with an AF_XDP reflector and nftables DNAT
//! (generator, sink, reflector, chart), and what connection sync costs.

pub mod chart;
pub mod compare;
pub mod fwd;
pub mod gen;
pub mod micro;
pub mod pipeline;
pub mod reflect;
pub mod report;
pub mod restore;
pub mod sched;
pub mod sink;
pub mod sync;
pub mod traffic;
pub mod workers;
