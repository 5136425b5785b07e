//! Weighted least connection (`wlc`), ipvsadm's default scheduler.
//!
//! Like lc, but a server's load is its overhead divided by its weight, so a
//! server of weight 2 is expected to carry twice the connections. The
//! division is never done: IPVS compares `oh1 * w2` with `oh2 * w1`, which
//! keeps it exact and free of floating point.

use crate::least::{LeastTree, Wlc};
use crate::{DestSet, Flow, Scheduler};

/// Weighted least-connection scheduler: least overhead/weight; the first
/// in list order wins ties.
#[derive(Debug, Default)]
pub struct WeightedLeastConn {
    tree: LeastTree<Wlc>,
}

impl WeightedLeastConn {
    /// A weighted least-connection scheduler.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Scheduler for WeightedLeastConn {
    fn name(&self) -> &'static str {
        "wlc"
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
        Svc::new(Box::new(WeightedLeastConn::new()))
    }

    #[test]
    fn empty_gives_none() {
        assert_eq!(svc().picks(1), vec![None]);
    }

    #[test]
    fn least_per_weight() {
        let mut s = svc();
        s.add(dest(1, 3)).add(dest(2, 1));
        // 0/1 vs 0/3: tie, the front (2) wins
        assert_eq!(s.picks(1), some(&[2]));
        set_conns(s.get(2), 1, 0); // 256/1
        set_conns(s.get(1), 2, 0); // 512/3 < 256
        assert_eq!(s.picks(1), some(&[1]));
        set_conns(s.get(1), 3, 0); // 768/3 == 256/1: tie, front wins
        assert_eq!(s.picks(1), some(&[2]));
        set_conns(s.get(1), 3, 1); // 769/3 > 256
        assert_eq!(s.picks(1), some(&[2]));
    }

    #[test]
    fn fills_by_weight_as_connections_arrive() {
        // Each pick binds an active connection; shares follow the weights.
        let mut s = svc();
        s.add(dest(1, 1)).add(dest(2, 2)).add(dest(3, 3));
        let f = any_flow();
        for _ in 0..60 {
            let i = s.sched.schedule(&s.dests, &f, 0).unwrap();
            s.dests[i]
                .load
                .active
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        assert_eq!(s.get(1).load.active(), 10);
        assert_eq!(s.get(2).load.active(), 20);
        assert_eq!(s.get(3).load.active(), 30);
    }

    #[test]
    fn quiesced_and_overloaded_skipped() {
        let mut s = svc();
        s.add(dest(1, 1)).add(dest(2, 0)).add(dest(3, 1));
        set_conns(s.get(3), 10, 0);
        set_conns(s.get(1), 5, 0);
        assert_eq!(s.picks(1), some(&[1]));
        set_overloaded(s.get(1), true);
        assert_eq!(s.picks(1), some(&[3]));
        set_overloaded(s.get(3), true);
        assert_eq!(s.picks(1), vec![None]);
    }

    #[test]
    fn large_counts_do_not_overflow() {
        let mut s = svc();
        s.add(dest(1, 65535)).add(dest(2, 65535));
        set_conns(s.get(2), u32::MAX, u32::MAX);
        set_conns(s.get(1), u32::MAX, u32::MAX - 1);
        assert_eq!(s.picks(1), some(&[1]));
    }
}
