//! Shortest expected delay (`sed`).
//!
//! Expected delay at a server is (active + 1) / weight: the new connection
//! joins the active ones. Inactive connections are ignored. Compared by
//! cross-multiplication like wlc.

use crate::least::{LeastTree, Sed};
use crate::{DestSet, Flow, Scheduler};

/// Shortest-expected-delay scheduler: least (active + 1)/weight; the first
/// in list order wins ties.
#[derive(Debug, Default)]
pub struct ShortestExpectedDelay {
    tree: LeastTree<Sed>,
}

impl ShortestExpectedDelay {
    /// A shortest-expected-delay scheduler.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Scheduler for ShortestExpectedDelay {
    fn name(&self) -> &'static str {
        "sed"
    }

    fn update(&mut self, dests: &DestSet) {
        self.tree.update(dests);
    }

    fn schedule(&mut self, dests: &DestSet, _flow: &Flow, _now_ns: u64) -> Option<usize> {
        self.tree.schedule(dests)
    }

    fn refresh(&mut self, dests: &DestSet) {
        self.tree.update(dests);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::testutil::*;

    fn svc() -> Svc {
        Svc::new(Box::new(ShortestExpectedDelay::new()))
    }

    #[test]
    fn empty_gives_none() {
        assert_eq!(svc().picks(1), vec![None]);
    }

    #[test]
    fn expected_delay_ignores_inactive() {
        let mut s = svc();
        s.add(dest(1, 2)).add(dest(2, 1));
        // (0+1)/1 vs (0+1)/2: 1 wins though 2 is at the front
        assert_eq!(s.picks(1), some(&[1]));
        set_conns(s.get(1), 1, 0); // 2/2 == 1/1: tie, front wins
        assert_eq!(s.picks(1), some(&[2]));
        set_conns(s.get(2), 0, 1000); // inactive ignored: still tie
        assert_eq!(s.picks(1), some(&[2]));
        set_conns(s.get(2), 1, 0); // 2/1 > 2/2
        assert_eq!(s.picks(1), some(&[1]));
    }

    #[test]
    fn quiesced_and_overloaded_skipped() {
        let mut s = svc();
        s.add(dest(1, 5)).add(dest(2, 1));
        s.edit(1, 0);
        assert_eq!(s.picks(1), some(&[2]));
        set_overloaded(s.get(2), true);
        assert_eq!(s.picks(1), vec![None]);
    }
}
