//! The cost of a new connection, in instructions: the first packet (a
//! client's SYN) of `FLOWS` distinct flows through each `xvs-bench micro`
//! case (DR, NAT, TUN over IPv4, then DR over IPv6), each case's SYNs in one
//! `#[inline(never)]` function, [`syn_phase`], so that a profiler counts
//! that phase alone. Wall-clock figures of a new connection on a shared
//! machine vary by 2x between runs; instruction counts do not, so this is
//! what shows whether a change to the new-connection path made it cheaper.
//!
//! ```text
//! cargo build --release -p xvs-bench --example newconn_icount
//! valgrind --tool=callgrind --collect-atstart=no \
//!     --toggle-collect='newconn_icount::syn_phase' \
//!     --dump-after='newconn_icount::syn_phase' \
//!     target/release/examples/newconn_icount 10000
//! ```
//!
//! gives one dump per case, in the order above; each dump's total divided
//! by `FLOWS` is the instructions per new connection (scheduling, insert,
//! rewrite, and the batch's prefetch pass). Every SYN must be sent: the
//! run stops on an assertion otherwise.
use std::net::Ipv6Addr;
use std::sync::Arc;
use xvs_bench::pipeline::send_syns;
use xvs_dataplane::conn::state::Timeouts;
use xvs_dataplane::conn::table::ConnTable;
use xvs_dataplane::frame::FixedFrame;
use xvs_dataplane::pipeline::Pipeline;
use xvs_dataplane::svc::{Fwd, Snapshot};
use xvs_dataplane::testkit::v6::{service6, tcp6_frame};
use xvs_dataplane::testkit::{service_with, tcp_frame, DIR_MAC};
use xvs_dataplane::xmit::tun::TunKind;

/// Send the SYN of each of `flows` clients (the address of `syn` varied
/// per client) through `p` in batches of 64, with the prefetch pass the
/// worker runs; returns how many were sent on port 0.
#[inline(never)]
fn syn_phase(p: &mut Pipeline, syn: &FixedFrame, flows: usize, v6: bool) -> usize {
    let mut batch: Vec<FixedFrame> = (0..64).map(|_| syn.clone()).collect();
    send_syns(p, &mut batch, syn, flows, v6, 1_000_000_000)
}

fn main() {
    let flows: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse().unwrap())
        .unwrap_or(10000);
    xvs_dataplane::stats::set_workers(1);
    for fwd in [Fwd::Dr, Fwd::Nat, Fwd::Tun] {
        let fwds = vec![(fwd, TunKind::Ipip); 3];
        let (svc, _d) = service_with("wrr", &fwds, None, 80, None);
        let snap = Arc::new(Snapshot::of_services(&[svc], Timeouts::default()));
        let mut p = Pipeline::new(snap, flows, DIR_MAC);
        p.set_writer(0);
        p.set_sync(Arc::new(xvs_dataplane::sync::SyncPort::new(1)), 0);
        let syn = FixedFrame::new(&tcp_frame(
            [198, 18, 0, 1],
            1024,
            80,
            true,
            false,
            b"0123456789abcdef",
        ));
        let tx = syn_phase(&mut p, &syn, flows, false);
        assert_eq!(tx, flows);
        assert_eq!(p.partition().len(), flows);
    }
    let fwds = vec![(Fwd::Dr, TunKind::Ipip); 3];
    let (svc, _d) = service6("wrr", &fwds, 6, 80, None);
    let snap = Arc::new(Snapshot::of_services(&[svc], Default::default()));
    let mut p = Pipeline::new(snap, 1, DIR_MAC);
    let (t6, mut parts) = ConnTable::<Ipv6Addr>::empty(flows, 1);
    p.set_table6(Arc::new(t6), parts.pop().unwrap());
    p.set_writer(0);
    let cip: Ipv6Addr = "2001:2:0:1::".parse().unwrap();
    let syn = FixedFrame::new(&tcp6_frame(cip, 1024, 80, true, false, b"0123456789abcdef"));
    let tx = syn_phase(&mut p, &syn, flows, true);
    assert_eq!(tx, flows);
    assert_eq!(p.partition6().len(), flows);
}
