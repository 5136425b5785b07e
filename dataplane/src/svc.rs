//! Virtual services as the workers see them: an immutable snapshot built
//! by the control thread and swapped in between batches.

use std::net::IpAddr;

/// The service key and forwarding method are shared with the control
/// plane.
pub use xvs_config::svc::{Fwd, Persist, SvcKey};

use crate::conn::state::{TcpState, Timeouts};
use crate::conn::time;
use crate::stats::Counters;
use crate::xmit::tun::OuterV4;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use xvs_scheduler::{Dest, Scheduler};

/// How to reach one real server, mirrored from the kernel's routing and
/// neighbour tables by the neighbour thread and read by workers with
/// relaxed loads: the next hop's MAC, the outgoing interface, and the
/// director's source address on it (the outer source of tunnels).
#[derive(Debug, Default)]
pub struct NeighCell {
    /// MAC in the low 48 bits in memory order (`to_le_bytes` gives it
    /// first), so reading it out is a plain copy, not six shifts; bit 63
    /// set when known.
    mac: AtomicU64,
    /// Outgoing interface index (0: unknown).
    oif: AtomicU32,
    /// Director's address towards the server (network order bits; 0:
    /// unknown).
    src: AtomicU32,
    /// Director's IPv6 address towards the server (all zero: unknown),
    /// the outer source of IPv6 tunnels.
    src6: [AtomicU32; 4],
    /// Set by a worker that needed the MAC and found none.
    wanted: AtomicBool,
}

const MAC_VALID: u64 = 1 << 63;

impl NeighCell {
    /// The MAC, if the kernel has resolved it.
    #[inline]
    pub fn mac(&self) -> Option<[u8; 6]> {
        let v = self.mac.load(Ordering::Relaxed);
        if v & MAC_VALID == 0 {
            return None;
        }
        // One copy of the six bytes (built from single bytes, the compiler
        // took the word apart byte by byte).
        let mut m = [0u8; 6];
        m.copy_from_slice(&v.to_le_bytes()[..6]);
        Some(m)
    }

    /// Store a resolved MAC (or forget it with `None`).
    pub fn set(&self, mac: Option<[u8; 6]>) {
        let v = match mac {
            Some(m) => u64::from_le_bytes([m[0], m[1], m[2], m[3], m[4], m[5], 0, 0]) | MAC_VALID,
            None => 0,
        };
        self.mac.store(v, Ordering::Relaxed);
    }

    /// The outgoing interface, if the route is known.
    #[inline]
    pub fn oif(&self) -> Option<u32> {
        match self.oif.load(Ordering::Relaxed) {
            0 => None,
            i => Some(i),
        }
    }

    /// The director's address towards the server, if known.
    #[inline]
    pub fn src(&self) -> Option<Ipv4Addr> {
        match self.src.load(Ordering::Relaxed) {
            0 => None,
            a => Some(Ipv4Addr::from(a)),
        }
    }

    /// The director's IPv6 address towards the server, if known.
    #[inline]
    pub fn src6(&self) -> Option<Ipv6Addr> {
        use crate::flow::Addr;
        let a = Ipv6Addr::load(&self.src6);
        (!a.is_unspecified()).then_some(a)
    }

    /// Store the route's IPv6 source address (IPv6 real servers).
    pub fn set_src6(&self, src: Option<Ipv6Addr>) {
        use crate::flow::Addr;
        Ipv6Addr::store(&self.src6, src.unwrap_or(Ipv6Addr::UNSPECIFIED));
    }

    /// Store the route (outgoing interface and source address).
    pub fn set_route(&self, oif: u32, src: Option<Ipv4Addr>) {
        self.oif.store(oif, Ordering::Relaxed);
        self.src.store(src.map_or(0, u32::from), Ordering::Relaxed);
    }

    /// Ask the neighbour thread to trigger resolution.
    #[inline]
    pub fn want(&self) {
        if !self.wanted.load(Ordering::Relaxed) {
            self.wanted.store(true, Ordering::Relaxed);
        }
    }

    /// Take (and clear) the resolution request.
    pub fn take_wanted(&self) -> bool {
        self.wanted.swap(false, Ordering::Relaxed)
    }
}

/// A real server as the workers see it.
#[derive(Debug)]
pub struct DestRt {
    /// Stable id: the index connections refer to it by (`Snapshot::dest`).
    pub id: u32,
    /// Still configured (false: deleted, kept only while connections or
    /// templates still refer to it, like IPVS's destination trash).
    pub in_service: bool,
    /// The scheduler's view (address, port, weight, thresholds, load).
    pub sched: Dest,
    /// Forwarding method.
    pub fwd: Fwd,
    /// Encapsulation, for `Fwd::Tun`.
    pub tun: xvs_config::tun::TunKind,
    /// Traffic counters, shared with the control thread.
    pub stats: Arc<Counters>,
    /// Next-hop MAC of the real server.
    pub neigh: Arc<NeighCell>,
    /// The constant part of a tunnel's outer IPv4 header to it (an IPv4
    /// real server; see [`DestRt::outer4_of`]), made once here rather
    /// than for every packet.
    pub outer4: Option<OuterV4>,
    /// NAT: the fixed IPv4 translation to it from its service (one with
    /// an IPv4 address; see [`DestRt::nat4_of`]), its checksum changes
    /// summed once here rather than for every packet.
    pub nat4: Option<crate::xmit::nat::NatV4>,
}

impl DestRt {
    /// The outer IPv4 header of a `tun` tunnel to `addr`, for
    /// [`DestRt::outer4`] (none for an IPv6 real server).
    pub fn outer4_of(tun: xvs_config::tun::TunKind, addr: IpAddr) -> Option<OuterV4> {
        match addr {
            IpAddr::V4(a) => Some(OuterV4::new(tun, a)),
            IpAddr::V6(_) => None,
        }
    }

    /// The NAT translation to real server `addr`:`port` of service `svc`,
    /// for [`DestRt::nat4`]: none for a firewall-mark service or an IPv6
    /// address (those packets take the general rewrite). Made whatever
    /// the forwarding method, since a connection keeps the method it was
    /// made with.
    pub fn nat4_of(svc: &SvcKey, addr: IpAddr, port: u16) -> Option<crate::xmit::nat::NatV4> {
        match (svc, addr) {
            (
                SvcKey::Addr {
                    vip: IpAddr::V4(vip),
                    port: vport,
                    ..
                },
                IpAddr::V4(rip),
            ) => {
                let rport = if port == 0 { *vport } else { port };
                Some(crate::xmit::nat::NatV4::new(*vip, *vport, rip, rport))
            }
            _ => None,
        }
    }

    /// The real server's IPv4 address (IPv6 destinations are refused by the
    /// control plane before a snapshot is built).
    pub fn rip(&self) -> Option<Ipv4Addr> {
        match self.sched.addr {
            IpAddr::V4(a) => Some(a),
            IpAddr::V6(_) => None,
        }
    }
}

/// A scheduler together with the destination list it was last updated
/// with, so that the index it returns always names the right server even
/// while an older snapshot is still in use by some worker.
pub struct SchedState {
    sched: Box<dyn Scheduler>,
    view: Vec<Dest>,
    rt: Vec<Arc<DestRt>>,
}

impl std::fmt::Debug for SchedState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchedState")
            .field("sched", &self.sched.name())
            .field("dests", &self.view.len())
            .finish()
    }
}

impl SchedState {
    /// A scheduler over `dests` (newest first).
    pub fn new(mut sched: Box<dyn Scheduler>, dests: Vec<Arc<DestRt>>) -> Self {
        let view: Vec<Dest> = dests.iter().map(|d| d.sched.clone()).collect();
        sched.update(&view);
        SchedState {
            sched,
            view,
            rt: dests,
        }
    }

    /// Replace the destination list (the scheduler rebuilds as IPVS does).
    pub fn set_dests(&mut self, dests: Vec<Arc<DestRt>>) {
        self.view = dests.iter().map(|d| d.sched.clone()).collect();
        self.rt = dests;
        self.sched.update(&self.view);
    }

    /// Replace the runtime objects of an unchanged destination list (same
    /// servers, weights and thresholds) without resetting the scheduler.
    pub fn set_dests_keep_position(&mut self, dests: Vec<Arc<DestRt>>) {
        self.view = dests.iter().map(|d| d.sched.clone()).collect();
        self.rt = dests;
        self.sched.refresh(&self.view);
    }

    /// Replace the scheduler, keeping the destinations (`-E -s`).
    pub fn set_scheduler(&mut self, mut sched: Box<dyn Scheduler>) {
        sched.update(&self.view);
        self.sched = sched;
    }

    /// Name of the scheduler in use.
    pub fn scheduler_name(&self) -> &'static str {
        self.sched.name()
    }

    /// The destinations, in the scheduler's (IPVS list) order.
    pub fn dests(&self) -> &[Arc<DestRt>] {
        &self.rt
    }

    /// Choose a destination for a new connection.
    pub fn schedule(&mut self, flow: &xvs_scheduler::Flow, now_ns: u64) -> Option<Arc<DestRt>> {
        let i = self.sched.schedule(&self.view, flow, now_ns)?;
        self.rt.get(i).cloned()
    }
}

/// A virtual service as the workers see it.
#[derive(Debug)]
pub struct ServiceRt {
    /// Stable id: the index connections refer to it by.
    pub id: u32,
    /// Identity.
    pub key: SvcKey,
    /// Persistence, if `-p`.
    pub persist: Option<Persist>,
    /// Traffic counters, shared with the control thread.
    pub stats: Arc<Counters>,
    /// Scheduler state, shared by every worker (locked only to schedule a
    /// new connection) and carried across snapshots.
    pub sched: Arc<Mutex<SchedState>>,
}

/// Index key of an IPv4 address service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct V4Key {
    /// Protocol number.
    pub proto: u8,
    /// VIP.
    pub vip: Ipv4Addr,
    /// Port (0 = every port).
    pub port: u16,
}

/// Index key of an IPv6 address service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct V6Key {
    /// Protocol number.
    pub proto: u8,
    /// VIP.
    pub vip: Ipv6Addr,
    /// Port (0 = every port).
    pub port: u16,
}

// By words: the derived hash feeds the address to the hasher byte by byte
// (16 multiplications), once or twice for every new IPv6 connection.
impl std::hash::Hash for V6Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let a = u128::from(self.vip);
        state.write_u64((a >> 64) as u64);
        state.write_u64(a as u64);
        state.write_u32(u32::from(self.proto) << 16 | u32::from(self.port));
    }
}

/// A cheap hasher for the small fixed-size keys of the hot path.
#[derive(Default)]
pub struct FastHasher(u64);

impl Hasher for FastHasher {
    fn finish(&self) -> u64 {
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.write_u64(u64::from(i));
    }

    fn write_u16(&mut self, i: u16) {
        self.write_u64(u64::from(i));
    }

    fn write_u32(&mut self, i: u32) {
        self.write_u64(u64::from(i));
    }

    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(21) ^ i).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// What names a synced-only destination: a real server that a master's
/// sync record named under a service this director has but not with that
/// server. IPVS installs such a connection without a destination and
/// forwards it by the record's method; xvs binds it to a destination made
/// for it, which no scheduler and no listing of the service sees, and which
/// lives while connections use it (as the trash of removed servers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SyncedKey {
    /// The service's id.
    pub svc: u32,
    /// The real server's address.
    pub addr: IpAddr,
    /// The real server's port (a template's may be 0).
    pub port: u16,
    /// The forwarding method of the record.
    pub fwd: Fwd,
}

/// TCP states (`TcpState::from_u8` knows discriminants 0..11).
const TCP_STATES: usize = 11;

/// A snapshot's timeouts in connection-table ticks, converted (with the
/// saturation that needs) once when the snapshot is made, so that a packet
/// moves its deadline with one addition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeoutTicks {
    /// By TCP state, indexed by its discriminant.
    tcp: [u32; TCP_STATES],
    /// UDP.
    udp: u32,
}

impl TimeoutTicks {
    /// `t` in ticks.
    pub fn of(t: &Timeouts) -> Self {
        TimeoutTicks {
            tcp: std::array::from_fn(|i| time::secs(t.tcp_state(TcpState::from_u8(i as u8)))),
            udp: time::secs(t.udp),
        }
    }

    /// The timeout of TCP state `s`.
    #[inline]
    pub fn tcp_state(&self, s: TcpState) -> u32 {
        self.tcp[s as usize]
    }

    /// ESTABLISHED's timeout.
    #[inline]
    pub fn established(&self) -> u32 {
        self.tcp[TcpState::Established as usize]
    }

    /// UDP's timeout.
    #[inline]
    pub fn udp(&self) -> u32 {
        self.udp
    }
}

impl Default for TimeoutTicks {
    fn default() -> Self {
        TimeoutTicks::of(&Timeouts::default())
    }
}

/// Which IPv4 frames the prefetch pass reads as a NAT real server's reply
/// first (IPVS's order: its reply hook runs before its request hook), so
/// that a reply costs the reply index's bucket alone, not the connection
/// index's too. Two bitmaps of [`ReplyFilter::BITS`] bits indexed by a
/// hash of an IPv4 address: the addresses of the NAT destinations (every
/// one in the snapshot's arena: live, deleted but still referenced, synced
/// only), and the virtual addresses. A frame from a NAT server's address
/// to an address that is no VIP passes. Both are over-approximations:
/// a frame that passes wrongly only pays the connection bucket late (the
/// processing falls back to the usual lookups), and a frame from a NAT
/// server to a VIP (hairpin: the server is a client of a service) stays
/// a client's first. A NAT connection whose destination is gone (or no
/// longer NAT) is not in the filter: its replies take the usual order,
/// the connection first, then the reply index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReplyFilter {
    nat: [u64; ReplyFilter::WORDS],
    vip: [u64; ReplyFilter::WORDS],
}

impl ReplyFilter {
    /// Bits in each bitmap.
    pub const BITS: usize = 512;
    const WORDS: usize = Self::BITS / 64;

    /// The bit of address `a` (network-order value as a `u32`): the top
    /// bits of a multiplicative hash.
    #[inline(always)]
    fn bit(a: u32) -> usize {
        (a.wrapping_mul(0x9e37_79b1) >> (32 - Self::BITS.trailing_zeros())) as usize
    }

    #[inline(always)]
    fn test(map: &[u64; Self::WORDS], a: u32) -> bool {
        let b = Self::bit(a);
        map[b / 64] >> (b % 64) & 1 == 1
    }

    /// Note a NAT real server's address.
    pub fn add_nat(&mut self, a: Ipv4Addr) {
        let b = Self::bit(u32::from(a));
        self.nat[b / 64] |= 1 << (b % 64);
    }

    /// Note a virtual address.
    pub fn add_vip(&mut self, a: Ipv4Addr) {
        let b = Self::bit(u32::from(a));
        self.vip[b / 64] |= 1 << (b % 64);
    }

    /// Whether a frame from `src` to `dst` may be a NAT real server's
    /// reply that is not also a client's packet to a VIP: true for every
    /// frame from a NAT destination's address to an address not a VIP.
    #[inline(always)]
    pub fn reply_first(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        self.from_nat(src) && !Self::test(&self.vip, u32::from(dst))
    }

    /// Whether `src` may be a NAT destination's address (false: it is
    /// none of the snapshot's, so a frame from it is a NAT reply only on
    /// a connection whose destination is gone).
    #[inline(always)]
    pub fn from_nat(&self, src: Ipv4Addr) -> bool {
        Self::test(&self.nat, u32::from(src))
    }
}

/// An immutable view of the whole configuration, published to the workers.
#[derive(Debug, Default)]
pub struct Snapshot {
    services: HashMap<V4Key, Arc<ServiceRt>, BuildHasherDefault<FastHasher>>,
    /// IPv6 address services.
    services6: HashMap<V6Key, Arc<ServiceRt>, BuildHasherDefault<FastHasher>>,
    /// Firewall-mark services by mark.
    fwmarks: HashMap<u32, Arc<ServiceRt>, BuildHasherDefault<FastHasher>>,
    /// `(proto, vip, port)` → mark (the xvs equivalent of iptables MARK).
    marks: HashMap<V4Key, u32, BuildHasherDefault<FastHasher>>,
    /// IPv6 firewall-mark services (`-f MARK -6`) by mark.
    fwmarks6: HashMap<u32, Arc<ServiceRt>, BuildHasherDefault<FastHasher>>,
    /// `(proto, [vip], port)` → mark, for IPv6 packets.
    marks6: HashMap<V6Key, u32, BuildHasherDefault<FastHasher>>,
    /// Destinations by id (deleted ones stay while referenced).
    dests: Vec<Option<Arc<DestRt>>>,
    /// Services by id.
    svcs: Vec<Option<Arc<ServiceRt>>>,
    /// Synced-only destinations (see [`SyncedKey`]): in `dests` too.
    synced: HashMap<SyncedKey, Arc<DestRt>>,
    /// Connection timeouts.
    pub timeouts: Timeouts,
    /// The same in table ticks, for the packet path.
    ticks: TimeoutTicks,
    /// Any TCP segment without RST opens a connection (IPVS's
    /// `sloppy_tcp`), not only a SYN.
    pub sloppy_tcp: bool,
    /// What the steering program's IPv6 maps must hold for this
    /// configuration (set by the snapshot builder).
    pub steer6: crate::build::Steer6Keys,
    /// The frames the prefetch pass reads as replies first.
    reply_filter: ReplyFilter,
    /// Whether any NAT destination is in the filter.
    nat_dests: bool,
}

impl Snapshot {
    /// The timeouts in ticks (as [`Snapshot::timeouts`], converted once).
    #[inline]
    pub fn timeout_ticks(&self) -> &TimeoutTicks {
        &self.ticks
    }

    /// A snapshot of `services` with `timeouts`; `dests` are every
    /// destination by id (live and deleted-but-referenced ones), `marks`
    /// the firewall-mark assignments.
    pub fn new(
        services: impl IntoIterator<Item = Arc<ServiceRt>>,
        dests: impl IntoIterator<Item = Arc<DestRt>>,
        marks: impl IntoIterator<Item = (V4Key, u32)>,
        timeouts: Timeouts,
    ) -> Self {
        let mut snap = Snapshot {
            timeouts,
            ticks: TimeoutTicks::of(&timeouts),
            ..Default::default()
        };
        for s in services {
            let id = s.id as usize;
            if snap.svcs.len() <= id {
                snap.svcs.resize(id + 1, None);
            }
            snap.svcs[id] = Some(s.clone());
            match s.key {
                SvcKey::Addr {
                    proto,
                    vip: IpAddr::V4(vip),
                    port,
                } => {
                    snap.reply_filter.add_vip(vip);
                    snap.services.insert(V4Key { proto, vip, port }, s);
                }
                SvcKey::Addr {
                    proto,
                    vip: IpAddr::V6(vip),
                    port,
                } => {
                    snap.services6.insert(V6Key { proto, vip, port }, s);
                }
                SvcKey::Fwmark { mark, v6: false } => {
                    snap.fwmarks.insert(mark, s);
                }
                SvcKey::Fwmark { mark, v6: true } => {
                    snap.fwmarks6.insert(mark, s);
                }
            }
        }
        for d in dests {
            let id = d.id as usize;
            if snap.dests.len() <= id {
                snap.dests.resize(id + 1, None);
            }
            snap.note_nat(&d);
            snap.dests[id] = Some(d);
        }
        snap.marks = marks.into_iter().collect();
        for k in snap.marks.keys() {
            snap.reply_filter.add_vip(k.vip);
        }
        snap
    }

    /// Put destination `d`'s address in the reply filter if it is a NAT
    /// server's.
    fn note_nat(&mut self, d: &DestRt) {
        if let (Fwd::Nat, Some(a)) = (d.fwd, d.rip()) {
            self.reply_filter.add_nat(a);
            self.nat_dests = true;
        }
    }

    /// The frames the prefetch pass reads as a NAT real server's reply
    /// first (see [`ReplyFilter`]); none without NAT destinations.
    #[inline(always)]
    pub fn reply_filter(&self) -> Option<&ReplyFilter> {
        self.nat_dests.then_some(&self.reply_filter)
    }

    /// A snapshot of services whose destinations are all in their
    /// schedulers (tests and benchmarks).
    pub fn of_services(services: &[Arc<ServiceRt>], timeouts: Timeouts) -> Self {
        let mut dests = Vec::new();
        for s in services {
            let st = s.sched.lock().unwrap_or_else(|e| e.into_inner());
            dests.extend(st.rt.iter().cloned());
        }
        Snapshot::new(services.iter().cloned(), dests, [], timeouts)
    }

    /// The service a packet to `vip:port` belongs to: a firewall-mark
    /// service if the triple is marked, else the exact port, then a port-0
    /// (every port) service of the VIP.
    #[inline]
    pub fn lookup(&self, proto: u8, vip: Ipv4Addr, port: u16) -> Option<&Arc<ServiceRt>> {
        let k = V4Key { proto, vip, port };
        if !self.marks.is_empty() {
            if let Some(s) = self.marks.get(&k).and_then(|m| self.fwmarks.get(m)) {
                return Some(s);
            }
        }
        self.services.get(&k).or_else(|| {
            self.services.get(&V4Key {
                proto,
                vip,
                port: 0,
            })
        })
    }

    /// Add synced-only destinations (each also by id, as [`Snapshot::dest`]).
    pub fn add_synced(&mut self, dests: impl IntoIterator<Item = (SyncedKey, Arc<DestRt>)>) {
        for (k, d) in dests {
            let id = d.id as usize;
            if self.dests.len() <= id {
                self.dests.resize(id + 1, None);
            }
            self.note_nat(&d);
            self.dests[id] = Some(d.clone());
            self.synced.insert(k, d);
        }
    }

    /// The synced-only destination of `key`, if the snapshot has it.
    pub fn synced_dest(&self, key: &SyncedKey) -> Option<&Arc<DestRt>> {
        if self.synced.is_empty() {
            return None;
        }
        self.synced.get(key)
    }

    /// [`Snapshot::lookup`] for an address of either family.
    #[inline]
    pub fn lookup_in<A: crate::flow::Addr>(
        &self,
        proto: u8,
        vip: A,
        port: u16,
    ) -> Option<&Arc<ServiceRt>> {
        match vip.ip() {
            IpAddr::V4(v) => self.lookup(proto, v, port),
            IpAddr::V6(v) => self.lookup6(proto, v, port),
        }
    }

    /// The IPv6 service a packet to `[vip]:port` belongs to: an IPv6
    /// firewall-mark service if the triple is marked, else the exact port,
    /// then a port-0 service of the VIP.
    #[inline]
    pub fn lookup6(&self, proto: u8, vip: Ipv6Addr, port: u16) -> Option<&Arc<ServiceRt>> {
        let k = V6Key { proto, vip, port };
        if !self.marks6.is_empty() {
            if let Some(s) = self.marks6.get(&k).and_then(|m| self.fwmarks6.get(m)) {
                return Some(s);
            }
        }
        if self.services6.is_empty() {
            return None;
        }
        self.services6
            .get(&k)
            .or_else(|| self.services6.get(&V6Key { port: 0, ..k }))
    }

    /// Every IPv6 (proto, VIP, port) of an address service or a marked
    /// triple.
    pub fn v6_keys(&self) -> impl Iterator<Item = &V6Key> {
        self.services6.keys().chain(self.marks6.keys())
    }

    /// Mark IPv6 packets to `(proto, [vip], port)` for the IPv6
    /// firewall-mark service of that mark (`--set-mark` with an IPv6
    /// address).
    pub fn set_marks6(&mut self, marks: impl IntoIterator<Item = (V6Key, u32)>) {
        self.marks6 = marks.into_iter().collect();
    }

    /// The (IPv4) firewall-mark service of `mark`.
    pub fn fwmark(&self, mark: u32) -> Option<&Arc<ServiceRt>> {
        self.fwmarks.get(&mark)
    }

    /// The firewall-mark service of `mark` for packets of the family of
    /// `v6` (`-f 7` and `-f 7 -6` are two services).
    pub fn fwmark_of(&self, mark: u32, v6: bool) -> Option<&Arc<ServiceRt>> {
        if v6 {
            self.fwmarks6.get(&mark)
        } else {
            self.fwmarks.get(&mark)
        }
    }

    /// Destination `id`.
    #[inline]
    pub fn dest(&self, id: u32) -> Option<&Arc<DestRt>> {
        self.dests.get(id as usize).and_then(Option::as_ref)
    }

    /// Service `id`.
    #[inline]
    pub fn svc(&self, id: u32) -> Option<&Arc<ServiceRt>> {
        self.svcs.get(id as usize).and_then(Option::as_ref)
    }

    /// Every NAT real server `(proto, rip, rport)` whose replies the
    /// steering program must send to the sockets (rport 0: any port, for
    /// port-0 services).
    pub fn nat_keys(&self) -> Vec<V4Key> {
        let mut out = Vec::new();
        for s in self.svcs.iter().flatten() {
            let st = s.sched.lock().unwrap_or_else(|e| e.into_inner());
            for d in st.rt.iter().filter(|d| d.fwd == Fwd::Nat) {
                nat_keys_of(&s.key, d, &mut out);
            }
        }
        // Synced NAT connections to servers not configured here: their
        // replies come back through this director too.
        for (k, d) in &self.synced {
            if let (Fwd::Nat, Some(s)) = (k.fwd, self.svc(k.svc)) {
                nat_keys_of(&s.key, d, &mut out);
            }
        }
        out
    }

    /// Every VIP (for ICMP errors about its connections).
    pub fn vips(&self) -> Vec<Ipv4Addr> {
        let mut v: Vec<Ipv4Addr> = self
            .services
            .keys()
            .map(|k| k.vip)
            .chain(self.marks.keys().map(|k| k.vip))
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// Every (proto, VIP, port) the steering program must send to the
    /// sockets: address services and marked triples.
    pub fn v4_keys(&self) -> impl Iterator<Item = &V4Key> {
        self.services.keys().chain(self.marks.keys())
    }
}

/// The steering keys of NAT real server `d` of service `svc`.
fn nat_keys_of(svc: &SvcKey, d: &DestRt, out: &mut Vec<V4Key>) {
    let Some(rip) = d.rip() else { return };
    let protos = match svc {
        SvcKey::Addr { proto, .. } => [Some(*proto), None],
        SvcKey::Fwmark { .. } => [Some(6), Some(17)],
    };
    for proto in protos.into_iter().flatten() {
        out.push(V4Key {
            proto,
            vip: rip,
            port: d.sched.port,
        });
    }
}

/// Where the control thread publishes snapshots and workers pick them up
/// between batches: one relaxed-acquire load per batch, a lock only when
/// the generation changed.
#[derive(Debug, Default)]
pub struct SnapshotCell {
    generation: AtomicU64,
    current: Mutex<Arc<Snapshot>>,
}

impl SnapshotCell {
    /// A cell holding `snap`.
    pub fn new(snap: Snapshot) -> Self {
        SnapshotCell {
            generation: AtomicU64::new(1),
            current: Mutex::new(Arc::new(snap)),
        }
    }

    /// Publish a new snapshot.
    pub fn publish(&self, snap: Snapshot) {
        let snap = Arc::new(snap);
        let mut cur = self.current.lock().unwrap_or_else(|e| e.into_inner());
        *cur = snap;
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// The current generation number.
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The current snapshot and its generation.
    pub fn load(&self) -> (u64, Arc<Snapshot>) {
        let cur = self.current.lock().unwrap_or_else(|e| e.into_inner());
        (self.generation.load(Ordering::Acquire), cur.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_neighbour_mac_reads_back_as_stored() {
        let n = NeighCell::default();
        assert_eq!(n.mac(), None);
        for m in [
            [0u8; 6],
            [0xff; 6],
            [0x02, 0, 0, 0, 0xd1, 0x02],
            [1, 2, 3, 4, 5, 0x80],
        ] {
            n.set(Some(m));
            assert_eq!(n.mac(), Some(m));
        }
        n.set(None);
        assert_eq!(n.mac(), None);
    }

    #[test]
    fn timeout_ticks_are_the_timeouts_converted_for_every_state() {
        for t in [
            Timeouts::default(),
            Timeouts {
                tcp: 1,
                tcp_fin: 0,
                udp: u32::MAX,
            },
        ] {
            let snap = Snapshot::new([], [], [], t);
            let k = snap.timeout_ticks();
            for v in 0..TCP_STATES as u8 {
                let s = TcpState::from_u8(v);
                assert_eq!(s as u8, v, "discriminant {v} is a state");
                assert_eq!(k.tcp_state(s), time::secs(t.tcp_state(s)), "{s:?}");
            }
            assert_eq!(k.established(), time::secs(t.tcp));
            assert_eq!(k.udp(), time::secs(t.udp));
        }
        assert_eq!(
            *Snapshot::default().timeout_ticks(),
            TimeoutTicks::of(&Timeouts::default())
        );
    }
}
