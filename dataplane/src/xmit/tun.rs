//! Tunnelling (`-i`): the client's packet travels unchanged inside an outer
//! IPv4 header from the director to the real server, which decapsulates it
//! and, holding the VIP, answers the client directly.
//!
//! The outer headers are written in place into the headroom in front of the
//! frame, so encapsulating costs no copy of the payload: only the 14-byte
//! Ethernet header moves. Three encapsulations, as IPVS's `--tun-type`:
//!
//! | kind | outer headers | overhead |
//! |------|---------------|----------|
//! | `ipip` | IPv4 (protocol 4) | 20 |
//! | `gue`  | IPv4 + UDP (dst `--tun-port`) + GUE version 0, 4-byte header, proto/ctype 4 | 32 |
//! | `gre`  | IPv4 (protocol 47) + GRE without options, protocol 0x0800 | 24 |
//!
//! The outer header copies the inner packet's TOS, TTL and DF bit (IPVS's
//! `ip_vs_tunnel_xmit`). When the result would exceed the egress MTU and
//! the inner packet has DF set, the frame is replaced, in the same buffer,
//! by an ICMP "fragmentation needed" (type 3 code 4, next-hop MTU = MTU −
//! overhead) back to the client, so it lowers its path MTU. That error is
//! sent from the inner packet's destination, the VIP: the VIP is a local
//! address of the director, and the kernel's `icmp_send`, which IPVS calls,
//! answers a packet addressed to a local address from that address.
//! Without DF the kernel would fragment the outer packet; one frame in, one
//! frame out cannot, so that case is an error ([`TunError::TooBig`]).
//!
//! The outer header follows the real server's family: IPv6 in IPv6
//! ([`packet_xmit6`]), IPv6 in IPv4 ([`packet_xmit6in4`]) and IPv4 in IPv6
//! ([`packet_xmit4in6`]): IPIP as protocol 41 or 4, GRE with protocol
//! type 0x86dd or 0x0800, GUE carrying 41 or 4; an IPv6 outer header is
//! 20 bytes more than IPv4's, and GUE's UDP checksum over it is always
//! computed, as IPv6 receivers drop a zero one. The outer header takes
//! the inner traffic class (TOS) and hop limit (TTL). IPv6 is never
//! fragmented on the way, so a packet that would not fit is answered by an
//! ICMPv6 packet too big (MTU − overhead) from the VIP, as the kernel
//! answers for a local address, unless it is an ICMPv6 error itself.

use super::{Out, XmitCtx, XmitError};
use crate::frame::FrameBuf;
use crate::packet::{Parsed, L3};
use crate::wire::eth::ETHERTYPE_IPV6;
use crate::wire::eth::{self, EthernetFrame, Mac, ETHERTYPE_IPV4};
use crate::wire::icmp::{self, IcmpPacket};
use crate::wire::icmpv6;
use crate::wire::ipv4::{self, Ipv4Packet, Ipv4Repr, PROTO_GRE, PROTO_ICMP, PROTO_IPIP};
use crate::wire::ipv4::{PROTO_TCP, PROTO_UDP};
use crate::wire::ipv6::{self, Ipv6Packet, Ipv6Repr};
use crate::wire::udp::{self, UdpPacket};
use std::net::{Ipv4Addr, Ipv6Addr};

/// Lengths of the GUE and GRE headers written (shared with `TunKind`'s
/// overhead).
pub use xvs_config::tun::{GRE_HEADER_LEN, GUE_HEADER_LEN};
/// The smallest IPv4 MTU (RFC 791); a tunnel leaving less is refused.
pub const MIN_IPV4_MTU: usize = 68;
/// TOS of the fragmentation-needed errors: precedence "internetwork
/// control", as ICMP errors carry.
pub const ICMP_ERROR_TOS: u8 = 0xc0;
/// TTL of the fragmentation-needed errors.
pub const ICMP_ERROR_TTL: u8 = 64;
/// Lowest UDP source port of GUE packets; the flow hash picks one of the
/// 16384 ports from here up.
pub const GUE_SRC_PORT_BASE: u16 = 49152;

/// The encapsulation of a tunnel, shared with the control plane.
pub use xvs_config::tun::TunKind;

/// Where a tunnelled packet goes: bound once per real server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tunnel {
    /// The encapsulation.
    pub kind: TunKind,
    /// Outer source: the director's address on the egress interface.
    pub src: Ipv4Addr,
    /// Outer destination: the real server.
    pub rip: Ipv4Addr,
    /// Source MAC: the director's egress interface.
    pub src_mac: Mac,
    /// Destination MAC: the real server or the next hop towards it.
    pub dst_mac: Mac,
    /// IP MTU of the egress link (1500 on plain Ethernet).
    pub mtu: u16,
}

/// What [`xmit`] left in the buffer: in both cases a frame to transmit at
/// `buf[start..start + len]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunOutcome {
    /// The packet was encapsulated; send the frame towards the real server.
    Encapsulated {
        /// Where the frame now starts (`headroom` − overhead with [`xmit`],
        /// 0 with [`xmit_tailroom`]).
        start: usize,
        /// Frame length (Ethernet padding of the original is dropped).
        len: usize,
    },
    /// The packet was too big and had DF set: the buffer now holds an ICMP
    /// fragmentation-needed for the client; send it back out of the port
    /// the packet came in on.
    FragNeeded {
        /// Where the frame starts (the original `headroom`).
        start: usize,
        /// Frame length.
        len: usize,
        /// The next-hop MTU announced (MTU − overhead).
        mtu: u16,
    },
}

impl TunOutcome {
    /// The frame to transmit, as a range of the buffer.
    pub fn range(&self) -> std::ops::Range<usize> {
        match *self {
            TunOutcome::Encapsulated { start, len } | TunOutcome::FragNeeded { start, len, .. } => {
                start..start + len
            }
        }
    }
}

/// Why a frame could not be tunnelled (the buffer is left unchanged).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TunError {
    /// `headroom + len` lies outside the buffer.
    #[error("frame outside the buffer")]
    Bounds,
    /// Not an IPv4 Ethernet frame.
    #[error("not an IPv4 frame")]
    NotIpv4,
    /// A header is truncated or has impossible fields.
    #[error("malformed packet: {0}")]
    Malformed(#[from] crate::wire::Error),
    /// Less headroom than the encapsulation needs.
    #[error("{need} bytes of headroom needed, {have} available")]
    NoHeadroom {
        /// Bytes needed.
        need: usize,
        /// Bytes available.
        have: usize,
    },
    /// The buffer cannot hold the result (the encapsulated frame, with
    /// [`xmit_tailroom`], or the ICMP error that should answer).
    #[error("buffer too small for the result")]
    NoRoom,
    /// Too big for the MTU and no ICMP error may answer it: DF is clear
    /// (the outer packet would need fragmenting, which xvs does not do) or
    /// the packet is itself an ICMP error.
    #[error("packet exceeds the tunnel MTU")]
    TooBig,
    /// The MTU leaves less than 68 bytes for the inner packet.
    #[error("MTU too small for the tunnel")]
    MtuTooSmall,
}

/// Encapsulate the Ethernet frame at `buf[headroom..headroom + len]` for
/// `tun`, in place, writing the outer headers into the headroom (only the
/// Ethernet header moves); `ident` is the outer header's identification
/// (the caller keeps a counter, e.g. per worker). On success the buffer
/// holds the frame to send at [`TunOutcome::range`]; on error it is
/// unchanged.
pub fn xmit(
    buf: &mut [u8],
    headroom: usize,
    len: usize,
    tun: &Tunnel,
    ident: u16,
) -> Result<TunOutcome, TunError> {
    xmit_with(buf, headroom, len, tun, ident, Room::Head)
}

/// [`xmit`] for a frame at the start of `buf` (`buf[..len]`) with room
/// after it instead of before: the inner packet moves forward by the
/// overhead (a copy of the packet) and the frame keeps starting at 0.
/// Fails with [`TunError::NoRoom`] when `buf` cannot hold the result.
pub fn xmit_tailroom(
    buf: &mut [u8],
    len: usize,
    tun: &Tunnel,
    ident: u16,
) -> Result<TunOutcome, TunError> {
    xmit_with(buf, 0, len, tun, ident, Room::Tail)
}

/// Where the outer headers find their room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Room {
    /// Before the frame: the Ethernet header moves back.
    Head,
    /// After the frame: the inner packet moves forward.
    Tail,
}

fn xmit_with(
    buf: &mut [u8],
    headroom: usize,
    len: usize,
    tun: &Tunnel,
    ident: u16,
    room: Room,
) -> Result<TunOutcome, TunError> {
    let end = headroom.checked_add(len).ok_or(TunError::Bounds)?;
    let frame = buf.get(headroom..end).ok_or(TunError::Bounds)?;
    let e = EthernetFrame::new_checked(frame)?;
    if e.ethertype() != ETHERTYPE_IPV4 {
        return Err(TunError::NotIpv4);
    }
    Ipv4Packet::new_checked(e.payload())?;
    encap(buf, headroom, len, tun, ident, room)
}

/// Encapsulate for the pipeline: the frame is `buf`, parsed as `pkt`; it
/// grows by the overhead into the buffer's tailroom. Outer headers from
/// `ctx`: `tun`, `tun_src` → `addr`, `src_mac` → `dst_mac`, `mtu`,
/// `ident`. [`Out::FragNeeded`] when the buffer now holds an ICMP
/// fragmentation-needed for the client instead. The same as
/// [`packet_xmit_outer`] with the header made for this packet.
#[inline]
pub fn packet_xmit<B: FrameBuf + ?Sized>(
    buf: &mut B,
    pkt: &Parsed,
    ctx: &XmitCtx,
) -> Result<Out, XmitError> {
    let hop = TunHop {
        src_mac: ctx.src_mac,
        dst_mac: ctx.dst_mac,
        src: ctx.tun_src,
        mtu: ctx.mtu,
        ident: ctx.ident,
    };
    packet_xmit_outer(buf, pkt, &OuterV4::new(ctx.tun, ctx.addr), &hop)
}

/// The outer IPv4 header of a tunnel to one real server as far as it is
/// the same for every packet (version, protocol, destination, GRE's
/// header, GUE's port and word) with the checksum's share of those
/// fields summed: made once per destination when the snapshot is built,
/// so that a packet copies it and adds only what it takes from the inner
/// packet (length, TOS, DF, TTL) and from the route (source, MACs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OuterV4 {
    /// Outer IPv4 header with the constant fields set, the others zero.
    ip: [u8; ipv4::MIN_HEADER_LEN],
    /// What follows it: GRE's header, or UDP's (ports; length and checksum
    /// zero) and GUE's; only the encapsulation's overhead beyond the IPv4
    /// header is used.
    ext: [u8; udp::HEADER_LEN + GUE_HEADER_LEN],
    /// One's-complement sum (not folded) of the constant words of `ip`.
    sum: u32,
    /// The encapsulation.
    kind: TunKind,
    /// Its overhead (`kind.overhead()`, read by every packet).
    over: u8,
}

impl OuterV4 {
    /// The header of a `kind` tunnel to real server `rip`.
    pub fn new(kind: TunKind, rip: Ipv4Addr) -> Self {
        let proto = match kind {
            TunKind::Ipip => PROTO_IPIP,
            TunKind::Gue { .. } => PROTO_UDP,
            TunKind::Gre => PROTO_GRE,
        };
        let dst = rip.octets();
        let mut ip = [0u8; ipv4::MIN_HEADER_LEN];
        ip[0] = 0x45;
        ip[9] = proto;
        ip[16..20].copy_from_slice(&dst);
        let mut ext = [0u8; udp::HEADER_LEN + GUE_HEADER_LEN];
        match kind {
            TunKind::Ipip => {}
            // Flags and version 0, protocol type IPv4 (RFC 2784).
            TunKind::Gre => ext[..GRE_HEADER_LEN].copy_from_slice(&[0, 0, 0x08, 0x00]),
            TunKind::Gue { port, .. } => {
                ext[2..4].copy_from_slice(&port.to_be_bytes());
                // GUE version 0, C = 0, Hlen = 0, proto/ctype 4, flags 0.
                ext[udp::HEADER_LEN..].copy_from_slice(&[0, PROTO_IPIP, 0, 0]);
            }
        }
        let word = |a: u8, b: u8| u32::from(u16::from_be_bytes([a, b]));
        let sum = 0x4500 + u32::from(proto) + word(dst[0], dst[1]) + word(dst[2], dst[3]);
        // At most 32 bytes (GUE).
        let over = kind.overhead() as u8;
        OuterV4 {
            ip,
            ext,
            sum,
            kind,
            over,
        }
    }

    /// The encapsulation.
    #[inline]
    pub fn kind(&self) -> TunKind {
        self.kind
    }

    /// The outer destination, the real server.
    #[inline]
    pub fn rip(&self) -> Ipv4Addr {
        let d = &self.ip[16..20];
        Ipv4Addr::new(d[0], d[1], d[2], d[3])
    }
}

/// What an IPv4 tunnel's packet takes from the route and the worker: the
/// MACs, the outer source, the egress MTU and the identification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TunHop {
    /// Source MAC: the director's egress interface.
    pub src_mac: Mac,
    /// Destination MAC: the real server or the next hop towards it.
    pub dst_mac: Mac,
    /// Outer source: the director's address on the egress link.
    pub src: Ipv4Addr,
    /// IP MTU of the egress link.
    pub mtu: u16,
    /// Identification of the outer header.
    pub ident: u16,
}

/// [`packet_xmit`] with the destination's header made in advance: `t`,
/// with `hop` for the rest. The frame grows by the overhead into the
/// buffer's tailroom (Ethernet padding is dropped).
#[inline]
pub fn packet_xmit_outer<B: FrameBuf + ?Sized>(
    buf: &mut B,
    pkt: &Parsed,
    t: &OuterV4,
    hop: &TunHop,
) -> Result<Out, XmitError> {
    packet_xmit_in_line(buf, pkt, t, hop)
}

/// [`packet_xmit_outer`], always in line: for the pipeline's main path,
/// which sends IPv4 tunnels as it sends direct routing. The result of a
/// packet that fits is then known where it is used, and only a packet
/// past the MTU calls out, to the checked encapsulation. Elsewhere
/// [`packet_xmit_outer`] keeps the caller small.
#[inline(always)]
pub fn packet_xmit_in_line<B: FrameBuf + ?Sized>(
    buf: &mut B,
    pkt: &Parsed,
    t: &OuterV4,
    hop: &TunHop,
) -> Result<Out, XmitError> {
    let over = usize::from(t.over);
    let mtu = usize::from(hop.mtu);
    let inner_len = usize::from(pkt.ip_len);
    if mtu >= over + MIN_IPV4_MTU && inner_len + over <= mtu {
        // It fits: the common case, written straight from the parsed view.
        // The result (headers and inner packet, padding dropped) is one
        // length, set once: the inner packet lies within both.
        let n = L3 + over + inner_len;
        if !buf.set_len(n) {
            return Err(XmitError::NoTailroom);
        }
        encap_outer(buf.bytes(), inner_len, over, t, hop);
        return Ok(Out::Tx);
    }
    let ctx = XmitCtx {
        tun: t.kind,
        addr: t.rip(),
        tun_src: hop.src,
        mtu: hop.mtu,
        ident: hop.ident,
        ..XmitCtx::macs(hop.src_mac, hop.dst_mac)
    };
    packet_xmit_checked(buf, pkt, &ctx)
}

/// [`packet_xmit`] of a packet that does not fit the MTU (or a link whose
/// MTU leaves too little): the frame is answered or refused by the
/// general encapsulation, which checks everything again.
#[cold]
fn packet_xmit_checked<B: FrameBuf + ?Sized>(
    buf: &mut B,
    pkt: &Parsed,
    ctx: &XmitCtx,
) -> Result<Out, XmitError> {
    let tun = Tunnel {
        kind: ctx.tun,
        src: ctx.tun_src,
        rip: ctx.addr,
        src_mac: ctx.src_mac,
        dst_mac: ctx.dst_mac,
        mtu: ctx.mtu,
    };
    let len = buf.bytes().len();
    // A packet past the MTU is answered (fragmentation-needed, written
    // over the frame) or refused, never encapsulated: it needs no
    // tailroom, however large it is.
    let over = ctx.tun.overhead();
    let fits = usize::from(pkt.ip_len) + over <= usize::from(ctx.mtu);
    if fits && !buf.set_len(len + over) {
        return Err(XmitError::NoTailroom);
    }
    match encap(buf.bytes(), 0, len, &tun, ctx.ident, Room::Tail) {
        Ok(TunOutcome::Encapsulated { len, .. }) => {
            buf.set_len(len);
            Ok(Out::Tx)
        }
        Ok(TunOutcome::FragNeeded { len, .. }) => {
            buf.set_len(len);
            Ok(Out::FragNeeded)
        }
        Err(e) => {
            buf.set_len(len);
            Err(xmit_error(e))
        }
    }
}

/// Encapsulate frame `f` (`L3 + over + inner_len` bytes, the inner
/// packet still at `L3`) whose tunnelled packet fits the MTU: the inner
/// packet moves back by the overhead `over` ([`move_up`]), and the
/// Ethernet and outer IPv4 headers are written once, in place, from `t`, the IPv4
/// checksum `t`'s constant sum plus the fields filled in (no pass over
/// the written header), then GRE's or GUE's header. The same bytes as
/// [`encap`] writes. Always in line: the route's fields (`hop`) then
/// stay in registers instead of going through memory, and the call's
/// saving and restoring of registers goes. `over` is `t`'s, read once
/// by the caller: read again here, after the frame's length is stored,
/// it was loaded anew and the move's bounds checked again.
#[inline(always)]
fn encap_outer(f: &mut [u8], inner_len: usize, over: usize, t: &OuterV4, hop: &TunHop) {
    const IP: usize = L3;
    const L4: usize = L3 + ipv4::MIN_HEADER_LEN;
    // TOS, the DF bit and TTL of the inner header, read before it moves
    // (its fixed part lies in the frame: the parse checked it). The
    // frame's first 34 bytes, checked once, take the outer headers.
    let h: &mut [u8; L4] = (&mut f[..L4]).try_into().expect("34 bytes");
    // Its bytes 1 to 8 in one load, one value to keep over the move
    // rather than three: TOS (byte 1), flags (6) and TTL (8).
    let b = u64::from_be_bytes(h[IP + 1..IP + 9].try_into().expect("8 bytes"));
    let tos = (b >> 56) as u8;
    let df = (b >> 16) as u8 & 0x40;
    let ttl = b as u8;
    move_up(f, L3, inner_len, over);
    // inner_len + over ≤ mtu ≤ u16::MAX.
    let total = (inner_len + over) as u16;
    let src = u32::from(hop.src);
    let sum = t.sum
        + (src >> 16)
        + (src & 0xffff)
        + u32::from(tos)
        + u32::from(total)
        + u32::from(hop.ident)
        + ((u32::from(df) + u32::from(ttl)) << 8);
    let check = !crate::wire::checksum::fold(sum);
    let h: &mut [u8; L4] = (&mut f[..L4]).try_into().expect("34 bytes");
    h[..6].copy_from_slice(&hop.dst_mac);
    h[6..12].copy_from_slice(&hop.src_mac);
    h[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    h[IP..].copy_from_slice(&t.ip);
    h[IP + 1] = tos;
    h[IP + 2..IP + 4].copy_from_slice(&total.to_be_bytes());
    h[IP + 4..IP + 6].copy_from_slice(&hop.ident.to_be_bytes());
    h[IP + 6] = df;
    h[IP + 8] = ttl;
    h[IP + 10..IP + 12].copy_from_slice(&check.to_be_bytes());
    h[IP + 12..IP + 16].copy_from_slice(&src.to_be_bytes());
    match t.kind {
        TunKind::Ipip => {}
        TunKind::Gre => f[L4..L4 + GRE_HEADER_LEN].copy_from_slice(&t.ext[..GRE_HEADER_LEN]),
        TunKind::Gue { checksum, .. } => gue_outer(f, inner_len, t, hop.src, checksum),
    }
}

/// GUE's UDP and GUE headers of [`encap_outer`], the inner packet in
/// place: the source port from the inner flow's hash, the length, and
/// the checksum when `checksum`. Out of line: the flow hash and the
/// checksum's pass over the packet are far more than a call, and the
/// main path stays small for IPIP and GRE.
#[inline(never)]
fn gue_outer(f: &mut [u8], inner_len: usize, t: &OuterV4, src: Ipv4Addr, checksum: bool) {
    const L4: usize = L3 + ipv4::MIN_HEADER_LEN;
    let inner = L3 + usize::from(t.over);
    let sport = {
        let ip = Ipv4Packet::new_unchecked(&f[inner..inner + inner_len]);
        gue_src_port(ip.header(), ip.payload(), ip.protocol())
    };
    let mut u = t.ext;
    // UDP length: its header, GUE's and the inner packet.
    let ulen = (udp::HEADER_LEN + GUE_HEADER_LEN + inner_len) as u16;
    u[..2].copy_from_slice(&sport.to_be_bytes());
    u[4..6].copy_from_slice(&ulen.to_be_bytes());
    f[L4..L4 + u.len()].copy_from_slice(&u);
    if checksum {
        let c = crate::wire::checksum::transport_checksum(
            src,
            t.rip(),
            PROTO_UDP,
            &f[L4..inner + inner_len],
        );
        let c = crate::wire::checksum::udp_wire(c);
        f[L4 + 6..L4 + 8].copy_from_slice(&c.to_be_bytes());
    }
}

/// Move `f[at..at + len]` up by `by` bytes, in place (`f` holds the
/// result). A packet of 16 to 64 bytes (a TCP acknowledgement, a short
/// request: most packets by count) moves as two blocks, its first and
/// its last 16 or 32 bytes, overlapping, both read before either is
/// written: a few register moves, where the call to `memmove` and its
/// dispatch on the length cost more than the move itself. Longer
/// packets go to `memmove`.
#[inline(always)]
fn move_up(f: &mut [u8], at: usize, len: usize, by: usize) {
    let w = &mut f[at..at + by + len];
    if (32..=64).contains(&len) {
        // As four 16-byte values, which stay in registers (32-byte arrays
        // went through the stack).
        let src = &w[..len];
        let a = halves(src.first_chunk().expect("32 bytes"));
        let b = halves(src.last_chunk().expect("32 bytes"));
        let dst = &mut w[by..];
        put_halves(dst.first_chunk_mut().expect("32 bytes"), a);
        put_halves(dst.last_chunk_mut().expect("32 bytes"), b);
    } else if (16..32).contains(&len) {
        let a: [u8; 16] = w[..16].try_into().expect("16 bytes");
        let b: [u8; 16] = w[len - 16..len].try_into().expect("16 bytes");
        w[by..by + 16].copy_from_slice(&a);
        w[by + len - 16..by + len].copy_from_slice(&b);
    } else {
        w.copy_within(..len, by);
    }
}

/// 32 bytes as two 16-byte values, for [`move_up`].
#[inline(always)]
fn halves(b: &[u8; 32]) -> (u128, u128) {
    let (x, y) = b.split_at(16);
    (
        u128::from_ne_bytes(x.try_into().expect("16 bytes")),
        u128::from_ne_bytes(y.try_into().expect("16 bytes")),
    )
}

/// Write [`halves`]' two values back as 32 bytes.
#[inline(always)]
fn put_halves(b: &mut [u8; 32], (x, y): (u128, u128)) {
    b[..16].copy_from_slice(&x.to_ne_bytes());
    b[16..].copy_from_slice(&y.to_ne_bytes());
}

/// Bytes an IPv6 outer header adds over an IPv4 one.
const V6_EXTRA: usize = ipv6::HEADER_LEN - ipv4::MIN_HEADER_LEN;

/// Hop limit of the packet too big errors.
pub const ICMPV6_ERROR_HOP_LIMIT: u8 = 64;

/// Protocol number of IPv6 carried in IP (RFC 2473).
const PROTO_IPV6: u8 = ipv6::NEXT_IPV6;

/// The outer IP header of a tunnel, by the real server's family.
#[derive(Debug, Clone, Copy)]
enum OuterIp {
    /// IPv4 from `src` to `dst`, identification `ident` (DF set: the
    /// inner packet is IPv6, which is never fragmented on the way, or an
    /// IPv4 packet that said so).
    V4 {
        src: Ipv4Addr,
        dst: Ipv4Addr,
        ident: u16,
        df: bool,
    },
    /// IPv6 from `src` to `dst`.
    V6 { src: Ipv6Addr, dst: Ipv6Addr },
}

impl OuterIp {
    /// Bytes of outer headers for `kind` (IP, then UDP + GUE or GRE).
    fn overhead(&self, kind: TunKind) -> usize {
        match self {
            OuterIp::V4 { .. } => kind.overhead(),
            OuterIp::V6 { .. } => kind.overhead() + V6_EXTRA,
        }
    }
}

/// What the outer header copies of the inner packet: traffic class (or
/// TOS), hop limit (or TTL) and flow label (0 for IPv4), its protocol as a
/// tunnel announces it (4 or 41) and its length.
#[derive(Debug, Clone, Copy)]
struct Inner {
    tc: u8,
    hop_limit: u8,
    flow_label: u32,
    proto: u8,
    len: usize,
}

/// Move the inner packet of frame `f` (at [`L3`], `inner.len` bytes) back
/// by the overhead and write the Ethernet and outer headers of `kind`
/// before it; `f` is long enough for the result. GUE's UDP source port is
/// `sport`; its checksum is computed over IPv6 always, over IPv4 when
/// `kind` asks.
fn encap_at(
    f: &mut [u8],
    ctx: &XmitCtx,
    outer: OuterIp,
    inner: Inner,
    sport: u16,
) -> Result<usize, XmitError> {
    let over = outer.overhead(ctx.tun);
    let out_len = L3 + over + inner.len;
    move_up(f, L3, inner.len, over);
    let (next, tail) = match ctx.tun {
        TunKind::Ipip => (inner.proto, 0),
        TunKind::Gre => (PROTO_GRE, GRE_HEADER_LEN),
        TunKind::Gue { .. } => (PROTO_UDP, udp::HEADER_LEN + GUE_HEADER_LEN),
    };
    let bad = |_| XmitError::Malformed;
    let mut e = EthernetFrame::new_unchecked(&mut f[..]);
    e.set_dst(ctx.dst_mac);
    e.set_src(ctx.src_mac);
    // inner.len + over ≤ mtu ≤ u16::MAX.
    let l4_at = match outer {
        OuterIp::V4 {
            src,
            dst,
            ident,
            df,
        } => {
            e.set_ethertype(ETHERTYPE_IPV4);
            Ipv4Repr {
                src,
                dst,
                protocol: next,
                payload_len: (tail + inner.len) as u16,
                tos: inner.tc,
                ttl: inner.hop_limit,
                ident,
                dont_frag: df,
            }
            .emit(&mut f[L3..])
            .map_err(bad)?;
            L3 + ipv4::MIN_HEADER_LEN
        }
        OuterIp::V6 { src, dst } => {
            e.set_ethertype(ETHERTYPE_IPV6);
            Ipv6Repr {
                src,
                dst,
                next_header: next,
                payload_len: (tail + inner.len) as u16,
                hop_limit: inner.hop_limit,
                traffic_class: inner.tc,
                flow_label: inner.flow_label,
            }
            .emit(&mut f[L3..])
            .map_err(bad)?;
            L3 + ipv6::HEADER_LEN
        }
    };
    let ethertype: u16 = if inner.proto == PROTO_IPV6 {
        ETHERTYPE_IPV6
    } else {
        ETHERTYPE_IPV4
    };
    match ctx.tun {
        TunKind::Ipip => {}
        TunKind::Gre => {
            // Flags and version 0, the inner protocol type (RFC 2784).
            f[l4_at..l4_at + 2].copy_from_slice(&[0, 0]);
            f[l4_at + 2..l4_at + 4].copy_from_slice(&ethertype.to_be_bytes());
        }
        TunKind::Gue { port, checksum } => {
            let payload_len = (GUE_HEADER_LEN + inner.len) as u16;
            udp::emit_header(&mut f[l4_at..], sport, port, payload_len).map_err(bad)?;
            let gue_at = l4_at + udp::HEADER_LEN;
            f[gue_at..gue_at + GUE_HEADER_LEN].copy_from_slice(&[0, inner.proto, 0, 0]);
            // Over IPv6 the UDP checksum is always computed: a receiver
            // drops a zero one unless told otherwise (RFC 6935 allows it
            // for tunnels only where both ends agree), so `checksum` is
            // IPv4's choice alone.
            match outer {
                OuterIp::V6 { src, dst } => {
                    let seg = &f[l4_at..out_len];
                    let sum = crate::wire::checksum::transport_checksum6(src, dst, PROTO_UDP, seg);
                    let sum = if sum == 0 { 0xffff } else { sum };
                    let at = l4_at + udp::CHECKSUM_OFFSET;
                    f[at..at + 2].copy_from_slice(&sum.to_be_bytes());
                }
                OuterIp::V4 { src, dst, .. } if checksum => {
                    let mut u = UdpPacket::new_checked(&mut f[l4_at..out_len]).map_err(bad)?;
                    u.fill_checksum(src, dst);
                }
                OuterIp::V4 { .. } => {}
            }
        }
    }
    Ok(out_len)
}

/// Encapsulate an IPv6 frame parsed as `pkt` for an IPv6 real server, in
/// an outer IPv6 header from `ctx.tun_src6` to `ctx.addr6` ([`TunKind`]
/// as for IPv4, the inner protocol 41), growing it into the buffer's
/// tailroom; the outer header copies the inner traffic class, flow label
/// and hop limit. When it would exceed `ctx.mtu`, the buffer instead
/// holds an ICMPv6 packet too big for the client ([`Out::FragNeeded`]),
/// from the VIP, announcing `ctx.mtu` minus the overhead; an ICMPv6 error
/// that would not fit is refused ([`XmitError::TooBig`]).
pub fn packet_xmit6<B: FrameBuf + ?Sized>(
    buf: &mut B,
    pkt: &Parsed<Ipv6Addr>,
    ctx: &XmitCtx,
) -> Result<Out, XmitError> {
    let outer = OuterIp::V6 {
        src: ctx.tun_src6,
        dst: ctx.addr6,
    };
    encap6(buf, pkt, ctx, outer)
}

/// [`packet_xmit6`] for an IPv4 real server: IPv6 in IPv4 (protocol 41),
/// the outer IPv4 header from `ctx.tun_src` to `ctx.addr` with DF set and
/// the inner traffic class and hop limit as TOS and TTL.
pub fn packet_xmit6in4<B: FrameBuf + ?Sized>(
    buf: &mut B,
    pkt: &Parsed<Ipv6Addr>,
    ctx: &XmitCtx,
) -> Result<Out, XmitError> {
    let outer = OuterIp::V4 {
        src: ctx.tun_src,
        dst: ctx.addr,
        ident: ctx.ident,
        df: true,
    };
    encap6(buf, pkt, ctx, outer)
}

/// An IPv6 packet into a tunnel with `outer` headers, or a packet too big.
fn encap6<B: FrameBuf + ?Sized>(
    buf: &mut B,
    pkt: &Parsed<Ipv6Addr>,
    ctx: &XmitCtx,
    outer: OuterIp,
) -> Result<Out, XmitError> {
    let over = outer.overhead(ctx.tun);
    let mtu = usize::from(ctx.mtu);
    if mtu < over + ipv6::MIN_MTU {
        return Err(XmitError::MtuTooSmall);
    }
    let inner_len = usize::from(pkt.ip_len);
    let len = buf.bytes().len();
    if inner_len + over > mtu {
        let error = pkt.key.proto == ipv6::NEXT_ICMPV6
            && buf
                .bytes()
                .get(pkt.l4)
                .is_some_and(|t| icmpv6::is_error_type(*t));
        if error {
            return Err(XmitError::TooBig);
        }
        // Fits in u32: mtu is a u16 and over < mtu.
        let n =
            packet_too_big(buf.bytes(), pkt, (mtu - over) as u32).ok_or(XmitError::NoTailroom)?;
        buf.set_len(n);
        return Ok(Out::FragNeeded);
    }
    if !buf.set_len(len + over) {
        return Err(XmitError::NoTailroom);
    }
    let f = buf.bytes();
    let inner = {
        let ip = Ipv6Packet::new_unchecked(&f[L3..]);
        Inner {
            tc: ip.traffic_class(),
            hop_limit: ip.hop_limit(),
            flow_label: ip.flow_label(),
            proto: PROTO_IPV6,
            len: inner_len,
        }
    };
    let sport = GUE_SRC_PORT_BASE | (pkt.key.hash64() & 0x3fff) as u16;
    match encap_at(f, ctx, outer, inner, sport) {
        Ok(n) => {
            buf.set_len(n);
            Ok(Out::Tx)
        }
        Err(e) => {
            buf.set_len(len);
            Err(e)
        }
    }
}

/// Encapsulate an IPv4 frame parsed as `pkt` for an IPv6 real server
/// (IPv4 in IPv6: an IPv4 service's server reached over IPv6): an outer
/// IPv6 header from `ctx.tun_src6` to `ctx.addr6`, the inner TOS and TTL
/// as traffic class and hop limit. A packet that would exceed `ctx.mtu`
/// gets an ICMP fragmentation needed back if its DF is set, as for IPv4
/// tunnels, and is refused otherwise.
pub fn packet_xmit4in6<B: FrameBuf + ?Sized>(
    buf: &mut B,
    pkt: &Parsed,
    ctx: &XmitCtx,
) -> Result<Out, XmitError> {
    let outer = OuterIp::V6 {
        src: ctx.tun_src6,
        dst: ctx.addr6,
    };
    let over = outer.overhead(ctx.tun);
    let mtu = usize::from(ctx.mtu);
    if mtu < over + MIN_IPV4_MTU {
        return Err(XmitError::MtuTooSmall);
    }
    let inner_len = usize::from(pkt.ip_len);
    let len = buf.bytes().len();
    let (tos, ttl, df, icmp_error) = {
        let ip = Ipv4Packet::new_unchecked(&buf.bytes()[L3..L3 + inner_len]);
        (ip.tos(), ip.ttl(), ip.dont_frag(), is_icmp_error(&ip))
    };
    if inner_len + over > mtu {
        if !df || icmp_error {
            return Err(XmitError::TooBig);
        }
        let n = frag_needed_valid(buf.bytes(), 0, len, (mtu - over) as u16, ctx.ident)
            .map_err(xmit_error)?;
        buf.set_len(n);
        return Ok(Out::FragNeeded);
    }
    if !buf.set_len(len + over) {
        return Err(XmitError::NoTailroom);
    }
    let inner = Inner {
        tc: tos,
        hop_limit: ttl,
        flow_label: 0,
        proto: PROTO_IPIP,
        len: inner_len,
    };
    let sport = {
        let ip = Ipv4Packet::new_unchecked(&buf.bytes()[L3..L3 + inner_len]);
        gue_src_port(ip.header(), ip.payload(), ip.protocol())
    };
    match encap_at(buf.bytes(), ctx, outer, inner, sport) {
        Ok(n) => {
            buf.set_len(n);
            Ok(Out::Tx)
        }
        Err(e) => {
            buf.set_len(len);
            Err(e)
        }
    }
}

/// Replace frame `f` (an IPv6 packet from a client, parsed as `pkt`) by
/// an ICMPv6 packet too big answering it, announcing `mtu`: Ethernet back
/// to the sender from the MAC the frame was sent to, IPv6 from the
/// packet's destination (the VIP) to its source, quoting as much of the
/// packet as fits in 1280 bytes. Returns the frame's new length, or
/// `None` if `f` is too short to hold it (it never is: the quote is cut to
/// what the packet had).
#[cold]
fn packet_too_big(f: &mut [u8], pkt: &Parsed<Ipv6Addr>, mtu: u32) -> Option<usize> {
    let (client_mac, our_mac) = {
        let e = EthernetFrame::new_unchecked(&f[..]);
        (e.src(), e.dst())
    };
    let offending = &f[L3..L3 + usize::from(pkt.ip_len)];
    let n = icmpv6::error_packet_len(offending.len());
    // The quote moves back by the new headers' length: copied out first
    // (at most 1280 bytes, on the stack: no allocation).
    let mut quote = [0u8; ipv6::MIN_MTU];
    let q = (n - ipv6::HEADER_LEN - icmpv6::HEADER_LEN).min(offending.len());
    quote[..q].copy_from_slice(&offending[..q]);
    let out = f.get_mut(L3..L3 + n)?;
    icmpv6::emit_error(
        out,
        (pkt.key.vip, pkt.key.cip, ICMPV6_ERROR_HOP_LIMIT),
        icmpv6::TYPE_PACKET_TOO_BIG,
        0,
        mtu,
        &quote[..q],
    )
    .ok()?;
    let mut e = EthernetFrame::new_unchecked(&mut f[..]);
    e.set_dst(client_mac);
    e.set_src(our_mac);
    Some(L3 + n)
}

/// The pipeline's reason for a failed encapsulation.
fn xmit_error(e: TunError) -> XmitError {
    match e {
        TunError::Bounds | TunError::NotIpv4 | TunError::Malformed(_) => XmitError::Malformed,
        TunError::NoHeadroom { .. } | TunError::NoRoom => XmitError::NoTailroom,
        TunError::TooBig => XmitError::TooBig,
        TunError::MtuTooSmall => XmitError::MtuTooSmall,
    }
}

/// [`xmit_with`] for a frame at `buf[headroom..headroom + len]` already
/// validated (Ethernet, IPv4 header and total length inside it).
fn encap(
    buf: &mut [u8],
    headroom: usize,
    len: usize,
    tun: &Tunnel,
    ident: u16,
    room: Room,
) -> Result<TunOutcome, TunError> {
    let inner = Ipv4Packet::new_unchecked(&buf[headroom + eth::HEADER_LEN..headroom + len]);
    let over = tun.kind.overhead();
    let mtu = usize::from(tun.mtu);
    if mtu < over + MIN_IPV4_MTU {
        return Err(TunError::MtuTooSmall);
    }
    let inner_len = inner.total_len();
    if inner_len + over > mtu {
        if !inner.dont_frag() || is_icmp_error(&inner) {
            return Err(TunError::TooBig);
        }
        // Fits in u16: mtu is a u16 and over < mtu.
        let nh_mtu = (mtu - over) as u16;
        let len = frag_needed_valid(buf, headroom, len, nh_mtu, ident)?;
        return Ok(TunOutcome::FragNeeded {
            start: headroom,
            len,
            mtu: nh_mtu,
        });
    }
    let out_len = eth::HEADER_LEN + over + inner_len;
    match room {
        Room::Head if headroom < over => {
            return Err(TunError::NoHeadroom {
                need: over,
                have: headroom,
            })
        }
        Room::Tail if buf.len() - headroom < out_len => return Err(TunError::NoRoom),
        _ => {}
    }
    let outer = Ipv4Repr {
        src: tun.src,
        dst: tun.rip,
        protocol: match tun.kind {
            TunKind::Ipip => PROTO_IPIP,
            TunKind::Gue { .. } => PROTO_UDP,
            TunKind::Gre => PROTO_GRE,
        },
        // inner_len + over ≤ mtu ≤ u16::MAX.
        payload_len: (inner_len + over - ipv4::MIN_HEADER_LEN) as u16,
        tos: inner.tos(),
        ttl: inner.ttl(),
        ident,
        dont_frag: inner.dont_frag(),
    };
    let sport = gue_src_port(inner.header(), inner.payload(), inner.protocol());

    let start = match room {
        Room::Head => {
            let start = headroom - over;
            buf.copy_within(headroom..headroom + eth::HEADER_LEN, start);
            start
        }
        Room::Tail => {
            let inner_at = headroom + eth::HEADER_LEN;
            buf.copy_within(inner_at..inner_at + inner_len, inner_at + over);
            headroom
        }
    };
    let out = &mut buf[start..start + out_len];
    {
        let mut e = EthernetFrame::new_checked(&mut *out)?;
        e.set_dst(tun.dst_mac);
        e.set_src(tun.src_mac);
        e.set_ethertype(ETHERTYPE_IPV4);
    }
    let ip_at = eth::HEADER_LEN;
    let l4_at = ip_at + ipv4::MIN_HEADER_LEN;
    outer.emit(&mut out[ip_at..])?;
    match tun.kind {
        TunKind::Ipip => {}
        TunKind::Gre => {
            // Flags and version 0, protocol type IPv4 (RFC 2784).
            out[l4_at..l4_at + GRE_HEADER_LEN].copy_from_slice(&[0, 0, 0x08, 0x00]);
        }
        TunKind::Gue { port, checksum } => {
            // inner_len + GUE header < mtu ≤ u16::MAX.
            let payload_len = (GUE_HEADER_LEN + inner_len) as u16;
            udp::emit_header(&mut out[l4_at..], sport, port, payload_len)?;
            // GUE (draft-ietf-intarea-gue): version 0, C = 0 (data),
            // Hlen = 0, proto/ctype = 4 (IPv4), flags 0.
            let gue_at = l4_at + udp::HEADER_LEN;
            out[gue_at..gue_at + GUE_HEADER_LEN].copy_from_slice(&[0, PROTO_IPIP, 0, 0]);
            if checksum {
                let mut u = UdpPacket::new_checked(&mut out[l4_at..])?;
                u.fill_checksum(tun.src, tun.rip);
            }
        }
    }
    Ok(TunOutcome::Encapsulated {
        start,
        len: out_len,
    })
}

fn is_icmp_error(ip: &Ipv4Packet<&[u8]>) -> bool {
    ip.protocol() == PROTO_ICMP
        && ip.frag_offset() == 0
        && ip
            .payload()
            .first()
            .is_some_and(|t| icmp::is_error_type(*t))
}

/// The UDP source port of a GUE packet: a hash of the inner flow (the
/// addresses and protocol, plus the ports of an unfragmented or first
/// fragment TCP/UDP packet) mapped into 49152..=65535, so that one flow
/// keeps one outer 5-tuple (no reordering under ECMP or RSS) and distinct
/// flows spread. `header` is the inner IPv4 header, `payload` what follows.
pub fn gue_src_port(header: &[u8], payload: &[u8], protocol: u8) -> u16 {
    let word = |b: &[u8], at: usize| -> u64 {
        b.get(at..at + 4).map_or(0, |w| {
            u64::from(u32::from_be_bytes([w[0], w[1], w[2], w[3]]))
        })
    };
    let saddr = word(header, ipv4::SRC_OFFSET);
    let daddr = word(header, ipv4::DST_OFFSET);
    let first = header
        .get(6..8)
        .is_some_and(|f| f[0] & 0x1f == 0 && f[1] == 0);
    let ports = if (protocol == PROTO_TCP || protocol == PROTO_UDP) && first {
        word(payload, 0)
    } else {
        0
    };
    let mut h = (saddr << 32 | daddr).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    h ^= (ports << 8 | u64::from(protocol)).wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    h ^= h >> 31;
    h = h.wrapping_mul(0xD6E8_FEB8_6659_FD93);
    h ^= h >> 32;
    GUE_SRC_PORT_BASE + (h & 0x3fff) as u16
}

/// Replace the Ethernet frame at `buf[headroom..headroom + len]`, an IPv4
/// packet from a client, by an ICMP fragmentation-needed answering it, at
/// the same start: Ethernet back to the sender's MAC (from the MAC the
/// frame was sent to), IPv4 from the packet's destination to its source
/// (TOS [`ICMP_ERROR_TOS`], TTL [`ICMP_ERROR_TTL`], DF clear, `ident`),
/// ICMP type 3 code 4 with next-hop MTU `mtu`, quoting the packet's IP
/// header and the first 8 bytes of its payload. Returns the frame length.
pub fn frag_needed(
    buf: &mut [u8],
    headroom: usize,
    len: usize,
    mtu: u16,
    ident: u16,
) -> Result<usize, TunError> {
    let end = headroom.checked_add(len).ok_or(TunError::Bounds)?;
    let frame = buf.get(headroom..end).ok_or(TunError::Bounds)?;
    let e = EthernetFrame::new_checked(frame)?;
    if e.ethertype() != ETHERTYPE_IPV4 {
        return Err(TunError::NotIpv4);
    }
    Ipv4Packet::new_checked(e.payload())?;
    frag_needed_valid(buf, headroom, len, mtu, ident)
}

/// [`frag_needed`] for a frame at `buf[headroom..headroom + len]` already
/// validated.
fn frag_needed_valid(
    buf: &mut [u8],
    headroom: usize,
    len: usize,
    mtu: u16,
    ident: u16,
) -> Result<usize, TunError> {
    let frame = &buf[headroom..headroom + len];
    let e = EthernetFrame::new_unchecked(frame);
    let (client_mac, our_mac) = (e.src(), e.dst());
    let inner = Ipv4Packet::new_unchecked(&frame[eth::HEADER_LEN..]);
    let quote_len = (inner.header_len() + icmp::QUOTED_PAYLOAD_LEN).min(inner.total_len());
    let icmp_len = icmp::HEADER_LEN + quote_len;
    let ip_at = eth::HEADER_LEN;
    let icmp_at = ip_at + ipv4::MIN_HEADER_LEN;
    let out_len = icmp_at + icmp_len;
    if buf.len() - headroom < out_len {
        return Err(TunError::NoRoom);
    }
    let ip = Ipv4Repr {
        src: inner.dst(),
        dst: inner.src(),
        protocol: PROTO_ICMP,
        // At most 8 + 60 + 8.
        payload_len: icmp_len as u16,
        tos: ICMP_ERROR_TOS,
        ttl: ICMP_ERROR_TTL,
        ident,
        dont_frag: false,
    };
    let out = &mut buf[headroom..headroom + out_len.max(len)];
    // The quote moves back by the new headers' length; memmove semantics.
    out.copy_within(ip_at..ip_at + quote_len, icmp_at + icmp::HEADER_LEN);
    let out = &mut out[..out_len];
    {
        let mut e = EthernetFrame::new_checked(&mut *out)?;
        e.set_dst(client_mac);
        e.set_src(our_mac);
        e.set_ethertype(ETHERTYPE_IPV4);
    }
    ip.emit(&mut out[ip_at..])?;
    let mut m = IcmpPacket::new_checked(&mut out[icmp_at..])?;
    m.set_msg_type(icmp::TYPE_DEST_UNREACH);
    m.set_code(icmp::CODE_FRAG_NEEDED);
    m.set_rest_of_header(u32::from(mtu));
    m.fill_checksum();
    Ok(out_len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::FixedFrame;
    use crate::packet::parse;

    /// Ethernet + IPv4 (TOS `tos`, TTL `ttl`, DF or not) + a TCP or UDP
    /// segment of `payload` bytes, then `pad` bytes of Ethernet padding.
    fn frame(proto: u8, tos: u8, ttl: u8, df: bool, payload: usize, pad: usize) -> Vec<u8> {
        let l4_len = if proto == PROTO_TCP { 20 } else { 8 };
        let mut f = vec![0u8; L3 + 20 + l4_len + payload];
        f[..6].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        f[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        Ipv4Repr {
            src: Ipv4Addr::new(198, 18, 7, 9),
            dst: Ipv4Addr::new(198, 19, 0, 1),
            protocol: proto,
            payload_len: (l4_len + payload) as u16,
            tos,
            ttl,
            ident: 0x1234,
            dont_frag: df,
        }
        .emit(&mut f[L3..])
        .unwrap();
        let l4 = L3 + 20;
        f[l4..l4 + 4].copy_from_slice(&[0x9c, 0x41, 0x00, 0x50]);
        if proto == PROTO_TCP {
            f[l4 + 12] = 0x50;
            f[l4 + 13] = 0x10;
        } else {
            f[l4 + 4..l4 + 6].copy_from_slice(&((8 + payload) as u16).to_be_bytes());
        }
        for (i, b) in f[l4 + l4_len..].iter_mut().enumerate() {
            *b = i as u8;
        }
        f.extend(std::iter::repeat_n(0xee, pad));
        f
    }

    /// The pipeline's encapsulation writes what the general, checked one
    /// writes, byte for byte, for every kind, TOS, TTL, DF, protocol,
    /// padding and identification, and falls back to it (an answer or a
    /// refusal) at the MTU's edge.
    #[test]
    fn moving_a_packet_up_is_a_plain_overlapping_copy() {
        // Every way `move_up` moves (two 16-byte blocks, two 32-byte
        // blocks, memmove), each length at and around their edges, by
        // every overhead and more, with bytes before and after the span.
        for len in 0..=100usize {
            for by in [0usize, 1, 4, 8, 12, 16, 20, 31, 32, 40, 64, 70] {
                let at = 14;
                let f: Vec<u8> = (0..at + by + len + 5).map(|i| (i * 13 + 7) as u8).collect();
                let mut want = f.clone();
                want.copy_within(at..at + len, at + by);
                let mut got = f.clone();
                move_up(&mut got, at, len, by);
                assert_eq!(got, want, "len {len} by {by}");
            }
        }
    }

    #[test]
    fn an_outer_header_template_holds_its_constant_words_and_their_sum() {
        let rip = Ipv4Addr::new(198, 18, 0, 11);
        for kind in [
            TunKind::Ipip,
            TunKind::Gre,
            TunKind::Gue {
                port: 6080,
                checksum: true,
            },
        ] {
            let t = OuterV4::new(kind, rip);
            assert_eq!((t.kind(), t.rip()), (kind, rip));
            assert_eq!(usize::from(t.over), kind.overhead(), "{kind:?}");
            let words: u32 =
                t.ip.chunks(2)
                    .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
                    .sum();
            assert_eq!(t.sum, words, "{kind:?}");
        }
    }

    #[test]
    fn the_parsed_encapsulation_writes_what_the_checked_one_does() {
        let kinds = [
            TunKind::Ipip,
            TunKind::Gre,
            TunKind::Gue {
                port: 6080,
                checksum: false,
            },
            TunKind::Gue {
                port: 5555,
                checksum: true,
            },
        ];
        let mut cases = 0;
        for kind in kinds {
            // Inner packets of 28 to 228 bytes: each way the packet moves
            // (two 16-byte blocks, two 32-byte blocks, memmove) and the
            // lengths at their edges (31, 32, 64, 65).
            for (proto, payload) in [
                (PROTO_TCP, 0),
                (PROTO_TCP, 33),
                (PROTO_UDP, 1),
                (PROTO_UDP, 200),
                (PROTO_UDP, 0),
                (PROTO_UDP, 3),
                (PROTO_UDP, 4),
                (PROTO_TCP, 24),
                (PROTO_TCP, 25),
            ] {
                for (tos, ttl, df) in [(0, 64, true), (0xb8, 1, false), (0xff, 255, true)] {
                    for pad in [0, 6] {
                        let f = frame(proto, tos, ttl, df, payload, pad);
                        let ip_len = f.len() - pad - L3;
                        // Far below, exactly at and just past the MTU.
                        for mtu in [1500, ip_len + kind.overhead(), ip_len + kind.overhead() - 1] {
                            let mtu = mtu as u16;
                            let ident = 0xfffe_u16.wrapping_add(cases);
                            let mut ctx = XmitCtx::macs([2, 0, 0, 0, 0, 3], [2, 0, 0, 0, 0, 4]);
                            ctx.tun = kind;
                            ctx.addr = Ipv4Addr::new(198, 18, 0, 11);
                            ctx.tun_src = Ipv4Addr::new(198, 18, 0, 254);
                            ctx.mtu = mtu;
                            ctx.ident = ident;
                            let pkt = parse(&f).unwrap();
                            let mut got = f.clone();
                            let sent = packet_xmit(&mut got, &pkt, &ctx);

                            let tun = Tunnel {
                                kind,
                                src: ctx.tun_src,
                                rip: ctx.addr,
                                src_mac: ctx.src_mac,
                                dst_mac: ctx.dst_mac,
                                mtu,
                            };
                            let mut want = f.clone();
                            want.resize(f.len() + kind.overhead(), 0);
                            let expect = match xmit_tailroom(&mut want, f.len(), &tun, ident) {
                                Ok(TunOutcome::Encapsulated { len, .. }) => {
                                    want.truncate(len);
                                    Ok(Out::Tx)
                                }
                                Ok(TunOutcome::FragNeeded { len, .. }) => {
                                    want.truncate(len);
                                    Ok(Out::FragNeeded)
                                }
                                Err(e) => {
                                    want = f.clone();
                                    Err(xmit_error(e))
                                }
                            };
                            assert_eq!(sent, expect, "{kind:?} mtu {mtu}");
                            assert_eq!(got, want, "{kind:?} mtu {mtu}");
                            // In a buffer that is not cleared as it grows
                            // (a UMEM frame), whatever lies past the frame.
                            let mut stale = vec![0xa5; crate::frame::VEC_FRAME_MAX];
                            stale[..f.len()].copy_from_slice(&f);
                            let mut fixed = FixedFrame::new(&stale);
                            assert!(fixed.set_len(f.len()));
                            let sent = packet_xmit(&mut fixed, &pkt, &ctx);
                            assert_eq!(sent, expect, "{kind:?} mtu {mtu}, fixed");
                            assert_eq!(&fixed[..], &want[..], "{kind:?} mtu {mtu}, fixed");
                            cases += 1;
                        }
                    }
                }
            }
        }
        assert_eq!(cases, 4 * 9 * 3 * 2 * 3);
    }
}
