//! Building blocks shared by tests, fuzzing and benchmarks: a service with
//! DR real servers whose MACs are known, and frame builders.

use crate::stats::Counters;
use crate::svc::{DestRt, Fwd, NeighCell, Persist, SchedState, ServiceRt, SvcKey};
use crate::xmit::tun::TunKind;
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
/// The director's own address.
pub const DIR_IP: [u8; 4] = [198, 18, 0, 2];

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
    service(sched, n, unresolved, 80, None)
}

/// Like [`dr_service`] for virtual port `port` (0: every port) with
/// persistence `persist`.
pub fn service(
    sched: &str,
    n: u8,
    unresolved: Option<u8>,
    port: u16,
    persist: Option<Persist>,
) -> (Arc<ServiceRt>, Vec<Arc<DestRt>>) {
    let fwds = vec![(Fwd::Dr, TunKind::Ipip); usize::from(n)];
    service_with(sched, &fwds, unresolved, port, persist)
}

/// A service whose server `i` (1-based, in the order of `fwds`) is
/// forwarded by `fwds[i - 1]`; NAT servers listen on port 8080 when the
/// service port is 80.
pub fn service_with(
    sched: &str,
    fwds: &[(Fwd, TunKind)],
    unresolved: Option<u8>,
    port: u16,
    persist: Option<Persist>,
) -> (Arc<ServiceRt>, Vec<Arc<DestRt>>) {
    let mut dests = Vec::new();
    for (k, &(fwd, tun)) in fwds.iter().enumerate() {
        let i = k as u8 + 1;
        let rport = if fwd == Fwd::Nat && port == 80 {
            8080
        } else {
            port
        };
        let neigh = Arc::new(NeighCell::default());
        if Some(i) != unresolved {
            neigh.set(Some(rs_mac(i)));
        }
        neigh.set_route(0, Some(Ipv4Addr::from(DIR_IP)));
        dests.insert(
            0,
            Arc::new(DestRt {
                id: u32::from(i),
                in_service: true,
                sched: Dest::new(IpAddr::V4(Ipv4Addr::new(198, 18, 0, 10 + i)), rport, 1),
                fwd,
                tun,
                stats: Arc::new(Counters::default()),
                neigh,
            }),
        );
    }
    let sched = xvs_scheduler::new(sched, 0).expect("scheduler exists");
    let svc = Arc::new(ServiceRt {
        id: 0,
        persist,
        key: SvcKey::Addr {
            proto: 6,
            vip: IpAddr::V4(Ipv4Addr::from(VIP)),
            port,
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
