//! Overflow-connection (`ovf`).
//!
//! Fill the heaviest server up to as many active connections as its weight,
//! then overflow to the next heaviest: the weight acts as a capacity.
//!
//! Which servers are full changes with every connection, so from 16
//! destinations up the choice comes from the least-load tree (`least.rs`)
//! keyed by weight among the servers with room, not from a scan.

use crate::least::{LeastTree, Ovf};
use crate::{DestSet, Flow, Scheduler};

/// Overflow-connection scheduler: the highest-weight usable destination
/// whose active count is at most its weight; the first in list order wins
/// ties.
#[derive(Debug, Default)]
pub struct Overflow {
    tree: LeastTree<Ovf>,
}

impl Overflow {
    /// An overflow-connection scheduler.
    pub fn new() -> Self {
        Overflow::default()
    }
}

impl Scheduler for Overflow {
    fn name(&self) -> &'static str {
        "ovf"
    }

    fn update(&mut self, dests: &DestSet) {
        self.tree.update(dests);
    }

    fn refresh(&mut self, dests: &DestSet) {
        self.tree.update(dests);
    }

    /// The heaviest destination that is usable and not full (active <=
    /// weight), the earliest in the list among equals.
    fn schedule(&mut self, dests: &DestSet, _flow: &Flow, _now_ns: u64) -> Option<usize> {
        self.tree.schedule(dests)
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

    #[test]
    fn weight_order_chooses_like_the_scan() {
        // Property: the first entry of the weight order that is usable
        // and not full is what a full scan with a strict `>` finds.
        let mut seed = 0x5eed_0007u64;
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
                set_conns(d, rnd(6) as u32, 0);
                set_overloaded(d, rnd(4) == 0);
            }
            let mut best: Option<(usize, i32)> = None;
            for (i, d) in dests.iter().enumerate() {
                let fits = i64::from(d.load.active()) <= i64::from(d.weight);
                if d.available() && fits && best.is_none_or(|(_, bw)| d.weight > bw) {
                    best = Some((i, d.weight));
                }
            }
            let mut ovf = Overflow::new();
            ovf.update(&dests);
            assert_eq!(ovf.schedule(&dests, &any_flow(), 0), best.map(|b| b.0));
        }
    }
}
