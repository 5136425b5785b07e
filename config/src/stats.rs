//! Traffic counters shared between the workers (writers) and the control
//! thread (reader for listings and rates).
//!
//! Every counter is split into one cache-line shard per worker plus one
//! shared shard. A worker is the only writer of its shard, so it counts with
//! a relaxed load and store (no locked instruction on the packet path);
//! anyone else adds to the shared shard with atomic read-modify-writes.
//! Readers sum the shards. Zeroing (`-Z`) records a baseline instead of
//! writing into shards that workers own, so it is exact under traffic.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

static WORKERS: AtomicUsize = AtomicUsize::new(0);

/// Declare how many workers will count (xvsd calls this before any
/// configuration exists). Counters created earlier still count correctly,
/// through their shared shard.
pub fn set_workers(n: usize) {
    WORKERS.store(n, Ordering::Relaxed);
}

#[derive(Debug, Default)]
#[repr(align(64))]
struct Shard {
    conns: AtomicU64,
    inpkts: AtomicU64,
    outpkts: AtomicU64,
    inbytes: AtomicU64,
    outbytes: AtomicU64,
}

#[inline(always)]
fn bump(a: &AtomicU64, by: u64) {
    a.store(
        a.load(Ordering::Relaxed).wrapping_add(by),
        Ordering::Relaxed,
    );
}

/// ipvsadm's five counters of a service or a destination.
#[derive(Debug)]
pub struct Counters {
    /// The workers' shards, worker `w`'s at `w` (apart from the shared
    /// one, so that finding a worker's takes one bounds check).
    shards: Box<[Shard]>,
    shared: Shard,
    base: Mutex<CounterValues>,
}

impl Default for Counters {
    fn default() -> Self {
        Counters::with_owned(WORKERS.load(Ordering::Relaxed))
    }
}

/// A plain copy of [`Counters`] at one instant.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CounterValues {
    /// Connections scheduled.
    pub conns: u64,
    /// Packets client → server.
    pub inpkts: u64,
    /// Packets server → client (NAT only; DR/TUN never see them).
    pub outpkts: u64,
    /// Bytes client → server (IP length).
    pub inbytes: u64,
    /// Bytes server → client.
    pub outbytes: u64,
}

impl Counters {
    /// Counters with a shard for each of `n` workers.
    fn with_owned(n: usize) -> Counters {
        Counters {
            shards: (0..n).map(|_| Shard::default()).collect(),
            shared: Shard::default(),
            base: Mutex::new(CounterValues::default()),
        }
    }

    /// The shard worker `w` owns, if it has one.
    #[inline(always)]
    fn own(&self, w: usize) -> Option<&Shard> {
        self.shards.get(w)
    }

    #[inline]
    fn shared(&self) -> &Shard {
        &self.shared
    }

    /// Count one new connection (worker `w`).
    #[inline]
    pub fn add_conn_by(&self, w: usize) {
        match self.own(w) {
            Some(s) => bump(&s.conns, 1),
            None => self.add_conn(),
        }
    }

    /// Count one inbound packet of `bytes` IP bytes (worker `w`).
    #[inline(always)]
    pub fn add_in_by(&self, w: usize, bytes: u64) {
        match self.own(w) {
            Some(s) => {
                bump(&s.inpkts, 1);
                bump(&s.inbytes, bytes);
            }
            None => self.add_in(bytes),
        }
    }

    /// Count one outbound packet of `bytes` IP bytes (worker `w`).
    #[inline(always)]
    pub fn add_out_by(&self, w: usize, bytes: u64) {
        match self.own(w) {
            Some(s) => {
                bump(&s.outpkts, 1);
                bump(&s.outbytes, bytes);
            }
            None => self.add_out(bytes),
        }
    }

    // The shared shard's paths are out of line and cold, so that the owned
    // shard's count stays a few instructions in line on the packet path.

    /// Count one new connection (any thread).
    #[cold]
    #[inline(never)]
    pub fn add_conn(&self) {
        self.shared().conns.fetch_add(1, Ordering::Relaxed);
    }

    /// Count one inbound packet of `bytes` IP bytes (any thread).
    #[cold]
    #[inline(never)]
    pub fn add_in(&self, bytes: u64) {
        let s = self.shared();
        s.inpkts.fetch_add(1, Ordering::Relaxed);
        s.inbytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Count one outbound packet of `bytes` IP bytes (any thread).
    #[cold]
    #[inline(never)]
    pub fn add_out(&self, bytes: u64) {
        let s = self.shared();
        s.outpkts.fetch_add(1, Ordering::Relaxed);
        s.outbytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Add a whole set of values at once (any thread; restores, tests).
    pub fn add_values(&self, v: CounterValues) {
        let s = self.shared();
        s.conns.fetch_add(v.conns, Ordering::Relaxed);
        s.inpkts.fetch_add(v.inpkts, Ordering::Relaxed);
        s.outpkts.fetch_add(v.outpkts, Ordering::Relaxed);
        s.inbytes.fetch_add(v.inbytes, Ordering::Relaxed);
        s.outbytes.fetch_add(v.outbytes, Ordering::Relaxed);
    }

    fn raw(&self) -> CounterValues {
        let mut v = CounterValues::default();
        for s in self.shards.iter().chain(std::iter::once(&self.shared)) {
            v.conns = v.conns.wrapping_add(s.conns.load(Ordering::Relaxed));
            v.inpkts = v.inpkts.wrapping_add(s.inpkts.load(Ordering::Relaxed));
            v.outpkts = v.outpkts.wrapping_add(s.outpkts.load(Ordering::Relaxed));
            v.inbytes = v.inbytes.wrapping_add(s.inbytes.load(Ordering::Relaxed));
            v.outbytes = v.outbytes.wrapping_add(s.outbytes.load(Ordering::Relaxed));
        }
        v
    }

    /// Read all five counters (since the last `zero`).
    pub fn get(&self) -> CounterValues {
        let r = self.raw();
        let b = *self.base.lock().unwrap_or_else(|e| e.into_inner());
        CounterValues {
            conns: r.conns.wrapping_sub(b.conns),
            inpkts: r.inpkts.wrapping_sub(b.inpkts),
            outpkts: r.outpkts.wrapping_sub(b.outpkts),
            inbytes: r.inbytes.wrapping_sub(b.inbytes),
            outbytes: r.outbytes.wrapping_sub(b.outbytes),
        }
    }

    /// Zero all five counters (`-Z`).
    pub fn zero(&self) {
        let r = self.raw();
        *self.base.lock().unwrap_or_else(|e| e.into_inner()) = r;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn owned_and_shared_shards_add_up_and_zero_is_a_baseline() {
        let c = Counters::with_owned(2);
        c.add_in_by(0, 100);
        c.add_in_by(1, 50);
        c.add_in_by(7, 10); // no shard of its own: shared
        c.add_in(1);
        c.add_conn_by(1);
        c.add_out_by(0, 9);
        let v = c.get();
        assert_eq!(
            (v.inpkts, v.inbytes, v.conns, v.outpkts, v.outbytes),
            (4, 161, 1, 1, 9)
        );
        c.zero();
        assert_eq!(c.get(), CounterValues::default());
        c.add_in_by(0, 5);
        assert_eq!(c.get().inbytes, 5);
    }

    #[test]
    fn concurrent_single_writers_lose_nothing() {
        let c = Arc::new(Counters::with_owned(2));
        let hs: Vec<_> = (0..2)
            .map(|w| {
                let c = c.clone();
                std::thread::spawn(move || {
                    for _ in 0..100_000 {
                        c.add_in_by(w, 1);
                    }
                })
            })
            .collect();
        for _ in 0..100_000 {
            c.add_in(1);
        }
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(c.get().inpkts, 300_000);
    }
}
