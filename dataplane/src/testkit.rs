//! Building blocks shared by tests, fuzzing and benchmarks: a service with
//! DR real servers whose MACs are known, and frame builders.

use crate::stats::Counters;
use crate::svc::{DestRt, Fwd, NeighCell, SchedState, ServiceRt, SvcKey};
use etherparse::PacketBuilder;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use xvs_scheduler::Dest;

/// MAC of the test client.
pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x10];
/// MAC of the director.
pub const DIR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
/// The VIP.
pub const VIP: [u8; 4] = [198, 18, 0, 100];
/// The client address.
pub const CIP: [u8; 4] = [198, 18, 0, 10];

/// MAC of real server `i` (1-based).
pub fn rs_mac(i: u8) -> [u8; 6] {
    [0x02, 0, 0, 0, 0, 0x10 + i]
}

/// A TCP service VIP:80 with `n` DR real servers 198.18.0.11.. (added in
/// order, so listed newest first), all with resolved MACs except server
/// `unresolved`. Returns the service and its destinations in list order.
pub fn dr_service(
    sched: &str,
    n: u8,
    unresolved: Option<u8>,
) -> (Arc<ServiceRt>, Vec<Arc<DestRt>>) {
    let mut dests = Vec::new();
    for i in 1..=n {
        let neigh = Arc::new(NeighCell::default());
        if Some(i) != unresolved {
            neigh.set(Some(rs_mac(i)));
        }
        dests.insert(
            0,
            Arc::new(DestRt {
                sched: Dest::new(IpAddr::V4(Ipv4Addr::new(198, 18, 0, 10 + i)), 80, 1),
                fwd: Fwd::Dr,
                stats: Arc::new(Counters::default()),
                neigh,
            }),
        );
    }
    let sched = xvs_scheduler::new(sched, 0).expect("scheduler exists");
    let svc = Arc::new(ServiceRt {
        key: SvcKey::Addr {
            proto: 6,
            vip: IpAddr::V4(Ipv4Addr::from(VIP)),
            port: 80,
        },
        stats: Arc::new(Counters::default()),
        sched: Arc::new(Mutex::new(SchedState::new(sched, dests.clone()))),
    });
    (svc, dests)
}

/// A TCP frame client → VIP with the given ports, flags and payload.
pub fn tcp_frame(
    cip: [u8; 4],
    sport: u16,
    dport: u16,
    syn: bool,
    ack: bool,
    payload: &[u8],
) -> Vec<u8> {
    let mut b = PacketBuilder::ethernet2(CLIENT_MAC, DIR_MAC)
        .ipv4(cip, VIP, 64)
        .tcp(sport, dport, 1000, 65535);
    if syn {
        b = b.syn();
    }
    if ack {
        b = b.ack(1);
    }
    let mut out = Vec::with_capacity(64 + payload.len());
    b.write(&mut out, payload)
        .expect("writing to a Vec cannot fail");
    out
}

/// A UDP frame client → VIP.
pub fn udp_frame(cip: [u8; 4], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(CLIENT_MAC, DIR_MAC)
        .ipv4(cip, VIP, 64)
        .udp(sport, dport);
    let mut out = Vec::with_capacity(64 + payload.len());
    b.write(&mut out, payload)
        .expect("writing to a Vec cannot fail");
    out
}
