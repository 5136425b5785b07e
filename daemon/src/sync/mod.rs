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
use xvs_dataplane::director::Director;
use xvs_dataplane::sync::SyncPort;
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
        // The data plane forwards IPv4 only; an IPv6 group is refused as
        // a kernel without IPv6 refuses it.
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
    /// synced-only destination for its real server (`None`: the service
    /// is gone, the record is counted as `rejected_no_service` and
    /// dropped; `Some(true)`: a destination was made). The records are
    /// queued again by [`SyncDaemons::requeue_parked`]. Returns whether a
    /// destination was made (the caller publishes).
    pub fn take_parked(
        &mut self,
        want: &mut dyn FnMut(SvcKey, IpAddr, u16, Fwd) -> Option<bool>,
    ) -> bool {
        let mut made = false;
        let port = self.port.clone();
        let requeue = &mut self.requeue;
        let n = port.take_parked(&mut |c, svc| {
            // The worker parks only records with a method it forwards.
            let Some(fwd) = c.method() else {
                return;
            };
            match want(svc, c.daddr, c.dport, fwd) {
                None => port.count_no_service(),
                Some(m) => {
                    made |= m;
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
