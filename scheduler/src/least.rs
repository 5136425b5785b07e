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
//! paths (at most log2 n comparisons each). Which way a leaf moved bounds
//! what can change: a better leaf climbs only while it wins, a worse one
//! only while the parent still holds it. So under churn (bind the chosen
//! destination, close one elsewhere) each call costs two short climbs and
//! no full rebuild. Matches are cheap: ratios become one number each
//! (`floor(oh * 2^s / w)`, `s` twice the bit length of the largest
//! weight, exact for order and ties, see [`ratio_scalar`]), packed above
//! the destination's index into one `u64`, so a match is one `min` and
//! the scan's tie rule (the earlier destination wins) comes for free;
//! exact products of (key, index) nodes are the fallback for loads and
//! weights too large for that. The answer is the scan's answer
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

use crate::common::weight_u;
use crate::watch::LoadBoard;
use crate::{Dest, DestSet};

/// Below this many destinations the schedulers scan.
pub(crate) const TREE_MIN: usize = 16;

/// Ids of tree instances, for [`LoadBoard::claim`]; 0 is nobody.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// One node of the tree: a destination's key and its index in the list.
///
/// The rules encode "unusable" in the key so that every comparison is the
/// same arithmetic: an unusable destination loses to every usable one.
/// Two words, so that equality and selection are two operations each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Node {
    /// The rule's overhead (in [`SCALAR`] mode: the key's scalar).
    pub oh: u64,
    /// The weight factor (0: unusable) in the low 32 bits, the index of
    /// the destination in the list in the high 32.
    pub tag: u64,
}

impl Node {
    /// The node of destination `idx` with key `(oh, w)`.
    #[inline]
    fn new((oh, w): (u64, u32), idx: usize) -> Node {
        Node {
            oh,
            tag: u64::from(w) | (idx as u64) << 32,
        }
    }

    /// The weight factor.
    #[inline]
    pub(crate) fn w(&self) -> u64 {
        self.tag & 0xffff_ffff
    }

    /// The index in the list.
    #[inline]
    fn idx(&self) -> usize {
        (self.tag >> 32) as usize
    }

    /// `a` if `pick_a`, else `b`, without a branch: which child of a
    /// match wins is as good as random, so a branch would often be
    /// mispredicted.
    #[inline]
    fn select(pick_a: bool, a: Node, b: Node) -> Node {
        Node {
            oh: std::hint::select_unpredictable(pick_a, a.oh, b.oh),
            tag: std::hint::select_unpredictable(pick_a, a.tag, b.tag),
        }
    }
}

/// One least-load rule: what it reads and how it compares.
pub(crate) trait Rule {
    /// Whether the tree also counts destinations with fewer active
    /// connections than half their weight (lblc's overload test).
    const HALF_IDLE: bool = false;
    /// Bits of the largest overhead a usable key can have. The ratio rules
    /// cross-multiply an overhead by a weight factor: while every weight
    /// factor is below `2^(64 - OH_BITS)` the products fit in 64 bits and
    /// the cheaper narrow comparison is exact. 64: not a ratio rule.
    const OH_BITS: u32 = 64;
    /// The key of an unusable destination (and of padding leaves).
    const UNUSABLE: (u64, u32);
    /// The key `(oh, w)` of `d` as this rule sees it.
    fn key(d: &Dest) -> (u64, u32);
    /// Whether `a` beats `b`: is strictly better, or (with `or_eq`) at
    /// least as good. Unusable is never better than usable. `NARROW`:
    /// every weight factor in the tree fits [`Rule::narrow`], so 64-bit
    /// products are exact.
    fn beats<const NARROW: bool>(a: &Node, b: &Node, or_eq: bool) -> bool;
    /// Whether a weight factor `w` leaves the products in 64 bits.
    #[inline]
    fn narrow(w: u64) -> bool {
        Self::OH_BITS < 64 && w >> (64 - Self::OH_BITS) == 0
    }
    /// Key `(oh, w)` as one number below 2^52 that orders (and ties)
    /// exactly as [`Rule::beats`] does among keys whose weight factors are
    /// below `2^(shift / 2)`, [`SCALAR_UNUSABLE`] for an unusable one;
    /// `None` when this key has no such number (then the tree compares
    /// products). `shift` is what [`ratio_shift`] chose for the list.
    fn scalar(key: (u64, u32), shift: u32) -> Option<u64>;
    /// The IPVS scan over `dests`, for short or unwatched lists.
    fn scan(dests: &DestSet) -> Option<usize>;
}

/// A weight as the tree's `u32` factor (weights are `i32`; negative ones
/// count as 0, as in [`weight_u`]).
#[inline]
fn weight32(d: &Dest) -> u32 {
    weight_u(d) as u32
}

/// `a` against `b` by ratio: `a.oh / a.w` against `b.oh / b.w`,
/// cross-multiplied as IPVS does (the comparison of
/// [`more_loaded`](crate::common::more_loaded)); true when `a` is less
/// loaded, or (with `or_eq`) equally loaded.
/// With unusable as `(1, 0)`, a usable `a` (`a.w > 0`) is better than an
/// unusable `b`, and an unusable `a` is better than nothing.
///
/// `NARROW` (every oh below `2^OH_BITS`, every w below `2^(64 - OH_BITS)`)
/// multiplies in 64 bits: each product is then at most
/// `2^64 - 2^OH_BITS - 2^(64 - OH_BITS) + 1`, so neither it nor the
/// product plus one overflows. Otherwise 128 bits, exact for any `u32`
/// weight.
#[inline]
fn ratio_beats<const NARROW: bool>(a: &Node, b: &Node, or_eq: bool) -> bool {
    if NARROW {
        a.oh * b.w() < b.oh * a.w() + u64::from(or_eq)
    } else {
        u128::from(a.oh) * u128::from(b.w())
            < u128::from(b.oh) * u128::from(a.w()) + u128::from(or_eq)
    }
}

/// Bits of a packed node that hold the destination's index: a board has
/// [`BOARD_SLOTS`](crate::watch::BOARD_SLOTS) = 2^12 slots, so no tree
/// has more leaves than that.
const IDX_BITS: u32 = 12;

/// The scalar of an unusable destination: the largest that fits above
/// the index, above every usable one.
pub(crate) const SCALAR_UNUSABLE: u64 = (1 << (64 - IDX_BITS)) - 1;

/// The shift [`ratio_scalar`] needs for a list whose largest weight
/// factor is `max_w`: twice its bit length (at least 2).
#[inline]
fn ratio_shift(max_w: u32) -> u32 {
    2 * (32 - max_w.max(1).leading_zeros())
}

/// `oh / w` as one number, `floor(oh * 2^shift / w)`, for `w` below
/// `2^(shift / 2)` and `oh` below `2^(52 - shift)` (`None` beyond; then
/// the result is below `2^52 - 2^shift`, under [`SCALAR_UNUSABLE`]).
/// Exact for order and ties: two different ratios `a/b < c/d` with
/// `b, d < 2^(shift / 2)` differ by at least `1/(bd) > 2^-shift`, so
/// scaled by `2^shift` they are more than 1 apart and their floors keep
/// the order strictly; equal ratios give equal floors. The shift follows
/// the list's largest weight (16 for weights up to 255, leaving 36 bits
/// for the overhead), so the usual loads fit with room to spare. One
/// division per changed destination buys matches of one comparison
/// instead of two multiplications.
#[inline]
fn ratio_scalar((oh, w): (u64, u32), shift: u32) -> Option<u64> {
    if w == 0 {
        return Some(SCALAR_UNUSABLE);
    }
    if (u64::from(w) >> (shift / 2)) | (oh >> 52u32.saturating_sub(shift)) != 0 {
        return None;
    }
    Some((oh << shift) / u64::from(w))
}

/// The scalar of a rule whose overhead is its order (lc, ovf).
#[inline]
fn plain_scalar((oh, w): (u64, u32)) -> Option<u64> {
    if w == 0 {
        Some(SCALAR_UNUSABLE)
    } else {
        (oh < SCALAR_UNUSABLE).then_some(oh)
    }
}

/// How a tree's matches compare: by packed scalar (see [`Rule::scalar`]
/// and [`Tree::keys`]), by 64-bit products ([`Rule::narrow`]), or by
/// 128-bit products.
const SCALAR: u8 = 0;
/// See [`SCALAR`].
const NARROW: u8 = 1;
/// See [`SCALAR`].
const WIDE: u8 = 2;

/// Whether `a` beats `b` (strictly, or as good with `or_eq`) in product
/// mode `M` ([`NARROW`] or [`WIDE`]).
#[inline]
fn wins<R: Rule, const M: u8>(a: &Node, b: &Node, or_eq: bool) -> bool {
    match M {
        NARROW => R::beats::<true>(a, b, or_eq),
        _ => R::beats::<false>(a, b, or_eq),
    }
}

/// The key of an unusable destination under the ratio rules.
const RATIO_UNUSABLE: (u64, u32) = (1, 0);

/// The packed node of leaf `idx` with scalar `s`: the scalar above the
/// index, so that one unsigned comparison orders by key and then by
/// position in the list, which is the scan's order, ties included (the
/// earlier destination wins).
#[inline]
fn pack(s: u64, idx: usize) -> u64 {
    s << IDX_BITS | idx as u64
}

/// The tree proper: leaves in list order, padded to a power of two.
#[derive(Debug, Default)]
struct Tree {
    /// Leaves (a power of two, at least 1).
    m: usize,
    /// In [`SCALAR`] mode, the tree as packed nodes ([`pack`]) in heap
    /// order, 1-based: node `k`'s children are `2k` and `2k + 1`, its
    /// sibling `k ^ 1`, its parent `k / 2`; the leaves are `m..2m` and
    /// node 0 is unused. An inner node is the least of its children, so
    /// a match is one `min` and a changed leaf replays its path until a
    /// node comes out as it was. Eight bytes a node: a path of a
    /// thousand-leaf tree touches few lines. Empty in the other modes.
    keys: Vec<u64>,
    /// The shift of the ratio rules' scalars ([`ratio_shift`]), fixed at
    /// each rebuild.
    shift: u32,
    /// In the product modes, the tree as [`Node`]s, in the same heap
    /// order; an inner node is a copy of its subtree's winning leaf, so a
    /// match reads the two children and nothing else. Empty in
    /// [`SCALAR`] mode.
    nodes: Vec<Node>,
    /// How matches compare ([`SCALAR`], [`NARROW`] or [`WIDE`]): the
    /// cheapest mode every leaf fits, chosen at each rebuild.
    mode: u8,
    /// Per leaf: fewer active connections than half the weight.
    half_idle: Vec<bool>,
    /// How many leaves are half idle.
    half_idle_count: usize,
}

impl Tree {
    /// Rebuild over `dests`, reading every load.
    fn build<R: Rule>(&mut self, dests: &DestSet) {
        self.m = dests.len().next_power_of_two().max(1);
        let m = self.m;
        if R::HALF_IDLE {
            self.half_idle.clear();
            self.half_idle.extend(dests.iter().map(half_idle));
            self.half_idle_count = self.half_idle.iter().filter(|&&h| h).count();
        }
        self.shift = ratio_shift(dests.iter().map(weight32).max().unwrap_or(1));
        if m <= 1 << IDX_BITS && self.build_packed::<R>(dests) {
            self.mode = SCALAR;
            self.nodes.clear();
            return;
        }
        self.keys.clear();
        self.nodes.clear();
        self.nodes.resize(2 * m, Node::default());
        let mut max_w = 0;
        for i in 0..m {
            let leaf = Node::new(dests.get(i).map_or(R::UNUSABLE, R::key), i);
            max_w = max_w.max(leaf.w());
            self.nodes[m + i] = leaf;
        }
        self.mode = if R::narrow(max_w) { NARROW } else { WIDE };
        if self.mode == NARROW {
            self.build_inner::<R, NARROW>();
        } else {
            self.build_inner::<R, WIDE>();
        }
    }

    /// Fill [`Tree::keys`] from `dests`; false when some key has no
    /// scalar (then the product modes take over).
    fn build_packed<R: Rule>(&mut self, dests: &DestSet) -> bool {
        let m = self.m;
        self.keys.clear();
        self.keys.resize(2 * m, 0);
        for i in 0..m {
            let key = dests.get(i).map_or(R::UNUSABLE, R::key);
            let Some(s) = R::scalar(key, self.shift) else {
                return false;
            };
            self.keys[m + i] = pack(s, i);
        }
        for k in (1..m).rev() {
            self.keys[k] = self.keys[2 * k].min(self.keys[2 * k + 1]);
        }
        true
    }

    /// Every inner node from its children, bottom up: the right child
    /// wins only when strictly better (the left holds the earlier
    /// indexes).
    fn build_inner<R: Rule, const M: u8>(&mut self) {
        for k in (1..self.m).rev() {
            let (l, r) = (self.nodes[2 * k], self.nodes[2 * k + 1]);
            self.nodes[k] = Node::select(wins::<R, M>(&r, &l, false), r, l);
        }
    }

    /// Leaf `i` (below the list length) was read again from `d`: replay
    /// its path to the root. False when its new key does not fit the
    /// tree's mode (a load past what the scalar holds, or a weight edit
    /// that bypassed `update`): the caller rebuilds, choosing the mode
    /// anew.
    #[inline]
    fn set<R: Rule, const M: u8>(&mut self, i: usize, d: &Dest) -> bool {
        let key = R::key(d);
        if R::HALF_IDLE {
            let h = half_idle(d);
            if let Some(old) = self.half_idle.get_mut(i) {
                if *old != h {
                    *old = h;
                    if h {
                        self.half_idle_count += 1;
                    } else {
                        self.half_idle_count -= 1;
                    }
                }
            }
        }
        match M {
            SCALAR => match R::scalar(key, self.shift) {
                Some(s) => {
                    self.set_packed(i, pack(s, i));
                    true
                }
                None => false,
            },
            NARROW if !R::narrow(u64::from(key.1)) => false,
            _ => {
                self.set_node::<R, M>(i, Node::new(key, i));
                true
            }
        }
    }

    /// Put packed leaf `leaf` at leaf `i` and recompute its ancestors
    /// until one comes out unchanged: everything above it was computed
    /// from that same value. The leaf moving either way is the same walk:
    /// a better leaf stops where it loses, a worse one where it was not
    /// the winner. No branch on who wins, only on whether to go on.
    #[inline]
    fn set_packed(&mut self, i: usize, leaf: u64) {
        let keys = &mut self.keys[..];
        // The length is 2m, a power of two, and every index below is
        // under it: masking changes no index and lets every access go
        // without a bounds check (the compiler sees `x & (len - 1) < len`).
        let mask = keys.len().wrapping_sub(1);
        let mut k = self.m + i;
        let Some(slot) = keys.get_mut(k) else {
            return;
        };
        if *slot == leaf {
            return;
        }
        *slot = leaf;
        let mut cur = leaf;
        while k > 1 {
            cur = cur.min(keys[(k ^ 1) & mask]);
            k >>= 1;
            let node = &mut keys[k & mask];
            if *node == cur {
                break;
            }
            *node = cur;
        }
    }

    /// [`Tree::set`] in the product modes.
    #[inline]
    fn set_node<R: Rule, const M: u8>(&mut self, i: usize, leaf: Node) {
        let nodes = &mut self.nodes[..];
        // Masked as in `set_packed`.
        let mask = nodes.len().wrapping_sub(1);
        let mut k = self.m + i;
        let Some(slot) = nodes.get_mut(k) else {
            return;
        };
        let old = *slot;
        if old == leaf {
            return;
        }
        *slot = leaf;
        // Which way the leaf moved decides which nodes can change, so the
        // climb reads only what it must. (The order is total: the key,
        // then the index, which the left-wins-ties rule stands for.)
        if wins::<R, M>(&leaf, &old, false) {
            // Better: an inner node changes only where the leaf now wins,
            // and then it is the leaf. Where it loses to the sibling's
            // winner, that one beat its old value too: the parent was
            // and stays the sibling's winner, and nothing above changes.
            while k > 1 {
                // On the left the leaf wins ties, on the right it must be
                // strictly better.
                if !wins::<R, M>(&leaf, &nodes[(k ^ 1) & mask], k & 1 == 0) {
                    break;
                }
                k >>= 1;
                nodes[k & mask] = leaf;
            }
        } else {
            // Worse (or only its tag changed): the nodes it did not win
            // keep their winner; each node it won is the match of its
            // children again. Climb while the parent holds this leaf,
            // with the new node in hand (never read back from memory).
            let mut cur = leaf;
            while k > 1 {
                let parent = k >> 1;
                if nodes[parent & mask].idx() != i {
                    break;
                }
                let sib = nodes[(k ^ 1) & mask];
                // Which side `cur` is on and who wins are as good as
                // random, so the choice is made without a branch.
                cur = Node::select(wins::<R, M>(&cur, &sib, k & 1 == 0), cur, sib);
                nodes[parent & mask] = cur;
                k = parent;
            }
        }
    }

    /// The root's winner, if usable.
    #[inline]
    fn best(&self) -> Option<usize> {
        if self.mode == SCALAR {
            let root = *self.keys.get(1)?;
            (root >> IDX_BITS != SCALAR_UNUSABLE).then_some((root & ((1 << IDX_BITS) - 1)) as usize)
        } else {
            let root = self.nodes.get(1)?;
            (root.w() != 0).then_some(root.idx())
        }
    }
}

/// lblc's "half idle": fewer active connections than half the weight.
#[inline]
pub(crate) fn half_idle(d: &Dest) -> bool {
    2 * i64::from(d.load.active()) < i64::from(d.weight)
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
    /// Paths replayed per `sync` before a full rebuild is cheaper.
    budget: usize,
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
            budget: 0,
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
        // Replaying k paths costs about k * log2(n) matches, re-reading
        // everything about n: after a burst of changes (a mass expiry, or
        // a scheduler that syncs only when it needs the tree), stop
        // replaying and rebuild once the replays would cost more.
        let depth = dests.len().next_power_of_two().trailing_zeros() as usize + 1;
        self.budget = dests.len() / depth;
        self.resync(dests);
    }

    /// Take the board and read every destination afresh.
    fn resync(&mut self, dests: &DestSet) {
        if let Some(board) = &self.board {
            board.claim(self.id);
            // Marks taken here are covered by the full read that follows.
            board.take(self.slot_idx.len(), |_| {});
        }
        self.tree.build::<R>(dests);
    }

    /// Bring the tree up to date with the marked destinations. False when
    /// the tree is not in use (short or unwatched list, or `dests` is not
    /// the list of the last update): then only the scan is right.
    #[inline]
    pub(crate) fn sync(&mut self, dests: &DestSet) -> bool {
        let Some(board) = &self.board else {
            return false;
        };
        if dests.len() != self.n {
            return false;
        }
        if !board.claim(self.id) {
            self.resync(dests);
            return true;
        }
        if self.tree.mode == SCALAR {
            self.replay::<SCALAR>(dests);
        } else {
            self.replay_products(dests);
        }
        true
    }

    /// [`LeastTree::replay`] for the product modes, out of line: only
    /// weights beyond what ipvsadm accepts or loads past 2^32 use them,
    /// and keeping them apart keeps the usual path small enough to
    /// inline into `schedule`.
    #[cold]
    #[inline(never)]
    fn replay_products(&mut self, dests: &DestSet) {
        if self.tree.mode == NARROW {
            self.replay::<NARROW>(dests);
        } else {
            self.replay::<WIDE>(dests);
        }
    }

    /// Replay the path of every marked destination, or rebuild after a
    /// burst.
    #[inline]
    fn replay<const M: u8>(&mut self, dests: &DestSet) {
        let Some(board) = &self.board else {
            return;
        };
        let mut budget = self.budget;
        let mut burst = false;
        let (tree, slot_idx) = (&mut self.tree, &self.slot_idx);
        board.take(slot_idx.len(), |slot| {
            if burst {
                return;
            }
            let Some(&i) = slot_idx.get(slot as usize) else {
                return;
            };
            let Some(d) = dests.get(i as usize) else {
                return;
            };
            if budget == 0 {
                burst = true;
                return;
            }
            budget -= 1;
            burst = !tree.set::<R, M>(i as usize, d);
        });
        if burst {
            // Every mark was taken above: the full read covers them.
            self.tree.build::<R>(dests);
        }
    }

    /// The scan's choice over the current loads.
    #[inline]
    pub(crate) fn schedule(&mut self, dests: &DestSet) -> Option<usize> {
        let synced = self.sync(dests);
        self.least(synced, dests)
    }

    /// The rule's choice: the tree's when `synced` ([`LeastTree::sync`]
    /// returned true), else the scan's.
    #[inline]
    pub(crate) fn least(&self, synced: bool, dests: &DestSet) -> Option<usize> {
        if synced {
            self.tree.best()
        } else {
            R::scan(dests)
        }
    }

    /// Whether some destination has fewer active connections than half
    /// its weight (lblc's test), from the tree's count when `synced` and
    /// the rule counts it, else by a scan.
    #[inline]
    pub(crate) fn any_half_idle(&self, synced: bool, dests: &DestSet) -> bool {
        if synced && R::HALF_IDLE {
            self.tree.half_idle_count > 0
        } else {
            dests.iter().any(half_idle)
        }
    }
}

/// Overflow connection: the heaviest destination that still has room
/// (active <= weight), key `i32::MAX - weight` so that less is better.
#[derive(Debug)]
pub(crate) enum Ovf {}

impl Rule for Ovf {
    // Keys are below 2^31, so 2^63 never wins.
    const UNUSABLE: (u64, u32) = (1 << 63, 0);
    #[inline]
    fn key(d: &Dest) -> (u64, u32) {
        if ovf_has_room(d) {
            (i32::MAX as u64 - weight_u(d), 1)
        } else {
            Self::UNUSABLE
        }
    }
    #[inline]
    fn beats<const NARROW: bool>(a: &Node, b: &Node, or_eq: bool) -> bool {
        // Keys stay below 2^63, so the sum cannot overflow.
        a.oh < b.oh + u64::from(or_eq)
    }
    #[inline]
    fn scalar(key: (u64, u32), _shift: u32) -> Option<u64> {
        plain_scalar(key)
    }
    fn scan(dests: &DestSet) -> Option<usize> {
        let mut best: Option<(usize, i32)> = None;
        for (i, d) in dests.iter().enumerate() {
            if ovf_has_room(d) && best.is_none_or(|(_, w)| d.weight > w) {
                best = Some((i, d.weight));
            }
        }
        best.map(|(i, _)| i)
    }
}

/// Usable and not full: at most as many active connections as its weight.
#[inline]
fn ovf_has_room(d: &Dest) -> bool {
    d.available() && i64::from(d.load.active()) <= i64::from(d.weight)
}

/// Least connection: least `active * 256 + inactive`.
#[derive(Debug)]
pub(crate) enum Lc {}

impl Rule for Lc {
    // The overhead is below 2^41, so 2^63 never wins.
    const UNUSABLE: (u64, u32) = (1 << 63, 0);
    #[inline]
    fn key(d: &Dest) -> (u64, u32) {
        if d.available() {
            (d.load.overhead(), 1)
        } else {
            Self::UNUSABLE
        }
    }
    #[inline]
    fn beats<const NARROW: bool>(a: &Node, b: &Node, or_eq: bool) -> bool {
        // Keys stay below 2^63, so the sum cannot overflow.
        a.oh < b.oh + u64::from(or_eq)
    }
    #[inline]
    fn scalar(key: (u64, u32), _shift: u32) -> Option<u64> {
        plain_scalar(key)
    }
    fn scan(dests: &DestSet) -> Option<usize> {
        crate::lc::least_overhead(dests)
    }
}

/// Weighted least connection: least overhead/weight.
#[derive(Debug)]
pub(crate) enum Wlc {}

impl Rule for Wlc {
    // active * 256 + inactive, both u32: below 2^41.
    const OH_BITS: u32 = 41;
    const UNUSABLE: (u64, u32) = RATIO_UNUSABLE;
    #[inline]
    fn key(d: &Dest) -> (u64, u32) {
        if d.available() {
            (d.load.overhead(), weight32(d))
        } else {
            Self::UNUSABLE
        }
    }
    #[inline]
    fn beats<const NARROW: bool>(a: &Node, b: &Node, or_eq: bool) -> bool {
        ratio_beats::<NARROW>(a, b, or_eq)
    }
    #[inline]
    fn scalar(key: (u64, u32), shift: u32) -> Option<u64> {
        ratio_scalar(key, shift)
    }
    fn scan(dests: &DestSet) -> Option<usize> {
        crate::common::weighted_least(dests, crate::common::conn_overhead)
    }
}

/// wlc that also counts half-idle destinations (for lblc and lblcr).
#[derive(Debug)]
pub(crate) enum WlcHalfIdle {}

impl Rule for WlcHalfIdle {
    const HALF_IDLE: bool = true;
    const OH_BITS: u32 = Wlc::OH_BITS;
    const UNUSABLE: (u64, u32) = RATIO_UNUSABLE;
    #[inline]
    fn key(d: &Dest) -> (u64, u32) {
        Wlc::key(d)
    }
    #[inline]
    fn beats<const NARROW: bool>(a: &Node, b: &Node, or_eq: bool) -> bool {
        ratio_beats::<NARROW>(a, b, or_eq)
    }
    #[inline]
    fn scalar(key: (u64, u32), shift: u32) -> Option<u64> {
        ratio_scalar(key, shift)
    }
    fn scan(dests: &DestSet) -> Option<usize> {
        Wlc::scan(dests)
    }
}

/// Shortest expected delay: least (active + 1)/weight.
#[derive(Debug)]
pub(crate) enum Sed {}

impl Rule for Sed {
    // active + 1, active a u32: at most 2^32. Weight factors are below
    // 2^31, so sed is always narrow.
    const OH_BITS: u32 = 33;
    const UNUSABLE: (u64, u32) = RATIO_UNUSABLE;
    #[inline]
    fn key(d: &Dest) -> (u64, u32) {
        if d.available() {
            (u64::from(d.load.active()) + 1, weight32(d))
        } else {
            Self::UNUSABLE
        }
    }
    #[inline]
    fn beats<const NARROW: bool>(a: &Node, b: &Node, or_eq: bool) -> bool {
        ratio_beats::<NARROW>(a, b, or_eq)
    }
    #[inline]
    fn scalar(key: (u64, u32), shift: u32) -> Option<u64> {
        ratio_scalar(key, shift)
    }
    fn scan(dests: &DestSet) -> Option<usize> {
        crate::common::weighted_least(dests, crate::common::sed_overhead)
    }
}

/// Never queue: the first idle destination, else shortest expected delay.
///
/// An idle destination's key is `0 / w`: it beats every busy one (whose
/// overhead `active + 1` is at least 2), and idle ones tie with each other,
/// so the first in the list wins, as in IPVS's scan.
#[derive(Debug)]
pub(crate) enum Nq {}

impl Rule for Nq {
    // 0 or active + 1, as sed.
    const OH_BITS: u32 = Sed::OH_BITS;
    const UNUSABLE: (u64, u32) = RATIO_UNUSABLE;
    #[inline]
    fn key(d: &Dest) -> (u64, u32) {
        if d.available() {
            let active = d.load.active();
            let oh = if active == 0 {
                0
            } else {
                u64::from(active) + 1
            };
            (oh, weight32(d))
        } else {
            Self::UNUSABLE
        }
    }
    #[inline]
    fn beats<const NARROW: bool>(a: &Node, b: &Node, or_eq: bool) -> bool {
        ratio_beats::<NARROW>(a, b, or_eq)
    }
    #[inline]
    fn scalar(key: (u64, u32), shift: u32) -> Option<u64> {
        ratio_scalar(key, shift)
    }
    fn scan(dests: &DestSet) -> Option<usize> {
        crate::nq::never_queue(dests)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::more_loaded;
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

    /// The straightforward IPVS scan of each rule, written without the
    /// tree's key encoding: the reference the tree is checked against.
    trait Reference {
        fn reference(dests: &DestSet) -> Option<usize>;
    }

    /// The first usable destination no later one beats strictly by the
    /// cross-multiplied ratio of `oh` to the weight.
    fn ratio_scan(dests: &DestSet, oh: impl Fn(&Dest) -> u64) -> Option<usize> {
        let mut best: Option<(usize, u64, u64)> = None;
        for (i, d) in dests.iter().enumerate() {
            if !d.available() {
                continue;
            }
            let (o, w) = (oh(d), weight_u(d));
            match best {
                Some((_, bo, bw)) if !more_loaded(bo, bw, o, w) => {}
                _ => best = Some((i, o, w)),
            }
        }
        best.map(|(i, _, _)| i)
    }

    impl Reference for Lc {
        fn reference(dests: &DestSet) -> Option<usize> {
            let mut best: Option<(usize, u64)> = None;
            for (i, d) in dests.iter().enumerate() {
                let oh = d.load.overhead();
                if d.available() && best.is_none_or(|(_, b)| oh < b) {
                    best = Some((i, oh));
                }
            }
            best.map(|(i, _)| i)
        }
    }

    impl Reference for Wlc {
        fn reference(dests: &DestSet) -> Option<usize> {
            ratio_scan(dests, |d| d.load.overhead())
        }
    }

    impl Reference for WlcHalfIdle {
        fn reference(dests: &DestSet) -> Option<usize> {
            ratio_scan(dests, |d| d.load.overhead())
        }
    }

    impl Reference for Ovf {
        fn reference(dests: &DestSet) -> Option<usize> {
            Ovf::scan(dests)
        }
    }

    impl Reference for Sed {
        fn reference(dests: &DestSet) -> Option<usize> {
            ratio_scan(dests, |d| u64::from(d.load.active()) + 1)
        }
    }

    impl Reference for Nq {
        fn reference(dests: &DestSet) -> Option<usize> {
            dests
                .iter()
                .position(|d| d.available() && d.load.active() == 0)
                .or_else(|| ratio_scan(dests, |d| u64::from(d.load.active()) + 1))
        }
    }

    fn reference<R: Reference>(dests: &DestSet) -> Option<usize> {
        R::reference(dests)
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
    fn against_scan<R: Rule + Reference>(seed: u64, sizes: &[usize], steps: usize) {
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
                if R::HALF_IDLE {
                    assert_eq!(
                        t.any_half_idle(true, &dests),
                        dests.iter().any(half_idle),
                        "half idle n={n} step={step}"
                    );
                }
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
    fn wlc_half_idle_tree_is_the_scan_and_counts() {
        against_scan::<WlcHalfIdle>(0x1b1c, &SIZES, 400);
    }

    #[test]
    fn ovf_tree_is_the_scan() {
        against_scan::<Ovf>(0x0f, &SIZES, 400);
    }

    #[test]
    fn nq_tree_is_the_scan() {
        against_scan::<Nq>(0x4e, &SIZES, 400);
    }

    /// The benchmark's churn, checked step by step: every call binds one
    /// connection to the chosen destination and closes the one bound
    /// `window` calls earlier (the chosen leaf gets worse and climbs the
    /// whole path; the closed one gets better and stops early). Weights
    /// 1..=3 and equal starting loads make ties the common case.
    fn churn_against_scan<R: Rule + Reference>(seed: u64) {
        let mut rnd = rnd_from(seed);
        for (n, window) in [(16, 5), (100, 64), (1000, 300), (1000, 2000)] {
            let dests: Vec<Dest> = (0..n)
                .map(|i| Dest::new(ip(0), i as u16, 1 + rnd(3) as i32))
                .collect();
            let mut t = LeastTree::<R>::with_min(1);
            t.update(&dests);
            assert!(t.uses_tree());
            let mut open = std::collections::VecDeque::new();
            for step in 0..3 * window {
                let want = reference::<R>(&dests);
                let got = t.schedule(&dests);
                assert_eq!(got, want, "n={n} step={step}");
                if let Some(i) = got {
                    let d = &dests[i];
                    d.load.active.fetch_add(1, Ordering::Relaxed);
                    d.note_bound();
                    open.push_back(i);
                }
                if open.len() > window {
                    let d = &dests[open.pop_front().unwrap()];
                    d.load.active.fetch_sub(1, Ordering::Relaxed);
                    d.note_unbound();
                }
                if step % 7 == 0 {
                    // An active connection turns inactive now and then.
                    let d = &dests[rnd(n as u64) as usize];
                    if d.load.active() > 0 {
                        d.load.active.fetch_sub(1, Ordering::Relaxed);
                        d.load.inactive.fetch_add(1, Ordering::Relaxed);
                        d.note_bound();
                    }
                }
            }
        }
    }

    #[test]
    fn churn_sequences_are_the_scan() {
        churn_against_scan::<Lc>(1);
        churn_against_scan::<Wlc>(2);
        churn_against_scan::<WlcHalfIdle>(3);
        churn_against_scan::<Sed>(4);
        churn_against_scan::<Nq>(5);
        churn_against_scan::<Ovf>(6);
    }

    /// The mode a rebuild over `dests` must choose for wlc.
    fn wlc_mode(dests: &DestSet) -> u8 {
        let keys: Vec<(u64, u32)> = dests.iter().map(Wlc::key).collect();
        let shift = ratio_shift(dests.iter().map(weight32).max().unwrap_or(1));
        if keys.iter().all(|&k| ratio_scalar(k, shift).is_some()) {
            SCALAR
        } else if keys.iter().all(|&(_, w)| w < 1 << 23) {
            NARROW
        } else {
            WIDE
        }
    }

    #[test]
    fn every_mode_compares_exactly() {
        // Small weights and loads: one scalar per destination. Loads
        // whose scalar does not fit under the list's shift: 64-bit
        // products. Weights of 2^23 and up: 128-bit products. A key past
        // its mode (a load grown, a weight raised without an update)
        // makes the tree rebuild in a mode that fits rather than compare
        // wrongly.
        let mut rnd = rnd_from(0x31de);
        let mut dests: Vec<Dest> = (0..64)
            .map(|i| Dest::new(ip(0), i, 1 + rnd(4) as i32))
            .collect();
        let mut t = LeastTree::<Wlc>::with_min(1);
        t.update(&dests);
        assert_eq!(t.tree.mode, SCALAR);
        // The largest load still fits a scalar while weights are small.
        load(&dests[9], u32::MAX, u32::MAX, false);
        assert_eq!(t.schedule(&dests), reference::<Wlc>(&dests));
        assert_eq!(t.tree.mode, SCALAR);
        // A weight raised without an update, and a load too large for
        // the shift the new weight needs.
        dests[7].weight = 1 << 20;
        load(&dests[7], u32::MAX, 0, false);
        assert_eq!(t.schedule(&dests), reference::<Wlc>(&dests));
        assert_eq!(t.tree.mode, NARROW);
        dests[5].weight = 1 << 23;
        load(&dests[5], 3, 0, false);
        assert_eq!(t.schedule(&dests), reference::<Wlc>(&dests));
        assert_eq!(t.tree.mode, WIDE);
        let mut seen = [0; 3];
        for step in 0..6000 {
            if step % 500 == 0 {
                // A new regime: small weights and loads (scalar), mid
                // weights with loads too large for a scalar (narrow), or
                // wide weights.
                let (top, base) = [(4, 0), (1 << 22, 1 << 16), (i32::MAX, 0)][step / 500 % 3];
                for d in dests.iter_mut() {
                    d.weight = top - rnd(4) as i32;
                    load(d, base + rnd(4) as u32, rnd(4) as u32, false);
                }
                t.update(&dests);
                assert_eq!(t.tree.mode, wlc_mode(&dests), "step={step}");
            }
            let i = rnd(64) as usize;
            if rnd(100) == 0 {
                dests[i].weight = match rnd(4) {
                    0 => i32::MAX - rnd(3) as i32,
                    1 => (1 << 23) - rnd(2) as i32,
                    2 => (1 << 16) - rnd(2) as i32,
                    _ => 1 + rnd(4) as i32,
                };
                t.update(&dests);
                assert_eq!(t.tree.mode, wlc_mode(&dests), "step={step}");
            }
            let (a, b) = match rnd(400) {
                0 => (u32::MAX - rnd(3) as u32, u32::MAX - rnd(3) as u32),
                1 => ((1 << 24) - rnd(2) as u32, rnd(300) as u32),
                _ => (rnd(4) as u32, rnd(4) as u32),
            };
            load(&dests[i], a, b, false);
            assert_eq!(t.schedule(&dests), reference::<Wlc>(&dests), "step={step}");
            seen[usize::from(t.tree.mode)] += 1;
        }
        assert!(seen.iter().all(|&n| n > 100), "{seen:?}");
    }

    #[test]
    fn scalars_order_and_tie_like_the_products() {
        // Every pair of small keys, including equal ratios (2/4 and 3/6)
        // and unusable ones, compares the same packed (scalar, then index)
        // as by product with the earlier one winning ties, under every
        // shift whose weights they fit.
        let mut keys: Vec<(u64, u32)> = vec![RATIO_UNUSABLE];
        for oh in [
            0u64,
            1,
            2,
            3,
            6,
            255,
            256,
            257,
            65535,
            (1 << 20) - 1,
            (1 << 32) - 1,
        ] {
            for w in [1u32, 2, 3, 4, 6, 7, 8, 255, 256, 65534, 65535] {
                keys.push((oh, w));
            }
        }
        let mut compared = 0;
        for max_w in [1u32, 3, 8, 255, 256, 65535] {
            let shift = ratio_shift(max_w);
            assert!(u64::from(max_w) >> (shift / 2) == 0, "{max_w} fits {shift}");
            for &a in &keys {
                for &b in &keys {
                    let (Some(sa), Some(sb)) = (ratio_scalar(a, shift), ratio_scalar(b, shift))
                    else {
                        continue;
                    };
                    let (na, nb) = (Node::new(a, 0), Node::new(b, 1));
                    // a earlier: it wins ties.
                    assert_eq!(
                        pack(sa, 0) < pack(sb, 1),
                        ratio_beats::<false>(&na, &nb, true),
                        "{a:?} {b:?} shift {shift}"
                    );
                    // a later: it must be strictly better.
                    assert_eq!(
                        pack(sa, 1) < pack(sb, 0),
                        ratio_beats::<false>(&na, &nb, false),
                        "{a:?} {b:?} shift {shift}"
                    );
                    compared += 1;
                }
            }
        }
        assert!(compared > 10_000, "{compared}");
        assert_eq!(ratio_shift(0), 2);
        assert_eq!(ratio_shift(255), 16);
        assert_eq!(ratio_shift(256), 18);
        assert_eq!(
            ratio_scalar(((1 << 20) - 1, 1), 32),
            Some(((1 << 20) - 1) << 32)
        );
        assert_eq!(ratio_scalar((1 << 20, 1), 32), None);
        // The largest overhead that fits stays under the unusable scalar.
        assert_eq!(ratio_scalar(((1 << 50) - 1, 1), 2), Some((1 << 52) - 4));
        assert_eq!(ratio_scalar((1 << 50, 1), 2), None);
        // Past 52 bits of shift only an idle destination fits.
        assert_eq!(ratio_scalar((0, 1 << 27), 56), Some(0));
        assert_eq!(ratio_scalar((1, 1 << 27), 56), None);
        assert_eq!(ratio_scalar((1 << 32, 1), 32), None);
        assert_eq!(ratio_scalar((1, 1 << 16), 32), None);
        assert_eq!(ratio_scalar((5, 0), 32), Some(SCALAR_UNUSABLE));
        assert_eq!(plain_scalar((SCALAR_UNUSABLE, 1)), None);
        assert_eq!(plain_scalar(((1 << 41) - 1, 1)), Some((1 << 41) - 1));
    }

    #[test]
    fn sed_and_nq_are_narrow_for_every_weight() {
        assert!(Sed::narrow(i32::MAX as u64) && Nq::narrow(i32::MAX as u64));
        assert!(Wlc::narrow((1 << 23) - 1) && !Wlc::narrow(1 << 23));
        assert!(!Lc::narrow(1) && !Ovf::narrow(1));
        // The largest keys multiply without overflow (this build checks).
        let a = Node::new((u64::from(u32::MAX) + 1, i32::MAX as u32), 0);
        let b = Node::new((1, i32::MAX as u32), 1);
        assert!(!ratio_beats::<true>(&a, &b, true));
        assert!(ratio_beats::<true>(&b, &a, false));
        let w = Node::new(((1 << 41) - 1, (1 << 23) - 1), 0);
        assert!(ratio_beats::<true>(&w, &w, true) && !ratio_beats::<true>(&w, &w, false));
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
