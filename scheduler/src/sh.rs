//! Source hashing (`sh`).
//!
//! A client's address (and optionally port) always maps to the same bucket
//! of a 256-entry table, so the same client reaches the same server for as
//! long as the destination set does not change, without any per-client
//! state. Weights decide how many consecutive buckets a server owns.

use crate::common::{fold_addr, has_ports, hash_32};
use crate::{DestSet, Flow, Scheduler, SCHED_FLAG_1, SCHED_FLAG_2};

/// Number of buckets (2^8).
pub const SH_TAB_SIZE: usize = 256;
/// Bits of a bucket index.
const SH_TAB_BITS: u32 = 8;
/// Marks an empty bucket (no destinations).
const NONE: u32 = u32::MAX;

/// Source-hashing scheduler with its 256-bucket table.
#[derive(Debug)]
pub struct SourceHash {
    /// Destination index per bucket, `NONE` when the set is empty.
    table: [u32; SH_TAB_SIZE],
    /// `sh-fallback`: probe the following buckets when the target is
    /// unusable.
    fallback: bool,
    /// `sh-port`: hash the source port too.
    port: bool,
}

impl SourceHash {
    /// A source-hashing scheduler; `flags` may hold `SCHED_FLAG_1`
    /// (`sh-fallback`) and `SCHED_FLAG_2` (`sh-port`).
    pub fn new(flags: u32) -> Self {
        SourceHash {
            table: [NONE; SH_TAB_SIZE],
            fallback: flags & SCHED_FLAG_1 != 0,
            port: flags & SCHED_FLAG_2 != 0,
        }
    }

    /// The bucket of a client: `(hash_32(port + addr, 8) + offset) & 255`.
    pub fn bucket(addr: u32, port: u16, offset: u32) -> usize {
        let h = hash_32(u32::from(port).wrapping_add(addr), SH_TAB_BITS);
        (h.wrapping_add(offset) & (SH_TAB_SIZE as u32 - 1)) as usize
    }

    /// The destination index owning bucket `b`, if any.
    fn owner(&self, b: usize, n: usize) -> Option<usize> {
        let i = *self.table.get(b)? as usize;
        (i < n).then_some(i)
    }
}

impl Scheduler for SourceHash {
    fn name(&self) -> &'static str {
        "sh"
    }

    /// Walk the list, giving each destination `weight` consecutive buckets
    /// (at least one, even at weight 0), wrapping until all are assigned.
    fn update(&mut self, dests: &DestSet) {
        if dests.is_empty() {
            self.table = [NONE; SH_TAB_SIZE];
            return;
        }
        let (mut di, mut count) = (0usize, 0i64);
        for slot in self.table.iter_mut() {
            *slot = di as u32;
            count += 1;
            if count >= i64::from(dests[di].weight) {
                di = (di + 1) % dests.len();
                count = 0;
            }
        }
    }

    fn schedule(&mut self, dests: &DestSet, flow: &Flow, _now_ns: u64) -> Option<usize> {
        let n = dests.len();
        let port = if self.port && has_ports(flow.proto) {
            flow.sport
        } else {
            0
        };
        let addr = fold_addr(&flow.saddr);
        let first = self.owner(Self::bucket(addr, port, 0), n)?;
        if dests[first].available() {
            return Some(first);
        }
        if !self.fallback {
            return None;
        }
        (1..SH_TAB_SIZE as u32)
            .filter_map(|off| self.owner(Self::bucket(addr, port, off), n))
            .find(|&i| dests[i].available())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::testutil::*;
    use crate::Dest;
    use std::net::{IpAddr, Ipv4Addr};

    fn svc(flags: u32) -> Svc {
        Svc::new(Box::new(SourceHash::new(flags)))
    }

    fn client(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    }

    #[test]
    fn bucket_hand_computed() {
        // 198.18.0.200 = 0xC61200C8; 0xC61200C8 * 0x61C88647 mod 2^32 =
        // 0xBFA6E778, top byte 0xBF.
        assert_eq!(SourceHash::bucket(0xC612_00C8, 0, 0), 0xBF);
        // with port 1000: 0xC61200C8 + 0x3E8 = 0xC61204B0;
        // * 0x61C88647 mod 2^32 = 0xB6F36CD0 -> 0xB6
        assert_eq!(SourceHash::bucket(0xC612_00C8, 1000, 0), 0xB6);
        // offset wraps at 256: 0xBF + 0x42 = 0x101 -> 0x01
        assert_eq!(SourceHash::bucket(0xC612_00C8, 0, 0x42), 0x01);
        // 1 * 0x61C88647 -> 0x61
        assert_eq!(SourceHash::bucket(1, 0, 0), 0x61);
    }

    #[test]
    fn empty_gives_none() {
        assert_eq!(svc(0).picks(1), vec![None]);
    }

    #[test]
    fn table_fill_follows_weights() {
        let mut sh = SourceHash::new(0);
        let dests = [dest(3, 2), dest(2, 0), dest(1, 1)];
        sh.update(&dests);
        // 3,3,2,1, 3,3,2,1, ...
        for (b, &i) in sh.table.iter().enumerate() {
            assert_eq!(i, [0, 0, 1, 2][b % 4], "bucket {b}");
        }
        let dests = [dest(1, 200), dest(2, 100)];
        sh.update(&dests);
        assert!(sh.table[..200].iter().all(|&i| i == 0));
        assert!(sh.table[200..].iter().all(|&i| i == 1));
    }

    #[test]
    fn schedule_uses_hand_computed_bucket() {
        let mut s = svc(0);
        // 256 destinations of weight 1: bucket b belongs to index b.
        for n in 0..=255u8 {
            s.dests.push(dest(n, 1));
        }
        s.sched.update(&s.dests);
        let c = client(198, 18, 0, 200);
        // bucket 0xBF: dests[0xBF] is 198.18.0.0xBF
        assert_eq!(s.pick_flow(&flow(c, 1234)), Some(0xBF));
        // sport ignored without sh-port
        assert_eq!(s.pick_flow(&flow(c, 1000)), Some(0xBF));
    }

    #[test]
    fn port_flag_hashes_port() {
        let mut s = svc(SCHED_FLAG_2);
        for n in 0..=255u8 {
            s.dests.push(dest(n, 1));
        }
        s.sched.update(&s.dests);
        let c = client(198, 18, 0, 200);
        assert_eq!(s.pick_flow(&flow(c, 1000)), Some(0xB6));
        // a protocol without ports hashes with port 0
        let mut f = flow(c, 1000);
        f.proto = 1;
        assert_eq!(s.pick_flow(&f), Some(0xBF));
    }

    #[test]
    fn ipv6_client_is_folded() {
        let mut s = svc(0);
        for n in 0..=255u8 {
            s.dests.push(dest(n, 1));
        }
        s.sched.update(&s.dests);
        // 2001:db8::c612:c8 folds to 0x20010db8 ^ 0xc61200c8 = 0xE6130D70
        let c: IpAddr = "2001:db8::c612:c8".parse().unwrap();
        let b = SourceHash::bucket(0xE613_0D70, 0, 0) as u8;
        // 0xE6130D70 * 0x61C88647 mod 2^32 = 0xB7D15A10 -> 0xB7
        assert_eq!(b, 0xB7);
        assert_eq!(s.pick_flow(&flow(c, 1)), Some(0xB7));
    }

    #[test]
    fn shares_follow_weights_over_a_cycle() {
        // Property: the table repeats the weight pattern, so over every
        // cycle of sum(max(w, 1)) buckets each destination owns max(w, 1);
        // the last, partial cycle is dealt in list order.
        let mut seed = 0x5eed_0003u64;
        let mut rnd = |m: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % m
        };
        for _ in 0..300 {
            let n = 1 + rnd(12) as usize;
            let dests: Vec<Dest> = (0..n).map(|i| dest(i as u8 + 1, rnd(20) as i32)).collect();
            let mut sh = SourceHash::new(0);
            sh.update(&dests);
            let per: Vec<usize> = dests.iter().map(|d| d.weight.max(1) as usize).collect();
            let cycle: usize = per.iter().sum();
            let mut left = SH_TAB_SIZE % cycle;
            for (i, &p) in per.iter().enumerate() {
                let partial = p.min(left);
                left -= partial;
                let owned = sh.table.iter().filter(|&&t| t as usize == i).count();
                assert_eq!(owned, SH_TAB_SIZE / cycle * p + partial, "{per:?}");
            }
        }
    }

    #[test]
    fn clients_spread_in_proportion_to_weights() {
        // With weights whose sum divides 256 the buckets split exactly in
        // proportion, and 65536 consecutive client addresses hash evenly
        // enough over the buckets for the clients to follow (within 2%).
        for weights in [vec![1, 1, 2], vec![1, 3], vec![8, 4, 2, 2], vec![5, 3]] {
            let mut s = svc(0);
            for (i, &w) in weights.iter().enumerate() {
                s.add(dest(i as u8 + 1, w));
            }
            let total: i32 = weights.iter().sum();
            let mut got = vec![0u32; weights.len()];
            for c in 0..=0xffffu32 {
                let f = flow(IpAddr::V4(Ipv4Addr::from(0xC613_0000 | c)), 1);
                got[usize::from(s.pick_flow(&f).unwrap()) - 1] += 1;
            }
            for (i, &w) in weights.iter().enumerate() {
                let want = 65536.0 * f64::from(w) / f64::from(total);
                let err = (f64::from(got[i]) - want).abs() / want;
                assert!(
                    err < 0.02,
                    "weights {weights:?}: dest {i} got {} of {want}",
                    got[i]
                );
            }
        }
    }

    #[test]
    fn same_client_same_server() {
        let mut s = svc(0);
        s.add(dest(1, 1)).add(dest(2, 1)).add(dest(3, 1));
        for c in 1..=50u8 {
            let f = flow(client(198, 19, 0, c), 1);
            let first = s.pick_flow(&f);
            assert!(first.is_some());
            assert_eq!(s.pick_flow(&flow(client(198, 19, 0, c), 2)), first);
        }
    }

    #[test]
    fn unusable_target_without_fallback_is_none() {
        let mut s = svc(0);
        s.add(dest(1, 1)).add(dest(2, 1));
        // table: 2,1,2,1,... ; bucket 0xBF (191) is odd -> dest 1
        let f = flow(client(198, 18, 0, 200), 1);
        assert_eq!(s.pick_flow(&f), Some(1));
        set_overloaded(s.get(1), true);
        assert_eq!(s.pick_flow(&f), None);
        set_overloaded(s.get(1), false);
        s.edit(1, 0);
        // weight 0 still owns one bucket in turn: table unchanged
        assert_eq!(s.pick_flow(&f), None);
        s.edit(1, 1);
        assert_eq!(s.pick_flow(&f), Some(1));
    }

    #[test]
    fn fallback_probes_following_buckets() {
        let mut s = svc(SCHED_FLAG_1);
        s.add(dest(1, 1)).add(dest(2, 1)).add(dest(3, 1));
        // table: 3,2,1 repeating; bucket 191 % 3 = 2 -> dest 1
        let f = flow(client(198, 18, 0, 200), 1);
        assert_eq!(s.pick_flow(&f), Some(1));
        set_overloaded(s.get(1), true);
        // next bucket 192 -> 192 % 3 = 0 -> dest 3
        assert_eq!(s.pick_flow(&f), Some(3));
        s.edit(3, 0);
        // then bucket 193 -> dest 2
        assert_eq!(s.pick_flow(&f), Some(2));
        set_overloaded(s.get(2), true);
        assert_eq!(s.pick_flow(&f), None);
    }
}
