//! The master: a sender thread that turns the workers' records into
//! version 1 datagrams, and a responder thread that answers backups' resync
//! requests.
//!
//! The sender follows the kernel's batching: records fill one datagram of
//! at most maxlen bytes; a full one goes at once, a partial one once its
//! first record is 2 s old, and the workers' queues are drained every
//! 20 ms, so a worker's bounded queue never fills under a normal load.
//!
//! A resync needs the whole table, which the control thread reads
//! (`Director::sync_dump`): the responder hands the requester's address to
//! the control thread, which encodes the datagrams, and the responder sends
//! them, paced, so that a large table does not overrun the backup's receive
//! buffer.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use xvs_config::SyncConn;
use xvs_dataplane::sync::SyncPort;
use xvs_sync::{resync, Encoder, PushError};

use super::stats::Stats;

/// How often the sender drains the workers' queues (the kernel's `HZ/50`).
pub const DRAIN_EVERY: Duration = Duration::from_millis(20);
/// Longest a record waits in a partial datagram (`IPVS_SYNC_FLUSH_TIME`).
pub const FLUSH_AFTER: Duration = Duration::from_secs(2);
/// Shortest time between two resyncs for one requester.
const RESYNC_EVERY: Duration = Duration::from_secs(2);
/// Datagrams of a resync sent before a 1 ms pause.
const RESYNC_BURST: usize = 32;

/// A resync to send: to whom, the datagrams, how many records.
pub type Dump = (SocketAddr, Vec<Vec<u8>>, u32);

/// A running master daemon.
pub struct Master {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    /// Requesters waiting for the control thread's dump.
    pub requests: Arc<Mutex<Vec<SocketAddr>>>,
    /// Dumps for the responder to send.
    pub dumps: Sender<Dump>,
    /// Counters.
    pub stats: Stats,
    /// Sync group id.
    pub syncid: u8,
    /// Payload size.
    pub maxlen: u16,
}

impl Master {
    /// Start the sender on `sender` and the resync responder on
    /// `responder`.
    pub fn start(
        sender: UdpSocket,
        responder: UdpSocket,
        port: Arc<SyncPort>,
        syncid: u8,
        maxlen: u16,
    ) -> std::io::Result<Master> {
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Stats::default();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (dumps, dumps_rx) = mpsc::channel();
        let mut threads = Vec::new();
        {
            let (stop, stats) = (stop.clone(), stats.clone());
            threads.push(
                std::thread::Builder::new()
                    .name("xvs-sync-send".into())
                    .spawn(move || send_loop(&sender, &port, syncid, maxlen, &stop, &stats))?,
            );
        }
        {
            let (stop2, stats, requests) = (stop.clone(), stats.clone(), requests.clone());
            let spawned = std::thread::Builder::new()
                .name("xvs-sync-resync".into())
                .spawn(move || {
                    respond_loop(&responder, syncid, &requests, &dumps_rx, &stop2, &stats)
                });
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
        Ok(Master {
            stop,
            threads,
            requests,
            dumps,
            stats,
            syncid,
            maxlen,
        })
    }

    /// Stop both threads (the sender sends what it holds first).
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Something that hands every record it has to a callback (the table's
/// dump).
pub type Source<'a> = &'a mut dyn FnMut(&mut dyn FnMut(SyncConn));

/// Encode the records `fill` produces into datagrams of `syncid` and
/// `maxlen`; returns them and the record count.
pub fn encode_all(syncid: u8, maxlen: u16, fill: Source<'_>) -> (Vec<Vec<u8>>, u32) {
    let mut enc = Encoder::new(syncid, maxlen);
    let mut out = Vec::new();
    let mut n = 0u32;
    fill(&mut |c| {
        if enc.push(&c) == Err(PushError::Full) {
            out.extend(enc.take());
            let _ = enc.push(&c);
        }
        n = n.wrapping_add(1);
    });
    out.extend(enc.take());
    (out, n)
}

fn send_one(sock: &UdpSocket, d: &[u8], records: usize, stats: &Stats) {
    let mut b = stats.batch();
    match sock.send(d) {
        Ok(_) => {
            b.add("datagrams_sent", 1);
            b.add("records_sent", records as u64);
            b.add("bytes_sent", d.len() as u64);
        }
        Err(_) => b.add("send_errors", 1),
    }
}

fn send_loop(
    sock: &UdpSocket,
    port: &SyncPort,
    syncid: u8,
    maxlen: u16,
    stop: &AtomicBool,
    stats: &Stats,
) {
    let mut enc = Encoder::new(syncid, maxlen);
    let mut oldest: Option<Instant> = None;
    let mut full: Vec<(Vec<u8>, usize)> = Vec::new();
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        let mut unsendable = 0u64;
        let now = Instant::now();
        port.drain_out(&mut |c| {
            match enc.push(&c) {
                Ok(()) => {}
                Err(PushError::Full) => {
                    let n = enc.len();
                    full.extend(enc.take().map(|d| (d, n)));
                    oldest = None;
                    if enc.push(&c).is_err() {
                        unsendable += 1;
                    }
                }
                Err(_) => unsendable += 1,
            }
            if oldest.is_none() && !enc.is_empty() {
                oldest = Some(now);
            }
        });
        if unsendable > 0 {
            stats.batch().add("records_unsendable", unsendable);
        }
        for (d, n) in full.drain(..) {
            send_one(sock, &d, n, stats);
        }
        if oldest.is_some_and(|t| t.elapsed() >= FLUSH_AFTER) || stopping {
            let n = enc.len();
            if let Some(d) = enc.take() {
                send_one(sock, &d, n, stats);
            }
            oldest = None;
        }
        if stopping {
            return;
        }
        std::thread::sleep(DRAIN_EVERY);
    }
}

fn respond_loop(
    sock: &UdpSocket,
    syncid: u8,
    requests: &Mutex<Vec<SocketAddr>>,
    dumps: &Receiver<Dump>,
    stop: &AtomicBool,
    stats: &Stats,
) {
    let _ = sock.set_read_timeout(Some(Duration::from_millis(50)));
    let mut last: HashMap<SocketAddr, Instant> = HashMap::new();
    let mut buf = [0u8; 64];
    while !stop.load(Ordering::Relaxed) {
        while let Ok((to, dgrams, records)) = dumps.try_recv() {
            let peer = to.ip();
            let mut sent = 0u64;
            for (i, d) in dgrams.iter().enumerate() {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                if sock.send_to(d, to).is_ok() {
                    sent += 1;
                }
                if i % RESYNC_BURST == RESYNC_BURST - 1 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            let _ = sock.send_to(&resync::end(syncid, records), to);
            let mut b = stats.batch();
            b.peer(peer, "resync_datagrams_sent", sent);
            b.peer(peer, "resync_records_sent", u64::from(records));
        }
        let (n, from) = match sock.recv_from(&mut buf) {
            Ok(x) => x,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(_) => {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let peer: IpAddr = from.ip();
        match resync::parse(&buf[..n]) {
            Some(resync::Message::Request { syncid: theirs })
                if resync::matches(syncid, theirs) =>
            {
                let now = Instant::now();
                last.retain(|_, t| now.duration_since(*t) < RESYNC_EVERY);
                if last.contains_key(&from) {
                    stats.batch().peer(peer, "resync_requests_too_soon", 1);
                    continue;
                }
                if last.len() >= super::stats::MAX_PEERS {
                    stats.batch().add("resync_requests_refused", 1);
                    continue;
                }
                last.insert(from, now);
                stats.batch().peer(peer, "resync_requests", 1);
                requests
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(from);
            }
            Some(resync::Message::Request { .. }) => {
                stats.batch().peer(peer, "resync_requests_other_syncid", 1)
            }
            _ => stats.batch().add("resync_bad_requests", 1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn a_dump_becomes_full_datagrams_then_the_rest() {
        let conn = |i: u16| SyncConn {
            protocol: 6,
            flags: 3,
            state: 1,
            cport: i,
            vport: 80,
            dport: 80,
            fwmark: 0,
            timeout: 60,
            caddr: Ipv4Addr::new(198, 18, 0, 1).into(),
            vaddr: Ipv4Addr::new(198, 18, 1, 1).into(),
            daddr: Ipv4Addr::new(198, 18, 2, 1).into(),
        };
        let (d, n) = encode_all(4, 1472, &mut |f| (0..100).for_each(|i| f(conn(i))));
        assert_eq!(n, 100);
        let lens: Vec<usize> = d.iter().map(Vec::len).collect();
        assert_eq!(lens, vec![8 + 40 * 36, 8 + 40 * 36, 8 + 20 * 36]);
        let mut out = Vec::new();
        let total: usize = d
            .iter()
            .map(|g| {
                xvs_sync::decode(g, 4, &mut out).unwrap();
                out.len()
            })
            .sum();
        assert_eq!(total, 100);
        let (d, n) = encode_all(4, 1472, &mut |_| {});
        assert!(d.is_empty() && n == 0);
    }

    #[test]
    fn peers_beyond_the_cap_are_counted_together() {
        let s = Stats::default();
        {
            let mut b = s.batch();
            for i in 0..super::super::stats::MAX_PEERS as u32 + 10 {
                b.peer(IpAddr::V4(Ipv4Addr::from(i)), "datagrams", 1);
            }
        }
        let (total, peers) = s.snapshot();
        assert_eq!(peers.len(), super::super::stats::MAX_PEERS);
        assert!(total.contains(&("peers_untracked", 10)));
        assert!(total.contains(&("datagrams", super::super::stats::MAX_PEERS as u64 + 10)));
    }
}
