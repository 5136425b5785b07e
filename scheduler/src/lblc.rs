//! Locality-based least connection (`lblc`).
//!
//! For cache clusters: requests for one destination address should keep
//! going to the same cache server, so its cache stays hot, unless that
//! server is clearly overloaded while another is half idle. The mapping is
//! remembered in a bounded cache (see `cache.rs`) and a miss is scheduled
//! by wlc. Both the wlc choice and "some server is under half its weight"
//! come from the least-load tree (`least.rs`) instead of a scan.

use std::collections::HashMap;

use crate::cache::{AddrCache, DEFAULT_BUCKETS};
use crate::common::{key_of, DestKey};
use crate::least::{LeastTree, WlcHalfIdle};
use crate::{Dest, DestSet, Flow, Scheduler};

/// lblc's own overload test: the server has more active connections than
/// its weight while some server has fewer than half its weight
/// (`any_half_idle`, asked only when the first part holds).
pub(crate) fn lblc_overloaded(d: &Dest, any_half_idle: impl FnOnce() -> bool) -> bool {
    i64::from(d.load.active()) > i64::from(d.weight) && any_half_idle()
}

/// For every index of the old list, its index in the new list (or `None`
/// when the destination was deleted).
pub(crate) fn remap(old: &[DestKey], dests: &DestSet) -> Vec<Option<u32>> {
    let new: HashMap<DestKey, u32> = dests
        .iter()
        .enumerate()
        .map(|(i, d)| (key_of(d), i as u32))
        .collect();
    old.iter().map(|k| new.get(k).copied()).collect()
}

/// Locality-based least-connection scheduler.
#[derive(Debug)]
pub struct LocalityLeastConn {
    /// Destination address -> destination index.
    cache: AddrCache<u32>,
    /// Keys of the current list, to remap cached indices on update.
    keys: Vec<DestKey>,
    /// wlc over the list, counting half-idle servers.
    tree: LeastTree<WlcHalfIdle>,
}

impl Default for LocalityLeastConn {
    fn default() -> Self {
        Self::new()
    }
}

impl LocalityLeastConn {
    /// A scheduler with the default cache of 16384 addresses.
    pub fn new() -> Self {
        Self::with_buckets(DEFAULT_BUCKETS)
    }

    /// A scheduler whose cache holds `buckets * 4` addresses (`buckets`
    /// rounded up to a power of two).
    pub fn with_buckets(buckets: usize) -> Self {
        LocalityLeastConn {
            cache: AddrCache::new(buckets),
            keys: Vec::new(),
            tree: LeastTree::default(),
        }
    }

    /// Like [`Self::with_buckets`], using the tree from `min`
    /// destinations up (`usize::MAX`: always the scan).
    #[cfg(test)]
    pub(crate) fn with_tree_min(buckets: usize, min: usize) -> Self {
        let mut s = Self::with_buckets(buckets);
        s.tree = LeastTree::with_min(min);
        s
    }

    /// How many addresses the cache can hold.
    pub fn capacity(&self) -> usize {
        self.cache.capacity()
    }
}

impl Scheduler for LocalityLeastConn {
    fn name(&self) -> &'static str {
        "lblc"
    }

    /// Follow each cached destination to its new index; forget addresses
    /// whose destination was deleted (their next packet is rescheduled,
    /// as IPVS does for a destination it has moved to its trash).
    fn update(&mut self, dests: &DestSet) {
        let map = remap(&self.keys, dests);
        self.cache
            .retain_mut(|e| match map.get(e.val as usize).copied().flatten() {
                Some(i) => {
                    e.val = i;
                    true
                }
                None => false,
            });
        self.keys = dests.iter().map(key_of).collect();
        self.tree.update(dests);
    }

    fn refresh(&mut self, dests: &DestSet) {
        self.tree.update(dests);
    }

    fn schedule(&mut self, dests: &DestSet, flow: &Flow, now_ns: u64) -> Option<usize> {
        // The tree is brought up to date only when it is asked: a cache hit
        // on a server within its weight needs nothing from it.
        if let Some(e) = self.cache.get_mut(&flow.daddr, now_ns) {
            e.lastuse = now_ns;
            let i = e.val as usize;
            if let Some(d) = dests.get(i) {
                let tree = &mut self.tree;
                let half_idle = || {
                    let synced = tree.sync(dests);
                    tree.any_half_idle(synced, dests)
                };
                if d.available() && !lblc_overloaded(d, half_idle) {
                    return Some(i);
                }
            }
        }
        let synced = self.tree.sync(dests);
        let i = self.tree.least(synced, dests)?;
        self.cache.insert(flow.daddr, now_ns, i as u32);
        Some(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::EXPIRE_NS;
    use crate::common::testutil::*;
    use std::net::{IpAddr, Ipv4Addr};

    fn svc() -> Svc {
        Svc::new(Box::new(LocalityLeastConn::with_buckets(64)))
    }

    fn to(d: u8) -> crate::Flow {
        flow_to(ip(100), 1, IpAddr::V4(Ipv4Addr::new(198, 19, 0, d)))
    }

    #[test]
    fn empty_gives_none() {
        assert_eq!(svc().pick_flow(&to(1)), None);
    }

    #[test]
    fn sticks_to_cached_server() {
        let mut s = svc();
        s.add(dest(1, 1)).add(dest(2, 1));
        assert_eq!(s.pick_at(&to(1), 0), Some(2));
        set_conns(s.get(2), 1, 5);
        // wlc would now choose 1, but the cache keeps 2 (active 1 <= weight 1)
        assert_eq!(s.pick_at(&to(1), 1), Some(2));
        // a new address is scheduled by wlc
        assert_eq!(s.pick_at(&to(2), 2), Some(1));
        assert_eq!(s.pick_at(&to(2), 3), Some(1));
    }

    #[test]
    fn leaves_overloaded_cached_server_only_if_another_is_half_idle() {
        let mut s = svc();
        s.add(dest(1, 4)).add(dest(2, 4));
        assert_eq!(s.pick_at(&to(1), 0), Some(2));
        set_conns(s.get(2), 5, 0); // active > weight
        set_conns(s.get(1), 2, 0); // 2*2 == 4: not below its weight
        assert_eq!(s.pick_at(&to(1), 1), Some(2));
        set_conns(s.get(1), 1, 0); // 2*1 < 4: 1 is half idle
        assert_eq!(s.pick_at(&to(1), 2), Some(1));
        // and the cache now says 1
        set_conns(s.get(2), 0, 0);
        assert_eq!(s.pick_at(&to(1), 3), Some(1));
    }

    #[test]
    fn quiesced_or_overloaded_cached_server_is_replaced() {
        let mut s = svc();
        s.add(dest(1, 1)).add(dest(2, 1));
        assert_eq!(s.pick_at(&to(1), 0), Some(2));
        s.edit(2, 0);
        assert_eq!(s.pick_at(&to(1), 1), Some(1));
        s.edit(2, 1);
        assert_eq!(s.pick_at(&to(1), 2), Some(1));
        set_overloaded(s.get(1), true);
        assert_eq!(s.pick_at(&to(1), 3), Some(2));
        set_overloaded(s.get(2), true);
        assert_eq!(s.pick_at(&to(1), 4), None);
    }

    #[test]
    fn follows_destination_across_updates() {
        let mut s = svc();
        s.add(dest(1, 1)).add(dest(2, 1));
        assert_eq!(s.pick_at(&to(1), 0), Some(2));
        set_conns(s.get(2), 1, 0);
        // adding shifts indices; the cache still points at 2
        s.add(dest(3, 1));
        assert_eq!(s.pick_at(&to(1), 1), Some(2));
        // deleting 2 forgets the entry; wlc picks the front idle one
        s.del(2);
        assert_eq!(s.pick_at(&to(1), 2), Some(3));
        assert_eq!(s.pick_at(&to(1), 3), Some(3));
    }

    #[test]
    fn entry_expires_after_24h_idle() {
        let mut s = svc();
        s.add(dest(1, 1)).add(dest(2, 1));
        assert_eq!(s.pick_at(&to(1), 0), Some(2));
        set_conns(s.get(2), 1, 0);
        // used again just before expiry: refreshed
        assert_eq!(s.pick_at(&to(1), EXPIRE_NS), Some(2));
        assert_eq!(s.pick_at(&to(1), 2 * EXPIRE_NS), Some(2));
        // idle for more than 24 h: rescheduled by wlc
        assert_eq!(s.pick_at(&to(1), 3 * EXPIRE_NS + 1), Some(1));
    }

    #[test]
    fn bounded_cache() {
        let mut s = svc();
        s.add(dest(1, 1));
        for n in 0..=255u8 {
            for m in 0..=255u8 {
                let f = flow_to(ip(1), 1, IpAddr::V4(Ipv4Addr::new(198, 19, n, m)));
                assert_eq!(s.pick_at(&f, 0), Some(1));
            }
        }
        assert_eq!(LocalityLeastConn::with_buckets(64).capacity(), 256);
        assert_eq!(LocalityLeastConn::new().capacity(), 16384);
    }

    #[test]
    fn tree_chooses_like_the_scan() {
        // Property: with the wlc choice and the half-idle test from the
        // tree, every pick equals the scanning scheduler's, through random
        // binds, closes, overloads, weight edits and many addresses.
        use std::sync::atomic::Ordering;
        let mut seed = 0x1b1c_7eeeu64;
        let mut rnd = move |m: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % m
        };
        for n in [1usize, 20, 300] {
            let mut dests: Vec<crate::Dest> = (0..n)
                .map(|i| crate::Dest::new(ip(1), i as u16, 1 + rnd(4) as i32))
                .collect();
            let mut tree = LocalityLeastConn::with_tree_min(64, 1);
            let mut scan = LocalityLeastConn::with_tree_min(64, usize::MAX);
            tree.update(&dests);
            scan.update(&dests);
            for step in 0..3000u64 {
                match rnd(12) {
                    0 => {
                        let i = rnd(n as u64) as usize;
                        dests[i].weight = rnd(5) as i32;
                        tree.update(&dests);
                        scan.update(&dests);
                    }
                    1 => {
                        let d = &dests[rnd(n as u64) as usize];
                        set_overloaded(d, rnd(3) == 0);
                    }
                    2 => {
                        let d = &dests[rnd(n as u64) as usize];
                        set_conns(d, rnd(3) as u32, rnd(5) as u32);
                    }
                    _ => {}
                }
                let f = flow_to(
                    ip(100),
                    1,
                    IpAddr::V4(Ipv4Addr::new(198, 19, 0, rnd(40) as u8)),
                );
                let now = step * 1_000_000_000;
                let a = tree.schedule(&dests, &f, now);
                let b = scan.schedule(&dests, &f, now);
                assert_eq!(a, b, "n={n} step={step}");
                if let Some(i) = a {
                    dests[i].load.active.fetch_add(1, Ordering::Relaxed);
                    dests[i].note_bound();
                }
                if rnd(2) == 0 {
                    let d = &dests[rnd(n as u64) as usize];
                    let v = d.load.active().saturating_sub(1);
                    d.load.active.store(v, Ordering::Relaxed);
                    d.note_unbound();
                }
            }
        }
    }
}
