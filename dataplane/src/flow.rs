//! The 5-tuple a connection is keyed on.

use std::net::{IpAddr, Ipv4Addr};

/// A connection's key as seen on the client → director path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// IP protocol number.
    pub proto: u8,
    /// Client address.
    pub cip: Ipv4Addr,
    /// Client port.
    pub cport: u16,
    /// Virtual address.
    pub vip: Ipv4Addr,
    /// Virtual port.
    pub vport: u16,
}

impl FlowKey {
    /// A well-mixed 64-bit hash (no allocation, no per-process seed so
    /// tables behave the same in tests and benches).
    #[inline]
    pub fn hash64(&self) -> u64 {
        let a = u64::from(u32::from(self.cip)) << 32 | u64::from(u32::from(self.vip));
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
            saddr: IpAddr::V4(self.cip),
            sport: self.cport,
            daddr: IpAddr::V4(self.vip),
            dport: self.vport,
        }
    }
}
