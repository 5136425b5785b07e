//! The benchmark traffic: what the generator sends and how the sink reads
//! it back.
//!
//! Every frame is built from one template (Ethernet, IPv4 without options
//! or IPv6 without extension headers, TCP or UDP) whose variable fields are zero, so that a frame's checksums
//! are the template's partial sums plus the sums of the fields written
//! into it (one's complement addition is linear): a frame costs a few
//! adds, however long it is. The variable fields are the client address
//! and port (the flow), the TCP flags (SYN for a new connection, ACK or
//! ACK+PSH on an established one) and a stamp: a 32-bit sequence number
//! and the low 48 bits of CLOCK_MONOTONIC in ns when the frame was
//! written. TCP carries the sequence number in its sequence field and the
//! time in the first 6 payload bytes (a 64-byte TCP frame has exactly 6);
//! UDP carries both in its first 10 payload bytes. IPv6 has no header
//! checksum and a 40-byte header, so its smallest frames are larger
//! ([`min_size`]).
//!
//! The sink finds the stamp again behind whatever the forwarder did to the
//! frame: MAC rewrite (DR, reflector), address and port rewrite (NAT,
//! nftables DNAT) or an outer header (TUN: IPIP, GRE, GUE).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use xvs_dataplane::testkit::frame;

/// Ethernet header length.
pub const ETH: usize = 14;
/// Offset of the L4 header (IPv4 header without options).
const L4: usize = ETH + 20;
/// Offset of the L4 header behind an IPv6 header without extensions.
const L4_6: usize = ETH + 40;
/// Bytes of the stamp after the L4 header: TCP 6 (time; the sequence
/// number is in the header), UDP 10.
fn stamp_len(proto: Proto) -> usize {
    match proto {
        Proto::Tcp => 6,
        Proto::Udp => 10,
    }
}

/// The smallest frame (FCS included) the generator builds for `proto`
/// over IPv6 (`v6`) or IPv4: 64 bytes, or the headers and the stamp when
/// they need more (IPv6: UDP 76, TCP 84).
pub fn min_size(proto: Proto, v6: bool) -> usize {
    let l4 = if v6 { L4_6 } else { L4 };
    let header = match proto {
        Proto::Tcp => 20,
        Proto::Udp => 8,
    };
    (l4 + header + stamp_len(proto) + FCS).max(64)
}
/// Bytes a frame's FCS adds on the wire (counted in `size`, not sent).
pub const FCS: usize = 4;
/// Frame sizes of RFC 2544 for Ethernet (FCS included) plus 1280.
pub const SIZES: [usize; 7] = [64, 128, 256, 512, 1024, 1280, 1518];
/// Client ports used per client address; flow `i` is port
/// `1024 + i % PORTS` of client address `cip_base + (i / PORTS) % ADDRS`.
pub const PORTS: u64 = 60_000;
/// Client addresses cycled through (from 198.19.0.1 they stay inside
/// 198.19.0.0/16).
pub const ADDRS: u64 = 65_000;
/// TCP flags.
const SYN: u8 = 0x02;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;
/// The stamp's time field: the low 48 bits of the clock.
pub const TS_MASK: u64 = (1 << 48) - 1;

/// Transport protocol of the traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// TCP: SYNs open new connections, established flows send ACK or data.
    Tcp,
    /// UDP datagrams.
    Udp,
}

impl Proto {
    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
        }
    }

    /// The name as ipvsadm's service option spells it (`-t`/`-u`).
    pub fn adm_flag(self) -> &'static str {
        match self {
            Proto::Tcp => "-t",
            Proto::Udp => "-u",
        }
    }

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// What an established TCP flow sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TcpEstablished {
    /// Pure ACKs (the payload holds only the stamp).
    Ack,
    /// ACK+PSH segments carrying data.
    Data,
}

/// The CLOCK_MONOTONIC time in ns (the same clock in every process of the
/// machine, so a stamp written by the generator means the same to a sink
/// in another process).
#[inline]
pub fn monotonic_ns() -> u64 {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC) {
        Ok(ts) => ts.tv_sec() as u64 * 1_000_000_000 + ts.tv_nsec() as u64,
        Err(_) => 0,
    }
}

/// One's complement sum of `b` as big-endian 16-bit words (an odd last
/// byte is padded with zero), not folded.
fn sum16(b: &[u8]) -> u64 {
    let mut s = 0u64;
    let mut it = b.chunks_exact(2);
    for w in &mut it {
        s += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [x] = it.remainder() {
        s += u64::from(*x) << 8;
    }
    s
}

fn fold(mut s: u64) -> u16 {
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// Who talks to whom: the generator's and the forwarder's MACs, the
/// first client address and the virtual service.
#[derive(Debug, Clone, Copy)]
pub struct Endpoints {
    /// Source MAC (the generator's interface).
    pub src_mac: [u8; 6],
    /// Destination MAC (the forwarder's interface).
    pub dst_mac: [u8; 6],
    /// First client address; flows go up from it. Of the VIP's family.
    pub cip_base: IpAddr,
    /// The virtual address (IPv4 or IPv6).
    pub vip: IpAddr,
    /// The virtual port.
    pub vport: u16,
}

/// A frame template plus everything needed to stamp copies of it.
#[derive(Debug, Clone)]
pub struct Template {
    /// The frame with every variable field zero and checksums over it.
    pub frame: Vec<u8>,
    /// The protocol.
    pub proto: Proto,
    /// Flags of an established TCP segment.
    est_flags: u8,
    /// Partial (unfolded) sums of the zeroed template: IPv4 header (IPv6:
    /// unused), L4 with its pseudo-header.
    ip_sum: u64,
    l4_sum: u64,
    /// First client address (an IPv4 one in the low 32 bits).
    cip_base: u128,
    /// IPv6 frames (else IPv4).
    v6: bool,
    /// Offset of the L4 header.
    l4: usize,
}

/// A frame's variable fields.
#[derive(Debug, Clone, Copy)]
pub struct Stamp {
    /// Flow number (client address and port).
    pub flow: u64,
    /// A SYN opening a connection (TCP) instead of an established segment.
    pub new_conn: bool,
    /// Sequence number of the frame in its run.
    pub seq: u32,
    /// CLOCK_MONOTONIC ns when written.
    pub ts: u64,
}

impl Template {
    /// A template of `size` bytes (FCS included; at least
    /// [`min_size`]) between the endpoints `e`; IPv6 when the VIP is.
    pub fn new(proto: Proto, est: TcpEstablished, size: usize, e: &Endpoints) -> Self {
        let v6 = e.vip.is_ipv6();
        let l4_at = if v6 { L4_6 } else { L4 };
        let len = size.max(min_size(proto, v6)) - FCS;
        let header = match proto {
            Proto::Tcp => 20,
            Proto::Udp => 8,
        };
        // The IPv4 packet's L4 bytes serve both families: only the
        // checksum depends on the addresses, and it is cleared below.
        let payload = vec![0u8; len - l4_at - header];
        let l4 = match proto {
            Proto::Tcp => frame::tcp(0, e.vport).seq(0),
            Proto::Udp => frame::udp(0, e.vport),
        };
        let vip4 = match e.vip {
            IpAddr::V4(a) => a,
            IpAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
        };
        // TTL 64, DF, identification 0; TCP: no flags, window 65535.
        let ip4 = frame::ip_packet(&frame::ip(Ipv4Addr::UNSPECIFIED, vip4), &l4, &payload);
        let mut frame = match e.vip {
            IpAddr::V4(_) => frame::eth(e.src_mac, e.dst_mac, &ip4),
            IpAddr::V6(vip) => {
                let seg = &ip4[20..];
                let mut p = Vec::with_capacity(40 + seg.len());
                // Version 6, traffic class 0, flow label 0; hop limit 64;
                // source zero (stamped per flow).
                p.extend_from_slice(&[0x60, 0, 0, 0]);
                p.extend_from_slice(&(seg.len() as u16).to_be_bytes());
                p.extend_from_slice(&[proto.number(), 64]);
                p.extend_from_slice(&Ipv6Addr::UNSPECIFIED.octets());
                p.extend_from_slice(&vip.octets());
                p.extend_from_slice(seg);
                frame::eth_typed(e.src_mac, e.dst_mac, 0x86dd, &p)
            }
        };
        // Clear the checksum fields, then sum the zeroed template.
        let csum = match proto {
            Proto::Tcp => l4_at + 16,
            Proto::Udp => l4_at + 6,
        };
        frame[csum] = 0;
        frame[csum + 1] = 0;
        let l4_len = (len - l4_at) as u64;
        // Pseudo-header: addresses (source zero here), protocol, length.
        let (ip_sum, addrs) = if v6 {
            (0, sum16(&frame[ETH + 8..L4_6]))
        } else {
            frame[ETH + 10] = 0;
            frame[ETH + 11] = 0;
            (sum16(&frame[ETH..L4]), sum16(&frame[ETH + 12..L4]))
        };
        let l4_sum = addrs + u64::from(proto.number()) + l4_len + sum16(&frame[l4_at..]);
        let cip_base = match e.cip_base {
            IpAddr::V4(a) => u128::from(u32::from(a)),
            IpAddr::V6(a) => u128::from(a),
        };
        Template {
            frame,
            proto,
            est_flags: match est {
                TcpEstablished::Ack => ACK,
                TcpEstablished::Data => ACK | PSH,
            },
            ip_sum,
            l4_sum,
            cip_base,
            v6,
            l4: l4_at,
        }
    }

    /// The client address and port of flow `flow`.
    pub fn flow_addr(&self, flow: u64) -> (IpAddr, u16) {
        let n = (flow / PORTS) % ADDRS;
        let port = 1024 + (flow % PORTS) as u16;
        if self.v6 {
            (
                IpAddr::V6(self.cip_base.wrapping_add(u128::from(n)).into()),
                port,
            )
        } else {
            let ip = (self.cip_base as u32).wrapping_add(n as u32);
            (IpAddr::V4(ip.into()), port)
        }
    }

    /// Write `s` into `f` (a copy of the template) and fix the checksums.
    #[inline]
    pub fn stamp(&self, f: &mut [u8], s: Stamp) {
        let (cip, sport) = self.flow_addr(s.flow);
        let cip_sum = match cip {
            IpAddr::V4(a) => {
                let o = a.octets();
                f[ETH + 12..ETH + 16].copy_from_slice(&o);
                sum16(&o)
            }
            IpAddr::V6(a) => {
                let o = a.octets();
                f[ETH + 8..ETH + 24].copy_from_slice(&o);
                sum16(&o)
            }
        };
        let l4at = self.l4;
        f[l4at..l4at + 2].copy_from_slice(&sport.to_be_bytes());
        let ts = (s.ts & TS_MASK).to_be_bytes();
        let seq = s.seq.to_be_bytes();
        let mut l4 = self.l4_sum + cip_sum + u64::from(sport);
        match self.proto {
            Proto::Tcp => {
                let flags = if s.new_conn { SYN } else { self.est_flags };
                f[l4at + 4..l4at + 8].copy_from_slice(&seq);
                f[l4at + 13] = flags;
                f[l4at + 20..l4at + 26].copy_from_slice(&ts[2..]);
                l4 += u64::from(flags) + sum16(&seq) + sum16(&ts[2..]);
                let c = !fold(l4);
                f[l4at + 16..l4at + 18].copy_from_slice(&c.to_be_bytes());
            }
            Proto::Udp => {
                f[l4at + 8..l4at + 12].copy_from_slice(&seq);
                f[l4at + 12..l4at + 18].copy_from_slice(&ts[2..]);
                l4 += sum16(&seq) + sum16(&ts[2..]);
                let c = match !fold(l4) {
                    0 => 0xffff,
                    c => c,
                };
                f[l4at + 6..l4at + 8].copy_from_slice(&c.to_be_bytes());
            }
        }
        if !self.v6 {
            let ip = !fold(self.ip_sum + cip_sum);
            f[ETH + 10..ETH + 12].copy_from_slice(&ip.to_be_bytes());
        }
    }
}

/// What the sink reads from a received frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// Destination MAC (which real server the forwarder picked).
    pub dst_mac: [u8; 6],
    /// Outermost IP destination.
    pub dst_ip: IpAddr,
    /// The frame's sequence number.
    pub seq: u32,
    /// The frame's 48-bit send time.
    pub ts48: u64,
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// Read the stamp of a received frame (IPv4 or IPv6 without extension
/// headers), looking through IPIP, IPv6-in-IP, GRE and GUE (UDP to
/// `gue_port`) encapsulation; `None` if it carries none.
pub fn read_stamp(f: &[u8], gue_port: u16) -> Option<Seen> {
    let dst_mac: [u8; 6] = f.get(0..6)?.try_into().ok()?;
    let dst_ip = match be16(f, 12)? {
        0x0800 if f.len() >= L4 => IpAddr::V4(Ipv4Addr::new(f[30], f[31], f[32], f[33])),
        0x86dd if f.len() >= L4_6 => {
            let a: [u8; 16] = f[ETH + 24..L4_6].try_into().ok()?;
            IpAddr::V6(a.into())
        }
        _ => return None,
    };
    let mut ip = ETH;
    for _ in 0..3 {
        let v = *f.get(ip)?;
        let (proto, l4) = match v >> 4 {
            4 => (*f.get(ip + 9)?, ip + usize::from(v & 0x0f) * 4),
            6 => (*f.get(ip + 6)?, ip + 40),
            _ => return None,
        };
        match proto {
            4 | 41 => ip = l4,
            47 => ip = l4 + 4,
            17 if be16(f, l4 + 2)? == gue_port => ip = l4 + 8 + 4,
            6 => {
                let seq = u32::from_be_bytes(f.get(l4 + 4..l4 + 8)?.try_into().ok()?);
                let doff = usize::from(*f.get(l4 + 12)? >> 4) * 4;
                let ts = f.get(l4 + doff..l4 + doff + 6)?;
                return Some(Seen {
                    dst_mac,
                    dst_ip,
                    seq,
                    ts48: ts48(ts),
                });
            }
            17 => {
                let p = f.get(l4 + 8..l4 + 18)?;
                return Some(Seen {
                    dst_mac,
                    dst_ip,
                    seq: u32::from_be_bytes(p[0..4].try_into().ok()?),
                    ts48: ts48(&p[4..10]),
                });
            }
            _ => return None,
        }
    }
    None
}

fn ts48(b: &[u8]) -> u64 {
    b.iter().fold(0u64, |a, &x| (a << 8) | u64::from(x))
}

/// Format a MAC as `aa:bb:cc:dd:ee:ff`.
pub fn mac_str(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};
    use xvs_dataplane::xmit::tun::TunKind;

    fn ends() -> Endpoints {
        Endpoints {
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            cip_base: Ipv4Addr::new(198, 19, 0, 1).into(),
            vip: Ipv4Addr::new(198, 18, 0, 100).into(),
            vport: 80,
        }
    }

    fn ends6() -> Endpoints {
        Endpoints {
            cip_base: "2001:2:0:1::1".parse().unwrap(),
            vip: "2001:2::100".parse().unwrap(),
            ..ends()
        }
    }

    fn check(e: &Endpoints, proto: Proto, size: usize, s: Stamp) {
        let t = Template::new(proto, TcpEstablished::Data, size, e);
        let mut f = t.frame.clone();
        let v6 = e.vip.is_ipv6();
        assert_eq!(f.len(), size.max(min_size(proto, v6)) - FCS);
        t.stamp(&mut f, s);
        let p = SlicedPacket::from_ethernet(&f).unwrap();
        let (cip, sport) = t.flow_addr(s.flow);
        // The transport checksum over the family's pseudo-header.
        type Sums = (Box<dyn Fn(&[u8]) -> u16>, Box<dyn Fn(&[u8]) -> u16>);
        let (tcp_sum, udp_sum): Sums = match &p.net {
            Some(NetSlice::Ipv4(ip)) => {
                assert!(!v6);
                let h = ip.header().to_header();
                assert_eq!(h.header_checksum, h.calc_header_checksum());
                assert_eq!(IpAddr::from(h.source), cip);
                let h2 = h.clone();
                (
                    Box::new(move |b| {
                        let t = etherparse::TcpHeader::from_slice(b).unwrap().0;
                        t.calc_checksum_ipv4(&h, &b[t.header_len()..]).unwrap()
                    }),
                    Box::new(move |b| {
                        let u = etherparse::UdpHeader::from_slice(b).unwrap().0;
                        u.calc_checksum_ipv4(&h2, &b[8..]).unwrap()
                    }),
                )
            }
            Some(NetSlice::Ipv6(ip)) => {
                assert!(v6);
                let h = ip.header().to_header();
                assert_eq!(IpAddr::from(h.source), cip);
                assert_eq!(IpAddr::from(h.destination), e.vip);
                assert_eq!(usize::from(h.payload_length), f.len() - ETH - 40);
                let h2 = h.clone();
                (
                    Box::new(move |b| {
                        let t = etherparse::TcpHeader::from_slice(b).unwrap().0;
                        t.calc_checksum_ipv6(&h, &b[t.header_len()..]).unwrap()
                    }),
                    Box::new(move |b| {
                        let u = etherparse::UdpHeader::from_slice(b).unwrap().0;
                        u.calc_checksum_ipv6(&h2, &b[8..]).unwrap()
                    }),
                )
            }
            _ => panic!("no IP"),
        };
        let l4 = &f[ETH + if v6 { 40 } else { 20 }..];
        match p.transport.unwrap() {
            TransportSlice::Tcp(tcp) => {
                let hdr = tcp.to_header();
                assert_eq!(hdr.source_port, sport);
                assert_eq!(hdr.syn, s.new_conn);
                assert_eq!(hdr.checksum, tcp_sum(l4));
            }
            TransportSlice::Udp(udp) => {
                let hdr = udp.to_header();
                assert_eq!(hdr.source_port, sport);
                assert_eq!(hdr.checksum, udp_sum(l4));
            }
            _ => panic!("no transport"),
        }
        let seen = read_stamp(&f, 6080).unwrap();
        assert_eq!(seen.seq, s.seq);
        assert_eq!(seen.ts48, s.ts & TS_MASK);
        assert_eq!(seen.dst_ip, e.vip);
    }

    #[test]
    fn smallest_ipv6_frames_hold_headers_and_stamp() {
        assert_eq!(min_size(Proto::Udp, false), 64);
        assert_eq!(min_size(Proto::Tcp, false), 64);
        assert_eq!(min_size(Proto::Udp, true), 76);
        assert_eq!(min_size(Proto::Tcp, true), 84);
    }

    #[test]
    fn stamped_frames_have_valid_checksums_and_read_back() {
        for e in [ends(), ends6()] {
            for proto in [Proto::Tcp, Proto::Udp] {
                for size in SIZES {
                    for (flow, new_conn) in [(0, false), (7, true), (123_456_789, false)] {
                        check(
                            &e,
                            proto,
                            size,
                            Stamp {
                                flow,
                                new_conn,
                                seq: 0xdead_beef ^ flow as u32,
                                ts: 0x1234_5678_9abc_def0 + flow,
                            },
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn stamp_is_found_inside_gue_and_ipip() {
        let t = Template::new(Proto::Udp, TcpEstablished::Ack, 64, &ends());
        let mut inner = t.frame.clone();
        t.stamp(
            &mut inner,
            Stamp {
                flow: 1,
                new_conn: false,
                seq: 42,
                ts: 99,
            },
        );
        let e = ends();
        let tunnelled = |kind: TunKind, rip: [u8; 4]| {
            let outer = frame::ip([198, 18, 0, 2], rip);
            let pkt = frame::encapsulated(kind, &outer, &inner[ETH..], 0xc000);
            frame::eth(e.src_mac, e.dst_mac, &pkt)
        };
        // IPIP: outer IPv4 (protocol 4) in front of the inner IPv4 header.
        let s = read_stamp(&tunnelled(TunKind::Ipip, [198, 18, 0, 11]), 6080).unwrap();
        assert_eq!((s.seq, s.ts48), (42, 99));
        assert_eq!(s.dst_ip, IpAddr::from(Ipv4Addr::new(198, 18, 0, 11)));
        // IPv6 inside GUE over IPv4: the inner IPv6 header is walked too.
        let t6 = Template::new(Proto::Udp, TcpEstablished::Ack, 64, &ends6());
        let mut in6 = t6.frame.clone();
        t6.stamp(
            &mut in6,
            Stamp {
                flow: 3,
                new_conn: false,
                seq: 7,
                ts: 5,
            },
        );
        let outer = frame::ip([198, 18, 0, 2], [198, 18, 0, 12]);
        let pkt = frame::encapsulated(
            TunKind::Gue {
                port: 6080,
                checksum: true,
            },
            &outer,
            &in6[ETH..],
            0xc000,
        );
        let s = read_stamp(&frame::eth(e.src_mac, e.dst_mac, &pkt), 6080).unwrap();
        assert_eq!((s.seq, s.ts48), (7, 5));
        // GRE: outer IPv4 (protocol 47) + 4-byte GRE header.
        let s = read_stamp(&tunnelled(TunKind::Gre, [198, 18, 0, 13]), 6080).unwrap();
        assert_eq!((s.seq, s.ts48), (42, 99));
        assert_eq!(s.dst_ip, IpAddr::from(Ipv4Addr::new(198, 18, 0, 13)));
        // GUE: outer IPv4 (UDP) + UDP to 6080 + 4-byte GUE header.
        let gue = TunKind::Gue {
            port: 6080,
            checksum: true,
        };
        let s = read_stamp(&tunnelled(gue, [198, 18, 0, 12]), 6080).unwrap();
        assert_eq!((s.seq, s.ts48), (42, 99));
        // The same UDP to another port is no GUE: its payload is read as
        // the stamp, which is not the inner one.
        let s = read_stamp(&tunnelled(gue, [198, 18, 0, 12]), 6081).unwrap();
        assert_ne!((s.seq, s.ts48), (42, 99));
    }
}
