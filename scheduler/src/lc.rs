//! Least connection (`lc`).
//!
//! The simplest dynamic scheduler: send the new connection to the server
//! doing the least work now, counting an active connection as 256 inactive
//! ones (IPVS's "overhead"). Weights only matter as on/off (0 = quiesced).
//!
//! IPVS scans the list per connection; from 16 destinations up the choice
//! comes from a tournament tree kept current by the counters' change marks
//! (`least.rs`), with the same answer, ties included.

use crate::common::conn_overhead;
use crate::least::{Lc, LeastTree};
use crate::{DestSet, Flow, Scheduler};

/// Least-connection scheduler: least `active * 256 + inactive`; the first
/// in list order wins ties.
#[derive(Debug, Default)]
pub struct LeastConn {
    tree: LeastTree<Lc>,
}

impl LeastConn {
    /// A least-connection scheduler.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Scheduler for LeastConn {
    fn name(&self) -> &'static str {
        "lc"
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

/// The IPVS scan (for short lists): least overhead, the first among equals.
pub(crate) fn least_overhead(dests: &DestSet) -> Option<usize> {
    if dests.len() >= 1 << INDEX_BITS {
        return least_overhead_plain(dests);
    }
    // Each destination becomes one key, overhead above index, so that
    // the least key is the least overhead and, among equals, the first
    // in the list (IPVS's strict `<`). An unusable destination's key is
    // u64::MAX, which never wins. Minimum being associative, four
    // independent running minima (lanes) keep the CPU busy instead of
    // waiting on one compare-and-select chain; the result is the same.
    let key = |i: usize, d: &crate::Dest| {
        if d.available() {
            (conn_overhead(d) << INDEX_BITS) | i as u64
        } else {
            u64::MAX
        }
    };
    let mut lanes = [u64::MAX; 4];
    let mut chunks = dests.chunks_exact(4);
    let mut base = 0;
    for c in &mut chunks {
        for (j, d) in c.iter().enumerate() {
            lanes[j] = lanes[j].min(key(base + j, d));
        }
        base += 4;
    }
    for (j, d) in chunks.remainder().iter().enumerate() {
        lanes[j] = lanes[j].min(key(base + j, d));
    }
    let best = lanes[0].min(lanes[1]).min(lanes[2].min(lanes[3]));
    (best != u64::MAX).then_some((best & ((1 << INDEX_BITS) - 1)) as usize)
}

/// Bits of the index in an lc key; the overhead (below 2^41) takes the
/// rest of the 64.
const INDEX_BITS: u32 = 22;

/// The plain scan, for lists too long for the key encoding.
fn least_overhead_plain(dests: &DestSet) -> Option<usize> {
    let mut best: Option<(usize, u64)> = None;
    for (i, d) in dests.iter().enumerate() {
        if !d.available() {
            continue;
        }
        let oh = conn_overhead(d);
        if best.is_none_or(|(_, boh)| oh < boh) {
            best = Some((i, oh));
        }
    }
    best.map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::testutil::*;

    fn svc() -> Svc {
        Svc::new(Box::new(LeastConn::new()))
    }

    #[test]
    fn empty_gives_none() {
        assert_eq!(svc().picks(1), vec![None]);
    }

    #[test]
    fn least_overhead_first_wins_ties() {
        let mut s = svc();
        s.add(dest(1, 1)).add(dest(2, 1)).add(dest(3, 1));
        // all zero: the front (newest) wins
        assert_eq!(s.picks(1), some(&[3]));
        set_conns(s.get(3), 1, 0); // 256
        set_conns(s.get(2), 0, 255); // 255
        set_conns(s.get(1), 0, 255); // 255, tie with 2, 2 is earlier
        assert_eq!(s.picks(1), some(&[2]));
        set_conns(s.get(2), 0, 256); // now 3 ties with 2 at 256; 1 is least
        assert_eq!(s.picks(1), some(&[1]));
        set_conns(s.get(1), 0, 300);
        assert_eq!(s.picks(1), some(&[3]));
    }

    #[test]
    fn weights_ignored_except_zero() {
        let mut s = svc();
        s.add(dest(1, 100)).add(dest(2, 1));
        set_conns(s.get(1), 0, 1);
        assert_eq!(s.picks(1), some(&[2]));
        s.edit(2, 0);
        assert_eq!(s.picks(1), some(&[1]));
        s.edit(1, 0);
        assert_eq!(s.picks(1), vec![None]);
    }

    #[test]
    fn overloaded_by_threshold_skipped() {
        let mut s = svc();
        let mut d1 = dest(1, 1);
        d1.u_threshold = 2;
        s.add(d1).add(dest(2, 1));
        set_conns(s.get(2), 5, 0);
        set_conns(s.get(1), 1, 1);
        s.get(1).note_bound();
        assert!(s.get(1).load.is_overloaded());
        assert_eq!(s.picks(1), some(&[2]));
        // drops below 3/4 of 2 (i.e. to 1) clears it
        set_conns(s.get(1), 1, 0);
        s.get(1).note_unbound();
        assert!(!s.get(1).load.is_overloaded());
        assert_eq!(s.picks(1), some(&[1]));
    }

    #[test]
    fn lanes_choose_like_the_plain_scan() {
        // Property: the keyed four-lane minimum is the plain strict-<
        // scan, ties to the first, on random loads (many ties), weights
        // and overloads.
        let mut seed = 0x5eed_0005u64;
        let mut rnd = move |m: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % m
        };
        for _ in 0..2000 {
            let n = rnd(40) as u8;
            let dests: Vec<crate::Dest> = (0..n).map(|i| dest(i, rnd(3) as i32)).collect();
            for d in &dests {
                set_conns(d, rnd(3) as u32, rnd(300) as u32);
                set_overloaded(d, rnd(8) == 0);
            }
            assert_eq!(least_overhead(&dests), least_overhead_plain(&dests));
        }
    }
}
