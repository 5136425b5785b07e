//! The connection sync daemons (`--start-daemon master|backup`): the
//! threads that carry the workers' records to and from the network, in
//! the kernel's wire format (`xvs_sync`).
//!
//! The control model says which daemons should run; after every request
//! the control thread makes the running ones match ([`SyncDaemons::reconcile`]),
//! so a `--start-daemon` that cannot start (no such interface) is answered
//! with the error and forgotten, and the state file's daemons start with
//! xvsd. The workers never wait for these threads: they meet in the data
//! plane's `SyncPort`, whose roles are switched here.
//!
//! A backup's worker that gets a record for a real server this director
//! does not have under the record's service parks it in the port (it
//! cannot make destinations: the snapshot is the control thread's). The
//! control thread takes the parked records ([`SyncDaemons::take_parked`]),
//! has the snapshot builder make a synced-only destination for each new
//! server, publishes, and queues the records again a little later
//! ([`SyncDaemons::requeue_parked`]), once the workers run the new
//! snapshot. A record of a connection keeps its order behind the
//! connection's earlier parked records, but one that arrives between the
//! publish and the requeue is installed first (the requeued, older one
//! then updates it: the master's next record puts it right).

mod backup;
mod master;
mod net;
mod stats;

use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::time::{Duration, Instant};

use xvs_config::svc::{Fwd, SvcKey};
use xvs_config::sync::{DEFAULT_GROUP, DEFAULT_PORT, DEFAULT_TTL};
use xvs_config::{SyncConn, SyncDaemonConf, SyncRole};
use xvs_control::syncd::SyncStatus;
use xvs_dataplane::build::SyncedRefused;
use xvs_dataplane::director::Director;
use xvs_dataplane::sync::{Reject, SyncPort};
use xvs_sync::resync;

use backup::Backup;
use master::Master;

/// Data-plane counters shown with the master.
const MASTER_PORT_COUNTERS: &[&str] = &["emitted", "out_dropped"];

/// How long parked records wait after the publish that made their
/// destinations before they are queued again: the workers pick up a new
/// snapshot between two polls of their rings (at most a few ms apart); a
/// worker still on the old one parks the record once more.
pub const REQUEUE_DELAY: Duration = Duration::from_millis(20);

/// How often one record may be queued again: a worker parks it once more
/// only while it runs an older snapshot, or when the publish failed; past
/// this it is counted as `rejected_no_dest`, so nothing circles for ever.
pub const MAX_REQUEUES: u32 = 3;

/// Where a parked record counts its requeues: flag bits no wire record
/// carries (the decoder keeps only the backup mask and the sync bit) and
/// nothing installed reads.
const REQUEUE_SHIFT: u32 = 28;
const REQUEUE_MASK: u32 = 0b11 << REQUEUE_SHIFT;

/// The running sync daemons.
pub struct SyncDaemons {
    port: Arc<SyncPort>,
    master: Option<(SyncDaemonConf, Master)>,
    backup: Option<(SyncDaemonConf, Backup)>,
    /// Parked records whose destinations exist now, and when to queue
    /// them again.
    requeue: Vec<SyncConn>,
    requeue_at: Option<Instant>,
}

fn group_v4(conf: &SyncDaemonConf) -> Result<Ipv4Addr, String> {
    match conf.group {
        None => Ok(DEFAULT_GROUP),
        Some(IpAddr::V4(g)) => Ok(g),
        // The sockets are IPv4 (IPv6 connections travel in IPv6 records
        // inside IPv4 datagrams); an IPv6 group is refused as a kernel
        // without IPv6 refuses it.
        Some(IpAddr::V6(_)) => Err("Address family not supported by protocol".into()),
    }
}

fn start_master(conf: &SyncDaemonConf, port: &Arc<SyncPort>) -> Result<Master, String> {
    let group = group_v4(conf)?;
    let ifc = net::iface(&conf.iface)?;
    let sport = conf.port.unwrap_or(DEFAULT_PORT);
    let ttl = conf.ttl.unwrap_or(DEFAULT_TTL);
    let maxlen = xvs_sync::master_maxlen(conf.maxlen, false);
    let io = |e: std::io::Error| format!("{}: {e}", conf.iface);
    let sender = net::master_socket(&conf.iface, &ifc, group, sport, ttl).map_err(io)?;
    let responder = net::group_socket(&conf.iface, &ifc, group, resync::port(sport)).map_err(io)?;
    let m = Master::start(sender, responder, port.clone(), conf.syncid, maxlen).map_err(io)?;
    port.set_master(true);
    Ok(m)
}

fn start_backup(conf: &SyncDaemonConf, port: &Arc<SyncPort>) -> Result<Backup, String> {
    let group = group_v4(conf)?;
    let ifc = net::iface(&conf.iface)?;
    let sport = conf.port.unwrap_or(DEFAULT_PORT);
    let ttl = conf.ttl.unwrap_or(DEFAULT_TTL);
    let maxlen = xvs_sync::backup_maxlen(conf.maxlen, ifc.mtu, false);
    let io = |e: std::io::Error| format!("{}: {e}", conf.iface);
    let sock = net::group_socket(&conf.iface, &ifc, group, sport).map_err(io)?;
    // The resync is an extension: without its socket the backup still
    // works as the kernel's does.
    let ask = match net::unicast_socket(&conf.iface, &ifc, ttl) {
        Ok(s) => Some((s, SocketAddrV4::new(group, resync::port(sport)))),
        Err(e) => {
            eprintln!("xvsd: sync backup: no resync request ({e})");
            None
        }
    };
    port.set_backup(true);
    Backup::start(sock, ask, port.clone(), conf.syncid, maxlen).map_err(|e| {
        port.set_backup(false);
        io(e)
    })
}

impl SyncDaemons {
    /// No daemon running, over the data plane's `port`.
    pub fn new(port: Arc<SyncPort>) -> Self {
        SyncDaemons {
            port,
            master: None,
            backup: None,
            requeue: Vec::new(),
            requeue_at: None,
        }
    }

    /// Take the records the workers parked: for each, `want(service,
    /// address, port, method)` makes sure the next snapshot has a
    /// synced-only destination for its real server (`Ok(true)`: made
    /// now). A record whose service is gone is counted as
    /// `rejected_no_service`, one that no destination can be made for, or
    /// that came back [`MAX_REQUEUES`] times, as `rejected_no_dest`; the
    /// others are queued again by [`SyncDaemons::requeue_parked`]. Returns
    /// whether a destination was made (the caller publishes).
    pub fn take_parked(
        &mut self,
        want: &mut dyn FnMut(SvcKey, IpAddr, u16, Fwd) -> Result<bool, SyncedRefused>,
    ) -> bool {
        let mut made = false;
        let port = self.port.clone();
        let requeue = &mut self.requeue;
        let n = port.take_parked(&mut |mut c, svc| {
            let tries = (c.flags & REQUEUE_MASK) >> REQUEUE_SHIFT;
            // The worker parks only records with a method it forwards.
            let (Some(fwd), true) = (c.method(), tries < MAX_REQUEUES) else {
                port.count_refused(Reject::NoDest);
                return;
            };
            match want(svc, c.daddr, c.dport, fwd) {
                Err(SyncedRefused::NoService) => port.count_refused(Reject::NoService),
                Err(SyncedRefused::Full) => port.count_refused(Reject::NoDest),
                Ok(m) => {
                    made |= m;
                    c.flags = (c.flags & !REQUEUE_MASK) | ((tries + 1) << REQUEUE_SHIFT);
                    requeue.push(c);
                }
            }
        });
        if n > 0 && self.requeue_at.is_none() && !self.requeue.is_empty() {
            self.requeue_at = Some(Instant::now() + REQUEUE_DELAY);
        }
        made
    }

    /// Queue the records taken by [`SyncDaemons::take_parked`] to their
    /// workers again, once [`REQUEUE_DELAY`] has passed since (`now`).
    pub fn requeue_parked(&mut self, now: Instant) {
        match self.requeue_at {
            Some(at) if now >= at => {}
            _ => return,
        }
        self.requeue_at = None;
        for c in self.requeue.drain(..) {
            // A full queue counts it (`in_dropped`).
            self.port.push_in(c);
        }
    }

    /// When the control thread must run [`SyncDaemons::requeue_parked`]
    /// next, if it must.
    pub fn requeue_due(&self) -> Option<Instant> {
        self.requeue_at
    }

    /// Make the running daemons those of `want`: stop those gone or
    /// changed, start the others. Returns each daemon that could not start,
    /// with the reason (the kernel's message where it has one).
    pub fn reconcile(&mut self, want: &[SyncDaemonConf]) -> Vec<(SyncRole, String)> {
        let find = |r: SyncRole| want.iter().find(|d| d.role == r);
        let mut failed = Vec::new();
        if self.master.as_ref().map(|m| &m.0) != find(SyncRole::Master) {
            if let Some((_, m)) = self.master.take() {
                self.port.set_master(false);
                m.stop();
            }
            if let Some(conf) = find(SyncRole::Master) {
                match start_master(conf, &self.port) {
                    Ok(m) => self.master = Some((conf.clone(), m)),
                    Err(e) => failed.push((SyncRole::Master, e)),
                }
            }
        }
        if self.backup.as_ref().map(|b| &b.0) != find(SyncRole::Backup) {
            if let Some((_, b)) = self.backup.take() {
                self.port.set_backup(false);
                b.stop();
            }
            if let Some(conf) = find(SyncRole::Backup) {
                match start_backup(conf, &self.port) {
                    Ok(b) => self.backup = Some((conf.clone(), b)),
                    Err(e) => failed.push((SyncRole::Backup, e)),
                }
            }
        }
        failed
    }

    /// Answer the resync requests waiting, with the whole table read from
    /// `director` (the control thread calls this between requests).
    pub fn serve_resync(&self, director: &Director) {
        let Some((_, m)) = &self.master else {
            return;
        };
        let waiting: Vec<_> =
            std::mem::take(&mut *m.requests.lock().unwrap_or_else(|e| e.into_inner()));
        for to in waiting {
            let (dgrams, n) =
                master::encode_all(m.syncid, m.maxlen, &mut |f| director.sync_dump(f));
            let _ = m.dumps.send((to, dgrams, n));
        }
    }

    /// The running daemons' settings in effect and counters.
    pub fn status(&self) -> Vec<SyncStatus> {
        let dp = self.port.counters();
        let named = dp.named();
        let mut out = Vec::new();
        if let Some((_, m)) = &self.master {
            let (mut counters, peers) = m.stats.snapshot();
            counters.extend(
                named
                    .iter()
                    .filter(|(n, _)| MASTER_PORT_COUNTERS.contains(n))
                    .copied(),
            );
            out.push(SyncStatus {
                role: SyncRole::Master,
                maxlen: m.maxlen,
                counters,
                peers,
            });
        }
        if let Some((_, b)) = &self.backup {
            let (mut counters, peers) = b.stats.snapshot();
            counters.extend(
                named
                    .iter()
                    .filter(|(n, _)| !MASTER_PORT_COUNTERS.contains(n))
                    .copied(),
            );
            out.push(SyncStatus {
                role: SyncRole::Backup,
                maxlen: b.maxlen,
                counters,
                peers,
            });
        }
        out
    }

    /// Stop every daemon (at exit).
    pub fn stop_all(&mut self) {
        self.reconcile(&[]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use xvs_config::sync::flags;

    fn record() -> SyncConn {
        SyncConn {
            protocol: 6,
            flags: flags::DROUTE | flags::SYNC,
            state: 1,
            cport: 1000,
            vport: 80,
            dport: 80,
            fwmark: 0,
            timeout: 900,
            caddr: Ipv4Addr::new(198, 18, 0, 2).into(),
            vaddr: Ipv4Addr::new(198, 18, 0, 100).into(),
            daddr: Ipv4Addr::new(198, 18, 1, 9).into(),
        }
    }

    const SVC: SvcKey = SvcKey::Fwmark { mark: 1, v6: false };

    #[test]
    fn parked_records_come_back_after_the_delay_a_bounded_number_of_times() {
        let port = Arc::new(SyncPort::new(1));
        let mut d = SyncDaemons::new(port.clone());
        let mut asked = 0;
        let mut want = |k: SvcKey, a: IpAddr, p: u16, f: Fwd| {
            assert_eq!((k, a, p, f), (SVC, record().daddr, 80, Fwd::Dr));
            asked += 1;
            Ok(asked == 1)
        };
        assert!(port.park(0, record(), SVC));
        assert!(d.take_parked(&mut want), "made: publish");
        let due = d.requeue_due().expect("a requeue is due");
        d.requeue_parked(due - REQUEUE_DELAY);
        assert!(!port.has_input(0), "not before the delay");
        d.requeue_parked(due);
        assert!(d.requeue_due().is_none());
        let mut back = port.pop_in(0).expect("queued again");
        assert_eq!(back.flags & !REQUEUE_MASK, record().flags);
        assert_eq!(back.method(), Some(Fwd::Dr));
        // A worker on an older snapshot parks it again: it comes back,
        // until its budget is spent.
        for _ in 1..MAX_REQUEUES {
            assert!(port.park(0, back, SVC));
            assert!(!d.take_parked(&mut want), "it exists: no publish");
            d.requeue_parked(d.requeue_due().unwrap());
            back = port.pop_in(0).expect("queued again");
        }
        assert!(port.park(0, back, SVC));
        d.take_parked(&mut want);
        assert!(d.requeue_due().is_none());
        assert_eq!(port.counters().rejected_no_dest, 1);
        assert_eq!(asked, MAX_REQUEUES);
    }

    #[test]
    fn refusals_are_counted_by_reason() {
        let port = Arc::new(SyncPort::new(1));
        let mut d = SyncDaemons::new(port.clone());
        port.park(0, record(), SVC);
        d.take_parked(&mut |_, _, _, _| Err(SyncedRefused::NoService));
        port.park(0, record(), SVC);
        d.take_parked(&mut |_, _, _, _| Err(SyncedRefused::Full));
        let c = port.counters();
        assert_eq!((c.rejected_no_service, c.rejected_no_dest), (1, 1));
        assert!(d.requeue_due().is_none());
    }
}
