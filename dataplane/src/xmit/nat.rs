//! NAT ("masquerading", `-m`): the director rewrites the client's packets
//! from VIP:vport to RIP:rport on the way in and the real server's replies
//! from RIP:rport back to VIP:vport on the way out, so real servers need no
//! VIP but must route their replies through the director.
//!
//! Every rewrite is in place and updates the checksums incrementally
//! (RFC 1624): the IPv4 header checksum for the address, the TCP/UDP
//! checksum for the address (through the pseudo-header) and the port. A
//! UDP checksum of 0 (none) stays 0. ICMP errors about a NAT'd connection
//! are translated too, as IPVS's `ip_vs_nat_icmp` does: the outer address,
//! the quoted datagram's address, port and checksums, and the ICMP
//! checksum.
//!
//! IPv6 ([`packet_xmit6`]) is the same rewrite without a header checksum:
//! the TCP/UDP checksum covers the 128-bit address through the IPv6
//! pseudo-header (RFC 1624 over its eight words). ICMPv6 errors about a
//! NAT'd connection are translated as ICMP's are ([`icmp6_xmit`]).
//!
//! [`packet_xmit`] rewrites a frame the pipeline has parsed, at the offsets
//! it recorded. The established packet takes a shorter way: an IPv4 NAT
//! destination of a service with an address has one fixed translation,
//! (VIP, vport) ↔ (RIP, rport), so both checksum changes of its inbound
//! rewrite are made and folded once, with the snapshot ([`NatV4`]), and a
//! packet adds each with one end-around carry; a reply's are summed from
//! its parsed key, already in registers ([`rewrite_reply`]). Both work on
//! the checksums' bytes as they load, unswapped (a one's complement sum
//! does not depend on byte order), and give exactly what [`packet_xmit`]
//! gives. The other functions validate the whole frame before they write
//! a byte: on `Err` the frame is untouched.

use super::{set_macs, Dir, Out, XmitCtx};
use crate::frame::FrameBuf;
use crate::packet::{self, Parsed, Quoted, L3};
use crate::wire::checksum::{self, Delta};
use crate::wire::eth::{self, EthernetFrame, Mac, ETHERTYPE_IPV4};
use crate::wire::icmp::{IcmpPacket, QuotedFlow};
use crate::wire::ipv4::{Ipv4Packet, PROTO_ICMP, PROTO_TCP, PROTO_UDP};
use crate::wire::{get_u16, set_u16, tcp, udp};
use crate::wire::{ipv4, ipv6};
use std::net::{Ipv4Addr, Ipv6Addr};

/// Why a frame could not be rewritten (the frame is left unchanged).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NatError {
    /// Not an IPv4 Ethernet frame.
    #[error("not an IPv4 frame")]
    NotIpv4,
    /// A header is truncated or has impossible fields.
    #[error("malformed packet: {0}")]
    Malformed(#[from] crate::wire::Error),
    /// An IPv4 fragment (xvs does not reassemble).
    #[error("IPv4 fragment")]
    Fragment,
    /// The protocol cannot be translated (NAT handles TCP and UDP, and ICMP
    /// errors quoting TCP or UDP).
    #[error("protocol {0} not translated")]
    Protocol(u8),
    /// An ICMP message that is not an error quoting a TCP or UDP datagram.
    #[error("not an ICMP error about a TCP or UDP datagram")]
    NotIcmpError,
}

/// Offset of the source port in a TCP or UDP header.
const PORT_SRC: usize = 0;
/// Offset of the destination port in a TCP or UDP header.
const PORT_DST: usize = 2;

/// Which end of a packet a rewrite changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Src,
    Dst,
}

impl End {
    /// The end of the outer packet a NAT'd packet going `dir` changes.
    #[inline]
    fn of(dir: Dir) -> End {
        match dir {
            Dir::In => End::Dst,
            Dir::Out => End::Src,
        }
    }
}

/// The fixed translation of an IPv4 real server `rip`:`rport` behind the
/// virtual service `vip`:`vport` (a service with an address: in IPVS a
/// destination belongs to one service), with the checksum changes of the
/// inbound rewrite summed and folded once, when the snapshot is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NatV4 {
    /// The virtual address inbound packets are sent to.
    pub vip: Ipv4Addr,
    /// The virtual port inbound packets are sent to.
    pub vport: u16,
    /// The real server's address.
    pub rip: Ipv4Addr,
    /// The real server's port (a port-less server's is the virtual port).
    pub rport: u16,
    /// VIP → RIP: the IPv4 header checksum's change.
    ip: Folded,
    /// VIP → RIP and vport → rport: the TCP/UDP checksum's change
    /// (through the pseudo-header).
    l4: Folded,
}

impl NatV4 {
    /// The translation `vip`:`vport` → `rip`:`rport`.
    pub fn new(vip: Ipv4Addr, vport: u16, rip: Ipv4Addr, rport: u16) -> Self {
        let mut ip = Delta::new();
        ip.add_addr(vip, rip);
        let mut l4 = ip;
        l4.add16(vport, rport);
        NatV4 {
            vip,
            vport,
            rip,
            rport,
            ip: Folded::of(ip),
            l4: Folded::of(l4),
        }
    }

    /// Rewrite a parsed inbound TCP/UDP frame to `self.rip`:`rport` with
    /// the changes summed in advance (Ethernet untouched), as
    /// [`packet_xmit`] would: `false`, and the frame untouched, when the
    /// frame is not sent to `self.vip`:`self.vport`, `rport` is not
    /// `self.rport` (a connection made before the server's port changed)
    /// or the frame is an ICMP error: the caller then takes the general
    /// rewrite.
    #[inline(always)]
    pub fn rewrite_in(&self, frame: &mut [u8], pkt: &Parsed, rport: u16) -> bool {
        if pkt.quoted.is_some() {
            return false;
        }
        self.rewrite_plain(frame, pkt, rport)
    }

    /// [`NatV4::rewrite_in`] for a frame known to be no ICMP error (its
    /// parse has no quoted datagram), which the pipeline's established
    /// path has already told apart.
    #[inline(always)]
    pub fn rewrite_plain(&self, frame: &mut [u8], pkt: &Parsed, rport: u16) -> bool {
        debug_assert!(pkt.quoted.is_none());
        if pkt.key.vip != self.vip || pkt.key.vport != self.vport || rport != self.rport {
            return false;
        }
        rewrite_fixed(frame, pkt, End::Dst, self.rip, self.rport, self.ip, self.l4);
        true
    }
}

/// A checksum change folded to one 16-bit word (its end-around-carry sum,
/// 0 only for no change at all), in the order the frame's two checksum
/// bytes load natively: one's complement sums do not depend on byte order
/// (RFC 1071, 2.B), so applying it is an addition with end-around carry,
/// without swapping the checksum's bytes in and out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Folded(u16);

impl Folded {
    /// `d` folded.
    fn of(d: Delta) -> Folded {
        // The complement of `apply(0xffff)` is `d` folded (see `Delta`).
        Folded(u16::from_ne_bytes((!d.apply(0xffff)).to_be_bytes()))
    }
}

/// A checksum change a rewrite applies to the checksum bytes of a frame:
/// the RFC 1624 update (eqn. 3) of `check`, `!(!check + change)`.
trait Change: Copy {
    /// The updated checksum bytes.
    fn apply(self, check: [u8; 2]) -> [u8; 2];

    /// [`Change::apply`] under UDP's rule: 0 (no checksum) stays 0 and a
    /// computed 0 is sent as `0xffff`.
    #[inline(always)]
    fn apply_udp(self, check: [u8; 2]) -> [u8; 2] {
        if check == [0, 0] {
            return check;
        }
        match self.apply(check) {
            [0, 0] => [0xff, 0xff],
            c => c,
        }
    }
}

impl Change for Folded {
    #[inline(always)]
    fn apply(self, check: [u8; 2]) -> [u8; 2] {
        // Both at most 0xffff: a carry out leaves at most 0xfffe, so
        // adding it back cannot carry again.
        let (s, carry) = (!u16::from_ne_bytes(check)).overflowing_add(self.0);
        (!s.wrapping_add(u16::from(carry))).to_ne_bytes()
    }
}

/// A checksum change not folded yet, a sum of native-order 32-bit and
/// 16-bit words (complemented old, new) read from the parsed key:
/// congruent to the word-by-word sum modulo 0xffff and 0 only when it
/// is, so one fold gives what [`Delta`] gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Wide(u64);

impl Wide {
    /// An IPv4 address changed from `old` to `new`.
    #[inline(always)]
    fn addr(old: Ipv4Addr, new: Ipv4Addr) -> Wide {
        let (o, n) = (
            u32::from_ne_bytes(old.octets()),
            u32::from_ne_bytes(new.octets()),
        );
        Wide(u64::from(!o) + u64::from(n))
    }

    /// And a port changed from `old` to `new`.
    #[inline(always)]
    fn port(self, old: u16, new: u16) -> Wide {
        let (o, n) = (
            u16::from_ne_bytes(old.to_be_bytes()),
            u16::from_ne_bytes(new.to_be_bytes()),
        );
        Wide(self.0 + u64::from(!o) + u64::from(n))
    }
}

impl Change for Wide {
    #[inline(always)]
    fn apply(self, check: [u8; 2]) -> [u8; 2] {
        (!checksum::fold64(u64::from(!u16::from_ne_bytes(check)) + self.0)).to_ne_bytes()
    }
}

/// Rewrite a parsed reply (TCP/UDP, not an ICMP error) of a real server
/// from its source, the parsed key's `cip`:`cport`, to `vip`:`vport`
/// (Ethernet untouched), as [`packet_xmit`] would, the checksum changes
/// summed from the key rather than read back from the frame.
#[inline(always)]
pub fn rewrite_reply(frame: &mut [u8], pkt: &Parsed, vip: Ipv4Addr, vport: u16) {
    debug_assert!(pkt.quoted.is_none());
    let ip = Wide::addr(pkt.key.cip, vip);
    let l4 = ip.port(pkt.key.cport, vport);
    rewrite_fixed(frame, pkt, End::Src, vip, vport, ip, l4);
}

/// The TCP/UDP rewrite of a parsed frame whose `end` becomes
/// `addr`:`port`, the IPv4 header checksum changing by `ip` and the
/// segment's by `l4` (the same sums [`rewrite_l4`] makes, so the same
/// bytes): the stores and two additions, in line.
#[inline(always)]
fn rewrite_fixed<C: Change>(
    frame: &mut [u8],
    pkt: &Parsed,
    end: End,
    addr: Ipv4Addr,
    port: u16,
    ip: C,
    l4: C,
) {
    let (addr_at, port_at) = match end {
        End::Src => (ipv4::SRC_OFFSET, PORT_SRC),
        End::Dst => (ipv4::DST_OFFSET, PORT_DST),
    };
    let hdr: &mut [u8; ipv4::MIN_HEADER_LEN] = (&mut frame[L3..L3 + ipv4::MIN_HEADER_LEN])
        .try_into()
        .expect("a header's length");
    hdr[addr_at..addr_at + 4].copy_from_slice(&addr.octets());
    const HC: usize = ipv4::CHECKSUM_OFFSET;
    let hc = ip.apply([hdr[HC], hdr[HC + 1]]);
    hdr[HC..HC + 2].copy_from_slice(&hc);
    if pkt.key.proto == PROTO_UDP {
        const SUM: usize = udp::CHECKSUM_OFFSET;
        let seg: &mut [u8; udp::HEADER_LEN] = (&mut frame[pkt.l4..pkt.l4 + udp::HEADER_LEN])
            .try_into()
            .expect("a header's length");
        let sum = l4.apply_udp([seg[SUM], seg[SUM + 1]]);
        set_u16(seg, port_at, port);
        seg[SUM..SUM + 2].copy_from_slice(&sum);
    } else {
        const SUM: usize = tcp::CHECKSUM_OFFSET;
        let seg: &mut [u8; SUM + 2] = (&mut frame[pkt.l4..pkt.l4 + SUM + 2])
            .try_into()
            .expect("a header's length");
        let sum = l4.apply([seg[SUM], seg[SUM + 1]]);
        set_u16(seg, port_at, port);
        seg[SUM..SUM + 2].copy_from_slice(&sum);
    }
}

/// Translate a parsed frame going `ctx.dir`: its changing end (or, for an
/// ICMP error, the outer end and the quoted datagram's opposite end)
/// becomes `ctx.addr`:`ctx.port`, with every checksum updated, and the
/// frame is readdressed from `ctx.src_mac` to `ctx.dst_mac`. Never fails:
/// the frame was validated when it was parsed.
#[inline]
pub fn packet_xmit<B: FrameBuf + ?Sized>(
    buf: &mut B,
    pkt: &Parsed,
    ctx: &XmitCtx,
) -> Result<Out, super::XmitError> {
    let frame = buf.bytes();
    let end = End::of(ctx.dir);
    match &pkt.quoted {
        None => rewrite_l4(frame, pkt, end, ctx.addr, ctx.port),
        Some(q) => rewrite_icmp(frame, pkt, q, end, ctx.addr, ctx.port),
    }
    set_macs(frame, ctx.src_mac, ctx.dst_mac);
    Ok(Out::Tx)
}

/// [`packet_xmit`] for an IPv6 frame: its changing end becomes
/// `ctx.addr6`:`ctx.port`, the TCP/UDP checksum updated over the IPv6
/// pseudo-header (a UDP checksum of 0 stays 0), the hop limit kept. Never
/// fails: the frame was validated when it was parsed.
#[inline]
pub fn packet_xmit6<B: FrameBuf + ?Sized>(
    buf: &mut B,
    pkt: &Parsed<Ipv6Addr>,
    ctx: &XmitCtx,
) -> Result<Out, super::XmitError> {
    let frame = buf.bytes();
    let at = match End::of(ctx.dir) {
        End::Src => (ipv6::SRC_OFFSET, PORT_SRC),
        End::Dst => (ipv6::DST_OFFSET, PORT_DST),
    };
    let a = L3 + at.0;
    let mut old = [0u8; 16];
    old.copy_from_slice(&frame[a..a + 16]);
    let old = Ipv6Addr::from(old);
    frame[a..a + 16].copy_from_slice(&ctx.addr6.octets());
    let seg = &mut frame[pkt.l4..pkt.end];
    let old_port = get_u16(seg, at.1);
    let old_sum = |at: usize| get_u16(seg, at);
    let (csum_at, sum) = match pkt.key.proto {
        PROTO_TCP => {
            let at = tcp::CHECKSUM_OFFSET;
            let s = checksum::update_addr6_port(old_sum(at), old, ctx.addr6, old_port, ctx.port);
            (at, s)
        }
        _ => {
            let at = udp::CHECKSUM_OFFSET;
            let s =
                checksum::update_addr6_port_udp(old_sum(at), old, ctx.addr6, old_port, ctx.port);
            (at, s)
        }
    };
    set_u16(seg, at.1, ctx.port);
    set_u16(seg, csum_at, sum);
    set_macs(frame, ctx.src_mac, ctx.dst_mac);
    Ok(Out::Tx)
}

/// Translate an ICMPv6 error (parsed as `pkt`, quoting the packet of
/// `q`) going `ctx.dir`: the outer end that changes (the destination
/// inbound, the source outbound) and the quoted packet's opposite end
/// become `ctx.addr6`, the quoted port `ctx.port`, the quoted TCP or UDP
/// checksum is updated when the quote holds it, and the ICMPv6 checksum
/// is computed anew over the message (at most 1280 bytes, a cold path).
#[cold]
pub fn icmp6_xmit<B: FrameBuf + ?Sized>(
    buf: &mut B,
    pkt: &Parsed<Ipv6Addr>,
    q: &crate::wire::icmpv6::QuotedFlow6,
    ctx: &XmitCtx,
) -> Result<Out, super::XmitError> {
    let frame = buf.bytes();
    let (outer_at, quoted_at, port_at) = match End::of(ctx.dir) {
        End::Dst => (ipv6::DST_OFFSET, ipv6::SRC_OFFSET, PORT_SRC),
        End::Src => (ipv6::SRC_OFFSET, ipv6::DST_OFFSET, PORT_DST),
    };
    let a = L3 + outer_at;
    frame[a..a + 16].copy_from_slice(&ctx.addr6.octets());
    let q_ip = pkt.l4 + crate::wire::icmpv6::HEADER_LEN;
    let q_l4 = q_ip + q.l4_offset;
    let qa = q_ip + quoted_at;
    let mut old = [0u8; 16];
    old.copy_from_slice(&frame[qa..qa + 16]);
    let old = Ipv6Addr::from(old);
    frame[qa..qa + 16].copy_from_slice(&ctx.addr6.octets());
    let old_port = get_u16(&frame[q_l4..], port_at);
    set_u16(&mut frame[q_l4..], port_at, ctx.port);
    let csum_at = q_l4
        + match q.proto {
            PROTO_TCP => tcp::CHECKSUM_OFFSET,
            _ => udp::CHECKSUM_OFFSET,
        };
    if csum_at + 2 <= pkt.end {
        let old_sum = get_u16(frame, csum_at);
        let sum = match q.proto {
            PROTO_TCP => checksum::update_addr6_port(old_sum, old, ctx.addr6, old_port, ctx.port),
            _ => checksum::update_addr6_port_udp(old_sum, old, ctx.addr6, old_port, ctx.port),
        };
        set_u16(frame, csum_at, sum);
    }
    let (src, dst) = {
        let ip = crate::wire::ipv6::Ipv6Packet::new_unchecked(&frame[L3..]);
        (ip.src(), ip.dst())
    };
    set_u16(frame, pkt.l4 + 2, 0);
    let sum = checksum::transport_checksum6(src, dst, ipv6::NEXT_ICMPV6, &frame[pkt.l4..pkt.end]);
    set_u16(frame, pkt.l4 + 2, sum);
    set_macs(frame, ctx.src_mac, ctx.dst_mac);
    Ok(Out::Tx)
}

/// Inbound, client → real server: rewrite the destination VIP:vport to
/// `rip`:`rport`, update the IPv4 and TCP/UDP checksums, and address the
/// frame from `src_mac` (the director's egress interface) to `dst_mac`
/// (the real server). TTL is left as it is (IPVS does not decrement it
/// either: the packet is delivered locally to the VIP and sent anew).
pub fn xmit_in(
    frame: &mut [u8],
    rip: Ipv4Addr,
    rport: u16,
    src_mac: Mac,
    dst_mac: Mac,
) -> Result<(), NatError> {
    rewrite(frame, End::Dst, rip, rport, src_mac, dst_mac)
}

/// Outbound, real server → client: rewrite the source RIP:rport of a reply
/// to `vip`:`vport`, update the checksums, and address the frame from
/// `src_mac` (the director's client-side interface) to `dst_mac` (the
/// client or its gateway).
pub fn xmit_out(
    frame: &mut [u8],
    vip: Ipv4Addr,
    vport: u16,
    src_mac: Mac,
    dst_mac: Mac,
) -> Result<(), NatError> {
    rewrite(frame, End::Src, vip, vport, src_mac, dst_mac)
}

/// Offset of the IPv4 header in a validated frame, its header length and
/// protocol; rejects non-IPv4 frames and fragments.
fn ipv4_of(frame: &[u8]) -> Result<(usize, u8), NatError> {
    let e = EthernetFrame::new_checked(frame)?;
    if e.ethertype() != ETHERTYPE_IPV4 {
        return Err(NatError::NotIpv4);
    }
    let ip = Ipv4Packet::new_checked(e.payload())?;
    if ip.is_fragment() {
        return Err(NatError::Fragment);
    }
    Ok((ip.header_len(), ip.protocol()))
}

fn rewrite(
    frame: &mut [u8],
    end: End,
    addr: Ipv4Addr,
    port: u16,
    src_mac: Mac,
    dst_mac: Mac,
) -> Result<(), NatError> {
    let (_, proto) = ipv4_of(frame)?;
    {
        // Validate the transport header before touching anything.
        let ip = Ipv4Packet::new_checked(&frame[eth::HEADER_LEN..])?;
        match proto {
            PROTO_TCP => {
                tcp::TcpPacket::new_checked(ip.payload())?;
            }
            PROTO_UDP => {
                udp::UdpPacket::new_checked(ip.payload())?;
            }
            p => return Err(NatError::Protocol(p)),
        }
    }
    let pkt = packet::parse(frame).map_err(|_| NatError::Protocol(proto))?;
    rewrite_l4(frame, &pkt, end, addr, port);
    set_macs(frame, src_mac, dst_mac);
    Ok(())
}

/// The TCP/UDP rewrite of a parsed frame (Ethernet untouched).
#[inline]
fn rewrite_l4(frame: &mut [u8], pkt: &Parsed, end: End, addr: Ipv4Addr, port: u16) {
    let proto = pkt.key.proto;
    let mut ip = Ipv4Packet::new_unchecked(&mut frame[L3..pkt.l4]);
    let old_addr = match end {
        End::Src => ip.src(),
        End::Dst => ip.dst(),
    };
    match end {
        End::Src => ip.set_src(addr),
        End::Dst => ip.set_dst(addr),
    }
    // The address's change, summed once for both checksums: the IPv4
    // header's, and the segment's through its pseudo-header (with the
    // port's). One's complement sums give the same checksum as updating
    // word by word.
    let mut d = Delta::new();
    d.add_addr(old_addr, addr);
    let hc = d.apply(ip.checksum());
    ip.set_checksum(hc);
    let seg = &mut frame[pkt.l4..pkt.end];
    let csum_at = match proto {
        PROTO_TCP => tcp::CHECKSUM_OFFSET,
        _ => udp::CHECKSUM_OFFSET,
    };
    let port_at = match end {
        End::Src => PORT_SRC,
        End::Dst => PORT_DST,
    };
    let old_port = get_u16(seg, port_at);
    d.add16(old_port, port);
    let old_sum = get_u16(seg, csum_at);
    let new_sum = if proto == PROTO_UDP {
        d.apply_udp(old_sum)
    } else {
        d.apply(old_sum)
    };
    set_u16(seg, port_at, port);
    set_u16(seg, csum_at, new_sum);
}

/// An ICMP error as the pipeline sees it: the outer addresses and the
/// connection the quoted datagram belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IcmpErrorInfo {
    /// Outer source (the host or router that reports the error).
    pub src: Ipv4Addr,
    /// Outer destination.
    pub dst: Ipv4Addr,
    /// ICMP type (3, 4, 11 or 12).
    pub icmp_type: u8,
    /// ICMP code.
    pub code: u8,
    /// The quoted datagram's 5-tuple, in the direction it was sent: for an
    /// error from the client side about a reply, `src` is VIP:vport and
    /// `dst` the client; for one from the server side about a forwarded
    /// request, `src` is the client and `dst` RIP:rport.
    pub quoted: QuotedFlow,
}

/// Parse an Ethernet frame holding an ICMP error about a TCP or UDP
/// datagram, to look its connection up. Fragments, non-errors, and errors
/// quoting anything else (or too little: IP header + 8 bytes is needed)
/// are refused.
pub fn parse_icmp_error(frame: &[u8]) -> Result<IcmpErrorInfo, NatError> {
    let (_, proto) = ipv4_of(frame)?;
    if proto != PROTO_ICMP {
        return Err(NatError::Protocol(proto));
    }
    let ip = Ipv4Packet::new_checked(&frame[eth::HEADER_LEN..])?;
    let icmp = IcmpPacket::new_checked(ip.payload())?;
    if !icmp.is_error() {
        return Err(NatError::NotIcmpError);
    }
    let quoted = icmp.quoted_flow().map_err(|e| match e {
        crate::wire::Error::Truncated => NatError::Malformed(e),
        crate::wire::Error::Malformed => NatError::NotIcmpError,
    })?;
    Ok(IcmpErrorInfo {
        src: ip.src(),
        dst: ip.dst(),
        icmp_type: icmp.msg_type(),
        code: icmp.code(),
        quoted,
    })
}

/// Translate an ICMP error from the client side (the client or a router on
/// its path) about a reply the director sent as VIP:vport → client: the
/// outer destination VIP becomes `rip`, the quoted source VIP:vport becomes
/// `rip`:`rport` (with the quoted IPv4 header checksum and, where quoted,
/// the TCP/UDP checksum), the ICMP checksum follows; the frame is
/// addressed from `src_mac` to `dst_mac` (the real server).
pub fn icmp_in(
    frame: &mut [u8],
    rip: Ipv4Addr,
    rport: u16,
    src_mac: Mac,
    dst_mac: Mac,
) -> Result<(), NatError> {
    icmp_rewrite(frame, End::Dst, rip, rport, src_mac, dst_mac)
}

/// Translate an ICMP error from the server side (the real server or a
/// router between it and the director) about a request the director
/// forwarded as client → RIP:rport: the outer source becomes `vip` (as in
/// IPVS, whoever reported it), the quoted destination RIP:rport becomes
/// `vip`:`vport` with its checksums, the ICMP checksum follows; the frame
/// is addressed from `src_mac` to `dst_mac` (the client or its gateway).
pub fn icmp_out(
    frame: &mut [u8],
    vip: Ipv4Addr,
    vport: u16,
    src_mac: Mac,
    dst_mac: Mac,
) -> Result<(), NatError> {
    icmp_rewrite(frame, End::Src, vip, vport, src_mac, dst_mac)
}

/// `outer` is the end of the outer header to rewrite; the quoted datagram
/// travelled the other way, so its opposite end changes.
fn icmp_rewrite(
    frame: &mut [u8],
    outer: End,
    addr: Ipv4Addr,
    port: u16,
    src_mac: Mac,
    dst_mac: Mac,
) -> Result<(), NatError> {
    parse_icmp_error(frame)?;
    let pkt = packet::parse(frame).map_err(|_| NatError::NotIcmpError)?;
    let q = pkt.quoted.ok_or(NatError::NotIcmpError)?;
    rewrite_icmp(frame, &pkt, &q, outer, addr, port);
    set_macs(frame, src_mac, dst_mac);
    Ok(())
}

/// The ICMP error rewrite of a parsed frame quoting `q` (Ethernet
/// untouched).
fn rewrite_icmp(frame: &mut [u8], pkt: &Parsed, q: &Quoted, outer: End, addr: Ipv4Addr, port: u16) {
    {
        let mut ip = Ipv4Packet::new_unchecked(&mut frame[L3..pkt.l4]);
        match outer {
            End::Src => ip.rewrite_src(addr),
            End::Dst => ip.rewrite_dst(addr),
        }
    }
    let mut icmp_delta = Delta::new();
    let old_addr = {
        let mut qip = Ipv4Packet::new_unchecked(&mut frame[q.l3..q.l4]);
        let old_qsum = qip.checksum();
        let old_addr = match outer {
            End::Src => {
                let a = qip.dst();
                qip.rewrite_dst(addr);
                a
            }
            End::Dst => {
                let a = qip.src();
                qip.rewrite_src(addr);
                a
            }
        };
        icmp_delta.add_addr(old_addr, addr);
        icmp_delta.add16(old_qsum, qip.checksum());
        old_addr
    };

    let l4 = &mut frame[q.l4..q.end];
    // The quoted datagram's own end: its destination when the outer
    // source changes (it was sent towards the reporter), and vice versa.
    let port_at = match outer {
        End::Src => PORT_DST,
        End::Dst => PORT_SRC,
    };
    let old_port = get_u16(l4, port_at);
    set_u16(l4, port_at, port);
    icmp_delta.add16(old_port, port);

    let mut l4_delta = Delta::new();
    l4_delta.add_addr(old_addr, addr);
    l4_delta.add16(old_port, port);
    let csum_at = match q.flow.proto {
        PROTO_TCP => tcp::CHECKSUM_OFFSET,
        _ => udp::CHECKSUM_OFFSET,
    };
    if l4.len() >= csum_at + 2 {
        let old = get_u16(l4, csum_at);
        let new = if q.flow.proto == PROTO_UDP {
            l4_delta.apply_udp(old)
        } else {
            l4_delta.apply(old)
        };
        set_u16(l4, csum_at, new);
        icmp_delta.add16(old, new);
    }
    let mut msg = IcmpPacket::new_unchecked(&mut frame[pkt.l4..pkt.end]);
    let c = icmp_delta.apply(msg.checksum());
    msg.set_checksum(c);
}

#[cfg(test)]
mod tests {
    //! The rewrites with sums made in advance against the general one,
    //! byte for byte, over many random frames.

    use super::*;
    use crate::wire::checksum::{checksum, fold64, transport_checksum, udp_wire};

    /// splitmix64: reproducible without a dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
        fn u16(&mut self) -> u16 {
            self.next() as u16
        }
        /// A port: often an edge value (all ones, a high bit, 1).
        fn port(&mut self) -> u16 {
            match self.next() % 6 {
                0 => 0xffff,
                1 => 1,
                2 => 0x8000,
                _ => self.u16().max(1),
            }
        }
        fn addr(&mut self) -> Ipv4Addr {
            match self.next() % 6 {
                0 => Ipv4Addr::new(255, 255, 255, 254),
                1 => Ipv4Addr::new(0, 0, 0, 1),
                _ => Ipv4Addr::from(self.next() as u32),
            }
        }
    }

    /// How a frame's TCP/UDP checksum field is filled.
    #[derive(Debug, Clone, Copy)]
    enum Sum {
        /// The correct checksum.
        Valid,
        /// An arbitrary word (the rewrite is incremental: it must carry
        /// whatever is there the same way).
        Word(u16),
        /// UDP: none (0).
        None,
        /// A partial checksum (the pseudo-header's sum, as a sender with
        /// TX offload leaves it), completed before the rewrite.
        Partial,
    }

    /// An Ethernet + IPv4 (with `opt` option words) + TCP or UDP frame.
    fn frame(
        rng: &mut Rng,
        proto: u8,
        (src, sport): (Ipv4Addr, u16),
        (dst, dport): (Ipv4Addr, u16),
        opt: usize,
        sum: Sum,
    ) -> Vec<u8> {
        let ihl = 20 + 4 * opt;
        let hl4 = if proto == PROTO_TCP { 20 } else { 8 };
        let payload = (rng.next() % 48) as usize;
        let ip_len = ihl + hl4 + payload;
        let mut f = vec![0u8; L3 + ip_len];
        for b in f.iter_mut() {
            *b = rng.next() as u8;
        }
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        let ip = &mut f[L3..L3 + ihl];
        ip[0] = 0x40 | (ihl / 4) as u8;
        set_u16(ip, 2, ip_len as u16);
        // DF or nothing: never a fragment.
        set_u16(ip, 6, if rng.next() & 1 == 0 { 0x4000 } else { 0 });
        ip[8] = 1 + (rng.next() % 255) as u8;
        ip[9] = proto;
        ip[12..16].copy_from_slice(&src.octets());
        ip[16..20].copy_from_slice(&dst.octets());
        for o in ip[20..].iter_mut() {
            *o = 1; // NOP options
        }
        set_u16(ip, 10, 0);
        let hc = checksum(ip);
        set_u16(ip, 10, hc);
        let l4 = L3 + ihl;
        let seg = &mut f[l4..];
        set_u16(seg, 0, sport);
        set_u16(seg, 2, dport);
        let at = if proto == PROTO_TCP {
            seg[12] = 0x50;
            seg[13] = 0x10; // ACK
            16
        } else {
            set_u16(seg, 4, (hl4 + payload) as u16);
            6
        };
        set_u16(seg, at, 0);
        let v = match sum {
            Sum::Valid => {
                let c = transport_checksum(src, dst, proto, seg);
                if proto == PROTO_UDP {
                    udp_wire(c)
                } else {
                    c
                }
            }
            Sum::Word(w) => w,
            Sum::None => 0,
            Sum::Partial => fold64(
                u64::from(u32::from(src))
                    + u64::from(u32::from(dst))
                    + u64::from(proto)
                    + seg.len() as u64,
            ),
        };
        set_u16(seg, at, v);
        f
    }

    fn a_sum(rng: &mut Rng, proto: u8) -> Sum {
        match rng.next() % 8 {
            0 => Sum::Word(0xffff),
            1 => Sum::Word(0),
            2 => Sum::Word(1),
            3 => Sum::Word(rng.u16()),
            4 if proto == PROTO_UDP => Sum::None,
            5 => Sum::Partial,
            _ => Sum::Valid,
        }
    }

    /// Parse `f` as the pipeline does, completing a partial checksum.
    fn parsed(f: &mut [u8]) -> Parsed {
        let p = packet::parse(f).expect("a TCP/UDP frame");
        p.complete_partial(f);
        p
    }

    /// The segment's checksum is right (or UDP's is 0).
    fn valid_l4(f: &[u8], p: &Parsed) -> bool {
        let ip = Ipv4Packet::new_unchecked(&f[L3..p.l4]);
        let seg = &f[p.l4..p.end];
        if p.key.proto == PROTO_UDP && get_u16(seg, 6) == 0 {
            return true;
        }
        let c = transport_checksum(ip.src(), ip.dst(), p.key.proto, seg);
        c == 0 || c == 0xffff
    }

    /// A random frame of `proto` for the rewrite tests, the general
    /// rewrite's result for `dir`, and the endpoints: a client's to the
    /// VIP (`Dir::In`) or a real server's reply (`Dir::Out`).
    struct Case {
        vip: Ipv4Addr,
        vport: u16,
        rip: Ipv4Addr,
        rport: u16,
        sum: Sum,
        frame: Vec<u8>,
        parsed: Parsed,
        was_valid: bool,
        want: Vec<u8>,
        ctx: XmitCtx,
    }

    fn random_case(rng: &mut Rng, proto: u8, dir: Dir) -> Case {
        let (cip, cport) = (rng.addr(), rng.port());
        let (vip, vport) = (rng.addr(), rng.port());
        let (rip, rport) = (rng.addr(), rng.port());
        let sum = a_sum(rng, proto);
        let opt = if rng.next().is_multiple_of(4) {
            1 + (rng.next() % 3) as usize
        } else {
            0
        };
        let (from, to, macs, to_addr, to_port) = match dir {
            Dir::In => ((cip, cport), (vip, vport), 1, rip, rport),
            Dir::Out => ((rip, rport), (cip, cport), 3, vip, vport),
        };
        let mut frame = frame(rng, proto, from, to, opt, sum);
        let parsed = parsed(&mut frame);
        let was_valid = valid_l4(&frame, &parsed);
        let mut want = frame.clone();
        let mut ctx = XmitCtx::macs([2, 0, 0, 0, 0, macs], [2, 0, 0, 0, 0, macs + 1]);
        ctx.addr = to_addr;
        ctx.port = to_port;
        ctx.dir = dir;
        packet_xmit(&mut want, &parsed, &ctx).expect("sent");
        Case {
            vip,
            vport,
            rip,
            rport,
            sum,
            frame,
            parsed,
            was_valid,
            want,
            ctx,
        }
    }

    /// `got` is the general rewrite's frame, once its MACs are set as the
    /// general one sets them, and a right rewrite, not only the same one.
    fn assert_rewritten_as_general(c: &Case, mut got: Vec<u8>, i: usize) {
        set_macs(&mut got, c.ctx.src_mac, c.ctx.dst_mac);
        let sum = c.sum;
        assert_eq!(got, c.want, "frame {i} ({sum:?})");
        let q = packet::parse(&got).expect("still a frame");
        assert_eq!(checksum(&got[L3..q.l4]), 0, "frame {i}");
        assert_eq!(valid_l4(&got, &q), c.was_valid, "frame {i} ({sum:?})");
    }

    #[test]
    fn summed_in_advance_the_inbound_rewrite_is_the_general_one() {
        let mut rng = Rng(17);
        for i in 0..20_000 {
            let proto = if i % 2 == 0 { PROTO_TCP } else { PROTO_UDP };
            let c = random_case(&mut rng, proto, Dir::In);
            let (p, f) = (&c.parsed, &c.frame);
            // Another translation of the destination (a vport or rport
            // not the packet's) is refused and leaves the frame alone.
            let nat = NatV4::new(c.vip, c.vport, c.rip, c.rport);
            let mut got = f.clone();
            assert!(!nat.rewrite_in(&mut got, p, c.rport.wrapping_add(1)));
            let other = NatV4::new(c.vip, c.vport.wrapping_add(1), c.rip, c.rport);
            assert!(!other.rewrite_in(&mut got, p, c.rport));
            assert_eq!(&got, f);
            assert!(nat.rewrite_in(&mut got, p, c.rport), "frame {i}");
            assert_rewritten_as_general(&c, got, i);
        }
    }

    #[test]
    fn summed_from_the_key_the_reply_rewrite_is_the_general_one() {
        let mut rng = Rng(1624);
        for i in 0..20_000 {
            let proto = if i % 2 == 0 { PROTO_UDP } else { PROTO_TCP };
            let c = random_case(&mut rng, proto, Dir::Out);
            let mut got = c.frame.clone();
            rewrite_reply(&mut got, &c.parsed, c.vip, c.vport);
            assert_rewritten_as_general(&c, got, i);
        }
    }

    #[test]
    fn a_checksum_that_folds_to_all_ones_or_zero_comes_out_as_the_general_one_gives() {
        // Changes that cancel (an address and port that do not change) and
        // UDP checksums at 0xffff and 0: the two zeros of one's complement
        // must come out as the general rewrite writes them.
        let mut rng = Rng(0xffff);
        for proto in [PROTO_TCP, PROTO_UDP] {
            for w in [0u16, 1, 0xfffe, 0xffff] {
                for same in [true, false] {
                    let (vip, vport) = (Ipv4Addr::new(198, 18, 0, 1), 80);
                    let (rip, rport) = if same {
                        (vip, vport)
                    } else {
                        (Ipv4Addr::new(0, 0, 0, 0), 0)
                    };
                    let c = (Ipv4Addr::new(255, 255, 255, 255), 0xffff);
                    let mut f = frame(&mut rng, proto, c, (vip, vport), 0, Sum::Word(w));
                    let p = parsed(&mut f);
                    let mut want = f.clone();
                    let mut ctx = XmitCtx::macs([0; 6], [0; 6]);
                    ctx.addr = rip;
                    ctx.port = rport;
                    ctx.dir = Dir::In;
                    packet_xmit(&mut want, &p, &ctx).expect("sent");
                    let mut got = f.clone();
                    assert!(NatV4::new(vip, vport, rip, rport).rewrite_in(&mut got, &p, rport));
                    set_macs(&mut got, [0; 6], [0; 6]);
                    assert_eq!(got, want, "proto {proto} checksum {w:#x} same {same}");
                }
            }
        }
    }

    #[test]
    fn folded_and_wide_changes_update_a_checksum_as_delta_does() {
        // Every checksum edge (the two zeros, 1, 0xfffe) and random ones,
        // against changes that cancel, that are all ones, and random.
        let mut rng = Rng(1071);
        let edges = [0u16, 1, 0x7fff, 0x8000, 0xfffe, 0xffff];
        for i in 0..200_000u32 {
            let r = rng.next();
            let (old, new, op, np) = if i % 8 == 0 {
                let a = Ipv4Addr::from(r as u32);
                (a, a, (r >> 32) as u16, (r >> 32) as u16)
            } else if i % 8 == 1 {
                (Ipv4Addr::from(0), Ipv4Addr::from(u32::MAX), 0, 0xffff)
            } else if i % 8 == 2 {
                (Ipv4Addr::from(u32::MAX), Ipv4Addr::from(0), 0xffff, 0)
            } else {
                let q = rng.next();
                let a = Ipv4Addr::from(r as u32);
                let b = Ipv4Addr::from(q as u32);
                (a, b, (r >> 32) as u16, (q >> 32) as u16)
            };
            let check = if i % 2 == 0 {
                edges[(i / 2) as usize % edges.len()]
            } else {
                (r >> 48) as u16 ^ (rng.next() as u16)
            };
            let mut ip = Delta::new();
            ip.add_addr(old, new);
            let mut l4 = ip;
            l4.add16(op, np);
            let wire = check.to_be_bytes();
            for (d, f, w) in [
                (ip, Folded::of(ip), Wide::addr(old, new)),
                (l4, Folded::of(l4), Wide::addr(old, new).port(op, np)),
            ] {
                let want = d.apply(check).to_be_bytes();
                let want_udp = d.apply_udp(check).to_be_bytes();
                let at = format!("{old}:{op} -> {new}:{np}, checksum {check:#x}");
                assert_eq!(f.apply(wire), want, "folded {at}");
                assert_eq!(w.apply(wire), want, "wide {at}");
                assert_eq!(f.apply_udp(wire), want_udp, "folded udp {at}");
                assert_eq!(w.apply_udp(wire), want_udp, "wide udp {at}");
            }
        }
    }
}
