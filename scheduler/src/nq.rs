//! Never queue (`nq`).
//!
//! An idle server (no active connections) serves the new connection at
//! once, so it is taken whatever its weight; only when every server is
//! busy does nq fall back to shortest expected delay.

use crate::common::{more_loaded, sed_overhead, weight_u};
use crate::least::{LeastTree, Nq};
use crate::{DestSet, Flow, Scheduler};

/// Never-queue scheduler: the first usable destination with no active
/// connections, else the sed choice.
#[derive(Debug, Default)]
pub struct NeverQueue {
    tree: LeastTree<Nq>,
}

impl NeverQueue {
    /// A never-queue scheduler.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Scheduler for NeverQueue {
    fn name(&self) -> &'static str {
        "nq"
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

/// The IPVS scan (for short lists): the first idle usable destination,
/// else the sed choice.
pub(crate) fn never_queue(dests: &DestSet) -> Option<usize> {
    let mut best: Option<(usize, u64, u64)> = None;
    for (i, d) in dests.iter().enumerate() {
        if !d.available() {
            continue;
        }
        if d.load.active() == 0 {
            return Some(i);
        }
        let (oh, w) = (sed_overhead(d), weight_u(d));
        match best {
            Some((_, boh, bw)) if !more_loaded(boh, bw, oh, w) => {}
            _ => best = Some((i, oh, w)),
        }
    }
    best.map(|(i, _, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::testutil::*;

    fn svc() -> Svc {
        Svc::new(Box::new(NeverQueue::new()))
    }

    #[test]
    fn empty_gives_none() {
        assert_eq!(svc().picks(1), vec![None]);
    }

    #[test]
    fn idle_first_else_sed() {
        let mut s = svc();
        s.add(dest(1, 10)).add(dest(2, 1)).add(dest(3, 1));
        // all idle: the front wins even though 1 is heavier
        assert_eq!(s.picks(1), some(&[3]));
        set_conns(s.get(3), 1, 0);
        assert_eq!(s.picks(1), some(&[2]));
        set_conns(s.get(2), 1, 0);
        assert_eq!(s.picks(1), some(&[1]));
        // all busy: sed. 3: 2/1, 2: 2/1, 1: 10/10 -> 1
        set_conns(s.get(1), 9, 0);
        assert_eq!(s.picks(1), some(&[1]));
        // 1: 11/10 < 2/1 still
        set_conns(s.get(1), 10, 0);
        assert_eq!(s.picks(1), some(&[1]));
        // 1: 20/10 == 2/1: tie -> front (3)
        set_conns(s.get(1), 19, 0);
        assert_eq!(s.picks(1), some(&[3]));
    }

    #[test]
    fn idle_but_unusable_is_skipped() {
        let mut s = svc();
        s.add(dest(1, 1)).add(dest(2, 1)).add(dest(3, 0));
        set_conns(s.get(1), 3, 0);
        set_overloaded(s.get(2), true);
        assert_eq!(s.picks(1), some(&[1]));
        set_overloaded(s.get(1), true);
        assert_eq!(s.picks(1), vec![None]);
    }
}
