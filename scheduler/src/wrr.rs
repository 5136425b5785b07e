//! Weighted round robin (`wrr`).
//!
//! IPVS interleaves the destinations by lowering a "current weight" from
//! the largest weight down to 1 in steps of the weights' gcd, handing out
//! one connection to every destination whose weight reaches the current
//! weight on each pass. Over one full cycle each destination receives
//! exactly `weight / gcd` connections, spread out rather than in bursts.

use crate::common::{gcd, weight_u};
use crate::{DestSet, Flow, Scheduler};

/// Weighted round-robin scheduler with IPVS's `cw`/`mw`/`di` state.
#[derive(Debug)]
pub struct WeightedRoundRobin {
    /// Index of the last chosen destination; `None` is the list head.
    pos: Option<usize>,
    /// Current weight.
    cw: i64,
    /// Maximum weight minus (gcd - 1).
    mw: i64,
    /// gcd of the positive weights (1 if there are none).
    di: i64,
}

impl Default for WeightedRoundRobin {
    fn default() -> Self {
        WeightedRoundRobin {
            pos: None,
            cw: 0,
            mw: 0,
            di: 1,
        }
    }
}

impl WeightedRoundRobin {
    /// A scheduler for an empty service.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Scheduler for WeightedRoundRobin {
    fn name(&self) -> &'static str {
        "wrr"
    }

    /// Back to the front of the list; recompute gcd and mw; keep `cw` when
    /// it still makes sense, aligned to the new gcd (`cw = mw` when it is
    /// above `mw` or 0, else `(cw / gcd) * gcd + 1` when gcd > 1).
    fn update(&mut self, dests: &DestSet) {
        let g = dests.iter().map(weight_u).filter(|&w| w > 0).fold(0, gcd);
        let di = i64::try_from(g.max(1)).unwrap_or(1);
        let max = dests.iter().map(weight_u).max().unwrap_or(0);
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        self.pos = None;
        self.di = di;
        self.mw = max - (di - 1);
        if self.cw > self.mw || self.cw == 0 {
            self.cw = self.mw;
        } else if di > 1 {
            self.cw = (self.cw / di) * di + 1;
        }
    }

    fn schedule(&mut self, dests: &DestSet, _flow: &Flow, _now_ns: u64) -> Option<usize> {
        let n = dests.len();
        if n == 0 || self.mw <= 0 {
            return None;
        }
        let di = self.di.max(1);
        let (mut pos, mut cw) = (self.pos, self.cw);
        // The heaviest usable weight, computed at the first end of the list
        // this call reaches (not before: most calls find their destination
        // within the current pass, and this is the only O(n) step, so the
        // walk costs O(1) amortised). With none usable there is nothing to
        // find and the state is left alone. Knowing it lets us skip whole
        // passes in which no destination can reach `cw`; IPVS walks them one
        // by one with the same outcome.
        let mut max_avail: Option<i64> = None;
        // A partial pass, one step at the list end, then at most one full
        // pass (cw <= max_avail then, so the heaviest usable one matches).
        for _ in 0..2 * n + 2 {
            let next = pos.map_or(0, |p| p + 1);
            if next >= n {
                let max = match max_avail {
                    Some(m) => m,
                    None => {
                        let m = dests
                            .iter()
                            .filter(|d| d.available())
                            .map(weight_u)
                            .max()
                            .and_then(|w| i64::try_from(w).ok())?;
                        max_avail = Some(m);
                        m
                    }
                };
                cw -= di;
                if cw <= 0 {
                    cw = self.mw;
                }
                if cw > max {
                    let steps = (cw - max + di - 1) / di;
                    cw -= steps * di;
                }
                pos = None;
                continue;
            }
            pos = Some(next);
            let d = &dests[next];
            if !d.load.is_overloaded() && i64::from(d.weight) >= cw {
                self.pos = pos;
                self.cw = cw;
                return Some(next);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::testutil::*;
    use std::net::IpAddr;

    fn svc() -> Svc {
        Svc::new(Box::new(WeightedRoundRobin::new()))
    }

    fn count(picks: &[Option<u8>], n: u8) -> usize {
        picks.iter().filter(|p| **p == Some(n)).count()
    }

    #[test]
    fn empty_and_all_quiesced_give_none() {
        let mut s = svc();
        assert_eq!(s.picks(1), vec![None]);
        s.add(dest(1, 0)).add(dest(2, 0));
        assert_eq!(s.picks(2), vec![None, None]);
    }

    #[test]
    fn weights_3_2_1_over_6() {
        let mut s = svc();
        s.add(dest(1, 3)).add(dest(2, 2)).add(dest(3, 1));
        let picks = s.picks(6);
        assert_eq!(count(&picks, 1), 3);
        assert_eq!(count(&picks, 2), 2);
        assert_eq!(count(&picks, 3), 1);
        // After the adds cw is 1, so the first pass takes everyone.
        assert_eq!(picks, some(&[3, 2, 1, 1, 2, 1]));
        // And every further cycle of 6 is exact too.
        let picks = s.picks(600);
        assert_eq!(
            (count(&picks, 1), count(&picks, 2), count(&picks, 3)),
            (300, 200, 100)
        );
    }

    #[test]
    fn interleaves_4_3_2() {
        let mut s = svc();
        s.add(dest(1, 4)).add(dest(2, 3)).add(dest(3, 2));
        assert_eq!(
            s.picks(18),
            some(&[3, 2, 1, 1, 2, 1, 3, 2, 1, 3, 2, 1, 1, 2, 1, 3, 2, 1])
        );
    }

    #[test]
    fn gcd_steps() {
        let mut s = svc();
        s.add(dest(1, 4)).add(dest(2, 2));
        // di = 2, mw = 3, cw aligned to 1
        assert_eq!(s.picks(6), some(&[2, 1, 1, 2, 1, 1]));
    }

    #[test]
    fn fresh_scheduler_on_existing_set_starts_at_mw() {
        let mut s = svc();
        s.add(dest(1, 3)).add(dest(2, 2)).add(dest(3, 1));
        let mut w = WeightedRoundRobin::new();
        w.update(&s.dests);
        assert_eq!(w.cw, 3);
        s.sched = Box::new(w);
        assert_eq!(s.picks(6), some(&[1, 2, 1, 3, 2, 1]));
    }

    #[test]
    fn update_resets_position_and_keeps_cw() {
        let mut s = svc();
        s.add(dest(1, 3)).add(dest(2, 2)).add(dest(3, 1));
        assert_eq!(s.picks(4), some(&[3, 2, 1, 1]));
        // cw is 3 and the position is after 1; an edit returns to the front
        // with cw still 3 (not above the new mw 4).
        s.edit(3, 4);
        assert_eq!(s.picks(3), some(&[3, 1, 3]));
    }

    #[test]
    fn update_caps_cw_at_mw() {
        let mut s = svc();
        s.add(dest(1, 5)).add(dest(2, 1));
        // cw = 1 after the adds; run to cw = 5
        assert_eq!(s.picks(3), some(&[2, 1, 1]));
        s.edit(1, 2);
        // mw = 2, cw (5) > mw -> cw = 2: front, weight >= 2 only 1
        assert_eq!(s.picks(3), some(&[1, 2, 1]));
    }

    #[test]
    fn update_aligns_cw_to_gcd() {
        let mut s = svc();
        s.add(dest(1, 6)).add(dest(2, 1));
        assert_eq!(s.picks(3), some(&[2, 1, 1]));
        // cw is 6 after that; now gcd becomes 2, mw = 6 - 1 = 5, so cw
        // (6) > mw -> 5.
        s.edit(2, 2);
        // cw 5: only 1 (w6); end -> 3: only 1; end -> 1: 2, 1.
        assert_eq!(s.picks(4), some(&[1, 1, 2, 1]));
    }

    #[test]
    fn skips_overloaded_and_quiesced() {
        let mut s = svc();
        s.add(dest(1, 3)).add(dest(2, 2)).add(dest(3, 1));
        set_overloaded(s.get(1), true);
        let picks = s.picks(30);
        assert_eq!(count(&picks, 1), 0);
        assert_eq!(count(&picks, 2), 20);
        assert_eq!(count(&picks, 3), 10);
        set_overloaded(s.get(1), false);
        s.edit(2, 0);
        let picks = s.picks(40);
        assert_eq!(count(&picks, 2), 0);
        assert_eq!(count(&picks, 1), 30);
        assert_eq!(count(&picks, 3), 10);
    }

    #[test]
    fn lone_light_server_with_heavy_overloaded_one() {
        let mut s = svc();
        s.add(dest(1, 65535)).add(dest(2, 1));
        set_overloaded(s.get(1), true);
        assert_eq!(s.picks(5), some(&[2, 2, 2, 2, 2]));
        set_overloaded(s.get(2), true);
        assert_eq!(s.picks(1), vec![None]);
    }

    /// IPVS's walk written plainly: one destination at a time, one pass
    /// at a time, no skipping; `None` (state untouched) when nothing is
    /// usable.
    fn reference_pick(w: &mut WeightedRoundRobin, dests: &[crate::Dest]) -> Option<usize> {
        if dests.is_empty() || w.mw <= 0 || !dests.iter().any(|d| d.available()) {
            return None;
        }
        loop {
            let next = w.pos.map_or(0, |p| p + 1);
            if next >= dests.len() {
                w.cw -= w.di;
                if w.cw <= 0 {
                    w.cw = w.mw;
                }
                w.pos = None;
                continue;
            }
            w.pos = Some(next);
            let d = &dests[next];
            if !d.load.is_overloaded() && i64::from(d.weight) >= w.cw {
                return Some(next);
            }
        }
    }

    #[test]
    fn same_choices_as_the_plain_walk_under_churn() {
        // Property: skipping passes nobody can serve and computing the
        // heaviest usable weight lazily change nothing: under random
        // weights, edits and overloads the choices and the state equal
        // those of the plain one-step-at-a-time walk.
        let mut seed = 0x5eed_0004u64;
        let mut rnd = |m: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % m
        };
        for _ in 0..200 {
            let n = 1 + rnd(8) as u8;
            let mut dests: Vec<crate::Dest> = (1..=n).map(|i| dest(i, rnd(10) as i32)).collect();
            let (mut fast, mut plain) = (WeightedRoundRobin::new(), WeightedRoundRobin::new());
            fast.update(&dests);
            plain.update(&dests);
            for _ in 0..300 {
                match rnd(20) {
                    0 => {
                        let i = rnd(u64::from(n)) as usize;
                        dests[i].weight = rnd(10) as i32;
                        fast.update(&dests);
                        plain.update(&dests);
                    }
                    1 | 2 => {
                        let i = rnd(u64::from(n)) as usize;
                        set_overloaded(&dests[i], rnd(2) == 0);
                    }
                    _ => {}
                }
                let want = reference_pick(&mut plain, &dests);
                let got = fast.schedule(&dests, &any_flow(), 0);
                assert_eq!(got, want, "weights {:?}", dests);
                if got.is_some() {
                    assert_eq!((fast.pos, fast.cw), (plain.pos, plain.cw));
                }
            }
        }
    }

    #[test]
    fn exact_shares_for_many_weight_sets() {
        // Property: over one cycle of sum(w/g) picks each destination gets
        // exactly w/g, whatever the starting state.
        let mut seed = 0x1234_5678_9abc_def0u64;
        let mut rnd = |m: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % m
        };
        for _ in 0..200 {
            let mut s = svc();
            let n = 1 + rnd(6) as u8;
            for i in 1..=n {
                s.add(dest(i, 1 + rnd(12) as i32));
            }
            // Random warm-up so the cycle starts anywhere.
            let warm = rnd(40) as usize;
            s.picks(warm);
            let g = s.dests.iter().map(weight_u).fold(0, gcd);
            let total: u64 = s.dests.iter().map(|d| weight_u(d) / g).sum();
            let picks = s.picks(total as usize);
            for d in &s.dests {
                let IpAddr::V4(a) = d.addr else {
                    unreachable!()
                };
                let got = count(&picks, a.octets()[3]) as u64;
                assert_eq!(got, weight_u(d) / g, "weights {:?}", s.dests);
            }
        }
    }
}
