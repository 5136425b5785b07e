//! The backup: a receiver thread on the group that decodes every datagram
//! (versions 1 and 0, everything checked by `xvs_sync::decode`) and hands
//! the records to the workers, and a resync thread that asks the masters
//! for their whole table when the backup starts.
//!
//! Everything is counted per peer (the datagram's source address) and by
//! reason, since a backup that silently drops a master's records is the
//! failure nobody notices until the failover.

use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use xvs_dataplane::sync::SyncPort;
use xvs_sync::{decode, resync, Record, Version};

use super::stats::Stats;

/// How often the threads look at the stop flag.
const POLL: Duration = Duration::from_millis(100);

/// A running backup daemon.
pub struct Backup {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    /// Counters.
    pub stats: Stats,
    /// Payload size accepted.
    pub maxlen: u16,
}

/// What both threads need to read datagrams.
struct Reader {
    port: Arc<SyncPort>,
    syncid: u8,
    maxlen: u16,
    stats: Stats,
    records: Vec<Record>,
}

impl Reader {
    /// Decode one datagram from `peer` and hand its records over.
    fn datagram(&mut self, d: &[u8], peer: IpAddr) {
        if d.len() > usize::from(self.maxlen) {
            // The kernel reads into a buffer of maxlen bytes: a longer
            // datagram is cut, its size no longer matches, it is dropped.
            self.stats.batch().peer(peer, "dropped_too_long", 1);
            return;
        }
        let r = decode(d, self.syncid, &mut self.records);
        let mut b = self.stats.batch();
        b.peer(peer, "datagrams", 1);
        match r {
            Err(why) => b.peer(peer, why.name(), 1),
            Ok(g) => {
                if g.version == Version::V0 {
                    b.peer(peer, "datagrams_v0", 1);
                }
                b.peer(peer, "records", self.records.len() as u64);
                for rec in self.records.drain(..) {
                    match rec {
                        Ok(c) => {
                            if self.port.push_in(c) {
                                b.peer(peer, "records_queued", 1);
                            } else {
                                b.peer(peer, "records_queue_full", 1);
                            }
                        }
                        Err(skip) => b.peer(peer, skip.name(), 1),
                    }
                }
            }
        }
    }
}

impl Backup {
    /// Start the receiver on `group_sock` and, unless `resync_sock` is
    /// `None`, the resync request to `group:resync_port` from it.
    pub fn start(
        group_sock: UdpSocket,
        resync_sock: Option<(UdpSocket, SocketAddrV4)>,
        port: Arc<SyncPort>,
        syncid: u8,
        maxlen: u16,
    ) -> std::io::Result<Backup> {
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Stats::default();
        let reader = |port: Arc<SyncPort>, stats: Stats| Reader {
            port,
            syncid,
            maxlen,
            stats,
            records: Vec::with_capacity(xvs_sync::MAX_RECORDS),
        };
        let mut threads = Vec::new();
        {
            let stop = stop.clone();
            let r = reader(port.clone(), stats.clone());
            threads.push(
                std::thread::Builder::new()
                    .name("xvs-sync-recv".into())
                    .spawn(move || receive_loop(&group_sock, r, &stop))?,
            );
        }
        if let Some((sock, to)) = resync_sock {
            let stop2 = stop.clone();
            let r = reader(port, stats.clone());
            let spawned = std::thread::Builder::new()
                .name("xvs-sync-ask".into())
                .spawn(move || resync_loop(&sock, to, r, &stop2));
            match spawned {
                Ok(t) => threads.push(t),
                Err(e) => {
                    stop.store(true, Ordering::Relaxed);
                    for t in threads {
                        let _ = t.join();
                    }
                    return Err(e);
                }
            }
        }
        Ok(Backup {
            stop,
            threads,
            stats,
            maxlen,
        })
    }

    /// Stop the threads.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

fn receive_loop(sock: &UdpSocket, mut r: Reader, stop: &AtomicBool) {
    let _ = sock.set_read_timeout(Some(POLL));
    // One byte more than any datagram may have, so a longer one is seen.
    let mut buf = vec![0u8; 65536];
    while !stop.load(Ordering::Relaxed) {
        match sock.recv_from(&mut buf) {
            Ok((n, from)) => r.datagram(&buf[..n], from.ip()),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => std::thread::sleep(POLL),
        }
    }
}

/// Ask the group's xvs masters for their tables, once a second until one
/// has sent its end marker or [`resync::REQUEST_TRIES`] went unanswered,
/// and read what they send.
fn resync_loop(sock: &UdpSocket, to: SocketAddrV4, mut r: Reader, stop: &AtomicBool) {
    let _ = sock.set_read_timeout(Some(POLL));
    let mut buf = vec![0u8; 65536];
    let mut tries = 0;
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if Instant::now() >= next {
            if tries == resync::REQUEST_TRIES {
                r.stats.batch().add("resync_unanswered", 1);
                return;
            }
            match sock.send_to(&resync::request(r.syncid), SocketAddr::V4(to)) {
                Ok(_) => r.stats.batch().add("resync_requests_sent", 1),
                Err(_) => r.stats.batch().add("resync_send_errors", 1),
            }
            tries += 1;
            next = Instant::now() + Duration::from_secs(1);
        }
        let (n, from) = match sock.recv_from(&mut buf) {
            Ok(x) => x,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(_) => {
                std::thread::sleep(POLL);
                continue;
            }
        };
        let peer = from.ip();
        match resync::parse(&buf[..n]) {
            Some(resync::Message::End { records, .. }) => {
                let mut b = r.stats.batch();
                b.peer(peer, "resync_completed", 1);
                b.peer(peer, "resync_records_announced", u64::from(records));
                return;
            }
            Some(resync::Message::Request { .. }) => {}
            None => {
                r.stats.batch().peer(peer, "resync_datagrams", 1);
                r.datagram(&buf[..n], peer);
            }
        }
    }
}
