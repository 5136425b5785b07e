//! Overflow-connection (`ovf`).
//!
//! Fill the heaviest server up to as many active connections as its weight,
//! then overflow to the next heaviest: the weight acts as a capacity.

use crate::{DestSet, Flow, Scheduler};

/// Overflow-connection scheduler: the highest-weight usable destination
/// whose active count is at most its weight; the first in list order wins
/// ties.
#[derive(Debug, Default)]
pub struct Overflow;

impl Overflow {
    /// An overflow-connection scheduler (it has no state).
    pub fn new() -> Self {
        Overflow
    }
}

impl Scheduler for Overflow {
    fn name(&self) -> &'static str {
        "ovf"
    }

    fn update(&mut self, _dests: &DestSet) {}

    fn schedule(&mut self, dests: &DestSet, _flow: &Flow, _now_ns: u64) -> Option<usize> {
        let mut best: Option<(usize, i32)> = None;
        for (i, d) in dests.iter().enumerate() {
            if !d.available() || i64::from(d.load.active()) > i64::from(d.weight) {
                continue;
            }
            if best.is_none_or(|(_, bw)| d.weight > bw) {
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
        Svc::new(Box::new(Overflow::new()))
    }

    #[test]
    fn empty_gives_none() {
        assert_eq!(svc().picks(1), vec![None]);
    }

    #[test]
    fn fills_heaviest_then_overflows() {
        let mut s = svc();
        s.add(dest(1, 2)).add(dest(2, 3)).add(dest(3, 2));
        assert_eq!(s.picks(1), some(&[2]));
        set_conns(s.get(2), 3, 0); // active == weight: still eligible
        assert_eq!(s.picks(1), some(&[2]));
        set_conns(s.get(2), 4, 0); // active > weight: overflow
                                   // tie at weight 2: the front (3) wins
        assert_eq!(s.picks(1), some(&[3]));
        set_conns(s.get(3), 3, 9);
        assert_eq!(s.picks(1), some(&[1]));
        set_conns(s.get(1), 3, 0);
        assert_eq!(s.picks(1), vec![None]);
    }

    #[test]
    fn quiesced_and_overloaded_skipped() {
        let mut s = svc();
        s.add(dest(1, 1)).add(dest(2, 9));
        set_overloaded(s.get(2), true);
        assert_eq!(s.picks(1), some(&[1]));
        s.edit(1, 0);
        assert_eq!(s.picks(1), vec![None]);
    }
}
