//! Table-driven frame tests of the NAT and tunnel rewrites (description,
//! input frame, expected result, expected output frame byte for byte), and
//! seeded property tests that every incremental checksum update equals a
//! full recompute.
//!
//! Expected frames are built independently of the code under test, by the
//! shared builders of `testkit::frame` (etherparse underneath), from the
//! fields the output must carry.

use std::net::Ipv4Addr;
use xvs_dataplane::testkit::frame::{
    self, assert_frame, eth, frame_diff, icmp_packet, ip_packet, ip_raw, mtu_rest, quote, udp, Ip,
    Mac, Udp, L4,
};
use xvs_dataplane::wire::checksum::{self, Delta};
use xvs_dataplane::wire::icmp::{IcmpPacket, QuotedFlow};
use xvs_dataplane::wire::ipv4::Ipv4Packet;
use xvs_dataplane::wire::Error as WireError;
use xvs_dataplane::xmit::nat::{self, IcmpErrorInfo, NatError};
use xvs_dataplane::xmit::tun::{self, TunError, TunKind, TunOutcome, Tunnel};

const CMAC: Mac = [0x02, 0, 0, 0, 0x01, 0x0a];
const DMAC_C: Mac = [0x02, 0, 0, 0, 0x01, 0x02];
const DMAC_S: Mac = [0x02, 0, 0, 0, 0x02, 0x01];
const RSMAC: Mac = [0x02, 0, 0, 0, 0x02, 0x0b];

const CIP: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 10);
const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 100);
const DIP: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 1);
const RIP: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 11);
const SROUTER: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 254);
const CROUTER: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 254);

// ---------------------------------------------------------------- builders
//
// Frames come from the shared builders (`testkit::frame`); the fields this
// file sets differently from their defaults are set here, once: a non-zero
// IP identification and TCP acknowledgment and a window other than 65535,
// so that a rewrite that zeroes or moves one of them shows in the bytes.

/// An IPv4 header `src` → `dst` (TTL 64, DF) with identification 0x4242.
fn ip(src: Ipv4Addr, dst: Ipv4Addr) -> Ip {
    frame::ip(src, dst).with(|i| i.ident = 0x4242)
}

/// A TCP segment with window 29200 and `options`: a SYN when `syn`, else
/// an ACK of 77.
fn segment(sport: u16, dport: u16, seq: u32, syn: bool, options: Vec<u8>) -> L4 {
    let l4 = frame::tcp(sport, dport)
        .seq(seq)
        .window(29200)
        .options(options);
    if syn {
        l4.syn()
    } else {
        l4.ack(77)
    }
}

/// A SYN `sport` → `dport`: sequence 1000, window 29200, no options.
fn tcp(sport: u16, dport: u16) -> L4 {
    segment(sport, dport, 1000, true, Vec::new())
}

// ---------------------------------------------------------------- NAT table

#[derive(Debug, Clone, Copy)]
enum Op {
    In(Ipv4Addr, u16),
    Out(Ipv4Addr, u16),
    IcmpIn(Ipv4Addr, u16),
    IcmpOut(Ipv4Addr, u16),
}

struct NatCase {
    desc: &'static str,
    input: Vec<u8>,
    op: Op,
    macs: (Mac, Mac),
    want: Result<Vec<u8>, NatError>,
}

fn apply(op: Op, f: &mut [u8], (s, d): (Mac, Mac)) -> Result<(), NatError> {
    match op {
        Op::In(a, p) => nat::xmit_in(f, a, p, s, d),
        Op::Out(a, p) => nat::xmit_out(f, a, p, s, d),
        Op::IcmpIn(a, p) => nat::icmp_in(f, a, p, s, d),
        Op::IcmpOut(a, p) => nat::icmp_out(f, a, p, s, d),
    }
}

fn run_nat(cases: Vec<NatCase>) -> usize {
    let n = cases.len();
    for c in cases {
        let mut f = c.input.clone();
        let r = apply(c.op, &mut f, c.macs);
        match c.want {
            Ok(want) => {
                assert_eq!(r, Ok(()), "{}", c.desc);
                assert_frame(c.desc, &f, &want);
            }
            Err(e) => {
                assert_eq!(r, Err(e), "{}", c.desc);
                assert_frame(c.desc, &f, &c.input);
            }
        }
    }
    n
}

/// An inbound NAT case: client → VIP:vport becomes client → RIP:rport.
fn nat_in_case(desc: &'static str, ipf: Ip, l4: L4, payload: &[u8], rport: u16) -> NatCase {
    let input = eth(CMAC, DMAC_C, &ip_packet(&ipf, &l4, payload));
    let out_ip = ipf.clone().with(|i| i.dst = RIP);
    let want = eth(
        DMAC_S,
        RSMAC,
        &ip_packet(&out_ip, &l4.clone().ports(l4.sport(), rport), payload),
    );
    NatCase {
        desc,
        input,
        op: Op::In(RIP, rport),
        macs: (DMAC_S, RSMAC),
        want: Ok(want),
    }
}

/// An outbound NAT case: RIP:rport → client becomes VIP:vport → client.
fn nat_out_case(desc: &'static str, ipf: Ip, l4: L4, payload: &[u8], vport: u16) -> NatCase {
    let input = eth(RSMAC, DMAC_S, &ip_packet(&ipf, &l4, payload));
    let out_ip = ipf.clone().with(|i| i.src = VIP);
    let want = eth(
        DMAC_C,
        CMAC,
        &ip_packet(&out_ip, &l4.clone().ports(vport, l4.dport()), payload),
    );
    NatCase {
        desc,
        input,
        op: Op::Out(VIP, vport),
        macs: (DMAC_C, CMAC),
        want: Ok(want),
    }
}

/// A UDP payload making the checksum of `ipf`/`l4` (after translation)
/// compute to 0, so that the field must read 0xffff.
fn payload_for_zero_udp_checksum(ipf: &Ip, l4: &L4) -> Vec<u8> {
    let pkt = ip_packet(ipf, l4, &[0, 0]);
    let at = ipf.header_len() + 6;
    let c = u16::from_be_bytes([pkt[at], pkt[at + 1]]);
    // Adding word w to a sum S (folded, checksum c = ~S) gives 0xffff
    // (checksum 0) for w = ~S = c.
    c.to_be_bytes().to_vec()
}

#[test]
fn nat_rewrites_frame_by_frame() {
    let c2v = ip(CIP, VIP);
    let r2c = ip(RIP, CIP);
    let mut cases = vec![
        nat_in_case(
            "TCP SYN VIP:80 -> RIP:8080",
            c2v.clone(),
            tcp(40000, 80),
            b"",
            8080,
        ),
        nat_in_case(
            "TCP with data, same port",
            c2v.clone(),
            segment(51234, 443, 0xdead_beef, false, vec![]),
            b"GET / HTTP/1.1\r\n\r\n",
            443,
        ),
        nat_in_case(
            "TCP with options (MSS, SACK-permitted, timestamps, wscale)",
            c2v.clone(),
            segment(
                40001,
                80,
                7,
                true,
                vec![
                    2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7,
                ],
            ),
            b"",
            80,
        ),
        nat_in_case(
            "IPv4 header with options (IHL 6), TOS and odd TTL",
            c2v.clone().with(|i| {
                i.options = vec![1, 1, 1, 0];
                i.tos = 0xb8;
                i.ttl = 3;
            }),
            tcp(40002, 80),
            b"x",
            8080,
        ),
        nat_in_case(
            "UDP with checksum",
            c2v.clone(),
            udp(5000, 53),
            b"query",
            5353,
        ),
        nat_in_case("UDP odd payload", c2v.clone(), udp(5001, 53), b"abc", 53),
        nat_in_case(
            "UDP without checksum stays without",
            c2v.clone(),
            udp(5002, 53).no_csum(),
            b"query",
            5353,
        ),
        nat_in_case("UDP empty payload", c2v.clone(), udp(5003, 9), b"", 9999),
        nat_in_case(
            "DF clear",
            c2v.clone().with(|i| i.df = false),
            udp(5004, 9),
            b"z",
            9,
        ),
        nat_out_case(
            "TCP SYN-ACK RIP:8080 -> VIP:80",
            r2c.clone(),
            tcp(8080, 40000),
            b"",
            80,
        ),
        nat_out_case(
            "TCP data reply",
            r2c.clone(),
            segment(
                8080,
                40000,
                1,
                false,
                vec![1, 1, 8, 10, 0, 0, 0, 9, 0, 0, 0, 8],
            ),
            &[0x5a; 100],
            80,
        ),
        nat_out_case("UDP reply", r2c.clone(), udp(5353, 5000), b"answer!", 53),
        nat_out_case(
            "UDP reply without checksum",
            r2c.clone(),
            udp(5353, 5000).no_csum(),
            b"answer",
            53,
        ),
    ];

    // A checksum that computes to 0 after translation is sent as 0xffff.
    let l4 = udp(5005, 53);
    let translated = ip(CIP, RIP);
    let payload = payload_for_zero_udp_checksum(&translated, &l4.clone().ports(5005, 5353));
    let case = nat_in_case(
        "UDP translated checksum 0 is sent as 0xffff",
        c2v.clone(),
        l4,
        &payload,
        5353,
    );
    let want = case.want.clone().expect("ok case");
    let at = 14 + 20 + 6;
    assert_eq!(&want[at..at + 2], &[0xff, 0xff], "the case is built right");
    cases.push(case);

    // Ethernet padding (a 60-byte minimum frame) is left as it is.
    let mut padded = nat_in_case("padded minimum frame", c2v.clone(), udp(5006, 53), b"", 53);
    padded.input.resize(60, 0);
    if let Ok(w) = &mut padded.want {
        w.resize(60, 0);
    }
    cases.push(padded);

    // Errors: nothing is written.
    let good = eth(CMAC, DMAC_C, &ip_packet(&c2v, &tcp(40000, 80), b""));
    let mut frag = eth(
        CMAC,
        DMAC_C,
        &ip_packet(&c2v.clone().with(|i| i.df = false), &udp(1, 2), b"12345678"),
    );
    frag[20] |= 0x20; // MF
    let mut later_frag = frag.clone();
    later_frag[20] = 0x00;
    later_frag[21] = 0x10; // offset 128
    let mut arp = good.clone();
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    let mut doff = good.clone();
    doff[14 + 20 + 12] = 0x40;
    let errors: Vec<(&'static str, Vec<u8>, NatError)> = vec![
        ("first fragment", frag, NatError::Fragment),
        ("later fragment", later_frag, NatError::Fragment),
        ("ARP", arp, NatError::NotIpv4),
        (
            "ICMP echo is not NATed by xmit_in",
            eth(
                CMAC,
                DMAC_C,
                &icmp_packet(&c2v, 8, 0, [0, 1, 0, 1], b"ping"),
            ),
            NatError::Protocol(1),
        ),
        (
            "truncated TCP header",
            good[..14 + 20 + 10].to_vec(),
            NatError::Malformed(WireError::Truncated),
        ),
        (
            "TCP data offset < 5",
            doff,
            NatError::Malformed(WireError::Malformed),
        ),
        (
            "Ethernet only",
            good[..14].to_vec(),
            NatError::Malformed(WireError::Truncated),
        ),
        ("empty", vec![], NatError::Malformed(WireError::Truncated)),
    ];
    for (desc, input, e) in errors {
        cases.push(NatCase {
            desc,
            input,
            op: Op::In(RIP, 8080),
            macs: (DMAC_S, RSMAC),
            want: Err(e),
        });
    }
    assert!(run_nat(cases) >= 20);
}

// ------------------------------------------------------------- ICMP errors

/// How many bytes of the offending datagram past its IP header an error
/// quotes.
#[derive(Debug, Clone, Copy)]
enum Quote {
    /// RFC 792's minimum: 8 bytes.
    Min,
    /// Everything (as Linux does up to 576 bytes).
    All,
}

fn quote_of(datagram: &[u8], q: Quote) -> Vec<u8> {
    match q {
        Quote::Min => quote(datagram, 8),
        Quote::All => datagram.to_vec(),
    }
}

/// An error from the server side (reporter `from`) about client → RIP:rport,
/// translated to VIP → client about client → VIP:vport.
#[allow(clippy::too_many_arguments)]
fn icmp_out_case(
    desc: &'static str,
    from: Ipv4Addr,
    t: u8,
    code: u8,
    rest: [u8; 4],
    l4: L4,
    payload: &[u8],
    q: Quote,
    vport: u16,
) -> NatCase {
    let orig_ip = ip(CIP, RIP).with(|i| i.ttl = 63);
    let orig = ip_packet(&orig_ip, &l4, payload);
    let outer = ip(from, CIP).with(|i| {
        i.df = false;
        i.tos = 0xc0;
        i.ident = 0x1111;
    });
    let input = eth(
        RSMAC,
        DMAC_S,
        &icmp_packet(&outer, t, code, rest, &quote_of(&orig, q)),
    );
    let trans = ip_packet(
        &orig_ip.clone().with(|i| i.dst = VIP),
        &l4.clone().ports(l4.sport(), vport),
        payload,
    );
    let want = eth(
        DMAC_C,
        CMAC,
        &icmp_packet(
            &outer.clone().with(|i| i.src = VIP),
            t,
            code,
            rest,
            &quote_of(&trans, q),
        ),
    );
    NatCase {
        desc,
        input,
        op: Op::IcmpOut(VIP, vport),
        macs: (DMAC_C, CMAC),
        want: Ok(want),
    }
}

/// An error from the client side (reporter `from`) about VIP:vport → client,
/// translated to `from` → RIP about RIP:rport → client.
#[allow(clippy::too_many_arguments)]
fn icmp_in_case(
    desc: &'static str,
    from: Ipv4Addr,
    t: u8,
    code: u8,
    rest: [u8; 4],
    l4: L4,
    payload: &[u8],
    q: Quote,
    rport: u16,
) -> NatCase {
    let orig_ip = ip(VIP, CIP).with(|i| i.ttl = 1);
    let orig = ip_packet(&orig_ip, &l4, payload);
    let outer = ip(from, VIP).with(|i| i.df = false);
    let input = eth(
        CMAC,
        DMAC_C,
        &icmp_packet(&outer, t, code, rest, &quote_of(&orig, q)),
    );
    let trans = ip_packet(
        &orig_ip.clone().with(|i| i.src = RIP),
        &l4.clone().ports(rport, l4.dport()),
        payload,
    );
    let want = eth(
        DMAC_S,
        RSMAC,
        &icmp_packet(
            &outer.clone().with(|i| i.dst = RIP),
            t,
            code,
            rest,
            &quote_of(&trans, q),
        ),
    );
    NatCase {
        desc,
        input,
        op: Op::IcmpIn(RIP, rport),
        macs: (DMAC_S, RSMAC),
        want: Ok(want),
    }
}

#[test]
fn nat_translates_icmp_errors() {
    let mut cases = vec![
        icmp_out_case(
            "port unreachable from the real server about UDP (8-byte quote)",
            RIP,
            3,
            3,
            [0; 4],
            udp(40000, 5353),
            b"query",
            Quote::Min,
            53,
        ),
        icmp_out_case(
            "port unreachable, whole UDP datagram quoted",
            RIP,
            3,
            3,
            [0; 4],
            udp(40000, 5353),
            b"query",
            Quote::All,
            53,
        ),
        icmp_out_case(
            "frag needed from a router behind the director, full TCP quote",
            SROUTER,
            3,
            4,
            mtu_rest(1400),
            tcp(40000, 8080),
            &[7u8; 64],
            Quote::All,
            80,
        ),
        icmp_out_case(
            "host unreachable, TCP with 8-byte quote (no TCP checksum quoted)",
            SROUTER,
            3,
            1,
            [0; 4],
            tcp(40000, 8080),
            b"",
            Quote::Min,
            80,
        ),
        icmp_out_case(
            "time exceeded from a router about TCP",
            SROUTER,
            11,
            0,
            [0; 4],
            tcp(40001, 8080),
            b"abc",
            Quote::All,
            80,
        ),
        icmp_out_case(
            "UDP quoted without checksum keeps none",
            RIP,
            3,
            3,
            [0; 4],
            udp(40000, 5353).no_csum(),
            b"q",
            Quote::All,
            53,
        ),
        icmp_in_case(
            "port unreachable from the client about a UDP reply",
            CIP,
            3,
            3,
            [0; 4],
            udp(53, 40000),
            b"answer",
            Quote::All,
            5353,
        ),
        icmp_in_case(
            "frag needed from the client's router about a TCP reply",
            CROUTER,
            3,
            4,
            mtu_rest(1280),
            tcp(80, 40000),
            &[1u8; 33],
            Quote::All,
            8080,
        ),
        icmp_in_case(
            "time exceeded about a TCP reply, 8-byte quote",
            CROUTER,
            11,
            0,
            [0; 4],
            tcp(80, 40000),
            b"",
            Quote::Min,
            8080,
        ),
        icmp_in_case(
            "parameter problem",
            CIP,
            12,
            0,
            [20, 0, 0, 0],
            udp(53, 40001),
            b"",
            Quote::Min,
            53,
        ),
    ];

    let echo = eth(
        CMAC,
        DMAC_C,
        &icmp_packet(&ip(CIP, VIP), 8, 0, [0, 1, 0, 2], b"ping"),
    );
    let inner_icmp = icmp_packet(&ip(VIP, CIP), 0, 0, [0, 1, 0, 2], b"pong");
    let about_icmp = eth(
        CMAC,
        DMAC_C,
        &icmp_packet(&ip(CROUTER, VIP), 11, 0, [0; 4], &inner_icmp),
    );
    let orig = ip_packet(&ip(VIP, CIP), &udp(53, 4000), b"");
    let short = eth(
        CMAC,
        DMAC_C,
        &icmp_packet(&ip(CIP, VIP), 3, 3, [0; 4], &orig[..20 + 4]),
    );
    let udp_frame = eth(CMAC, DMAC_C, &ip_packet(&ip(CIP, VIP), &udp(1, 2), b""));
    for (desc, input, e) in [
        ("echo request is no error", echo, NatError::NotIcmpError),
        ("error quoting ICMP", about_icmp, NatError::NotIcmpError),
        (
            "quote shorter than 8 bytes",
            short,
            NatError::Malformed(WireError::Truncated),
        ),
        ("not ICMP", udp_frame, NatError::Protocol(17)),
    ] {
        cases.push(NatCase {
            desc,
            input,
            op: Op::IcmpIn(RIP, 8080),
            macs: (DMAC_S, RSMAC),
            want: Err(e),
        });
    }
    assert!(run_nat(cases) >= 14);
}

#[test]
fn parse_icmp_error_extracts_the_quoted_flow() {
    let orig = ip_packet(&ip(CIP, RIP), &tcp(40000, 8080), b"");
    let f = eth(
        RSMAC,
        DMAC_S,
        &icmp_packet(&ip(SROUTER, CIP), 3, 4, [0, 0, 5, 0xdc], &orig[..28]),
    );
    assert_eq!(
        nat::parse_icmp_error(&f),
        Ok(IcmpErrorInfo {
            src: SROUTER,
            dst: CIP,
            icmp_type: 3,
            code: 4,
            quoted: QuotedFlow {
                proto: 6,
                src: CIP,
                sport: 40000,
                dst: RIP,
                dport: 8080,
            },
        })
    );
    let e = IcmpPacket::new_checked(&f[34..]).expect("icmp");
    assert_eq!(e.next_hop_mtu(), 1500);
    assert!(e.verify_checksum());
}

// ------------------------------------------------------------------ tunnels

const HEADROOM: usize = 64;
const BUF: usize = 2048;

struct TunCase {
    desc: &'static str,
    frame: Vec<u8>,
    headroom: usize,
    tun: Tunnel,
    ident: u16,
    want: Result<(TunOutcome, Vec<u8>), TunError>,
}

fn tunnel(kind: TunKind, mtu: u16) -> Tunnel {
    Tunnel {
        kind,
        src: DIP,
        rip: RIP,
        src_mac: DMAC_S,
        dst_mac: RSMAC,
        mtu,
    }
}

fn in_buffer(frame: &[u8], headroom: usize) -> Vec<u8> {
    let mut buf = vec![0xeeu8; BUF];
    buf[headroom..headroom + frame.len()].copy_from_slice(frame);
    buf
}

fn run_tun(cases: Vec<TunCase>) -> usize {
    let n = cases.len();
    for c in cases {
        let mut buf = in_buffer(&c.frame, c.headroom);
        let before = buf.clone();
        let r = tun::xmit(&mut buf, c.headroom, c.frame.len(), &c.tun, c.ident);
        match c.want {
            Ok((outcome, frame)) => {
                assert_eq!(r, Ok(outcome), "{}", c.desc);
                assert_frame(c.desc, &buf[outcome.range()], &frame);
                // The same with the room after the frame.
                let mut tail = in_buffer(&c.frame, 0);
                let r = tun::xmit_tailroom(&mut tail, c.frame.len(), &c.tun, c.ident)
                    .unwrap_or_else(|e| panic!("{} (tailroom): {e}", c.desc));
                assert_eq!(r.range(), 0..frame.len(), "{} (tailroom)", c.desc);
                assert_frame(c.desc, &tail[r.range()], &frame);
            }
            Err(e) => {
                assert_eq!(r, Err(e), "{}", c.desc);
                assert!(buf == before, "{}: buffer changed on error", c.desc);
            }
        }
    }
    n
}

/// The outer IPv4 header a tunnel must write around `inner`.
fn outer_ip(inner: &Ip, ident: u16) -> Ip {
    Ip {
        src: DIP,
        dst: RIP,
        ttl: inner.ttl,
        tos: inner.tos,
        ident,
        df: inner.df,
        options: vec![],
    }
}

/// The frame a tunnel must produce for `inner` (an IP packet built from
/// `inner_ip`): `inner` under [`outer_ip`], GUE's source port taken from
/// the inner flow.
fn encapsulated(kind: TunKind, inner_ip: &Ip, inner: &[u8], ident: u16) -> Vec<u8> {
    let gue_sport = match kind {
        TunKind::Gue { .. } => {
            let ihl = usize::from(inner[0] & 0x0f) * 4;
            tun::gue_src_port(&inner[..ihl], &inner[ihl..], inner[9])
        }
        TunKind::Ipip | TunKind::Gre => 0,
    };
    let o = outer_ip(inner_ip, ident);
    eth(
        DMAC_S,
        RSMAC,
        &frame::encapsulated(kind, &o, inner, gue_sport),
    )
}

fn encap_case(
    desc: &'static str,
    kind: TunKind,
    inner_ip: Ip,
    l4: L4,
    payload: &[u8],
    mtu: u16,
) -> TunCase {
    let inner = ip_packet(&inner_ip, &l4, payload);
    let frame = eth(CMAC, DMAC_C, &inner);
    let want = encapsulated(kind, &inner_ip, &inner, 0x0102);
    let over = kind.overhead();
    TunCase {
        desc,
        frame,
        headroom: HEADROOM,
        tun: tunnel(kind, mtu),
        ident: 0x0102,
        want: Ok((
            TunOutcome::Encapsulated {
                start: HEADROOM - over,
                len: want.len(),
            },
            want,
        )),
    }
}

/// The fragmentation-needed frame answering `inner` (from `inner_ip`).
fn frag_needed_frame(inner_ip: &Ip, inner: &[u8], mtu: u16, ident: u16) -> Vec<u8> {
    let o = Ip {
        src: inner_ip.dst,
        dst: inner_ip.src,
        ttl: 64,
        tos: 0xc0,
        ident,
        df: false,
        options: vec![],
    };
    eth(
        DMAC_C,
        CMAC,
        &icmp_packet(&o, 3, 4, mtu_rest(mtu), &quote(inner, 8)),
    )
}

fn frag_case(desc: &'static str, kind: TunKind, inner_ip: Ip, total: usize, mtu: u16) -> TunCase {
    let l4 = tcp(40000, 80);
    let payload = vec![0x61u8; total - inner_ip.header_len() - 20];
    let inner = ip_packet(&inner_ip, &l4, &payload);
    assert_eq!(inner.len(), total);
    let frame = eth(CMAC, DMAC_C, &inner);
    let nh = mtu - kind.overhead() as u16;
    let want = frag_needed_frame(&inner_ip, &inner, nh, 0x0203);
    TunCase {
        desc,
        frame,
        headroom: HEADROOM,
        tun: tunnel(kind, mtu),
        ident: 0x0203,
        want: Ok((
            TunOutcome::FragNeeded {
                start: HEADROOM,
                len: want.len(),
                mtu: nh,
            },
            want,
        )),
    }
}

#[test]
fn tunnels_frame_by_frame() {
    let c2v = ip(CIP, VIP).with(|i| {
        i.tos = 0x10;
        i.ttl = 63;
    });
    let gue = TunKind::Gue {
        port: 6080,
        checksum: false,
    };
    let gue_csum = TunKind::Gue {
        port: 6080,
        checksum: true,
    };
    let mut cases = vec![
        encap_case(
            "IPIP TCP SYN, TOS/TTL/DF copied",
            TunKind::Ipip,
            c2v.clone(),
            tcp(40000, 80),
            b"",
            1500,
        ),
        encap_case(
            "IPIP DF clear stays clear",
            TunKind::Ipip,
            c2v.clone().with(|i| i.df = false),
            udp(5000, 53),
            b"query",
            1500,
        ),
        encap_case(
            "IPIP inner with IP options",
            TunKind::Ipip,
            c2v.clone()
                .with(|i| i.options = vec![1, 1, 1, 0, 1, 1, 1, 0]),
            tcp(40000, 80),
            b"data",
            1500,
        ),
        encap_case(
            "IPIP exactly at the MTU",
            TunKind::Ipip,
            c2v.clone(),
            udp(5000, 53),
            &[9u8; 1452],
            1500,
        ),
        encap_case(
            "GUE without UDP checksum",
            gue,
            c2v.clone(),
            tcp(40000, 80),
            b"",
            1500,
        ),
        encap_case(
            "GUE with UDP checksum",
            gue_csum,
            c2v.clone(),
            udp(5000, 53),
            b"odd",
            1500,
        ),
        encap_case(
            "GUE exactly at the MTU",
            gue,
            c2v.clone(),
            tcp(40000, 80),
            &[3u8; 1428],
            1500,
        ),
        encap_case("GRE", TunKind::Gre, c2v.clone(), tcp(40000, 80), b"x", 1500),
        encap_case(
            "GRE DF clear",
            TunKind::Gre,
            c2v.clone().with(|i| i.df = false),
            udp(1, 2),
            b"",
            9000,
        ),
        frag_case(
            "IPIP 1500-byte DF packet: frag needed 1480",
            TunKind::Ipip,
            c2v.clone(),
            1500,
            1500,
        ),
        frag_case("IPIP one byte over", TunKind::Ipip, c2v.clone(), 1481, 1500),
        frag_case("GUE: frag needed 1468", gue, c2v.clone(), 1469, 1500),
        frag_case(
            "GRE: frag needed 1476",
            TunKind::Gre,
            c2v.clone(),
            1500,
            1500,
        ),
        frag_case(
            "frag needed quotes IP options too",
            TunKind::Ipip,
            c2v.clone().with(|i| i.options = vec![1, 1, 1, 0]),
            1400,
            1400,
        ),
    ];

    // Ethernet padding after a short packet is not carried in the tunnel.
    let inner = ip_packet(&c2v, &udp(1, 2), b"");
    let mut padded = eth(CMAC, DMAC_C, &inner);
    padded.resize(60, 0);
    let want = encapsulated(TunKind::Ipip, &c2v, &inner, 7);
    cases.push(TunCase {
        desc: "padding dropped",
        frame: padded,
        headroom: 20,
        tun: tunnel(TunKind::Ipip, 1500),
        ident: 7,
        want: Ok((
            TunOutcome::Encapsulated {
                start: 0,
                len: want.len(),
            },
            want,
        )),
    });

    // Errors leave the buffer alone.
    let small = eth(CMAC, DMAC_C, &ip_packet(&c2v, &tcp(1, 80), b""));
    let big_nodf = eth(
        CMAC,
        DMAC_C,
        &ip_packet(
            &c2v.clone().with(|i| i.df = false),
            &udp(1, 2),
            &[0u8; 1472],
        ),
    );
    let orig = ip_packet(&ip(VIP, CIP), &udp(53, 4000), b"");
    let mut icmp_err = eth(
        CMAC,
        DMAC_C,
        &icmp_packet(
            &ip(CIP, VIP),
            3,
            3,
            [0; 4],
            &[orig.clone(), vec![0; 1500]].concat(),
        ),
    );
    icmp_err.truncate(14 + 1500);
    {
        // Make the truncated ICMP packet consistent: total length 1500.
        icmp_err[16..18].copy_from_slice(&1500u16.to_be_bytes());
    }
    let mut arp = small.clone();
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    let errs: Vec<(&'static str, Vec<u8>, usize, Tunnel, TunError)> = vec![
        (
            "no headroom",
            small.clone(),
            10,
            tunnel(TunKind::Ipip, 1500),
            TunError::NoHeadroom { need: 20, have: 10 },
        ),
        (
            "GUE needs 32 bytes",
            small.clone(),
            31,
            tunnel(gue, 1500),
            TunError::NoHeadroom { need: 32, have: 31 },
        ),
        (
            "too big without DF",
            big_nodf,
            HEADROOM,
            tunnel(TunKind::Ipip, 1500),
            TunError::TooBig,
        ),
        (
            "too big ICMP error gets no ICMP error",
            icmp_err,
            HEADROOM,
            tunnel(TunKind::Ipip, 1500),
            TunError::TooBig,
        ),
        (
            "ARP",
            arp,
            HEADROOM,
            tunnel(TunKind::Ipip, 1500),
            TunError::NotIpv4,
        ),
        (
            "MTU below 68 + overhead",
            small.clone(),
            HEADROOM,
            tunnel(TunKind::Ipip, 87),
            TunError::MtuTooSmall,
        ),
        (
            "truncated IPv4",
            small[..30].to_vec(),
            HEADROOM,
            tunnel(TunKind::Ipip, 1500),
            TunError::Malformed(WireError::Truncated),
        ),
    ];
    for (desc, frame, headroom, tun, e) in errs {
        cases.push(TunCase {
            desc,
            frame,
            headroom,
            tun,
            ident: 1,
            want: Err(e),
        });
    }
    assert!(run_tun(cases) >= 20);

    // Tailroom: the buffer must hold the encapsulated frame.
    let frame = eth(CMAC, DMAC_C, &ip_packet(&c2v, &tcp(1, 80), b"abc"));
    let mut exact = frame.clone();
    exact.resize(frame.len() + 19, 0xee);
    let before = exact.clone();
    assert_eq!(
        tun::xmit_tailroom(&mut exact, frame.len(), &tunnel(TunKind::Ipip, 1500), 1),
        Err(TunError::NoRoom)
    );
    assert!(exact == before);
    exact.push(0xee);
    assert!(tun::xmit_tailroom(&mut exact, frame.len(), &tunnel(TunKind::Ipip, 1500), 1).is_ok());

    // A frame that does not lie inside the buffer.
    let mut buf = vec![0u8; 100];
    assert_eq!(
        tun::xmit(&mut buf, 90, 20, &tunnel(TunKind::Ipip, 1500), 1),
        Err(TunError::Bounds)
    );
}

#[test]
fn frag_needed_fits_even_a_small_frame() {
    // The reply can be longer than the packet it answers (tiny MTU): it
    // needs room in the buffer past the frame.
    let inner_ip = ip(CIP, VIP).with(|i| i.options = vec![1; 40]);
    let inner = ip_packet(&inner_ip, &tcp(1, 80), &[0u8; 10]);
    let frame = eth(CMAC, DMAC_C, &inner);
    let mut buf = in_buffer(&frame, 0);
    let len = tun::frag_needed(&mut buf, 0, frame.len(), 68, 9).expect("room in the buffer");
    assert_frame(
        "tiny",
        &buf[..len],
        &frag_needed_frame(&inner_ip, &inner, 68, 9),
    );
    let mut exact = frame.clone();
    assert_eq!(
        tun::frag_needed(&mut exact, 0, frame.len(), 68, 9),
        Err(TunError::NoRoom)
    );
}

#[test]
fn gue_source_port_follows_the_flow() {
    let a = ip_packet(&ip(CIP, VIP), &tcp(40000, 80), b"");
    let b = ip_packet(&ip(CIP, VIP), &tcp(40001, 80), b"x");
    let p = |x: &[u8]| tun::gue_src_port(&x[..20], &x[20..], x[9]);
    assert_eq!(
        p(&a),
        p(&ip_packet(&ip(CIP, VIP), &tcp(40000, 80), b"more data"))
    );
    let mut seen = std::collections::HashSet::new();
    for sport in 0..2000u16 {
        let x = ip_packet(&ip(CIP, VIP), &tcp(sport, 80), b"");
        let port = p(&x);
        assert!(port >= tun::GUE_SRC_PORT_BASE);
        seen.insert(port);
    }
    assert!(seen.len() > 1800, "ports spread: {} distinct", seen.len());
    assert_ne!(p(&a), p(&b));
}

// ------------------------------------------------------- property tests

/// SplitMix64: a small seeded generator, so every run checks the same cases.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn u8(&mut self) -> u8 {
        self.next() as u8
    }
    fn u16(&mut self) -> u16 {
        self.next() as u16
    }
    fn addr(&mut self) -> Ipv4Addr {
        Ipv4Addr::from(self.next() as u32)
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.u8()).collect()
    }
    fn bytes_upto(&mut self, max: u64) -> Vec<u8> {
        let n = self.below(max) as usize;
        self.bytes(n)
    }
    fn chance(&mut self, one_in: u64) -> bool {
        self.below(one_in) == 0
    }
}

const CASES: usize = 10_000;

#[test]
fn prop_delta_equals_full_recompute() {
    let mut r = Rng(1);
    for case in 0..CASES {
        let len = 2 * (2 + r.below(100) as usize) + r.below(2) as usize;
        let mut data = r.bytes(len);
        let csum_at = 2 * r.below((len / 2) as u64) as usize;
        data[csum_at..csum_at + 2].copy_from_slice(&[0, 0]);
        let c = checksum::checksum(&data);
        data[csum_at..csum_at + 2].copy_from_slice(&c.to_be_bytes());
        let mut d = Delta::new();
        let mut chained = c;
        for _ in 0..1 + r.below(6) {
            let at = 2 * r.below((len / 2) as u64) as usize;
            if at == csum_at || at + 2 > len {
                continue;
            }
            let old = u16::from_be_bytes([data[at], data[at + 1]]);
            let new = if r.chance(8) { old } else { r.u16() };
            data[at..at + 2].copy_from_slice(&new.to_be_bytes());
            d.add16(old, new);
            chained = checksum::update16(chained, old, new);
        }
        data[csum_at..csum_at + 2].copy_from_slice(&[0, 0]);
        let full = checksum::checksum(&data);
        assert_eq!(d.apply(c), full, "case {case}: Delta");
        assert_eq!(chained, full, "case {case}: chained update16");
    }
}

#[test]
fn prop_ipv4_header_rewrite_equals_full_recompute() {
    let mut r = Rng(2);
    for case in 0..CASES {
        let opts = 4 * r.below(11) as usize;
        let ipf = Ip {
            src: r.addr(),
            dst: r.addr(),
            ttl: r.u8(),
            tos: r.u8(),
            ident: r.u16(),
            df: r.chance(2),
            options: r.bytes(opts),
        };
        let proto = r.u8();
        let mut pkt = ip_raw(&ipf, proto, &r.bytes_upto(16));
        let (a, b) = (r.addr(), r.addr());
        let mut p = Ipv4Packet::new_checked(&mut pkt[..]).expect("valid");
        let which = r.below(3);
        if which != 1 {
            p.rewrite_src(a);
        }
        if which != 0 {
            p.rewrite_dst(b);
        }
        let inc = p.checksum();
        assert!(p.verify_checksum(), "case {case}");
        p.fill_checksum();
        assert_eq!(inc, p.checksum(), "case {case}");
        let want = ip_raw(
            &ipf.clone().with(|i| {
                if which != 1 {
                    i.src = a;
                }
                if which != 0 {
                    i.dst = b;
                }
            }),
            pkt[9],
            &pkt[20 + opts..],
        );
        assert_frame("ipv4 rewrite", &pkt, &want);
    }
}

fn random_l4(r: &mut Rng, udp_only: Option<bool>) -> L4 {
    let is_udp = udp_only.unwrap_or_else(|| r.chance(2));
    if is_udp {
        L4::Udp(Udp {
            sport: r.u16(),
            dport: r.u16(),
            no_csum: r.chance(8),
        })
    } else {
        let opts = 4 * r.below(11) as usize;
        let (sport, dport, seq, syn) = (r.u16(), r.u16(), r.next() as u32, r.chance(2));
        // NOP options: always valid.
        segment(sport, dport, seq, syn, vec![1; opts])
    }
}

fn random_ip(r: &mut Rng, src: Ipv4Addr, dst: Ipv4Addr) -> Ip {
    Ip {
        src,
        dst,
        ttl: r.u8(),
        tos: r.u8(),
        ident: r.u16(),
        df: r.chance(2),
        options: if r.chance(4) {
            vec![1; 4 * (1 + r.below(10) as usize)]
        } else {
            vec![]
        },
    }
}

fn prop_nat(seed: u64, udp_only: bool) {
    let mut r = Rng(seed);
    for case in 0..CASES {
        let (cip, vip, rip) = (r.addr(), r.addr(), r.addr());
        let l4 = random_l4(&mut r, Some(udp_only));
        let payload = r.bytes_upto(90);
        let (new_port, inbound) = (r.u16(), r.chance(2));
        let (input, want) = if inbound {
            let ipf = random_ip(&mut r, cip, vip);
            let input = eth(CMAC, DMAC_C, &ip_packet(&ipf, &l4, &payload));
            let want = eth(
                DMAC_S,
                RSMAC,
                &ip_packet(
                    &ipf.clone().with(|i| i.dst = rip),
                    &l4.clone().ports(l4.sport(), new_port),
                    &payload,
                ),
            );
            (input, want)
        } else {
            let ipf = random_ip(&mut r, rip, cip);
            let input = eth(RSMAC, DMAC_S, &ip_packet(&ipf, &l4, &payload));
            let want = eth(
                DMAC_C,
                CMAC,
                &ip_packet(
                    &ipf.clone().with(|i| i.src = vip),
                    &l4.clone().ports(new_port, l4.dport()),
                    &payload,
                ),
            );
            (input, want)
        };
        let mut f = input.clone();
        let res = if inbound {
            nat::xmit_in(&mut f, rip, new_port, DMAC_S, RSMAC)
        } else {
            nat::xmit_out(&mut f, vip, new_port, DMAC_C, CMAC)
        };
        assert_eq!(res, Ok(()), "case {case}");
        if let Some(d) = frame_diff(&f, &want) {
            panic!("case {case} ({l4:?}): {d}");
        }
    }
}

#[test]
fn prop_nat_tcp_equals_full_recompute() {
    prop_nat(3, false);
}

#[test]
fn prop_nat_udp_equals_full_recompute() {
    prop_nat(4, true);
}

#[test]
fn prop_nat_icmp_equals_full_recompute() {
    let mut r = Rng(5);
    for case in 0..CASES {
        let (cip, vip, rip, reporter) = (r.addr(), r.addr(), r.addr(), r.addr());
        let l4 = random_l4(&mut r, None);
        let payload = r.bytes_upto(60);
        let new_port = r.u16();
        let inbound = r.chance(2);
        let (t, code) = [
            (3u8, 0u8),
            (3, 1),
            (3, 3),
            (3, 4),
            (11, 0),
            (11, 1),
            (12, 0),
            (4, 0),
        ][r.below(8) as usize];
        let rest = [r.u8(), r.u8(), r.u8(), r.u8()];
        // The quoted datagram and its translation.
        let (orig_ip, trans_ip, trans_l4) = if inbound {
            let o = random_ip(&mut r, vip, cip);
            let t = o.clone().with(|i| i.src = rip);
            (o, t, l4.clone().ports(new_port, l4.dport()))
        } else {
            let o = random_ip(&mut r, cip, rip);
            let t = o.clone().with(|i| i.dst = vip);
            (o, t, l4.clone().ports(l4.sport(), new_port))
        };
        let orig = ip_packet(&orig_ip, &l4, &payload);
        let trans = ip_packet(&trans_ip, &trans_l4, &payload);
        let ihl = orig_ip.header_len();
        let l4_len = orig.len() - ihl;
        // 8 bytes, or a longer quote that holds the whole TCP checksum.
        let min_long = if l4.proto() == 6 { 18 } else { 8 };
        let qlen = if r.chance(3) || l4_len < min_long {
            8
        } else {
            min_long + r.below((l4_len - min_long + 1) as u64) as usize
        };
        let outer = random_ip(&mut r, reporter, if inbound { vip } else { cip });
        let outer = outer.with(|i| {
            if !inbound {
                i.src = reporter;
            }
        });
        let input = eth(
            CMAC,
            DMAC_C,
            &icmp_packet(&outer, t, code, rest, &quote(&orig, qlen)),
        );
        let want_outer = outer.clone().with(|i| {
            if inbound {
                i.dst = rip;
            } else {
                i.src = vip;
            }
        });
        let want = eth(
            DMAC_S,
            RSMAC,
            &icmp_packet(&want_outer, t, code, rest, &quote(&trans, qlen)),
        );
        let mut f = input.clone();
        let info = nat::parse_icmp_error(&f).expect("an error about TCP/UDP");
        assert_eq!(
            (info.quoted.src, info.quoted.dst, info.quoted.proto),
            (orig_ip.src, orig_ip.dst, l4.proto()),
            "case {case}"
        );
        let res = if inbound {
            nat::icmp_in(&mut f, rip, new_port, DMAC_S, RSMAC)
        } else {
            nat::icmp_out(&mut f, vip, new_port, DMAC_S, RSMAC)
        };
        assert_eq!(res, Ok(()), "case {case}");
        if let Some(d) = frame_diff(&f, &want) {
            panic!("case {case} ({l4:?}, quote {qlen}, inbound {inbound}): {d}");
        }
    }
}

#[test]
fn prop_tunnels_equal_independent_build() {
    let mut r = Rng(6);
    for case in 0..CASES {
        let kind = match r.below(4) {
            0 => TunKind::Ipip,
            1 => TunKind::Gre,
            2 => TunKind::Gue {
                port: r.u16(),
                checksum: false,
            },
            _ => TunKind::Gue {
                port: r.u16(),
                checksum: true,
            },
        };
        let (s, d) = (r.addr(), r.addr());
        let inner_ip = random_ip(&mut r, s, d);
        let l4 = random_l4(&mut r, None);
        let payload = r.bytes_upto(200);
        let inner = ip_packet(&inner_ip, &l4, &payload);
        let frame = eth(CMAC, DMAC_C, &inner);
        let ident = r.u16();
        let need = inner.len() + kind.overhead();
        let floor = 68 + kind.overhead();
        let mtu = match r.below(4) {
            // Too small by some bytes (when the MTU may be that small).
            0 if need > floor => floor + r.below((need - floor) as u64) as usize,
            // Exactly enough, or more.
            _ => need.max(floor) + r.below(3) as usize,
        } as u16;
        let fits = inner.len() + kind.overhead() <= usize::from(mtu);
        let mut buf = in_buffer(&frame, HEADROOM);
        let res = tun::xmit(&mut buf, HEADROOM, frame.len(), &tunnel(kind, mtu), ident);
        let want = if fits {
            encapsulated(kind, &inner_ip, &inner, ident)
        } else if inner_ip.df {
            frag_needed_frame(&inner_ip, &inner, mtu - kind.overhead() as u16, ident)
        } else {
            assert_eq!(res, Err(TunError::TooBig), "case {case}");
            continue;
        };
        let out = res.unwrap_or_else(|e| panic!("case {case}: {e}"));
        assert_frame("tunnel property", &buf[out.range()], &want);
        let mut tail = in_buffer(&frame, 0);
        let t = tun::xmit_tailroom(&mut tail, frame.len(), &tunnel(kind, mtu), ident)
            .unwrap_or_else(|e| panic!("case {case} (tailroom): {e}"));
        assert_frame("tunnel property (tailroom)", &tail[t.range()], &want);
        // Every checksum in the output verifies.
        let o = &buf[out.range()];
        let p = Ipv4Packet::new_checked(&o[14..]).expect("outer ipv4");
        assert!(p.verify_checksum(), "case {case}");
        if let TunOutcome::FragNeeded { .. } = out {
            assert!(IcmpPacket::new_checked(p.payload())
                .expect("icmp")
                .verify_checksum());
        }
    }
}

#[test]
fn prop_garbage_never_panics_and_errors_leave_frames_alone() {
    let mut r = Rng(7);
    let quote = ip_packet(&ip(VIP, CIP), &udp(53, 40000), b"answer");
    let seeds = [
        eth(
            CMAC,
            DMAC_C,
            &ip_packet(&ip(CIP, VIP), &tcp(40000, 80), b"data"),
        ),
        eth(
            CMAC,
            DMAC_C,
            &ip_packet(&ip(CIP, VIP), &udp(40000, 53), b"q"),
        ),
        eth(
            CMAC,
            DMAC_C,
            &icmp_packet(&ip(CIP, VIP), 3, 3, [0; 4], &quote),
        ),
    ];
    for case in 0..CASES {
        let mut f = seeds[r.below(3) as usize].clone();
        // Corrupt a few header bytes (Ethernet, IP, transport, quote) and
        // maybe cut the frame short.
        for _ in 0..1 + r.below(4) {
            let at = r.below(f.len().min(70) as u64) as usize;
            f[at] = r.u8();
        }
        if r.chance(2) {
            f.truncate(r.below(f.len() as u64 + 1) as usize);
        }
        let ops = [
            Op::In(RIP, 8080),
            Op::Out(VIP, 80),
            Op::IcmpIn(RIP, 8080),
            Op::IcmpOut(VIP, 80),
        ];
        for op in ops {
            let mut g = f.clone();
            if apply(op, &mut g, (DMAC_S, RSMAC)).is_err() {
                assert!(g == f, "case {case}: {op:?} wrote before failing");
            }
        }
        let _ = nat::parse_icmp_error(&f);
        if let Ok(p) = IcmpPacket::new_checked(f.get(34..).unwrap_or(&[])) {
            let _ = p.quoted_flow();
        }
        let mut buf = in_buffer(&f, HEADROOM);
        let before = buf.clone();
        let kind = [
            TunKind::Ipip,
            TunKind::Gre,
            TunKind::Gue {
                port: 1,
                checksum: true,
            },
        ][r.below(3) as usize];
        let mtu = 60 + r.below(1500) as u16;
        if tun::xmit(&mut buf, HEADROOM, f.len(), &tunnel(kind, mtu), 1).is_err() {
            assert!(buf == before, "case {case}: tunnel wrote before failing");
        }
    }
}
