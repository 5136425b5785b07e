//! Internet checksum (RFC 1071) and its incremental update (RFC 1624),
//! and the completion of the partial checksums a sender with TX checksum
//! offload leaves for its "hardware" to finish.
//!
//! A Linux host whose interface offloads TX checksums (every veth,
//! container and namespace by default) hands over TCP and UDP with
//! `CHECKSUM_PARTIAL`: the checksum field holds only the folded,
//! uncomplemented pseudo-header sum. A kernel receiving such a frame over
//! a veth trusts it; bytes that AF_XDP forwards lose that mark, and the
//! real server drops them. Such a field is recognised by its value alone
//! (the frame's metadata does not carry the kernel's mark) and completed
//! before any rewrite, so every forwarding method starts from a correct
//! checksum.

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

/// Fold a 32-bit sum into 16 bits (end-around carry).
#[inline]
pub fn fold(acc: u32) -> u16 {
    // The high half of `acc + rotl(acc, 16)` is hi + lo plus the carry
    // out of lo + hi in the low half: the end-around-carry sum of the two
    // halves, which is what folding until it fits gives (0 only for 0).
    (acc.wrapping_add(acc.rotate_left(16)) >> 16) as u16
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

    /// An IPv6 address changed from `old` to `new` (eight words; RFC 1624
    /// over the pseudo-header of TCP, UDP and ICMPv6).
    #[inline]
    pub fn add_addr6(&mut self, old: std::net::Ipv6Addr, new: std::net::Ipv6Addr) {
        let (o, n) = (u128::from(old), u128::from(new));
        for i in 0..8 {
            let shift = 112 - 16 * i;
            self.add16((o >> shift) as u16, (n >> shift) as u16);
        }
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
        !fold64(u64::from(!check) + self.0)
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

/// RFC 1624 for an IPv6 address and a port changed together (a NAT
/// rewrite of a TCP, UDP or ICMPv6 checksum over the IPv6 pseudo-header):
/// eight words of address and one of port, one fold.
pub fn update_addr6_port(
    check: u16,
    old_addr: std::net::Ipv6Addr,
    new_addr: std::net::Ipv6Addr,
    old_port: u16,
    new_port: u16,
) -> u16 {
    let mut d = Delta::new();
    d.add_addr6(old_addr, new_addr);
    d.add16(old_port, new_port);
    d.apply(check)
}

/// [`update_addr6_port`] for UDP: a computed 0 is sent as `0xffff`. A
/// field of 0 (no checksum, which IPv6 allows only in tunnels, RFC 6935)
/// stays 0.
pub fn update_addr6_port_udp(
    check: u16,
    old_addr: std::net::Ipv6Addr,
    new_addr: std::net::Ipv6Addr,
    old_port: u16,
    new_port: u16,
) -> u16 {
    let mut d = Delta::new();
    d.add_addr6(old_addr, new_addr);
    d.add16(old_port, new_port);
    d.apply_udp(check)
}

/// Unfolded sum of the IPv6 pseudo-header (RFC 8200 §8.1) of an
/// upper-layer packet of `len` bytes with next header `next` (TCP, UDP,
/// ICMPv6): both addresses, the 32-bit length, the next header.
pub fn pseudo_header_sum6(
    src: std::net::Ipv6Addr,
    dst: std::net::Ipv6Addr,
    next: u8,
    len: u32,
) -> u64 {
    // 16 words of at most 0xffff each, plus 3 more: far below 2^64.
    u64::from(sum(&src.octets()))
        + u64::from(sum(&dst.octets()))
        + u64::from(len >> 16)
        + u64::from(len & 0xffff)
        + u64::from(next)
}

/// Full checksum of an upper-layer packet `seg` (TCP, UDP or ICMPv6, its
/// checksum field reading 0 or excluded by the caller) over the IPv6
/// pseudo-header. `dst` is the final destination (the last address of a
/// routing header, if any). For UDP apply [`udp_wire`] before writing it.
pub fn transport_checksum6(
    src: std::net::Ipv6Addr,
    dst: std::net::Ipv6Addr,
    next: u8,
    seg: &[u8],
) -> u16 {
    // An upper-layer packet of a non-jumbo IPv6 packet is below 2^16 bytes.
    let len = seg.len() as u32;
    !fold64(pseudo_header_sum6(src, dst, next, len) + sum_wide(seg))
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
    !fold64(u64::from(pseudo_header_sum(src, dst, proto, len)) + u64::from(sum(seg)))
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

/// Unfolded sum of `data` as 16-bit big-endian words (the same
/// one's-complement value as [`sum`]), for long data: the completion of a
/// partial checksum sums a whole segment.
///
/// It adds native-endian 32-bit words into 64 bits (no byte swap, and a
/// loop the compiler vectorises): 2^16 = 1 (mod 0xffff), so 32-bit words
/// sum like their two halves, and a sum taken in the other byte order is
/// the byte swap of the right one (RFC 1071, 2.B), swapped back once.
#[inline]
pub fn sum_wide(data: &[u8]) -> u64 {
    let mut acc: u64 = 0;
    let mut words = data.chunks_exact(4);
    for w in &mut words {
        // Each step adds < 2^32: 64 bits never overflow.
        acc += u64::from(u32::from_ne_bytes([w[0], w[1], w[2], w[3]]));
    }
    u64::from(u16::from_be(fold64(acc))) + u64::from(sum(words.remainder()))
}

/// Fold a 64-bit sum into 16 bits (end-around carry).
#[inline]
pub fn fold64(acc: u64) -> u16 {
    // The high half of `acc + rotl(acc, 32)` is the end-around-carry sum
    // of the two 32-bit halves (the carry out of the low half lands in
    // it); [`fold`] does the same for 16 bits. Six instructions, no
    // data-dependent loop, the same value as folding until it fits.
    fold((acc.wrapping_add(acc.rotate_left(32)) >> 32) as u32)
}

/// Offset of the checksum in a TCP header.
const TCP_CHECK: usize = 16;
/// Offset of the checksum in a UDP header.
const UDP_CHECK: usize = 6;
/// IPv4 protocol numbers (as in `wire::ipv4`).
const TCP: u8 = 6;
const UDP: u8 = 17;

/// The checksum field of the TCP or UDP segment in IPv4 packet `ip`: its
/// offset, the segment's bounds and the partial value the field would
/// hold, and the value it holds, `(field, start, end, partial, value)`.
/// `None` for anything else: not IPv4, a bad header or length, a fragment (the kernel completes
/// checksums before it fragments), another protocol, a segment shorter
/// than its header, or a UDP length that disagrees with the IPv4 one
/// (Linux never sends that partial).
///
/// The partial value is what Linux leaves in the field of a segment it
/// sends with `CHECKSUM_PARTIAL`: `~csum_tcpudp_magic(src, dst, len,
/// proto, 0)`, i.e. the pseudo-header sum folded with end-around carry and
/// not complemented. It is never 0 (the sum includes the nonzero protocol
/// number, and folding a nonzero sum never gives 0), so UDP's "no
/// checksum" 0 can never be taken for it.
///
/// This runs on every forwarded IPv4 packet, nearly always to find a
/// complete checksum, so the checks are merged where one comparison does:
/// version and header length in one range of the first byte, the flags
/// and fragment offset in one 16-bit mask, and the segment taken as one
/// slice so that its fields read without further bounds checks.
#[inline]
fn partial_at(ip: &[u8]) -> Option<(usize, usize, usize, u16, u16)> {
    // The fixed header as an array: its fields read without bounds checks.
    let h: &[u8; 20] = ip.first_chunk()?;
    // Version 4 and a header of 20 to 60 bytes: 0x45..=0x4f.
    if !(0x45..=0x4f).contains(&h[0]) {
        return None;
    }
    let ihl = usize::from(h[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([h[2], h[3]]));
    // More fragments or a fragment offset (any bit but DF and the
    // reserved one).
    if u16::from_be_bytes([h[6], h[7]]) & 0x3fff != 0 {
        return None;
    }
    let seg = ip.get(ihl..total)?;
    let len = seg.len();
    let (at, value) = match (h[9], seg) {
        (TCP, [_, _, _, _, _, _, _, _, _, _, _, _, _, _, _, _, c0, c1, _, _, ..]) => {
            (TCP_CHECK, u16::from_be_bytes([*c0, *c1]))
        }
        (UDP, [_, _, _, _, l0, l1, c0, c1, ..])
            if usize::from(u16::from_be_bytes([*l0, *l1])) == len =>
        {
            (UDP_CHECK, u16::from_be_bytes([*c0, *c1]))
        }
        _ => return None,
    };
    // Both addresses as one 64-bit word: its four 16-bit halves summed
    // (below 2^34 with the protocol and the length).
    let a = u64::from_be_bytes([h[12], h[13], h[14], h[15], h[16], h[17], h[18], h[19]]);
    let acc = (a >> 32) + (a & 0xffff_ffff) + u64::from(h[9]) + len as u64;
    Some((ihl + at, ihl, total, fold64(acc), value))
}

/// Whether the TCP or UDP checksum of IPv4 packet `ip` (from its header
/// on) is a partial one: exactly the folded pseudo-header sum.
pub fn is_partial_ipv4(ip: &[u8]) -> bool {
    partial_at(ip).is_some_and(|(_, _, _, partial, value)| value == partial)
}

/// Complete a partial TCP or UDP checksum in IPv4 packet `ip` (from its
/// header on), as the sender's NIC would have; returns whether it did.
///
/// The field already holds the pseudo-header sum, so the full checksum is
/// the complement of the segment's sum taken with the field as it is
/// (UDP: a result of 0 is sent as `0xffff`). Anything else is left alone:
/// a correct checksum, and a wrong one, which stays wrong for the
/// receiver to drop, unless it happens to equal the pseudo-header sum
/// (1 in 65536 of corrupted segments): then it is indistinguishable from
/// a partial one and comes out "repaired". A correct checksum that equals
/// the pseudo-header sum is recomputed to the same value.
#[inline]
pub fn complete_partial_ipv4(ip: &mut [u8]) -> bool {
    match partial_at(ip) {
        Some((at, start, end, partial, value)) if value == partial => {
            complete_at(ip, at, start..end);
            true
        }
        _ => false,
    }
}

/// Write the full checksum into the partial field at `at` of the segment
/// `seg` of IPv4 packet `ip`. Out of line: the test above, which every
/// packet pays, stays small enough to inline, and this sum over the whole
/// segment dwarfs a call.
#[inline(never)]
fn complete_at(ip: &mut [u8], at: usize, seg: std::ops::Range<usize>) {
    let c = !fold64(sum_wide(&ip[seg]));
    let c = if ip[9] == UDP { udp_wire(c) } else { c };
    super::set_u16(ip, at, c);
}

/// [`complete_partial_ipv4`] on an Ethernet frame (an untagged IPv4
/// frame; anything else is left alone); returns whether it completed one.
#[inline]
pub fn complete_partial(frame: &mut [u8]) -> bool {
    match frame.split_first_chunk_mut::<14>() {
        Some((eth, ip)) if u16::from_be_bytes([eth[12], eth[13]]) == 0x0800 => {
            complete_partial_ipv4(ip)
        }
        _ => false,
    }
}

/// The checksum field of the TCP or UDP segment in IPv6 packet `ip`,
/// behind any extension headers [`super::ipv6::walk`] steps over, as
/// [`partial_at`] finds it for IPv4. `None` also for a fragment and for a
/// packet with a routing header (its pseudo-header's destination is not
/// the one in the fixed header).
fn partial_at6(ip: &[u8]) -> Option<(usize, usize, usize, u16)> {
    use super::ipv6::{self, Ipv6Packet, Upper};
    let p = Ipv6Packet::new_checked(ip).ok()?;
    let end = ipv6::HEADER_LEN + p.payload_len();
    let Ok(Upper::Transport {
        proto,
        offset,
        routed: false,
    }) = p.upper()
    else {
        return None;
    };
    let start = ipv6::HEADER_LEN + offset;
    let len = end - start;
    let at = match proto {
        TCP if len >= 20 => start + TCP_CHECK,
        UDP if len >= 8 && usize::from(super::get_u16(ip, start + 4)) == len => start + UDP_CHECK,
        _ => return None,
    };
    let acc = pseudo_header_sum6(p.src(), p.dst(), proto, len as u32);
    Some((at, start, end, fold64(acc)))
}

/// Whether the TCP or UDP checksum of IPv6 packet `ip` (from its header
/// on) is a partial one (see [`is_partial_ipv4`]).
pub fn is_partial_ipv6(ip: &[u8]) -> bool {
    partial_at6(ip).is_some_and(|(at, _, _, partial)| super::get_u16(ip, at) == partial)
}

/// Complete a partial TCP or UDP checksum in IPv6 packet `ip` (from its
/// header on), as [`complete_partial_ipv4`] does for IPv4; returns whether
/// it did.
pub fn complete_partial_ipv6(ip: &mut [u8]) -> bool {
    let Some((at, start, end, partial)) = partial_at6(ip) else {
        return false;
    };
    if super::get_u16(ip, at) != partial {
        return false;
    }
    let is_udp = at == start + UDP_CHECK;
    let c = !fold64(sum_wide(&ip[start..end]));
    let c = if is_udp { udp_wire(c) } else { c };
    super::set_u16(ip, at, c);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    const CLIENT: [u8; 4] = [198, 18, 0, 10];
    const VIP: [u8; 4] = [198, 18, 0, 100];

    fn tcp(payload: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ethernet2([2; 6], [4; 6])
            .ipv4(CLIENT, VIP, 64)
            .tcp(40000, 80, 7, 65535)
            .ack(1);
        let mut out = Vec::new();
        b.write(&mut out, payload).unwrap();
        out
    }

    fn udp(payload: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ethernet2([2; 6], [4; 6])
            .ipv4(CLIENT, VIP, 64)
            .udp(40000, 53);
        let mut out = Vec::new();
        b.write(&mut out, payload).unwrap();
        out
    }

    /// Offset of the L4 checksum in the frames above (no IP options).
    fn at(frame: &[u8]) -> usize {
        14 + 20
            + if frame[23] == TCP {
                TCP_CHECK
            } else {
                UDP_CHECK
            }
    }

    /// The frame as Linux would send it with TX checksum offload: the
    /// field holds `~csum_tcpudp_magic(..)`, computed here from the
    /// pseudo-header alone with the crate's general functions.
    fn make_partial(frame: &mut [u8]) {
        let ip = &frame[14..];
        let len = (ip.len() - 20) as u16;
        let src = std::net::Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
        let dst = std::net::Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
        let p = fold(pseudo_header_sum(src, dst, ip[9], len));
        let a = at(frame);
        frame[a..a + 2].copy_from_slice(&p.to_be_bytes());
    }

    fn field(frame: &[u8]) -> u16 {
        let a = at(frame);
        u16::from_be_bytes([frame[a], frame[a + 1]])
    }

    #[test]
    fn wide_sum_folds_like_the_word_sum() {
        let data: Vec<u8> = (0..1503u32).map(|i| (i * 7919 % 251) as u8).collect();
        for n in [0, 1, 2, 7, 8, 9, 15, 16, 64, 1500, 1503] {
            assert_eq!(fold64(sum_wide(&data[..n])), fold(sum(&data[..n])), "{n}");
        }
    }

    #[test]
    fn a_partial_frame_completed_equals_the_full_checksum() {
        let payloads: [&[u8]; 5] = [b"", b"x", b"0123456789abcdef", &[0xff; 1460], &[0x5a; 999]];
        for payload in payloads {
            for good in [tcp(payload), udp(payload)] {
                let mut f = good.clone();
                make_partial(&mut f);
                assert_ne!(field(&f), field(&good));
                assert!(is_partial_ipv4(&f[14..]));
                assert!(complete_partial(&mut f));
                assert_eq!(f, good, "completed as etherparse computes it");
                assert!(!is_partial_ipv4(&f[14..]));
            }
        }
    }

    /// Folding until it fits, the way RFC 1071 describes it.
    fn fold_slow(mut acc: u64) -> u16 {
        while acc > 0xffff {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc as u16
    }

    fn rnd_from(mut seed: u64) -> impl FnMut(u64) -> u64 {
        move |m: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % m
        }
    }

    #[test]
    fn folds_match_folding_until_it_fits() {
        let mut rnd = rnd_from(0xf01d);
        let edges32 = [
            0u32,
            1,
            0xfffe,
            0xffff,
            0x1_0000,
            0x1_fffe,
            0xffff_0000,
            0xffff_ffff,
        ];
        for v in edges32
            .into_iter()
            .chain((0..100_000).map(|_| rnd(1 << 32) as u32))
        {
            assert_eq!(fold(v), fold_slow(u64::from(v)), "{v:#x}");
        }
        let edges64 = [
            0u64,
            u64::MAX,
            0xffff_ffff,
            1 << 32,
            (1 << 32) - 1,
            0xffff_0000_ffff,
        ];
        let wide = (0..100_000).map(|_| rnd(u64::MAX) << rnd(3));
        for v in edges64.into_iter().chain(wide) {
            assert_eq!(fold64(v), fold_slow(v), "{v:#x}");
        }
        // Delta::apply folds through fold64: the same as the loop.
        for _ in 0..10_000 {
            let mut d = Delta::new();
            for _ in 0..rnd(40) {
                d.add16(rnd(1 << 16) as u16, rnd(1 << 16) as u16);
            }
            let check = rnd(1 << 16) as u16;
            assert_eq!(d.apply(check), !fold_slow(u64::from(!check) + d.0));
        }
    }

    /// The partial value of IPv4 packet `ip` and its field offset, read
    /// field by field as the RFCs describe the headers.
    fn plain_partial(ip: &[u8]) -> Option<(usize, u16)> {
        let be = |at: usize| u16::from_be_bytes([ip[at], ip[at + 1]]);
        if ip.len() < 20 || ip[0] >> 4 != 4 {
            return None;
        }
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        let total = usize::from(be(2));
        let more_fragments = be(6) & 0x2000 != 0;
        let offset = be(6) & 0x1fff;
        if ihl < 20 || total < ihl || total > ip.len() || more_fragments || offset != 0 {
            return None;
        }
        let len = total - ihl;
        let at = match ip[9] {
            6 if len >= 20 => ihl + 16,
            17 if len >= 8 && usize::from(be(ihl + 4)) == len => ihl + 6,
            _ => return None,
        };
        let words = [be(12), be(14), be(16), be(18), u16::from(ip[9]), len as u16];
        let sum: u64 = words.iter().map(|&w| u64::from(w)).sum();
        Some((at, fold_slow(sum)))
    }

    /// The full checksum of the segment of `ip` with its field at `at`,
    /// summed word by word with the field taken as 0.
    fn plain_full(ip: &[u8], at: usize) -> u16 {
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
        let mut seg = ip[ihl..total].to_vec();
        seg[at - ihl..at - ihl + 2].copy_from_slice(&[0, 0]);
        if seg.len() % 2 == 1 {
            seg.push(0);
        }
        let mut acc: u64 = [12, 14, 16, 18]
            .iter()
            .map(|&i| u64::from(u16::from_be_bytes([ip[i], ip[i + 1]])))
            .sum();
        acc += u64::from(ip[9]) + (total - ihl) as u64;
        for w in seg.chunks(2) {
            acc += u64::from(u16::from_be_bytes([w[0], w[1]]));
        }
        let c = !fold_slow(acc);
        if ip[9] == 17 && c == 0 {
            0xffff
        } else {
            c
        }
    }

    /// Random IPv4 TCP and UDP packets, well formed or broken in every
    /// field the test reads (version, header length and options, total
    /// length, fragment bits, protocol, UDP length, truncation), with
    /// partial, correct or random checksum fields: detection and
    /// completion agree with the plain reading above on every one.
    #[test]
    fn partial_detection_and_completion_match_a_plain_reading() {
        let mut rnd = rnd_from(0x9a27);
        let mut completed = 0;
        for case in 0..40_000 {
            let udp = rnd(2) == 0;
            let opts = if rnd(4) == 0 { 4 * rnd(11) as usize } else { 0 };
            let ihl = 20 + opts;
            let l4 = if udp { 8 } else { 20 + 4 * rnd(3) as usize };
            let seg_len = l4 + rnd(40) as usize;
            let mut ip = vec![0u8; ihl + seg_len];
            for b in ip.iter_mut() {
                *b = rnd(256) as u8;
            }
            ip[0] = 0x40 | (ihl / 4) as u8;
            ip[2..4].copy_from_slice(&((ihl + seg_len) as u16).to_be_bytes());
            ip[6..8].copy_from_slice(&[0x40, 0]);
            ip[9] = if udp { 17 } else { 6 };
            if udp {
                ip[ihl + 4..ihl + 6].copy_from_slice(&(seg_len as u16).to_be_bytes());
            }
            let at = ihl + if udp { 6 } else { 16 };
            // The field: partial, correct or anything.
            match rnd(3) {
                0 => {
                    let (_, p) = plain_partial(&ip).expect("well formed");
                    ip[at..at + 2].copy_from_slice(&p.to_be_bytes());
                }
                1 => {
                    let c = plain_full(&ip, at);
                    ip[at..at + 2].copy_from_slice(&c.to_be_bytes());
                }
                _ => {}
            }
            // Then break something, or not.
            match rnd(12) {
                0 => ip[0] = (rnd(16) as u8) << 4 | (ip[0] & 0x0f),
                1 => ip[0] = 0x40 | rnd(16) as u8,
                2 => {
                    let t = (ihl + seg_len) as u64 + rnd(9) - 4;
                    ip[2..4].copy_from_slice(&(t as u16).to_be_bytes());
                }
                3 => {
                    let f = [0x2000u16, 0x0001, 0x1fff, 0x8000, 0x0000, 0x6000][rnd(6) as usize];
                    ip[6..8].copy_from_slice(&f.to_be_bytes());
                }
                4 => ip[9] = [1, 6, 17, 132, rnd(256) as u8][rnd(5) as usize],
                5 if udp => ip[ihl + 5] ^= 1 << rnd(8),
                6 => ip.truncate(rnd(ip.len() as u64 + 1) as usize),
                7 => ip.extend_from_slice(&[0xab; 6]),
                _ => {}
            }
            let want = plain_partial(&ip);
            let partial = want.is_some_and(|(at, p)| u16::from_be_bytes([ip[at], ip[at + 1]]) == p);
            assert_eq!(is_partial_ipv4(&ip), partial, "case {case}: {ip:02x?}");
            let mut expect = ip.clone();
            if let (true, Some((at, _))) = (partial, want) {
                let c = plain_full(&ip, at);
                expect[at..at + 2].copy_from_slice(&c.to_be_bytes());
            }
            let mut frame = vec![2, 2, 2, 2, 2, 2, 4, 4, 4, 4, 4, 4, 0x08, 0x00];
            frame.extend_from_slice(&ip);
            assert_eq!(complete_partial(&mut frame), partial, "case {case}");
            assert_eq!(&frame[14..], &expect[..], "case {case}");
            completed += usize::from(partial);
        }
        // Every kind of case came up.
        assert!(completed > 5_000, "{completed}");
    }

    #[test]
    fn fold64_folds_every_width() {
        for acc in [
            0u64,
            0xffff,
            0x1_0000,
            0x1_fffe,
            u64::MAX,
            0xffff_ffff,
            1 << 48,
        ] {
            let mut slow = acc;
            while slow > 0xffff {
                slow = (slow & 0xffff) + (slow >> 16);
            }
            assert_eq!(u64::from(fold64(acc)), slow, "{acc:#x}");
        }
    }

    #[test]
    fn a_udp_sum_of_zero_is_sent_as_ffff() {
        // Find a payload whose UDP checksum is the "computed 0" case.
        let good = (0..=u16::MAX)
            .map(|w| udp(&w.to_be_bytes()))
            .find(|f| field(f) == 0xffff)
            .expect("some 2-byte payload sums to zero");
        let mut f = good.clone();
        make_partial(&mut f);
        assert!(complete_partial(&mut f));
        assert_eq!(field(&f), 0xffff);
        assert_eq!(f, good);
    }

    #[test]
    fn correct_and_corrupted_frames_are_left_alone() {
        for good in [tcp(b"hello, world"), udp(b"hello, world")] {
            let mut f = good.clone();
            assert!(!complete_partial(&mut f));
            assert_eq!(f, good);
            // A flipped payload bit: the checksum is wrong and stays so.
            let mut bad = good.clone();
            let last = bad.len() - 1;
            bad[last] ^= 0x10;
            let copy = bad.clone();
            assert!(!complete_partial(&mut bad));
            assert_eq!(bad, copy);
            // A wrong checksum field (but not the pseudo-header sum).
            let mut bad = good.clone();
            let a = at(&bad);
            bad[a] ^= 0x01;
            let copy = bad.clone();
            assert!(!complete_partial(&mut bad));
            assert_eq!(bad, copy);
        }
        // UDP without a checksum stays without.
        let mut f = udp(b"no checksum");
        let a = at(&f);
        f[a..a + 2].copy_from_slice(&[0, 0]);
        let copy = f.clone();
        assert!(!complete_partial(&mut f));
        assert_eq!(f, copy);
    }

    #[test]
    fn fragments_truncations_and_other_frames_are_left_alone() {
        let mut f = tcp(b"0123456789");
        make_partial(&mut f);
        // A fragment (MF set): untouched.
        let mut frag = f.clone();
        frag[14 + 6] |= 0x20;
        let copy = frag.clone();
        assert!(!complete_partial(&mut frag));
        assert_eq!(frag, copy);
        // Every truncation: untouched, no panic.
        for n in 0..f.len() {
            let mut t = f[..n].to_vec();
            let copy = t.clone();
            assert!(!complete_partial(&mut t));
            assert_eq!(t, copy);
        }
        // A UDP length that disagrees with the IPv4 one.
        let mut u = udp(b"abcdefgh");
        make_partial(&mut u);
        u[14 + 20 + 4..14 + 20 + 6].copy_from_slice(&12u16.to_be_bytes());
        let copy = u.clone();
        assert!(!complete_partial(&mut u));
        assert_eq!(u, copy);
        // Not IPv4.
        let mut arp = f.clone();
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert!(!complete_partial(&mut arp));
    }

    #[test]
    fn ethernet_padding_is_not_summed() {
        let good = tcp(b"");
        let mut f = good.clone();
        make_partial(&mut f);
        f.extend_from_slice(&[0xab; 6]); // padded to the 60-byte minimum
        assert!(complete_partial(&mut f));
        assert_eq!(&f[..good.len()], &good[..]);
    }

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

    const C6: [u8; 16] = [0x20, 0x01, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10];
    const V6: [u8; 16] = [0x20, 0x01, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0];

    fn ip6(udp: bool, payload: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ipv6(C6, V6, 64);
        let mut out = Vec::new();
        if udp {
            b.udp(40000, 53).write(&mut out, payload).unwrap();
        } else {
            b.tcp(40000, 80, 7, 65535)
                .ack(1)
                .write(&mut out, payload)
                .unwrap();
        }
        out
    }

    fn field6(ip: &[u8]) -> (usize, u16) {
        let at = 40 + if ip[6] == TCP { TCP_CHECK } else { UDP_CHECK };
        (at, u16::from_be_bytes([ip[at], ip[at + 1]]))
    }

    #[test]
    fn ipv6_full_checksums_match_etherparse() {
        for payload in [&b""[..], b"x", b"0123456789abcdef", &[0xff; 1400]] {
            for udp in [false, true] {
                let good = ip6(udp, payload);
                let (at, want) = field6(&good);
                let mut seg = good[40..].to_vec();
                seg[at - 40..at - 38].copy_from_slice(&[0, 0]);
                let proto = if udp { UDP } else { TCP };
                let c = transport_checksum6(C6.into(), V6.into(), proto, &seg);
                let c = if udp { udp_wire(c) } else { c };
                assert_eq!(c, want, "udp={udp} len={}", payload.len());
            }
        }
    }

    #[test]
    fn ipv6_address_and_port_rewrites_update_incrementally() {
        let news: [(&str, u16); 3] = [("2001:2::11", 8080), ("2001:2:0:ffff::1", 80), ("::", 0)];
        for udp in [false, true] {
            for (addr, port) in news {
                let new: std::net::Ipv6Addr = addr.parse().unwrap();
                let mut p = ip6(udp, b"payload");
                let (at, old) = field6(&p);
                let inc = if udp {
                    update_addr6_port_udp(old, V6.into(), new, 53, port)
                } else {
                    update_addr6_port(old, V6.into(), new, 40000, port)
                };
                p[24..40].copy_from_slice(&new.octets());
                if udp {
                    p[42..44].copy_from_slice(&port.to_be_bytes());
                } else {
                    p[40..42].copy_from_slice(&port.to_be_bytes());
                }
                p[at..at + 2].copy_from_slice(&[0, 0]);
                let proto = if udp { UDP } else { TCP };
                let full = transport_checksum6(C6.into(), new, proto, &p[40..]);
                let full = if udp { udp_wire(full) } else { full };
                assert_eq!(inc, full, "udp={udp} {addr}:{port}");
            }
        }
        // UDP without a checksum stays without.
        assert_eq!(update_addr6_port_udp(0, V6.into(), C6.into(), 1, 2), 0);
    }

    #[test]
    fn ipv6_partial_checksums_are_completed() {
        for udp in [false, true] {
            let good = ip6(udp, b"hello over IPv6");
            let mut f = good.clone();
            let (at, _) = field6(&f);
            let len = (f.len() - 40) as u32;
            let proto = if udp { UDP } else { TCP };
            let partial = fold64(pseudo_header_sum6(C6.into(), V6.into(), proto, len));
            f[at..at + 2].copy_from_slice(&partial.to_be_bytes());
            assert!(is_partial_ipv6(&f));
            assert!(complete_partial_ipv6(&mut f));
            assert_eq!(f, good, "udp={udp}");
            // Correct, truncated and fragmented packets are left alone.
            assert!(!complete_partial_ipv6(&mut f));
            for n in 0..f.len() {
                let mut t = f[..n].to_vec();
                assert!(!complete_partial_ipv6(&mut t));
            }
        }
        // Behind a destination-options header the segment is found.
        let mut f = ip6(false, b"ext");
        let mut with_ext = f[..40].to_vec();
        with_ext[6] = 60;
        with_ext[4..6].copy_from_slice(&((f.len() - 40 + 8) as u16).to_be_bytes());
        with_ext.extend_from_slice(&[TCP, 0, 1, 4, 0, 0, 0, 0]);
        with_ext.extend_from_slice(&f[40..]);
        let good = with_ext.clone();
        let at = 48 + TCP_CHECK;
        let len = (f.len() - 40) as u32;
        let partial = fold64(pseudo_header_sum6(C6.into(), V6.into(), TCP, len));
        with_ext[at..at + 2].copy_from_slice(&partial.to_be_bytes());
        assert!(complete_partial_ipv6(&mut with_ext));
        assert_eq!(with_ext, good);
        // A routing header: the pseudo-header is not the fixed header's.
        f[6] = 43;
        assert!(!is_partial_ipv6(&f));
    }
}
