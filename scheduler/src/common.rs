//! Small pieces several schedulers share: address folding, the kernel's
//! multiplicative hash, and the weighted-least-connection comparison.
//!
//! They live here so that each scheduler file reads like the rule it
//! implements, and so that the one subtle comparison (cross-multiplying
//! overhead and weight) is written once.

use std::net::IpAddr;

use crate::Dest;

/// Identity of a destination inside a service: address and port.
///
/// Indices into the destination list change on every add or delete, so
/// schedulers that remember a destination across `update` calls remember
/// this key and look it up again.
pub(crate) type DestKey = (IpAddr, u16);

/// The key of `d`.
pub(crate) fn key_of(d: &Dest) -> DestKey {
    (d.addr, d.port)
}

/// An address as one host-order `u32`: IPv4 as is (`ntohl(addr)`), IPv6 as
/// the XOR of its four 32-bit words (IPVS's `addr_fold`, then `ntohl`).
pub(crate) fn fold_addr(addr: &IpAddr) -> u32 {
    match addr {
        IpAddr::V4(a) => u32::from(*a),
        IpAddr::V6(a) => {
            let o = a.octets();
            let w = |i: usize| u32::from_be_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
            w(0) ^ w(4) ^ w(8) ^ w(12)
        }
    }
}

/// The kernel's `hash_32(v, bits)`: multiply by the 32-bit golden ratio
/// `0x61C88647` modulo 2^32 and keep the top `bits` bits.
pub(crate) fn hash_32(v: u32, bits: u32) -> u32 {
    debug_assert!((1..=32).contains(&bits));
    v.wrapping_mul(0x61C8_8647) >> (32 - bits)
}

/// Whether the protocol has ports the hashing schedulers may use
/// (TCP, UDP, SCTP); other protocols hash with port 0.
pub(crate) fn has_ports(proto: u8) -> bool {
    matches!(proto, 6 | 17 | 132)
}

/// A weight as an unsigned factor; negative weights (never configured, but
/// representable in `i32`) count as 0.
pub(crate) fn weight_u(d: &Dest) -> u64 {
    u64::try_from(d.weight).unwrap_or(0)
}

/// `a_oh / a_w > b_oh / b_w`, compared as IPVS does by cross-multiplying
/// (`a_oh * b_w > b_oh * a_w`) and never dividing.
///
/// IPVS multiplies in signed 64 bits. The overhead is below 2^41 and a
/// configured weight below 2^16, so 64 bits suffice for every value ipvsadm
/// accepts; we multiply in 128 bits so that even an out-of-range `i32`
/// weight cannot overflow, with identical results in the normal range.
pub(crate) fn more_loaded(a_oh: u64, a_w: u64, b_oh: u64, b_w: u64) -> bool {
    u128::from(a_oh) * u128::from(b_w) > u128::from(b_oh) * u128::from(a_w)
}

/// The weighted-least-connection choice over `dests` using `overhead` as
/// the load measure: the first usable destination, replaced by any later
/// one that is strictly less loaded per unit of weight. Weight-0 and
/// overloaded destinations are skipped. Shared by wlc, sed, lblc, lblcr.
///
/// "Least overhead/weight, the earliest among equals" is a minimum under a
/// total order (ratio, then index), so the list is scanned as four
/// interleaved lanes, each keeping its own best, which are then combined
/// with the index as tie-break: the same answer as one left-to-right
/// scan, without one long chain of dependent comparisons.
pub(crate) fn weighted_least(dests: &[Dest], overhead: impl Fn(&Dest) -> u64) -> Option<usize> {
    /// (index, overhead, weight) of a lane's best so far.
    type Best = Option<(usize, u64, u64)>;
    fn consider(best: &mut Best, i: usize, d: &Dest, oh: u64) {
        let w = weight_u(d);
        match *best {
            Some((_, boh, bw)) if !more_loaded(boh, bw, oh, w) => {}
            _ => *best = Some((i, oh, w)),
        }
    }
    if dests.len() < 16 {
        return weighted_least_plain(dests, overhead);
    }
    let mut lanes: [Best; 4] = [None; 4];
    let mut chunks = dests.chunks_exact(4);
    let mut base = 0;
    for c in &mut chunks {
        for (j, d) in c.iter().enumerate() {
            if d.available() {
                consider(&mut lanes[j], base + j, d, overhead(d));
            }
        }
        base += 4;
    }
    for (j, d) in chunks.remainder().iter().enumerate() {
        if d.available() {
            consider(&mut lanes[j], base + j, d, overhead(d));
        }
    }
    // Combine: strictly less loaded wins, equal load goes to the earlier.
    let mut best: Best = None;
    for (i, oh, w) in lanes.into_iter().flatten() {
        best = match best {
            Some((bi, boh, bw))
                if more_loaded(oh, w, boh, bw) || (!more_loaded(boh, bw, oh, w) && bi < i) =>
            {
                Some((bi, boh, bw))
            }
            _ => Some((i, oh, w)),
        };
    }
    best.map(|(i, _, _)| i)
}

/// The plain left-to-right form of [`weighted_least`]: used for short
/// lists (where combining lanes costs more than it saves) and as the
/// reference the lanes are tested against.
pub(crate) fn weighted_least_plain(
    dests: &[Dest],
    overhead: impl Fn(&Dest) -> u64,
) -> Option<usize> {
    let mut best: Option<(usize, u64, u64)> = None;
    for (i, d) in dests.iter().enumerate() {
        if !d.available() {
            continue;
        }
        let (oh, w) = (overhead(d), weight_u(d));
        match best {
            Some((_, boh, bw)) if !more_loaded(boh, bw, oh, w) => {}
            _ => best = Some((i, oh, w)),
        }
    }
    best.map(|(i, _, _)| i)
}

/// Indices of the destinations with a positive weight, heaviest first and,
/// among equal weights, in list order (a stable sort).
///
/// Weights change only through `update`, so the schedulers that want "the
/// heaviest usable destination" (fo, ovf) sort once there and then stop at
/// the first usable entry instead of scanning the whole list per
/// connection; the result is the same as the scan with a strict `>`.
pub(crate) fn by_weight_desc(dests: &[Dest]) -> Vec<u32> {
    let mut order: Vec<u32> = (0..dests.len() as u32)
        .filter(|&i| dests[i as usize].weight > 0)
        .collect();
    order.sort_by_key(|&i| std::cmp::Reverse(dests[i as usize].weight));
    order
}

/// IPVS overhead of `d` (`active * 256 + inactive`).
pub(crate) fn conn_overhead(d: &Dest) -> u64 {
    d.load.overhead()
}

/// Shortest-expected-delay overhead of `d` (`active + 1`).
pub(crate) fn sed_overhead(d: &Dest) -> u64 {
    u64::from(d.load.active()) + 1
}

/// Greatest common divisor (Euclid); `gcd(0, x) == x`.
pub(crate) fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Helpers for the unit tests of every scheduler.
#[cfg(test)]
pub(crate) mod testutil {
    use std::net::{IpAddr, Ipv4Addr};
    use std::sync::atomic::Ordering;

    use crate::{Dest, Flow, Scheduler};

    /// 198.18.0.`n`.
    pub fn ip(n: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(198, 18, 0, n))
    }

    /// Real server 198.18.0.`n`:80 with `weight`.
    pub fn dest(n: u8, weight: i32) -> Dest {
        Dest::new(ip(n), 80, weight)
    }

    /// A TCP flow from `saddr:sport` to the VIP 198.18.1.1:80.
    pub fn flow(saddr: IpAddr, sport: u16) -> Flow {
        flow_to(saddr, sport, IpAddr::V4(Ipv4Addr::new(198, 18, 1, 1)))
    }

    /// A TCP flow from `saddr:sport` to `daddr:80`.
    pub fn flow_to(saddr: IpAddr, sport: u16, daddr: IpAddr) -> Flow {
        Flow {
            proto: 6,
            saddr,
            sport,
            daddr,
            dport: 80,
        }
    }

    /// A fixed flow for schedulers that ignore the flow.
    pub fn any_flow() -> Flow {
        flow(ip(200), 1000)
    }

    /// Set the live counters of `d`.
    pub fn set_conns(d: &Dest, active: u32, inactive: u32) {
        d.load.active.store(active, Ordering::Relaxed);
        d.load.inactive.store(inactive, Ordering::Relaxed);
        d.load.changed();
    }

    /// Set the overload flag of `d` directly.
    pub fn set_overloaded(d: &Dest, on: bool) {
        d.load.set_overloaded(on);
    }

    /// A destination list built the IPVS way, newest first, that calls
    /// `update` on its scheduler after every change.
    pub struct Svc {
        /// The list, newest first.
        pub dests: Vec<Dest>,
        /// The scheduler under test.
        pub sched: Box<dyn Scheduler>,
    }

    impl Svc {
        /// A service with no destinations using `sched`.
        pub fn new(mut sched: Box<dyn Scheduler>) -> Self {
            sched.update(&[]);
            Svc {
                dests: Vec::new(),
                sched,
            }
        }

        /// Add `d` at the front, as IPVS does.
        pub fn add(&mut self, d: Dest) -> &mut Self {
            self.dests.insert(0, d);
            self.sched.update(&self.dests);
            self
        }

        /// Change the weight of the destination with last octet `n`.
        pub fn edit(&mut self, n: u8, weight: i32) -> &mut Self {
            let d = self
                .dests
                .iter_mut()
                .find(|d| d.addr == ip(n))
                .expect("no such dest");
            d.weight = weight;
            if weight > 0 {
                d.last_weight = weight;
            }
            self.sched.update(&self.dests);
            self
        }

        /// Delete the destination with last octet `n`.
        pub fn del(&mut self, n: u8) -> &mut Self {
            self.dests.retain(|d| d.addr != ip(n));
            self.sched.update(&self.dests);
            self
        }

        /// The destination with last octet `n`.
        pub fn get(&self, n: u8) -> &Dest {
            self.dests
                .iter()
                .find(|d| d.addr == ip(n))
                .expect("no such dest")
        }

        /// Schedule `flow` at time `now_ns`; the chosen last octet, or None.
        pub fn pick_at(&mut self, flow: &Flow, now_ns: u64) -> Option<u8> {
            let i = self.sched.schedule(&self.dests, flow, now_ns)?;
            match self.dests[i].addr {
                IpAddr::V4(a) => Some(a.octets()[3]),
                IpAddr::V6(_) => Some(0),
            }
        }

        /// Schedule `flow`; the chosen last octet, or None.
        pub fn pick_flow(&mut self, flow: &Flow) -> Option<u8> {
            self.pick_at(flow, 0)
        }

        /// Schedule a fixed flow `n` times; the chosen last octets.
        pub fn picks(&mut self, n: usize) -> Vec<Option<u8>> {
            let f = any_flow();
            (0..n).map(|_| self.pick_flow(&f)).collect()
        }
    }

    /// `Some(n)` for each of `ns`, for comparing with [`Svc::picks`].
    pub fn some(ns: &[u8]) -> Vec<Option<u8>> {
        ns.iter().map(|&n| Some(n)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn fold_v4_is_host_order() {
        assert_eq!(
            fold_addr(&IpAddr::V4(Ipv4Addr::new(1, 2, 3, 4))),
            0x0102_0304
        );
    }

    #[test]
    fn fold_v6_xors_words() {
        let a = IpAddr::V6(Ipv6Addr::new(0x2001, 0x0db8, 0, 1, 0, 0, 0xffff, 0x0002));
        // words 2001:0db8, 0000:0001, 0000:0000, ffff:0002
        assert_eq!(fold_addr(&a), 0x2001_0db8 ^ 0x0000_0001 ^ 0xffff_0002);
    }

    #[test]
    fn hash_32_matches_definition() {
        assert_eq!(hash_32(0, 8), 0);
        assert_eq!(hash_32(1, 8), 0x61);
        // 2 * 0x61C88647 = 0xC3910C8E
        assert_eq!(hash_32(2, 8), 0xC3);
        // 3 * 0x61C88647 = 0x1_2559_92D5 -> 0x255992D5
        assert_eq!(hash_32(3, 8), 0x25);
    }

    #[test]
    fn cross_multiplication() {
        // 10/2 > 4/1
        assert!(more_loaded(10, 2, 4, 1));
        // 8/2 == 4/1: not more loaded
        assert!(!more_loaded(8, 2, 4, 1));
        // huge values do not overflow
        assert!(more_loaded(u64::MAX, 1, u64::MAX, 2));
    }

    #[test]
    fn lanes_choose_like_the_plain_scan() {
        use crate::common::testutil::{dest, set_conns, set_overloaded};
        let mut seed = 0x5eed_0008u64;
        let mut rnd = move |m: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % m
        };
        for _ in 0..3000 {
            let n = rnd(40) as u8;
            let dests: Vec<Dest> = (0..n).map(|i| dest(i, rnd(4) as i32)).collect();
            for d in &dests {
                set_conns(d, rnd(3) as u32, rnd(4) as u32);
                set_overloaded(d, rnd(8) == 0);
            }
            assert_eq!(
                weighted_least(&dests, conn_overhead),
                weighted_least_plain(&dests, conn_overhead)
            );
            assert_eq!(
                weighted_least(&dests, sed_overhead),
                weighted_least_plain(&dests, sed_overhead)
            );
        }
    }

    #[test]
    fn gcd_basics() {
        assert_eq!(gcd(0, 5), 5);
        assert_eq!(gcd(12, 18), 6);
        assert_eq!(gcd(7, 3), 1);
    }
}
