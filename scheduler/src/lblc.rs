//! Locality-based least connection (`lblc`).
//!
//! For cache clusters: requests for one destination address should keep
//! going to the same cache server, so its cache stays hot, unless that
//! server is clearly overloaded while another is half idle. The mapping is
//! remembered in a bounded cache (see `cache.rs`) and a miss is scheduled
//! by wlc.

use std::collections::HashMap;

use crate::cache::{AddrCache, DEFAULT_BUCKETS};
use crate::common::{conn_overhead, key_of, weighted_least, DestKey};
use crate::{Dest, DestSet, Flow, Scheduler};

/// lblc's own overload test: the server has more active connections than
/// its weight while some server has fewer than half its weight.
pub(crate) fn lblc_overloaded(dests: &DestSet, d: &Dest) -> bool {
    i64::from(d.load.active()) > i64::from(d.weight)
        && dests
            .iter()
            .any(|o| 2 * i64::from(o.load.active()) < i64::from(o.weight))
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
        }
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
    }

    fn schedule(&mut self, dests: &DestSet, flow: &Flow, now_ns: u64) -> Option<usize> {
        if let Some(e) = self.cache.get_mut(&flow.daddr, now_ns) {
            e.lastuse = now_ns;
            let i = e.val as usize;
            if let Some(d) = dests.get(i) {
                if d.available() && !lblc_overloaded(dests, d) {
                    return Some(i);
                }
            }
        }
        let i = weighted_least(dests, conn_overhead)?;
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
}
