//! IPv6 frame builders for tests and benches, beside [`super::frame`]'s
//! IPv4 ones and in the same manner: fixed headers and checksums are
//! written by etherparse from the fields a frame must carry, never by the
//! code under test. Extension headers are laid out here, in the order a
//! test gives them (well-formed chains and malformed ones alike), and the
//! next-header fields chained through them.

use super::frame::{eth_typed, Mac, Udp, ACK, FIN, L4, PSH, RST, SYN};
use super::{CLIENT_MAC, DIR_MAC};
use etherparse::{
    Icmpv6Header, Icmpv6Type, IpNumber, Ipv6FlowLabel, Ipv6Header, TcpHeader, UdpHeader,
};
use std::net::Ipv6Addr;
use xvs_config::tun::TunKind;

/// EtherType of IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
/// Next header of a hop-by-hop options header.
pub const HOP_BY_HOP: u8 = 0;
/// Next header of a routing header.
pub const ROUTING: u8 = 43;
/// Next header of a fragment header.
pub const FRAGMENT: u8 = 44;
/// Next header of a destination options header.
pub const DEST_OPTS: u8 = 60;
/// Next header of ICMPv6.
pub const ICMPV6: u8 = 58;

/// The IPv6 VIP: 2001:2::100.
pub const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0x100);
/// The IPv6 client: 2001:2::10.
pub const CIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0x10);
/// The director's own IPv6 address: 2001:2::2.
pub const DIR_IP6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 2);

/// Address of IPv6 real server `i` (1-based): 2001:2::11, 2001:2::12, ...
pub fn rip6(i: u8) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0x10 + u16::from(i))
}

/// An extension header to lay out after the fixed header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ext {
    /// Hop-by-hop options of `8 + 8 * n` bytes (PadN-filled).
    HopByHop(u8),
    /// Destination options of `8 + 8 * n` bytes (PadN-filled).
    DestOpts(u8),
    /// A routing header of `8 + 8 * n` bytes, type 253 (experimental),
    /// segments left 0: the destination stays the final one.
    Routing(u8),
    /// A fragment header.
    Fragment {
        /// Fragment offset in bytes (a multiple of 8).
        offset: u16,
        /// More fragments follow.
        more: bool,
        /// Identification.
        ident: u32,
    },
    /// Any bytes, announced by the previous header as `kind`; the first
    /// byte is overwritten with the next header (a malformed length, a
    /// header cut short).
    Raw {
        /// Next-header value the previous header gives it.
        kind: u8,
        /// Its bytes.
        bytes: Vec<u8>,
    },
}

impl Ext {
    /// The next-header value that announces this header.
    pub fn kind(&self) -> u8 {
        match self {
            Ext::HopByHop(_) => HOP_BY_HOP,
            Ext::DestOpts(_) => DEST_OPTS,
            Ext::Routing(_) => ROUTING,
            Ext::Fragment { .. } => FRAGMENT,
            Ext::Raw { kind, .. } => *kind,
        }
    }

    /// Its bytes, followed by a header of kind `next`.
    pub fn bytes(&self, next: u8) -> Vec<u8> {
        match self {
            Ext::HopByHop(n) | Ext::DestOpts(n) => {
                let len = 8 + 8 * usize::from(*n);
                // One PadN option fills the 6 + 8n bytes after the two
                // fixed ones (its length is at most 255: n ≤ 31).
                let pad = u8::try_from(len - 4).expect("PadN of at most 255 bytes");
                let mut v = vec![next, *n, 1, pad];
                v.resize(len, 0);
                v
            }
            Ext::Routing(n) => {
                let mut v = vec![next, *n, 253, 0];
                v.resize(8 + 8 * usize::from(*n), 0);
                v
            }
            Ext::Fragment {
                offset,
                more,
                ident,
            } => {
                let mut v = vec![next, 0];
                v.extend_from_slice(&(offset | u16::from(*more)).to_be_bytes());
                v.extend_from_slice(&ident.to_be_bytes());
                v
            }
            Ext::Raw { bytes, .. } => {
                let mut v = bytes.clone();
                if let Some(b) = v.first_mut() {
                    *b = next;
                }
                v
            }
        }
    }
}

/// The fields of an IPv6 header to build, with its extension headers
/// (payload length and next headers follow from what it carries).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ip6 {
    /// Source address.
    pub src: Ipv6Addr,
    /// Destination address.
    pub dst: Ipv6Addr,
    /// Hop limit.
    pub hop_limit: u8,
    /// Traffic class.
    pub traffic_class: u8,
    /// Flow label (20 bits).
    pub flow_label: u32,
    /// Extension headers, in this order.
    pub ext: Vec<Ext>,
}

/// An IPv6 header `src` → `dst`: hop limit 64, traffic class 0, flow
/// label 0, no extension headers.
pub fn ip6(src: Ipv6Addr, dst: Ipv6Addr) -> Ip6 {
    Ip6 {
        src,
        dst,
        hop_limit: 64,
        traffic_class: 0,
        flow_label: 0,
        ext: Vec::new(),
    }
}

impl Ip6 {
    /// The same header changed by `f`.
    pub fn with(mut self, f: impl FnOnce(&mut Ip6)) -> Ip6 {
        f(&mut self);
        self
    }

    /// The same header followed by extension header `e`.
    pub fn ext(mut self, e: Ext) -> Ip6 {
        self.ext.push(e);
        self
    }

    /// Length of the fixed and extension headers in bytes.
    pub fn header_len(&self) -> usize {
        40 + self.ext.iter().map(|e| e.bytes(0).len()).sum::<usize>()
    }

    /// The fixed header (etherparse's), the extension headers chained,
    /// then `upper` announced as `proto`.
    fn packet(&self, proto: u8, upper: &[u8]) -> Vec<u8> {
        let mut exts = Vec::new();
        for (i, e) in self.ext.iter().enumerate() {
            let next = self.ext.get(i + 1).map_or(proto, Ext::kind);
            exts.extend_from_slice(&e.bytes(next));
        }
        let first = self.ext.first().map_or(proto, Ext::kind);
        let h = Ipv6Header {
            traffic_class: self.traffic_class,
            flow_label: Ipv6FlowLabel::try_new(self.flow_label).expect("20-bit flow label"),
            payload_length: u16::try_from(exts.len() + upper.len()).expect("payload fits"),
            next_header: IpNumber(first),
            hop_limit: self.hop_limit,
            source: self.src.octets(),
            destination: self.dst.octets(),
        };
        let mut out = h.to_bytes().to_vec();
        out.extend_from_slice(&exts);
        out.extend_from_slice(upper);
        out
    }
}

/// The TCP or UDP segment `l4` + `payload` from `src` to `dst`, its
/// checksum over the IPv6 pseudo-header (etherparse's).
pub fn l4_segment6(src: Ipv6Addr, dst: Ipv6Addr, l4: &L4, payload: &[u8]) -> Vec<u8> {
    let (s, d) = (src.octets(), dst.octets());
    let mut out = match l4 {
        L4::Tcp(t) => {
            let mut h = TcpHeader::new(t.sport, t.dport, t.seq, t.window);
            h.fin = t.flags & FIN != 0;
            h.syn = t.flags & SYN != 0;
            h.rst = t.flags & RST != 0;
            h.psh = t.flags & PSH != 0;
            h.ack = t.flags & ACK != 0;
            h.acknowledgment_number = t.ack;
            h.set_options_raw(&t.options).expect("tcp options");
            h.checksum = h.calc_checksum_ipv6_raw(s, d, payload).expect("checksum");
            h.to_bytes().to_vec()
        }
        L4::Udp(Udp {
            sport,
            dport,
            no_csum,
        }) => {
            let mut h = UdpHeader {
                source_port: *sport,
                destination_port: *dport,
                length: u16::try_from(8 + payload.len()).expect("UDP length"),
                checksum: 0,
            };
            if !no_csum {
                h.checksum = h.calc_checksum_ipv6_raw(s, d, payload).expect("checksum");
            }
            h.to_bytes().to_vec()
        }
    };
    out.extend_from_slice(payload);
    out
}

/// An IPv6 packet (no Ethernet header) carrying `l4` and `payload` behind
/// `ip`'s extension headers, every checksum valid.
pub fn ip6_packet(ip: &Ip6, l4: &L4, payload: &[u8]) -> Vec<u8> {
    ip.packet(l4.proto(), &l4_segment6(ip.src, ip.dst, l4, payload))
}

/// An IPv6 packet carrying `payload` as next header `proto` behind `ip`'s
/// extension headers.
pub fn ip6_raw(ip: &Ip6, proto: u8, payload: &[u8]) -> Vec<u8> {
    ip.packet(proto, payload)
}

/// The fragments of the TCP or UDP packet `l4` + `payload` (checksum over
/// the whole), each behind `ip`'s extension headers and a fragment header
/// with `ident`, carrying at most `size` bytes (a multiple of 8) of the
/// upper-layer packet.
pub fn ip6_fragments(ip: &Ip6, l4: &L4, payload: &[u8], size: usize, ident: u32) -> Vec<Vec<u8>> {
    assert!(
        size >= 8 && size.is_multiple_of(8),
        "fragment size a multiple of 8"
    );
    let upper = l4_segment6(ip.src, ip.dst, l4, payload);
    let chunks: Vec<&[u8]> = upper.chunks(size).collect();
    chunks
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let f = ip.clone().ext(Ext::Fragment {
                offset: u16::try_from(i * size).expect("offset fits"),
                more: i + 1 < chunks.len(),
                ident,
            });
            f.packet(l4.proto(), c)
        })
        .collect()
}

/// An IPv6 packet carrying an ICMPv6 message of type `t`, code `code`,
/// the four bytes after the checksum `rest` and then `data` (checksum over
/// the pseudo-header valid, etherparse's).
pub fn icmp6_packet(ip: &Ip6, t: u8, code: u8, rest: [u8; 4], data: &[u8]) -> Vec<u8> {
    let ty = Icmpv6Type::Unknown {
        type_u8: t,
        code_u8: code,
        bytes5to8: rest,
    };
    let h =
        Icmpv6Header::with_checksum(ty, ip.src.octets(), ip.dst.octets(), data).expect("checksum");
    let mut m = h.to_bytes().to_vec();
    m.extend_from_slice(data);
    ip.packet(ICMPV6, &m)
}

/// What an ICMPv6 error quotes of `packet` (RFC 4443 §2.4): as much as
/// keeps the error within the minimum MTU of 1280 bytes.
pub fn quote6(packet: &[u8]) -> Vec<u8> {
    packet[..packet.len().min(1280 - 40 - 8)].to_vec()
}

/// An ICMPv6 error `from` → `to` of type `t`, code `code`, with `rest`,
/// quoting `offending` as [`quote6`] does.
pub fn icmp6_error(
    from: Ipv6Addr,
    to: Ipv6Addr,
    t: u8,
    code: u8,
    rest: u32,
    offending: &[u8],
) -> Vec<u8> {
    icmp6_packet(
        &ip6(from, to),
        t,
        code,
        rest.to_be_bytes(),
        &quote6(offending),
    )
}

/// A packet-too-big error `from` → `to` with `mtu`, quoting `offending`.
pub fn packet_too_big(from: Ipv6Addr, to: Ipv6Addr, mtu: u32, offending: &[u8]) -> Vec<u8> {
    icmp6_error(from, to, 2, 0, mtu, offending)
}

/// The outer header of a tunnel: IPv4 or IPv6.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outer {
    /// An IPv4 outer header.
    V4(super::frame::Ip),
    /// An IPv6 outer header.
    V6(Ip6),
}

/// The packet a tunnel of `kind` makes of `inner` (IPv4 or IPv6, told by
/// its version nibble) under `outer`: IPIP as protocol 4 or 41, GRE with
/// EtherType 0x0800 or 0x86dd, GUE with protocol 4 or 41 in its header
/// (`gue_sport` is then the outer UDP source port). This gives IPv6 in
/// IPv6, IPv4 in IPv6 and IPv6 in IPv4 alike.
pub fn tunnel(kind: TunKind, outer: &Outer, inner: &[u8], gue_sport: u16) -> Vec<u8> {
    let v6_inner = inner.first().is_some_and(|b| b >> 4 == 6);
    let (proto, ethertype): (u8, u16) = if v6_inner { (41, 0x86dd) } else { (4, 0x0800) };
    let raw = |proto: u8, payload: &[u8]| match outer {
        Outer::V4(ip) => super::frame::ip_raw(ip, proto, payload),
        Outer::V6(ip) => ip6_raw(ip, proto, payload),
    };
    match kind {
        TunKind::Ipip => raw(proto, inner),
        TunKind::Gre => {
            let mut p = vec![0, 0];
            p.extend_from_slice(&ethertype.to_be_bytes());
            p.extend_from_slice(inner);
            raw(47, &p)
        }
        TunKind::Gue { port, checksum } => {
            // Version 0, no flags, the inner protocol.
            let mut p = vec![0, proto, 0, 0];
            p.extend_from_slice(inner);
            let l4 = L4::Udp(Udp {
                sport: gue_sport,
                dport: port,
                no_csum: !checksum,
            });
            match outer {
                Outer::V4(ip) => super::frame::ip_packet(ip, &l4, &p),
                Outer::V6(ip) => ip6_packet(ip, &l4, &p),
            }
        }
    }
}

/// An Ethernet frame `src` → `dst` around an IPv6 packet.
pub fn eth6(src: Mac, dst: Mac, pkt: &[u8]) -> Vec<u8> {
    eth_typed(src, dst, ETHERTYPE_IPV6, pkt)
}

/// A TCP frame client → VIP6 from `cip` with the given ports, flags and
/// payload (sequence 1000, acknowledging 1 when `ack`, window 65535, hop
/// limit 64), from [`CLIENT_MAC`] to [`DIR_MAC`].
pub fn tcp6_frame(
    cip: Ipv6Addr,
    sport: u16,
    dport: u16,
    syn: bool,
    ack: bool,
    payload: &[u8],
) -> Vec<u8> {
    let mut l4 = super::frame::tcp(sport, dport);
    if syn {
        l4 = l4.syn();
    }
    if ack {
        l4 = l4.ack(1);
    }
    eth6(
        CLIENT_MAC,
        DIR_MAC,
        &ip6_packet(&ip6(cip, VIP6), &l4, payload),
    )
}

/// A UDP frame client → VIP6.
pub fn udp6_frame(cip: Ipv6Addr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    eth6(
        CLIENT_MAC,
        DIR_MAC,
        &ip6_packet(&ip6(cip, VIP6), &super::frame::udp(sport, dport), payload),
    )
}

/// An IPv4 header for an IPv6-in-IPv4 tunnel's outer side (etherparse's
/// defaults through [`super::frame::ip`]), re-exported for symmetry.
pub fn ip4(src: [u8; 4], dst: [u8; 4]) -> super::frame::Ip {
    super::frame::ip(src, dst)
}

/// An IPv6 service `[VIP6]:port` (protocol `proto`) whose server `i`
/// (1-based, in the order of `fwds`, at [`rip6`]`(i)` with MAC
/// [`super::rs_mac`]`(i)`, resolved) is forwarded by `fwds[i - 1]`; NAT
/// servers listen on 8080 when the service port is 80; tunnels leave from
/// [`DIR_IP6`]. Returns the
/// service and its destinations in list order (newest first), as
/// [`super::service_with`] does for IPv4.
pub fn service6(
    sched: &str,
    fwds: &[(crate::svc::Fwd, TunKind)],
    proto: u8,
    port: u16,
    persist: Option<crate::svc::Persist>,
) -> (
    std::sync::Arc<crate::svc::ServiceRt>,
    Vec<std::sync::Arc<crate::svc::DestRt>>,
) {
    use crate::svc::{DestRt, Fwd, NeighCell, SchedState, ServiceRt, SvcKey};
    use std::net::IpAddr;
    use std::sync::{Arc, Mutex};
    let mut dests = Vec::new();
    for (k, &(fwd, tun)) in fwds.iter().enumerate() {
        let i = k as u8 + 1;
        let rport = if fwd == Fwd::Nat && port == 80 {
            8080
        } else {
            port
        };
        let neigh = Arc::new(NeighCell::default());
        neigh.set(Some(super::rs_mac(i)));
        neigh.set_src6(Some(DIR_IP6));
        dests.insert(
            0,
            Arc::new(DestRt {
                id: u32::from(i),
                in_service: true,
                sched: xvs_scheduler::Dest::new(IpAddr::V6(rip6(i)), rport, 1),
                fwd,
                tun,
                stats: Arc::default(),
                neigh,
                outer4: None,
                nat4: None,
            }),
        );
    }
    let sched = xvs_scheduler::new(sched, 0).expect("scheduler exists");
    let svc = Arc::new(ServiceRt {
        id: 0,
        persist,
        key: SvcKey::Addr {
            proto,
            vip: IpAddr::V6(VIP6),
            port,
        },
        stats: Arc::default(),
        sched: Arc::new(Mutex::new(SchedState::new(sched, dests.clone()))),
    });
    (svc, dests)
}

#[cfg(test)]
mod tests {
    //! The builders checked against the crate's own views, which they are
    //! meant to test: a disagreement here is a bug in one of the two.
    use super::*;
    use crate::wire::checksum::transport_checksum6;
    use crate::wire::icmpv6::Icmpv6Packet;
    use crate::wire::ipv6::{ExtError, Ipv6Packet, Upper};

    #[test]
    fn extension_chains_are_laid_out_and_walkable() {
        let ip = ip6(CIP6, VIP6)
            .ext(Ext::HopByHop(0))
            .ext(Ext::Routing(1))
            .ext(Ext::DestOpts(2));
        let p = ip6_packet(&ip, &super::super::frame::tcp(40000, 80).syn(), b"hi");
        assert_eq!(ip.header_len(), 40 + 8 + 16 + 24);
        let v = Ipv6Packet::new_checked(&p[..]).unwrap();
        assert_eq!(
            v.upper(),
            Ok(Upper::Transport {
                proto: 6,
                offset: 48,
                routed: true
            })
        );
        let seg = &v.payload()[48..];
        let mut zeroed = seg.to_vec();
        zeroed[16..18].copy_from_slice(&[0, 0]);
        assert_eq!(
            transport_checksum6(CIP6, VIP6, 6, &zeroed),
            u16::from_be_bytes([seg[16], seg[17]])
        );
        // A misordered chain is laid out as given.
        let bad = ip6(CIP6, VIP6).ext(Ext::DestOpts(0)).ext(Ext::HopByHop(0));
        let p = ip6_packet(&bad, &super::super::frame::udp(1, 2), b"");
        assert_eq!(
            Ipv6Packet::new_checked(&p[..]).unwrap().upper(),
            Err(ExtError::HopByHopNotFirst)
        );
    }

    #[test]
    fn fragments_cover_the_segment() {
        let l4 = super::super::frame::udp(5000, 53);
        let frags = ip6_fragments(&ip6(CIP6, VIP6), &l4, &[7; 100], 48, 9);
        assert_eq!(frags.len(), 3);
        let mut data = Vec::new();
        for (i, f) in frags.iter().enumerate() {
            let v = Ipv6Packet::new_checked(&f[..]).unwrap();
            let Ok(Upper::Fragment(fr)) = v.upper() else {
                panic!("fragment {i}");
            };
            assert_eq!((fr.frag_offset, fr.more, fr.ident), (i * 48, i < 2, 9));
            data.extend_from_slice(&v.payload()[fr.offset..]);
        }
        assert_eq!(data, l4_segment6(CIP6, VIP6, &l4, &[7; 100]));
    }

    #[test]
    fn icmp6_errors_quote_and_verify() {
        let big = ip6_packet(
            &ip6(CIP6, VIP6),
            &super::super::frame::tcp(40000, 80),
            &[1; 1400],
        );
        let e = packet_too_big(DIR_IP6, CIP6, 1280, &big);
        assert_eq!(e.len(), 1280);
        let v = Ipv6Packet::new_checked(&e[..]).unwrap();
        let m = Icmpv6Packet::new_checked(v.payload()).unwrap();
        assert!(m.verify_checksum(DIR_IP6, CIP6));
        assert_eq!((m.msg_type(), m.mtu()), (2, 1280));
        let f = m.quoted_flow().unwrap();
        assert_eq!((f.src, f.sport, f.dst, f.dport), (CIP6, 40000, VIP6, 80));
    }

    #[test]
    fn tunnels_of_every_family_pair() {
        let inner6 = ip6_packet(&ip6(CIP6, VIP6), &super::super::frame::tcp(1, 80), b"x");
        let inner4 = super::super::frame::ip_packet(
            &super::super::frame::ip([198, 18, 0, 10], [198, 18, 0, 100]),
            &super::super::frame::tcp(1, 80),
            b"x",
        );
        let o6 = Outer::V6(ip6(DIR_IP6, rip6(1)));
        let o4 = Outer::V4(ip4([198, 18, 0, 2], [198, 18, 0, 11]));
        // IPv6 in IPv6, IPv4 in IPv6: next header 41 and 4.
        for (inner, next) in [(&inner6, 41), (&inner4, 4)] {
            let t = tunnel(TunKind::Ipip, &o6, inner, 0);
            let v = Ipv6Packet::new_checked(&t[..]).unwrap();
            assert_eq!(v.next_header(), next);
            assert_eq!(v.payload(), &inner[..]);
        }
        // IPv6 in IPv4: protocol 41.
        let t = tunnel(TunKind::Ipip, &o4, &inner6, 0);
        assert_eq!((t[9], &t[20..]), (41, &inner6[..]));
        // GRE and GUE name the inner family.
        let g = tunnel(TunKind::Gre, &o6, &inner6, 0);
        assert_eq!(&g[40..44], &[0, 0, 0x86, 0xdd]);
        let u = tunnel(
            TunKind::Gue {
                port: 6080,
                checksum: true,
            },
            &o6,
            &inner6,
            4242,
        );
        let v = Ipv6Packet::new_checked(&u[..]).unwrap();
        assert_eq!(v.next_header(), 17);
        assert_eq!(&v.payload()[8..12], &[0, 41, 0, 0]);
        let mut seg = v.payload().to_vec();
        let want = u16::from_be_bytes([seg[6], seg[7]]);
        seg[6..8].copy_from_slice(&[0, 0]);
        let c = transport_checksum6(DIR_IP6, rip6(1), 17, &seg);
        assert_eq!(crate::wire::checksum::udp_wire(c), want);
        // An Ethernet frame of type IPv6.
        let f = tcp6_frame(CIP6, 40000, 80, true, false, b"");
        assert_eq!(&f[12..14], &[0x86, 0xdd]);
        assert_eq!(&f[14 + 24..14 + 40], &VIP6.octets());
    }
}
