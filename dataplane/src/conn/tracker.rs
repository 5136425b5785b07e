//! The life of a connection, in one place: the first packet chooses a real
//! server (through the client's persistence template when the service has
//! one, else the scheduler), creates the entry or rebinds a stale one and
//! counts it against its server; later packets move the TCP state and push
//! the deadline; the sweep removes what is due. The pipeline around it only
//! parses and transmits, so every rule about connections (when a template
//! lives, what a server's counts mean, when a deadline moves) is read and
//! changed here.
//!
//! A SYN flood must not lock real clients out, so a full partition is
//! handled as IPVS's flood defences do: half-open connections live
//! [`HALF_OPEN_PRESSURE_SECS`] instead of SYN_RECV's 60 s once the
//! partition is 7/8 full (`secure_tcp`), and a new connection evicts a
//! half-open or expired entry when there is no free one (`drop_entry`;
//! ESTABLISHED and other live entries never are). When no sampled entry
//! can go, the new flow is still forwarded, without an entry ("stateless",
//! DR and TUN only, see [`Tracker::stateless_dest`] for the choice of
//! server) rather than dropped.

use super::state::{TcpState, Timeouts};
use super::table::{
    ConnTable, Hint, HotReply, Init, Insert, Key, NatInit, Partition, Probe, ReplyKey, View,
};
use super::time::{self, reached, ticks};
use crate::flow::{Addr, FlowKey};
use crate::packet::Parsed;
use crate::svc::{DestRt, Fwd, ServiceRt, Snapshot, SvcKey, SyncedKey};
use crate::sync::{self, Installed, Reject, SyncConn, SyncPort};
use crate::verdict::DropReason;
use crate::wire::eth::Mac;
use crate::wire::ipv4::PROTO_TCP;
use crate::wire::tcp::{FIN, RST, SYN};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

/// How often the expiry sweep walks a worker's whole partition.
pub const SWEEP_PERIOD_NS: u64 = xvs_config::time::NS_PER_SEC;

/// Most expired entries one sweep call removes (the capacity of its
/// scratch buffer, allocated once).
pub const SWEEP_BATCH: usize = 4096;

/// Seconds a template is extended by when its service no longer says.
const TEMPLATE_FALLBACK_SECS: u32 = 60;

/// The life of a half-open (SYN_RECV) connection while its partition is
/// under pressure (at least 7/8 full), instead of IPVS's 60 s. Always
/// shorter would change what `-Lnc` shows and what an ordinary director
/// keeps; under pressure it makes the flood's entries go before they fill
/// the table, while a real client's handshake (one round trip) and its
/// SYN retransmissions (1 s, 3 s) still fit.
pub const HALF_OPEN_PRESSURE_SECS: u32 = 10;

/// When entry `v` is due, for eviction at tick `now` (the earliest due
/// goes first), or `None` if it must not be evicted. Evictable are an
/// entry past its deadline (and no template in use: those are due at their
/// deadline, so before any live entry) and a half-open TCP connection
/// (NONE or SYN_RECV: no ACK from its client yet); ESTABLISHED and every
/// other live state never are. Half-open entries go oldest first, as the
/// entries of real clients are the young ones (a handshake takes a round
/// trip): one that still has more than [`HALF_OPEN_PRESSURE_SECS`] left
/// got SYN_RECV's full life before the pressure began, and is ranked as
/// if it had got the short one, so that its deadline says its age too.
#[inline]
pub fn eviction_due<A: Addr>(now: u32, v: &View<A>) -> Option<u32> {
    if !alive(now, v) {
        return Some(v.expires);
    }
    let half_open = !v.key.template
        && v.key.proto == PROTO_TCP
        && matches!(
            TcpState::from_u8(v.state),
            TcpState::None | TcpState::SynRecv
        );
    if !half_open {
        return None;
    }
    let short = time::secs(HALF_OPEN_PRESSURE_SECS);
    if v.expires.wrapping_sub(now) > short {
        let full = Timeouts::default().tcp_state(TcpState::SynRecv);
        let cut = time::secs(full.saturating_sub(HALF_OPEN_PRESSURE_SECS));
        return Some(v.expires.wrapping_sub(cut));
    }
    Some(v.expires)
}

/// Whether template `v` controls connections: it then lives past its
/// deadline (IPVS: a template does not expire while in use).
#[inline]
pub fn holds<A: Addr>(v: &View<A>) -> bool {
    v.key.template && v.ctl > 0
}

/// Whether entry `v` is alive at tick `now`: before its deadline, or a
/// template that still controls connections.
#[inline]
pub fn alive<A: Addr>(now: u32, v: &View<A>) -> bool {
    !reached(now, v.expires) || holds(v)
}

/// Count a new connection (in `state`) or template against `dest`, as
/// IPVS's bind does, and re-evaluate its overload flag.
pub fn bind(dest: &DestRt, template: bool, state: TcpState) {
    let load = &dest.sched.load;
    if template {
        load.persist.fetch_add(1, Ordering::Relaxed);
    } else if state.is_active() {
        load.active.fetch_add(1, Ordering::Relaxed);
    } else {
        load.inactive.fetch_add(1, Ordering::Relaxed);
    }
    dest.sched.note_bound();
}

/// One less, never below zero.
#[inline]
fn dec(a: &AtomicU32) {
    let _ = a.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
        Some(v.saturating_sub(1))
    });
}

/// Undo [`bind`] for a connection last in `state` (or a template).
pub fn unbind(dest: &DestRt, template: bool, state: TcpState) {
    let load = &dest.sched.load;
    if template {
        dec(&load.persist);
    } else if state.is_active() {
        dec(&load.active);
    } else {
        dec(&load.inactive);
    }
    dest.sched.note_unbound();
}

/// Move a connection's count between active and inactive when its state
/// crosses ESTABLISHED.
#[inline]
pub fn transition(dest: &DestRt, old: TcpState, new: TcpState) {
    let load = &dest.sched.load;
    match (old.is_active(), new.is_active()) {
        (false, true) => {
            dec(&load.inactive);
            load.active.fetch_add(1, Ordering::Relaxed);
        }
        (true, false) => {
            dec(&load.active);
            load.inactive.fetch_add(1, Ordering::Relaxed);
        }
        _ => return,
    }
    load.changed();
}

/// The forwarding method as an entry stores it.
#[inline]
pub fn fwd_code(f: Fwd) -> u8 {
    match f {
        Fwd::Dr => 0,
        Fwd::Tun => 1,
        Fwd::Nat => 2,
    }
}

/// The forwarding method an entry was bound with.
#[inline]
pub fn fwd_of(code: u8) -> Fwd {
    match code {
        1 => Fwd::Tun,
        2 => Fwd::Nat,
        _ => Fwd::Dr,
    }
}

/// The port a NAT connection to `dest` uses on the real server: the
/// server's own, or the virtual port for a port-less server.
#[inline]
pub fn nat_rport(dest: &DestRt, vport: u16) -> u16 {
    if dest.sched.port == 0 {
        vport
    } else {
        dest.sched.port
    }
}

/// Where the tracker counts the connections and templates it creates and
/// expires (the pipeline's counters; a trait so that the tracker does not
/// depend on the pipeline).
pub trait Counts {
    /// A connection was created.
    fn conn_created(&mut self);
    /// A persistence template was created.
    fn template_created(&mut self);
    /// A connection or template expired.
    fn conn_expired(&mut self);
    /// A half-open or expired entry was evicted to make room.
    fn conn_evicted(&mut self);
    /// A frame was forwarded without a connection entry (table full).
    fn stateless(&mut self);
}

/// The reply key of a packet `key` read as a NAT real server's (RIP:rport
/// → client).
#[inline]
fn reply_key<A: Addr>(key: &FlowKey<A>) -> ReplyKey<A> {
    ReplyKey {
        proto: key.proto,
        rip: key.cip,
        rport: key.cport,
        cip: key.vip,
        cport: key.vport,
    }
}

/// Whether connection `v`, found for a packet at `now` (`syn`: a SYN),
/// is over: expired, or closed and opened again by the SYN.
#[inline]
fn is_stale<A: Addr>(now: u32, syn: bool, v: &View<A>) -> bool {
    reached(now, v.expires)
        || (syn
            && matches!(
                TcpState::from_u8(v.state),
                TcpState::TimeWait | TcpState::Close
            ))
}

/// What the forwarding method needs of a connection entry (a few bytes,
/// so that the entry itself is not copied out of the tracker per packet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bound {
    /// The forwarding method's code (see [`fwd_of`]).
    pub fwd: u8,
    /// NAT: the real server's port fixed when the connection was made.
    pub rport: Option<u16>,
}

impl Bound {
    /// What connection `v` is bound to.
    #[inline]
    pub fn of<A: Addr>(v: &View<A>) -> Bound {
        Bound {
            fwd: v.fwd,
            rport: v.nat.map(|n| n.rport),
        }
    }
}

/// Where a NAT real server's packets go back to: the client, as from the
/// virtual service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply<A: Addr = Ipv4Addr> {
    /// Port of the worker's group the client's packets came in on.
    pub ret_port: u8,
    /// MAC they came from (the client or its gateway).
    pub ret_mac: Mac,
    /// The virtual address the client talks to.
    pub vip: A,
    /// The virtual port.
    pub vport: u16,
}

impl<A: Addr> Reply<A> {
    /// Where replies on connection `v` go; `None` unless it is a NAT
    /// connection.
    #[inline]
    pub fn of(v: &View<A>) -> Option<Reply<A>> {
        let nat = v.nat?;
        let flow = v.flow();
        Some(Reply {
            ret_port: nat.ret_port,
            ret_mac: nat.ret_mac,
            vip: flow.vip,
            vport: flow.vport,
        })
    }
}

/// What tracking decided for a packet.
#[derive(Debug)]
pub enum Track<'s, A: Addr = Ipv4Addr> {
    /// A packet of a connection bound to server `.0` as `.1`: send it
    /// there by the connection's forwarding method.
    In(&'s Arc<DestRt>, Bound),
    /// A NAT real server's reply: back to the client.
    Out(Reply<A>),
    /// Not for a virtual service.
    Pass,
    /// Drop it.
    Drop(DropReason),
}

/// Outcome of choosing a real server for a new connection.
struct Choice {
    dest: Arc<DestRt>,
    /// Template index + 1 (0: none) the connection is controlled by.
    ctl: u32,
}

/// One worker's side of the connection table: its partition, and the
/// scratch space of its expiry sweep.
#[derive(Debug)]
pub struct Tracker<A: Addr = Ipv4Addr> {
    table: Arc<ConnTable<A>>,
    part: Partition,
    /// Counter shard the per-service and per-server counters go to.
    writer: usize,
    expired: Vec<View<A>>,
    last_sweep: Option<u64>,
    /// Where this worker hands sync records over (none: no sync).
    sync: Option<SyncLink>,
}

/// A worker's place at the [`SyncPort`].
#[derive(Debug)]
struct SyncLink {
    port: Arc<SyncPort>,
    worker: usize,
}

impl<A: Addr> Tracker<A> {
    /// A tracker over `table` owning partition `part`.
    pub fn new(table: Arc<ConnTable<A>>, part: Partition) -> Self {
        Tracker {
            table,
            part,
            writer: usize::MAX,
            expired: Vec::with_capacity(SWEEP_BATCH),
            last_sweep: None,
            sync: None,
        }
    }

    /// Take part in connection sync as worker `worker` of `port`: count
    /// inbound packets, emit records while the port is master, install
    /// the records queued for this worker.
    pub fn set_sync(&mut self, port: Arc<SyncPort>, worker: usize) {
        self.sync = Some(SyncLink { port, worker });
    }

    /// The shared connection table.
    pub fn table(&self) -> &Arc<ConnTable<A>> {
        &self.table
    }

    /// This worker's partition of the table.
    pub fn partition(&self) -> &Partition {
        &self.part
    }

    /// Count into the counter shards of worker `w`.
    pub fn set_writer(&mut self, w: usize) {
        self.writer = w;
    }

    /// The connection whose client side sent `key`.
    #[inline]
    pub fn lookup(&self, key: &FlowKey<A>) -> Option<View<A>> {
        self.table.lookup(&Key::conn(key))
    }

    /// The NAT connection a real server's packet `key` (RIP:rport →
    /// client) replies on.
    #[inline]
    pub fn lookup_reply(&self, key: &FlowKey<A>) -> Option<View<A>> {
        self.table.lookup_reply(&reply_key(key))
    }

    /// Track an inbound TCP or UDP packet `p` (parsed from `frame`) that
    /// arrived on port `ingress`: find its connection (or the NAT
    /// connection it replies on), create one for the first packet of a
    /// flow, move its state and deadline, and count its bytes. `hint` is
    /// what the prefetch pass found for the frame (used where its keys are
    /// the packet's).
    // Always inlined: its result goes back through memory otherwise, and
    // its common case is a few lines (`established`).
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    pub fn track<'s>(
        &mut self,
        snap: &'s Snapshot,
        now_ns: u64,
        ingress: u8,
        p: &Parsed<A>,
        frame: &[u8],
        hint: &Hint<A>,
        stats: &mut impl Counts,
    ) -> Track<'s, A> {
        let cand = hint.cand();
        self.track_lazy(snap, now_ns, ingress, p, frame, cand, || *hint, stats)
    }

    /// [`Tracker::track`] with the hint's candidate entry (see
    /// [`Hint::cand`]) and the hint itself made only if the established
    /// path does not take the packet (a caller keeping hints in plain
    /// words then builds none for the common packet).
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    pub fn track_lazy<'s>(
        &mut self,
        snap: &'s Snapshot,
        now_ns: u64,
        ingress: u8,
        p: &Parsed<A>,
        frame: &[u8],
        cand: u32,
        hint: impl FnOnce() -> Hint<A>,
        stats: &mut impl Counts,
    ) -> Track<'s, A> {
        if let Some(t) = self.established(snap, now_ns, ingress, p, frame, cand) {
            return t;
        }
        let hint = &hint();
        // A NAT real server's reply, as the prefetch pass saw it: no
        // connection has the frame's key, the reply index has a candidate
        // (the reply is what `track_full` looks for first in that case).
        // A frame the pass read as a reply first (from a NAT server's
        // address to no VIP: `ReplyFilter`) has no connection candidate,
        // so `established` gave up at once and the reply is tried before
        // the connection, as IPVS does; it is looked up in full only when
        // the lean read fails, connection first.
        if hint.names_reply(&Key::conn(&p.key)) && self.table.nat_seen() {
            if let Some(r) = self.table.lookup_reply_hot(hint, &reply_key(&p.key)) {
                return self.reply_hot(snap, ticks(now_ns), &r, p);
            }
        }
        self.track_full(snap, now_ns, ingress, p, frame, hint, stats)
    }

    /// [`Tracker::reply`] for a connection read lean.
    #[inline(always)]
    fn reply_hot<'s>(
        &self,
        snap: &'s Snapshot,
        now: u32,
        r: &HotReply<'_, A>,
        p: &Parsed<A>,
    ) -> Track<'s, A> {
        let h = &r.hot;
        let (ret_port, ret_mac) = h.ret();
        if ret_mac == [0; 6] {
            // As in `reply`: installed by sync, its client not heard yet.
            return Track::Drop(DropReason::NoNeigh);
        }
        let ttl = if p.key.proto == PROTO_TCP {
            snap.timeout_ticks().tcp_state(TcpState::from_u8(h.state()))
        } else {
            snap.timeout_ticks().udp()
        };
        let expires = now.wrapping_add(ttl);
        if expires != h.expires {
            h.set_expires(expires);
        }
        if let Some(s) = snap.svc(h.svc()) {
            s.stats.add_out_by(self.writer, u64::from(p.ip_len));
        }
        if let Some(d) = snap.dest(h.dest) {
            d.stats.add_out_by(self.writer, u64::from(p.ip_len));
        }
        Track::Out(Reply {
            ret_port,
            ret_mac,
            vip: r.vip,
            vport: r.vport,
        })
    }

    /// The common packet in a straight line: one of a live connection
    /// (the entry the prefetch pass found, read lean) that moves no state,
    /// a TCP segment without SYN, FIN or RST of an ESTABLISHED connection
    /// or a UDP datagram. It does what [`Tracker::track_full`] does for
    /// such a packet (deadline, sync count, counters), and gives `None`
    /// for anything else, which then goes the full way. `cand` is the
    /// prefetch pass's candidate entry (see [`Hint::cand`]).
    #[inline(always)]
    fn established<'s>(
        &self,
        snap: &'s Snapshot,
        now_ns: u64,
        ingress: u8,
        p: &Parsed<A>,
        frame: &[u8],
        cand: u32,
    ) -> Option<Track<'s, A>> {
        let h = self.table.lookup_hot_at(cand, &Key::conn(&p.key))?;
        let now = ticks(now_ns);
        let timeouts = snap.timeout_ticks();
        let (state, ttl) = if p.key.proto == PROTO_TCP {
            if h.state() != TcpState::Established as u8 || p.tcp_flags & (SYN | FIN | RST) != 0 {
                return None;
            }
            (TcpState::Established, timeouts.established())
        } else {
            (TcpState::None, timeouts.udp())
        };
        // Not stale (a SYN is never here).
        if reached(now, h.expires) {
            return None;
        }
        let dest = snap.dest(h.dest)?;
        let expires = now.wrapping_add(ttl);
        if expires != h.expires {
            h.set_expires(expires);
        }
        if let Some(s) = &self.sync {
            // The state does not move here, so only the count sends
            // (ESTABLISHED, the one TCP state here, is a synced one). Unlike
            // IPVS, packets are counted only while a master runs (sync.rs).
            if s.port.master() && h.count_in(sync::SYNC_PERIOD) == sync::SYNC_THRESHOLD {
                self.emit_read(snap, s, now, h.idx, h.seq, state as u8, expires);
            }
            if h.return_unknown() {
                self.learn_return(h.idx, h.seq, ingress, p.src_mac(frame));
            }
        }
        if let Some(s) = snap.svc(h.svc()) {
            s.stats.add_in_by(self.writer, u64::from(p.ip_len));
        }
        dest.stats.add_in_by(self.writer, u64::from(p.ip_len));
        Some(Track::In(
            dest,
            Bound {
                fwd: h.fwd(),
                rport: h.rport(),
            },
        ))
    }

    /// [`Tracker::emit`] for entry `idx` as read at `seq` by the
    /// established path (which did not copy it out): read in full again,
    /// unless it was rewritten since.
    #[cold]
    #[allow(clippy::too_many_arguments)]
    fn emit_read(
        &self,
        snap: &Snapshot,
        s: &SyncLink,
        now: u32,
        idx: u32,
        seq: u32,
        state: u8,
        expires: u32,
    ) {
        if let Some(v) = self.table.read(idx).filter(|v| v.seq == seq) {
            self.emit(snap, s, now, &v, state, expires);
        }
    }

    /// Where replies on NAT connection `idx` (read at `seq`), installed by
    /// sync, go: where its client's packet came from (port `ingress`,
    /// MAC `mac`).
    #[cold]
    fn learn_return(&self, idx: u32, seq: u32, ingress: u8, mac: [u8; 6]) {
        if let Some(v) = self.table.read(idx).filter(|v| v.seq == seq) {
            self.table.set_nat_return(&v, ingress, mac);
        }
    }

    /// [`Tracker::track`] for every packet: the connection looked up in
    /// full, the reply index, new connections, the state machine.
    #[allow(clippy::too_many_arguments)]
    #[inline(never)]
    fn track_full<'s>(
        &mut self,
        snap: &'s Snapshot,
        now_ns: u64,
        ingress: u8,
        p: &Parsed<A>,
        frame: &[u8],
        hint: &Hint<A>,
        stats: &mut impl Counts,
    ) -> Track<'s, A> {
        let timeouts = snap.timeout_ticks();
        let is_tcp = p.key.proto == PROTO_TCP;
        // As IPVS: a SYN opens a connection unless RST is set too.
        let syn = is_tcp && p.tcp_flags & (SYN | RST) == SYN;
        let now = ticks(now_ns);
        let key = Key::conn(&p.key);
        let mut hashed = 0;
        let found = self.table.lookup_hinted_hashed(hint, &key, &mut hashed);
        let stale = found.filter(|v| is_stale(now, syn, v));

        // The client direction first: a frame may be a connection's packet
        // and a NAT connection's reply at once (hairpin: a NAT real server
        // that is also a client of a VIP, from its service port, to a
        // client address that is a VIP too) and is then the connection's.
        // A frame that is only a reply costs little here: the prefetch
        // pass proved its key absent from the summaries (see
        // `ConnTable::hint_entries`).
        if found.is_none() && self.table.replies_from(p.key.cip) {
            let rk = reply_key(&p.key);
            let rp = hint
                .reply_probe(&key, &rk)
                .unwrap_or_else(|| self.table.reply_probe(&rk));
            if let Some(v) = self.table.lookup_reply_probe(&rp) {
                return self.reply(snap, now, v, p);
            }
        }
        let v = match (found, stale) {
            (Some(v), None) => v,
            _ => 'made: {
                // The probe again (the lookup's, made from the same hint:
                // a packet of an established flow never needs it whole).
                let probe = self.table.probe_hinted_hashed(hint, &key, hashed);
                // Sloppy TCP (IPVS's): any segment but a RST opens one,
                // so a flow moved here mid-stream by the router goes on.
                let opens = !is_tcp || syn || (snap.sloppy_tcp && p.tcp_flags & RST == 0);
                // Before a decision that a connection missed would make
                // wrong (drop the segment, evict to make room), a key the
                // prefetch pass found absent is looked up again: the pass
                // ran before the earlier frames of this batch, one of which
                // may have made the connection.
                if found.is_none() && probe.proved_absent() && (!opens || self.part.is_full()) {
                    match self.missed(now, syn, &key, p) {
                        Some(Ok(v)) => break 'made v,
                        Some(Err(v)) => return self.reply(snap, now, v, p),
                        None => {}
                    }
                }
                if !opens {
                    return self.no_conn(snap, now_ns, p, stats);
                }
                let Some(svc) = snap.lookup_in(p.key.proto, p.key.vip, p.key.vport) else {
                    return Track::Pass;
                };
                if stale.is_none() && !self.make_room(snap, now, stats) {
                    return self.stateless(snap, svc, now_ns, p, stats);
                }
                match self.create(snap, svc, &probe, stale, now_ns, ingress, p, frame, stats) {
                    Ok(v) => v,
                    Err(DropReason::ConnTableFull) => {
                        return self.stateless(snap, svc, now_ns, p, stats)
                    }
                    Err(r) => return Track::Drop(r),
                }
            }
        };

        let Some(dest) = snap.dest(v.dest) else {
            return Track::Drop(DropReason::NoDest);
        };
        let (state, ttl) = if is_tcp
            && v.state == TcpState::Established as u8
            && p.tcp_flags & (SYN | FIN | RST) == 0
        {
            // The common segment of an established connection (ACK or no
            // flag) leaves the state as it is: no transition to make.
            (TcpState::Established, timeouts.established())
        } else if is_tcp {
            let old = TcpState::from_u8(v.state);
            let new = old.next(p.tcp_flags);
            if new != old && self.table.set_state(&v, v.state, new as u8) {
                transition(dest, old, new);
            }
            let ttl = timeouts.tcp_state(new);
            let ttl = if new == TcpState::SynRecv && self.part.under_pressure() {
                ttl.min(time::secs(HALF_OPEN_PRESSURE_SECS))
            } else {
                ttl
            };
            (new, ttl)
        } else {
            (TcpState::None, timeouts.udp())
        };
        // In ticks already: the snapshot converted its timeouts.
        let expires = now.wrapping_add(ttl);
        if expires != v.expires {
            self.table.set_expires(&v, expires);
        }
        if let Some(s) = &self.sync {
            // Unlike IPVS, packets are counted for the threshold only while
            // a master runs: one that starts counts from then on (sync.rs).
            if s.port.master() {
                let n = self.table.count_in(&v, sync::SYNC_PERIOD);
                let send = if is_tcp {
                    sync::tcp_synced_state(state)
                        && (n == sync::SYNC_THRESHOLD
                            || (state as u8 != v.state && state != TcpState::Established))
                } else {
                    n == sync::SYNC_THRESHOLD
                };
                if send {
                    self.emit(snap, s, now, &v, state as u8, expires);
                }
            }
            if let Some(n) = v.nat {
                if n.ret_mac == [0; 6] {
                    // Installed by sync: replies go where this came from.
                    self.table.set_nat_return(&v, ingress, p.src_mac(frame));
                }
            }
        }
        if let Some(s) = snap.svc(v.svc) {
            s.stats.add_in_by(self.writer, u64::from(p.ip_len));
        }
        dest.stats.add_in_by(self.writer, u64::from(p.ip_len));
        Track::In(dest, Bound::of(&v))
    }

    /// A real server's packet on NAT connection `v`: push its deadline and
    /// count the bytes.
    fn reply<'s>(&self, snap: &'s Snapshot, now: u32, v: View<A>, p: &Parsed<A>) -> Track<'s, A> {
        let Some(reply) = Reply::of(&v) else {
            return Track::Drop(DropReason::NoConn);
        };
        if reply.ret_mac == [0; 6] {
            // Installed by sync, and its client has not been heard from
            // here yet: nowhere known to send the reply to.
            return Track::Drop(DropReason::NoNeigh);
        }
        let ttl = if p.key.proto == PROTO_TCP {
            snap.timeout_ticks().tcp_state(TcpState::from_u8(v.state))
        } else {
            snap.timeout_ticks().udp()
        };
        // As on the way in: a deadline that did not move (the tick is
        // 10 ms) is not written again, so the entry's line stays clean.
        let expires = now.wrapping_add(ttl);
        if expires != v.expires {
            self.table.set_expires(&v, expires);
        }
        if let Some(s) = snap.svc(v.svc) {
            s.stats.add_out_by(self.writer, u64::from(p.ip_len));
        }
        if let Some(d) = snap.dest(v.dest) {
            d.stats.add_out_by(self.writer, u64::from(p.ip_len));
        }
        Track::Out(reply)
    }

    /// Create the connection of a new flow of `svc` (or rebind `stale`, the
    /// entry its key still names) to a server chosen for it, and count it.
    #[allow(clippy::too_many_arguments)]
    fn create(
        &mut self,
        snap: &Snapshot,
        svc: &Arc<ServiceRt>,
        probe: &Probe<A>,
        stale: Option<View<A>>,
        now_ns: u64,
        ingress: u8,
        p: &Parsed<A>,
        frame: &[u8],
        stats: &mut impl Counts,
    ) -> Result<View<A>, DropReason> {
        let choice = self.choose(snap, svc, &p.key, now_ns, stats)?;
        let nat = match (choice.dest.fwd, A::of_ip(choice.dest.sched.addr)) {
            (Fwd::Nat, Some(rip)) => Some(NatInit {
                rip,
                rport: nat_rport(&choice.dest, p.key.vport),
                ret_port: ingress,
                ret_mac: p.src_mac(frame),
            }),
            _ => None,
        };
        let init = Init {
            state: TcpState::None as u8,
            fwd: fwd_code(choice.dest.fwd),
            expires: time::after(ticks(now_ns), snap.timeouts.tcp_state(TcpState::None)),
            dest: choice.dest.id,
            svc: svc.id,
            ctl: choice.ctl,
            nat,
        };
        let undo_ctl = |t: &ConnTable<A>| {
            if choice.ctl != 0 {
                t.add_ctl(choice.ctl - 1, -1);
            }
        };
        // Whether the entry is this call's own, as written (a fresh insert
        // is; a rebound one is unless it changed since).
        let (v, ours) = match stale {
            Some(old) => match self.table.rebind(&old, init) {
                Some((old, new)) => {
                    self.unbind_entry(snap, &old);
                    (new, None)
                }
                None => {
                    undo_ctl(&self.table);
                    return Err(DropReason::NoConn);
                }
            },
            None => match self.table.insert_at(&mut self.part, probe, &init) {
                Ok((idx, seq)) => (ConnTable::view_of(idx, seq, &probe.key, &init), Some(true)),
                Err(Insert::Exists(v)) => {
                    undo_ctl(&self.table);
                    (v, Some(false))
                }
                Err(Insert::Full) => {
                    undo_ctl(&self.table);
                    return Err(DropReason::ConnTableFull);
                }
            },
        };
        let ours = ours.unwrap_or_else(|| {
            v.dest == choice.dest.id && v.seq == self.table.read(v.idx).map_or(0, |c| c.seq)
        });
        if ours {
            bind(&choice.dest, false, TcpState::None);
            svc.stats.add_conn_by(self.writer);
            choice.dest.stats.add_conn_by(self.writer);
            stats.conn_created();
        }
        Ok(v)
    }

    /// Choose the real server of a new connection: through the client's
    /// persistence template when the service has one, else the scheduler.
    fn choose(
        &mut self,
        snap: &Snapshot,
        svc: &Arc<ServiceRt>,
        key: &FlowKey<A>,
        now_ns: u64,
        stats: &mut impl Counts,
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
        let life = time::after(now, p.timeout);
        let template_init = |dest: &DestRt| Init {
            state: 0,
            fwd: 0,
            expires: life,
            dest: dest.id,
            svc: svc.id,
            ctl: 1,
            nat: None,
        };
        let tkey = template_key(svc, key, &p);
        if let Some(t) = self.table.lookup(&tkey) {
            let usable = snap.dest(t.dest).filter(|d| d.in_service).cloned();
            match usable {
                Some(dest) if alive(now, &t) => {
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
                        unbind(d, true, TcpState::None);
                    }
                    bind(&dest, true, TcpState::None);
                    return Ok(Choice {
                        dest,
                        ctl: new.idx + 1,
                    });
                }
            }
        }
        if !self.make_room(snap, now, stats) {
            return Err(DropReason::ConnTableFull);
        }
        let dest = schedule(svc)?;
        match self
            .table
            .insert(&mut self.part, &tkey, template_init(&dest))
        {
            Ok(t) => {
                bind(&dest, true, TcpState::None);
                stats.template_created();
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

    /// The connection of `key` (`Ok`) or the NAT connection the packet
    /// replies on (`Err`), looked up again after the prefetch pass found
    /// neither (see `track`); a stale connection is left to the insert.
    #[cold]
    #[inline(never)]
    fn missed(
        &self,
        now: u32,
        syn: bool,
        key: &Key<A>,
        p: &Parsed<A>,
    ) -> Option<Result<View<A>, View<A>>> {
        if let Some(v) = self.table.lookup(key) {
            return (!is_stale(now, syn, &v)).then_some(Ok(v));
        }
        if !self.table.replies_from(p.key.cip) {
            return None;
        }
        self.table.lookup_reply(&reply_key(&p.key)).map(Err)
    }

    /// Room for one more entry in this worker's partition: a free one, or
    /// one made by evicting a half-open or expired entry (counted).
    fn make_room(&mut self, snap: &Snapshot, now: u32, stats: &mut impl Counts) -> bool {
        if !self.part.is_full() {
            return true;
        }
        match self
            .table
            .evict(&mut self.part, now, |v| eviction_due(now, v))
        {
            Some(old) => {
                self.unbind_entry(snap, &old);
                stats.conn_evicted();
                true
            }
            None => false,
        }
    }

    /// A TCP segment other than a SYN that found no connection: dropped,
    /// unless flows were recently forwarded without an entry (the table
    /// was full), when it may be one of theirs and goes where their first
    /// packet went.
    fn no_conn<'s>(
        &self,
        snap: &'s Snapshot,
        now_ns: u64,
        p: &Parsed<A>,
        stats: &mut impl Counts,
    ) -> Track<'s, A> {
        if !self.table.stateless_open(now_ns) {
            return Track::Drop(DropReason::NoConn);
        }
        match snap.lookup_in(p.key.proto, p.key.vip, p.key.vport) {
            Some(svc) => self.forward_stateless(snap, svc, now_ns, p, stats),
            None => Track::Drop(DropReason::NoConn),
        }
    }

    /// The first packet of a new flow for which the table has no room:
    /// forwarded without an entry, and packets without a connection are
    /// treated as such flows' for as long as an ESTABLISHED one lives.
    fn stateless<'s>(
        &self,
        snap: &'s Snapshot,
        svc: &ServiceRt,
        now_ns: u64,
        p: &Parsed<A>,
        stats: &mut impl Counts,
    ) -> Track<'s, A> {
        let life = xvs_config::time::ns_of_secs(snap.timeouts.tcp.max(snap.timeouts.udp));
        self.table.open_stateless(now_ns.saturating_add(life));
        self.forward_stateless(snap, svc, now_ns, p, stats)
    }

    /// Send packet `p` of `svc` to [`Tracker::stateless_dest`], counted.
    /// NAT needs an entry to translate the replies: without one the packet
    /// is dropped as `conn_table_full`.
    fn forward_stateless<'s>(
        &self,
        snap: &'s Snapshot,
        svc: &ServiceRt,
        now_ns: u64,
        p: &Parsed<A>,
        stats: &mut impl Counts,
    ) -> Track<'s, A> {
        let Some(dest) = self.stateless_dest(snap, svc, &p.key, now_ns) else {
            return Track::Drop(DropReason::NoDest);
        };
        if dest.fwd == Fwd::Nat {
            return Track::Drop(DropReason::ConnTableFull);
        }
        svc.stats.add_in_by(self.writer, u64::from(p.ip_len));
        dest.stats.add_in_by(self.writer, u64::from(p.ip_len));
        stats.stateless();
        Track::In(
            dest,
            Bound {
                fwd: fwd_code(dest.fwd),
                rport: None,
            },
        )
    }

    /// The real server of a flow `key` of `svc` forwarded without an entry,
    /// the same for every packet of the flow while the service's servers
    /// stay as they are:
    /// * a persistent service's live template for the client, if there is
    ///   one (the server its connections go to);
    /// * for `sh`, `dh` and `mh`, whose choice is a function of the tuple
    ///   and the server list alone, the scheduler's own choice (what an
    ///   entry made later would hold too);
    /// * otherwise the table's keyed hash of the 5-tuple, weighted over the
    ///   servers of non-zero weight in list order (overload is ignored: it
    ///   comes and goes with the load, and would move the flow).
    pub fn stateless_dest<'s>(
        &self,
        snap: &'s Snapshot,
        svc: &ServiceRt,
        key: &FlowKey<A>,
        now_ns: u64,
    ) -> Option<&'s Arc<DestRt>> {
        if let Some(p) = svc.persist {
            let tkey = template_key(svc, key, &p);
            let now = ticks(now_ns);
            let held = self
                .table
                .lookup(&tkey)
                .filter(|t| alive(now, t))
                .and_then(|t| snap.dest(t.dest))
                .filter(|d| d.in_service);
            if held.is_some() {
                return held;
            }
        }
        let mut st = svc.sched.lock().unwrap_or_else(|e| e.into_inner());
        let id = if matches!(st.scheduler_name(), "sh" | "dh" | "mh") {
            st.schedule(&key.to_sched_flow(), now_ns)?.id
        } else {
            let usable = || {
                st.dests()
                    .iter()
                    .filter(|d| d.in_service && d.sched.weight > 0)
            };
            let total: u64 = usable().map(|d| d.sched.weight as u64).sum();
            if total == 0 {
                return None;
            }
            let mut r = self.table.flow_hash(&Key::conn(key)) % total;
            usable()
                .find(|d| {
                    let w = d.sched.weight as u64;
                    if r < w {
                        return true;
                    }
                    r -= w;
                    false
                })?
                .id
        };
        snap.dest(id)
    }

    /// Release what a removed or rebound entry held: its server's count
    /// and, for a connection, its template's.
    fn unbind_entry(&self, snap: &Snapshot, old: &View<A>) {
        if let Some(d) = snap.dest(old.dest) {
            unbind(d, old.key.template, TcpState::from_u8(old.state));
        }
        if !old.key.template && old.ctl != 0 {
            self.table.add_ctl(old.ctl - 1, -1);
        }
    }

    /// Queue the record of connection `v` (now in `state`, expiring at
    /// `expires`) for the sender, then that of its template if it has one
    /// (an IPv6 connection makes IPv6 records).
    #[cold]
    fn emit(&self, snap: &Snapshot, s: &SyncLink, now: u32, v: &View<A>, state: u8, expires: u32) {
        if let Some(c) = sync::record_of(snap, v, state, expires, now) {
            s.port.emit(s.worker, c);
        }
        if v.ctl != 0 {
            let t = self.table.read(v.ctl - 1).filter(|t| t.key.template);
            if let Some(c) = t.and_then(|t| sync::record_of(snap, &t, 0, t.expires, now)) {
                s.port.emit(s.worker, c);
            }
        }
    }

    /// The port and worker this tracker syncs through, if it does.
    pub fn sync_link(&self) -> Option<(Arc<SyncPort>, usize)> {
        self.sync.as_ref().map(|l| (l.port.clone(), l.worker))
    }
}

impl Tracker {
    /// Install up to [`sync::INSTALL_BATCH`] of the records queued for this
    /// worker (a backup's), counted at the port: IPv4 connections here,
    /// IPv6 ones into `six` (the worker's IPv6 tracker); records that
    /// arrive while the port is not a backup are dropped. Returns how many
    /// were taken.
    pub fn install_queued(
        &mut self,
        six: &mut Tracker<Ipv6Addr>,
        snap: &Snapshot,
        now_ns: u64,
        stats: &mut impl Counts,
    ) -> usize {
        let Some(link) = self.sync.take() else {
            return 0;
        };
        let mut n = 0;
        if link.port.has_input(link.worker) {
            let on = link.port.backup();
            while n < sync::INSTALL_BATCH {
                let Some(c) = link.port.pop_in(link.worker) else {
                    break;
                };
                n += 1;
                if on {
                    let what = if c.vaddr.is_ipv6() {
                        six.install(snap, now_ns, &c, stats)
                    } else {
                        self.install(snap, now_ns, &c, stats)
                    };
                    match what {
                        Installed::Wants(svc) => {
                            link.port.park(link.worker, c, svc);
                        }
                        what => link.port.count(link.worker, what),
                    }
                }
            }
        }
        self.sync = Some(link);
        n
    }
}

impl<A: Addr> Tracker<A> {
    /// Install sync record `c` as IPVS's backup does: a connection or
    /// template new here is bound to the local real server the record
    /// names, in the record's state, for the record's timeout (0: the
    /// state's, templates 3 minutes), marked as synced. When the service
    /// exists (none: `NoService`) but not with that server, it is bound to
    /// the snapshot's synced-only destination for it and forwarded by the
    /// record's method (`Unbound`), or, when the snapshot has none yet,
    /// `Wants` one (the caller parks the record). An existing one bound to
    /// the same server (address and port) takes the state and timeout and
    /// keeps its binding; one bound to another server is replaced unless
    /// the record is inactive (then it is stale and ignored).
    pub fn install(
        &mut self,
        snap: &Snapshot,
        now_ns: u64,
        c: &SyncConn,
        stats: &mut impl Counts,
    ) -> Installed {
        let (ca, va) = match sync::check::<A>(c) {
            Ok(a) => a,
            Err(r) => return Installed::Rejected(r),
        };
        let da = c.daddr;
        let template = c.is_template();
        let svc = if c.fwmark != 0 {
            snap.fwmark_of(c.fwmark, va.ip().is_ipv6())
        } else {
            snap.lookup_in(c.protocol, va, c.vport)
        };
        let Some(svc) = svc else {
            return Installed::Rejected(Reject::NoService);
        };
        let local = {
            let st = svc.sched.lock().unwrap_or_else(|e| e.into_inner());
            st.dests()
                .iter()
                .find(|d| {
                    d.in_service
                        && d.sched.addr == da
                        && (d.sched.port == c.dport
                            || (!template && nat_rport(d, c.vport) == c.dport)
                            || (template && c.dport == 0))
                })
                .cloned()
        };
        let (dest, fwd) = match local {
            Some(d) => {
                let f = d.fwd;
                (d, f)
            }
            None => {
                // IPVS installs it without a destination, forwarded by the
                // record's method.
                let Some(fwd) = c.method() else {
                    return Installed::Rejected(Reject::NoDest);
                };
                if !sync::fits_family(c.vaddr, da, fwd) {
                    return Installed::Rejected(Reject::Family);
                }
                let key = SyncedKey {
                    svc: svc.id,
                    addr: da,
                    port: c.dport,
                    fwd,
                };
                match snap.synced_dest(&key) {
                    Some(d) => (d.clone(), fwd),
                    None => return Installed::Wants(svc.key),
                }
            }
        };
        let unbound = !dest.in_service;
        let now = ticks(now_ns);
        let state = if template { 0 } else { c.state as u8 };
        let tstate = TcpState::from_u8(state);
        let secs = match c.timeout {
            0 if template => sync::TEMPLATE_SECS,
            0 if c.protocol == PROTO_TCP => snap.timeouts.tcp_state(tstate),
            0 => snap.timeouts.udp,
            t => t.min(sync::MAX_TIMEOUT_SECS),
        };
        let key = if template {
            let vaddr = if c.fwmark != 0 {
                A::of_mark(c.fwmark)
            } else {
                va
            };
            Key::template_of(c.protocol, ca, vaddr, c.vport)
        } else {
            Key::conn(&FlowKey {
                proto: c.protocol,
                cip: ca,
                cport: c.cport,
                vip: va,
                vport: c.vport,
            })
        };
        let nat = match (template, fwd) {
            (false, Fwd::Nat) => Some(NatInit {
                rip: match A::of_ip(da) {
                    Some(a) => a,
                    None => return Installed::Rejected(Reject::Family),
                },
                rport: if c.dport == 0 {
                    nat_rport(&dest, c.vport)
                } else {
                    c.dport
                },
                ret_port: 0,
                ret_mac: [0; 6],
            }),
            _ => None,
        };
        let mut init = Init {
            state,
            fwd: fwd_code(fwd),
            expires: time::after(now, secs),
            dest: dest.id,
            svc: svc.id,
            ctl: 0,
            nat,
        };
        let found = self.table.lookup(&key);
        if let Some(v) = found.filter(|v| alive(now, v)) {
            // The same real server, whichever destination the entry is
            // bound to (a synced-only one, then the server configured
            // later): it keeps its binding, as IPVS compares addresses.
            let bound = snap.dest(v.dest).filter(|d| {
                v.dest == dest.id
                    || (d.sched.addr == dest.sched.addr && d.sched.port == dest.sched.port)
            });
            if let Some(bound) = bound {
                if !template && v.state != state && self.table.set_state(&v, v.state, state) {
                    transition(bound, TcpState::from_u8(v.state), tstate);
                }
                self.table.set_expires(&v, init.expires);
                return Installed::Updated;
            }
            if c.flags & sync::flags::INACTIVE != 0 {
                return Installed::Stale;
            }
        }
        if template {
            // A template keeps its count of the connections it controls.
            init.ctl = found.map_or(0, |v| v.ctl);
        } else if let Some(p) = svc.persist {
            // Controlled by the client's template when that names the
            // same server (it holds the template while it lives).
            let tkey = Key::template_of(
                if c.fwmark != 0 { 0 } else { c.protocol },
                ca.persist(&p),
                if c.fwmark != 0 {
                    A::of_mark(c.fwmark)
                } else {
                    va
                },
                if c.fwmark != 0 { 0 } else { c.vport },
            );
            if let Some(t) = self.table.lookup(&tkey) {
                if t.dest == dest.id && alive(now, &t) {
                    self.table.add_ctl(t.idx, 1);
                    init.ctl = t.idx + 1;
                }
            }
        }
        let undo_ctl = |t: &ConnTable<A>| {
            if !template && init.ctl != 0 {
                t.add_ctl(init.ctl - 1, -1);
            }
        };
        let (v, what) = match found {
            Some(old) => match self.table.rebind(&old, init) {
                Some((old, new)) => {
                    let was = if alive(now, &old) {
                        Installed::Replaced
                    } else {
                        Installed::New
                    };
                    self.unbind_entry(snap, &old);
                    (new, was)
                }
                None => {
                    undo_ctl(&self.table);
                    return Installed::Rejected(Reject::Full);
                }
            },
            None => {
                if !self.make_room(snap, now, stats) {
                    undo_ctl(&self.table);
                    return Installed::Rejected(Reject::Full);
                }
                match self.table.insert(&mut self.part, &key, init) {
                    Ok(v) => (v, Installed::New),
                    Err(Insert::Exists(v)) => {
                        // Made here meanwhile by another worker's packet.
                        undo_ctl(&self.table);
                        self.table.set_expires(&v, init.expires);
                        return Installed::Updated;
                    }
                    Err(Insert::Full) => {
                        undo_ctl(&self.table);
                        return Installed::Rejected(Reject::Full);
                    }
                }
            }
        };
        bind(&dest, template, tstate);
        self.table.set_synced(&v);
        if unbound && what == Installed::New {
            Installed::Unbound
        } else {
            what
        }
    }
}

impl<A: Addr> Tracker<A> {
    /// Expire this worker's share of connections and templates: the sweep
    /// walks the partition once per [`SWEEP_PERIOD_NS`], a slice per call,
    /// so it never stalls the worker; a call handles at most
    /// [`SWEEP_BATCH`] expired entries and the next resumes after them, so
    /// every expired entry goes within a period plus one call per batch. A
    /// template that still controls connections is kept and its deadline
    /// pushed.
    pub fn expire(&mut self, snap: &Snapshot, now_ns: u64, stats: &mut impl Counts) {
        let elapsed = match self.last_sweep {
            Some(t) => now_ns.saturating_sub(t),
            None => 0,
        };
        self.last_sweep = Some(now_ns);
        let now = ticks(now_ns);
        let mut expired = std::mem::take(&mut self.expired);
        expired.clear();
        // The sweep fills the scratch buffer at most to its capacity (no
        // allocation) and resumes next call where it stopped.
        self.table.sweep(
            &mut self.part,
            elapsed.min(SWEEP_PERIOD_NS),
            SWEEP_PERIOD_NS,
            now,
            &mut expired,
        );
        for v in &expired {
            if holds(v) {
                let t = snap
                    .svc(v.svc)
                    .and_then(|s| s.persist)
                    .map_or(TEMPLATE_FALLBACK_SECS, |p| p.timeout.max(1));
                self.table.set_expires(v, time::after(now, t));
                continue;
            }
            let removed = self
                .table
                .remove_if(&mut self.part, v.idx, v.seq, |cur| !alive(now, cur));
            if let Some(old) = removed {
                self.unbind_entry(snap, &old);
                stats.conn_expired();
            }
        }
        self.expired = expired;
    }
}

/// The key of the persistence template of a client's flow `key` to `svc`
/// (persistent as `p`): `<proto, masked client, VIP, port>`, or `<IP,
/// masked client, mark>` for a firewall-mark service.
#[inline]
fn template_key<A: Addr>(
    svc: &ServiceRt,
    key: &FlowKey<A>,
    p: &xvs_config::svc::Persist,
) -> Key<A> {
    let caddr = key.cip.persist(p);
    match svc.key {
        SvcKey::Fwmark { mark, .. } => Key::template_of(0, caddr, A::of_mark(mark), 0),
        SvcKey::Addr { port, .. } => Key::template_of(key.proto, caddr, key.vip, port),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ipv4::PROTO_UDP;

    fn entry(key: Key, expires: u32, ctl: u32) -> View {
        View {
            idx: 0,
            seq: 0,
            key,
            state: 0,
            fwd: 0,
            expires,
            dest: 0,
            svc: 0,
            ctl,
            nat: None,
        }
    }

    #[test]
    fn a_template_lives_while_it_controls_connections() {
        let c = Ipv4Addr::new(198, 18, 0, 1);
        let tkey = Key::template(PROTO_TCP, c, u32::from(Ipv4Addr::new(198, 19, 0, 1)), 80);
        let ckey = Key::conn(&FlowKey {
            proto: PROTO_UDP,
            cip: c,
            cport: 5000,
            vip: Ipv4Addr::new(198, 19, 0, 1),
            vport: 53,
        });
        let now = 1000;
        // Before its deadline anything lives.
        assert!(alive(now, &entry(tkey, now + 1, 0)));
        assert!(alive(now, &entry(ckey, now + 1, 0)));
        // Past it, only a template that controls connections.
        assert!(alive(now, &entry(tkey, now, 2)));
        assert!(holds(&entry(tkey, now, 2)));
        assert!(!alive(now, &entry(tkey, now, 0)));
        // A connection's `ctl` names its template; it does not keep it alive.
        assert!(!alive(now, &entry(ckey, now, 3)));
        assert!(!holds(&entry(ckey, now, 3)));
    }

    mod flood {
        use crate::conn::state::TcpState;
        use crate::conn::table::Key;
        use crate::conn::time::ticks;
        use crate::flow::FlowKey;
        use crate::pipeline::{DropReason, Verdict};
        use crate::svc::Fwd;
        use crate::testkit::{dr_service, rs_mac, service_with, tcp_frame, Fixture, CIP, VIP};
        use crate::xmit::tun::TunKind;
        use std::net::Ipv4Addr;

        /// One second, as the pipeline's clock counts.
        const S: u64 = 1_000_000_000;

        /// Client `n` (a spoofed source of a flood, or a real client).
        fn cip(n: u32) -> [u8; 4] {
            (0xC613_0000 + n).to_be_bytes()
        }

        fn key(c: [u8; 4], port: u16) -> Key {
            Key::conn(&FlowKey {
                proto: 6,
                cip: Ipv4Addr::from(c),
                cport: port,
                vip: Ipv4Addr::from(VIP),
                vport: 80,
            })
        }

        /// Send one frame at `now`; the real server it went to (by MAC).
        fn send(f: &mut Fixture, now: u64, mut fr: Vec<u8>) -> Result<u8, Verdict> {
            match f.pipeline.process(now, &mut fr) {
                Verdict::Tx(_) => Ok((1..=8).find(|&i| fr[..6] == rs_mac(i)).expect("a server")),
                v => Err(v),
            }
        }

        fn syn(c: [u8; 4], port: u16) -> Vec<u8> {
            tcp_frame(c, port, 80, true, false, b"")
        }

        fn ack(c: [u8; 4], port: u16, data: &[u8]) -> Vec<u8> {
            tcp_frame(c, port, 80, false, true, data)
        }

        #[test]
        fn a_new_syn_evicts_a_half_open_entry_of_a_full_partition() {
            let mut f = Fixture::new(dr_service("wlc", 2, None), 64);
            // 4 established connections, then a flood's 60 half-open ones.
            for n in 0..4 {
                send(&mut f, S, syn(CIP, 1000 + n)).unwrap();
                send(&mut f, S, ack(CIP, 1000 + n, b"")).unwrap();
            }
            for n in 0..60 {
                send(&mut f, S + n as u64, syn(cip(n), 7)).unwrap();
            }
            assert!(f.pipeline.partition().is_full());
            // 8 real clients connect: each SYN evicts a half-open entry,
            // never an established one (8 samples of which at least 52 in
            // 64 are half-open: all miss with a chance of 10^-6).
            for n in 0..8 {
                let c = cip(1000 + n);
                let s = send(&mut f, 40 * S, syn(c, 9)).unwrap();
                assert_eq!(send(&mut f, 40 * S, ack(c, 9, b"x")), Ok(s));
            }
            let st = f.pipeline.stats();
            assert_eq!(st.conns_evicted, 8);
            assert_eq!(st.stateless, 0);
            assert_eq!(st.drops.iter().sum::<u64>(), 0);
            let t = f.pipeline.table();
            assert_eq!(t.iter().count(), 64);
            for n in 0..4 {
                let v = t.lookup(&key(CIP, 1000 + n)).expect("established kept");
                assert_eq!(v.state, TcpState::Established as u8);
            }
            for n in 0..8 {
                assert!(t.lookup(&key(cip(1000 + n), 9)).is_some());
            }
            let flood = (0..60).filter(|&n| t.lookup(&key(cip(n), 7)).is_some());
            assert_eq!(flood.count(), 52);
            // The servers' counts follow the evictions.
            let inactive: u32 = f.dests.iter().map(|d| d.sched.load.inactive()).sum();
            let active: u32 = f.dests.iter().map(|d| d.sched.load.active()).sum();
            assert_eq!((active, inactive), (12, 52));
        }

        #[test]
        fn the_oldest_half_open_entries_go_first() {
            let mut f = Fixture::new(dr_service("rr", 2, None), 256);
            for n in 0..256 {
                send(&mut f, S + n as u64 * S / 100, syn(cip(n), 7)).unwrap();
            }
            for n in 0..64 {
                send(&mut f, 4 * S, syn(cip(5000 + n), 7)).unwrap();
            }
            assert_eq!(f.pipeline.stats().conns_evicted, 64);
            // Each eviction took the oldest of a few random samples: the
            // entries evicted are mostly from the older half.
            let t = f.pipeline.table();
            let gone_old = (0..128).filter(|&n| t.lookup(&key(cip(n), 7)).is_none());
            let gone_new = (128..256).filter(|&n| t.lookup(&key(cip(n), 7)).is_none());
            let (old, new) = (gone_old.count(), gone_new.count());
            assert_eq!(old + new, 64);
            assert!(old > 3 * new, "old {old}, new {new}");
            // The newest flood entries (the real clients' age) survive.
            assert!((5000..5064).all(|n| t.lookup(&key(cip(n), 7)).is_some()));
        }

        #[test]
        fn half_open_entries_live_shorter_under_pressure() {
            let mut f = Fixture::new(dr_service("rr", 1, None), 80);
            let expires =
                |f: &Fixture, c, p| f.pipeline.table().lookup(&key(c, p)).unwrap().expires;
            send(&mut f, S, syn(cip(0), 7)).unwrap();
            assert_eq!(expires(&f, cip(0), 7), ticks(S) + 60 * 100);
            for n in 1..69 {
                send(&mut f, S, syn(cip(n), 7)).unwrap();
            }
            // 69 of 80: below 7/8.
            assert_eq!(expires(&f, cip(68), 7), ticks(S) + 60 * 100);
            send(&mut f, S, syn(cip(69), 7)).unwrap();
            assert_eq!(expires(&f, cip(69), 7), ticks(S) + 10 * 100);
            // An established connection keeps its full timeout.
            send(&mut f, S, ack(cip(69), 7, b"")).unwrap();
            assert_eq!(expires(&f, cip(69), 7), ticks(S) + 900 * 100);
        }

        #[test]
        fn a_partition_full_of_established_entries_forwards_new_flows_statelessly() {
            let mut f = Fixture::new(dr_service("wlc", 3, None), 16);
            for n in 0..16 {
                send(&mut f, S, syn(CIP, 1000 + n)).unwrap();
                send(&mut f, S, ack(CIP, 1000 + n, b"")).unwrap();
            }
            let mut used = [0u32; 4];
            for n in 0..60 {
                let c = cip(n);
                let s = send(&mut f, 2 * S, syn(c, 5)).unwrap();
                // Every later packet of the flow goes to the same server,
                // with the table still full.
                assert_eq!(send(&mut f, 2 * S, ack(c, 5, b"")), Ok(s));
                assert_eq!(send(&mut f, 3 * S, ack(c, 5, b"GET /")), Ok(s));
                assert_eq!(send(&mut f, 4 * S, syn(c, 5)), Ok(s), "a retransmitted SYN");
                used[usize::from(s)] += 1;
            }
            // Spread over the three servers by the hash.
            assert!(used[1..].iter().all(|&u| u > 5), "{used:?}");
            let st = f.pipeline.stats();
            assert_eq!(st.stateless, 240);
            assert_eq!(st.conns_evicted, 0);
            assert_eq!(st.drops.iter().sum::<u64>(), 0);
            // No entry was made; every established flow is still there.
            let t = f.pipeline.table();
            assert_eq!(t.iter().count(), 16);
            assert!((0..16).all(|n| t.lookup(&key(CIP, 1000 + n)).is_some()));
            let conns: u64 = f.dests.iter().map(|d| d.stats.get().conns).sum();
            assert_eq!(conns, 16);
        }

        #[test]
        fn stateless_mh_flows_go_where_an_entry_would_have_sent_them() {
            let mut full = Fixture::new(dr_service("mh", 3, None), 4);
            let mut roomy = Fixture::new(dr_service("mh", 3, None), 1000);
            for n in 0..4 {
                send(&mut full, S, syn(CIP, 1000 + n)).unwrap();
                send(&mut full, S, ack(CIP, 1000 + n, b"")).unwrap();
            }
            for n in 0..50 {
                let c = cip(n * 7919);
                let s = send(&mut full, S, syn(c, 5)).unwrap();
                assert_eq!(send(&mut roomy, S, syn(c, 5)), Ok(s), "client {n}");
            }
            assert_eq!(full.pipeline.stats().stateless, 50);
            assert_eq!(roomy.pipeline.stats().stateless, 0);
        }

        #[test]
        fn without_a_stateless_flow_a_segment_without_a_connection_is_dropped() {
            let mut f = Fixture::new(dr_service("rr", 2, None), 16);
            assert_eq!(
                send(&mut f, S, ack(CIP, 5, b"")),
                Err(Verdict::Drop(DropReason::NoConn))
            );
        }

        #[test]
        fn sloppy_tcp_takes_over_a_flow_mid_stream_on_the_server_mh_chose() {
            use crate::svc::Snapshot;
            use crate::testkit::{self, frame};
            use std::sync::Arc;
            // Two directors with the same mh configuration: the flow opens
            // on the first, the router moves it to the second mid-stream.
            let mut first = Fixture::new(dr_service("mh", 3, None), 64);
            let mut second = Fixture::new(dr_service("mh", 3, None), 64);
            let mut snap = Snapshot::of_services(&[second.svc.clone()], Default::default());
            snap.sloppy_tcp = true;
            second.pipeline.set_snapshot(Arc::new(snap));
            for n in 0..20 {
                let c = cip(n * 7919);
                let s = send(&mut first, S, syn(c, 5)).unwrap();
                assert_eq!(
                    send(&mut second, S, ack(c, 5, b"data")),
                    Ok(s),
                    "client {n}"
                );
                // As in IPVS, an entry opened by an ACK is CLOSE (input-only
                // table), its short timeout pushed by every segment.
                let v = second
                    .pipeline
                    .table()
                    .lookup(&key(c, 5))
                    .expect("an entry");
                assert_eq!(v.state, TcpState::Close as u8);
                assert_eq!(send(&mut second, 2 * S, ack(c, 5, b"more")), Ok(s));
            }
            assert_eq!(second.pipeline.stats().drops.iter().sum::<u64>(), 0);
            // A RST still opens nothing; without sloppy_tcp, the ACK is dropped.
            let rst = frame::eth(
                testkit::CLIENT_MAC,
                testkit::DIR_MAC,
                &frame::ip_packet(&frame::ip(cip(99), VIP), &frame::tcp(5, 80).rst(), b""),
            );
            assert!(send(&mut second, S, rst).is_err());
            assert!(second.pipeline.table().lookup(&key(cip(99), 5)).is_none());
            assert_eq!(
                send(&mut first, S, ack(cip(98), 5, b"")),
                Err(Verdict::Drop(DropReason::NoConn))
            );
        }

        #[test]
        fn nat_needs_an_entry_so_a_full_table_drops_its_new_flows() {
            let nat = vec![(Fwd::Nat, TunKind::Ipip); 2];
            let mut f = Fixture::new(service_with("rr", &nat, None, 80, None), 2);
            for n in 0..2 {
                send(&mut f, S, syn(CIP, 1000 + n)).unwrap();
                send(&mut f, S, ack(CIP, 1000 + n, b"")).unwrap();
            }
            assert_eq!(
                send(&mut f, S, syn(cip(1), 5)),
                Err(Verdict::Drop(DropReason::ConnTableFull))
            );
            assert_eq!(f.pipeline.stats().stateless, 0);
        }

        #[test]
        fn a_nat_reply_pushes_the_deadline_as_time_moves() {
            use crate::testkit::{frame, rip, DIR_MAC};
            let nat = vec![(Fwd::Nat, TunKind::Ipip); 1];
            let mut f = Fixture::new(service_with("rr", &nat, None, 80, None), 16);
            send(&mut f, S, syn(CIP, 1000)).unwrap();
            send(&mut f, S, ack(CIP, 1000, b"")).unwrap();
            let reply = || {
                frame::eth(
                    rs_mac(1),
                    DIR_MAC,
                    &frame::ip_packet(&frame::ip(rip(1), CIP), &frame::tcp(8080, 1000).ack(1), b""),
                )
            };
            let expires = |f: &Fixture| f.pipeline.table().lookup(&key(CIP, 1000)).unwrap().expires;
            let at = |f: &mut Fixture, now: u64| {
                let mut fr = reply();
                assert!(matches!(f.pipeline.process(now, &mut fr), Verdict::Tx(_)));
                expires(f)
            };
            let first = at(&mut f, 100 * S);
            // Within the same tick nothing moves; later, by the time passed.
            assert_eq!(at(&mut f, 100 * S + 1), first);
            let later = at(&mut f, 250 * S);
            assert_eq!(
                later.wrapping_sub(first),
                ticks(250 * S).wrapping_sub(ticks(100 * S))
            );
            assert!(later != first);
        }
    }

    #[test]
    fn expire_removes_more_than_a_batch_in_one_period_without_growing() {
        struct Expired(usize);
        impl Counts for Expired {
            fn conn_created(&mut self) {}
            fn template_created(&mut self) {}
            fn conn_expired(&mut self) {
                self.0 += 1;
            }
            fn conn_evicted(&mut self) {}
            fn stateless(&mut self) {}
        }
        let n = 2 * SWEEP_BATCH + 100;
        let (t, mut parts) = ConnTable::new(n, 1);
        let mut part = parts.pop().unwrap();
        for i in 0..n as u32 {
            let key = Key::conn(&FlowKey {
                proto: PROTO_TCP,
                cip: Ipv4Addr::from(0xC612_0000 + i),
                cport: 1024 + (i % 50_000) as u16,
                vip: Ipv4Addr::new(198, 19, 0, 1),
                vport: 80,
            });
            let init = Init {
                state: 3,
                fwd: 0,
                expires: ticks(SWEEP_PERIOD_NS),
                dest: 0,
                svc: 0,
                ctl: 0,
                nat: None,
            };
            t.insert(&mut part, &key, init).unwrap();
        }
        let mut tr = Tracker::new(Arc::new(t), part);
        let snap = Snapshot::of_services(&[], Default::default());
        let cap = tr.expired.capacity();
        let mut gone = Expired(0);
        // Everything has expired at 1 s; the whole partition is due at 2 s
        // (one period), then calls come every 10 ms: three calls of at most
        // a batch each must find them all.
        tr.expire(&snap, SWEEP_PERIOD_NS, &mut gone);
        let mut now = 2 * SWEEP_PERIOD_NS;
        while gone.0 < n && now <= 2 * SWEEP_PERIOD_NS + 2 * SWEEP_PERIOD_NS / 100 {
            tr.expire(&snap, now, &mut gone);
            assert_eq!(tr.expired.capacity(), cap, "the scratch buffer grew");
            now += SWEEP_PERIOD_NS / 100;
        }
        assert_eq!(
            gone.0, n,
            "expired entries left after a period and three calls"
        );
    }

    /// `track` takes ESTABLISHED and its timeout without the state
    /// machine for a segment without SYN, FIN or RST: the machine must
    /// say the same for every such set of flags.
    #[test]
    fn the_established_shortcut_is_what_the_state_machine_says() {
        for flags in 0..=u8::MAX {
            if flags & (SYN | FIN | RST) == 0 {
                assert_eq!(
                    TcpState::Established.next(flags),
                    TcpState::Established,
                    "flags {flags:#04x}"
                );
            }
        }
    }

    #[test]
    fn fwd_codes_round_trip() {
        for f in [Fwd::Dr, Fwd::Tun, Fwd::Nat] {
            assert_eq!(fwd_of(fwd_code(f)), f);
        }
    }
}
