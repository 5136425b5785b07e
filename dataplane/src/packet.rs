//! A frame parsed once. The pipeline validates each header a single time,
//! here, and records where everything is; the connection tracker reads the
//! flow from the result and every forwarding method rewrites the frame at
//! the recorded offsets without validating it again. Only Ethernet +
//! unfragmented IPv4 carrying TCP, UDP or an ICMP error about TCP or UDP,
//! and unfragmented IPv6 carrying TCP or UDP behind at most
//! [`MAX_EXT_HEADERS`](crate::wire::ipv6::MAX_EXT_HEADERS) extension
//! headers, is for the director; everything else is passed or dropped
//! here. IPv6 fragments are passed as IPv4's are; a chain that cannot be
//! walked (truncated, too long, hop-by-hop not first) is malformed.

use crate::flow::{Addr, FlowKey};
use crate::verdict::{DropReason, Verdict};
use crate::wire::eth::{self, EthernetFrame, Mac, ETHERTYPE_IPV4, ETHERTYPE_IPV6};
use crate::wire::icmp::{IcmpPacket, QuotedFlow};
use crate::wire::icmpv6;
use crate::wire::ipv4::{Ipv4Packet, PROTO_ICMP, PROTO_TCP, PROTO_UDP};
use crate::wire::ipv6::{self, Ipv6Packet, Upper};
use crate::wire::tcp::TcpPacket;
use crate::wire::udp::UdpPacket;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Offset of the IPv4 header in a frame.
pub const L3: usize = eth::HEADER_LEN;

/// The datagram an ICMP error quotes: its flow and where it lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quoted {
    /// Its 5-tuple, in the direction it was sent.
    pub flow: QuotedFlow,
    /// Frame offset of its IPv4 header (inside the ICMP message).
    pub l3: usize,
    /// Frame offset of its TCP or UDP header.
    pub l4: usize,
    /// Frame offset where what is quoted of it ends (at least `l4 + 8`).
    pub end: usize,
}

/// A validated frame: IPv4 (header and total length inside the frame,
/// not a fragment) over Ethernet, carrying TCP or UDP (`quoted` is
/// `None`: header inside the packet) or an ICMP error about a TCP or UDP
/// datagram (`quoted` is set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parsed<A: Addr = Ipv4Addr> {
    /// The packet's flow: protocol, source and destination address and
    /// port. For an ICMP error the protocol is ICMP and the ports are 0.
    pub key: FlowKey<A>,
    /// TCP flags (0 unless TCP).
    pub tcp_flags: u8,
    /// IPv4 total length.
    pub ip_len: u16,
    /// Frame offset of the transport header (after the IPv4 options).
    pub l4: usize,
    /// Frame offset where the IPv4 packet ends (Ethernet padding after).
    pub end: usize,
    /// For an ICMP error: the datagram it quotes.
    pub quoted: Option<Quoted>,
}

impl<A: Addr> Parsed<A> {
    /// Source MAC of the frame `frame` this was parsed from.
    #[inline]
    pub fn src_mac(&self, frame: &[u8]) -> Mac {
        EthernetFrame::new_unchecked(frame).src()
    }
}

const MALFORMED: Verdict = Verdict::Drop(DropReason::Malformed);

impl<A: Addr> Parsed<A> {
    /// Write the complete checksum of the segment at `at`: out of line,
    /// so the check of [`Parsed::complete_partial`], which every packet
    /// makes, stays small where it is inlined.
    #[inline(never)]
    fn complete_at(&self, frame: &mut [u8], at: usize) {
        use crate::wire::checksum::{fold64, sum_wide, udp_wire};
        use crate::wire::set_u16;
        let c = !fold64(sum_wide(&frame[self.l4..self.end]));
        let c = if self.key.proto == PROTO_UDP {
            udp_wire(c)
        } else {
            c
        };
        set_u16(frame, at, c);
    }
}

impl<A: Addr> Parsed<A> {
    /// Complete a partial TCP or UDP checksum in `frame`, the frame this
    /// was parsed from: the rule of
    /// [`complete_partial`](crate::wire::checksum::complete_partial) and
    /// [`complete_partial_ipv6`](crate::wire::checksum::complete_partial_ipv6),
    /// from the offsets, addresses and protocol the parse already
    /// validated (an IPv6 packet's extension headers walked, no routing
    /// header) instead of reading and checking the headers a second time
    /// (this runs for every packet). Returns whether it completed one.
    #[inline(always)]
    pub fn complete_partial(&self, frame: &mut [u8]) -> bool {
        use crate::wire::checksum::fold64;
        use crate::wire::get_u16;
        // The segment, padding excluded; its header lies inside it (TCP's
        // 20 bytes and more, UDP's 8: checked by the parse).
        let len = self.end - self.l4;
        let at = match self.key.proto {
            PROTO_TCP => self.l4 + 16,
            // Linux never sends a partial UDP checksum whose UDP length
            // disagrees with the IP one.
            PROTO_UDP if usize::from(get_u16(frame, self.l4 + 4)) == len => self.l4 + 6,
            _ => return false,
        };
        // The pseudo-header's addresses in 32-bit words: the same ones'
        // complement sum as its 16-bit words once folded (an IPv4
        // address is one word).
        let words = |a: A| {
            let (h, l) = a.words();
            (h >> 32) + (h & 0xffff_ffff) + (l >> 32) + (l & 0xffff_ffff)
        };
        let acc =
            words(self.key.cip) + words(self.key.vip) + u64::from(self.key.proto) + len as u64;
        if get_u16(frame, at) != fold64(acc) {
            return false;
        }
        self.complete_at(frame, at);
        true
    }
}

/// Parse `frame`. `Err(Verdict::Pass)` when it is not for the director
/// (not IPv4, a fragment, another protocol, an ICMP message that is not an
/// error about TCP or UDP), `Err(Verdict::Drop(Malformed))` when a header
/// it needs is truncated or impossible.
// Always inlined: its result is large, and a call returns it through
// memory that the caller then copies again (every packet).
#[inline(always)]
pub fn parse(frame: &[u8]) -> Result<Parsed, Verdict> {
    match parse_plain(frame) {
        Some(p) => Ok(p),
        None => parse_any(frame),
    }
}

/// The common frame, read at fixed offsets: Ethernet, IPv4 without
/// options and not a fragment, TCP or UDP whose header lies in the
/// packet, the packet in the frame. It accepts only what [`parse_any`]
/// accepts and gives the same result, with a fraction of the checks
/// (one bounds check for all the fixed offsets); anything else is
/// `None` and goes the general way.
#[inline(always)]
pub fn parse_plain(frame: &[u8]) -> Option<Parsed> {
    // Ethernet (14) + IPv4 (20) + TCP (20): a UDP frame shorter than this
    // takes the general way (a minimum Ethernet frame is 60 bytes).
    let h: &[u8; 54] = frame.first_chunk()?;
    // EtherType IPv4, version 4, header length 20.
    if h[12..15] != [0x08, 0x00, 0x45] {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([h[16], h[17]]));
    let frag = u16::from_be_bytes([h[20], h[21]]);
    let end = L3 + total;
    if frag & 0x3fff != 0 || total < 20 || frame.len() < end {
        return None;
    }
    const L4: usize = L3 + 20;
    const _: () = assert!(L4 + 20 == 54, "the transport header ends the block");
    let seg = total - 20;
    let proto = h[23];
    // The transport header is the block's last 20 bytes.
    let tcp_flags = plain_l4(h.last_chunk()?, proto, seg)?;
    Some(Parsed {
        key: FlowKey {
            proto,
            cip: Ipv4Addr::new(h[26], h[27], h[28], h[29]),
            cport: u16::from_be_bytes([h[L4], h[L4 + 1]]),
            vip: Ipv4Addr::new(h[30], h[31], h[32], h[33]),
            vport: u16::from_be_bytes([h[L4 + 2], h[L4 + 3]]),
        },
        tcp_flags,
        ip_len: total as u16,
        l4: L4,
        end,
        quoted: None,
    })
}

/// [`parse`] of any frame, every header checked through its view.
#[inline(never)]
pub fn parse_any(frame: &[u8]) -> Result<Parsed, Verdict> {
    let eth = EthernetFrame::new_checked(frame).map_err(|_| MALFORMED)?;
    if eth.ethertype() != ETHERTYPE_IPV4 {
        return Err(Verdict::Pass);
    }
    let ip = Ipv4Packet::new_checked(eth.payload()).map_err(|_| MALFORMED)?;
    if ip.is_fragment() {
        return Err(Verdict::Pass);
    }
    let l4 = L3 + ip.header_len();
    let mut p = Parsed {
        key: FlowKey {
            proto: ip.protocol(),
            cip: ip.src(),
            cport: 0,
            vip: ip.dst(),
            vport: 0,
        },
        tcp_flags: 0,
        ip_len: ip.total_len() as u16,
        l4,
        end: L3 + ip.total_len(),
        quoted: None,
    };
    // The IPv4 payload, padding excluded: validated to lie in the frame.
    let seg = &frame[l4..L3 + ip.total_len()];
    match ip.protocol() {
        PROTO_TCP => {
            let t = TcpPacket::new_checked(seg).map_err(|_| MALFORMED)?;
            p.key.cport = t.src_port();
            p.key.vport = t.dst_port();
            p.tcp_flags = t.flags();
        }
        PROTO_UDP => {
            let u = UdpPacket::new_checked(seg).map_err(|_| MALFORMED)?;
            p.key.cport = u.src_port();
            p.key.vport = u.dst_port();
        }
        PROTO_ICMP => p.quoted = Some(quoted(seg, l4).ok_or(Verdict::Pass)?),
        _ => return Err(Verdict::Pass),
    }
    Ok(p)
}

/// Whether `frame` is an IPv6 frame (by its EtherType alone).
#[inline]
pub fn is_ipv6(frame: &[u8]) -> bool {
    frame.get(12..14) == Some(&ETHERTYPE_IPV6.to_be_bytes()[..])
}

/// The transport header of a frame read at fixed offsets (its first 20
/// bytes, `l4`) checked against its segment's length `seg`: the TCP
/// flags (0 for UDP), `None` for another protocol or a header that does
/// not fit.
#[inline(always)]
fn plain_l4(l4: &[u8; 20], proto: u8, seg: usize) -> Option<u8> {
    match proto {
        // Data offset at least 5 words and inside the segment.
        PROTO_TCP if seg >= 20 && l4[12] >= 0x50 && usize::from(l4[12] >> 4) * 4 <= seg => {
            Some(l4[13])
        }
        // The UDP length at least its header and inside the segment.
        PROTO_UDP
            if seg >= 8 && (8..=seg).contains(&usize::from(u16::from_be_bytes([l4[4], l4[5]]))) =>
        {
            Some(0)
        }
        _ => None,
    }
}

/// The common IPv6 frame, read at fixed offsets: Ethernet, IPv6 whose
/// next header is TCP or UDP directly (no extension headers), the payload
/// in the frame, the transport header in the payload. It accepts only
/// what [`parse6`] accepts and gives the same result with one bounds
/// check, skipping the extension-header walk; anything else is `None`
/// and goes the general way.
#[inline(always)]
pub fn parse_plain6(frame: &[u8]) -> Option<Parsed<Ipv6Addr>> {
    // Ethernet (14) + IPv6 (40) + TCP (20): shorter UDP frames take the
    // general way.
    let h: &[u8; 74] = frame.first_chunk()?;
    // EtherType IPv6, version 6.
    if h[12..14] != [0x86, 0xdd] || h[14] >> 4 != 6 {
        return None;
    }
    const L4: usize = L3 + ipv6::HEADER_LEN;
    const _: () = assert!(L4 + 20 == 74, "the transport header ends the block");
    let seg = usize::from(u16::from_be_bytes([h[18], h[19]]));
    let end = L4 + seg;
    if frame.len() < end {
        return None;
    }
    let proto = h[20];
    // The transport header is the block's last 20 bytes.
    let tcp_flags = plain_l4(h.last_chunk()?, proto, seg)?;
    let addr = |at: usize| {
        let mut a = [0u8; 16];
        a.copy_from_slice(&h[at..at + 16]);
        Ipv6Addr::from(a)
    };
    Some(Parsed {
        key: FlowKey {
            proto,
            cip: addr(L3 + ipv6::SRC_OFFSET),
            cport: u16::from_be_bytes([h[L4], h[L4 + 1]]),
            vip: addr(L3 + ipv6::DST_OFFSET),
            vport: u16::from_be_bytes([h[L4 + 2], h[L4 + 3]]),
        },
        tcp_flags,
        ip_len: (ipv6::HEADER_LEN + seg) as u16,
        l4: L4,
        end,
        quoted: None,
    })
}

/// Parse an IPv6 `frame`: the fixed header and its payload inside the
/// frame, the extension headers walked ([`ipv6::walk`], bounded), then
/// TCP or UDP, or an ICMPv6 error quoting a TCP or UDP packet (then
/// `key.proto` is ICMPv6 and the ports are 0; [`quoted6`] reads the
/// quote). `Err(Verdict::Pass)` when it is not for the director (not
/// IPv6, a fragment, a routing header crossed, another protocol, other
/// ICMPv6 such as neighbour discovery),
/// `Err(Verdict::Drop(Malformed))` when a header it needs is truncated
/// or the chain cannot be walked. `ip_len` is the whole IPv6 packet's
/// length (fixed header included), what the byte counters count.
#[inline]
pub fn parse6(frame: &[u8]) -> Result<Parsed<Ipv6Addr>, Verdict> {
    let eth = EthernetFrame::new_checked(frame).map_err(|_| MALFORMED)?;
    if eth.ethertype() != ETHERTYPE_IPV6 {
        return Err(Verdict::Pass);
    }
    let ip = Ipv6Packet::new_checked(eth.payload()).map_err(|_| MALFORMED)?;
    let start = L3 + ipv6::HEADER_LEN;
    let end = start + ip.payload_len();
    let (proto, offset) = match ipv6::walk(ip.next_header(), &frame[start..end]) {
        Ok(Upper::Transport {
            proto,
            offset,
            routed: false,
        }) => (proto, offset),
        // Not final here (a routing header), or a fragment: the kernel's.
        Ok(_) => return Err(Verdict::Pass),
        Err(_) => return Err(MALFORMED),
    };
    let l4 = start + offset;
    let mut p = Parsed {
        key: FlowKey {
            proto,
            cip: ip.src(),
            cport: 0,
            vip: ip.dst(),
            vport: 0,
        },
        tcp_flags: 0,
        ip_len: (end - L3) as u16,
        l4,
        end,
        quoted: None,
    };
    let seg = &frame[l4..end];
    match proto {
        PROTO_TCP => {
            let t = TcpPacket::new_checked(seg).map_err(|_| MALFORMED)?;
            p.key.cport = t.src_port();
            p.key.vport = t.dst_port();
            p.tcp_flags = t.flags();
        }
        PROTO_UDP => {
            let u = UdpPacket::new_checked(seg).map_err(|_| MALFORMED)?;
            p.key.cport = u.src_port();
            p.key.vport = u.dst_port();
        }
        ipv6::NEXT_ICMPV6 if seg.first().is_some_and(|t| icmpv6::is_error_type(*t)) => {
            quoted6(frame, &p).ok_or(Verdict::Pass)?;
        }
        _ => return Err(Verdict::Pass),
    }
    Ok(p)
}

/// The flow an ICMPv6 error (parsed by [`parse6`] from `frame` as `p`)
/// is about, if it quotes a TCP or UDP packet with its ports.
#[cold]
pub fn quoted6(frame: &[u8], p: &Parsed<Ipv6Addr>) -> Option<icmpv6::QuotedFlow6> {
    let m = icmpv6::Icmpv6Packet::new_checked(frame.get(p.l4..p.end)?).ok()?;
    m.quoted_flow().ok()
}

/// The datagram quoted by the ICMP message `msg` (at frame offset `at`),
/// if it is an error about TCP or UDP quoting the ports.
#[cold]
fn quoted(msg: &[u8], at: usize) -> Option<Quoted> {
    let icmp = IcmpPacket::new_checked(msg).ok()?;
    let flow = icmp.quoted_flow().ok()?;
    let q = icmp.quoted().ok()?;
    let l3 = at + crate::wire::icmp::HEADER_LEN;
    let l4 = l3 + q.header_len();
    Some(Quoted {
        flow,
        l3,
        l4,
        end: l4 + q.payload().len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::icmp;
    use crate::wire::ipv4::Ipv4Repr;
    use std::net::Ipv4Addr;

    const C: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
    const V: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 1);

    /// Ethernet + IPv4 (`opts` bytes of options) + `l4`.
    fn frame(proto: u8, opts: usize, src: Ipv4Addr, dst: Ipv4Addr, l4: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; L3];
        f[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        let mut ip = vec![0u8; 20];
        Ipv4Repr {
            src,
            dst,
            protocol: proto,
            payload_len: (opts + l4.len()) as u16,
            tos: 0,
            ttl: 64,
            ident: 0,
            dont_frag: false,
        }
        .emit(&mut ip)
        .unwrap();
        ip[0] = 0x45 + (opts / 4) as u8;
        ip.extend(std::iter::repeat_n(1u8, opts));
        f.extend(ip);
        f.extend_from_slice(l4);
        f
    }

    fn udp(sport: u16, dport: u16) -> Vec<u8> {
        let mut u = vec![0u8; 8];
        u[0..2].copy_from_slice(&sport.to_be_bytes());
        u[2..4].copy_from_slice(&dport.to_be_bytes());
        u[4..6].copy_from_slice(&8u16.to_be_bytes());
        u
    }

    /// The segments the fixed-offset parses are tried with: a TCP header,
    /// one with options, and a UDP datagram shorter than its IP payload
    /// (padding).
    fn plain_segments() -> [Vec<u8>; 3] {
        let mut tcp = vec![0u8; 20];
        tcp[0..4].copy_from_slice(&[0x13, 0x88, 0x00, 0x50]);
        tcp[12] = 0x50;
        tcp[13] = 0x10;
        let mut tcp_opts = tcp.clone();
        tcp_opts[12] = 0x60;
        tcp_opts.extend_from_slice(&[1, 1, 1, 0, 9, 9]);
        let mut udp_pad = udp(5000, 53);
        udp_pad.extend_from_slice(&[7; 12]);
        udp_pad[4..6].copy_from_slice(&12u16.to_be_bytes());
        [tcp, tcp_opts, udp_pad]
    }

    /// Try `plain` on every truncation of each of `bases` (and a little
    /// beyond) and on every value of each byte at `at`: whatever it
    /// accepts, `general` gives the same. Returns how many it accepted.
    fn agrees<A: Addr>(
        bases: &[Vec<u8>],
        at: &[usize],
        plain: fn(&[u8]) -> Option<Parsed<A>>,
        general: fn(&[u8]) -> Result<Parsed<A>, Verdict>,
    ) -> usize {
        let mut accepted = 0;
        let mut check = |f: &[u8]| {
            if let Some(p) = plain(f) {
                accepted += 1;
                assert_eq!(general(f), Ok(p), "{f:02x?}");
            }
        };
        for base in bases {
            for len in 0..=base.len() + 8 {
                let mut f = base.clone();
                f.resize(len, 0);
                check(&f);
            }
            for &i in at {
                for v in 0..=255u8 {
                    let mut f = base.clone();
                    if i < f.len() {
                        f[i] = v;
                        check(&f);
                    }
                }
            }
        }
        accepted
    }

    /// The fixed-offset path accepts only frames the general parse
    /// accepts, with the same result: over TCP and UDP frames, every value
    /// of each header byte it reads, and every truncation.
    #[test]
    fn the_plain_path_agrees_with_the_general_parse() {
        let [tcp, tcp_opts, udp_pad] = plain_segments();
        let bases = [
            frame(PROTO_TCP, 0, C, V, &tcp),
            frame(PROTO_TCP, 0, C, V, &tcp_opts),
            frame(PROTO_UDP, 0, C, V, &udp_pad),
            frame(PROTO_UDP, 0, C, V, &udp(1, 2)),
            frame(PROTO_TCP, 4, C, V, &tcp),
        ];
        // The bytes the plain path reads: EtherType, version and
        // header length, lengths, fragment bits, protocol, the
        // transport header's lengths and flags.
        let accepted = agrees(
            &bases,
            &[12, 13, 14, 16, 17, 20, 21, 23, 38, 39, 46, 47],
            parse_plain,
            parse_any,
        );
        assert!(accepted > 1000, "the plain path took {accepted} frames");
    }

    /// Ethernet + IPv6 between benchmarking addresses (2001:2::/48), next header
    /// `proto`, payload `l4`.
    fn frame6(proto: u8, l4: &[u8]) -> Vec<u8> {
        let (c6, v6): (Ipv6Addr, Ipv6Addr) = (
            "2001:2::ffff:1:8001".parse().unwrap(),
            "2001:2:8000::fffe".parse().unwrap(),
        );
        let mut f = vec![0u8; L3];
        f[12..14].copy_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
        let mut ip = vec![0u8; 40];
        ip[0] = 0x60;
        ip[4..6].copy_from_slice(&(l4.len() as u16).to_be_bytes());
        ip[6] = proto;
        ip[7] = 64;
        ip[8..24].copy_from_slice(&c6.octets());
        ip[24..40].copy_from_slice(&v6.octets());
        f.extend(ip);
        f.extend_from_slice(l4);
        f
    }

    /// The IPv6 fixed-offset path accepts only frames the general parse
    /// accepts, with the same result: over TCP and UDP frames (and ones
    /// with an extension header, which it must leave alone), every value
    /// of each byte it reads, and every truncation.
    #[test]
    fn the_plain_ipv6_path_agrees_with_the_general_parse() {
        let [tcp, tcp_opts, udp_pad] = plain_segments();
        let mut udp_long = udp(5000, 53);
        udp_long.extend_from_slice(&[7; 16]);
        udp_long[4..6].copy_from_slice(&24u16.to_be_bytes());
        // A hop-by-hop header (8 bytes) before TCP.
        let mut hbh = vec![PROTO_TCP, 0, 1, 4, 0, 0, 0, 0];
        hbh.extend_from_slice(&tcp);
        let mut with_pad = frame6(PROTO_TCP, &tcp);
        with_pad.extend_from_slice(&[0xee; 6]);
        let bases = [
            frame6(PROTO_TCP, &tcp),
            frame6(PROTO_TCP, &tcp_opts),
            frame6(PROTO_UDP, &udp_pad),
            frame6(PROTO_UDP, &udp_long),
            frame6(PROTO_UDP, &udp(1, 2)),
            frame6(ipv6::NEXT_HOP_BY_HOP, &hbh),
            with_pad,
        ];
        // The bytes the plain path reads: EtherType, version, payload
        // length, next header, the addresses' ends, the transport
        // header's ports, lengths and flags.
        let accepted = agrees(
            &bases,
            &[
                12, 13, 14, 18, 19, 20, 22, 37, 38, 53, 54, 55, 56, 57, 58, 59, 66, 67,
            ],
            parse_plain6,
            parse6,
        );
        assert!(accepted > 1000, "the plain path took {accepted} frames");
        // What it takes, it reads right.
        let p = parse_plain6(&bases[0]).unwrap();
        assert_eq!((p.l4, p.end, p.ip_len), (L3 + 40, L3 + 60, 60));
        assert_eq!((p.key.cport, p.key.vport, p.tcp_flags), (5000, 80, 0x10));
        assert_eq!(parse_plain6(&bases[5]), None);
    }

    #[test]
    fn records_the_offsets_of_tcp_and_udp() {
        let f = frame(PROTO_UDP, 4, C, V, &udp(5000, 53));
        let p = parse(&f).unwrap();
        assert_eq!(p.l4, L3 + 24);
        assert_eq!(p.end, f.len());
        assert_eq!(p.ip_len, 32);
        assert_eq!(
            (p.key.cip, p.key.cport, p.key.vip, p.key.vport),
            (C, 5000, V, 53)
        );
        assert_eq!(p.quoted, None);
        let mut t = vec![0u8; 20];
        t[12] = 5 << 4;
        t[13] = 0x12;
        let p = parse(&frame(PROTO_TCP, 0, C, V, &t)).unwrap();
        assert_eq!((p.l4, p.tcp_flags), (L3 + 20, 0x12));
    }

    #[test]
    fn finds_the_datagram_an_icmp_error_quotes() {
        // The client says port unreachable about VIP:53 → client:5000.
        let inner = frame(PROTO_UDP, 8, V, C, &udp(53, 5000));
        let mut msg = vec![
            icmp::TYPE_DEST_UNREACH,
            icmp::CODE_PORT_UNREACH,
            0,
            0,
            0,
            0,
            0,
            0,
        ];
        msg.extend_from_slice(&inner[L3..]);
        let f = frame(PROTO_ICMP, 0, C, V, &msg);
        let p = parse(&f).unwrap();
        let q = p.quoted.unwrap();
        assert_eq!(q.l3, L3 + 20 + 8);
        assert_eq!(q.l4, q.l3 + 28);
        assert_eq!(q.end, f.len());
        assert_eq!(
            (q.flow.src, q.flow.sport, q.flow.dst, q.flow.dport),
            (V, 53, C, 5000)
        );
        // An echo request is not for the director; nor is a truncated quote.
        msg[0] = icmp::TYPE_ECHO_REQUEST;
        assert_eq!(parse(&frame(PROTO_ICMP, 0, C, V, &msg)), Err(Verdict::Pass));
        msg[0] = icmp::TYPE_DEST_UNREACH;
        msg.truncate(8 + 28 + 4);
        assert_eq!(parse(&frame(PROTO_ICMP, 0, C, V, &msg)), Err(Verdict::Pass));
    }

    /// The segments of the partial-checksum tests, each with its protocol
    /// and its checksum's offset: TCP with data, UDP with data, and a UDP
    /// datagram whose length leaves out the payload's last bytes (which
    /// must be left alone).
    fn partial_segments() -> [(u8, Vec<u8>, usize); 3] {
        let mut t = vec![0u8; 20];
        t[12] = 5 << 4;
        t[13] = 0x10;
        t.extend_from_slice(b"0123456789abcde");
        let mut u = udp(5000, 53);
        u.extend_from_slice(b"xyz");
        u[4..6].copy_from_slice(&11u16.to_be_bytes());
        let mut short = udp(5000, 53);
        short.extend_from_slice(b"xyz"); // UDP length 8 of 11: left alone
        [(PROTO_TCP, t, 16), (PROTO_UDP, u, 6), (PROTO_UDP, short, 6)]
    }

    #[test]
    fn completes_partial_checksums_as_the_header_reading_completion_does() {
        use crate::wire::checksum::{self, fold64, pseudo_header_sum};
        let mut completed = 0;
        for (proto, l4, at) in partial_segments() {
            for opts in [0, 8] {
                let base = frame(proto, opts, C, V, &l4);
                let len = base.len() - L3 - 20 - opts;
                let partial = fold64(u64::from(pseudo_header_sum(C, V, proto, len as u16)));
                // The partial value, its complement, and others.
                for v in [partial, !partial, 0, 0xffff, partial ^ 1] {
                    let mut a = base.clone();
                    let off = L3 + 20 + opts + at;
                    a[off..off + 2].copy_from_slice(&v.to_be_bytes());
                    // With Ethernet padding after the packet, too.
                    a.extend_from_slice(&[0xee; 6]);
                    let mut b = a.clone();
                    let p = parse(&a).unwrap();
                    let done = p.complete_partial(&mut a);
                    assert_eq!(
                        done,
                        checksum::complete_partial(&mut b),
                        "proto {proto} opts {opts} value {v:#x}"
                    );
                    completed += usize::from(done);
                    assert_eq!(a, b, "proto {proto} opts {opts} value {v:#x}");
                }
            }
        }
        // TCP and the whole UDP datagram, with and without options.
        assert_eq!(completed, 4);
    }

    #[test]
    fn completes_partial_ipv6_checksums_as_the_header_walking_completion_does() {
        use crate::wire::checksum::{self, fold64, pseudo_header_sum6};
        let (c6, v6): (Ipv6Addr, Ipv6Addr) = (
            "2001:2::ffff:1:8001".parse().unwrap(),
            "2001:2:8000::fffe".parse().unwrap(),
        );
        // Ethernet + IPv6 (+ a hop-by-hop header of 8 bytes) + `l4`.
        let frame6 = |proto: u8, hbh: bool, l4: &[u8]| {
            let mut f = vec![0u8; L3];
            f[12..14].copy_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
            let ext = if hbh { 8 } else { 0 };
            let mut ip = vec![0u8; 40];
            ip[0] = 0x60;
            ip[4..6].copy_from_slice(&((ext + l4.len()) as u16).to_be_bytes());
            ip[6] = if hbh { 0 } else { proto };
            ip[7] = 64;
            ip[8..24].copy_from_slice(&c6.octets());
            ip[24..40].copy_from_slice(&v6.octets());
            f.extend(ip);
            if hbh {
                f.extend_from_slice(&[proto, 0, 1, 4, 0, 0, 0, 0]);
            }
            f.extend_from_slice(l4);
            f
        };
        let mut completed = 0;
        for (proto, l4, at) in partial_segments() {
            for hbh in [false, true] {
                let base = frame6(proto, hbh, &l4);
                let partial = fold64(pseudo_header_sum6(c6, v6, proto, l4.len() as u32));
                for v in [partial, !partial, 0, 0xffff, partial ^ 1] {
                    let mut a = base.clone();
                    let off = L3 + 40 + if hbh { 8 } else { 0 } + at;
                    a[off..off + 2].copy_from_slice(&v.to_be_bytes());
                    a.extend_from_slice(&[0xee; 6]);
                    let mut b = a.clone();
                    let p = parse6(&a).unwrap();
                    let done = p.complete_partial(&mut a);
                    assert_eq!(
                        done,
                        checksum::complete_partial_ipv6(&mut b[L3..]),
                        "proto {proto} hbh {hbh} value {v:#x}"
                    );
                    completed += usize::from(done);
                    assert_eq!(a, b, "proto {proto} hbh {hbh} value {v:#x}");
                }
            }
        }
        assert_eq!(completed, 4);
    }

    #[test]
    fn refuses_what_is_not_for_the_director() {
        let mut f = frame(PROTO_UDP, 0, C, V, &udp(1, 2));
        assert_eq!(parse(&f[..L3 + 10]), Err(MALFORMED));
        f[L3 + 6] = 0x20; // more fragments
        assert_eq!(parse(&f), Err(Verdict::Pass));
        f[12] = 0x86;
        assert_eq!(parse(&f), Err(Verdict::Pass));
        assert_eq!(parse(&f[..10]), Err(MALFORMED));
    }
}
