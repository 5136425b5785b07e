//! IPv4 headers.

use super::{get_u16, set_u16, Error, Result};
use std::net::Ipv4Addr;

const VER_IHL: usize = 0;
const TOS: usize = 1;
const TOTAL_LEN: usize = 2;
const IDENT: usize = 4;
const FRAG: usize = 6;
const TTL: usize = 8;
const PROTO: usize = 9;
const CHECKSUM: usize = 10;
const SRC: usize = 12;
const DST: usize = 16;
/// Length of a header without options.
pub const MIN_HEADER_LEN: usize = 20;
/// Longest header (IHL 15).
pub const MAX_HEADER_LEN: usize = 60;
/// Offset of the source address in the header.
pub const SRC_OFFSET: usize = SRC;
/// Offset of the destination address in the header.
pub const DST_OFFSET: usize = DST;
/// Offset of the header checksum.
pub const CHECKSUM_OFFSET: usize = CHECKSUM;

/// Don't-fragment bit of the flags/fragment-offset word.
pub const FLAG_DF: u16 = 0x4000;
/// More-fragments bit of the flags/fragment-offset word.
pub const FLAG_MF: u16 = 0x2000;
/// Fragment offset bits (in 8-byte units) of the same word.
pub const FRAG_OFFSET_MASK: u16 = 0x1fff;

/// Protocol number of TCP.
pub const PROTO_TCP: u8 = 6;
/// Protocol number of UDP.
pub const PROTO_UDP: u8 = 17;
/// Protocol number of ICMP.
pub const PROTO_ICMP: u8 = 1;
/// Protocol number of IP-in-IP.
pub const PROTO_IPIP: u8 = 4;
/// Protocol number of GRE.
pub const PROTO_GRE: u8 = 47;

/// A view of an IPv4 packet whose header and total length were validated.
#[derive(Debug)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Wrap `buf` without checking it: for a header already validated by
    /// [`Ipv4Packet::new_checked`] or [`Ipv4Packet::new_checked_quoted`]
    /// (see `crate::packet`), whose accessors then stay in bounds.
    #[inline]
    pub fn new_unchecked(buf: T) -> Self {
        Ipv4Packet { buf }
    }

    /// Wrap `buf`: version 4, IHL ≥ 5, the header and the announced total
    /// length both inside the buffer (trailing padding is allowed).
    pub fn new_checked(buf: T) -> Result<Self> {
        let b = buf.as_ref();
        if b.len() < MIN_HEADER_LEN {
            return Err(Error::Truncated);
        }
        if b[VER_IHL] >> 4 != 4 {
            return Err(Error::Malformed);
        }
        let hl = usize::from(b[VER_IHL] & 0x0f) * 4;
        if hl < MIN_HEADER_LEN {
            return Err(Error::Malformed);
        }
        let total = usize::from(get_u16(b, TOTAL_LEN));
        if total < hl {
            return Err(Error::Malformed);
        }
        if b.len() < hl || b.len() < total {
            return Err(Error::Truncated);
        }
        Ok(Ipv4Packet { buf })
    }

    /// Wrap the IPv4 header an ICMP error quotes: version 4, IHL ≥ 5 and
    /// the whole header inside `buf`. The announced total length is that of
    /// the original packet, of which `buf` holds only the start, so it is
    /// not checked; [`Ipv4Packet::payload`] then returns what was quoted.
    pub fn new_checked_quoted(buf: T) -> Result<Self> {
        let b = buf.as_ref();
        if b.len() < MIN_HEADER_LEN {
            return Err(Error::Truncated);
        }
        if b[VER_IHL] >> 4 != 4 {
            return Err(Error::Malformed);
        }
        let hl = usize::from(b[VER_IHL] & 0x0f) * 4;
        if hl < MIN_HEADER_LEN {
            return Err(Error::Malformed);
        }
        if b.len() < hl {
            return Err(Error::Truncated);
        }
        Ok(Ipv4Packet { buf })
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buf
    }

    /// Header length in bytes.
    pub fn header_len(&self) -> usize {
        usize::from(self.buf.as_ref()[VER_IHL] & 0x0f) * 4
    }

    /// Type of service byte.
    pub fn tos(&self) -> u8 {
        self.buf.as_ref()[TOS]
    }

    /// Total length (header + payload).
    pub fn total_len(&self) -> usize {
        usize::from(get_u16(self.buf.as_ref(), TOTAL_LEN))
    }

    /// Identification field.
    pub fn ident(&self) -> u16 {
        get_u16(self.buf.as_ref(), IDENT)
    }

    /// The flags/fragment-offset word as sent (DF, MF, offset).
    pub fn frag_word(&self) -> u16 {
        get_u16(self.buf.as_ref(), FRAG)
    }

    /// More-fragments flag.
    pub fn more_frags(&self) -> bool {
        self.frag_word() & FLAG_MF != 0
    }

    /// Fragment offset in bytes.
    pub fn frag_offset(&self) -> usize {
        usize::from(self.frag_word() & FRAG_OFFSET_MASK) * 8
    }

    /// Whether this is a fragment (MF set or a non-zero offset).
    pub fn is_fragment(&self) -> bool {
        get_u16(self.buf.as_ref(), FRAG) & 0x3fff != 0
    }

    /// Don't-fragment flag.
    pub fn dont_frag(&self) -> bool {
        get_u16(self.buf.as_ref(), FRAG) & 0x4000 != 0
    }

    /// Time to live.
    pub fn ttl(&self) -> u8 {
        self.buf.as_ref()[TTL]
    }

    /// Protocol number of the payload.
    pub fn protocol(&self) -> u8 {
        self.buf.as_ref()[PROTO]
    }

    /// Header checksum field.
    pub fn checksum(&self) -> u16 {
        get_u16(self.buf.as_ref(), CHECKSUM)
    }

    /// Source address.
    pub fn src(&self) -> Ipv4Addr {
        let b = self.buf.as_ref();
        Ipv4Addr::new(b[SRC], b[SRC + 1], b[SRC + 2], b[SRC + 3])
    }

    /// Destination address.
    pub fn dst(&self) -> Ipv4Addr {
        let b = self.buf.as_ref();
        Ipv4Addr::new(b[DST], b[DST + 1], b[DST + 2], b[DST + 3])
    }

    /// The header, options included.
    pub fn header(&self) -> &[u8] {
        &self.buf.as_ref()[..self.header_len()]
    }

    /// The payload, up to the total length (padding excluded); for a
    /// quoted header, what the buffer holds of it.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let (start, end) = self.payload_range();
        &self.buf.as_ref()[start..end]
    }

    #[inline]
    fn payload_range(&self) -> (usize, usize) {
        let hl = self.header_len();
        let end = self.total_len().min(self.buf.as_ref().len()).max(hl);
        (hl, end)
    }

    /// Whether the header checksum verifies.
    pub fn verify_checksum(&self) -> bool {
        super::checksum::fold(super::checksum::sum(
            &self.buf.as_ref()[..self.header_len()],
        )) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// Set the type-of-service byte (checksum not updated).
    pub fn set_tos(&mut self, v: u8) {
        self.buf.as_mut()[TOS] = v;
    }

    /// Set the total length (checksum not updated; the caller keeps it
    /// within the buffer).
    pub fn set_total_len(&mut self, v: u16) {
        set_u16(self.buf.as_mut(), TOTAL_LEN, v);
    }

    /// Set the identification field (checksum not updated).
    pub fn set_ident(&mut self, v: u16) {
        set_u16(self.buf.as_mut(), IDENT, v);
    }

    /// Set the flags/fragment-offset word (checksum not updated).
    pub fn set_frag_word(&mut self, v: u16) {
        set_u16(self.buf.as_mut(), FRAG, v);
    }

    /// Set or clear the don't-fragment flag (checksum not updated).
    pub fn set_dont_frag(&mut self, df: bool) {
        let w = self.frag_word();
        self.set_frag_word(if df { w | FLAG_DF } else { w & !FLAG_DF });
    }

    /// Set the time to live (checksum not updated).
    pub fn set_ttl(&mut self, v: u8) {
        self.buf.as_mut()[TTL] = v;
    }

    /// Set the protocol number (checksum not updated).
    pub fn set_protocol(&mut self, v: u8) {
        self.buf.as_mut()[PROTO] = v;
    }

    /// Set the header checksum field.
    pub fn set_checksum(&mut self, v: u16) {
        set_u16(self.buf.as_mut(), CHECKSUM, v);
    }

    /// Set the source address (checksum not updated).
    pub fn set_src(&mut self, a: Ipv4Addr) {
        self.buf.as_mut()[SRC..SRC + 4].copy_from_slice(&a.octets());
    }

    /// Set the destination address (checksum not updated).
    pub fn set_dst(&mut self, a: Ipv4Addr) {
        self.buf.as_mut()[DST..DST + 4].copy_from_slice(&a.octets());
    }

    /// Set the source address and update the header checksum (RFC 1624).
    pub fn rewrite_src(&mut self, a: Ipv4Addr) {
        let c = super::checksum::update_addr(self.checksum(), self.src(), a);
        self.set_src(a);
        self.set_checksum(c);
    }

    /// Set the destination address and update the header checksum (RFC 1624).
    pub fn rewrite_dst(&mut self, a: Ipv4Addr) {
        let c = super::checksum::update_addr(self.checksum(), self.dst(), a);
        self.set_dst(a);
        self.set_checksum(c);
    }

    /// Compute the header checksum from scratch and store it.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = super::checksum::checksum(self.header());
        self.set_checksum(c);
    }

    /// The payload (see [`Ipv4Packet::payload`]), mutable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (start, end) = self.payload_range();
        &mut self.buf.as_mut()[start..end]
    }
}

/// The fields of an option-less IPv4 header, to write a new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Repr {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Protocol of the payload.
    pub protocol: u8,
    /// Bytes after the header.
    pub payload_len: u16,
    /// Type of service.
    pub tos: u8,
    /// Time to live.
    pub ttl: u8,
    /// Identification.
    pub ident: u16,
    /// Don't-fragment flag.
    pub dont_frag: bool,
}

impl Ipv4Repr {
    /// Write the 20-byte header (checksum filled) at the start of `buf`.
    /// Fails when `buf` is shorter than the header or the total length
    /// does not fit in 16 bits.
    pub fn emit(&self, buf: &mut [u8]) -> Result<()> {
        let Some(h) = buf.get_mut(..MIN_HEADER_LEN) else {
            return Err(Error::Truncated);
        };
        let Some(total) = self.payload_len.checked_add(MIN_HEADER_LEN as u16) else {
            return Err(Error::Malformed);
        };
        h[VER_IHL] = 0x45;
        h[TOS] = self.tos;
        set_u16(h, TOTAL_LEN, total);
        set_u16(h, IDENT, self.ident);
        set_u16(h, FRAG, if self.dont_frag { FLAG_DF } else { 0 });
        h[TTL] = self.ttl;
        h[PROTO] = self.protocol;
        set_u16(h, CHECKSUM, 0);
        h[SRC..SRC + 4].copy_from_slice(&self.src.octets());
        h[DST..DST + 4].copy_from_slice(&self.dst.octets());
        let c = super::checksum::checksum(h);
        set_u16(h, CHECKSUM, c);
        Ok(())
    }
}
