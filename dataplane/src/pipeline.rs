//! The pure packet logic: parse, find or create the connection, rewrite in
//! place. It never sees a NIC or a clock: time is passed in and frames are
//! byte buffers, so tests, fuzzing and benchmarks drive it directly.

use crate::conn;
use crate::conn::state::TcpState;
use crate::conn::table::{
    reached, ticks, ConnTable, Init, Insert, Key, NatInit, Partition, ReplyKey, View,
};
use crate::flow::FlowKey;
use crate::io::FrameBuf;
use crate::svc::{DestRt, Fwd, ServiceRt, Snapshot, SvcKey};
use crate::wire::eth::{EthernetFrame, Mac, ETHERTYPE_IPV4};
use crate::wire::ipv4::{Ipv4Packet, PROTO_TCP, PROTO_UDP};
use crate::wire::tcp::{TcpPacket, SYN};
use crate::wire::udp::UdpPacket;
use crate::xmit;
use std::net::Ipv4Addr;
use std::sync::Arc;

/// Why a frame was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum DropReason {
    /// Shorter than its headers or with impossible header fields.
    Malformed = 0,
    /// A TCP segment other than SYN for which no connection exists.
    NoConn,
    /// The scheduler found no usable real server.
    NoDest,
    /// The real server's MAC is not resolved yet (resolution requested).
    NoNeigh,
    /// The connection table is full.
    ConnTableFull,
    /// The forwarding method cannot serve this real server (an IPv6 real
    /// server behind the IPv4 data plane).
    FwdUnsupported,
    /// The pipeline said pass, but the port cannot hand frames to the kernel.
    PassUnavailable,
    /// Too big to tunnel and not allowed to fragment (no DF: IPVS would
    /// fragment; one frame in, one frame out cannot).
    TooBig,
    /// The egress port is not in this worker's group.
    NoPort,
}

impl DropReason {
    /// Number of reasons.
    pub const COUNT: usize = 9;
    /// Every reason, in index order.
    pub const ALL: [DropReason; Self::COUNT] = [
        DropReason::Malformed,
        DropReason::NoConn,
        DropReason::NoDest,
        DropReason::NoNeigh,
        DropReason::ConnTableFull,
        DropReason::FwdUnsupported,
        DropReason::PassUnavailable,
        DropReason::TooBig,
        DropReason::NoPort,
    ];

    /// A short name for logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::NoConn => "no_conn",
            DropReason::NoDest => "no_dest",
            DropReason::NoNeigh => "no_neigh",
            DropReason::ConnTableFull => "conn_table_full",
            DropReason::FwdUnsupported => "fwd_unsupported",
            DropReason::PassUnavailable => "pass_unavailable",
            DropReason::TooBig => "too_big",
            DropReason::NoPort => "no_port",
        }
    }
}

/// What to do with a frame after `process`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Transmit the (rewritten) frame on port `n` of the worker's group
    /// (0 is the first interface; a single-interface worker only has 0).
    Tx(u8),
    /// Not ours: give it to the kernel unchanged.
    Pass,
    /// Drop it, for this reason.
    Drop(DropReason),
}

/// Per-worker counters of the pipeline (plain integers: one writer).
#[derive(Debug, Default, Clone)]
pub struct PipelineStats {
    /// Frames transmitted.
    pub tx: u64,
    /// Frames passed to the kernel.
    pub pass: u64,
    /// Frames dropped, by reason.
    pub drops: [u64; DropReason::COUNT],
    /// Connections created.
    pub conns_created: u64,
    /// Connections expired.
    pub conns_expired: u64,
    /// Persistence templates created.
    pub templates_created: u64,
    /// ICMP fragmentation-needed sent back for tunnelled packets.
    pub frag_needed: u64,
}

/// How often the expiry sweep walks a worker's whole partition.
pub const SWEEP_PERIOD_NS: u64 = 1_000_000_000;

/// The packet pipeline of one worker.
#[derive(Debug)]
pub struct Pipeline {
    /// The configuration; taken out while a frame is processed (moving an
    /// `Arc` costs nothing, cloning one costs two locked instructions).
    snap: Option<Arc<Snapshot>>,
    table: Arc<ConnTable>,
    part: Partition,
    ports: Vec<PortInfo>,
    /// Identification of the next tunnel header.
    ident: u16,
    stats: PipelineStats,
    writer: usize,
    expired: Vec<View>,
    last_sweep: Option<u64>,
}

struct Parsed {
    key: FlowKey,
    tcp_flags: u8,
    ip_len: u64,
}

/// Parse a frame far enough to key it. `Err(verdict)` when the frame is not
/// for the director or is malformed.
#[inline]
fn parse(frame: &[u8]) -> Result<Parsed, Verdict> {
    let eth =
        EthernetFrame::new_checked(frame).map_err(|_| Verdict::Drop(DropReason::Malformed))?;
    if eth.ethertype() != ETHERTYPE_IPV4 {
        return Err(Verdict::Pass);
    }
    let ip =
        Ipv4Packet::new_checked(eth.payload()).map_err(|_| Verdict::Drop(DropReason::Malformed))?;
    if ip.is_fragment() {
        return Err(Verdict::Pass);
    }
    let (cport, vport, tcp_flags) = match ip.protocol() {
        PROTO_TCP => {
            let t = TcpPacket::new_checked(ip.payload())
                .map_err(|_| Verdict::Drop(DropReason::Malformed))?;
            (t.src_port(), t.dst_port(), t.flags())
        }
        PROTO_UDP => {
            let u = UdpPacket::new_checked(ip.payload())
                .map_err(|_| Verdict::Drop(DropReason::Malformed))?;
            (u.src_port(), u.dst_port(), 0)
        }
        _ => return Err(Verdict::Pass),
    };
    Ok(Parsed {
        key: FlowKey {
            proto: ip.protocol(),
            cip: ip.src(),
            cport,
            vip: ip.dst(),
            vport,
        },
        tcp_flags,
        ip_len: ip.total_len() as u64,
    })
}

/// Whether `frame` is an IPv4 ICMP message (headers validated).
fn is_icmp(frame: &[u8]) -> bool {
    let Ok(eth) = EthernetFrame::new_checked(frame) else {
        return false;
    };
    eth.ethertype() == ETHERTYPE_IPV4
        && Ipv4Packet::new_checked(eth.payload())
            .is_ok_and(|ip| ip.protocol() == crate::wire::ipv4::PROTO_ICMP && !ip.is_fragment())
}

/// [`Pipeline::prefetch`] for callers that hold the table but not the
/// pipeline (a port's prefetch pass while the pipeline is borrowed).
#[inline]
pub fn prefetch(table: &ConnTable, stage: u8, frame: &[u8]) {
    // A hint only: read the key at the offsets of the common case (IPv4
    // without options, TCP or UDP) without validating; `process` parses
    // properly.
    if frame.len() < 38 || frame[12..14] != [0x08, 0x00] || frame[14] != 0x45 {
        return;
    }
    let proto = frame[23];
    if proto != PROTO_TCP && proto != PROTO_UDP {
        return;
    }
    let key = FlowKey {
        proto,
        cip: Ipv4Addr::new(frame[26], frame[27], frame[28], frame[29]),
        cport: u16::from_be_bytes([frame[34], frame[35]]),
        vip: Ipv4Addr::new(frame[30], frame[31], frame[32], frame[33]),
        vport: u16::from_be_bytes([frame[36], frame[37]]),
    };
    table.prefetch(&Key::conn(&key), stage);
    // The same frame read as a NAT real server's reply.
    table.prefetch_reply(
        &ReplyKey {
            proto,
            rip: key.cip,
            rport: key.cport,
            cip: key.vip,
            cport: key.vport,
        },
        stage,
    );
}

fn fwd_code(f: Fwd) -> u8 {
    match f {
        Fwd::Dr => 0,
        Fwd::Tun => 1,
        Fwd::Nat => 2,
    }
}

fn fwd_of(code: u8) -> Fwd {
    match code {
        1 => Fwd::Tun,
        2 => Fwd::Nat,
        _ => Fwd::Dr,
    }
}

/// One interface of the worker's group, as the pipeline needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortInfo {
    /// Interface index (0: unknown, single-port tests).
    pub ifindex: u32,
    /// Its MAC (source of everything sent out of it).
    pub mac: Mac,
    /// Its IP MTU.
    pub mtu: u16,
}

/// Outcome of choosing a real server for a new connection.
struct Choice {
    dest: Arc<DestRt>,
    /// Template index + 1 (0: none) the connection is controlled by.
    ctl: u32,
}

impl Pipeline {
    /// A pipeline over `snap` with its own table of `max_conns` entries
    /// (tests and benchmarks: one worker), transmitting with source MAC
    /// `our_mac`.
    pub fn new(snap: Arc<Snapshot>, max_conns: usize, our_mac: Mac) -> Self {
        let (table, mut parts) = ConnTable::new(max_conns, 1);
        let part = parts.pop().expect("one partition");
        Pipeline::with_table(snap, Arc::new(table), part, our_mac)
    }

    /// A pipeline of one worker of a shared table, owning partition `part`.
    pub fn with_table(
        snap: Arc<Snapshot>,
        table: Arc<ConnTable>,
        part: Partition,
        our_mac: Mac,
    ) -> Self {
        Pipeline {
            snap: Some(snap),
            table,
            part,
            ports: vec![PortInfo {
                ifindex: 0,
                mac: our_mac,
                mtu: 1500,
            }],
            ident: 0,
            stats: PipelineStats::default(),
            writer: usize::MAX,
            expired: Vec::with_capacity(4096),
            last_sweep: None,
        }
    }

    /// The interfaces of this worker's group, in port order.
    pub fn set_ports(&mut self, ports: Vec<PortInfo>) {
        if !ports.is_empty() {
            self.ports = ports;
        }
    }

    /// The port whose interface is `oif`; with a single port, that one.
    #[inline]
    fn port_of(&self, oif: Option<u32>) -> Option<u8> {
        if self.ports.len() == 1 {
            return Some(0);
        }
        let oif = oif?;
        self.ports
            .iter()
            .position(|p| p.ifindex == oif)
            .map(|i| i as u8)
    }

    /// Count into the counter shards of worker `w` (see `stats`); without
    /// this the pipeline counts through the shared shards.
    pub fn set_writer(&mut self, w: usize) {
        self.writer = w;
    }

    /// Switch to a newer configuration snapshot (between batches).
    pub fn set_snapshot(&mut self, snap: Arc<Snapshot>) {
        self.snap = Some(snap);
    }

    /// The counters.
    pub fn stats(&self) -> &PipelineStats {
        &self.stats
    }

    /// The shared connection table.
    pub fn table(&self) -> &Arc<ConnTable> {
        &self.table
    }

    /// This worker's partition of the table.
    pub fn partition(&self) -> &Partition {
        &self.part
    }

    /// Count a drop decided outside `process` (e.g. by the port).
    pub fn count_drop(&mut self, r: DropReason) {
        self.stats.drops[r as usize] += 1;
    }

    /// Expire this worker's share of connections and templates: the sweep
    /// walks the partition once per [`SWEEP_PERIOD_NS`], a slice per call,
    /// so it never stalls the worker. A template that still controls
    /// connections is kept (IPVS: it does not expire while in use).
    pub fn expire(&mut self, now_ns: u64) {
        let elapsed = match self.last_sweep {
            Some(t) => now_ns.saturating_sub(t),
            None => 0,
        };
        self.last_sweep = Some(now_ns);
        let Some(snap) = self.snap.take() else {
            return;
        };
        let now = ticks(now_ns);
        let mut expired = std::mem::take(&mut self.expired);
        expired.clear();
        // At most the scratch buffer's capacity per call: no allocation.
        let cap = expired.capacity();
        self.table.sweep(
            &mut self.part,
            elapsed.min(SWEEP_PERIOD_NS),
            SWEEP_PERIOD_NS,
            now,
            &mut expired,
        );
        for v in expired.iter().take(cap) {
            if v.key.template && v.ctl > 0 {
                let t = snap
                    .svc(v.svc)
                    .and_then(|s| s.persist)
                    .map_or(60, |p| p.timeout.max(1));
                self.table.set_expires(v, now.wrapping_add(t * 100));
                continue;
            }
            let removed = self.table.remove_if(&mut self.part, v.idx, v.seq, |cur| {
                reached(now, cur.expires) && !(cur.key.template && cur.ctl > 0)
            });
            if let Some(old) = removed {
                self.unbind_entry(&snap, &old);
                self.stats.conns_expired += 1;
            }
        }
        self.expired = expired;
        self.snap = Some(snap);
    }

    fn unbind_entry(&self, snap: &Snapshot, old: &View) {
        if let Some(d) = snap.dest(old.dest) {
            conn::unbind(d, old.key.template, TcpState::from_u8(old.state));
        }
        if !old.key.template && old.ctl != 0 {
            self.table.add_ctl(old.ctl - 1, -1);
        }
    }

    /// Request the connection-table memory `frame` will need: stage 0 for
    /// every frame of a batch, then stage 1, then process them (the misses
    /// then overlap instead of coming one after another).
    #[inline]
    pub fn prefetch(&self, stage: u8, frame: &[u8]) {
        prefetch(&self.table, stage, frame);
    }

    /// Process one frame in place. `now` is a monotonic clock in ns.
    #[inline]
    pub fn process<B: FrameBuf + ?Sized>(&mut self, now: u64, frame: &mut B) -> Verdict {
        self.process_on(now, 0, frame)
    }

    /// Process one frame that arrived on port `ingress` of the group.
    #[inline]
    pub fn process_on<B: FrameBuf + ?Sized>(
        &mut self,
        now: u64,
        ingress: u8,
        frame: &mut B,
    ) -> Verdict {
        let Some(snap) = self.snap.take() else {
            return Verdict::Drop(DropReason::NoDest);
        };
        let v = self.process_inner(&snap, now, ingress, frame);
        self.snap = Some(snap);
        match v {
            Verdict::Tx(_) => self.stats.tx += 1,
            Verdict::Pass => self.stats.pass += 1,
            Verdict::Drop(r) => self.stats.drops[r as usize] += 1,
        }
        v
    }

    /// Choose the real server of a new connection: through the client's
    /// persistence template when the service has one, else the scheduler.
    fn choose(
        &mut self,
        snap: &Snapshot,
        svc: &Arc<ServiceRt>,
        key: &FlowKey,
        now_ns: u64,
    ) -> Result<Choice, DropReason> {
        let schedule = |svc: &ServiceRt| {
            let flow = key.to_sched_flow();
            let mut st = svc.sched.lock().unwrap_or_else(|e| e.into_inner());
            st.schedule(&flow, now_ns).ok_or(DropReason::NoDest)
        };
        let Some(p) = svc.persist else {
            return Ok(Choice {
                dest: schedule(svc)?,
                ctl: 0,
            });
        };
        let now = ticks(now_ns);
        let life = now.wrapping_add(p.timeout.saturating_mul(100));
        // A template: no state, no method; it controls its first connection.
        let template_init = |dest: &DestRt| Init {
            state: 0,
            fwd: 0,
            expires: life,
            dest: dest.id,
            svc: svc.id,
            ctl: 1,
            nat: None,
        };
        let caddr = Ipv4Addr::from(u32::from(key.cip) & p.mask);
        let tkey = match svc.key {
            SvcKey::Fwmark { mark, .. } => Key::template(0, caddr, mark, 0),
            SvcKey::Addr { port, .. } => Key::template(key.proto, caddr, u32::from(key.vip), port),
        };
        if let Some(t) = self.table.lookup(&tkey) {
            let usable = snap.dest(t.dest).filter(|d| d.in_service).cloned();
            let live = !reached(now, t.expires) || t.ctl > 0;
            match usable {
                Some(dest) if live => {
                    self.table.set_expires(&t, life);
                    self.table.add_ctl(t.idx, 1);
                    return Ok(Choice {
                        dest,
                        ctl: t.idx + 1,
                    });
                }
                _ => {
                    // Expired, or its server was deleted: a new choice,
                    // written into the same template.
                    let dest = schedule(svc)?;
                    let (old, new) = self
                        .table
                        .rebind(&t, template_init(&dest))
                        .ok_or(DropReason::NoDest)?;
                    if let Some(d) = snap.dest(old.dest) {
                        conn::unbind(d, true, TcpState::None);
                    }
                    conn::bind(&dest, true, TcpState::None);
                    return Ok(Choice {
                        dest,
                        ctl: new.idx + 1,
                    });
                }
            }
        }
        if self.part.is_full() {
            return Err(DropReason::ConnTableFull);
        }
        let dest = schedule(svc)?;
        match self
            .table
            .insert(&mut self.part, &tkey, template_init(&dest))
        {
            Ok(t) => {
                conn::bind(&dest, true, TcpState::None);
                self.stats.templates_created += 1;
                Ok(Choice {
                    dest,
                    ctl: t.idx + 1,
                })
            }
            Err(Insert::Exists(t)) => {
                // Another worker made the template first: follow it.
                let dest = snap.dest(t.dest).cloned().ok_or(DropReason::NoDest)?;
                self.table.add_ctl(t.idx, 1);
                Ok(Choice {
                    dest,
                    ctl: t.idx + 1,
                })
            }
            Err(Insert::Full) => Err(DropReason::ConnTableFull),
        }
    }

    #[inline]
    fn process_inner<B: FrameBuf + ?Sized>(
        &mut self,
        snap: &Snapshot,
        now_ns: u64,
        ingress: u8,
        buf: &mut B,
    ) -> Verdict {
        let frame = buf.bytes();
        let p = match parse(frame) {
            Ok(p) => p,
            Err(Verdict::Pass) if is_icmp(frame) => return self.icmp(snap, now_ns, ingress, buf),
            Err(v) => return v,
        };
        // A sender with TX checksum offload (the default) left a partial
        // checksum: complete it before anything forwards or rewrites it.
        crate::wire::checksum::complete_partial(frame);
        let timeouts = snap.timeouts;
        let is_tcp = p.key.proto == PROTO_TCP;
        let syn = is_tcp && p.tcp_flags & SYN != 0;
        let now = ticks(now_ns);
        let key = Key::conn(&p.key);

        let found = self.table.lookup(&key);
        let stale = found.filter(|v| {
            reached(now, v.expires)
                || (syn
                    && matches!(
                        TcpState::from_u8(v.state),
                        TcpState::TimeWait | TcpState::Close
                    ))
        });

        if found.is_none() {
            let rk = ReplyKey {
                proto: p.key.proto,
                rip: p.key.cip,
                rport: p.key.cport,
                cip: p.key.vip,
                cport: p.key.vport,
            };
            if let Some(v) = self.table.lookup_reply(&rk) {
                return self.reply(snap, now_ns, &v, &p, buf);
            }
        }
        let v = match (found, stale) {
            (Some(v), None) => v,
            _ => {
                if is_tcp && !syn {
                    return Verdict::Drop(DropReason::NoConn);
                }
                let Some(svc) = snap.lookup(p.key.proto, p.key.vip, p.key.vport) else {
                    return Verdict::Pass;
                };
                if stale.is_none() && self.part.is_full() {
                    return Verdict::Drop(DropReason::ConnTableFull);
                }
                let choice = match self.choose(snap, svc, &p.key, now_ns) {
                    Ok(c) => c,
                    Err(r) => return Verdict::Drop(r),
                };
                let nat = match (choice.dest.fwd, choice.dest.rip()) {
                    (Fwd::Nat, Some(rip)) => {
                        let eth = EthernetFrame::new_checked(&*frame).map_err(|_| ()).ok();
                        Some(NatInit {
                            rip,
                            rport: if choice.dest.sched.port == 0 {
                                p.key.vport
                            } else {
                                choice.dest.sched.port
                            },
                            ret_port: ingress,
                            ret_mac: eth.map_or([0; 6], |e| e.src()),
                        })
                    }
                    _ => None,
                };
                let init = Init {
                    state: TcpState::None as u8,
                    fwd: fwd_code(choice.dest.fwd),
                    expires: now.wrapping_add(timeouts.tcp_state(TcpState::None) * 100),
                    dest: choice.dest.id,
                    svc: svc.id,
                    ctl: choice.ctl,
                    nat,
                };
                let undo_ctl = |t: &ConnTable| {
                    if choice.ctl != 0 {
                        t.add_ctl(choice.ctl - 1, -1);
                    }
                };
                let v = match stale {
                    Some(old) => match self.table.rebind(&old, init) {
                        Some((old, new)) => {
                            self.unbind_entry(snap, &old);
                            new
                        }
                        None => {
                            undo_ctl(&self.table);
                            return Verdict::Drop(DropReason::NoConn);
                        }
                    },
                    None => match self.table.insert(&mut self.part, &key, init) {
                        Ok(v) => v,
                        Err(Insert::Exists(v)) => {
                            undo_ctl(&self.table);
                            v
                        }
                        Err(Insert::Full) => {
                            undo_ctl(&self.table);
                            return Verdict::Drop(DropReason::ConnTableFull);
                        }
                    },
                };
                if v.dest == choice.dest.id && v.seq == self.table.read(v.idx).map_or(0, |c| c.seq)
                {
                    conn::bind(&choice.dest, false, TcpState::None);
                    svc.stats.add_conn_by(self.writer);
                    choice.dest.stats.add_conn_by(self.writer);
                    self.stats.conns_created += 1;
                }
                v
            }
        };

        let Some(dest) = snap.dest(v.dest) else {
            return Verdict::Drop(DropReason::NoDest);
        };
        let ttl = if is_tcp {
            let old = TcpState::from_u8(v.state);
            let new = old.next(p.tcp_flags);
            if new != old && self.table.set_state(&v, v.state, new as u8) {
                conn::transition(dest, old, new);
            }
            timeouts.tcp_state(new)
        } else {
            timeouts.udp
        };
        let expires = now.wrapping_add(ttl.saturating_mul(100));
        if expires != v.expires {
            self.table.set_expires(&v, expires);
        }
        if let Some(s) = snap.svc(v.svc) {
            s.stats.add_in_by(self.writer, p.ip_len);
        }
        dest.stats.add_in_by(self.writer, p.ip_len);

        self.xmit(&v, dest, ingress, p.key.vport, buf)
    }

    /// Send a frame of connection `v` (bound to `dest`) towards its real
    /// server by the connection's forwarding method.
    fn xmit<B: FrameBuf + ?Sized>(
        &mut self,
        v: &View,
        dest: &Arc<DestRt>,
        ingress: u8,
        vport: u16,
        buf: &mut B,
    ) -> Verdict {
        let Some(mac) = dest.neigh.mac() else {
            dest.neigh.want();
            return Verdict::Drop(DropReason::NoNeigh);
        };
        let Some(out) = self.port_of(dest.neigh.oif()) else {
            dest.neigh.want();
            return Verdict::Drop(DropReason::NoNeigh);
        };
        let port = self.ports[out as usize];
        match fwd_of(v.fwd) {
            Fwd::Dr => {
                xmit::dr::xmit(buf.bytes(), mac, port.mac);
                Verdict::Tx(out)
            }
            Fwd::Nat => {
                let Some(rip) = dest.rip() else {
                    return Verdict::Drop(DropReason::FwdUnsupported);
                };
                let rport = v.nat.map_or(
                    if dest.sched.port == 0 {
                        vport
                    } else {
                        dest.sched.port
                    },
                    |n| n.rport,
                );
                match xmit::nat::xmit_in(buf.bytes(), rip, rport, port.mac, mac) {
                    Ok(()) => Verdict::Tx(out),
                    Err(_) => Verdict::Drop(DropReason::Malformed),
                }
            }
            Fwd::Tun => {
                let (Some(rip), Some(src)) = (dest.rip(), dest.neigh.src()) else {
                    dest.neigh.want();
                    return Verdict::Drop(DropReason::NoNeigh);
                };
                let tun = xmit::tun::Tunnel {
                    kind: dest.tun,
                    src,
                    rip,
                    src_mac: port.mac,
                    dst_mac: mac,
                    mtu: port.mtu,
                };
                let len = buf.bytes().len();
                if !buf.set_len(len + dest.tun.overhead()) {
                    return Verdict::Drop(DropReason::Malformed);
                }
                self.ident = self.ident.wrapping_add(1);
                match xmit::tun::xmit_tailroom(buf.bytes(), len, &tun, self.ident) {
                    Ok(xmit::tun::TunOutcome::Encapsulated { len, .. }) => {
                        buf.set_len(len);
                        Verdict::Tx(out)
                    }
                    Ok(xmit::tun::TunOutcome::FragNeeded { len, .. }) => {
                        buf.set_len(len);
                        self.stats.frag_needed += 1;
                        Verdict::Tx(ingress)
                    }
                    Err(_) => {
                        buf.set_len(len);
                        Verdict::Drop(DropReason::TooBig)
                    }
                }
            }
        }
    }

    /// A real server's reply on NAT connection `v`: back to the client as
    /// from VIP:vport.
    fn reply<B: FrameBuf + ?Sized>(
        &mut self,
        snap: &Snapshot,
        now_ns: u64,
        v: &View,
        p: &Parsed,
        buf: &mut B,
    ) -> Verdict {
        let Some(nat) = v.nat else {
            return Verdict::Drop(DropReason::NoConn);
        };
        let flow = v.flow();
        let now = ticks(now_ns);
        let ttl = if p.key.proto == PROTO_TCP {
            snap.timeouts.tcp_state(TcpState::from_u8(v.state))
        } else {
            snap.timeouts.udp
        };
        self.table
            .set_expires(v, now.wrapping_add(ttl.saturating_mul(100)));
        if let Some(s) = snap.svc(v.svc) {
            s.stats.add_out_by(self.writer, p.ip_len);
        }
        if let Some(d) = snap.dest(v.dest) {
            d.stats.add_out_by(self.writer, p.ip_len);
        }
        let Some(port) = self.ports.get(usize::from(nat.ret_port)).copied() else {
            return Verdict::Drop(DropReason::NoNeigh);
        };
        match xmit::nat::xmit_out(buf.bytes(), flow.vip, flow.vport, port.mac, nat.ret_mac) {
            Ok(()) => Verdict::Tx(nat.ret_port),
            Err(_) => Verdict::Drop(DropReason::Malformed),
        }
    }

    /// An ICMP error about one of our connections: from the client side
    /// (about a packet the client got from the VIP) it goes to the real
    /// server by the connection's method; from a NAT real server's side it
    /// goes back to the client, translated. Anything else is not ours.
    fn icmp<B: FrameBuf + ?Sized>(
        &mut self,
        snap: &Snapshot,
        _now_ns: u64,
        ingress: u8,
        buf: &mut B,
    ) -> Verdict {
        let Ok(info) = xmit::nat::parse_icmp_error(buf.bytes()) else {
            return Verdict::Pass;
        };
        let q = info.quoted;
        let client_side = Key::conn(&FlowKey {
            proto: q.proto,
            cip: q.dst,
            cport: q.dport,
            vip: q.src,
            vport: q.sport,
        });
        if let Some(v) = self.table.lookup(&client_side) {
            let Some(dest) = snap.dest(v.dest).cloned() else {
                return Verdict::Drop(DropReason::NoDest);
            };
            if fwd_of(v.fwd) != Fwd::Nat {
                return self.xmit(&v, &dest, ingress, q.sport, buf);
            }
            let (Some(mac), Some(out), Some(nat)) =
                (dest.neigh.mac(), self.port_of(dest.neigh.oif()), v.nat)
            else {
                return Verdict::Drop(DropReason::NoNeigh);
            };
            let src = self.ports[out as usize].mac;
            return match xmit::nat::icmp_in(buf.bytes(), nat.rip, nat.rport, src, mac) {
                Ok(()) => Verdict::Tx(out),
                Err(_) => Verdict::Drop(DropReason::Malformed),
            };
        }
        let rk = ReplyKey {
            proto: q.proto,
            rip: q.dst,
            rport: q.dport,
            cip: q.src,
            cport: q.sport,
        };
        if let Some(v) = self.table.lookup_reply(&rk) {
            let Some(nat) = v.nat else {
                return Verdict::Pass;
            };
            let flow = v.flow();
            let Some(port) = self.ports.get(usize::from(nat.ret_port)).copied() else {
                return Verdict::Drop(DropReason::NoNeigh);
            };
            return match xmit::nat::icmp_out(
                buf.bytes(),
                flow.vip,
                flow.vport,
                port.mac,
                nat.ret_mac,
            ) {
                Ok(()) => Verdict::Tx(nat.ret_port),
                Err(_) => Verdict::Drop(DropReason::Malformed),
            };
        }
        Verdict::Pass
    }
}
