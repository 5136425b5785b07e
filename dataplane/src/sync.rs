//! The data plane's side of connection synchronisation: where the workers
//! hand records to the sync daemon's threads and take records from them.
//!
//! The workers must never wait for a socket, so the hand-over is a pair of
//! bounded lock-free queues per worker ([`SyncPort`]): a master's worker
//! pushes the records of its connections (a full queue drops the record
//! and counts it, as a packet is never held up for sync), the sender
//! thread drains them all; a backup's receiver pushes decoded records into
//! the queue of the worker that will install them, which drains a bounded
//! number between batches. Each worker installs into its own partition of
//! the table, so installing takes no lock either.
//!
//! When a master sends follows IPVS (`ip_vs_sync_conn`), but for when
//! packets are counted (below): every inbound packet counts while a
//! master runs, and a connection is sent when its count modulo
//! [`SYNC_PERIOD`] is [`SYNC_THRESHOLD`], or at once when a TCP connection
//! moves to a synced state other than ESTABLISHED (FIN_WAIT, CLOSE_WAIT,
//! TIME_WAIT, CLOSE). A connection controlled by a persistence template
//! is followed by its template, every time (IPVS counts the template's own
//! syncs and sends it every 50th: a backup could then know a client's
//! connection without its template and send the client's next connection
//! elsewhere after a failover).
//!
//! IPVS counts every inbound packet, master or not; here the count runs
//! only while [`SyncPort::master`] is on, so a director with no master
//! (most of them, and every backup) spends nothing on it per packet. The
//! one difference it makes: after a master starts, a connection is first
//! sent at its [`SYNC_THRESHOLD`]th packet from then on, rather than at
//! whichever packet brings its older count to the threshold modulo
//! [`SYNC_PERIOD`]; either way once a period, as before.

use crate::conn::state::TcpState;
use crate::conn::table::View;
use crate::conn::time::left_ns;
use crate::flow::Addr;
use crate::svc::{Fwd, Snapshot, SvcKey};
use crate::wire::ipv4::{PROTO_TCP, PROTO_UDP};
use crossbeam::queue::ArrayQueue;
use crossbeam::utils::CachePadded;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

pub use xvs_config::sync::{flags, SyncConn};

/// A connection is sent when its inbound packets modulo [`SYNC_PERIOD`]
/// reach this (IPVS's default `sync_threshold`, `3 50`).
pub const SYNC_THRESHOLD: u32 = 3;
/// See [`SYNC_THRESHOLD`].
pub const SYNC_PERIOD: u32 = 50;
/// Records one worker's outgoing queue holds (the sender drains it at
/// least every 20 ms).
pub const OUT_QUEUE: usize = 8192;
/// Records one worker's incoming queue holds.
pub const IN_QUEUE: usize = 8192;
/// Most records a worker installs between two batches of frames.
pub const INSTALL_BATCH: usize = 256;
/// Seconds a template lives when its record says 0 (IPVS: 3 minutes).
pub const TEMPLATE_SECS: u32 = 180;
/// Records waiting for a destination of their own (see [`SyncPort::park`]).
pub const PARKED_QUEUE: usize = 4096;
/// The longest timeout a record may set (a day): the table's deadlines
/// wrap after 248 days, and nothing lives this long.
pub const MAX_TIMEOUT_SECS: u32 = 86_400;

/// Why a record was not installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// The state is not one of the protocol's.
    State,
    /// A protocol the data plane does not forward (SCTP, ...).
    Proto,
    /// The record's addresses are of families the data plane cannot
    /// forward together: client and virtual address differ, a real
    /// server of the other family that is not tunnelled, or an IPv6
    /// firewall-mark template (the kernel puts the mark in the top word
    /// of an IPv6 template's virtual address, xvs in the bottom one; such
    /// templates are not exchanged).
    Family,
    /// No local service matches the record's virtual address and port (or
    /// mark): IPVS has nothing to forward it by either.
    NoService,
    /// The real server is not configured here and no destination can be
    /// made for it: the record's method is one the data plane cannot
    /// forward unbound (local node, bypass), there are
    /// `build::MAX_SYNCED` synced-only destinations already, or its
    /// destination never reached the workers.
    NoDest,
    /// No room in the worker's partition.
    Full,
}

/// What installing one record did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Installed {
    /// A new connection or template.
    New,
    /// An existing one took the record's state and timeout.
    Updated,
    /// A new connection or template whose real server is not configured
    /// here: bound to a synced-only destination (not scheduled, not
    /// listed under the service), forwarded by the record's method.
    Unbound,
    /// An existing one bound to another real server was replaced.
    Replaced,
    /// An inactive record for a connection bound to another real server:
    /// ignored (it is older than what the table holds).
    Stale,
    /// Not installed yet: the service exists but the real server has no
    /// destination in this snapshot; the record is to be parked until the
    /// control thread made one ([`SyncPort::park`]).
    Wants(SvcKey),
    /// Not installed.
    Rejected(Reject),
}

/// What one worker counted (written by that worker, or by the receiver
/// for `in_dropped`; read by anyone).
#[derive(Debug, Default)]
struct Shard {
    emitted: AtomicU64,
    out_dropped: AtomicU64,
    installed: AtomicU64,
    unbound: AtomicU64,
    updated: AtomicU64,
    replaced: AtomicU64,
    stale: AtomicU64,
    rejected_state: AtomicU64,
    rejected_proto: AtomicU64,
    rejected_family: AtomicU64,
    rejected_no_service: AtomicU64,
    rejected_no_dest: AtomicU64,
    rejected_full: AtomicU64,
    parked: AtomicU64,
}

#[inline]
fn bump(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}

/// The sync counters of the data plane, summed over workers.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SyncCounters {
    /// Records the workers queued for the sender.
    pub emitted: u64,
    /// Records dropped because a worker's outgoing queue was full.
    pub out_dropped: u64,
    /// Records the receiver could not queue (a worker's queue was full).
    pub in_dropped: u64,
    /// Connections and templates installed new.
    pub installed: u64,
    /// Of those, bound to a synced-only destination (their real server is
    /// not configured here).
    pub unbound: u64,
    /// Existing ones updated.
    pub updated: u64,
    /// Existing ones bound to another real server, replaced.
    pub replaced: u64,
    /// Inactive records for connections bound elsewhere, ignored.
    pub stale: u64,
    /// Records with a state the protocol does not have.
    pub rejected_state: u64,
    /// Records of a protocol the data plane does not forward.
    pub rejected_proto: u64,
    /// Records whose address families cannot be forwarded together (see
    /// [`Reject::Family`]).
    pub rejected_family: u64,
    /// Records matching no local service.
    pub rejected_no_service: u64,
    /// Records for an unknown real server that no destination could be
    /// made for (see [`Reject::NoDest`]).
    pub rejected_no_dest: u64,
    /// Records for which the table had no room.
    pub rejected_full: u64,
    /// Records parked until a destination for their real server existed.
    pub parked: u64,
    /// Records dropped because the parking queue was full.
    pub parked_dropped: u64,
}

impl SyncCounters {
    /// Every counter with its name, in listing order.
    pub fn named(&self) -> [(&'static str, u64); 16] {
        [
            ("emitted", self.emitted),
            ("out_dropped", self.out_dropped),
            ("in_dropped", self.in_dropped),
            ("installed", self.installed),
            ("unbound", self.unbound),
            ("updated", self.updated),
            ("replaced", self.replaced),
            ("stale", self.stale),
            ("rejected_state", self.rejected_state),
            ("rejected_proto", self.rejected_proto),
            ("rejected_family", self.rejected_family),
            ("rejected_no_service", self.rejected_no_service),
            ("rejected_no_dest", self.rejected_no_dest),
            ("rejected_full", self.rejected_full),
            ("parked", self.parked),
            ("parked_dropped", self.parked_dropped),
        ]
    }
}

/// Where the workers and the sync daemon's threads meet: the roles, a
/// queue each way per worker, and the counters. Shared (`Arc`) by the
/// workers and the daemon.
#[derive(Debug)]
pub struct SyncPort {
    master: AtomicBool,
    backup: AtomicBool,
    out: Box<[ArrayQueue<SyncConn>]>,
    inq: Box<[ArrayQueue<SyncConn>]>,
    shards: Box<[CachePadded<Shard>]>,
    in_dropped: AtomicU64,
    /// Records whose real server has no destination yet, with their
    /// service, for the control thread.
    parked: ArrayQueue<(SyncConn, SvcKey)>,
    parked_dropped: AtomicU64,
    /// Parked records the control thread found no service for.
    no_service: AtomicU64,
    /// Parked records the control thread could make no destination for.
    no_dest: AtomicU64,
}

impl SyncPort {
    /// A port for `workers` workers, both roles off.
    pub fn new(workers: usize) -> SyncPort {
        SyncPort::with_capacity(workers, OUT_QUEUE, IN_QUEUE)
    }

    /// [`SyncPort::new`] with queues of `out` and `inq` records (tests).
    pub fn with_capacity(workers: usize, out: usize, inq: usize) -> SyncPort {
        SyncPort {
            master: AtomicBool::new(false),
            backup: AtomicBool::new(false),
            out: (0..workers).map(|_| ArrayQueue::new(out.max(1))).collect(),
            inq: (0..workers).map(|_| ArrayQueue::new(inq.max(1))).collect(),
            shards: (0..workers).map(|_| CachePadded::default()).collect(),
            in_dropped: AtomicU64::new(0),
            parked: ArrayQueue::new(PARKED_QUEUE),
            parked_dropped: AtomicU64::new(0),
            no_service: AtomicU64::new(0),
            no_dest: AtomicU64::new(0),
        }
    }

    /// Workers count inbound packets for sync and emit records only
    /// while this is on (a master daemon runs).
    pub fn set_master(&self, on: bool) {
        self.master.store(on, Ordering::Relaxed);
    }

    /// Workers install records only while this is on (a backup daemon
    /// runs).
    pub fn set_backup(&self, on: bool) {
        self.backup.store(on, Ordering::Relaxed);
    }

    /// Whether the workers emit.
    #[inline]
    pub fn master(&self) -> bool {
        self.master.load(Ordering::Relaxed)
    }

    /// Whether the workers install.
    #[inline]
    pub fn backup(&self) -> bool {
        self.backup.load(Ordering::Relaxed)
    }

    /// Take every record queued by every worker, in each worker's order;
    /// returns how many (the sender thread).
    pub fn drain_out(&self, f: &mut dyn FnMut(SyncConn)) -> usize {
        let mut n = 0;
        for q in self.out.iter() {
            // At most what is there now: a busy worker cannot keep the
            // sender here.
            for _ in 0..q.len() {
                match q.pop() {
                    Some(c) => {
                        f(c);
                        n += 1;
                    }
                    None => break,
                }
            }
        }
        n
    }

    /// Hand a received record to the worker that installs it (the same
    /// worker for every record of a connection, so they apply in order).
    /// `false`: that worker's queue is full (counted) or there is no
    /// worker.
    pub fn push_in(&self, c: SyncConn) -> bool {
        if self.inq.is_empty() {
            bump(&self.in_dropped);
            return false;
        }
        let w = Self::worker_of(&c, self.inq.len());
        if self.inq[w].push(c).is_err() {
            bump(&self.in_dropped);
            return false;
        }
        true
    }

    /// Which of `n` workers installs `c`.
    fn worker_of(c: &SyncConn, n: usize) -> usize {
        let a = |ip: IpAddr| match ip {
            IpAddr::V4(a) => u64::from(u32::from(a)),
            IpAddr::V6(a) => {
                let o = a.octets();
                u64::from(u32::from_be_bytes([o[12], o[13], o[14], o[15]]))
            }
        };
        let k = a(c.caddr) << 32 ^ a(c.vaddr) ^ u64::from(c.cport) << 16 ^ u64::from(c.vport);
        ((k.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) % n as u64) as usize
    }

    /// The counters, summed over workers.
    pub fn counters(&self) -> SyncCounters {
        let mut c = SyncCounters {
            in_dropped: self.in_dropped.load(Ordering::Relaxed),
            parked_dropped: self.parked_dropped.load(Ordering::Relaxed),
            rejected_no_service: self.no_service.load(Ordering::Relaxed),
            rejected_no_dest: self.no_dest.load(Ordering::Relaxed),
            ..Default::default()
        };
        let ld = |a: &AtomicU64| a.load(Ordering::Relaxed);
        for s in self.shards.iter() {
            c.emitted += ld(&s.emitted);
            c.out_dropped += ld(&s.out_dropped);
            c.installed += ld(&s.installed);
            c.unbound += ld(&s.unbound);
            c.updated += ld(&s.updated);
            c.replaced += ld(&s.replaced);
            c.stale += ld(&s.stale);
            c.rejected_state += ld(&s.rejected_state);
            c.rejected_proto += ld(&s.rejected_proto);
            c.rejected_family += ld(&s.rejected_family);
            c.rejected_no_service += ld(&s.rejected_no_service);
            c.rejected_no_dest += ld(&s.rejected_no_dest);
            c.rejected_full += ld(&s.rejected_full);
            c.parked += ld(&s.parked);
        }
        c
    }

    /// Worker `w` queues `c` for the sender; a full queue drops it
    /// (counted). Returns whether it was queued.
    pub fn emit(&self, w: usize, c: SyncConn) -> bool {
        let Some(q) = self.out.get(w) else {
            return false;
        };
        let s = &self.shards[w];
        match q.push(c) {
            Ok(()) => {
                bump(&s.emitted);
                true
            }
            Err(_) => {
                bump(&s.out_dropped);
                false
            }
        }
    }

    /// Whether worker `w` has records to install.
    #[inline]
    pub fn has_input(&self, w: usize) -> bool {
        self.inq.get(w).is_some_and(|q| !q.is_empty())
    }

    /// Worker `w` takes its next record to install.
    pub fn pop_in(&self, w: usize) -> Option<SyncConn> {
        self.inq.get(w)?.pop()
    }

    /// Worker `w` parks record `c` of service `svc`, whose real server
    /// has no destination in its snapshot: the control thread makes one
    /// ([`SyncPort::take_parked`]) and queues the record again once the
    /// workers have the snapshot holding it. A full parking queue drops
    /// the record (counted). Returns whether it was parked.
    pub fn park(&self, w: usize, c: SyncConn, svc: SvcKey) -> bool {
        if self.parked.push((c, svc)).is_err() {
            bump(&self.parked_dropped);
            return false;
        }
        if let Some(s) = self.shards.get(w) {
            bump(&s.parked);
        }
        true
    }

    /// Take at most what is parked now, oldest first (the control thread).
    pub fn take_parked(&self, f: &mut dyn FnMut(SyncConn, SvcKey)) -> usize {
        let mut n = 0;
        for _ in 0..self.parked.len() {
            let Some((c, svc)) = self.parked.pop() else {
                break;
            };
            f(c, svc);
            n += 1;
        }
        n
    }

    /// The control thread refused a parked record: its service went away
    /// meanwhile (`NoService`), or no destination could be made for it
    /// (`NoDest`); other reasons are the workers' to count.
    pub fn count_refused(&self, why: Reject) {
        match why {
            Reject::NoService => bump(&self.no_service),
            _ => bump(&self.no_dest),
        }
    }

    /// Worker `w` counts what installing a record did ([`Installed::Wants`]
    /// is counted by [`SyncPort::park`]).
    pub fn count(&self, w: usize, what: Installed) {
        let Some(s) = self.shards.get(w) else {
            return;
        };
        if what == Installed::Unbound {
            bump(&s.unbound);
        }
        bump(match what {
            Installed::New | Installed::Unbound => &s.installed,
            Installed::Wants(_) => return,
            Installed::Updated => &s.updated,
            Installed::Replaced => &s.replaced,
            Installed::Stale => &s.stale,
            Installed::Rejected(Reject::State) => &s.rejected_state,
            Installed::Rejected(Reject::Proto) => &s.rejected_proto,
            Installed::Rejected(Reject::Family) => &s.rejected_family,
            Installed::Rejected(Reject::NoService) => &s.rejected_no_service,
            Installed::Rejected(Reject::NoDest) => &s.rejected_no_dest,
            Installed::Rejected(Reject::Full) => &s.rejected_full,
        });
    }
}

/// The record flags of a connection forwarded by method `fwd` (an
/// entry's code, see `conn::tracker::fwd_code`).
#[inline]
pub fn fwd_flags(fwd: Fwd) -> u32 {
    match fwd {
        Fwd::Dr => flags::DROUTE,
        Fwd::Tun => flags::TUNNEL,
        Fwd::Nat => flags::MASQ,
    }
}

/// Whether IPVS syncs a TCP connection in state `s`.
#[inline]
pub fn tcp_synced_state(s: TcpState) -> bool {
    matches!(
        s,
        TcpState::Established
            | TcpState::FinWait
            | TcpState::CloseWait
            | TcpState::TimeWait
            | TcpState::Close
    )
}

/// The record of entry `v` (a connection or a template), in state `state`
/// and expiring at tick `expires`, at tick `now`; `None` if its real
/// server is not in `snap`. Templates take IPVS's tuple forms: client
/// port 0; a port-0 service's has virtual and real port 0; a fwmark
/// service's has protocol 0 and the mark as virtual address. An IPv6
/// connection makes the 72-byte IPv6 record. A connection tunnelled to a
/// real server of the other family has no record (`None`): a record's
/// three addresses share one family, and IPVS does not sync such
/// connections either, nor is an IPv6 firewall-mark service's template.
pub fn record_of<A: Addr>(
    snap: &Snapshot,
    v: &View<A>,
    state: u8,
    expires: u32,
    now: u32,
) -> Option<SyncConn> {
    let d = snap.dest(v.dest)?;
    let daddr = d.sched.addr;
    let f = v.flow();
    if daddr.is_ipv4() != f.vip.ip().is_ipv4() {
        return None;
    }
    let mark = snap.svc(v.svc).and_then(|s| match s.key {
        SvcKey::Fwmark { mark, .. } => Some(mark),
        SvcKey::Addr { .. } => None,
    });
    if A::WIDE && v.key.template && mark.is_some() {
        // Not exchanged (see [`Reject::Family`]).
        return None;
    }
    let secs = left_ns(now, expires).div_ceil(xvs_config::time::NS_PER_SEC);
    let fwd = fwd_flags(crate::conn::tracker::fwd_of(v.fwd));
    let mut c = SyncConn {
        protocol: f.proto,
        flags: fwd,
        state: u16::from(state),
        cport: f.cport,
        vport: f.vport,
        dport: 0,
        fwmark: mark.unwrap_or(0),
        timeout: secs.min(u64::from(u32::MAX)) as u32,
        caddr: f.cip.ip(),
        vaddr: f.vip.ip(),
        daddr,
    };
    if v.key.template {
        c.flags |= flags::TEMPLATE;
        c.state = 0;
        c.cport = 0;
        c.dport = if f.vport == 0 { 0 } else { d.sched.port };
    } else {
        c.dport = match v.nat {
            Some(n) => n.rport,
            None => crate::conn::tracker::nat_rport(d, f.vport),
        };
        let active = f.proto == PROTO_TCP && TcpState::from_u8(state).is_active();
        if !active {
            c.flags |= flags::INACTIVE;
        }
    }
    Some(c)
}

/// Why record `c` cannot be installed into a table of addresses `A`
/// before looking at the table, if it cannot: its client and virtual
/// addresses otherwise. The real server's family is the method's to judge
/// (only a tunnel crosses families; see [`fits_family`]).
pub fn check<A: Addr>(c: &SyncConn) -> Result<(A, A), Reject> {
    let (Some(ca), Some(va)) = (A::of_ip(c.caddr), A::of_ip(c.vaddr)) else {
        return Err(Reject::Family);
    };
    let template = c.is_template();
    if A::WIDE && template && c.fwmark != 0 {
        return Err(Reject::Family);
    }
    match c.protocol {
        PROTO_TCP | PROTO_UDP => {}
        0 if template && c.fwmark != 0 => {}
        _ => return Err(Reject::Proto),
    }
    if !template {
        let states = if c.protocol == PROTO_TCP { 11 } else { 1 };
        if c.state >= states {
            return Err(Reject::State);
        }
    }
    Ok((ca, va))
}

/// Whether a connection whose virtual address is `vaddr` can reach real
/// server `daddr` by method `fwd`: the same family always, the other one
/// only through a tunnel (the outer header takes the server's family).
#[inline]
pub fn fits_family(vaddr: IpAddr, daddr: IpAddr, fwd: Fwd) -> bool {
    vaddr.is_ipv4() == daddr.is_ipv4() || fwd == Fwd::Tun
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn rec(n: u16) -> SyncConn {
        SyncConn {
            protocol: 6,
            flags: flags::DROUTE,
            state: 1,
            cport: 1000 + n,
            vport: 80,
            dport: 80,
            fwmark: 0,
            timeout: 900,
            caddr: IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2)),
            vaddr: IpAddr::V4(Ipv4Addr::new(198, 18, 0, 100)),
            daddr: IpAddr::V4(Ipv4Addr::new(198, 18, 1, 11)),
        }
    }

    #[test]
    fn a_full_outgoing_queue_drops_and_counts() {
        let p = SyncPort::with_capacity(2, 4, 4);
        for n in 0..6 {
            assert_eq!(p.emit(1, rec(n)), n < 4);
        }
        assert!(p.emit(0, rec(9)));
        let c = p.counters();
        assert_eq!((c.emitted, c.out_dropped), (5, 2));
        let mut got = Vec::new();
        assert_eq!(p.drain_out(&mut |c| got.push(c.cport)), 5);
        assert_eq!(got, vec![1009, 1000, 1001, 1002, 1003]);
        assert_eq!(p.drain_out(&mut |_| panic!("empty")), 0);
    }

    #[test]
    fn records_of_one_connection_go_to_one_worker_and_a_full_queue_refuses() {
        let p = SyncPort::with_capacity(3, 4, 2);
        let r = rec(7);
        let w = SyncPort::worker_of(&r, 3);
        assert!(p.push_in(r));
        assert!(p.push_in(r));
        assert!(!p.push_in(r));
        assert_eq!(p.counters().in_dropped, 1);
        assert!(p.has_input(w));
        assert_eq!(p.pop_in(w), Some(r));
        assert_eq!(p.pop_in(w), Some(r));
        assert!(!p.has_input(w));
        let none = SyncPort::new(0);
        assert!(!none.push_in(r));
    }

    #[test]
    fn parked_records_come_out_in_order_and_a_full_queue_counts() {
        let p = SyncPort::new(2);
        let svc = SvcKey::Fwmark { mark: 1, v6: false };
        for n in 0..3 {
            assert!(p.park(n % 2, rec(n as u16), svc));
        }
        let mut got = Vec::new();
        assert_eq!(p.take_parked(&mut |c, k| got.push((c.cport, k))), 3);
        assert_eq!(got, vec![(1000, svc), (1001, svc), (1002, svc)]);
        p.count_refused(Reject::NoService);
        p.count_refused(Reject::NoDest);
        p.count(1, Installed::Unbound);
        p.count(1, Installed::Wants(svc));
        let c = p.counters();
        assert_eq!((c.parked, c.rejected_no_service), (3, 1));
        assert_eq!(c.rejected_no_dest, 1);
        assert_eq!((c.installed, c.unbound), (1, 1));
        for n in 0..PARKED_QUEUE {
            assert!(p.park(0, rec(n as u16), svc));
        }
        assert!(!p.park(0, rec(0), svc));
        assert_eq!(p.counters().parked_dropped, 1);
    }

    #[test]
    fn records_are_checked_before_the_table() {
        let check = check::<Ipv4Addr>;
        assert!(check(&rec(1)).is_ok());
        let mut r = rec(1);
        r.state = 11;
        assert_eq!(check(&r), Err(Reject::State));
        r.protocol = 17;
        r.state = 1;
        assert_eq!(check(&r), Err(Reject::State));
        r.state = 0;
        assert!(check(&r).is_ok());
        r.protocol = 132;
        assert_eq!(check(&r), Err(Reject::Proto));
        let mut r = rec(1);
        r.caddr = "2001:2::1".parse().unwrap();
        assert_eq!(check(&r), Err(Reject::Family));
        assert_eq!(super::check::<Ipv6Addr>(&r), Err(Reject::Family));
        r.vaddr = "2001:2::100".parse().unwrap();
        assert_eq!(
            super::check::<Ipv6Addr>(&r),
            Ok(("2001:2::1".parse().unwrap(), "2001:2::100".parse().unwrap()))
        );
        assert_eq!(check(&r), Err(Reject::Family));
        let mut t = rec(1);
        t.protocol = 0;
        t.flags |= flags::TEMPLATE;
        assert_eq!(check(&t), Err(Reject::Proto));
        t.fwmark = 5;
        assert!(check(&t).is_ok());
        t.caddr = "2001:2::1".parse().unwrap();
        t.vaddr = "::5".parse().unwrap();
        assert_eq!(super::check::<Ipv6Addr>(&t), Err(Reject::Family));
    }

    #[test]
    fn only_a_tunnel_crosses_families() {
        let v4: IpAddr = "198.18.0.100".parse().unwrap();
        let v6: IpAddr = "2001:2::11".parse().unwrap();
        assert!(fits_family(v4, v4, Fwd::Dr));
        assert!(fits_family(v6, v6, Fwd::Nat));
        assert!(fits_family(v4, v6, Fwd::Tun));
        assert!(fits_family(v6, v4, Fwd::Tun));
        assert!(!fits_family(v4, v6, Fwd::Dr));
        assert!(!fits_family(v6, v4, Fwd::Nat));
    }
}
