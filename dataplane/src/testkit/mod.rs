//! Test support, compiled only with the `testkit` feature so that none of
//! it (nor etherparse) ships in the daemon: one set of frame builders
//! ([`frame`]) and one set of fixtures (a service whose real servers'
//! MACs are known, and a pipeline over it) shared by the data plane's
//! tests, the end-to-end tests and the benches.

pub mod frame;
pub mod v6;

use crate::conn::state::Timeouts;
use crate::pipeline::Pipeline;
use crate::stats::Counters;
use crate::svc::{DestRt, Fwd, NeighCell, Persist, SchedState, ServiceRt, Snapshot, SvcKey};
use crate::xmit::tun::TunKind;
use frame::{eth, ip, ip_packet, tcp, udp};
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

/// Address of real server `i` (1-based): 198.18.0.10 + i.
pub fn rip(i: u8) -> [u8; 4] {
    [198, 18, 0, 10 + i]
}

/// `n` direct-routing servers, for [`service_with`].
pub fn dr(n: u8) -> Vec<(Fwd, TunKind)> {
    vec![(Fwd::Dr, TunKind::Ipip); usize::from(n)]
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
    service_with(sched, &dr(n), unresolved, port, persist)
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
                sched: Dest::new(IpAddr::V4(Ipv4Addr::from(rip(i))), rport, 1),
                fwd,
                tun,
                stats: Arc::new(Counters::default()),
                neigh,
                outer4: DestRt::outer4_of(tun, IpAddr::V4(Ipv4Addr::from(rip(i)))),
                nat4: DestRt::nat4_of(
                    &SvcKey::Addr {
                        proto: 6,
                        vip: IpAddr::V4(Ipv4Addr::from(VIP)),
                        port,
                    },
                    IpAddr::V4(Ipv4Addr::from(rip(i))),
                    rport,
                ),
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

/// A configuration snapshot of `services` with `timeouts`.
pub fn snapshot(services: &[Arc<ServiceRt>], timeouts: Timeouts) -> Arc<Snapshot> {
    Arc::new(Snapshot::of_services(services, timeouts))
}

/// A pipeline (one worker, its own table) over one service.
#[derive(Debug)]
pub struct Fixture {
    /// The pipeline, transmitting from [`DIR_MAC`].
    pub pipeline: Pipeline,
    /// The service.
    pub svc: Arc<ServiceRt>,
    /// Its destinations in list order (newest first: server `n` first).
    pub dests: Vec<Arc<DestRt>>,
}

impl Fixture {
    /// A pipeline with a table of `max_conns` entries over the service
    /// `(svc, dests)` (from [`service_with`] and friends), default
    /// timeouts.
    pub fn new((svc, dests): (Arc<ServiceRt>, Vec<Arc<DestRt>>), max_conns: usize) -> Fixture {
        Fixture::with_timeouts((svc, dests), max_conns, Timeouts::default())
    }

    /// [`Fixture::new`] with `timeouts`.
    pub fn with_timeouts(
        (svc, dests): (Arc<ServiceRt>, Vec<Arc<DestRt>>),
        max_conns: usize,
        timeouts: Timeouts,
    ) -> Fixture {
        let snap = snapshot(std::slice::from_ref(&svc), timeouts);
        Fixture {
            pipeline: Pipeline::new(snap, max_conns, DIR_MAC),
            svc,
            dests,
        }
    }

    /// Real server `i` (1-based, in the order the servers were given).
    pub fn dest(&self, i: u8) -> &Arc<DestRt> {
        &self.dests[self.dests.len() - usize::from(i)]
    }
}

/// A TCP frame client → VIP with the given ports, flags and payload
/// (sequence 1000, acknowledging 1 when `ack`, window 65535, TTL 64, DF).
pub fn tcp_frame(
    cip: [u8; 4],
    sport: u16,
    dport: u16,
    syn: bool,
    ack: bool,
    payload: &[u8],
) -> Vec<u8> {
    let mut l4 = tcp(sport, dport);
    if syn {
        l4 = l4.syn();
    }
    if ack {
        l4 = l4.ack(1);
    }
    eth(CLIENT_MAC, DIR_MAC, &ip_packet(&ip(cip, VIP), &l4, payload))
}

/// A UDP frame client → VIP.
pub fn udp_frame(cip: [u8; 4], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    eth(
        CLIENT_MAC,
        DIR_MAC,
        &ip_packet(&ip(cip, VIP), &udp(sport, dport), payload),
    )
}
