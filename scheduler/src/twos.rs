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

    fn update(&mut self, _dests: &DestSet) {}

    fn schedule(&mut self, dests: &DestSet, _flow: &Flow, _now_ns: u64) -> Option<usize> {
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
        let (a, b) = (&dests[first], &dests[second]);
        if more_loaded(conn_overhead(a), weight_u(a), conn_overhead(b), weight_u(b)) {
            Some(second)
        } else {
            Some(first)
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
    fn zero_seed_is_replaced() {
        let mut t = TwoChoices::with_seed(0);
        assert_ne!(t.next_u64(), 0);
    }
}
