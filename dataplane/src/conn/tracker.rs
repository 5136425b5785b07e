//! The life of a connection, in one place: the first packet chooses a real
//! server (through the client's persistence template when the service has
//! one, else the scheduler), creates the entry or rebinds a stale one and
//! counts it against its server; later packets move the TCP state and push
//! the deadline; the sweep removes what is due. The pipeline around it only
//! parses and transmits, so every rule about connections (when a template
//! lives, what a server's counts mean, when a deadline moves) is read and
//! changed here.

use super::state::TcpState;
use super::table::{ConnTable, Init, Insert, Key, NatInit, Partition, ReplyKey, View};
use super::time::{self, reached, ticks};
use crate::flow::FlowKey;
use crate::packet::Parsed;
use crate::svc::{DestRt, Fwd, ServiceRt, Snapshot, SvcKey};
use crate::verdict::DropReason;
use crate::wire::eth::Mac;
use crate::wire::ipv4::PROTO_TCP;
use crate::wire::tcp::SYN;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

/// How often the expiry sweep walks a worker's whole partition.
pub const SWEEP_PERIOD_NS: u64 = 1_000_000_000;

/// Most expired entries one sweep call removes (the capacity of its
/// scratch buffer, allocated once).
pub const SWEEP_BATCH: usize = 4096;

/// Seconds a template is extended by when its service no longer says.
const TEMPLATE_FALLBACK_SECS: u32 = 60;

/// Whether template `v` controls connections: it then lives past its
/// deadline (IPVS: a template does not expire while in use).
#[inline]
pub fn holds(v: &View) -> bool {
    v.key.template && v.ctl > 0
}

/// Whether entry `v` is alive at tick `now`: before its deadline, or a
/// template that still controls connections.
#[inline]
pub fn alive(now: u32, v: &View) -> bool {
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
        _ => {}
    }
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
    pub fn of(v: &View) -> Bound {
        Bound {
            fwd: v.fwd,
            rport: v.nat.map(|n| n.rport),
        }
    }
}

/// Where a NAT real server's packets go back to: the client, as from the
/// virtual service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    /// Port of the worker's group the client's packets came in on.
    pub ret_port: u8,
    /// MAC they came from (the client or its gateway).
    pub ret_mac: Mac,
    /// The virtual address the client talks to.
    pub vip: Ipv4Addr,
    /// The virtual port.
    pub vport: u16,
}

impl Reply {
    /// Where replies on connection `v` go; `None` unless it is a NAT
    /// connection.
    #[inline]
    pub fn of(v: &View) -> Option<Reply> {
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
pub enum Track<'s> {
    /// A packet of a connection bound to server `.0` as `.1`: send it
    /// there by the connection's forwarding method.
    In(&'s Arc<DestRt>, Bound),
    /// A NAT real server's reply: back to the client.
    Out(Reply),
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
pub struct Tracker {
    table: Arc<ConnTable>,
    part: Partition,
    /// Counter shard the per-service and per-server counters go to.
    writer: usize,
    expired: Vec<View>,
    last_sweep: Option<u64>,
}

impl Tracker {
    /// A tracker over `table` owning partition `part`.
    pub fn new(table: Arc<ConnTable>, part: Partition) -> Self {
        Tracker {
            table,
            part,
            writer: usize::MAX,
            expired: Vec::with_capacity(SWEEP_BATCH),
            last_sweep: None,
        }
    }

    /// The shared connection table.
    pub fn table(&self) -> &Arc<ConnTable> {
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
    pub fn lookup(&self, key: &FlowKey) -> Option<View> {
        self.table.lookup(&Key::conn(key))
    }

    /// The NAT connection a real server's packet `key` (RIP:rport →
    /// client) replies on.
    #[inline]
    pub fn lookup_reply(&self, key: &FlowKey) -> Option<View> {
        self.table.lookup_reply(&ReplyKey {
            proto: key.proto,
            rip: key.cip,
            rport: key.cport,
            cip: key.vip,
            cport: key.vport,
        })
    }

    /// Track an inbound TCP or UDP packet `p` (parsed from `frame`) that
    /// arrived on port `ingress`: find its connection (or the NAT
    /// connection it replies on), create one for the first packet of a
    /// flow, move its state and deadline, and count its bytes.
    #[inline]
    pub fn track<'s>(
        &mut self,
        snap: &'s Snapshot,
        now_ns: u64,
        ingress: u8,
        p: &Parsed,
        frame: &[u8],
        stats: &mut impl Counts,
    ) -> Track<'s> {
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
            if let Some(v) = self.lookup_reply(&p.key) {
                return self.reply(snap, now, v, p);
            }
        }
        let v = match (found, stale) {
            (Some(v), None) => v,
            _ => {
                if is_tcp && !syn {
                    return Track::Drop(DropReason::NoConn);
                }
                let Some(svc) = snap.lookup(p.key.proto, p.key.vip, p.key.vport) else {
                    return Track::Pass;
                };
                if stale.is_none() && self.part.is_full() {
                    return Track::Drop(DropReason::ConnTableFull);
                }
                match self.create(snap, svc, &key, stale, now_ns, ingress, p, frame, stats) {
                    Ok(v) => v,
                    Err(r) => return Track::Drop(r),
                }
            }
        };

        let Some(dest) = snap.dest(v.dest) else {
            return Track::Drop(DropReason::NoDest);
        };
        let ttl = if is_tcp {
            let old = TcpState::from_u8(v.state);
            let new = old.next(p.tcp_flags);
            if new != old && self.table.set_state(&v, v.state, new as u8) {
                transition(dest, old, new);
            }
            timeouts.tcp_state(new)
        } else {
            timeouts.udp
        };
        let expires = time::after(now, ttl);
        if expires != v.expires {
            self.table.set_expires(&v, expires);
        }
        if let Some(s) = snap.svc(v.svc) {
            s.stats.add_in_by(self.writer, u64::from(p.ip_len));
        }
        dest.stats.add_in_by(self.writer, u64::from(p.ip_len));
        Track::In(dest, Bound::of(&v))
    }

    /// A real server's packet on NAT connection `v`: push its deadline and
    /// count the bytes.
    fn reply<'s>(&self, snap: &'s Snapshot, now: u32, v: View, p: &Parsed) -> Track<'s> {
        let Some(reply) = Reply::of(&v) else {
            return Track::Drop(DropReason::NoConn);
        };
        let ttl = if p.key.proto == PROTO_TCP {
            snap.timeouts.tcp_state(TcpState::from_u8(v.state))
        } else {
            snap.timeouts.udp
        };
        self.table.set_expires(&v, time::after(now, ttl));
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
        key: &Key,
        stale: Option<View>,
        now_ns: u64,
        ingress: u8,
        p: &Parsed,
        frame: &[u8],
        stats: &mut impl Counts,
    ) -> Result<View, DropReason> {
        let choice = self.choose(snap, svc, &p.key, now_ns, stats)?;
        let nat = match (choice.dest.fwd, choice.dest.rip()) {
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
                    return Err(DropReason::NoConn);
                }
            },
            None => match self.table.insert(&mut self.part, key, init) {
                Ok(v) => v,
                Err(Insert::Exists(v)) => {
                    undo_ctl(&self.table);
                    v
                }
                Err(Insert::Full) => {
                    undo_ctl(&self.table);
                    return Err(DropReason::ConnTableFull);
                }
            },
        };
        if v.dest == choice.dest.id && v.seq == self.table.read(v.idx).map_or(0, |c| c.seq) {
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
        key: &FlowKey,
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
        let caddr = Ipv4Addr::from(u32::from(key.cip) & p.mask);
        let tkey = match svc.key {
            SvcKey::Fwmark { mark, .. } => Key::template(0, caddr, mark, 0),
            SvcKey::Addr { port, .. } => Key::template(key.proto, caddr, u32::from(key.vip), port),
        };
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
        if self.part.is_full() {
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

    /// Release what a removed or rebound entry held: its server's count
    /// and, for a connection, its template's.
    fn unbind_entry(&self, snap: &Snapshot, old: &View) {
        if let Some(d) = snap.dest(old.dest) {
            unbind(d, old.key.template, TcpState::from_u8(old.state));
        }
        if !old.key.template && old.ctl != 0 {
            self.table.add_ctl(old.ctl - 1, -1);
        }
    }

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

    #[test]
    fn expire_removes_more_than_a_batch_in_one_period_without_growing() {
        struct Expired(usize);
        impl Counts for Expired {
            fn conn_created(&mut self) {}
            fn template_created(&mut self) {}
            fn conn_expired(&mut self) {
                self.0 += 1;
            }
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

    #[test]
    fn fwd_codes_round_trip() {
        for f in [Fwd::Dr, Fwd::Tun, Fwd::Nat] {
            assert_eq!(fwd_of(fwd_code(f)), f);
        }
    }
}
