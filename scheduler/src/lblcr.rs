//! Locality-based least connection with replication (`lblcr`).
//!
//! Like lblc, but a popular destination address may be served by a *set*
//! of cache servers: when the best member of the set is overloaded, the
//! wlc choice joins the set instead of replacing it, and a set that has not
//! changed for 24 hours sheds its most loaded member. Sets are fixed-size
//! arrays inside the bounded cache, so `schedule` never allocates.

use crate::cache::{expired, AddrCache, DEFAULT_BUCKETS};
use crate::common::{conn_overhead, key_of, more_loaded, weight_u, DestKey};
use crate::lblc::{lblc_overloaded, remap};
use crate::least::{LeastTree, WlcHalfIdle};
use crate::{DestSet, Flow, Scheduler};

/// Most servers one address's set can hold. IPVS's sets are unbounded; a
/// set only grows while its members are overloaded, and when it is full
/// the most loaded member makes room for the new one.
pub const SET_CAP: usize = 8;

/// The servers caching one destination address, newest member first.
#[derive(Debug, Clone)]
struct ServerSet {
    /// Destination indices; `members[..len]` are valid.
    members: [u32; SET_CAP],
    /// Number of members.
    len: usize,
    /// Last time a member was added or dropped.
    lastmod: u64,
}

impl ServerSet {
    /// A set holding only `i`.
    fn one(i: usize, now: u64) -> Self {
        let mut members = [0; SET_CAP];
        members[0] = i as u32;
        ServerSet {
            members,
            len: 1,
            lastmod: now,
        }
    }

    /// The valid members.
    fn members(&self) -> &[u32] {
        &self.members[..self.len]
    }

    /// The usable member with the least overhead/weight; the newest wins
    /// ties.
    fn min(&self, dests: &DestSet) -> Option<usize> {
        let mut best: Option<(usize, u64, u64)> = None;
        for &m in self.members() {
            let Some(d) = dests.get(m as usize).filter(|d| d.available()) else {
                continue;
            };
            let (oh, w) = (conn_overhead(d), weight_u(d));
            match best {
                Some((_, boh, bw)) if !more_loaded(boh, bw, oh, w) => {}
                _ => best = Some((m as usize, oh, w)),
            }
        }
        best.map(|(i, _, _)| i)
    }

    /// Position in `members` of the most loaded member by overhead/weight.
    /// A quiesced member (weight 0) counts as infinitely loaded, so it is
    /// the first to go; among equals the newest is chosen.
    fn max_pos(&self, dests: &DestSet) -> Option<usize> {
        let mut worst: Option<(usize, u64, u64)> = None;
        for (p, &m) in self.members().iter().enumerate() {
            let (oh, w) = dests
                .get(m as usize)
                .map_or((1, 0), |d| (conn_overhead(d), weight_u(d)));
            let replace = match worst {
                None => true,
                // nothing beats an infinitely loaded member already chosen
                Some((_, _, 0)) => false,
                Some(_) if w == 0 => true,
                Some((_, woh, ww)) => more_loaded(oh, w, woh, ww),
            };
            if replace {
                worst = Some((p, oh, w));
            }
        }
        worst.map(|(p, _, _)| p)
    }

    /// Remove the member at position `p`.
    fn remove_at(&mut self, p: usize) {
        if p < self.len {
            self.members.copy_within(p + 1..self.len, p);
            self.len -= 1;
        }
    }

    /// Add `i` at the front unless it is already a member, making room by
    /// dropping the most loaded member when the set is full.
    fn insert(&mut self, i: usize, dests: &DestSet, now: u64) {
        if self.members().contains(&(i as u32)) {
            return;
        }
        if self.len == SET_CAP {
            let p = self.max_pos(dests).unwrap_or(SET_CAP - 1);
            self.remove_at(p);
        }
        self.members.copy_within(0..self.len, 1);
        self.members[0] = i as u32;
        self.len += 1;
        self.lastmod = now;
    }
}

/// Locality-based least-connection scheduler with replication.
#[derive(Debug)]
pub struct LocalityLeastConnRepl {
    /// Destination address -> set of destination indices.
    cache: AddrCache<ServerSet>,
    /// Keys of the current list, to remap cached indices on update.
    keys: Vec<DestKey>,
    /// wlc over the list, counting half-idle servers.
    tree: LeastTree<WlcHalfIdle>,
}

impl Default for LocalityLeastConnRepl {
    fn default() -> Self {
        Self::new()
    }
}

impl LocalityLeastConnRepl {
    /// A scheduler with the default cache of 16384 addresses.
    pub fn new() -> Self {
        Self::with_buckets(DEFAULT_BUCKETS)
    }

    /// A scheduler whose cache holds `buckets * 4` addresses (`buckets`
    /// rounded up to a power of two).
    pub fn with_buckets(buckets: usize) -> Self {
        LocalityLeastConnRepl {
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

impl Scheduler for LocalityLeastConnRepl {
    fn name(&self) -> &'static str {
        "lblcr"
    }

    /// Follow each member to its new index; deleted destinations leave
    /// their sets (this is not counted as a change of the set).
    fn update(&mut self, dests: &DestSet) {
        let map = remap(&self.keys, dests);
        self.cache.retain_mut(|e| {
            let set = &mut e.val;
            let mut kept = 0;
            for p in 0..set.len {
                if let Some(i) = map.get(set.members[p] as usize).copied().flatten() {
                    set.members[kept] = i;
                    kept += 1;
                }
            }
            set.len = kept;
            true
        });
        self.keys = dests.iter().map(key_of).collect();
        self.tree.update(dests);
    }

    fn refresh(&mut self, dests: &DestSet) {
        self.tree.update(dests);
    }

    fn schedule(&mut self, dests: &DestSet, flow: &Flow, now_ns: u64) -> Option<usize> {
        // The tree is brought up to date only when it is asked (see lblc).
        let Some(e) = self.cache.get_mut(&flow.daddr, now_ns) else {
            let synced = self.tree.sync(dests);
            let i = self.tree.least(synced, dests)?;
            self.cache
                .insert(flow.daddr, now_ns, ServerSet::one(i, now_ns));
            return Some(i);
        };
        e.lastuse = now_ns;
        let set = &mut e.val;
        let least = set.min(dests);
        // A replicated set that has been stable for 24 h sheds its most
        // loaded member (the choice above stands for this connection).
        if set.len > 1 && expired(set.lastmod, now_ns) {
            if let Some(p) = set.max_pos(dests) {
                set.remove_at(p);
                set.lastmod = now_ns;
            }
        }
        if let Some(i) = least {
            let tree = &mut self.tree;
            let half_idle = || {
                let synced = tree.sync(dests);
                tree.any_half_idle(synced, dests)
            };
            if !lblc_overloaded(&dests[i], half_idle) {
                return Some(i);
            }
        }
        let synced = self.tree.sync(dests);
        let i = self.tree.least(synced, dests)?;
        set.insert(i, dests, now_ns);
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
        Svc::new(Box::new(LocalityLeastConnRepl::with_buckets(64)))
    }

    fn to(d: u8) -> crate::Flow {
        flow_to(ip(100), 1, IpAddr::V4(Ipv4Addr::new(198, 19, 0, d)))
    }

    /// Overload `n` in lblc's sense (active > weight) while some other
    /// server stays half idle.
    fn busy(s: &Svc, n: u8) {
        let w = s.get(n).weight as u32;
        set_conns(s.get(n), w + 1, 0);
    }

    #[test]
    fn empty_gives_none() {
        assert_eq!(svc().pick_flow(&to(1)), None);
    }

    #[test]
    fn grows_set_when_overloaded_and_uses_least_member() {
        let mut s = svc();
        s.add(dest(1, 2)).add(dest(2, 2)).add(dest(3, 2));
        assert_eq!(s.pick_at(&to(1), 0), Some(3));
        // 3 stays while fine
        set_conns(s.get(3), 2, 0);
        assert_eq!(s.pick_at(&to(1), 1), Some(3));
        // 3 overloaded, 1 and 2 idle: wlc picks 2, which joins the set
        busy(&s, 3);
        assert_eq!(s.pick_at(&to(1), 2), Some(2));
        // the set {2, 3}: least loaded member is 2
        set_conns(s.get(2), 1, 0);
        assert_eq!(s.pick_at(&to(1), 3), Some(2));
        // make 3 lighter than 2: the set's least member is now 3
        set_conns(s.get(3), 0, 0);
        assert_eq!(s.pick_at(&to(1), 4), Some(3));
        // server 1 was never added
        set_conns(s.get(3), 1, 0);
        set_conns(s.get(2), 1, 0);
        assert_eq!(s.pick_at(&to(1), 5), Some(2));
    }

    #[test]
    fn stable_set_sheds_most_loaded_after_24h() {
        let mut s = svc();
        s.add(dest(1, 2)).add(dest(2, 2));
        assert_eq!(s.pick_at(&to(1), 0), Some(2));
        busy(&s, 2);
        assert_eq!(s.pick_at(&to(1), 10), Some(1)); // set {1, 2}, lastmod 10
        set_conns(s.get(2), 1, 0);
        set_conns(s.get(1), 2, 0);
        // least member 2 (256/2 < 512/2)
        assert_eq!(s.pick_at(&to(1), 20), Some(2));
        // 24 h after the last change: the most loaded (1) is dropped
        assert_eq!(s.pick_at(&to(1), 10 + EXPIRE_NS + 1), Some(2));
        // now only {2}: even when 1 is lighter, 2 is used while fine
        set_conns(s.get(1), 0, 0);
        assert_eq!(s.pick_at(&to(1), 10 + EXPIRE_NS + 2), Some(2));
    }

    #[test]
    fn unusable_members_are_skipped() {
        let mut s = svc();
        s.add(dest(1, 1)).add(dest(2, 1));
        assert_eq!(s.pick_at(&to(1), 0), Some(2));
        s.edit(2, 0);
        // no usable member: wlc choice 1 joins
        assert_eq!(s.pick_at(&to(1), 1), Some(1));
        s.edit(2, 1);
        set_conns(s.get(1), 1, 0);
        // both members usable: 2 is less loaded
        assert_eq!(s.pick_at(&to(1), 2), Some(2));
        set_overloaded(s.get(2), true);
        set_overloaded(s.get(1), true);
        assert_eq!(s.pick_at(&to(1), 3), None);
    }

    #[test]
    fn deleted_members_leave_sets() {
        let mut s = svc();
        s.add(dest(1, 1)).add(dest(2, 1));
        assert_eq!(s.pick_at(&to(1), 0), Some(2));
        s.add(dest(3, 1));
        set_conns(s.get(3), 1, 0);
        assert_eq!(s.pick_at(&to(1), 1), Some(2));
        s.del(2);
        // empty set: wlc, which prefers idle 1 over busy 3
        assert_eq!(s.pick_at(&to(1), 2), Some(1));
    }

    #[test]
    fn set_is_bounded() {
        let mut s = svc();
        for n in 1..=20 {
            s.add(dest(n, 1));
        }
        // Overload every chosen server so each schedule adds a new member.
        for t in 0..20u64 {
            let n = s.pick_at(&to(1), t).unwrap();
            set_conns(s.get(n), 2, 0);
        }
        let mut set = ServerSet::one(0, 0);
        for i in 1..20 {
            set.insert(i, &s.dests, 0);
        }
        assert_eq!(set.len, SET_CAP);
    }

    #[test]
    fn max_prefers_quiesced_member() {
        let dests = [dest(1, 0), dest(2, 5), dest(3, 1)];
        set_conns(&dests[2], 9, 0);
        let mut set = ServerSet::one(2, 0);
        set.insert(1, &dests, 0);
        set.insert(0, &dests, 0);
        // members [0, 1, 2]; 0 has weight 0
        assert_eq!(set.max_pos(&dests), Some(0));
        set.remove_at(0);
        // [1, 2]: 2 (9*256/1) is the most loaded
        assert_eq!(set.max_pos(&dests), Some(1));
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
            let mut tree = LocalityLeastConnRepl::with_tree_min(64, 1);
            let mut scan = LocalityLeastConnRepl::with_tree_min(64, usize::MAX);
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
