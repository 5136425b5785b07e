//! Internet checksum (RFC 1071) and its incremental update (RFC 1624).

/// One's-complement sum of `data` as 16-bit big-endian words (unfolded).
pub fn sum(data: &[u8]) -> u32 {
    let mut acc: u32 = 0;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc = acc.wrapping_add(u32::from(u16::from_be_bytes([c[0], c[1]])));
    }
    if let [last] = chunks.remainder() {
        acc = acc.wrapping_add(u32::from(*last) << 8);
    }
    acc
}

/// Fold a 32-bit sum into 16 bits.
pub fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The checksum of `data` (complement of the folded sum).
pub fn checksum(data: &[u8]) -> u16 {
    !fold(sum(data))
}

/// RFC 1624 eqn. 3: the new checksum after a 16-bit field changed from
/// `old` to `new`: HC' = ~(~HC + ~m + m').
pub fn update16(check: u16, old: u16, new: u16) -> u16 {
    let acc = u32::from(!check) + u32::from(!old) + u32::from(new);
    !fold(acc)
}

/// RFC 1624 for a 32-bit field (e.g. an IPv4 address).
pub fn update32(check: u16, old: u32, new: u32) -> u16 {
    let c = update16(check, (old >> 16) as u16, (new >> 16) as u16);
    update16(c, old as u16, new as u16)
}

/// RFC 1624 for an IPv4 address given as [`std::net::Ipv4Addr`].
pub fn update_addr(check: u16, old: std::net::Ipv4Addr, new: std::net::Ipv4Addr) -> u16 {
    update32(check, u32::from(old), u32::from(new))
}

/// RFC 1624 for an address and a port changed together (a NAT rewrite of a
/// TCP or UDP checksum, whose pseudo-header covers the address): one fold
/// for both changes.
pub fn update_addr_port(
    check: u16,
    old_addr: std::net::Ipv4Addr,
    new_addr: std::net::Ipv4Addr,
    old_port: u16,
    new_port: u16,
) -> u16 {
    let mut d = Delta::new();
    d.add_addr(old_addr, new_addr);
    d.add16(old_port, new_port);
    d.apply(check)
}

/// [`update_addr_port`] under UDP's rule (RFC 768): a checksum of 0 means
/// "none" and stays 0; a result of 0 is sent as `0xffff`.
pub fn update_addr_port_udp(
    check: u16,
    old_addr: std::net::Ipv4Addr,
    new_addr: std::net::Ipv4Addr,
    old_port: u16,
    new_port: u16,
) -> u16 {
    let mut d = Delta::new();
    d.add_addr(old_addr, new_addr);
    d.add16(old_port, new_port);
    d.apply_udp(check)
}

/// Accumulated changes of 16-bit words, applied to a checksum at once
/// (RFC 1624 eqn. 3 with all the `~m + m'` terms summed first).
///
/// Every word must sit at an even offset of the checksummed data (true
/// for every IPv4, TCP, UDP and ICMP field this crate rewrites).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delta(u64);

impl Delta {
    /// No change yet.
    pub const fn new() -> Self {
        Delta(0)
    }

    /// A 16-bit word changed from `old` to `new`.
    #[inline]
    pub fn add16(&mut self, old: u16, new: u16) {
        self.0 += u64::from(!old) + u64::from(new);
    }

    /// A 32-bit field (two aligned words) changed from `old` to `new`.
    #[inline]
    pub fn add32(&mut self, old: u32, new: u32) {
        self.add16((old >> 16) as u16, (new >> 16) as u16);
        self.add16(old as u16, new as u16);
    }

    /// An IPv4 address changed from `old` to `new`.
    #[inline]
    pub fn add_addr(&mut self, old: std::net::Ipv4Addr, new: std::net::Ipv4Addr) {
        self.add32(u32::from(old), u32::from(new));
    }

    /// Bytes at an even offset changed from `old` to `new` (same length;
    /// an odd trailing byte counts as the high half of a word).
    pub fn add_bytes(&mut self, old: &[u8], new: &[u8]) {
        debug_assert_eq!(old.len(), new.len());
        self.0 += u64::from(!fold(sum(old))) + u64::from(fold(sum(new)));
    }

    /// The checksum `check` updated by every change recorded.
    #[inline]
    pub fn apply(self, check: u16) -> u16 {
        let mut acc = u64::from(!check) + self.0;
        while acc > 0xffff {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        !(acc as u16)
    }

    /// [`Delta::apply`] under UDP's rule: 0 (no checksum) stays 0 and a
    /// computed 0 is sent as `0xffff`.
    #[inline]
    pub fn apply_udp(self, check: u16) -> u16 {
        if check == 0 {
            return 0;
        }
        match self.apply(check) {
            0 => 0xffff,
            c => c,
        }
    }
}

/// Unfolded sum of the IPv4 pseudo-header of a TCP or UDP segment of
/// `len` bytes (RFC 793, RFC 768).
pub fn pseudo_header_sum(
    src: std::net::Ipv4Addr,
    dst: std::net::Ipv4Addr,
    proto: u8,
    len: u16,
) -> u32 {
    let mut acc = sum(&src.octets()) + sum(&dst.octets());
    acc += u32::from(proto) + u32::from(len);
    acc
}

/// Full checksum of a TCP segment or a UDP datagram `seg` (its checksum
/// field must read 0 or be excluded by the caller), pseudo-header
/// included. For UDP apply [`udp_wire`] before writing it.
pub fn transport_checksum(
    src: std::net::Ipv4Addr,
    dst: std::net::Ipv4Addr,
    proto: u8,
    seg: &[u8],
) -> u16 {
    // Segment lengths are bounded by the 16-bit IPv4 total length.
    let len = seg.len() as u16;
    let acc = u64::from(pseudo_header_sum(src, dst, proto, len)) + u64::from(sum(seg));
    let mut a = acc;
    while a > 0xffff {
        a = (a & 0xffff) + (a >> 16);
    }
    !(a as u16)
}

/// The value a UDP checksum field carries for a computed checksum `c`
/// (RFC 768: 0 means "no checksum", so a computed 0 is sent as `0xffff`).
pub fn udp_wire(c: u16) -> u16 {
    if c == 0 {
        0xffff
    } else {
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incremental_matches_full_recompute() {
        let mut hdr = [
            0x45u8, 0, 0, 60, 0x1c, 0x46, 0x40, 0, 64, 6, 0, 0, 198, 18, 0, 10, 198, 18, 0, 100,
        ];
        let c = checksum(&hdr);
        hdr[10..12].copy_from_slice(&c.to_be_bytes());
        let old = u32::from_be_bytes([hdr[16], hdr[17], hdr[18], hdr[19]]);
        let new = u32::from_be_bytes([198, 18, 1, 11]);
        hdr[16..20].copy_from_slice(&new.to_be_bytes());
        let inc = update32(c, old, new);
        hdr[10..12].copy_from_slice(&[0, 0]);
        assert_eq!(inc, checksum(&hdr));
    }
}
