//! ICMPv4 messages (RFC 792), with the view of the packet an error quotes.
//!
//! A director has to read ICMP errors to find the connection they are about
//! (the quoted packet is one the director forwarded) and, for NAT, rewrite
//! them; it also writes one kind itself: fragmentation needed, when a
//! tunnelled packet would exceed the MTU.

use super::ipv4::{Ipv4Packet, PROTO_TCP, PROTO_UDP};
use super::{get_u16, set_u16, Error, Result};
use std::net::Ipv4Addr;

const TYPE: usize = 0;
const CODE: usize = 1;
const CHECKSUM: usize = 2;
const REST: usize = 4;
const NEXT_HOP_MTU: usize = 6;
/// Length of the ICMP header (type, code, checksum, 4 bytes of
/// type-specific data); an error's quoted packet follows it.
pub const HEADER_LEN: usize = 8;
/// Offset of the checksum in the header.
pub const CHECKSUM_OFFSET: usize = CHECKSUM;
/// Bytes of the original datagram past its IP header an error must quote
/// (RFC 792: "the first 64 bits").
pub const QUOTED_PAYLOAD_LEN: usize = 8;

/// Echo reply.
pub const TYPE_ECHO_REPLY: u8 = 0;
/// Destination unreachable (an error).
pub const TYPE_DEST_UNREACH: u8 = 3;
/// Source quench (an error, deprecated by RFC 6633).
pub const TYPE_SOURCE_QUENCH: u8 = 4;
/// Redirect.
pub const TYPE_REDIRECT: u8 = 5;
/// Echo request.
pub const TYPE_ECHO_REQUEST: u8 = 8;
/// Time exceeded (an error).
pub const TYPE_TIME_EXCEEDED: u8 = 11;
/// Parameter problem (an error).
pub const TYPE_PARAM_PROBLEM: u8 = 12;

/// Destination unreachable code: network unreachable.
pub const CODE_NET_UNREACH: u8 = 0;
/// Destination unreachable code: host unreachable.
pub const CODE_HOST_UNREACH: u8 = 1;
/// Destination unreachable code: protocol unreachable.
pub const CODE_PROTO_UNREACH: u8 = 2;
/// Destination unreachable code: port unreachable.
pub const CODE_PORT_UNREACH: u8 = 3;
/// Destination unreachable code: fragmentation needed and DF set
/// (RFC 1191: bytes 6..8 carry the next-hop MTU).
pub const CODE_FRAG_NEEDED: u8 = 4;
/// Time exceeded code: TTL exceeded in transit.
pub const CODE_TTL_EXCEEDED: u8 = 0;

/// Whether ICMP type `t` is an error that quotes the offending datagram
/// (destination unreachable, source quench, time exceeded, parameter
/// problem); NAT translates exactly these.
pub fn is_error_type(t: u8) -> bool {
    matches!(
        t,
        TYPE_DEST_UNREACH | TYPE_SOURCE_QUENCH | TYPE_TIME_EXCEEDED | TYPE_PARAM_PROBLEM
    )
}

/// A view of an ICMPv4 message whose header was validated.
#[derive(Debug)]
pub struct IcmpPacket<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> IcmpPacket<T> {
    /// Wrap `buf` without checking it: for a message already validated by
    /// [`IcmpPacket::new_checked`] (see `crate::packet`).
    #[inline]
    pub fn new_unchecked(buf: T) -> Self {
        IcmpPacket { buf }
    }

    /// Wrap `buf` (the IP payload): at least the 8-byte header.
    pub fn new_checked(buf: T) -> Result<Self> {
        if buf.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(IcmpPacket { buf })
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buf
    }

    /// Message type.
    pub fn msg_type(&self) -> u8 {
        self.buf.as_ref()[TYPE]
    }

    /// Message code.
    pub fn code(&self) -> u8 {
        self.buf.as_ref()[CODE]
    }

    /// Checksum field.
    pub fn checksum(&self) -> u16 {
        get_u16(self.buf.as_ref(), CHECKSUM)
    }

    /// The four type-specific header bytes (unused, pointer, gateway,
    /// identifier and sequence, or next-hop MTU).
    pub fn rest_of_header(&self) -> u32 {
        let b = self.buf.as_ref();
        u32::from_be_bytes([b[REST], b[REST + 1], b[REST + 2], b[REST + 3]])
    }

    /// Next-hop MTU of a fragmentation-needed error (RFC 1191; 0 from
    /// routers that predate it).
    pub fn next_hop_mtu(&self) -> u16 {
        get_u16(self.buf.as_ref(), NEXT_HOP_MTU)
    }

    /// Whether this message is an error that quotes a datagram.
    pub fn is_error(&self) -> bool {
        is_error_type(self.msg_type())
    }

    /// Bytes after the 8-byte header (an error's quoted datagram).
    pub fn data(&self) -> &[u8] {
        &self.buf.as_ref()[HEADER_LEN..]
    }

    /// Whether the checksum over the whole buffer verifies.
    pub fn verify_checksum(&self) -> bool {
        super::checksum::fold(super::checksum::sum(self.buf.as_ref())) == 0xffff
    }

    /// The quoted datagram of an error: its IP header validated with
    /// [`Ipv4Packet::new_checked_quoted`] and at least
    /// [`QUOTED_PAYLOAD_LEN`] bytes of its payload present.
    pub fn quoted(&self) -> Result<Ipv4Packet<&[u8]>> {
        let ip = Ipv4Packet::new_checked_quoted(self.data())?;
        if ip.payload().len() < QUOTED_PAYLOAD_LEN {
            return Err(Error::Truncated);
        }
        Ok(ip)
    }

    /// The connection an error is about: the 5-tuple of the quoted
    /// datagram, in the direction it was sent. Fails unless this is an
    /// error quoting an unfragmented-or-first-fragment TCP or UDP datagram
    /// with its ports.
    pub fn quoted_flow(&self) -> Result<QuotedFlow> {
        if !self.is_error() {
            return Err(Error::Malformed);
        }
        let ip = self.quoted()?;
        let proto = ip.protocol();
        if (proto != PROTO_TCP && proto != PROTO_UDP) || ip.frag_offset() != 0 {
            return Err(Error::Malformed);
        }
        let p = ip.payload();
        Ok(QuotedFlow {
            proto,
            src: ip.src(),
            sport: get_u16(p, 0),
            dst: ip.dst(),
            dport: get_u16(p, 2),
        })
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> IcmpPacket<T> {
    /// Set the message type (checksum not updated).
    pub fn set_msg_type(&mut self, v: u8) {
        self.buf.as_mut()[TYPE] = v;
    }

    /// Set the message code (checksum not updated).
    pub fn set_code(&mut self, v: u8) {
        self.buf.as_mut()[CODE] = v;
    }

    /// Set the checksum field.
    pub fn set_checksum(&mut self, v: u16) {
        set_u16(self.buf.as_mut(), CHECKSUM, v);
    }

    /// Set the four type-specific header bytes (checksum not updated).
    pub fn set_rest_of_header(&mut self, v: u32) {
        self.buf.as_mut()[REST..REST + 4].copy_from_slice(&v.to_be_bytes());
    }

    /// Set the next-hop MTU of a fragmentation-needed error (bytes 4..6
    /// left as they are; checksum not updated).
    pub fn set_next_hop_mtu(&mut self, v: u16) {
        set_u16(self.buf.as_mut(), NEXT_HOP_MTU, v);
    }

    /// Compute the checksum over the whole buffer and store it.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = super::checksum::checksum(self.buf.as_ref());
        self.set_checksum(c);
    }

    /// Bytes after the 8-byte header, mutable.
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buf.as_mut()[HEADER_LEN..]
    }
}

/// The 5-tuple of the datagram an ICMP error quotes, as it was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct QuotedFlow {
    /// IP protocol ([`PROTO_TCP`] or [`PROTO_UDP`]).
    pub proto: u8,
    /// Source address of the quoted datagram.
    pub src: Ipv4Addr,
    /// Its source port.
    pub sport: u16,
    /// Destination address of the quoted datagram.
    pub dst: Ipv4Addr,
    /// Its destination port.
    pub dport: u16,
}
