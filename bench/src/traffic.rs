//! The benchmark traffic: what the generator sends and how the sink reads
//! it back.
//!
//! Every frame is built from one template (Ethernet, IPv4 without options,
//! TCP or UDP) whose variable fields are zero, so that a frame's checksums
//! are the template's partial sums plus the sums of the fields written
//! into it (one's complement addition is linear): a frame costs a few
//! adds, however long it is. The variable fields are the client address
//! and port (the flow), the TCP flags (SYN for a new connection, ACK or
//! ACK+PSH on an established one) and a stamp: a 32-bit sequence number
//! and the low 48 bits of CLOCK_MONOTONIC in ns when the frame was
//! written. TCP carries the sequence number in its sequence field and the
//! time in the first 6 payload bytes (a 64-byte TCP frame has exactly 6);
//! UDP carries both in its first 10 payload bytes.
//!
//! The sink finds the stamp again behind whatever the forwarder did to the
//! frame: MAC rewrite (DR, reflector), address and port rewrite (NAT,
//! nftables DNAT) or an outer header (TUN: IPIP, GRE, GUE).

use std::net::Ipv4Addr;
use xvs_dataplane::testkit::frame;

/// Ethernet header length.
pub const ETH: usize = 14;
/// Offset of the L4 header (IPv4 header without options).
const L4: usize = ETH + 20;
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
    /// First client address; flows go up from it.
    pub cip_base: Ipv4Addr,
    /// The virtual address.
    pub vip: Ipv4Addr,
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
    /// Partial (unfolded) sums of the zeroed template: IPv4 header, L4.
    ip_sum: u64,
    l4_sum: u64,
    /// First client address.
    cip_base: u32,
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
    /// A template of `size` bytes (FCS included; at least 64) between
    /// the endpoints `e`.
    pub fn new(proto: Proto, est: TcpEstablished, size: usize, e: &Endpoints) -> Self {
        let Endpoints {
            src_mac,
            dst_mac,
            cip_base,
            vip,
            vport,
        } = *e;
        let len = size.max(64) - FCS;
        let header = match proto {
            Proto::Tcp => L4 + 20,
            Proto::Udp => L4 + 8,
        };
        let payload = vec![0u8; len - header];
        // TTL 64, DF, identification 0; TCP: no flags, window 65535.
        let ip = frame::ip(Ipv4Addr::UNSPECIFIED, vip);
        let l4 = match proto {
            Proto::Tcp => frame::tcp(0, vport).seq(0),
            Proto::Udp => frame::udp(0, vport),
        };
        let mut frame = frame::eth(src_mac, dst_mac, &frame::ip_packet(&ip, &l4, &payload));
        // Clear the header checksum fields, then sum the zeroed template.
        frame[ETH + 10] = 0;
        frame[ETH + 11] = 0;
        let csum = match proto {
            Proto::Tcp => L4 + 16,
            Proto::Udp => L4 + 6,
        };
        frame[csum] = 0;
        frame[csum + 1] = 0;
        let ip_sum = sum16(&frame[ETH..L4]);
        let l4_len = (len - L4) as u64;
        // Pseudo-header: addresses (source zero here), protocol, length.
        let l4_sum =
            sum16(&frame[ETH + 12..L4]) + u64::from(proto.number()) + l4_len + sum16(&frame[L4..]);
        Template {
            frame,
            proto,
            est_flags: match est {
                TcpEstablished::Ack => ACK,
                TcpEstablished::Data => ACK | PSH,
            },
            ip_sum,
            l4_sum,
            cip_base: u32::from(cip_base),
        }
    }

    /// The client address and port of flow `flow`.
    pub fn flow_addr(&self, flow: u64) -> (Ipv4Addr, u16) {
        let ip = self.cip_base.wrapping_add(((flow / PORTS) % ADDRS) as u32);
        (Ipv4Addr::from(ip), 1024 + (flow % PORTS) as u16)
    }

    /// Write `s` into `f` (a copy of the template) and fix both checksums.
    #[inline]
    pub fn stamp(&self, f: &mut [u8], s: Stamp) {
        let (cip, sport) = self.flow_addr(s.flow);
        let cip = cip.octets();
        f[ETH + 12..ETH + 16].copy_from_slice(&cip);
        f[L4..L4 + 2].copy_from_slice(&sport.to_be_bytes());
        let ts = (s.ts & TS_MASK).to_be_bytes();
        let seq = s.seq.to_be_bytes();
        let cip_sum = sum16(&cip);
        let mut l4 = self.l4_sum + cip_sum + u64::from(sport);
        match self.proto {
            Proto::Tcp => {
                let flags = if s.new_conn { SYN } else { self.est_flags };
                f[L4 + 4..L4 + 8].copy_from_slice(&seq);
                f[L4 + 13] = flags;
                f[L4 + 20..L4 + 26].copy_from_slice(&ts[2..]);
                l4 += u64::from(flags) + sum16(&seq) + sum16(&ts[2..]);
                let c = !fold(l4);
                f[L4 + 16..L4 + 18].copy_from_slice(&c.to_be_bytes());
            }
            Proto::Udp => {
                f[L4 + 8..L4 + 12].copy_from_slice(&seq);
                f[L4 + 12..L4 + 18].copy_from_slice(&ts[2..]);
                l4 += sum16(&seq) + sum16(&ts[2..]);
                let c = match !fold(l4) {
                    0 => 0xffff,
                    c => c,
                };
                f[L4 + 6..L4 + 8].copy_from_slice(&c.to_be_bytes());
            }
        }
        let ip = !fold(self.ip_sum + cip_sum);
        f[ETH + 10..ETH + 12].copy_from_slice(&ip.to_be_bytes());
    }
}

/// What the sink reads from a received frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// Destination MAC (which real server the forwarder picked).
    pub dst_mac: [u8; 6],
    /// Outermost IPv4 destination.
    pub dst_ip: Ipv4Addr,
    /// The frame's sequence number.
    pub seq: u32,
    /// The frame's 48-bit send time.
    pub ts48: u64,
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// Read the stamp of a received frame, looking through IPIP, GRE and GUE
/// (UDP to `gue_port`) encapsulation; `None` if it carries none.
pub fn read_stamp(f: &[u8], gue_port: u16) -> Option<Seen> {
    if f.len() < L4 || be16(f, 12)? != 0x0800 {
        return None;
    }
    let dst_mac: [u8; 6] = f[0..6].try_into().ok()?;
    let dst_ip = Ipv4Addr::new(f[30], f[31], f[32], f[33]);
    let mut ip = ETH;
    for _ in 0..3 {
        let v = *f.get(ip)?;
        if v >> 4 != 4 {
            return None;
        }
        let ihl = usize::from(v & 0x0f) * 4;
        let proto = *f.get(ip + 9)?;
        let l4 = ip + ihl;
        match proto {
            4 => ip = l4,
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
            cip_base: Ipv4Addr::new(198, 19, 0, 1),
            vip: Ipv4Addr::new(198, 18, 0, 100),
            vport: 80,
        }
    }

    fn check(proto: Proto, size: usize, s: Stamp) {
        let t = Template::new(proto, TcpEstablished::Data, size, &ends());
        let mut f = t.frame.clone();
        assert_eq!(f.len(), size - FCS);
        t.stamp(&mut f, s);
        let p = SlicedPacket::from_ethernet(&f).unwrap();
        let Some(NetSlice::Ipv4(ip)) = &p.net else {
            panic!("not ipv4")
        };
        let h = ip.header().to_header();
        assert_eq!(h.header_checksum, h.calc_header_checksum());
        let (cip, sport) = t.flow_addr(s.flow);
        assert_eq!(Ipv4Addr::from(h.source), cip);
        match p.transport.unwrap() {
            TransportSlice::Tcp(tcp) => {
                let hdr = tcp.to_header();
                assert_eq!(hdr.source_port, sport);
                assert_eq!(hdr.syn, s.new_conn);
                assert_eq!(
                    hdr.checksum,
                    hdr.calc_checksum_ipv4(&h, tcp.payload()).unwrap()
                );
            }
            TransportSlice::Udp(udp) => {
                let hdr = udp.to_header();
                assert_eq!(hdr.source_port, sport);
                assert_eq!(
                    hdr.checksum,
                    hdr.calc_checksum_ipv4(&h, udp.payload()).unwrap()
                );
            }
            _ => panic!("no transport"),
        }
        let seen = read_stamp(&f, 6080).unwrap();
        assert_eq!(seen.seq, s.seq);
        assert_eq!(seen.ts48, s.ts & TS_MASK);
    }

    #[test]
    fn stamped_frames_have_valid_checksums_and_read_back() {
        for proto in [Proto::Tcp, Proto::Udp] {
            for size in SIZES {
                for (flow, new_conn) in [(0, false), (7, true), (123_456_789, false)] {
                    check(
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
        assert_eq!(s.dst_ip, Ipv4Addr::new(198, 18, 0, 11));
        // GRE: outer IPv4 (protocol 47) + 4-byte GRE header.
        let s = read_stamp(&tunnelled(TunKind::Gre, [198, 18, 0, 13]), 6080).unwrap();
        assert_eq!((s.seq, s.ts48), (42, 99));
        assert_eq!(s.dst_ip, Ipv4Addr::new(198, 18, 0, 13));
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
