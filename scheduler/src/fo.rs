//! Weighted failover (`fo`).
//!
//! All traffic goes to the heaviest usable server; the others are standby
//! and take over, heaviest first, only when it is quiesced or overloaded.

use crate::{DestSet, Flow, Scheduler};

/// Weighted-failover scheduler: the highest-weight destination that is not
/// overloaded; the first in list order wins ties.
#[derive(Debug, Default)]
pub struct WeightedFailover;

impl WeightedFailover {
    /// A weighted-failover scheduler (it has no state).
    pub fn new() -> Self {
        WeightedFailover
    }
}

impl Scheduler for WeightedFailover {
    fn name(&self) -> &'static str {
        "fo"
    }

    fn update(&mut self, _dests: &DestSet) {}

    fn schedule(&mut self, dests: &DestSet, _flow: &Flow, _now_ns: u64) -> Option<usize> {
        let mut best: Option<(usize, i32)> = None;
        for (i, d) in dests.iter().enumerate() {
            // available() also excludes weight 0, which never beats the
            // starting "highest weight" of 0 in IPVS either.
            if d.available() && best.is_none_or(|(_, bw)| d.weight > bw) {
                best = Some((i, d.weight));
            }
        }
        best.map(|(i, _)| i)
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
}
