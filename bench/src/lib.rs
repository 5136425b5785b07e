//! Benchmarks of xvs: the pipeline in memory (ns per packet on one core)
//! and the AF_XDP forward rate through a real xvsd on a veth pair.

pub mod fwd;
pub mod pipeline;
