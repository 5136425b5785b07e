//! The 5-tuple a connection is keyed on, for either address family.
//!
//! Everything keyed on a flow (the key, the connection table's entries,
//! templates and reply index, the scheduler's flow) is generic over the
//! address type, [`Addr`]: `Ipv4Addr` or `Ipv6Addr`. Each family is then
//! compiled on its own, so the IPv4 path keeps its 4-byte addresses and
//! 48-byte entries and pays nothing for IPv6, whose entries hold 16-byte
//! addresses; the pipeline picks the family once, by the frame's EtherType.

use std::fmt::Debug;
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU32, Ordering};

/// An address family's address, as the flow key and the connection table
/// store it.
pub trait Addr: Copy + Eq + Ord + Hash + Debug + Send + Sync + 'static {
    /// How a table entry stores one address: atomics only (the entry may
    /// live in shared memory and is read under a sequence lock).
    type Atom: Debug + crate::io::shm::Plain;
    /// True for IPv6: the hashes fold 128-bit addresses first.
    const WIDE: bool;
    /// The all-zero address.
    const ZERO: Self;
    /// An all-zero atom.
    fn atom() -> Self::Atom;
    /// Read an atom (relaxed: the entry's sequence number orders it).
    fn load(a: &Self::Atom) -> Self;
    /// Write an atom (relaxed).
    fn store(a: &Self::Atom, v: Self);
    /// The address as two 64-bit words, high first (IPv4: `(0, addr)`).
    fn words(self) -> (u64, u64);
    /// The address as `std` knows it.
    fn ip(self) -> IpAddr;
    /// The address of this family in `ip`, if it is one.
    fn of_ip(ip: IpAddr) -> Option<Self>;
    /// The address with only its first `prefix` bits kept (persistence
    /// masks, `-M`).
    fn prefix(self, prefix: u8) -> Self;
    /// The client address a persistence template of `p` is keyed on:
    /// IPv4 masked with `p.mask`, IPv6 cut to `p.prefix` bits.
    fn persist(self, p: &xvs_config::svc::Persist) -> Self;
    /// A firewall mark in an address's place (template keys of
    /// firewall-mark services).
    fn of_mark(mark: u32) -> Self;
}

impl Addr for Ipv4Addr {
    type Atom = AtomicU32;
    const WIDE: bool = false;
    const ZERO: Self = Ipv4Addr::UNSPECIFIED;

    #[inline(always)]
    fn atom() -> AtomicU32 {
        AtomicU32::new(0)
    }

    #[inline(always)]
    fn load(a: &AtomicU32) -> Self {
        Ipv4Addr::from(a.load(Ordering::Relaxed))
    }

    #[inline(always)]
    fn store(a: &AtomicU32, v: Self) {
        a.store(u32::from(v), Ordering::Relaxed);
    }

    #[inline(always)]
    fn words(self) -> (u64, u64) {
        (0, u64::from(u32::from(self)))
    }

    #[inline]
    fn ip(self) -> IpAddr {
        IpAddr::V4(self)
    }

    #[inline]
    fn of_ip(ip: IpAddr) -> Option<Self> {
        match ip {
            IpAddr::V4(a) => Some(a),
            IpAddr::V6(_) => None,
        }
    }

    #[inline]
    fn prefix(self, prefix: u8) -> Self {
        let mask = match prefix {
            0 => 0,
            p if p >= 32 => u32::MAX,
            p => u32::MAX << (32 - p),
        };
        Ipv4Addr::from(u32::from(self) & mask)
    }

    #[inline]
    fn persist(self, p: &xvs_config::svc::Persist) -> Self {
        Ipv4Addr::from(u32::from(self) & p.mask)
    }

    #[inline]
    fn of_mark(mark: u32) -> Self {
        Ipv4Addr::from(mark)
    }
}

impl Addr for Ipv6Addr {
    type Atom = [AtomicU32; 4];
    const WIDE: bool = true;
    const ZERO: Self = Ipv6Addr::UNSPECIFIED;

    #[inline(always)]
    fn atom() -> [AtomicU32; 4] {
        Default::default()
    }

    #[inline(always)]
    fn load(a: &[AtomicU32; 4]) -> Self {
        let w = |i: usize| u128::from(a[i].load(Ordering::Relaxed));
        Ipv6Addr::from(w(0) << 96 | w(1) << 64 | w(2) << 32 | w(3))
    }

    #[inline(always)]
    fn store(a: &[AtomicU32; 4], v: Self) {
        let b = u128::from(v);
        for (i, w) in a.iter().enumerate() {
            w.store((b >> (96 - 32 * i)) as u32, Ordering::Relaxed);
        }
    }

    #[inline(always)]
    fn words(self) -> (u64, u64) {
        let b = u128::from(self);
        ((b >> 64) as u64, b as u64)
    }

    #[inline]
    fn ip(self) -> IpAddr {
        IpAddr::V6(self)
    }

    #[inline]
    fn of_ip(ip: IpAddr) -> Option<Self> {
        match ip {
            IpAddr::V6(a) => Some(a),
            IpAddr::V4(_) => None,
        }
    }

    #[inline]
    fn prefix(self, prefix: u8) -> Self {
        let mask = match prefix {
            0 => 0,
            p if p >= 128 => u128::MAX,
            p => u128::MAX << (128 - u32::from(p)),
        };
        Ipv6Addr::from(u128::from(self) & mask)
    }

    #[inline]
    fn persist(self, p: &xvs_config::svc::Persist) -> Self {
        self.prefix(p.prefix)
    }

    #[inline]
    fn of_mark(mark: u32) -> Self {
        Ipv6Addr::from(u128::from(mark))
    }
}

/// A connection's key as seen on the client → director path (IPv4 unless
/// said otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowKey<A: Addr = Ipv4Addr> {
    /// IP protocol number.
    pub proto: u8,
    /// Client address.
    pub cip: A,
    /// Client port.
    pub cport: u16,
    /// Virtual address.
    pub vip: A,
    /// Virtual port.
    pub vport: u16,
}

/// An IPv6 flow key.
pub type FlowKey6 = FlowKey<Ipv6Addr>;

impl<A: Addr> FlowKey<A> {
    /// A well-mixed 64-bit hash (no allocation, no per-process seed so
    /// tables behave the same in tests and benches).
    #[inline]
    pub fn hash64(&self) -> u64 {
        let (ch, cl) = self.cip.words();
        let (vh, vl) = self.vip.words();
        let a = if A::WIDE {
            (ch ^ cl.rotate_left(32)).wrapping_mul(0xD6E8_FEB8_6659_FD93) ^ vh ^ vl.rotate_left(17)
        } else {
            cl << 32 | vl
        };
        let b = u64::from(self.cport) << 32 | u64::from(self.vport) << 16 | u64::from(self.proto);
        let mut h = a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b.rotate_left(29);
        h ^= h >> 32;
        h = h.wrapping_mul(0xD6E8_FEB8_6659_FD93);
        h ^= h >> 29;
        h
    }

    /// The key as the scheduler crate sees it.
    pub fn to_sched_flow(&self) -> xvs_scheduler::Flow {
        xvs_scheduler::Flow {
            proto: self.proto,
            saddr: self.cip.ip(),
            sport: self.cport,
            daddr: self.vip.ip(),
            dport: self.vport,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_round_trip_through_their_atoms_and_masks() {
        let a: Ipv6Addr = "2001:2:0:1:2:3:4:5".parse().unwrap();
        let atom = Ipv6Addr::atom();
        Ipv6Addr::store(&atom, a);
        assert_eq!(Ipv6Addr::load(&atom), a);
        assert_eq!(a.prefix(64), "2001:2:0:1::".parse::<Ipv6Addr>().unwrap());
        assert_eq!(a.prefix(0), Ipv6Addr::UNSPECIFIED);
        assert_eq!(a.prefix(128), a);
        assert_eq!(a.prefix(20), "2001::".parse::<Ipv6Addr>().unwrap());
        let b = Ipv4Addr::new(198, 18, 7, 9);
        let atom = Ipv4Addr::atom();
        Ipv4Addr::store(&atom, b);
        assert_eq!(Ipv4Addr::load(&atom), b);
        assert_eq!(b.prefix(24), Ipv4Addr::new(198, 18, 7, 0));
        assert_eq!(b.prefix(128), b);
        assert_eq!(Ipv6Addr::of_ip(IpAddr::V4(b)), None);
        assert_eq!(Ipv6Addr::of_mark(7).words(), (0, 7));
    }
}
