//! The pure packet logic: parse, find or create the connection, rewrite in
//! place. It never sees a NIC or a clock: time is passed in and frames are
//! byte buffers, so tests, fuzzing and benchmarks drive it directly.

use crate::conn::state::TcpState;
use crate::conn::table::ConnTable;
use crate::conn::Conn;
use crate::flow::FlowKey;
use crate::svc::{Fwd, Snapshot};
use crate::wire::eth::{EthernetFrame, Mac, ETHERTYPE_IPV4};
use crate::wire::ipv4::{Ipv4Packet, PROTO_TCP, PROTO_UDP};
use crate::wire::tcp::{TcpPacket, SYN};
use crate::wire::udp::UdpPacket;
use crate::xmit;
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
    /// Forwarding method not available in this build of the pipeline.
    FwdUnsupported,
    /// The pipeline said pass, but the port cannot hand frames to the kernel.
    PassUnavailable,
}

impl DropReason {
    /// Number of reasons.
    pub const COUNT: usize = 7;
    /// Every reason, in index order.
    pub const ALL: [DropReason; Self::COUNT] = [
        DropReason::Malformed,
        DropReason::NoConn,
        DropReason::NoDest,
        DropReason::NoNeigh,
        DropReason::ConnTableFull,
        DropReason::FwdUnsupported,
        DropReason::PassUnavailable,
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
        }
    }
}

/// What to do with a frame after `process`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Transmit the (rewritten) frame on the egress port.
    Tx,
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
}

/// The packet pipeline of one worker.
#[derive(Debug)]
pub struct Pipeline {
    snap: Arc<Snapshot>,
    conns: ConnTable,
    our_mac: Mac,
    stats: PipelineStats,
    writer: usize,
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

impl Pipeline {
    /// A pipeline over `snap` with room for `max_conns` connections,
    /// transmitting with source MAC `our_mac`.
    pub fn new(snap: Arc<Snapshot>, max_conns: usize, our_mac: Mac) -> Self {
        Pipeline {
            snap,
            conns: ConnTable::new(max_conns),
            our_mac,
            stats: PipelineStats::default(),
            writer: usize::MAX,
        }
    }

    /// Count into the counter shards of worker `w` (see `stats`); without
    /// this the pipeline counts through the shared shards.
    pub fn set_writer(&mut self, w: usize) {
        self.writer = w;
    }

    /// Switch to a newer configuration snapshot (between batches).
    pub fn set_snapshot(&mut self, snap: Arc<Snapshot>) {
        self.snap = snap;
    }

    /// The counters.
    pub fn stats(&self) -> &PipelineStats {
        &self.stats
    }

    /// The connection table (listings).
    pub fn conns(&self) -> &ConnTable {
        &self.conns
    }

    /// Expire up to `budget` slots' worth of connections.
    pub fn expire(&mut self, now: u64, budget: usize) {
        self.stats.conns_expired += self.conns.expire(now, budget) as u64;
    }

    /// Process one frame in place. `now` is a monotonic clock in ns.
    #[inline]
    pub fn process(&mut self, now: u64, frame: &mut [u8]) -> Verdict {
        let v = self.process_inner(now, frame);
        match v {
            Verdict::Tx => self.stats.tx += 1,
            Verdict::Pass => self.stats.pass += 1,
            Verdict::Drop(r) => self.stats.drops[r as usize] += 1,
        }
        v
    }

    /// Count a drop decided outside `process` (e.g. by the port).
    pub fn count_drop(&mut self, r: DropReason) {
        self.stats.drops[r as usize] += 1;
    }

    #[inline]
    fn process_inner(&mut self, now: u64, frame: &mut [u8]) -> Verdict {
        let p = match parse(frame) {
            Ok(p) => p,
            Err(v) => return v,
        };
        let timeouts = self.snap.timeouts;
        let is_tcp = p.key.proto == PROTO_TCP;

        let mut slot = self.conns.find(&p.key);
        if let Some(i) = slot {
            let c = self.conns.get_mut(i).expect("found slot holds a conn");
            let expired = c.expires <= now;
            let reuse = is_tcp
                && p.tcp_flags & SYN != 0
                && matches!(c.state, TcpState::TimeWait | TcpState::Close);
            if expired || reuse {
                self.conns.remove(i);
                if expired {
                    self.stats.conns_expired += 1;
                }
                slot = None;
            }
        }

        let i = match slot {
            Some(i) => i,
            None => {
                if is_tcp && p.tcp_flags & SYN == 0 {
                    return Verdict::Drop(DropReason::NoConn);
                }
                let Some(svc) = self.snap.lookup(p.key.proto, p.key.vip, p.key.vport) else {
                    return Verdict::Pass;
                };
                if self.conns.len() >= self.conns.capacity() {
                    return Verdict::Drop(DropReason::ConnTableFull);
                }
                let flow = p.key.to_sched_flow();
                let dest = {
                    let mut st = svc.sched.lock().unwrap_or_else(|e| e.into_inner());
                    st.schedule(&flow, now)
                };
                let Some(dest) = dest else {
                    return Verdict::Drop(DropReason::NoDest);
                };
                svc.stats.add_conn_by(self.writer);
                dest.stats.add_conn_by(self.writer);
                let conn = Conn::bind(p.key, TcpState::None, now, dest, svc.stats.clone());
                self.stats.conns_created += 1;
                match self.conns.insert(conn) {
                    Ok(i) => i,
                    Err(_) => return Verdict::Drop(DropReason::ConnTableFull),
                }
            }
        };

        let c = self.conns.get_mut(i).expect("slot holds a conn");
        let ttl = if is_tcp {
            let s = c.state.next(p.tcp_flags);
            c.set_state(s);
            timeouts.tcp_state(s)
        } else {
            timeouts.udp
        };
        c.expires = now.saturating_add(u64::from(ttl) * 1_000_000_000);
        c.svc.add_in_by(self.writer, p.ip_len);
        c.dest.stats.add_in_by(self.writer, p.ip_len);

        match c.dest.fwd {
            Fwd::Dr => match c.dest.neigh.mac() {
                Some(mac) => {
                    xmit::dr::xmit(frame, mac, self.our_mac);
                    Verdict::Tx
                }
                None => {
                    c.dest.neigh.want();
                    Verdict::Drop(DropReason::NoNeigh)
                }
            },
            Fwd::Tun | Fwd::Nat => Verdict::Drop(DropReason::FwdUnsupported),
        }
    }
}
