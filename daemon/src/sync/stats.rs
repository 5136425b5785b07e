//! Counters of one sync daemon, whole and per peer, written by its threads
//! (once per datagram, never per packet) and read by the control thread.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use xvs_control::syncd::SyncPeer;

/// Most peers counted one by one; datagrams from more are counted in the
/// daemon's `peers_untracked` (a flood of spoofed sources cannot grow the
/// map without bound).
pub const MAX_PEERS: usize = 256;

#[derive(Debug, Default)]
struct Inner {
    total: BTreeMap<&'static str, u64>,
    peers: BTreeMap<IpAddr, BTreeMap<&'static str, u64>>,
}

/// Shared counters.
#[derive(Debug, Clone, Default)]
pub struct Stats(Arc<Mutex<Inner>>);

/// The counters, locked for a batch of updates.
pub struct Batch<'a>(MutexGuard<'a, Inner>);

impl Stats {
    /// Lock for updates.
    pub fn batch(&self) -> Batch<'_> {
        Batch(self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The daemon's counters and its peers'.
    pub fn snapshot(&self) -> (Vec<(&'static str, u64)>, Vec<SyncPeer>) {
        let g = self.batch();
        let total = g.0.total.iter().map(|(k, v)| (*k, *v)).collect();
        let peers =
            g.0.peers
                .iter()
                .map(|(a, c)| SyncPeer {
                    addr: *a,
                    counters: c.iter().map(|(k, v)| (*k, *v)).collect(),
                })
                .collect();
        (total, peers)
    }
}

impl Batch<'_> {
    /// Add `n` to the daemon's counter `name`.
    pub fn add(&mut self, name: &'static str, n: u64) {
        *self.0.total.entry(name).or_default() += n;
    }

    /// Add `n` to `peer`'s counter `name` (and to the daemon's).
    pub fn peer(&mut self, peer: IpAddr, name: &'static str, n: u64) {
        self.add(name, n);
        let full = self.0.peers.len() >= MAX_PEERS;
        match self.0.peers.get_mut(&peer) {
            Some(c) => *c.entry(name).or_default() += n,
            None if full => self.add("peers_untracked", n),
            None => {
                self.0.peers.entry(peer).or_default().insert(name, n);
            }
        }
    }
}
