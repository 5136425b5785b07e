//! Destination hashing (`dh`).
//!
//! Meant for cache clusters: the packet's destination address picks one of
//! 256 buckets, and buckets are dealt to the servers round robin, so each
//! origin address is always served by the same cache. Weights are ignored
//! except that weight 0 (or overload) makes the bucket give no server.

use crate::common::fold_addr;
use crate::{DestSet, Flow, Scheduler};

/// Number of buckets (2^8).
pub const DH_TAB_SIZE: usize = 256;
/// Marks an empty bucket (no destinations).
const NONE: u32 = u32::MAX;

/// Destination-hashing scheduler with its 256-bucket table.
#[derive(Debug)]
pub struct DestHash {
    /// Destination index per bucket, `NONE` when the set is empty.
    table: [u32; DH_TAB_SIZE],
}

impl Default for DestHash {
    fn default() -> Self {
        Self::new()
    }
}

impl DestHash {
    /// A destination-hashing scheduler for an empty service.
    pub fn new() -> Self {
        DestHash {
            table: [NONE; DH_TAB_SIZE],
        }
    }

    /// The bucket of a (folded, host-order) destination address:
    /// `(addr * 2654435761) & 255`.
    pub fn bucket(addr: u32) -> usize {
        (addr.wrapping_mul(2_654_435_761) & (DH_TAB_SIZE as u32 - 1)) as usize
    }
}

impl Scheduler for DestHash {
    fn name(&self) -> &'static str {
        "dh"
    }

    /// Deal the buckets to the destinations one each, in list order,
    /// wrapping.
    fn update(&mut self, dests: &DestSet) {
        let n = dests.len();
        for (b, slot) in self.table.iter_mut().enumerate() {
            *slot = if n == 0 { NONE } else { (b % n) as u32 };
        }
    }

    fn schedule(&mut self, dests: &DestSet, flow: &Flow, _now_ns: u64) -> Option<usize> {
        let b = Self::bucket(fold_addr(&flow.daddr));
        let i = *self.table.get(b)? as usize;
        dests.get(i).filter(|d| d.available()).map(|_| i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::testutil::*;
    use std::net::{IpAddr, Ipv4Addr};

    fn svc() -> Svc {
        Svc::new(Box::new(DestHash::new()))
    }

    fn to(d: u8) -> crate::Flow {
        flow_to(ip(100), 1, IpAddr::V4(Ipv4Addr::new(198, 18, 1, d)))
    }

    #[test]
    fn bucket_hand_computed() {
        // Only the low byte matters: 0x01 * 0xB1 = 0xB1; 0x02 * 0xB1 =
        // 0x162 -> 0x62.
        assert_eq!(DestHash::bucket(0xC612_0101), 0xB1);
        assert_eq!(DestHash::bucket(0xC612_0102), 0x62);
        // 0xB9 * 0xB1 = 0x7FE9 -> 0xE9
        assert_eq!(DestHash::bucket(0x2001_0DB9), 0xE9);
    }

    #[test]
    fn empty_gives_none() {
        assert_eq!(svc().pick_flow(&to(1)), None);
    }

    #[test]
    fn round_robin_buckets_ignore_weights() {
        let mut s = svc();
        s.add(dest(1, 5)).add(dest(2, 1)).add(dest(3, 1));
        // list 3,2,1; bucket 0xB1 = 177, 177 % 3 = 0 -> 3
        assert_eq!(s.pick_flow(&to(1)), Some(3));
        // bucket 0x62 = 98, 98 % 3 = 2 -> 1
        assert_eq!(s.pick_flow(&to(2)), Some(1));
        // the source does not matter
        let mut f = to(2);
        f.saddr = ip(7);
        f.sport = 999;
        assert_eq!(s.pick_flow(&f), Some(1));
    }

    #[test]
    fn ipv6_destination_is_folded() {
        let mut s = svc();
        for n in 0..=255u8 {
            s.dests.push(dest(n, 1));
        }
        s.sched.update(&s.dests);
        let mut f = to(1);
        // 2001:db8::1 folds to 0x20010db8 ^ 0x00000001 = 0x20010DB9
        f.daddr = "2001:db8::1".parse().unwrap();
        assert_eq!(s.pick_flow(&f), Some(0xE9));
    }

    #[test]
    fn unusable_target_gives_none() {
        let mut s = svc();
        s.add(dest(1, 1)).add(dest(2, 1)).add(dest(3, 1));
        set_overloaded(s.get(3), true);
        assert_eq!(s.pick_flow(&to(1)), None);
        set_overloaded(s.get(3), false);
        s.edit(3, 0);
        assert_eq!(s.pick_flow(&to(1)), None);
        assert_eq!(s.pick_flow(&to(2)), Some(1));
        s.del(3);
        // list 2,1: 177 odd -> 1
        assert_eq!(s.pick_flow(&to(1)), Some(1));
    }
}
