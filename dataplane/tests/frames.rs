//! The whole pipeline frame by frame, as one table of cases (after
//! Katran's packet tests): each case is a description, a set-up, the
//! frames that go in (in order, with actions between them), the verdict
//! each must get and the frame that must come out, byte for byte, or a
//! named check where the exact bytes are not the point. One driver runs
//! them all, reports every failing case by its description with a hex
//! diff, and checks that every verdict was counted exactly once.
//!
//! Expected frames are built by `testkit::frame` from the fields they must
//! carry, never by the code under test. Below the table, two seeded loops
//! (every truncation, 100,000 mutations) show that no frame makes the
//! pipeline panic and that every drop is counted.

use std::panic::{catch_unwind, AssertUnwindSafe};
use xvs_dataplane::io::mem::MemPort;
use xvs_dataplane::io::Port;
use xvs_dataplane::pipeline::{DropReason, Verdict};
use xvs_dataplane::svc::Fwd;
use xvs_dataplane::testkit::frame::{
    assert_frame, encapsulated, eth, eth_typed, frame_diff, icmp_packet, ip, ip_packet, mtu_rest,
    quote, tcp, udp, Ip, L4,
};
use xvs_dataplane::testkit::{
    dr, rip, rs_mac, service_with, Fixture, CIP, CLIENT_MAC, DIR_IP, DIR_MAC, VIP,
};
use xvs_dataplane::xmit::tun::TunKind;

const S: u64 = 1_000_000_000;

// ------------------------------------------------------------------ table

/// A check of a transmitted frame, or of the fixture after a step.
type FrameCheck = Box<dyn Fn(&[u8]) -> Result<(), String>>;
type StateCheck = Box<dyn Fn(&Fixture) -> Result<(), String>>;

/// What must come out of a frame.
enum Out {
    /// Exactly these bytes.
    Frame(Vec<u8>),
    /// The input, untouched (passed to the kernel or dropped).
    Unchanged,
    /// Whatever satisfies the named check.
    Check(&'static str, FrameCheck),
}

enum Step {
    /// A frame in, its verdict and what must come out.
    Frame {
        input: Vec<u8>,
        verdict: Verdict,
        out: Out,
    },
    /// Something that happens between frames.
    Do(&'static str, Box<dyn Fn(&mut Fixture)>),
    /// A named check of the state after the frames so far.
    Check(&'static str, StateCheck),
}

/// The service a case runs against: round robin over servers forwarded
/// as `fwds` on VIP:80 (NAT servers listen on 8080), all resolved but
/// `unresolved`, with a table of `max_conns` entries.
struct Setup {
    fwds: Vec<(Fwd, TunKind)>,
    unresolved: Option<u8>,
    max_conns: usize,
}

fn servers(fwds: &[(Fwd, TunKind)]) -> Setup {
    Setup {
        fwds: fwds.to_vec(),
        unresolved: None,
        max_conns: 1000,
    }
}

struct Case {
    desc: &'static str,
    setup: Setup,
    steps: Vec<Step>,
}

fn case(desc: &'static str, setup: Setup) -> Case {
    Case {
        desc,
        setup,
        steps: Vec::new(),
    }
}

impl Case {
    fn frame(mut self, input: Vec<u8>, verdict: Verdict, out: Out) -> Case {
        self.steps.push(Step::Frame {
            input,
            verdict,
            out,
        });
        self
    }

    /// `input` is transmitted on port 0 as `want`.
    fn tx(self, input: Vec<u8>, want: Vec<u8>) -> Case {
        self.frame(input, Verdict::Tx(0), Out::Frame(want))
    }

    /// `input` goes to the kernel untouched.
    fn pass(self, input: Vec<u8>) -> Case {
        self.frame(input, Verdict::Pass, Out::Unchanged)
    }

    /// `input` is dropped for `reason`, untouched.
    fn drop(self, input: Vec<u8>, reason: DropReason) -> Case {
        self.frame(input, Verdict::Drop(reason), Out::Unchanged)
    }

    fn then(mut self, name: &'static str, f: impl Fn(&mut Fixture) + 'static) -> Case {
        self.steps.push(Step::Do(name, Box::new(f)));
        self
    }

    fn check(
        mut self,
        name: &'static str,
        f: impl Fn(&Fixture) -> Result<(), String> + 'static,
    ) -> Case {
        self.steps.push(Step::Check(name, Box::new(f)));
        self
    }
}

/// `Err` naming `what` unless `got == want`.
fn expect<T: PartialEq + std::fmt::Debug>(what: &str, got: T, want: T) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!("{what}: {got:?}, want {want:?}"))
    }
}

fn run_case(c: &Case) -> Result<(), String> {
    let svc = service_with("rr", &c.setup.fwds, c.setup.unresolved, 80, None);
    let mut f = Fixture::new(svc, c.setup.max_conns);
    let (mut tx, mut pass, mut drops) = (0u64, 0u64, [0u64; DropReason::COUNT]);
    for (i, step) in c.steps.iter().enumerate() {
        let at = |e: String| format!("step {i}: {e}");
        match step {
            Step::Frame {
                input,
                verdict,
                out,
            } => {
                let mut fr = input.clone();
                let v = catch_unwind(AssertUnwindSafe(|| f.pipeline.process(S, &mut fr)))
                    .map_err(|_| at("the pipeline panicked".into()))?;
                match v {
                    Verdict::Tx(_) => tx += 1,
                    Verdict::Pass => pass += 1,
                    Verdict::Drop(r) => drops[r as usize] += 1,
                }
                expect("verdict", v, *verdict).map_err(at)?;
                match out {
                    Out::Frame(want) => {
                        if let Some(d) = frame_diff(&fr, want) {
                            return Err(at(d));
                        }
                    }
                    Out::Unchanged => {
                        if let Some(d) = frame_diff(&fr, input) {
                            return Err(at(format!("the frame was changed: {d}")));
                        }
                    }
                    Out::Check(name, check) => {
                        check(&fr).map_err(|e| at(format!("{name}: {e}")))?
                    }
                }
            }
            Step::Do(name, action) => catch_unwind(AssertUnwindSafe(|| action(&mut f)))
                .map_err(|_| at(format!("{name}: panicked")))?,
            Step::Check(name, check) => check(&f).map_err(|e| at(format!("{name}: {e}")))?,
        }
    }
    let st = f.pipeline.stats();
    expect("frames counted as transmitted", st.tx, tx)?;
    expect("frames counted as passed", st.pass, pass)?;
    for r in DropReason::ALL {
        expect(
            &format!("drops counted as {}", r.name()),
            st.drops[r as usize],
            drops[r as usize],
        )?;
    }
    Ok(())
}

/// Run every case; fail listing each failing case by its description.
fn run(cases: Vec<Case>) {
    let n = cases.len();
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|c| run_case(c).err().map(|e| format!("case {:?}: {e}", c.desc)))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {n} cases failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

// --------------------------------------------------------------- builders

/// A frame client → VIP.
fn from_client(l4: L4, payload: &[u8]) -> Vec<u8> {
    from_client_ip(ip(CIP, VIP), l4, payload)
}

fn from_client_ip(h: Ip, l4: L4, payload: &[u8]) -> Vec<u8> {
    eth(CLIENT_MAC, DIR_MAC, &ip_packet(&h, &l4, payload))
}

/// What direct routing makes of `input` for real server `i`: the same
/// packet to the server's MAC from the director's.
fn dr_to(i: u8, input: &[u8]) -> Vec<u8> {
    eth(DIR_MAC, rs_mac(i), &input[14..])
}

/// The outer header the director's tunnels write for real server `i`
/// around a packet with TTL 64, TOS 0 and DF, with identification `ident`.
fn outer(i: u8, ident: u16) -> Ip {
    ip(DIR_IP, rip(i)).with(|h| h.ident = ident)
}

/// `input` (a frame from the client) tunnelled by `kind` to server `i`.
fn tun_to(kind: TunKind, i: u8, ident: u16, input: &[u8], gue_sport: u16) -> Vec<u8> {
    eth(
        DIR_MAC,
        rs_mac(i),
        &encapsulated(kind, &outer(i, ident), &input[14..], gue_sport),
    )
}

/// `input` with `f` applied to its bytes (a frame no builder would make).
fn mutate(input: &[u8], f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut v = input.to_vec();
    f(&mut v);
    v
}

fn no_conns(f: &Fixture) -> Result<(), String> {
    expect("connections", f.pipeline.table().iter().count(), 0)
}

const NAT: (Fwd, TunKind) = (Fwd::Nat, TunKind::Ipip);
const IPIP: (Fwd, TunKind) = (Fwd::Tun, TunKind::Ipip);
const DR: (Fwd, TunKind) = (Fwd::Dr, TunKind::Ipip);

// ------------------------------------------------------------------ cases

/// Frames that are not ours or not well formed: passed or dropped as
/// malformed, never a connection.
fn malformed_cases() -> Vec<Case> {
    let good = from_client(tcp(40000, 80).syn(), b"");
    let udp53 = eth(
        CLIENT_MAC,
        DIR_MAC,
        &ip_packet(&ip(CIP, VIP), &udp(5000, 53), b"hi"),
    );
    let malformed = DropReason::Malformed;
    let cut = |n: usize| good[..n].to_vec();
    let set = |at: usize, b: &[u8]| mutate(&good, |f| f[at..at + b.len()].copy_from_slice(b));
    let echo = eth(
        CLIENT_MAC,
        DIR_MAC,
        &icmp_packet(&ip(CIP, VIP), 8, 0, [0, 1, 0, 1], b"ping"),
    );
    let table: Vec<(&'static str, Vec<u8>, Option<DropReason>)> = vec![
        ("empty frame", vec![], Some(malformed)),
        ("truncated inside ethernet", cut(10), Some(malformed)),
        ("ethernet only", cut(14), Some(malformed)),
        ("truncated inside ipv4", cut(30), Some(malformed)),
        ("ipv4 without tcp", cut(34), Some(malformed)),
        ("truncated inside tcp", cut(44), Some(malformed)),
        ("IHL < 5", set(14, &[0x44]), Some(malformed)),
        ("IHL past the frame", set(14, &[0x4f]), Some(malformed)),
        (
            "total length larger than the frame",
            set(16, &1500u16.to_be_bytes()),
            Some(malformed),
        ),
        (
            "total length below the header",
            set(16, &10u16.to_be_bytes()),
            Some(malformed),
        ),
        (
            "IP version 6 in an IPv4 ethertype",
            set(14, &[0x65]),
            Some(malformed),
        ),
        (
            "ARP ethertype",
            eth_typed(CLIENT_MAC, DIR_MAC, 0x0806, &good[14..]),
            None,
        ),
        (
            "unknown ethertype",
            eth_typed(CLIENT_MAC, DIR_MAC, 0x88b5, &good[14..]),
            None,
        ),
        (
            "TCP data offset < 5",
            set(14 + 20 + 12, &[0x30]),
            Some(malformed),
        ),
        ("IP fragment", set(20, &0x2000u16.to_be_bytes()), None),
        (
            "ICMP protocol number on a TCP segment to the VIP",
            set(23, &[1]),
            None,
        ),
        ("ICMP echo request to the VIP", echo, None),
        (
            "truncated UDP header",
            mutate(&udp53, |f| {
                f.truncate(14 + 20 + 4);
                f[16..18].copy_from_slice(&24u16.to_be_bytes());
            }),
            Some(malformed),
        ),
        (
            "TCP to a port with no service",
            from_client(tcp(40000, 81).syn(), b""),
            None,
        ),
        (
            "UDP to a TCP-only VIP",
            from_client(udp(5000, 80), b"hi"),
            None,
        ),
        (
            "ACK with no connection",
            from_client(tcp(40001, 80).ack(1), b""),
            Some(DropReason::NoConn),
        ),
    ];
    table
        .into_iter()
        .map(|(desc, input, drop)| {
            let c = case(desc, servers(&dr(3)));
            let c = match drop {
                Some(r) => c.drop(input, r),
                None => c.pass(input),
            };
            c.check(
                "no connection from a frame that is not a new flow",
                no_conns,
            )
        })
        .collect()
}

fn dr_cases() -> Vec<Case> {
    let syn = from_client(tcp(40000, 80).syn(), b"");
    let ack = from_client(tcp(40000, 80).ack(1), b"");
    let data = from_client(tcp(40000, 80).ack(1), b"GET / HTTP/1.0\r\n\r\n");
    let inbytes = (syn.len() + ack.len() + data.len() - 3 * 14) as u64;

    // rr walks the list from the front (newest first): server 3 first.
    let mut spread = case("rr spreads new connections in list order", servers(&dr(3)));
    for i in 0..9u16 {
        let f = from_client(tcp(41000 + i, 80).syn(), b"");
        let to = [3, 2, 1][usize::from(i % 3)];
        spread = spread.tx(f.clone(), dr_to(to, &f));
    }
    spread = spread.check("three connections on each server", |f| {
        for i in 1..=3 {
            let d = f.dest(i);
            expect(&format!("server {i} conns"), d.stats.get().conns, 3)?;
            expect(&format!("server {i} inactive"), d.sched.load.inactive(), 3)?;
        }
        Ok(())
    });

    let syn1 = from_client(tcp(40000, 80).syn(), b"");
    let rst = from_client(tcp(40000, 80).rst(), b"");
    let table_full = |p: u16| from_client(tcp(p, 80).syn(), b"");
    let est = |p: u16, payload: &[u8]| from_client(tcp(p, 80).ack(1), payload);

    vec![
        case(
            "DR rewrites only the MACs and keeps a flow on one server",
            servers(&dr(3)),
        )
        .tx(syn.clone(), dr_to(3, &syn))
        .tx(ack.clone(), dr_to(3, &ack))
        .tx(data.clone(), dr_to(3, &data))
        .check("counters of the server and the service", move |f| {
            let d3 = f.dest(3).clone();
            expect("server 3 conns", d3.stats.get().conns, 1)?;
            expect("server 3 inpkts", d3.stats.get().inpkts, 3)?;
            expect("ACK established the connection", d3.sched.load.active(), 1)?;
            expect("service inpkts", f.svc.stats.get().inpkts, 3)?;
            expect("service inbytes", f.svc.stats.get().inbytes, inbytes)
        }),
        spread,
        case(
            "an unresolved next hop is a counted drop that asks for resolution",
            Setup {
                unresolved: Some(1),
                ..servers(&dr(1))
            },
        )
        .drop(syn.clone(), DropReason::NoNeigh)
        .check("resolution requested", |f| {
            expect("wanted", f.dest(1).neigh.take_wanted(), true)
        })
        .then("the MAC is learnt", |f| {
            f.dest(1).neigh.set(Some(rs_mac(1)))
        })
        .tx(syn.clone(), dr_to(1, &syn)),
        case(
            "a SYN on a closed connection is scheduled again",
            servers(&dr(2)),
        )
        .tx(syn1.clone(), dr_to(2, &syn1))
        .tx(ack.clone(), dr_to(2, &ack))
        .tx(rst.clone(), dr_to(2, &rst))
        .tx(syn1.clone(), dr_to(1, &syn1))
        .check("one connection, rebound", |f| {
            expect("connections", f.pipeline.table().iter().count(), 1)
        }),
        case(
            "a table full of established connections forwards new flows without an entry",
            Setup {
                max_conns: 2,
                ..servers(&dr(1))
            },
        )
        .tx(table_full(1), dr_to(1, &table_full(1)))
        .tx(est(1, b""), dr_to(1, &est(1, b"")))
        .tx(table_full(2), dr_to(1, &table_full(2)))
        .tx(est(2, b""), dr_to(1, &est(2, b"")))
        .tx(table_full(3), dr_to(1, &table_full(3)))
        .tx(est(3, b"x"), dr_to(1, &est(3, b"x")))
        .tx(est(1, b"x"), dr_to(1, &est(1, b"x")))
        .check("counted as stateless, nothing evicted", |f| {
            let s = f.pipeline.stats();
            expect("stateless", s.stateless, 2)?;
            expect("evicted", s.conns_evicted, 0)?;
            expect("entries", f.pipeline.table().iter().count(), 2)
        }),
        case(
            "a table full of half-open connections evicts one for a new connection",
            Setup {
                max_conns: 3,
                ..servers(&dr(1))
            },
        )
        .tx(table_full(1), dr_to(1, &table_full(1)))
        .tx(table_full(2), dr_to(1, &table_full(2)))
        .tx(table_full(3), dr_to(1, &table_full(3)))
        .tx(table_full(4), dr_to(1, &table_full(4)))
        .tx(est(4, b""), dr_to(1, &est(4, b"")))
        .check("one evicted, the new one kept", |f| {
            let s = f.pipeline.stats();
            expect("evicted", s.conns_evicted, 1)?;
            expect("stateless", s.stateless, 0)?;
            expect("entries", f.pipeline.table().iter().count(), 3)?;
            expect("active", f.dest(1).sched.load.active(), 1)?;
            expect("inactive", f.dest(1).sched.load.inactive(), 2)
        }),
    ]
}

fn nat_cases() -> Vec<Case> {
    let syn = tcp(5000, 80).syn();
    // The server's SYN-ACK and the translation the client must see.
    let synack = |sport: u16| tcp(sport, 5000).seq(77).syn().ack(1001);
    // The datagram a server-side error quotes, and its translation.
    let quoted = ip_packet(&ip(CIP, rip(1)).with(|h| h.ttl = 63), &tcp(5000, 8080), b"");
    let quoted_vip = ip_packet(&ip(CIP, VIP).with(|h| h.ttl = 63), &tcp(5000, 80), b"");
    let unreach = |src: [u8; 4], q: &[u8]| icmp_packet(&ip(src, CIP), 3, 3, [0; 4], &quote(q, 8));
    let data = from_client(tcp(5000, 80).ack(78), b"GET /");

    vec![case(
        "NAT rewrites both ways and translates an ICMP error from the server",
        servers(&[NAT]),
    )
    // Client → VIP:80 becomes client → RIP:8080, checksums valid.
    .tx(
        from_client(syn.clone(), b""),
        eth(
            DIR_MAC,
            rs_mac(1),
            &ip_packet(&ip(CIP, rip(1)), &syn.clone().ports(5000, 8080), b""),
        ),
    )
    // The reply RIP:8080 → client goes out as VIP:80 → client, to the MAC
    // the client's frame came from.
    .tx(
        eth(
            rs_mac(1),
            DIR_MAC,
            &ip_packet(&ip(rip(1), CIP), &synack(8080), b""),
        ),
        eth(
            DIR_MAC,
            CLIENT_MAC,
            &ip_packet(&ip(VIP, CIP), &synack(80), b""),
        ),
    )
    .tx(
        data.clone(),
        eth(
            DIR_MAC,
            rs_mac(1),
            &ip_packet(&ip(CIP, rip(1)), &tcp(5000, 8080).ack(78), b"GET /"),
        ),
    )
    // The server's port-unreachable about client → RIP:8080 reaches the
    // client as an error about client → VIP:80.
    .tx(
        eth(rs_mac(1), DIR_MAC, &unreach(rip(1), &quoted)),
        eth(DIR_MAC, CLIENT_MAC, &unreach(VIP, &quoted_vip)),
    )
    .check("one connection", |f| {
        expect("connections", f.pipeline.table().iter().count(), 1)
    })]
}

fn tun_cases() -> Vec<Case> {
    let syn = from_client(tcp(4000, 80).syn(), b"");
    // A full-size segment with DF cannot take 20 more bytes: the client
    // gets fragmentation-needed with MTU − 20, quoting the segment's IP
    // header and 8 bytes.
    let big_ip = ip(CIP, VIP);
    let big = from_client_ip(big_ip.clone(), tcp(4000, 80).ack(1), &[0u8; 1460]);
    let frag_needed = eth(
        DIR_MAC,
        CLIENT_MAC,
        &icmp_packet(
            &ip(VIP, CIP).with(|h| {
                h.tos = 0xc0;
                h.ident = 2;
                h.df = false;
            }),
            3,
            4,
            mtu_rest(1480),
            &quote(&big[14..], 8),
        ),
    );
    // Without DF, IPVS would fragment; one frame in, one out cannot.
    let big_no_df = from_client_ip(
        big_ip.with(|h| h.df = false),
        tcp(4000, 80).ack(1),
        &[0u8; 1460],
    );
    let gue = TunKind::Gue {
        port: 6080,
        checksum: true,
    };
    let gue_syn = syn.clone();
    vec![
        case(
            "TUN (IPIP) encapsulates and answers frag-needed when too big with DF",
            servers(&[IPIP]),
        )
        .tx(syn.clone(), tun_to(TunKind::Ipip, 1, 1, &syn, 0))
        .tx(big, frag_needed)
        .check("frag-needed counted", |f| {
            expect("frag_needed", f.pipeline.stats().frag_needed, 1)
        })
        .drop(big_no_df, DropReason::TooBig),
        case(
            "TUN (GRE) puts a GRE header in front",
            servers(&[(Fwd::Tun, TunKind::Gre)]),
        )
        .tx(syn.clone(), tun_to(TunKind::Gre, 1, 1, &syn, 0)),
        case(
            "TUN (GUE) puts UDP and GUE headers in front",
            servers(&[(Fwd::Tun, gue)]),
        )
        .frame(
            syn.clone(),
            Verdict::Tx(0),
            Out::Check(
                "GUE frame to port 6080 from a source port of the dynamic range",
                Box::new(move |got: &[u8]| {
                    let at = 14 + 20;
                    let sport = got
                        .get(at..at + 2)
                        .map(|p| u16::from_be_bytes([p[0], p[1]]))
                        .ok_or("too short")?;
                    if sport < 49152 {
                        return Err(format!("source port {sport}"));
                    }
                    let want = tun_to(gue, 1, 1, &gue_syn, sport);
                    frame_diff(got, &want).map_or(Ok(()), Err)
                }),
            ),
        ),
    ]
}

fn mixed_cases() -> Vec<Case> {
    let syn = |p: u16| from_client(tcp(p, 80).syn(), b"");
    let ack = |p: u16| from_client(tcp(p, 80).ack(1), b"x");
    let nat = |l4: L4, payload: &[u8]| {
        eth(
            DIR_MAC,
            rs_mac(3),
            &ip_packet(&ip(CIP, rip(3)), &l4, payload),
        )
    };
    // rr walks newest first: server 3 (NAT), 2 (TUN), 1 (DR); later packets
    // of each connection keep the method.
    vec![case(
        "a mixed service binds each connection to its server's method",
        servers(&[DR, IPIP, NAT]),
    )
    .tx(syn(1), nat(tcp(1, 8080).syn(), b""))
    .tx(syn(2), tun_to(TunKind::Ipip, 2, 1, &syn(2), 0))
    .tx(syn(3), dr_to(1, &syn(3)))
    .tx(ack(1), nat(tcp(1, 8080).ack(1), b"x"))
    .tx(ack(2), tun_to(TunKind::Ipip, 2, 2, &ack(2), 0))
    .tx(ack(3), dr_to(1, &ack(3)))]
}

/// Frames addressed to another host's unicast MAC (a promiscuous or
/// flooding link let them reach the socket): dropped as `other_host`,
/// never forwarded nor a connection, whatever the method; broadcast and
/// multicast destinations are forwarded as before.
fn other_host_cases() -> Vec<Case> {
    const OTHER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xee, 0x01];
    let to = |dst: [u8; 6], l4: L4| eth(CLIENT_MAC, dst, &ip_packet(&ip(CIP, VIP), &l4, b""));
    let syn = to(DIR_MAC, tcp(40000, 80).syn());
    let ack = to(DIR_MAC, tcp(40000, 80).ack(1));
    let mut cases = Vec::new();
    for (desc, fwd) in [
        (
            "DR: a SYN to another host's MAC is dropped as other_host",
            DR,
        ),
        (
            "NAT: a SYN to another host's MAC is dropped as other_host",
            NAT,
        ),
        (
            "TUN: a SYN to another host's MAC is dropped as other_host",
            IPIP,
        ),
    ] {
        cases.push(
            case(desc, servers(&[fwd]))
                .drop(to(OTHER_MAC, tcp(40000, 80).syn()), DropReason::OtherHost)
                .check("no connection", no_conns),
        );
    }
    cases.push(
        case(
            "DR: another host's copy of an established flow's segment is dropped",
            servers(&dr(1)),
        )
        .tx(syn.clone(), dr_to(1, &syn))
        .drop(to(OTHER_MAC, tcp(40000, 80).ack(1)), DropReason::OtherHost)
        .drop(
            to([0x02, 0, 0, 0, 0, 0x01], tcp(40000, 80).ack(1)),
            DropReason::OtherHost,
        )
        .tx(ack.clone(), dr_to(1, &ack))
        .check("the server saw two of the three segments", |f| {
            expect("server 1 inpkts", f.dest(1).stats.get().inpkts, 2)
        }),
    );
    let bcast = to([0xff; 6], tcp(40001, 80).syn());
    let mcast = to([0x01, 0, 0x5e, 0, 0, 1], tcp(40002, 80).syn());
    cases.push(
        case(
            "DR: broadcast and multicast destinations are forwarded as before",
            servers(&dr(1)),
        )
        .tx(bcast.clone(), dr_to(1, &bcast))
        .tx(mcast.clone(), dr_to(1, &mcast)),
    );
    cases
}

#[test]
fn pipeline_frame_by_frame() {
    let mut cases = malformed_cases();
    cases.extend(other_host_cases());
    cases.extend(dr_cases());
    cases.extend(nat_cases());
    cases.extend(tun_cases());
    cases.extend(mixed_cases());
    run(cases);
}

/// The driver itself: a wrong expectation fails, naming the case.
#[test]
fn the_driver_reports_a_wrong_frame_by_its_case() {
    let syn = from_client(tcp(1, 80).syn(), b"");
    let c = case("wrong server", servers(&dr(2))).tx(syn.clone(), dr_to(1, &syn));
    let e = run_case(&c).expect_err("server 2 is chosen first");
    assert!(e.contains("first difference at byte 5"), "{e}");
    let c = case("wrong count", servers(&dr(1))).pass(syn.clone());
    assert!(run_case(&c).unwrap_err().contains("verdict"));
}

/// The in-memory port tests and benches feed the pipeline through hands
/// on every verdict and every transmitted frame, in order, batch after
/// batch.
#[test]
fn the_in_memory_port_carries_verdicts_and_frames_in_order() {
    let mut f = Fixture::new(service_with("rr", &dr(3), None, 80, None), 1024);
    let mut port = MemPort::new();
    port.batch = 4;
    let (mut verdicts, mut sent) = (Vec::new(), Vec::new());
    for i in 0..9u16 {
        let syn = from_client(tcp(41000 + i, 80).syn(), b"");
        port.push(syn.clone());
        verdicts.push(Verdict::Tx(0));
        sent.push(dr_to([3, 2, 1][usize::from(i % 3)], &syn));
        port.push(from_client(tcp(41000 + i, 81).syn(), b""));
        verdicts.push(Verdict::Pass);
        port.push(syn[..30].to_vec());
        verdicts.push(Verdict::Drop(DropReason::Malformed));
    }
    while !port.rx.is_empty() {
        port.poll(0, |_, fr| f.pipeline.process(S, fr))
            .expect("mem poll");
    }
    assert_eq!(port.verdicts, verdicts);
    assert_eq!(port.tx_ports, vec![0; sent.len()]);
    assert_eq!(port.tx.len(), sent.len());
    for (i, (got, want)) in port.tx.iter().zip(&sent).enumerate() {
        assert_frame(&format!("transmitted frame {i}"), got, want);
    }
    let st = f.pipeline.stats();
    assert_eq!((st.tx, st.pass, st.drops[0]), (9, 9, 9));
}

// ------------------------------------------------------------- robustness

#[test]
fn every_truncation_of_a_valid_frame_is_handled() {
    let good = from_client(tcp(40000, 80).syn(), b"hello");
    let mut f = Fixture::new(service_with("rr", &dr(2), None, 80, None), 1024);
    for cut in 0..good.len() {
        let mut fr = good[..cut].to_vec();
        let v = f.pipeline.process(1, &mut fr);
        assert!(
            matches!(v, Verdict::Drop(_) | Verdict::Pass),
            "cut at {cut}: {v:?}"
        );
    }
    let drops: u64 = f.pipeline.stats().drops.iter().sum();
    assert_eq!(
        drops + f.pipeline.stats().pass,
        good.len() as u64,
        "every verdict counted"
    );
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
fn mutated_frames_never_panic_whatever_the_method() {
    let gue = (
        Fwd::Tun,
        TunKind::Gue {
            port: 6080,
            checksum: true,
        },
    );
    let mut f = Fixture::new(service_with("rr", &[DR, gue, NAT], None, 80, None), 1000);
    let p = &mut f.pipeline;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut seeds: Vec<Vec<u8>> = Vec::new();
    for port in 1..=6u16 {
        seeds.push(from_client(tcp(port, 80).syn(), b""));
        seeds.push(from_client(tcp(port, 80).ack(1), b"payload"));
    }
    // A reply of the NAT server, and its port-unreachable about a flow.
    seeds.push(eth(
        rs_mac(3),
        DIR_MAC,
        &ip_packet(&ip(rip(3), CIP), &tcp(8080, 3).seq(1).ack(1), b"r"),
    ));
    let quoted = ip_packet(&ip(CIP, rip(3)).with(|h| h.ttl = 63), &tcp(3, 8080), b"");
    seeds.push(eth(
        rs_mac(3),
        DIR_MAC,
        &icmp_packet(&ip(rip(3), CIP), 3, 3, [0; 4], &quote(&quoted, 8)),
    ));
    // Establish the connections the seeds belong to.
    for s in seeds.clone() {
        let mut fr = s;
        p.process(S, &mut fr);
    }
    let drops_before: u64 = p.stats().drops.iter().sum();
    let mut verdicts = [0u64; 3];
    for i in 0..100_000u64 {
        let mut fr = seeds[(rng.next() % seeds.len() as u64) as usize].clone();
        match rng.next() % 4 {
            0 => {
                let n = (rng.next() % fr.len() as u64) as usize;
                fr.truncate(n);
            }
            1 => {
                for _ in 0..1 + rng.next() % 4 {
                    let at = (rng.next() % fr.len() as u64) as usize;
                    fr[at] = rng.next() as u8;
                }
            }
            2 => {
                // Header bytes only (where parsing decides).
                let at = 12 + (rng.next() % 40) as usize;
                if at < fr.len() {
                    fr[at] = rng.next() as u8;
                }
            }
            _ => fr.extend((0..rng.next() % 64).map(|_| rng.next() as u8)),
        }
        match p.process(S + i, &mut fr) {
            Verdict::Tx(_) => verdicts[0] += 1,
            Verdict::Pass => verdicts[1] += 1,
            Verdict::Drop(_) => verdicts[2] += 1,
        }
    }
    assert!(
        verdicts.iter().all(|&n| n > 0),
        "every outcome reached: {verdicts:?}"
    );
    let drops: u64 = p.stats().drops.iter().sum();
    assert_eq!(drops - drops_before, verdicts[2], "every drop counted");
}

/// A tunnel that cannot be built is counted by why: a buffer that cannot
/// grow by the overhead, or an egress MTU smaller than the headers.
fn tun_failure_cases() -> Vec<Case> {
    use xvs_dataplane::frame::VEC_FRAME_MAX;
    use xvs_dataplane::pipeline::PortInfo;
    let syn = from_client(tcp(4100, 80).syn(), b"");
    // A jumbo segment that fills all but 10 bytes of its buffer: IPIP
    // needs 20 more.
    let jumbo = from_client(
        tcp(4100, 80).ack(1),
        &vec![0u8; VEC_FRAME_MAX - 10 - 14 - 20 - 20],
    );
    vec![
        case(
            "TUN: no tailroom for the outer header is no_tailroom",
            servers(&[IPIP]),
        )
        .tx(syn.clone(), tun_to(TunKind::Ipip, 1, 1, &syn, 0))
        // An MTU it fits under: past the MTU it would get
        // fragmentation-needed, which needs no tailroom.
        .then("egress MTU of 9000", |f| {
            f.pipeline.set_ports(vec![PortInfo {
                ifindex: 0,
                mac: DIR_MAC,
                mtu: 9000,
            }])
        })
        .drop(jumbo, DropReason::NoTailroom),
        case(
            "TUN: an egress MTU below the tunnel's needs is mtu_too_small",
            servers(&[IPIP]),
        )
        .then("egress MTU of 60", |f| {
            f.pipeline.set_ports(vec![PortInfo {
                ifindex: 0,
                mac: DIR_MAC,
                mtu: 60,
            }])
        })
        .drop(syn, DropReason::MtuTooSmall),
    ]
}

#[test]
fn tunnel_failures_are_counted_by_reason() {
    run(tun_failure_cases());
}
