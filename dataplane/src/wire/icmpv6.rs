//! ICMPv6 messages (RFC 4443), with the view of the packet an error quotes.
//!
//! As for ICMPv4, a director reads the errors about the flows it forwards
//! (destination unreachable, packet too big, time exceeded, parameter
//! problem) to find their connection, translates them for NAT, and writes
//! one kind itself: packet too big, when a tunnelled packet would exceed
//! the path MTU (IPv6 is never fragmented on the way). Unlike ICMPv4 the
//! checksum covers the IPv6 pseudo-header, so every check and fill takes
//! the addresses.

use super::ipv6::{self, Ipv6Packet, Upper, NEXT_ICMPV6, NEXT_TCP, NEXT_UDP};
use super::{get_u16, set_u16, Error, Result};
use std::net::Ipv6Addr;

const TYPE: usize = 0;
const CODE: usize = 1;
const CHECKSUM: usize = 2;
const REST: usize = 4;
/// Length of the ICMPv6 header (type, code, checksum, 4 bytes of
/// type-specific data); an error's quoted packet follows it.
pub const HEADER_LEN: usize = 8;
/// Offset of the checksum in the header.
pub const CHECKSUM_OFFSET: usize = CHECKSUM;
/// Bytes of the quoted packet's transport header an error must hold for
/// its flow to be found (ports, and TCP's sequence number or UDP's length
/// and checksum, as ICMPv4 guarantees).
pub const QUOTED_L4_LEN: usize = 8;

/// Destination unreachable (an error).
pub const TYPE_DEST_UNREACH: u8 = 1;
/// Packet too big (an error; the rest of the header is the MTU).
pub const TYPE_PACKET_TOO_BIG: u8 = 2;
/// Time exceeded (an error).
pub const TYPE_TIME_EXCEEDED: u8 = 3;
/// Parameter problem (an error; the rest of the header is a pointer).
pub const TYPE_PARAM_PROBLEM: u8 = 4;
/// Echo request.
pub const TYPE_ECHO_REQUEST: u8 = 128;
/// Echo reply.
pub const TYPE_ECHO_REPLY: u8 = 129;
/// Router solicitation (NDP: the kernel's).
pub const TYPE_ROUTER_SOLICIT: u8 = 133;
/// Router advertisement (NDP).
pub const TYPE_ROUTER_ADVERT: u8 = 134;
/// Neighbour solicitation (NDP).
pub const TYPE_NEIGHBOR_SOLICIT: u8 = 135;
/// Neighbour advertisement (NDP).
pub const TYPE_NEIGHBOR_ADVERT: u8 = 136;
/// Redirect (NDP).
pub const TYPE_REDIRECT: u8 = 137;

/// Destination unreachable code: no route to destination.
pub const CODE_NO_ROUTE: u8 = 0;
/// Destination unreachable code: administratively prohibited.
pub const CODE_ADMIN_PROHIBITED: u8 = 1;
/// Destination unreachable code: address unreachable.
pub const CODE_ADDR_UNREACH: u8 = 3;
/// Destination unreachable code: port unreachable.
pub const CODE_PORT_UNREACH: u8 = 4;
/// Time exceeded code: hop limit exceeded in transit.
pub const CODE_HOP_LIMIT_EXCEEDED: u8 = 0;
/// Time exceeded code: fragment reassembly time exceeded.
pub const CODE_REASSEMBLY_EXCEEDED: u8 = 1;
/// Parameter problem code: erroneous header field.
pub const CODE_BAD_HEADER: u8 = 0;
/// Parameter problem code: unrecognised next header.
pub const CODE_BAD_NEXT_HEADER: u8 = 1;

/// Whether ICMPv6 type `t` is an error that quotes the offending packet
/// (types below 128, RFC 4443 §2.1; the four defined ones).
pub fn is_error_type(t: u8) -> bool {
    matches!(
        t,
        TYPE_DEST_UNREACH | TYPE_PACKET_TOO_BIG | TYPE_TIME_EXCEEDED | TYPE_PARAM_PROBLEM
    )
}

/// Whether ICMPv6 type `t` belongs to neighbour discovery (RFC 4861),
/// which a director leaves to the kernel.
pub fn is_ndp_type(t: u8) -> bool {
    (TYPE_ROUTER_SOLICIT..=TYPE_REDIRECT).contains(&t)
}

/// A view of an ICMPv6 message whose header was validated.
#[derive(Debug)]
pub struct Icmpv6Packet<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> Icmpv6Packet<T> {
    /// Wrap `buf` without checking it: for a message already validated by
    /// [`Icmpv6Packet::new_checked`].
    #[inline]
    pub fn new_unchecked(buf: T) -> Self {
        Icmpv6Packet { buf }
    }

    /// Wrap `buf` (the upper-layer part of an IPv6 packet): at least the
    /// 8-byte header.
    pub fn new_checked(buf: T) -> Result<Self> {
        if buf.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(Icmpv6Packet { buf })
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

    /// The four type-specific header bytes.
    pub fn rest_of_header(&self) -> u32 {
        let b = self.buf.as_ref();
        u32::from_be_bytes([b[REST], b[REST + 1], b[REST + 2], b[REST + 3]])
    }

    /// The MTU of a packet-too-big error.
    pub fn mtu(&self) -> u32 {
        self.rest_of_header()
    }

    /// The pointer of a parameter-problem error: the offset in the quoted
    /// packet of the field at fault.
    pub fn pointer(&self) -> u32 {
        self.rest_of_header()
    }

    /// Identifier of an echo request or reply.
    pub fn echo_ident(&self) -> u16 {
        get_u16(self.buf.as_ref(), REST)
    }

    /// Sequence number of an echo request or reply.
    pub fn echo_seq(&self) -> u16 {
        get_u16(self.buf.as_ref(), REST + 2)
    }

    /// Whether this message is an error that quotes a packet.
    pub fn is_error(&self) -> bool {
        is_error_type(self.msg_type())
    }

    /// Bytes after the 8-byte header (an error's quoted packet, an echo's
    /// data).
    pub fn data(&self) -> &[u8] {
        &self.buf.as_ref()[HEADER_LEN..]
    }

    /// Whether the checksum over the pseudo-header of `src` → `dst` and
    /// the whole buffer verifies.
    pub fn verify_checksum(&self, src: Ipv6Addr, dst: Ipv6Addr) -> bool {
        let b = self.buf.as_ref();
        let Ok(len) = u32::try_from(b.len()) else {
            return false;
        };
        let acc = super::checksum::pseudo_header_sum6(src, dst, NEXT_ICMPV6, len)
            + super::checksum::sum_wide(b);
        super::checksum::fold64(acc) == 0xffff
    }

    /// The quoted packet of an error: its fixed IPv6 header validated with
    /// [`Ipv6Packet::new_checked_quoted`].
    pub fn quoted(&self) -> Result<Ipv6Packet<&[u8]>> {
        Ipv6Packet::new_checked_quoted(self.data())
    }

    /// The connection an error is about: the 5-tuple of the quoted packet,
    /// in the direction it was sent, found behind its extension headers.
    /// Fails unless this is an error quoting TCP or UDP (unfragmented, or
    /// a first fragment) with [`QUOTED_L4_LEN`] bytes of its header.
    pub fn quoted_flow(&self) -> Result<QuotedFlow6> {
        if !self.is_error() {
            return Err(Error::Malformed);
        }
        let ip = self.quoted()?;
        let (proto, offset) = match ip.upper()? {
            Upper::Transport { proto, offset, .. } => (proto, offset),
            Upper::Fragment(f) if f.is_first() => (f.proto, f.offset),
            Upper::Fragment(_) => return Err(Error::Malformed),
        };
        if proto != NEXT_TCP && proto != NEXT_UDP {
            return Err(Error::Malformed);
        }
        let l4 = ip
            .payload()
            .get(offset..offset + QUOTED_L4_LEN)
            .ok_or(Error::Truncated)?;
        Ok(QuotedFlow6 {
            proto,
            src: ip.src(),
            sport: get_u16(l4, 0),
            dst: ip.dst(),
            dport: get_u16(l4, 2),
            l4_offset: ipv6::HEADER_LEN + offset,
        })
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv6Packet<T> {
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

    /// Set the MTU of a packet-too-big error (checksum not updated).
    pub fn set_mtu(&mut self, v: u32) {
        self.set_rest_of_header(v);
    }

    /// Compute the checksum over the pseudo-header of `src` → `dst` and
    /// the whole buffer and store it.
    pub fn fill_checksum(&mut self, src: Ipv6Addr, dst: Ipv6Addr) {
        self.set_checksum(0);
        let c = super::checksum::transport_checksum6(src, dst, NEXT_ICMPV6, self.buf.as_ref());
        self.set_checksum(c);
    }

    /// Bytes after the 8-byte header, mutable.
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buf.as_mut()[HEADER_LEN..]
    }
}

/// Length of the IPv6 packet an ICMPv6 error quoting `offending_len`
/// bytes makes: headers and quote, at most the minimum MTU (RFC 4443
/// §2.4 (c): the quote is cut to fit).
pub fn error_packet_len(offending_len: usize) -> usize {
    (ipv6::HEADER_LEN + HEADER_LEN + offending_len).min(ipv6::MIN_MTU)
}

/// Write at the start of `buf` an IPv6 packet `src` → `dst` (hop limit
/// `hop_limit`) carrying ICMPv6 error `msg_type`/`code` with `rest` (the
/// MTU of a packet too big, the pointer of a parameter problem) quoting
/// as much of `offending` as fits in [`ipv6::MIN_MTU`] bytes, checksum
/// filled; returns its length. Fails when `buf` is shorter than that.
pub fn emit_error(
    buf: &mut [u8],
    (src, dst, hop_limit): (Ipv6Addr, Ipv6Addr, u8),
    msg_type: u8,
    code: u8,
    rest: u32,
    offending: &[u8],
) -> Result<usize> {
    let len = error_packet_len(offending.len());
    let out = buf.get_mut(..len).ok_or(Error::Truncated)?;
    let (ip, icmp) = out.split_at_mut(ipv6::HEADER_LEN);
    ipv6::Ipv6Repr {
        src,
        dst,
        next_header: NEXT_ICMPV6,
        // At most MIN_MTU - 40: fits.
        payload_len: icmp.len() as u16,
        hop_limit,
        traffic_class: 0,
        flow_label: 0,
    }
    .emit(ip)?;
    let quoted = icmp.len() - HEADER_LEN;
    icmp[HEADER_LEN..].copy_from_slice(&offending[..quoted]);
    let mut m = Icmpv6Packet::new_unchecked(icmp);
    m.set_msg_type(msg_type);
    m.set_code(code);
    m.set_rest_of_header(rest);
    m.fill_checksum(src, dst);
    Ok(len)
}

/// The 5-tuple of the packet an ICMPv6 error quotes, as it was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct QuotedFlow6 {
    /// Upper-layer protocol ([`NEXT_TCP`] or [`NEXT_UDP`]).
    pub proto: u8,
    /// Source address of the quoted packet.
    pub src: Ipv6Addr,
    /// Its source port.
    pub sport: u16,
    /// Destination address of the quoted packet.
    pub dst: Ipv6Addr,
    /// Its destination port.
    pub dport: u16,
    /// Offset of the quoted transport header from the start of the quoted
    /// packet (its extension headers skipped), for a NAT rewrite.
    pub l4_offset: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ipv6::{Ipv6Repr, NEXT_DEST_OPTS, NEXT_FRAGMENT};

    fn a(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    /// An IPv6 packet client → VIP with next header `next` and `payload`.
    fn packet(next: u8, payload: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; 40];
        Ipv6Repr {
            src: a("2001:2::10"),
            dst: a("2001:2::100"),
            next_header: next,
            payload_len: payload.len() as u16,
            hop_limit: 64,
            traffic_class: 0,
            flow_label: 0,
        }
        .emit(&mut b)
        .unwrap();
        b.extend_from_slice(payload);
        b
    }

    fn icmp(t: u8, code: u8, rest: u32, data: &[u8]) -> Vec<u8> {
        let mut m = vec![t, code, 0, 0];
        m.extend_from_slice(&rest.to_be_bytes());
        m.extend_from_slice(data);
        let mut p = Icmpv6Packet::new_checked(&mut m[..]).unwrap();
        p.fill_checksum(a("2001:2::1"), a("2001:2::10"));
        m
    }

    const PORTS: [u8; 8] = [0x9c, 0x40, 0, 80, 0, 0, 0, 1];

    #[test]
    fn quoted_flows_are_found_or_refused() {
        let flow = |proto, l4_offset| {
            Ok(QuotedFlow6 {
                proto,
                src: a("2001:2::10"),
                sport: 40000,
                dst: a("2001:2::100"),
                dport: 80,
                l4_offset,
            })
        };
        let dest_opts = [&[NEXT_UDP, 0, 1, 4, 0, 0, 0, 0][..], &PORTS].concat();
        let first_frag = [&[NEXT_TCP, 0, 0, 1, 0, 0, 0, 9][..], &PORTS].concat();
        let later_frag = [&[NEXT_TCP, 0, 0x05, 0xc8, 0, 0, 0, 9][..], &PORTS].concat();
        let cases: Vec<(&str, Vec<u8>, Result<QuotedFlow6>)> = vec![
            (
                "unreachable quoting TCP",
                icmp(
                    TYPE_DEST_UNREACH,
                    CODE_PORT_UNREACH,
                    0,
                    &packet(NEXT_TCP, &[PORTS; 3].concat()),
                ),
                flow(NEXT_TCP, 40),
            ),
            (
                "packet too big quoting UDP behind dest opts",
                icmp(
                    TYPE_PACKET_TOO_BIG,
                    0,
                    1400,
                    &packet(NEXT_DEST_OPTS, &dest_opts),
                ),
                flow(NEXT_UDP, 48),
            ),
            (
                "time exceeded quoting a first fragment",
                icmp(
                    TYPE_TIME_EXCEEDED,
                    0,
                    0,
                    &packet(NEXT_FRAGMENT, &first_frag),
                ),
                flow(NEXT_TCP, 48),
            ),
            (
                "parameter problem quoting a later fragment",
                icmp(
                    TYPE_PARAM_PROBLEM,
                    0,
                    6,
                    &packet(NEXT_FRAGMENT, &later_frag),
                ),
                Err(Error::Malformed),
            ),
            (
                "an echo request quotes nothing",
                icmp(TYPE_ECHO_REQUEST, 0, 0x0001_0002, &packet(NEXT_TCP, &PORTS)),
                Err(Error::Malformed),
            ),
            (
                "quoting ICMPv6",
                icmp(TYPE_DEST_UNREACH, 0, 0, &packet(NEXT_ICMPV6, &PORTS)),
                Err(Error::Malformed),
            ),
            (
                "quoted transport header cut short",
                icmp(TYPE_DEST_UNREACH, 0, 0, &packet(NEXT_TCP, &PORTS)[..46]),
                Err(Error::Truncated),
            ),
            (
                "quoted IPv6 header cut short",
                icmp(TYPE_DEST_UNREACH, 0, 0, &packet(NEXT_TCP, &PORTS)[..30]),
                Err(Error::Truncated),
            ),
            (
                "quoted dest opts header cut short",
                icmp(
                    TYPE_DEST_UNREACH,
                    0,
                    0,
                    &packet(NEXT_DEST_OPTS, &dest_opts)[..44],
                ),
                Err(Error::Truncated),
            ),
            (
                "quoted chain too long",
                icmp(
                    TYPE_DEST_UNREACH,
                    0,
                    0,
                    &packet(
                        NEXT_DEST_OPTS,
                        &[NEXT_DEST_OPTS, 0, 0, 0, 0, 0, 0, 0].repeat(9),
                    ),
                ),
                Err(Error::Malformed),
            ),
            (
                "quoting IPv4",
                icmp(TYPE_DEST_UNREACH, 0, 0, &{
                    let mut p = packet(NEXT_TCP, &PORTS);
                    p[0] = 0x45;
                    p
                }),
                Err(Error::Malformed),
            ),
        ];
        for (desc, msg, want) in cases {
            let m = Icmpv6Packet::new_checked(&msg[..]).unwrap();
            assert!(m.verify_checksum(a("2001:2::1"), a("2001:2::10")), "{desc}");
            assert_eq!(m.quoted_flow(), want, "{desc}");
        }
    }

    #[test]
    fn header_fields_and_checksum() {
        let mut msg = icmp(TYPE_PACKET_TOO_BIG, 0, 1280, &packet(NEXT_TCP, &PORTS));
        let m = Icmpv6Packet::new_checked(&msg[..]).unwrap();
        assert!(m.is_error());
        assert_eq!(m.mtu(), 1280);
        assert!(m.verify_checksum(a("2001:2::1"), a("2001:2::10")));
        // The pseudo-header counts: another destination fails.
        assert!(!m.verify_checksum(a("2001:2::1"), a("2001:2::11")));
        let mut m = Icmpv6Packet::new_checked(&mut msg[..]).unwrap();
        m.set_mtu(1400);
        assert!(!m.verify_checksum(a("2001:2::1"), a("2001:2::10")));
        m.fill_checksum(a("2001:2::1"), a("2001:2::10"));
        assert!(m.verify_checksum(a("2001:2::1"), a("2001:2::10")));
        assert_eq!(m.pointer(), 1400);
        let echo = icmp(TYPE_ECHO_REPLY, 0, 0x1234_0007, b"ping");
        let e = Icmpv6Packet::new_checked(&echo[..]).unwrap();
        assert!(!e.is_error());
        assert_eq!(
            (e.echo_ident(), e.echo_seq(), e.data()),
            (0x1234, 7, &b"ping"[..])
        );
        assert_eq!(
            Icmpv6Packet::new_checked(&echo[..7]).map(|_| ()),
            Err(Error::Truncated)
        );
        assert!(is_ndp_type(TYPE_NEIGHBOR_SOLICIT) && is_ndp_type(TYPE_REDIRECT));
        assert!(!is_ndp_type(TYPE_ECHO_REQUEST) && !is_error_type(TYPE_NEIGHBOR_ADVERT));
    }

    #[test]
    fn checksum_matches_etherparse() {
        use etherparse::{Icmpv6Header, Icmpv6Type};
        let data = packet(NEXT_UDP, &PORTS);
        let mine = icmp(TYPE_DEST_UNREACH, CODE_PORT_UNREACH, 0, &data);
        let h = Icmpv6Header::with_checksum(
            Icmpv6Type::DestinationUnreachable(etherparse::icmpv6::DestUnreachableCode::Port),
            a("2001:2::1").octets(),
            a("2001:2::10").octets(),
            &data,
        )
        .unwrap();
        assert_eq!(h.checksum, get_u16(&mine, 2));
    }

    #[test]
    fn emitted_errors_match_the_testkit_and_fit_the_minimum_mtu() {
        use crate::testkit::v6::{icmp6_error, ip6, ip6_packet, CIP6, DIR_IP6, VIP6};
        let tcp = crate::testkit::frame::tcp(40000, 80).ack(1);
        for size in [0usize, 100, 1232 - 60, 1400] {
            let offending = ip6_packet(&ip6(CIP6, VIP6), &tcp, &vec![0x5a; size]);
            let want = icmp6_error(DIR_IP6, CIP6, TYPE_PACKET_TOO_BIG, 0, 1280, &offending);
            let mut buf = vec![0u8; 2048];
            let n = emit_error(
                &mut buf,
                (DIR_IP6, CIP6, 64),
                TYPE_PACKET_TOO_BIG,
                0,
                1280,
                &offending,
            )
            .unwrap();
            assert_eq!(n, error_packet_len(offending.len()), "{size}");
            assert!(n <= ipv6::MIN_MTU);
            assert_eq!(&buf[..n], &want[..], "{size}");
            assert_eq!(
                emit_error(
                    &mut buf[..n - 1],
                    (DIR_IP6, CIP6, 64),
                    2,
                    0,
                    1280,
                    &offending
                ),
                Err(Error::Truncated)
            );
        }
    }
}
