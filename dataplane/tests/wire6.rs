//! IPv6 frames as the data plane will read them, as one table of cases
//! (in the manner of `frames.rs`): each case is a description, a frame
//! built by `testkit::v6` from the fields it must carry, what the wire
//! views must find in it (the transport flow behind the extension
//! headers, a fragment, the flow an ICMPv6 error quotes, or a typed
//! error), and whether the steering program sends it to the sockets when
//! `[VIP6]:80` (TCP) is a service, `[rip6(1)]:8080` a NAT real server and
//! VIP6 a VIP. Below the table, every truncation and 100,000 seeded
//! mutations show that no frame makes the views panic or point outside
//! the frame.

use std::net::Ipv6Addr;
use xvs_dataplane::io::xdp::Steering;
use xvs_dataplane::testkit::frame::{tcp, udp};
use xvs_dataplane::testkit::v6::{
    eth6, icmp6_error, icmp6_packet, ip6, ip6_fragments, ip6_packet, ip6_raw, packet_too_big, rip6,
    Ext, CIP6, DIR_IP6, VIP6,
};
use xvs_dataplane::testkit::{CLIENT_MAC, DIR_MAC};
use xvs_dataplane::wire::checksum::complete_partial_ipv6;
use xvs_dataplane::wire::icmpv6::{Icmpv6Packet, QuotedFlow6};
use xvs_dataplane::wire::ipv6::{ExtError, Ipv6Packet, Upper};
use xvs_dataplane::wire::Error;

/// What the views find in a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reading {
    /// TCP or UDP: protocol, ports, and the transport header's offset in
    /// the frame.
    Flow {
        proto: u8,
        sport: u16,
        dport: u16,
        at: usize,
    },
    /// A fragment: whether it is the first, and the next header.
    Fragment { first: bool, proto: u8 },
    /// ICMPv6 of this type; for an error, the flow it quotes (or why not).
    Icmp {
        msg_type: u8,
        quoted: Option<Result<QuotedFlow6, Error>>,
    },
    /// Another next header (ESP, no next header, ...).
    Other(u8),
    /// The fixed header is not valid.
    BadHeader(Error),
    /// The extension chain cannot be walked.
    BadChain(ExtError),
}

/// Read `frame` (Ethernet + IPv6) with the views, as the pipeline will.
fn read(frame: &[u8]) -> Reading {
    let ip = match Ipv6Packet::new_checked(&frame[14..]) {
        Ok(ip) => ip,
        Err(e) => return Reading::BadHeader(e),
    };
    let base = 14 + 40;
    match ip.upper() {
        Err(e) => Reading::BadChain(e),
        Ok(Upper::Fragment(f)) => Reading::Fragment {
            first: f.is_first(),
            proto: f.proto,
        },
        Ok(Upper::Transport {
            proto: proto @ (6 | 17),
            offset,
            ..
        }) => {
            let l4 = &ip.payload()[offset..];
            if l4.len() < 8 {
                return Reading::BadHeader(Error::Truncated);
            }
            Reading::Flow {
                proto,
                sport: u16::from_be_bytes([l4[0], l4[1]]),
                dport: u16::from_be_bytes([l4[2], l4[3]]),
                at: base + offset,
            }
        }
        Ok(Upper::Transport {
            proto: 58, offset, ..
        }) => match Icmpv6Packet::new_checked(&ip.payload()[offset..]) {
            Err(e) => Reading::BadHeader(e),
            Ok(m) => Reading::Icmp {
                msg_type: m.msg_type(),
                quoted: m.is_error().then(|| m.quoted_flow()),
            },
        },
        Ok(Upper::Transport { proto, .. }) => Reading::Other(proto),
    }
}

fn f6(p: &[u8]) -> Vec<u8> {
    eth6(CLIENT_MAC, DIR_MAC, p)
}

struct Case {
    desc: &'static str,
    frame: Vec<u8>,
    want: Reading,
    steer: bool,
}

fn flow(proto: u8, sport: u16, dport: u16, at: usize) -> Reading {
    Reading::Flow {
        proto,
        sport,
        dport,
        at,
    }
}

fn cases() -> Vec<Case> {
    let c2v = ip6(CIP6, VIP6);
    let syn = tcp(40000, 80).syn();
    let syn6 = ip6_packet(&c2v, &syn, b"");
    let dests = |n: usize| (0..n).fold(c2v.clone(), |ip, _| ip.ext(Ext::DestOpts(0)));
    let reply = ip6_packet(&ip6(rip6(1), CIP6), &tcp(8080, 40000).ack(1), b"r");
    let frags = ip6_fragments(&c2v, &udp(5000, 80), &[9; 100], 48, 77);
    let quoted_syn = QuotedFlow6 {
        proto: 6,
        src: CIP6,
        sport: 40000,
        dst: VIP6,
        dport: 80,
        l4_offset: 40,
    };
    let mut cut_chain = f6(&ip6_packet(&c2v.clone().ext(Ext::DestOpts(3)), &syn, b""));
    cut_chain.truncate(14 + 40 + 16);
    // The payload length is cut with the frame: a consistent packet whose
    // destination options header announces more than it has.
    cut_chain[14 + 4..14 + 6].copy_from_slice(&16u16.to_be_bytes());
    vec![
        Case {
            desc: "TCP SYN to the VIP",
            frame: f6(&syn6),
            want: flow(6, 40000, 80, 54),
            steer: true,
        },
        Case {
            desc: "UDP to another port",
            frame: f6(&ip6_packet(&c2v, &udp(5353, 53), b"q")),
            want: flow(17, 5353, 53, 54),
            steer: false,
        },
        Case {
            desc: "TCP behind hop-by-hop, routing and destination options",
            frame: f6(&ip6_packet(
                &c2v.clone()
                    .ext(Ext::HopByHop(1))
                    .ext(Ext::Routing(0))
                    .ext(Ext::DestOpts(2)),
                &syn,
                b"data",
            )),
            want: flow(6, 40000, 80, 54 + 16 + 8 + 24),
            steer: true,
        },
        Case {
            desc: "eight extension headers",
            frame: f6(&ip6_packet(&dests(8), &syn, b"")),
            want: flow(6, 40000, 80, 54 + 64),
            steer: true,
        },
        Case {
            desc: "nine extension headers",
            frame: f6(&ip6_packet(&dests(9), &syn, b"")),
            want: Reading::BadChain(ExtError::TooMany),
            steer: false,
        },
        Case {
            desc: "hop-by-hop after destination options",
            frame: f6(&ip6_packet(&dests(1).ext(Ext::HopByHop(0)), &syn, b"")),
            want: Reading::BadChain(ExtError::HopByHopNotFirst),
            steer: false,
        },
        Case {
            desc: "destination options longer than the packet",
            frame: cut_chain,
            want: Reading::BadChain(ExtError::Truncated),
            steer: false,
        },
        Case {
            desc: "a raw header announcing 2 KiB",
            frame: f6(&ip6_packet(
                &c2v.clone().ext(Ext::Raw {
                    kind: 60,
                    bytes: vec![0, 255, 0, 0, 0, 0, 0, 0],
                }),
                &syn,
                b"",
            )),
            want: Reading::BadChain(ExtError::Truncated),
            steer: false,
        },
        Case {
            desc: "fixed header cut short",
            frame: f6(&syn6)[..14 + 39].to_vec(),
            want: Reading::BadHeader(Error::Truncated),
            steer: false,
        },
        Case {
            desc: "payload length past the frame",
            frame: f6(&syn6)[..14 + 58].to_vec(),
            want: Reading::BadHeader(Error::Truncated),
            // As for IPv4, the program reads the headers it needs and no
            // length field: the ports are there, so the frame goes to the
            // pipeline, which drops it (counted) as malformed.
            steer: true,
        },
        Case {
            desc: "version 4 in an IPv6 frame",
            frame: f6(&{
                let mut p = syn6.clone();
                p[0] = 0x45;
                p
            }),
            want: Reading::BadHeader(Error::Malformed),
            steer: false,
        },
        Case {
            desc: "first fragment",
            frame: f6(&frags[0]),
            want: Reading::Fragment {
                first: true,
                proto: 17,
            },
            steer: false,
        },
        Case {
            desc: "last fragment",
            frame: f6(&frags[2]),
            want: Reading::Fragment {
                first: false,
                proto: 17,
            },
            steer: false,
        },
        Case {
            desc: "ESP",
            frame: f6(&ip6_raw(&c2v, 50, &[0; 24])),
            want: Reading::Other(50),
            steer: false,
        },
        Case {
            desc: "a NAT real server's reply",
            frame: f6(&reply),
            want: flow(6, 8080, 40000, 54),
            steer: true,
        },
        Case {
            desc: "packet too big about a flow to the VIP",
            frame: f6(&packet_too_big(DIR_IP6, VIP6, 1280, &syn6)),
            want: Reading::Icmp {
                msg_type: 2,
                quoted: Some(Ok(quoted_syn)),
            },
            steer: true,
        },
        Case {
            desc: "port unreachable from a NAT real server",
            frame: f6(&icmp6_error(rip6(1), CIP6, 1, 4, 0, &syn6)),
            want: Reading::Icmp {
                msg_type: 1,
                quoted: Some(Ok(quoted_syn)),
            },
            steer: true,
        },
        Case {
            desc: "time exceeded quoting a first fragment behind hop-by-hop",
            frame: f6(&icmp6_error(
                DIR_IP6,
                VIP6,
                3,
                0,
                0,
                &ip6_fragments(&c2v.clone().ext(Ext::HopByHop(0)), &syn, &[0; 64], 32, 5)[0],
            )),
            want: Reading::Icmp {
                msg_type: 3,
                quoted: Some(Ok(QuotedFlow6 {
                    l4_offset: 40 + 8 + 8,
                    ..quoted_syn
                })),
            },
            steer: true,
        },
        Case {
            desc: "parameter problem quoting 4 bytes of TCP",
            frame: f6(&icmp6_error(DIR_IP6, VIP6, 4, 0, 6, &syn6[..44])),
            want: Reading::Icmp {
                msg_type: 4,
                quoted: Some(Err(Error::Truncated)),
            },
            steer: true,
        },
        Case {
            desc: "echo request to the VIP",
            frame: f6(&icmp6_packet(&c2v, 128, 0, [0, 1, 0, 1], b"ping")),
            want: Reading::Icmp {
                msg_type: 128,
                quoted: None,
            },
            steer: false,
        },
        Case {
            desc: "neighbour solicitation",
            frame: f6(&icmp6_packet(
                &ip6(CIP6, "ff02::1:ff00:100".parse::<Ipv6Addr>().unwrap())
                    .with(|i| i.hop_limit = 255),
                135,
                0,
                [0; 4],
                &VIP6.octets(),
            )),
            want: Reading::Icmp {
                msg_type: 135,
                quoted: None,
            },
            steer: false,
        },
        Case {
            desc: "TCP to a link-local address",
            frame: f6(&ip6_packet(
                &ip6(CIP6, "fe80::100".parse().unwrap()),
                &syn,
                b"",
            )),
            want: flow(6, 40000, 80, 54),
            steer: false,
        },
    ]
}

#[test]
fn ipv6_frames_read_as_expected() {
    let mut failed = Vec::new();
    for c in cases() {
        let got = read(&c.frame);
        if got != c.want {
            failed.push(format!("{}: read {got:?}, want {:?}", c.desc, c.want));
        }
    }
    assert!(failed.is_empty(), "{failed:#?}");
}

#[test]
fn the_steering_program_agrees_with_the_table() {
    let mut s = Steering::load(1, None).expect("load the steering program (root)");
    s.add_service6(6, VIP6, 80).unwrap();
    s.add_nat6(6, rip6(1), 8080).unwrap();
    s.add_nat6(0, rip6(1), 0).unwrap();
    s.add_vip6(VIP6).unwrap();
    let mut failed = Vec::new();
    for c in cases() {
        // XDP_DROP (1): steered to a queue without a socket.
        let steered = s.test_run(&c.frame).expect("BPF_PROG_TEST_RUN") == 1;
        if steered != c.steer {
            failed.push(format!("{}: steered {steered}, want {}", c.desc, c.steer));
        }
    }
    assert!(failed.is_empty(), "{failed:#?}");
}

/// Every offset a reading gives is inside the frame.
fn check_bounds(frame: &[u8], r: &Reading) {
    if let Reading::Flow { at, .. } = r {
        assert!(
            at + 8 <= frame.len(),
            "flow at {at} in {} bytes",
            frame.len()
        );
    }
}

/// A small deterministic PRNG (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[test]
fn truncated_and_mutated_frames_never_panic() {
    let seeds: Vec<Vec<u8>> = cases().into_iter().map(|c| c.frame).collect();
    for s in &seeds {
        for n in 14..s.len() {
            let t = &s[..n];
            check_bounds(t, &read(t));
            let mut ip = t[14..].to_vec();
            complete_partial_ipv6(&mut ip);
        }
    }
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut kinds = std::collections::HashSet::new();
    for _ in 0..100_000u32 {
        let mut fr = seeds[(rng.next() % seeds.len() as u64) as usize].clone();
        match rng.next() % 3 {
            0 => {
                for _ in 0..1 + rng.next() % 4 {
                    let at = 14 + (rng.next() % (fr.len() as u64 - 14)) as usize;
                    fr[at] = rng.next() as u8;
                }
            }
            1 => {
                // The fixed header and the first extension headers.
                let at = 14 + (rng.next() % 72) as usize;
                if at < fr.len() {
                    fr[at] = rng.next() as u8;
                }
            }
            _ => fr.extend((0..rng.next() % 64).map(|_| rng.next() as u8)),
        }
        let r = read(&fr);
        check_bounds(&fr, &r);
        kinds.insert(std::mem::discriminant(&r));
        let mut ip = fr[14..].to_vec();
        complete_partial_ipv6(&mut ip);
    }
    // The mutations reached every kind of reading.
    assert_eq!(kinds.len(), 6, "{kinds:?}");
}
