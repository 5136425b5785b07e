//! Frame builders for tests and benches. Expected frames must not be built
//! by the code they check, so every header here is written by etherparse
//! from the fields a frame must carry (checksums included), and a test
//! states its expectation as "this frame, with these fields changed".

use crate::xmit::tun::TunKind;
use etherparse::{
    EtherType, Ethernet2Header, IpDscp, IpEcn, IpHeaders, IpNumber, Ipv4Extensions, Ipv4Header,
    Ipv4Options, PacketBuilder, TcpHeader,
};
use std::fmt::Write as _;
use std::net::Ipv4Addr;

/// An Ethernet address.
pub type Mac = [u8; 6];

/// TCP flag FIN.
pub const FIN: u8 = 0x01;
/// TCP flag SYN.
pub const SYN: u8 = 0x02;
/// TCP flag RST.
pub const RST: u8 = 0x04;
/// TCP flag PSH.
pub const PSH: u8 = 0x08;
/// TCP flag ACK.
pub const ACK: u8 = 0x10;

/// The fields of an IPv4 header to build (length, protocol and checksum
/// follow from what it carries).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ip {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Time to live.
    pub ttl: u8,
    /// Type of service (DSCP and ECN).
    pub tos: u8,
    /// Identification.
    pub ident: u16,
    /// Don't fragment.
    pub df: bool,
    /// Options (a multiple of 4 bytes, at most 40).
    pub options: Vec<u8>,
}

/// An IPv4 header `src` → `dst`: TTL 64, TOS 0, ident 0, DF set, no
/// options.
pub fn ip(src: impl Into<Ipv4Addr>, dst: impl Into<Ipv4Addr>) -> Ip {
    Ip {
        src: src.into(),
        dst: dst.into(),
        ttl: 64,
        tos: 0,
        ident: 0,
        df: true,
        options: Vec::new(),
    }
}

impl Ip {
    /// The same header changed by `f`.
    pub fn with(mut self, f: impl FnOnce(&mut Ip)) -> Ip {
        f(&mut self);
        self
    }

    /// Length of the header in bytes.
    pub fn header_len(&self) -> usize {
        20 + self.options.len()
    }

    fn header(&self) -> Ipv4Header {
        let mut h = Ipv4Header::new(
            0,
            self.ttl,
            IpNumber::TCP,
            self.src.octets(),
            self.dst.octets(),
        )
        .expect("valid header");
        h.dscp = IpDscp::try_new(self.tos >> 2).expect("6 bits");
        h.ecn = IpEcn::try_new(self.tos & 3).expect("2 bits");
        h.identification = self.ident;
        h.dont_fragment = self.df;
        h.options = Ipv4Options::try_from(&self.options[..]).expect("options multiple of 4");
        h
    }

    fn builder(&self) -> etherparse::PacketBuilderStep<IpHeaders> {
        PacketBuilder::ip(IpHeaders::Ipv4(self.header(), Ipv4Extensions::default()))
    }
}

/// The fields of a TCP header to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tcp {
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number.
    pub ack: u32,
    /// Flags ([`SYN`], [`ACK`], ...).
    pub flags: u8,
    /// Window.
    pub window: u16,
    /// Options (a multiple of 4 bytes, at most 40).
    pub options: Vec<u8>,
}

/// The fields of a UDP header to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Udp {
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// Send without a checksum (field 0).
    pub no_csum: bool,
}

/// The transport part of a packet to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum L4 {
    /// TCP.
    Tcp(Tcp),
    /// UDP.
    Udp(Udp),
}

/// A TCP header `sport` → `dport`: sequence 1000, no flags, window 65535.
pub fn tcp(sport: u16, dport: u16) -> L4 {
    L4::Tcp(Tcp {
        sport,
        dport,
        seq: 1000,
        ack: 0,
        flags: 0,
        window: 65535,
        options: Vec::new(),
    })
}

/// A UDP header `sport` → `dport` with its checksum.
pub fn udp(sport: u16, dport: u16) -> L4 {
    L4::Udp(Udp {
        sport,
        dport,
        no_csum: false,
    })
}

impl L4 {
    fn tcp_mut(&mut self) -> &mut Tcp {
        match self {
            L4::Tcp(t) => t,
            L4::Udp(_) => panic!("a TCP field set on a UDP header"),
        }
    }

    /// TCP: add `flags` to the flags.
    pub fn flags(mut self, flags: u8) -> L4 {
        self.tcp_mut().flags |= flags;
        self
    }

    /// TCP: set SYN.
    pub fn syn(self) -> L4 {
        self.flags(SYN)
    }

    /// TCP: set ACK, acknowledging `n`.
    pub fn ack(mut self, n: u32) -> L4 {
        self.tcp_mut().ack = n;
        self.flags(ACK)
    }

    /// TCP: set FIN.
    pub fn fin(self) -> L4 {
        self.flags(FIN)
    }

    /// TCP: set RST.
    pub fn rst(self) -> L4 {
        self.flags(RST)
    }

    /// TCP: sequence number `n`.
    pub fn seq(mut self, n: u32) -> L4 {
        self.tcp_mut().seq = n;
        self
    }

    /// TCP: window `n`.
    pub fn window(mut self, n: u16) -> L4 {
        self.tcp_mut().window = n;
        self
    }

    /// TCP: options `o` (a multiple of 4 bytes, at most 40).
    pub fn options(mut self, o: Vec<u8>) -> L4 {
        self.tcp_mut().options = o;
        self
    }

    /// UDP: send without a checksum (field 0).
    pub fn no_csum(mut self) -> L4 {
        match &mut self {
            L4::Udp(u) => u.no_csum = true,
            L4::Tcp(_) => panic!("a UDP field set on a TCP header"),
        }
        self
    }

    /// The same header with ports `s` → `d`.
    pub fn ports(mut self, s: u16, d: u16) -> L4 {
        match &mut self {
            L4::Tcp(Tcp { sport, dport, .. }) | L4::Udp(Udp { sport, dport, .. }) => {
                *sport = s;
                *dport = d;
            }
        }
        self
    }

    /// Source port.
    pub fn sport(&self) -> u16 {
        match self {
            L4::Tcp(Tcp { sport, .. }) | L4::Udp(Udp { sport, .. }) => *sport,
        }
    }

    /// Destination port.
    pub fn dport(&self) -> u16 {
        match self {
            L4::Tcp(Tcp { dport, .. }) | L4::Udp(Udp { dport, .. }) => *dport,
        }
    }

    /// IP protocol number.
    pub fn proto(&self) -> u8 {
        match self {
            L4::Tcp(_) => 6,
            L4::Udp(_) => 17,
        }
    }
}

/// An IPv4 packet (no Ethernet header) carrying `l4` and `payload`, every
/// checksum valid.
pub fn ip_packet(ip: &Ip, l4: &L4, payload: &[u8]) -> Vec<u8> {
    let b = ip.builder();
    let mut out = Vec::with_capacity(ip.header_len() + 60 + payload.len());
    match l4 {
        L4::Tcp(t) => {
            let mut h = TcpHeader::new(t.sport, t.dport, t.seq, t.window);
            h.fin = t.flags & FIN != 0;
            h.syn = t.flags & SYN != 0;
            h.rst = t.flags & RST != 0;
            h.psh = t.flags & PSH != 0;
            h.ack = t.flags & ACK != 0;
            h.acknowledgment_number = t.ack;
            h.set_options_raw(&t.options).expect("tcp options");
            b.tcp_header(h).write(&mut out, payload).expect("build");
        }
        L4::Udp(u) => {
            b.udp(u.sport, u.dport)
                .write(&mut out, payload)
                .expect("build");
            if u.no_csum {
                let at = ip.header_len() + 6;
                out[at..at + 2].copy_from_slice(&[0, 0]);
            }
        }
    }
    out
}

/// An IPv4 packet carrying `payload` as protocol `proto`.
pub fn ip_raw(ip: &Ip, proto: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ip.header_len() + payload.len());
    ip.builder()
        .write(&mut out, IpNumber(proto), payload)
        .expect("build");
    out
}

/// An IPv4 packet carrying an ICMP message of type `t`, code `code`, the
/// four bytes after the checksum `rest` and then `data` (checksum valid).
pub fn icmp_packet(ip: &Ip, t: u8, code: u8, rest: [u8; 4], data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ip.header_len() + 8 + data.len());
    ip.builder()
        .icmpv4_raw(t, code, rest)
        .write(&mut out, data)
        .expect("build");
    out
}

/// What an ICMP error quotes of `datagram`: its IP header and the first
/// `extra` bytes after it (all of it when shorter).
pub fn quote(datagram: &[u8], extra: usize) -> Vec<u8> {
    let ihl = usize::from(datagram[0] & 0x0f) * 4;
    datagram[..ihl.saturating_add(extra).min(datagram.len())].to_vec()
}

/// The "rest of header" of a fragmentation-needed error with next-hop MTU
/// `mtu`.
pub fn mtu_rest(mtu: u16) -> [u8; 4] {
    let b = mtu.to_be_bytes();
    [0, 0, b[0], b[1]]
}

/// The IPv4 packet a tunnel of `kind` makes of the IPv4 packet `inner`
/// under the outer header `outer`; `gue_sport` is the outer UDP source port
/// (GUE only).
pub fn encapsulated(kind: TunKind, outer: &Ip, inner: &[u8], gue_sport: u16) -> Vec<u8> {
    match kind {
        TunKind::Ipip => ip_raw(outer, 4, inner),
        TunKind::Gre => {
            let mut p = vec![0, 0, 0x08, 0x00];
            p.extend_from_slice(inner);
            ip_raw(outer, 47, &p)
        }
        TunKind::Gue { port, checksum } => {
            // Version 0, no flags, protocol 4 (IPv4).
            let mut p = vec![0, 4, 0, 0];
            p.extend_from_slice(inner);
            let l4 = L4::Udp(Udp {
                sport: gue_sport,
                dport: port,
                no_csum: !checksum,
            });
            ip_packet(outer, &l4, &p)
        }
    }
}

/// An Ethernet frame `src` → `dst` around an IPv4 packet.
pub fn eth(src: Mac, dst: Mac, pkt: &[u8]) -> Vec<u8> {
    eth_typed(src, dst, 0x0800, pkt)
}

/// An Ethernet frame `src` → `dst` of type `ethertype`.
pub fn eth_typed(src: Mac, dst: Mac, ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = Ethernet2Header {
        source: src,
        destination: dst,
        ether_type: EtherType(ethertype),
    }
    .to_bytes()
    .to_vec();
    v.extend_from_slice(payload);
    v
}

/// `b` in hex, 16 bytes a line, each line headed by its offset.
pub fn hex(b: &[u8]) -> String {
    let mut s = String::new();
    for (i, line) in b.chunks(16).enumerate() {
        let _ = write!(s, "{:04x}:", i * 16);
        for x in line {
            let _ = write!(s, " {x:02x}");
        }
        s.push('\n');
    }
    s
}

/// None when `got` equals `want`; else a description of the difference:
/// the lengths, the first differing byte, and both frames in hex with the
/// differing lines marked.
pub fn frame_diff(got: &[u8], want: &[u8]) -> Option<String> {
    if got == want {
        return None;
    }
    let first = got
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    let mut s = format!(
        "frames differ: lengths {} (got) vs {} (want), first difference at byte {first} (0x{first:x})\n",
        got.len(),
        want.len()
    );
    let lines = got.len().max(want.len()).div_ceil(16);
    for i in 0..lines {
        let row = |b: &[u8]| {
            b.get(i * 16..((i + 1) * 16).min(b.len()))
                .unwrap_or(&[])
                .to_vec()
        };
        let (g, w) = (row(got), row(want));
        let mark = if g == w { ' ' } else { '!' };
        let fmt = |r: &[u8]| {
            r.iter()
                .map(|x| format!("{x:02x}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let _ = writeln!(s, "{mark} {:04x} got : {}", i * 16, fmt(&g));
        if g != w {
            let _ = writeln!(s, "{mark} {:04x} want: {}", i * 16, fmt(&w));
        }
    }
    Some(s)
}

/// Panic with `desc` and a hex diff unless `got` equals `want`.
#[track_caller]
pub fn assert_frame(desc: &str, got: &[u8], want: &[u8]) {
    if let Some(d) = frame_diff(got, want) {
        panic!("{desc}: {d}");
    }
}
