//! Weighted failover (`fo`).
//!
//! All traffic goes to the heaviest usable server; the others are standby
//! and take over, heaviest first, only when it is quiesced or overloaded.

use crate::common::by_weight_desc;
use crate::{DestSet, Flow, Scheduler};

/// Weighted-failover scheduler: the highest-weight destination that is not
/// overloaded; the first in list order wins ties.
#[derive(Debug, Default)]
pub struct WeightedFailover {
    /// Positive-weight destinations, heaviest first, ties in list order.
    order: Vec<u32>,
}

impl WeightedFailover {
    /// A weighted-failover scheduler (it has no state).
    pub fn new() -> Self {
        WeightedFailover::default()
    }
}

impl Scheduler for WeightedFailover {
    fn name(&self) -> &'static str {
        "fo"
    }

    fn update(&mut self, dests: &DestSet) {
        self.order = by_weight_desc(dests);
    }

    /// The first usable destination in weight order: the heaviest one,
    /// the earliest in the list among equals. O(1) unless the heaviest are
    /// overloaded.
    fn schedule(&mut self, dests: &DestSet, _flow: &Flow, _now_ns: u64) -> Option<usize> {
        self.order
            .iter()
            .map(|&i| i as usize)
            .find(|&i| dests.get(i).is_some_and(|d| d.available()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::testutil::*;

    fn svc() -> Svc {
        Svc::new(Box::new(WeightedFailover::new()))
    }

    #[test]
    fn empty_gives_none() {
        assert_eq!(svc().picks(1), vec![None]);
    }

    #[test]
    fn heaviest_then_failover() {
        let mut s = svc();
        s.add(dest(1, 5)).add(dest(2, 10)).add(dest(3, 5));
        assert_eq!(s.picks(3), some(&[2, 2, 2]));
        // connections do not matter
        set_conns(s.get(2), 1000, 1000);
        assert_eq!(s.picks(1), some(&[2]));
        set_overloaded(s.get(2), true);
        // tie between 3 and 1 at weight 5: the front (3) wins
        assert_eq!(s.picks(1), some(&[3]));
        s.edit(3, 0);
        assert_eq!(s.picks(1), some(&[1]));
        s.edit(1, 0);
        assert_eq!(s.picks(1), vec![None]);
        set_overloaded(s.get(2), false);
        assert_eq!(s.picks(1), some(&[2]));
    }

    #[test]
    fn weight_order_chooses_like_the_scan() {
        // Property: the first usable entry of the weight order is the
        // heaviest usable destination, the first among equals.
        let mut seed = 0x5eed_0006u64;
        let mut rnd = move |m: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % m
        };
        for _ in 0..2000 {
            let n = rnd(30) as u8;
            let dests: Vec<crate::Dest> = (0..n).map(|i| dest(i, rnd(5) as i32)).collect();
            for d in &dests {
                set_overloaded(d, rnd(4) == 0);
            }
            let mut best: Option<(usize, i32)> = None;
            for (i, d) in dests.iter().enumerate() {
                if d.available() && best.is_none_or(|(_, bw)| d.weight > bw) {
                    best = Some((i, d.weight));
                }
            }
            let mut fo = WeightedFailover::new();
            fo.update(&dests);
            assert_eq!(fo.schedule(&dests, &any_flow(), 0), best.map(|b| b.0));
        }
    }
}
