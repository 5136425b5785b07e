//! Weighted random of two choices (`twos`).
//!
//! Pick two servers at random, each with probability proportional to its
//! weight, and give the connection to the less loaded of the two (by
//! overhead/weight). This gets most of the benefit of wlc without looking
//! at every server's counters in lockstep.
//!
//! Randomness comes from a xorshift64* generator with a fixed seed, so runs
//! are reproducible and `schedule` never allocates or blocks.

use crate::common::{conn_overhead, more_loaded, weight_u};
use crate::{DestSet, Flow, Scheduler};

/// Default seed of [`TwoChoices::new`].
const DEFAULT_SEED: u64 = 0x9E37_79B9_7F4A_7C15;

/// Weighted two-random-choices scheduler.
#[derive(Debug)]
pub struct TwoChoices {
    /// xorshift64* state, never 0.
    state: u64,
    /// Running sum of the positive weights in list order: entry `k` is the
    /// sum up to and including the `k`-th positive-weight destination.
    cum: Vec<u64>,
    /// The destination index of each entry of `cum`.
    idx: Vec<u32>,
}

impl Default for TwoChoices {
    fn default() -> Self {
        Self::new()
    }
}

impl TwoChoices {
    /// A scheduler with the fixed default seed.
    pub fn new() -> Self {
        Self::with_seed(DEFAULT_SEED)
    }

    /// A scheduler whose random sequence starts from `seed` (0 is replaced
    /// by the default seed, as xorshift cannot leave 0).
    pub fn with_seed(seed: u64) -> Self {
        TwoChoices {
            state: if seed == 0 { DEFAULT_SEED } else { seed },
            cum: Vec::new(),
            idx: Vec::new(),
        }
    }

    /// Next xorshift64* value.
    fn next_u64(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A uniform value in `0..n` (n > 0), by the multiply-high method.
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// The usable destination owning point `r` of the cumulative weights.
/// The positive-weight destination that `r` (below the sum of all positive
/// weights) falls on, by binary search over the running sums: the same
/// destination [`pick_at`] finds when no destination is overloaded.
fn pick_fast(cum: &[u64], idx: &[u32], r: u64) -> Option<usize> {
    let k = cum.partition_point(|&c| c <= r);
    idx.get(k).map(|&i| i as usize)
}

fn pick_at(dests: &DestSet, mut r: u64) -> Option<usize> {
    for (i, d) in dests.iter().enumerate() {
        if !d.available() {
            continue;
        }
        let w = weight_u(d);
        if r < w {
            return Some(i);
        }
        r -= w;
    }
    None
}

impl Scheduler for TwoChoices {
    fn name(&self) -> &'static str {
        "twos"
    }

    fn update(&mut self, dests: &DestSet) {
        self.cum.clear();
        self.idx.clear();
        let mut sum = 0u64;
        for (i, d) in dests.iter().enumerate() {
            let w = weight_u(d);
            if w > 0 {
                sum += w;
                self.cum.push(sum);
                self.idx.push(i as u32);
            }
        }
    }

    fn schedule(&mut self, dests: &DestSet, _flow: &Flow, _now_ns: u64) -> Option<usize> {
        // Fast path, O(log n): draw over every positive-weight destination.
        // When no destination is overloaded this is exactly the slow path
        // below (same total, same draws, same picks). When a pick lands on
        // an overloaded one, the draws are thrown away and the slow path
        // draws afresh over the usable ones only; since the two picks are
        // accepted only when both are usable, and then each is distributed
        // in proportion to weight among the usable destinations, the
        // outcome has the same distribution as the slow path alone.
        let full = self.cum.last().copied().unwrap_or(0);
        if full > 0 && self.cum.len() <= dests.len() {
            let r1 = self.below(full);
            let r2 = self.below(full);
            let usable =
                |i: Option<usize>| i.filter(|&i| dests.get(i).is_some_and(|d| d.available()));
            let first = usable(pick_fast(&self.cum, &self.idx, r1));
            let second = usable(pick_fast(&self.cum, &self.idx, r2));
            if let (Some(first), Some(second)) = (first, second) {
                return Some(Self::less_loaded(dests, first, second));
            }
        }
        let total: u64 = dests.iter().filter(|d| d.available()).map(weight_u).sum();
        if total == 0 {
            return None;
        }
        let r1 = self.below(total);
        let r2 = self.below(total);
        let first = pick_at(dests, r1)?;
        let Some(second) = pick_at(dests, r2) else {
            return Some(first);
        };
        Some(Self::less_loaded(dests, first, second))
    }
}

impl TwoChoices {
    /// The second pick if it is strictly less loaded per unit of weight,
    /// else the first.
    fn less_loaded(dests: &DestSet, first: usize, second: usize) -> usize {
        let (a, b) = (&dests[first], &dests[second]);
        if more_loaded(conn_overhead(a), weight_u(a), conn_overhead(b), weight_u(b)) {
            second
        } else {
            first
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::testutil::*;

    fn svc(seed: u64) -> Svc {
        Svc::new(Box::new(TwoChoices::with_seed(seed)))
    }

    #[test]
    fn empty_and_unusable_give_none() {
        let mut s = svc(1);
        assert_eq!(s.picks(1), vec![None]);
        s.add(dest(1, 0)).add(dest(2, 3));
        set_overloaded(s.get(2), true);
        assert_eq!(s.picks(3), vec![None, None, None]);
    }

    #[test]
    fn deterministic_per_seed() {
        let mut a = svc(42);
        let mut b = svc(42);
        for s in [&mut a, &mut b] {
            s.add(dest(1, 1)).add(dest(2, 1)).add(dest(3, 1));
        }
        assert_eq!(a.picks(50), b.picks(50));
    }

    #[test]
    fn idle_servers_chosen_by_weight() {
        // With no load, ties go to the first pick, so the shares follow the
        // weights.
        let mut s = svc(7);
        s.add(dest(1, 1)).add(dest(2, 3)).add(dest(3, 0));
        let picks = s.picks(40_000);
        let c1 = picks.iter().filter(|p| **p == Some(1)).count();
        let c2 = picks.iter().filter(|p| **p == Some(2)).count();
        assert_eq!(c1 + c2, 40_000);
        assert!((9_000..11_000).contains(&c1), "c1 = {c1}");
    }

    #[test]
    fn less_loaded_of_two_wins() {
        let mut s = svc(3);
        s.add(dest(1, 1)).add(dest(2, 1));
        set_conns(s.get(2), 10, 0);
        // 1 wins unless both picks land on 2 (about 1 in 4).
        let picks = s.picks(4_000);
        let c2 = picks.iter().filter(|p| **p == Some(2)).count();
        assert!((800..1_200).contains(&c2), "c2 = {c2}");
    }

    #[test]
    fn balances_when_connections_bind() {
        let mut s = svc(11);
        s.add(dest(1, 1)).add(dest(2, 1)).add(dest(3, 2));
        let f = any_flow();
        for _ in 0..4000 {
            let i = s.sched.schedule(&s.dests, &f, 0).unwrap();
            s.dests[i]
                .load
                .active
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let a = |n| i64::from(s.get(n).load.active());
        assert!((a(1) - 1000).abs() < 50, "{}", a(1));
        assert!((a(2) - 1000).abs() < 50, "{}", a(2));
        assert!((a(3) - 2000).abs() < 100, "{}", a(3));
    }

    #[test]
    fn fast_path_equals_the_full_scan_without_overload() {
        // A scheduler never updated has no running sums and always takes
        // the full scan; with nothing overloaded both must agree pick for
        // pick (same seed, same draws).
        let dests: Vec<crate::Dest> = (1..=30).map(|i| dest(i, i32::from(i % 7))).collect();
        for (i, d) in dests.iter().enumerate() {
            set_conns(d, (i % 5) as u32, (i % 11) as u32);
        }
        let mut fast = TwoChoices::with_seed(99);
        fast.update(&dests);
        let mut scan = TwoChoices::with_seed(99);
        for _ in 0..5000 {
            let f = any_flow();
            assert_eq!(fast.schedule(&dests, &f, 0), scan.schedule(&dests, &f, 0));
        }
    }

    #[test]
    fn overloaded_servers_get_nothing_and_shares_hold() {
        // With an overloaded server the fast path's rejected draws fall
        // back to the scan: still proportional to weight among the rest.
        let mut s = svc(5);
        s.add(dest(1, 1)).add(dest(2, 3)).add(dest(3, 4));
        set_overloaded(s.get(3), true);
        let picks = s.picks(40_000);
        let c1 = picks.iter().filter(|p| **p == Some(1)).count();
        let c3 = picks.iter().filter(|p| **p == Some(3)).count();
        assert_eq!(c3, 0);
        assert!((9_000..11_000).contains(&c1), "c1 = {c1}");
    }

    #[test]
    fn zero_seed_is_replaced() {
        let mut t = TwoChoices::with_seed(0);
        assert_ne!(t.next_u64(), 0);
    }
}
