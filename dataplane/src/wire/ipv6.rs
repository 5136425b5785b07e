//! IPv6 headers (RFC 8200) and the walk over their extension headers.
//!
//! A director must find the transport header behind any chain of
//! extension headers a client may send, without trusting a single length
//! in it: the walk is bounded in headers ([`MAX_EXT_HEADERS`]) and every
//! step is checked against the buffer, so a hostile chain costs at most a
//! few bounds checks and ends in a typed error. A fragment header ends the
//! walk: fragments are handled as IPv4's are (passed on and counted).

use super::{get_u16, set_u16, Error, Result};
use std::net::Ipv6Addr;

const VER_TC_FL: usize = 0;
const PAYLOAD_LEN: usize = 4;
const NEXT_HEADER: usize = 6;
const HOP_LIMIT: usize = 7;
const SRC: usize = 8;
const DST: usize = 24;
/// Length of the fixed header.
pub const HEADER_LEN: usize = 40;
/// Offset of the source address in the header.
pub const SRC_OFFSET: usize = SRC;
/// Offset of the destination address in the header.
pub const DST_OFFSET: usize = DST;
/// Offset of the hop limit in the header.
pub const HOP_LIMIT_OFFSET: usize = HOP_LIMIT;

/// Next header: hop-by-hop options (only right after the fixed header).
pub const NEXT_HOP_BY_HOP: u8 = 0;
/// Next header: IPv4 (IPv4 in IPv6).
pub const NEXT_IPV4: u8 = 4;
/// Next header: TCP.
pub const NEXT_TCP: u8 = 6;
/// Next header: UDP.
pub const NEXT_UDP: u8 = 17;
/// Next header: IPv6 (IPv6 in IPv6, or in IPv4 as protocol 41).
pub const NEXT_IPV6: u8 = 41;
/// Next header: routing header.
pub const NEXT_ROUTING: u8 = 43;
/// Next header: fragment header.
pub const NEXT_FRAGMENT: u8 = 44;
/// Next header: GRE.
pub const NEXT_GRE: u8 = 47;
/// Next header: encapsulating security payload (not walkable).
pub const NEXT_ESP: u8 = 50;
/// Next header: authentication header.
pub const NEXT_AH: u8 = 51;
/// Next header: ICMPv6.
pub const NEXT_ICMPV6: u8 = 58;
/// Next header: nothing follows.
pub const NEXT_NONE: u8 = 59;
/// Next header: destination options.
pub const NEXT_DEST_OPTS: u8 = 60;

/// Most extension headers [`walk`] follows before it gives up; the
/// steering program uses the same bound. Real traffic carries one or two.
pub const MAX_EXT_HEADERS: usize = 8;
/// Length of a fragment header.
pub const FRAG_HEADER_LEN: usize = 8;

/// The minimum link MTU of IPv6 (RFC 8200 §5): no path is smaller, and an
/// ICMPv6 error never exceeds it.
pub const MIN_MTU: usize = 1280;

/// A view of an IPv6 packet whose fixed header and payload length were
/// validated.
#[derive(Debug)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// Wrap `buf` without checking it: for a header already validated by
    /// [`Ipv6Packet::new_checked`] or [`Ipv6Packet::new_checked_quoted`].
    #[inline]
    pub fn new_unchecked(buf: T) -> Self {
        Ipv6Packet { buf }
    }

    /// Wrap `buf`: version 6, the fixed header and the announced payload
    /// inside the buffer (trailing padding is allowed). A payload length
    /// of 0 is an empty payload (jumbograms are not supported: a director
    /// on Ethernet never sees one).
    pub fn new_checked(buf: T) -> Result<Self> {
        let b = buf.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if b[VER_TC_FL] >> 4 != 6 {
            return Err(Error::Malformed);
        }
        if b.len() < HEADER_LEN + usize::from(get_u16(b, PAYLOAD_LEN)) {
            return Err(Error::Truncated);
        }
        Ok(Ipv6Packet { buf })
    }

    /// Wrap the IPv6 header an ICMPv6 error quotes: version 6 and the
    /// fixed header inside `buf`. The payload length is the original
    /// packet's, of which `buf` holds only the start, so it is not
    /// checked; [`Ipv6Packet::payload`] then returns what was quoted.
    pub fn new_checked_quoted(buf: T) -> Result<Self> {
        let b = buf.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if b[VER_TC_FL] >> 4 != 6 {
            return Err(Error::Malformed);
        }
        Ok(Ipv6Packet { buf })
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buf
    }

    /// Traffic class (DSCP and ECN).
    pub fn traffic_class(&self) -> u8 {
        let b = self.buf.as_ref();
        (b[0] << 4) | (b[1] >> 4)
    }

    /// Flow label (20 bits).
    pub fn flow_label(&self) -> u32 {
        let b = self.buf.as_ref();
        u32::from_be_bytes([0, b[1] & 0x0f, b[2], b[3]])
    }

    /// Payload length: everything after the fixed header, extension
    /// headers included.
    pub fn payload_len(&self) -> usize {
        usize::from(get_u16(self.buf.as_ref(), PAYLOAD_LEN))
    }

    /// Next header after the fixed header.
    pub fn next_header(&self) -> u8 {
        self.buf.as_ref()[NEXT_HEADER]
    }

    /// Hop limit.
    pub fn hop_limit(&self) -> u8 {
        self.buf.as_ref()[HOP_LIMIT]
    }

    /// Source address.
    pub fn src(&self) -> Ipv6Addr {
        addr_at(self.buf.as_ref(), SRC)
    }

    /// Destination address.
    pub fn dst(&self) -> Ipv6Addr {
        addr_at(self.buf.as_ref(), DST)
    }

    /// The payload (extension headers and all), up to the payload length
    /// (padding excluded); for a quoted header, what the buffer holds.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let end = self.payload_end();
        &self.buf.as_ref()[HEADER_LEN..end]
    }

    #[inline]
    fn payload_end(&self) -> usize {
        (HEADER_LEN + self.payload_len()).min(self.buf.as_ref().len())
    }

    /// The extension-header walk over this packet's payload (see
    /// [`walk`]); offsets are from the start of the payload.
    pub fn upper(&self) -> core::result::Result<Upper, ExtError> {
        walk(self.next_header(), self.payload())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    /// Set the traffic class.
    pub fn set_traffic_class(&mut self, v: u8) {
        let b = self.buf.as_mut();
        b[0] = 0x60 | (v >> 4);
        b[1] = (v << 4) | (b[1] & 0x0f);
    }

    /// Set the flow label (the low 20 bits of `v`).
    pub fn set_flow_label(&mut self, v: u32) {
        let b = self.buf.as_mut();
        b[1] = (b[1] & 0xf0) | ((v >> 16) as u8 & 0x0f);
        b[2] = (v >> 8) as u8;
        b[3] = v as u8;
    }

    /// Set the payload length (the caller keeps it within the buffer).
    pub fn set_payload_len(&mut self, v: u16) {
        set_u16(self.buf.as_mut(), PAYLOAD_LEN, v);
    }

    /// Set the next header after the fixed header.
    pub fn set_next_header(&mut self, v: u8) {
        self.buf.as_mut()[NEXT_HEADER] = v;
    }

    /// Set the hop limit (IPv6 has no header checksum to update).
    pub fn set_hop_limit(&mut self, v: u8) {
        self.buf.as_mut()[HOP_LIMIT] = v;
    }

    /// Set the source address (a transport checksum is not updated).
    pub fn set_src(&mut self, a: Ipv6Addr) {
        self.buf.as_mut()[SRC..SRC + 16].copy_from_slice(&a.octets());
    }

    /// Set the destination address (a transport checksum is not updated).
    pub fn set_dst(&mut self, a: Ipv6Addr) {
        self.buf.as_mut()[DST..DST + 16].copy_from_slice(&a.octets());
    }

    /// The payload (see [`Ipv6Packet::payload`]), mutable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = self.payload_end();
        &mut self.buf.as_mut()[HEADER_LEN..end]
    }
}

#[inline]
fn addr_at(b: &[u8], at: usize) -> Ipv6Addr {
    let mut o = [0u8; 16];
    o.copy_from_slice(&b[at..at + 16]);
    Ipv6Addr::from(o)
}

/// The fields of an IPv6 header without extension headers, to write a new
/// one (a tunnel's outer header, an ICMPv6 error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Repr {
    /// Source address.
    pub src: Ipv6Addr,
    /// Destination address.
    pub dst: Ipv6Addr,
    /// Next header (the payload's protocol).
    pub next_header: u8,
    /// Bytes after the fixed header.
    pub payload_len: u16,
    /// Hop limit.
    pub hop_limit: u8,
    /// Traffic class.
    pub traffic_class: u8,
    /// Flow label (20 bits).
    pub flow_label: u32,
}

impl Ipv6Repr {
    /// Write the 40-byte header at the start of `buf`; fails when `buf` is
    /// shorter than the header or the flow label has more than 20 bits.
    pub fn emit(&self, buf: &mut [u8]) -> Result<()> {
        if self.flow_label > 0x000f_ffff {
            return Err(Error::Malformed);
        }
        let Some(h) = buf.get_mut(..HEADER_LEN) else {
            return Err(Error::Truncated);
        };
        let w = (6u32 << 28) | (u32::from(self.traffic_class) << 20) | self.flow_label;
        h[0..4].copy_from_slice(&w.to_be_bytes());
        set_u16(h, PAYLOAD_LEN, self.payload_len);
        h[NEXT_HEADER] = self.next_header;
        h[HOP_LIMIT] = self.hop_limit;
        h[SRC..SRC + 16].copy_from_slice(&self.src.octets());
        h[DST..DST + 16].copy_from_slice(&self.dst.octets());
        Ok(())
    }
}

/// Where an extension-header walk ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upper {
    /// The first header that is not an extension header: its protocol
    /// (TCP, UDP, ICMPv6, ESP, [`NEXT_NONE`], ...) and its offset from the
    /// start of the payload.
    Transport {
        /// Protocol number of the header at `offset`.
        proto: u8,
        /// Offset of that header from the start of the payload.
        offset: usize,
        /// Whether a routing header was crossed (the destination address
        /// is then not the final one: pseudo-header sums differ).
        routed: bool,
    },
    /// A fragment header: the packet is a fragment.
    Fragment(Fragment),
}

/// What a fragment header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fragment {
    /// Next header after the fragment header.
    pub proto: u8,
    /// Offset of the fragment's data (after the fragment header) from the
    /// start of the payload.
    pub offset: usize,
    /// Fragment offset in bytes.
    pub frag_offset: usize,
    /// More-fragments flag.
    pub more: bool,
    /// Identification.
    pub ident: u32,
}

impl Fragment {
    /// The first fragment (offset 0): the only one that may carry the
    /// transport header.
    pub fn is_first(&self) -> bool {
        self.frag_offset == 0
    }

    /// An atomic fragment (offset 0, no more fragments: RFC 6946), the
    /// whole packet behind a fragment header.
    pub fn is_atomic(&self) -> bool {
        self.frag_offset == 0 && !self.more
    }
}

/// Why an extension-header chain cannot be walked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ExtError {
    /// A header (or the length it announces) runs past the end of the
    /// payload.
    #[error("extension header truncated")]
    Truncated,
    /// More than [`MAX_EXT_HEADERS`] extension headers.
    #[error("too many extension headers")]
    TooMany,
    /// A hop-by-hop header anywhere but first (RFC 8200 §4.1).
    #[error("hop-by-hop header not first")]
    HopByHopNotFirst,
}

impl From<ExtError> for Error {
    fn from(e: ExtError) -> Error {
        match e {
            ExtError::Truncated => Error::Truncated,
            ExtError::TooMany | ExtError::HopByHopNotFirst => Error::Malformed,
        }
    }
}

/// Whether `next` is an extension header [`walk`] steps over (hop-by-hop,
/// routing, destination options, authentication) or stops at (fragment).
pub fn is_ext_header(next: u8) -> bool {
    matches!(
        next,
        NEXT_HOP_BY_HOP | NEXT_ROUTING | NEXT_FRAGMENT | NEXT_DEST_OPTS | NEXT_AH
    )
}

/// Walk the extension headers of a payload whose first header is `first`
/// (the fixed header's next header): at most [`MAX_EXT_HEADERS`], each
/// inside `payload`. Hop-by-hop, routing and destination options headers
/// are `8 + 8 * len` bytes, authentication headers `8 + 4 * len`; a
/// fragment header ends the walk. Offsets are from the start of `payload`.
pub fn walk(first: u8, payload: &[u8]) -> core::result::Result<Upper, ExtError> {
    let mut next = first;
    let mut at = 0usize;
    let mut routed = false;
    for n in 0..=MAX_EXT_HEADERS {
        if !is_ext_header(next) {
            return Ok(Upper::Transport {
                proto: next,
                offset: at,
                routed,
            });
        }
        if n == MAX_EXT_HEADERS {
            return Err(ExtError::TooMany);
        }
        if next == NEXT_HOP_BY_HOP && n != 0 {
            return Err(ExtError::HopByHopNotFirst);
        }
        let h = payload.get(at..at + 2).ok_or(ExtError::Truncated)?;
        let (nh, hlen) = (h[0], h[1]);
        if next == NEXT_FRAGMENT {
            let f = payload
                .get(at..at + FRAG_HEADER_LEN)
                .ok_or(ExtError::Truncated)?;
            let word = get_u16(f, 2);
            return Ok(Upper::Fragment(Fragment {
                proto: nh,
                offset: at + FRAG_HEADER_LEN,
                frag_offset: usize::from(word & 0xfff8),
                more: word & 1 != 0,
                ident: u32::from_be_bytes([f[4], f[5], f[6], f[7]]),
            }));
        }
        let len = if next == NEXT_AH {
            8 + 4 * usize::from(hlen)
        } else {
            8 + 8 * usize::from(hlen)
        };
        if payload.len() < at + len {
            return Err(ExtError::Truncated);
        }
        routed |= next == NEXT_ROUTING;
        at += len;
        next = nh;
    }
    Err(ExtError::TooMany)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(next: u8, len8: u8) -> Vec<u8> {
        let mut h = vec![next, len8];
        h.resize(8 + 8 * usize::from(len8), 1);
        h
    }

    fn frag(next: u8, offset: u16, more: bool, ident: u32) -> Vec<u8> {
        let mut h = vec![next, 0];
        h.extend_from_slice(&(offset | u16::from(more)).to_be_bytes());
        h.extend_from_slice(&ident.to_be_bytes());
        h
    }

    fn chain(parts: &[Vec<u8>], tail: &[u8]) -> Vec<u8> {
        let mut v: Vec<u8> = parts.concat();
        v.extend_from_slice(tail);
        v
    }

    const TCP_HDR: [u8; 20] = [0; 20];

    type WalkResult = core::result::Result<Upper, ExtError>;

    #[test]
    fn extension_chains_walk_to_the_transport_or_a_fragment() {
        use Upper::Transport as T;
        let t = |proto, offset, routed| T {
            proto,
            offset,
            routed,
        };
        let cases: Vec<(&str, u8, Vec<u8>, WalkResult)> = vec![
            ("plain TCP", NEXT_TCP, TCP_HDR.to_vec(), Ok(t(6, 0, false))),
            (
                "empty payload, no next header",
                NEXT_NONE,
                vec![],
                Ok(t(59, 0, false)),
            ),
            (
                "hop-by-hop then UDP",
                NEXT_HOP_BY_HOP,
                chain(&[ext(NEXT_UDP, 0)], &[0; 8]),
                Ok(t(17, 8, false)),
            ),
            (
                "hbh, dest opts (24 bytes), routing, TCP",
                NEXT_HOP_BY_HOP,
                chain(
                    &[
                        ext(NEXT_DEST_OPTS, 0),
                        ext(NEXT_ROUTING, 2),
                        ext(NEXT_TCP, 0),
                    ],
                    &TCP_HDR,
                ),
                Ok(t(6, 40, true)),
            ),
            (
                "authentication header (4-byte units)",
                NEXT_AH,
                chain(
                    &[{
                        let mut h = vec![NEXT_TCP, 1];
                        h.resize(12, 0);
                        h
                    }],
                    &TCP_HDR,
                ),
                Ok(t(6, 12, false)),
            ),
            (
                "ESP stops the walk",
                NEXT_ESP,
                vec![0; 16],
                Ok(t(50, 0, false)),
            ),
            (
                "first fragment",
                NEXT_FRAGMENT,
                chain(&[frag(NEXT_TCP, 0, true, 7)], &TCP_HDR),
                Ok(Upper::Fragment(Fragment {
                    proto: 6,
                    offset: 8,
                    frag_offset: 0,
                    more: true,
                    ident: 7,
                })),
            ),
            (
                "later fragment behind dest opts",
                NEXT_DEST_OPTS,
                chain(
                    &[
                        ext(NEXT_FRAGMENT, 0),
                        frag(NEXT_UDP, 1480, false, 0xdead_beef),
                    ],
                    b"x",
                ),
                Ok(Upper::Fragment(Fragment {
                    proto: 17,
                    offset: 16,
                    frag_offset: 1480,
                    more: false,
                    ident: 0xdead_beef,
                })),
            ),
            (
                "eight headers are walked",
                NEXT_DEST_OPTS,
                chain(
                    &[
                        ext(NEXT_DEST_OPTS, 0),
                        ext(NEXT_DEST_OPTS, 0),
                        ext(NEXT_DEST_OPTS, 0),
                        ext(NEXT_DEST_OPTS, 0),
                        ext(NEXT_DEST_OPTS, 0),
                        ext(NEXT_DEST_OPTS, 0),
                        ext(NEXT_DEST_OPTS, 0),
                        ext(NEXT_TCP, 0),
                    ],
                    &TCP_HDR,
                ),
                Ok(t(6, 64, false)),
            ),
            (
                "nine headers are too many",
                NEXT_DEST_OPTS,
                chain(&vec![ext(NEXT_DEST_OPTS, 0); 8], &ext(NEXT_TCP, 0)),
                Err(ExtError::TooMany),
            ),
            (
                "a loop of dest opts is bounded",
                NEXT_DEST_OPTS,
                [NEXT_DEST_OPTS, 0, 0, 0, 0, 0, 0, 0].repeat(100),
                Err(ExtError::TooMany),
            ),
            (
                "hop-by-hop after another header",
                NEXT_DEST_OPTS,
                chain(&[ext(NEXT_HOP_BY_HOP, 0), ext(NEXT_TCP, 0)], &TCP_HDR),
                Err(ExtError::HopByHopNotFirst),
            ),
            (
                "empty payload, hbh announced",
                NEXT_HOP_BY_HOP,
                vec![],
                Err(ExtError::Truncated),
            ),
            (
                "one byte of an ext header",
                NEXT_ROUTING,
                vec![6],
                Err(ExtError::Truncated),
            ),
            (
                "length past the payload",
                NEXT_DEST_OPTS,
                chain(&[vec![NEXT_TCP, 200, 0, 0, 0, 0, 0, 0]], &TCP_HDR),
                Err(ExtError::Truncated),
            ),
            (
                "truncated fragment header",
                NEXT_FRAGMENT,
                vec![NEXT_TCP, 0, 0, 0, 0],
                Err(ExtError::Truncated),
            ),
        ];
        for (desc, first, payload, want) in cases {
            assert_eq!(walk(first, &payload), want, "{desc}");
            // Every truncation ends in a result, never a panic, and a
            // transport found is always inside what is left.
            for n in 0..payload.len() {
                if let Ok(Upper::Transport { offset, .. }) = walk(first, &payload[..n]) {
                    assert!(offset <= n, "{desc}: truncated at {n}");
                }
            }
        }
    }

    fn header(payload_len: u16, next: u8) -> Vec<u8> {
        let mut b = vec![0u8; 40];
        Ipv6Repr {
            src: "2001:2::10".parse().unwrap(),
            dst: "2001:2::100".parse().unwrap(),
            next_header: next,
            payload_len,
            hop_limit: 64,
            traffic_class: 0xb8,
            flow_label: 0x12345,
        }
        .emit(&mut b)
        .unwrap();
        b
    }

    #[test]
    fn fixed_header_checks() {
        let mut ok = header(20, NEXT_TCP);
        ok.extend_from_slice(&TCP_HDR);
        let cases: Vec<(&str, Vec<u8>, Result<()>)> = vec![
            ("whole", ok.clone(), Ok(())),
            ("padded", [ok.clone(), vec![0; 6]].concat(), Ok(())),
            ("39 bytes", ok[..39].to_vec(), Err(Error::Truncated)),
            ("payload cut", ok[..59].to_vec(), Err(Error::Truncated)),
            (
                "version 4",
                {
                    let mut v = ok.clone();
                    v[0] = 0x45;
                    v
                },
                Err(Error::Malformed),
            ),
        ];
        for (desc, b, want) in cases {
            assert_eq!(Ipv6Packet::new_checked(&b[..]).map(|_| ()), want, "{desc}");
        }
        // A quoted header may announce more than it carries.
        assert!(Ipv6Packet::new_checked_quoted(&ok[..48]).is_ok());
        assert_eq!(
            Ipv6Packet::new_checked_quoted(&ok[..39]).map(|_| ()),
            Err(Error::Truncated)
        );
    }

    #[test]
    fn accessors_and_setters_round_trip() {
        let mut b = header(8, NEXT_UDP);
        b.extend_from_slice(&[0; 8]);
        let mut p = Ipv6Packet::new_checked(&mut b[..]).unwrap();
        assert_eq!(p.traffic_class(), 0xb8);
        assert_eq!(p.flow_label(), 0x12345);
        assert_eq!(p.payload_len(), 8);
        assert_eq!(p.next_header(), NEXT_UDP);
        assert_eq!(p.hop_limit(), 64);
        assert_eq!(p.src(), "2001:2::10".parse::<Ipv6Addr>().unwrap());
        assert_eq!(p.dst(), "2001:2::100".parse::<Ipv6Addr>().unwrap());
        assert_eq!(
            p.upper(),
            Ok(Upper::Transport {
                proto: 17,
                offset: 0,
                routed: false
            })
        );
        p.set_traffic_class(0x12);
        p.set_flow_label(0xfedcb);
        p.set_hop_limit(3);
        p.set_dst("2001:2::11".parse().unwrap());
        p.set_src("2001:2::1".parse().unwrap());
        assert_eq!(p.traffic_class(), 0x12);
        assert_eq!(p.flow_label(), 0xfedcb);
        assert_eq!(p.hop_limit(), 3);
        assert_eq!(p.dst(), "2001:2::11".parse::<Ipv6Addr>().unwrap());
        assert_eq!(p.src(), "2001:2::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(b[0] >> 4, 6);
        let big = Ipv6Repr {
            src: Ipv6Addr::LOCALHOST,
            dst: Ipv6Addr::LOCALHOST,
            next_header: 6,
            payload_len: 0,
            hop_limit: 1,
            traffic_class: 0,
            flow_label: 1 << 20,
        };
        assert_eq!(big.emit(&mut [0; 40]), Err(Error::Malformed));
        assert_eq!(
            Ipv6Repr {
                flow_label: 0,
                ..big
            }
            .emit(&mut [0; 39]),
            Err(Error::Truncated)
        );
    }
}
