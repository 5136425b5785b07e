//! A tournament tree over the destinations, so the least-load schedulers
//! (lc, wlc, sed, nq) answer without reading every destination.
//!
//! IPVS scans the whole list per new connection and keeps the first
//! destination that no later one beats strictly. That choice is the
//! minimum of a total order: the rule's load order (lc: overhead; wlc and
//! sed: overhead/weight cross-multiplied; nq: idle before busy, then sed),
//! ties broken by position in the list. A minimum under a total order can
//! be computed in any grouping, so a complete binary tree whose leaves are
//! the destinations in list order and whose inner nodes hold the winner of
//! their two children (the left one unless the right one is strictly
//! better) has exactly the scan's choice at its root.
//!
//! Loads change on every connection open and close, on any worker, with no
//! lock; weights change only through `update`. So the tree does not poll:
//! the counters report each change on their service's [`LoadBoard`], and
//! `schedule`, which already runs under the service lock, re-reads only the
//! destinations marked since the last call and replays their leaf-to-root
//! paths (log2 n comparisons each, stopping early where the winner is
//! unchanged and is not the updated leaf). The answer is the scan's answer
//! over the loads the tree holds, and the tree holds every change that
//! happened before the call (see `watch.rs` for the ordering argument). A
//! scheduler that finds another one took the board's marks (two schedulers
//! over the same destinations) re-reads everything once.
//!
//! Short lists (below [`TREE_MIN`]) are scanned: the scan is as cheap as
//! the tree there, and the counters of small services then never report
//! to a board. Lists whose counters cannot report to one board (more than
//! [`BOARD_SLOTS`](crate::watch::BOARD_SLOTS) destinations, or counters
//! already watched by another service's board) are scanned too.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::common::{more_loaded, weight_u};
use crate::watch::LoadBoard;
use crate::{Dest, DestSet};

/// Below this many destinations the schedulers scan.
pub(crate) const TREE_MIN: usize = 16;

/// Ids of tree instances, for [`LoadBoard::claim`]; 0 is nobody.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// What a rule compares about one destination, read once per change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Load {
    /// Weight > 0 and not overloaded.
    pub usable: bool,
    /// No active connection (nq).
    pub idle: bool,
    /// The rule's overhead.
    pub oh: u64,
    /// The weight as a factor.
    pub w: u64,
}

/// The load of a padding leaf or an unusable destination.
const UNUSABLE: Load = Load {
    usable: false,
    idle: false,
    oh: 0,
    w: 0,
};

/// One least-load rule: what it reads and how it compares.
pub(crate) trait Rule {
    /// The load of `d` as this rule sees it.
    fn load(d: &Dest) -> Load;
    /// Whether usable `a` is strictly better than usable `b`.
    fn better(a: &Load, b: &Load) -> bool;
    /// The IPVS scan over `dests`, for short or unwatched lists.
    fn scan(dests: &DestSet) -> Option<usize>;
}

/// Whether `a` beats `b`: usable, and `b` unusable or strictly worse.
#[inline]
fn beats<R: Rule>(a: &Load, b: &Load) -> bool {
    a.usable && (!b.usable || R::better(a, b))
}

/// The straightforward scan under rule `R`: the first usable destination
/// that no later one beats. The reference the tree is tested against.
#[cfg(test)]
pub(crate) fn reference<R: Rule>(dests: &DestSet) -> Option<usize> {
    let mut best: Option<(usize, Load)> = None;
    for (i, d) in dests.iter().enumerate() {
        let l = R::load(d);
        if !l.usable {
            continue;
        }
        match best {
            Some((_, b)) if !beats::<R>(&l, &b) => {}
            _ => best = Some((i, l)),
        }
    }
    best.map(|(i, _)| i)
}

/// The tree proper: leaves in list order, padded to a power of two.
#[derive(Debug, Default)]
struct Tree {
    /// Leaves (a power of two, at least 1).
    m: usize,
    /// The load each leaf was last read with; padding is `UNUSABLE`.
    loads: Vec<Load>,
    /// Node `k` (1-based heap order, leaves at `m..2m`) holds the index of
    /// the winning leaf of its subtree.
    win: Vec<u32>,
}

impl Tree {
    /// Rebuild over `dests`, reading every load.
    fn build<R: Rule>(&mut self, dests: &DestSet) {
        self.m = dests.len().next_power_of_two().max(1);
        let m = self.m;
        self.loads.clear();
        self.loads.extend(dests.iter().map(R::load));
        self.loads.resize(m, UNUSABLE);
        self.win.clear();
        self.win.resize(2 * m, 0);
        for i in 0..m {
            self.win[m + i] = i as u32;
        }
        for k in (1..m).rev() {
            self.win[k] = self.match_at::<R>(k);
        }
    }

    /// The winner of node `k`'s two children.
    #[inline]
    fn match_at<R: Rule>(&self, k: usize) -> u32 {
        let (l, r) = (self.win[2 * k], self.win[2 * k + 1]);
        if beats::<R>(&self.loads[r as usize], &self.loads[l as usize]) {
            r
        } else {
            l
        }
    }

    /// Leaf `i` now has `load`: replay its path to the root.
    #[inline]
    fn set<R: Rule>(&mut self, i: usize, load: Load) {
        if self.loads[i] == load {
            return;
        }
        self.loads[i] = load;
        let mut k = (self.m + i) / 2;
        while k >= 1 {
            let w = self.match_at::<R>(k);
            let old = std::mem::replace(&mut self.win[k], w);
            // Nodes above depend on this one only through its winner's
            // load: unchanged winner, not the changed leaf, nothing to do.
            if old == w && w as usize != i {
                break;
            }
            k /= 2;
        }
    }

    /// The root's winner, if usable.
    #[inline]
    fn best(&self) -> Option<usize> {
        let w = self.win[1] as usize;
        self.loads[w].usable.then_some(w)
    }
}

/// A least-load scheduler's state: the tree, the board its destinations
/// report to, and which destination owns which slot.
#[derive(Debug)]
pub(crate) struct LeastTree<R> {
    /// This instance's id on the board.
    id: u64,
    /// Scan below this many destinations.
    min: usize,
    /// The board, or `None` to scan.
    board: Option<Arc<LoadBoard>>,
    /// Destinations in the last `update`.
    n: usize,
    /// Slot -> index in the list (`u32::MAX`: not in the list).
    slot_idx: Vec<u32>,
    tree: Tree,
    rule: PhantomData<fn() -> R>,
}

impl<R: Rule> Default for LeastTree<R> {
    fn default() -> Self {
        Self::with_min(TREE_MIN)
    }
}

impl<R: Rule> LeastTree<R> {
    /// A tree used from `min` destinations up (below, the scan).
    pub(crate) fn with_min(min: usize) -> Self {
        LeastTree {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            min: min.max(1),
            board: None,
            n: 0,
            slot_idx: Vec::new(),
            tree: Tree::default(),
            rule: PhantomData,
        }
    }

    /// Whether the tree (not the scan) answers for the current list.
    #[cfg(test)]
    pub(crate) fn uses_tree(&self) -> bool {
        self.board.is_some()
    }

    /// The destination list changed (or weights did): attach every
    /// destination's counters to one board and rebuild the tree.
    pub(crate) fn update(&mut self, dests: &DestSet) {
        self.n = dests.len();
        self.board = None;
        if dests.len() < self.min {
            return;
        }
        let board = dests
            .iter()
            .find_map(|d| d.load.watch().map(|w| w.board.clone()))
            .unwrap_or_else(LoadBoard::new);
        if !dests.iter().all(|d| d.load.watched_by(&board)) {
            return;
        }
        self.slot_idx.clear();
        for (i, d) in dests.iter().enumerate() {
            let slot = d.load.watch().map_or(0, |w| w.slot) as usize;
            if self.slot_idx.len() <= slot {
                self.slot_idx.resize(slot + 1, u32::MAX);
            }
            self.slot_idx[slot] = i as u32;
        }
        self.board = Some(board);
        self.resync(dests);
    }

    /// Take the board and read every destination afresh.
    fn resync(&mut self, dests: &DestSet) {
        if let Some(board) = &self.board {
            board.claim(self.id);
            // Marks taken here are covered by the full read that follows.
            board.take(|_| {});
        }
        self.tree.build::<R>(dests);
    }

    /// The scan's choice over the current loads.
    #[inline]
    pub(crate) fn schedule(&mut self, dests: &DestSet) -> Option<usize> {
        let Some(board) = &self.board else {
            return R::scan(dests);
        };
        if dests.len() != self.n {
            // Not the list of the last update (a caller error): be right.
            return R::scan(dests);
        }
        if !board.claim(self.id) {
            self.resync(dests);
        } else {
            let (tree, slot_idx) = (&mut self.tree, &self.slot_idx);
            board.take(|slot| {
                if let Some(&i) = slot_idx.get(slot as usize) {
                    if let Some(d) = dests.get(i as usize) {
                        tree.set::<R>(i as usize, R::load(d));
                    }
                }
            });
        }
        self.tree.best()
    }
}

/// Least connection: least `active * 256 + inactive`.
#[derive(Debug)]
pub(crate) enum Lc {}

impl Rule for Lc {
    #[inline]
    fn load(d: &Dest) -> Load {
        Load {
            usable: d.available(),
            idle: false,
            oh: d.load.overhead(),
            w: 0,
        }
    }
    #[inline]
    fn better(a: &Load, b: &Load) -> bool {
        a.oh < b.oh
    }
    fn scan(dests: &DestSet) -> Option<usize> {
        crate::lc::least_overhead(dests)
    }
}

/// Weighted least connection: least overhead/weight.
#[derive(Debug)]
pub(crate) enum Wlc {}

impl Rule for Wlc {
    #[inline]
    fn load(d: &Dest) -> Load {
        Load {
            usable: d.available(),
            idle: false,
            oh: d.load.overhead(),
            w: weight_u(d),
        }
    }
    #[inline]
    fn better(a: &Load, b: &Load) -> bool {
        more_loaded(b.oh, b.w, a.oh, a.w)
    }
    fn scan(dests: &DestSet) -> Option<usize> {
        crate::common::weighted_least(dests, crate::common::conn_overhead)
    }
}

/// Shortest expected delay: least (active + 1)/weight.
#[derive(Debug)]
pub(crate) enum Sed {}

impl Rule for Sed {
    #[inline]
    fn load(d: &Dest) -> Load {
        Load {
            usable: d.available(),
            idle: false,
            oh: u64::from(d.load.active()) + 1,
            w: weight_u(d),
        }
    }
    #[inline]
    fn better(a: &Load, b: &Load) -> bool {
        more_loaded(b.oh, b.w, a.oh, a.w)
    }
    fn scan(dests: &DestSet) -> Option<usize> {
        crate::common::weighted_least(dests, crate::common::sed_overhead)
    }
}

/// Never queue: any idle destination before every busy one (the first
/// idle one wins), else shortest expected delay.
#[derive(Debug)]
pub(crate) enum Nq {}

impl Rule for Nq {
    #[inline]
    fn load(d: &Dest) -> Load {
        let active = d.load.active();
        Load {
            usable: d.available(),
            idle: active == 0,
            oh: u64::from(active) + 1,
            w: weight_u(d),
        }
    }
    #[inline]
    fn better(a: &Load, b: &Load) -> bool {
        match (a.idle, b.idle) {
            (true, false) => true,
            (false, false) => more_loaded(b.oh, b.w, a.oh, a.w),
            _ => false,
        }
    }
    fn scan(dests: &DestSet) -> Option<usize> {
        crate::nq::never_queue(dests)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::testutil::*;
    use std::sync::atomic::Ordering;

    fn rnd_from(mut seed: u64) -> impl FnMut(u64) -> u64 {
        move |m: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % m
        }
    }

    /// Set counters and flag of `d` the way the data plane does: change,
    /// then report.
    fn load(d: &Dest, active: u32, inactive: u32, over: bool) {
        d.load.active.store(active, Ordering::Relaxed);
        d.load.inactive.store(inactive, Ordering::Relaxed);
        d.load.set_overloaded(over);
    }

    /// Random list and loads, many updates, every step checked against the
    /// reference scan and the rule's production scan. Small ranges make
    /// ties common; some steps change many destinations at once.
    fn against_scan<R: Rule>(seed: u64, sizes: &[usize], steps: usize) {
        let mut rnd = rnd_from(seed);
        for &n in sizes {
            let mut dests: Vec<Dest> = (0..n)
                .map(|i| Dest::new(ip(0), i as u16, rnd(5) as i32))
                .collect();
            for d in &dests {
                load(d, rnd(4) as u32, rnd(600) as u32, rnd(10) == 0);
            }
            let mut t = LeastTree::<R>::with_min(1);
            t.update(&dests);
            assert!(t.uses_tree());
            for step in 0..steps {
                match rnd(10) {
                    0 => {
                        // weight edit through update
                        let i = rnd(n as u64) as usize;
                        dests[i].weight = rnd(5) as i32;
                        t.update(&dests);
                    }
                    1 => {
                        // a burst of changes
                        for _ in 0..rnd(3 * n as u64 + 1) {
                            let d = &dests[rnd(n as u64) as usize];
                            load(d, rnd(4) as u32, rnd(600) as u32, rnd(10) == 0);
                        }
                    }
                    2 => {
                        // all equal: every comparison ties
                        for d in &dests {
                            load(d, 1, 3, false);
                        }
                    }
                    _ => {
                        // one bind or unbind, as a worker does
                        let d = &dests[rnd(n as u64) as usize];
                        if rnd(2) == 0 {
                            d.load.active.fetch_add(1, Ordering::Relaxed);
                            d.note_bound();
                        } else {
                            let v = d.load.active().saturating_sub(1);
                            d.load.active.store(v, Ordering::Relaxed);
                            d.note_unbound();
                        }
                    }
                }
                let want = reference::<R>(&dests);
                assert_eq!(R::scan(&dests), want, "scan n={n} step={step}");
                assert_eq!(t.schedule(&dests), want, "tree n={n} step={step}");
            }
        }
    }

    const SIZES: [usize; 8] = [1, 2, 3, 7, 16, 100, 513, 1000];

    #[test]
    fn lc_tree_is_the_scan() {
        against_scan::<Lc>(0x1c, &SIZES, 400);
    }

    #[test]
    fn wlc_tree_is_the_scan() {
        against_scan::<Wlc>(0x3c1c, &SIZES, 400);
    }

    #[test]
    fn sed_tree_is_the_scan() {
        against_scan::<Sed>(0x5ed, &SIZES, 400);
    }

    #[test]
    fn nq_tree_is_the_scan() {
        against_scan::<Nq>(0x4e, &SIZES, 400);
    }

    #[test]
    fn two_trees_over_one_list_both_stay_exact() {
        // They share one board; each notices when the other took marks.
        let mut rnd = rnd_from(77);
        let dests: Vec<Dest> = (0..64).map(|i| Dest::new(ip(0), i, 1)).collect();
        let mut a = LeastTree::<Wlc>::with_min(1);
        let mut b = LeastTree::<Lc>::with_min(1);
        a.update(&dests);
        b.update(&dests);
        assert!(a.uses_tree() && b.uses_tree());
        for _ in 0..500 {
            let d = &dests[rnd(64) as usize];
            load(d, rnd(3) as u32, rnd(9) as u32, false);
            if rnd(2) == 0 {
                assert_eq!(a.schedule(&dests), reference::<Wlc>(&dests));
            } else {
                assert_eq!(b.schedule(&dests), reference::<Lc>(&dests));
            }
        }
    }

    #[test]
    fn list_changes_keep_slots_straight() {
        // Adds and deletes move indexes; slots stay with their counters.
        let mut rnd = rnd_from(99);
        let mut t = LeastTree::<Wlc>::with_min(1);
        let mut dests: Vec<Dest> = Vec::new();
        let mut port = 0u16;
        for _ in 0..1500 {
            match rnd(4) {
                0 if dests.len() < 300 => {
                    port += 1;
                    dests.insert(0, Dest::new(ip(0), port, 1 + rnd(3) as i32));
                    t.update(&dests);
                }
                1 if !dests.is_empty() => {
                    dests.remove(rnd(dests.len() as u64) as usize);
                    t.update(&dests);
                }
                _ if !dests.is_empty() => {
                    let d = &dests[rnd(dests.len() as u64) as usize];
                    load(d, rnd(5) as u32, rnd(7) as u32, rnd(20) == 0);
                }
                _ => {}
            }
            assert_eq!(t.schedule(&dests), reference::<Wlc>(&dests));
        }
    }

    #[test]
    fn concurrent_workers_then_schedule_is_the_scan() {
        // Workers bind, move and unbind on their own threads while the
        // scheduler runs; once they are done (joined), the next choice is
        // the scan's over the final loads, and choices made meanwhile were
        // always usable indexes.
        let dests: Arc<Vec<Dest>> = Arc::new(
            (0..200)
                .map(|i| Dest::new(ip(0), i, 1 + (i % 4) as i32))
                .collect(),
        );
        let mut t = LeastTree::<Wlc>::with_min(1);
        t.update(&dests);
        for round in 0..5u64 {
            let workers: Vec<_> = (0..3u64)
                .map(|w| {
                    let dests = dests.clone();
                    std::thread::spawn(move || {
                        let mut rnd = rnd_from(round * 10 + w + 1);
                        for _ in 0..20_000 {
                            let d = &dests[rnd(200) as usize];
                            match rnd(3) {
                                0 => {
                                    d.load.active.fetch_add(1, Ordering::Relaxed);
                                    d.note_bound();
                                }
                                1 => {
                                    d.load.inactive.fetch_add(1, Ordering::Relaxed);
                                    d.note_bound();
                                }
                                _ => {
                                    let _ = d.load.active.fetch_update(
                                        Ordering::Relaxed,
                                        Ordering::Relaxed,
                                        |v| Some(v.saturating_sub(1)),
                                    );
                                    d.note_unbound();
                                }
                            }
                        }
                    })
                })
                .collect();
            let mut picks = 0;
            while !workers.iter().all(|w| w.is_finished()) && picks < 1_000_000 {
                let i = t.schedule(&dests).expect("all usable");
                assert!(i < dests.len());
                picks += 1;
            }
            for w in workers {
                w.join().unwrap();
            }
            assert_eq!(t.schedule(&dests), reference::<Wlc>(&dests));
        }
    }

    #[test]
    fn short_and_unwatchable_lists_scan() {
        let dests: Vec<Dest> = (0..5).map(|i| Dest::new(ip(0), i, 1)).collect();
        let mut t = LeastTree::<Lc>::default();
        t.update(&dests);
        assert!(!t.uses_tree());
        assert!(dests.iter().all(|d| d.load.watch().is_none()));
        // Counters watched by another board cannot join this one.
        let mut many: Vec<Dest> = (0..20).map(|i| Dest::new(ip(0), i, 1)).collect();
        let mut other = LeastTree::<Lc>::default();
        other.update(&many[..TREE_MIN]);
        assert!(other.uses_tree());
        let mut fresh = Dest::new(ip(1), 1, 1);
        let board = LoadBoard::new();
        assert!(fresh.load.watched_by(&board));
        many.push(fresh.clone());
        fresh.weight = 2;
        t.update(&many);
        assert!(!t.uses_tree());
        load(&many[3], 0, 0, false);
        for d in &many {
            load(d, 1, 0, false);
        }
        load(&many[7], 0, 1, false);
        assert_eq!(t.schedule(&many), Some(7));
    }
}
