//! A corpus of hostile frames, run through the whole pipeline once per
//! forwarding method (DR, NAT, TUN). A director faces whatever the wire
//! carries: truncated headers, lying length fields, options, fragments,
//! impossible TCP flag combinations, ICMP errors about flows that are not
//! ours, VLAN tags, jumbo frames. Each must get a definite verdict — sent
//! on to the right place, given to the kernel, or dropped for a counted
//! reason — never a panic, never a frame counted twice or not at all, and
//! a frame that is passed or dropped must leave untouched.
//!
//! Every case runs on a fresh pipeline (a TCP service VIP:80 and a UDP
//! service VIP:53 with one real server of the method under test), after
//! the set-up frames it needs (the connection an ICMP error or a reply
//! refers to). The corpus prints a summary (cases tried, verdicts, drops
//! by reason, per group) when run with `--nocapture`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};
use xvs_dataplane::conn::state::Timeouts;
use xvs_dataplane::pipeline::{DropReason, Pipeline, Verdict};
use xvs_dataplane::stats::Counters;
use xvs_dataplane::svc::{Fwd, SchedState, ServiceRt, Snapshot, SvcKey};
use xvs_dataplane::testkit::frame::{
    eth, eth_typed, icmp_packet, ip, ip_packet, mtu_rest, quote, tcp, udp, Ip, ACK, FIN, L4, PSH,
    RST, SYN,
};
use xvs_dataplane::testkit::{rip, rs_mac, service_with, CIP, CLIENT_MAC, DIR_MAC, VIP};
use xvs_dataplane::xmit::tun::TunKind;

const S: u64 = 1_000_000_000;
const ETH: usize = 14;
/// Client port of every flow in the corpus.
const CPORT: u16 = 40000;
/// TCP flags URG, ECE and CWR (the builders name the others).
const URG: u8 = 0x20;
const ALL_FLAGS: u8 = 0xff;

// ------------------------------------------------------------- fixtures

/// A forwarding method under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Dr,
    Nat,
    Tun,
}

const METHODS: [Method; 3] = [Method::Dr, Method::Nat, Method::Tun];

impl Method {
    fn fwd(self) -> (Fwd, TunKind) {
        match self {
            Method::Dr => (Fwd::Dr, TunKind::Ipip),
            Method::Nat => (Fwd::Nat, TunKind::Ipip),
            Method::Tun => (Fwd::Tun, TunKind::Ipip),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Method::Dr => "DR",
            Method::Nat => "NAT",
            Method::Tun => "TUN",
        }
    }
}

/// A pipeline with TCP VIP:80 and UDP VIP:53, both served by real server
/// 1 forwarded by `m` (a NAT server listens on 8080 for port 80).
fn pipeline(m: Method) -> Pipeline {
    let (tcp_svc, dests) = service_with("rr", &[m.fwd()], None, 80, None);
    let udp_svc = Arc::new(ServiceRt {
        id: 1,
        key: SvcKey::Addr {
            proto: 17,
            vip: IpAddr::V4(Ipv4Addr::from(VIP)),
            port: 53,
        },
        persist: None,
        stats: Arc::new(Counters::default()),
        sched: Arc::new(Mutex::new(SchedState::new(
            xvs_scheduler::new("rr", 0).expect("rr exists"),
            dests.clone(),
        ))),
    });
    let snap = Snapshot::new([tcp_svc, udp_svc], dests, [], Timeouts::default());
    Pipeline::new(Arc::new(snap), 1000, DIR_MAC)
}

// ------------------------------------------------------------- builders

fn from_client_ip(h: Ip, l4: L4, payload: &[u8]) -> Vec<u8> {
    eth(CLIENT_MAC, DIR_MAC, &ip_packet(&h, &l4, payload))
}

/// A TCP segment client → VIP:80 with `flags`.
fn seg(flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut l4 = tcp(CPORT, 80).flags(flags);
    if flags & ACK != 0 {
        l4 = l4.ack(1);
    }
    from_client_ip(ip(CIP, VIP), l4, payload)
}

fn syn() -> Vec<u8> {
    seg(SYN, b"")
}

fn data(payload: &[u8]) -> Vec<u8> {
    seg(ACK | PSH, payload)
}

/// A UDP datagram client → VIP:53.
fn dgram(payload: &[u8]) -> Vec<u8> {
    from_client_ip(ip(CIP, VIP), udp(CPORT, 53), payload)
}

/// The client's ICMP error (type 3, `code`) about `quoted`, a datagram it
/// received, quoting its header and `extra` bytes after it.
fn icmp_from_client(code: u8, quoted: &[u8], extra: usize) -> Vec<u8> {
    let rest = if code == 4 { mtu_rest(1400) } else { [0; 4] };
    eth(
        CLIENT_MAC,
        DIR_MAC,
        &icmp_packet(&ip(CIP, VIP), 3, code, rest, &quote(quoted, extra)),
    )
}

/// What the client got from VIP:80 (the datagram its errors quote).
fn reply_seen_by_client() -> Vec<u8> {
    ip_packet(&ip(VIP, CIP), &tcp(80, CPORT).ack(1).syn(), b"")
}

/// The NAT real server's reply to the client (before translation).
fn nat_reply(flags: u8, payload: &[u8]) -> Vec<u8> {
    eth(
        rs_mac(1),
        DIR_MAC,
        &ip_packet(&ip(rip(1), CIP), &tcp(8080, CPORT).flags(flags), payload),
    )
}

/// `frame` with `f` applied to its bytes.
fn mutate(frame: &[u8], f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut v = frame.to_vec();
    f(&mut v);
    v
}

/// The Internet checksum of `b` (even length).
fn csum(b: &[u8]) -> u16 {
    let mut s: u32 = b
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
        .sum();
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// Recompute the IPv4 header checksum of the packet at `l3` of `frame`.
fn fix_ip(frame: &mut [u8], l3: usize) {
    let ihl = usize::from(frame[l3] & 0x0f) * 4;
    frame[l3 + 10..l3 + 12].copy_from_slice(&[0, 0]);
    let c = csum(&frame[l3..l3 + ihl]);
    frame[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
}

/// `frame` with IPv4 total length `len` (checksum fixed), cut to it.
fn ip_len(frame: &[u8], len: usize) -> Vec<u8> {
    mutate(frame, |f| {
        f.truncate(ETH + len);
        f[ETH + 2..ETH + 4].copy_from_slice(&(len as u16).to_be_bytes());
        fix_ip(f, ETH);
    })
}

/// `frame` with its IPv4 flags and fragment offset field set to `v`.
fn frag(frame: &[u8], v: u16) -> Vec<u8> {
    mutate(frame, |f| {
        f[ETH + 6..ETH + 8].copy_from_slice(&v.to_be_bytes());
        fix_ip(f, ETH);
    })
}

/// The IPv4 packet of `frame` behind the VLAN tags `tags` (each a TPID and
/// a TCI).
fn vlan(frame: &[u8], tags: &[(u16, u16)]) -> Vec<u8> {
    let mut payload = Vec::new();
    for (i, &(_, tci)) in tags.iter().enumerate() {
        payload.extend_from_slice(&tci.to_be_bytes());
        let next = tags.get(i + 1).map_or(0x0800, |t| t.0);
        payload.extend_from_slice(&next.to_be_bytes());
    }
    payload.extend_from_slice(&frame[ETH..]);
    eth_typed(CLIENT_MAC, DIR_MAC, tags[0].0, &payload)
}

// ------------------------------------------------------------------ cases

/// Where a transmitted frame must go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    /// To real server 1 by the method (DR: unchanged IP to its MAC; NAT:
    /// rewritten to its address; TUN: an outer header to its address).
    ToServer,
    /// Back to the client (a translated NAT reply, or an ICMP
    /// fragmentation-needed), on the ingress port.
    ToClient,
    /// Given to the kernel untouched.
    Pass,
    /// Dropped untouched, for this reason.
    Drop(DropReason),
}

use Want::{Pass, ToClient, ToServer};

fn dropped(r: DropReason) -> Want {
    Want::Drop(r)
}

const MALFORMED: Want = Want::Drop(DropReason::Malformed);
const NO_CONN: Want = Want::Drop(DropReason::NoConn);

struct Case {
    group: &'static str,
    desc: String,
    method: Method,
    /// Frames sent first; each must be transmitted.
    setup: Vec<Vec<u8>>,
    input: Vec<u8>,
    want: Want,
}

/// Collects the cases of one group for one method.
struct Group<'a> {
    cases: &'a mut Vec<Case>,
    group: &'static str,
    method: Method,
}

impl Group<'_> {
    fn add(&mut self, desc: impl Into<String>, input: Vec<u8>, want: Want) {
        self.after(Vec::new(), desc, input, want);
    }

    fn after(&mut self, setup: Vec<Vec<u8>>, desc: impl Into<String>, input: Vec<u8>, want: Want) {
        self.cases.push(Case {
            group: self.group,
            desc: desc.into(),
            method: self.method,
            setup,
            input,
            want,
        });
    }
}

/// A valid frame to cut: its name, the frames it needs sent first, the
/// frame, and where it goes whole.
type Base = (&'static str, Vec<Vec<u8>>, Vec<u8>, Want);

/// Every frame cut at every length, and every header cut at every length
/// with the IPv4 length fields saying so (the frame is consistent, the
/// transport header or the quote is not all there).
fn truncations(g: &mut Group) {
    let m = g.method;
    let opts = from_client_ip(
        ip(CIP, VIP).with(|h| h.options = vec![1, 1, 1, 0]),
        tcp(CPORT, 80).syn().options(vec![2, 4, 5, 0xb4]),
        b"",
    );
    let icmp = icmp_from_client(3, &reply_seen_by_client(), 8);
    let mut bases: Vec<Base> = vec![
        ("TCP SYN", vec![], syn(), ToServer),
        ("TCP data", vec![syn()], data(b"hello"), ToServer),
        ("TCP SYN with IPv4 and TCP options", vec![], opts, ToServer),
        ("UDP datagram", vec![], dgram(b"query"), ToServer),
        ("ICMP error about a connection", vec![syn()], icmp, ToServer),
        (
            "802.1Q-tagged SYN",
            vec![],
            vlan(&syn(), &[(0x8100, 100)]),
            Pass,
        ),
    ];
    if m == Method::Nat {
        bases.push((
            "NAT reply",
            vec![syn()],
            nat_reply(SYN | ACK, b"hi"),
            ToClient,
        ));
    }
    for (name, setup, full, want_full) in bases {
        // The frame cut short (the IPv4 length fields then lie).
        let ipv4 = full[12..14] == [0x08, 0x00];
        for n in 0..full.len() {
            let want = if n < ETH || ipv4 { MALFORMED } else { Pass };
            g.after(
                setup.clone(),
                format!("{name} cut to {n} bytes"),
                full[..n].to_vec(),
                want,
            );
        }
        if !ipv4 {
            continue;
        }
        // A whole frame whose IPv4 packet ends early.
        let ihl = usize::from(full[ETH] & 0x0f) * 4;
        let total = full.len() - ETH;
        let proto = full[ETH + 9];
        for len in ihl..total {
            let l4 = len - ihl;
            let want = match proto {
                6 => {
                    let doff = usize::from(full[ETH + ihl + 12] >> 4) * 4;
                    if l4 < doff {
                        MALFORMED
                    } else {
                        want_full
                    }
                }
                // The UDP length field then exceeds the packet.
                17 => MALFORMED,
                // The quote loses its transport ports: not an error we
                // can match, so the kernel's.
                _ => Pass,
            };
            g.after(
                setup.clone(),
                format!("{name} with an IPv4 packet of {len} bytes"),
                ip_len(&full, len),
                want,
            );
        }
    }
}

fn bad_lengths(g: &mut Group) {
    let s = syn();
    let set = |at: usize, b: &[u8]| mutate(&s, |f| f[at..at + b.len()].copy_from_slice(b));
    for ihl in 0..5u8 {
        g.add(format!("IHL {ihl}"), set(ETH, &[0x40 | ihl]), MALFORMED);
    }
    g.add(
        "IHL 6 with no options (TCP header cut)",
        set(ETH, &[0x46]),
        MALFORMED,
    );
    g.add("IHL 15 past the frame", set(ETH, &[0x4f]), MALFORMED);
    g.add("IP version 0", set(ETH, &[0x05]), MALFORMED);
    g.add(
        "IP version 6 in an IPv4 frame",
        set(ETH, &[0x65]),
        MALFORMED,
    );
    for (desc, len) in [
        ("total length 0", 0u16),
        ("total length below the header", 19),
        ("total length of the header alone", 20),
        ("total length one past the frame", 41),
        ("total length 65535", 65535),
    ] {
        g.add(desc, set(ETH + 2, &len.to_be_bytes()), MALFORMED);
    }
    // A frame longer than its packet: the rest is Ethernet padding.
    let padded = mutate(&s, |f| f.resize(60, 0));
    g.add("minimum-size frame with padding", padded, ToServer);
    let trailer = mutate(&s, |f| f.extend_from_slice(&[0xa5; 200]));
    g.add("200 bytes of trailer after the packet", trailer, ToServer);
    for doff in 0..5u8 {
        g.add(
            format!("TCP data offset {doff}"),
            set(ETH + 20 + 12, &[doff << 4]),
            MALFORMED,
        );
    }
    g.add(
        "TCP data offset past the segment",
        set(ETH + 20 + 12, &[0xf0]),
        MALFORMED,
    );
    let d = dgram(b"0123456789");
    let udp_len = |n: u16| {
        mutate(&d, |f| {
            f[ETH + 24..ETH + 26].copy_from_slice(&n.to_be_bytes())
        })
    };
    g.add("UDP length 0", udp_len(0), MALFORMED);
    g.add("UDP length 7", udp_len(7), MALFORMED);
    g.add("UDP length past the packet", udp_len(19), MALFORMED);
    g.add("UDP length 65535", udp_len(65535), MALFORMED);
    // Shorter than the packet: the datagram is what the UDP length says;
    // the rest travels along as the IPv4 packet carries it.
    g.add("UDP length below the packet's", udp_len(12), ToServer);
    g.add("UDP with an empty payload", dgram(b""), ToServer);
    g.add(
        "UDP without a checksum",
        from_client_ip(ip(CIP, VIP), udp(CPORT, 53).no_csum(), b"q"),
        ToServer,
    );
}

fn ip_options(g: &mut Group) {
    let with = |opts: Vec<u8>| {
        from_client_ip(
            ip(CIP, VIP).with(|h| h.options = opts),
            tcp(CPORT, 80).syn(),
            b"",
        )
    };
    g.add(
        "IPv4 options: NOPs and end of list",
        with(vec![1, 1, 1, 0]),
        ToServer,
    );
    g.add(
        "IPv4 options: record route",
        with(vec![7, 7, 4, 0, 0, 0, 0, 0]),
        ToServer,
    );
    g.add(
        "IPv4 options: timestamp",
        with(vec![68, 12, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
        ToServer,
    );
    g.add(
        "IPv4 options: 40 bytes (the most)",
        with(vec![1; 40]),
        ToServer,
    );
    g.add(
        "IPv4 options: a length running past the header",
        with(vec![7, 200, 4, 0]),
        ToServer,
    );
    g.add(
        "IPv4 options on a UDP datagram",
        from_client_ip(
            ip(CIP, VIP).with(|h| h.options = vec![1; 8]),
            udp(CPORT, 53),
            b"q",
        ),
        ToServer,
    );
    g.after(
        vec![syn()],
        "IPv4 options on data of a connection",
        from_client_ip(
            ip(CIP, VIP).with(|h| h.options = vec![1; 12]),
            tcp(CPORT, 80).ack(1).flags(PSH),
            b"data",
        ),
        ToServer,
    );
}

fn fragments(g: &mut Group) {
    let s = from_client_ip(ip(CIP, VIP), tcp(CPORT, 80).syn(), &[7; 64]);
    let d = dgram(&[7; 64]);
    for (what, f) in [("TCP", &s), ("UDP", &d)] {
        g.add(format!("{what} first fragment"), frag(f, 0x2000), Pass);
        g.add(format!("{what} middle fragment"), frag(f, 0x2000 | 9), Pass);
        g.add(format!("{what} last fragment"), frag(f, 18), Pass);
        g.add(
            format!("{what} fragment with DF and MF"),
            frag(f, 0x6000),
            Pass,
        );
        g.add(
            format!("{what} fragment at the largest offset"),
            frag(f, 0x1fff),
            Pass,
        );
    }
    g.after(
        vec![syn()],
        "a fragment of a connection's flow",
        frag(&data(&[1; 32]), 0x2000),
        Pass,
    );
}

fn tcp_flags(g: &mut Group) {
    let new_flow = [
        ("SYN", SYN, ToServer),
        // IPVS schedules a SYN whatever else is set but RST; the real
        // server answers it as its stack sees fit.
        ("SYN+FIN", SYN | FIN, ToServer),
        ("SYN+ACK", SYN | ACK, ToServer),
        ("SYN+RST", SYN | RST, NO_CONN),
        ("all flags", ALL_FLAGS, NO_CONN),
        ("no flags", 0, NO_CONN),
        ("FIN", FIN, NO_CONN),
        ("RST", RST, NO_CONN),
        ("ACK", ACK, NO_CONN),
        ("FIN+PSH+URG", FIN | PSH | URG, NO_CONN),
        ("RST+ACK", RST | ACK, NO_CONN),
    ];
    for (desc, flags, want) in new_flow {
        g.add(format!("{desc}, no connection"), seg(flags, b""), want);
    }
    for (desc, flags) in [
        ("no flags", 0),
        ("SYN+FIN", SYN | FIN),
        ("SYN+RST", SYN | RST),
        ("FIN+PSH+URG", FIN | PSH | URG),
        ("all flags", ALL_FLAGS),
        ("RST", RST),
    ] {
        g.after(
            vec![syn()],
            format!("{desc} on a connection"),
            seg(flags, b"x"),
            ToServer,
        );
    }
}

fn icmp_errors(g: &mut Group) {
    let other = Ipv4Addr::new(198, 18, 5, 1);
    let stranger = ip_packet(&ip(other, CIP), &tcp(80, CPORT).ack(1), b"");
    g.add(
        "ICMP error to the VIP quoting a flow of another address",
        icmp_from_client(3, &stranger, 8),
        Pass,
    );
    let elsewhere = eth(
        CLIENT_MAC,
        DIR_MAC,
        &icmp_packet(
            &ip(CIP, other),
            3,
            3,
            [0; 4],
            &quote(&ip_packet(&ip(other, CIP), &udp(53, CPORT), b""), 8),
        ),
    );
    g.add("ICMP error between other hosts", elsewhere, Pass);
    g.add(
        "ICMP error about a VIP flow with no connection",
        icmp_from_client(3, &reply_seen_by_client(), 8),
        Pass,
    );
    g.after(
        vec![syn()],
        "ICMP error about a connection",
        icmp_from_client(4, &reply_seen_by_client(), 8),
        ToServer,
    );
    g.after(
        vec![syn()],
        "ICMP error about a connection, quoting 28 bytes of it",
        icmp_from_client(3, &reply_seen_by_client(), 28),
        ToServer,
    );
    let udp_reply = ip_packet(&ip(VIP, CIP), &udp(53, CPORT), b"answer");
    g.after(
        vec![dgram(b"q")],
        "ICMP port unreachable about a UDP connection",
        icmp_from_client(3, &udp_reply, 8),
        ToServer,
    );
    let opts_reply = ip_packet(
        &ip(VIP, CIP).with(|h| h.options = vec![1; 8]),
        &tcp(80, CPORT).ack(1),
        b"",
    );
    g.after(
        vec![syn()],
        "ICMP error quoting a header with options",
        icmp_from_client(3, &opts_reply, 8),
        ToServer,
    );
    let q = reply_seen_by_client();
    for extra in 0..8 {
        g.after(
            vec![syn()],
            format!("ICMP error quoting {extra} transport bytes"),
            icmp_from_client(3, &q, extra),
            Pass,
        );
    }
    let bad_quote = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut q = quote(&q, 8);
        f(&mut q);
        eth(
            CLIENT_MAC,
            DIR_MAC,
            &icmp_packet(&ip(CIP, VIP), 3, 3, [0; 4], &q),
        )
    };
    g.after(
        vec![syn()],
        "ICMP error quoting IHL 4",
        bad_quote(&|q| q[0] = 0x44),
        Pass,
    );
    g.after(
        vec![syn()],
        "ICMP error quoting an IHL past the message",
        bad_quote(&|q| q[0] = 0x4f),
        Pass,
    );
    g.after(
        vec![syn()],
        "ICMP error quoting IP version 6",
        bad_quote(&|q| q[0] = 0x65),
        Pass,
    );
    let icmp_in_icmp = ip_packet(&ip(VIP, CIP), &udp(0, 0), b"")
        .into_iter()
        .enumerate()
        .map(|(i, b)| if i == 9 { 1 } else { b })
        .collect::<Vec<_>>();
    g.add(
        "ICMP error about an ICMP message",
        icmp_from_client(3, &icmp_in_icmp, 8),
        Pass,
    );
    for (t, desc) in [(8u8, "echo request"), (0, "echo reply"), (13, "timestamp")] {
        g.add(
            format!("ICMP {desc} to the VIP"),
            eth(
                CLIENT_MAC,
                DIR_MAC,
                &icmp_packet(&ip(CIP, VIP), t, 0, [0, 1, 0, 1], b"ping"),
            ),
            Pass,
        );
    }
    g.add(
        "ICMP message of 4 bytes",
        ip_len(&icmp_from_client(3, &q, 8), 24),
        Pass,
    );
}

fn vlans(g: &mut Group) {
    let s = syn();
    g.add("802.1Q-tagged SYN", vlan(&s, &[(0x8100, 100)]), Pass);
    g.add(
        "802.1Q priority-tagged SYN (VLAN 0)",
        vlan(&s, &[(0x8100, 0x6000)]),
        Pass,
    );
    g.add(
        "QinQ (802.1ad) SYN",
        vlan(&s, &[(0x88a8, 10), (0x8100, 100)]),
        Pass,
    );
    g.add(
        "legacy QinQ (0x9100) SYN",
        vlan(&s, &[(0x9100, 10), (0x8100, 100)]),
        Pass,
    );
    g.add(
        "802.1Q tag and nothing after it",
        eth_typed(CLIENT_MAC, DIR_MAC, 0x8100, &[0, 100]),
        Pass,
    );
    g.after(
        vec![syn()],
        "802.1Q-tagged data of a connection",
        vlan(&data(b"x"), &[(0x8100, 100)]),
        Pass,
    );
}

fn jumbo(g: &mut Group) {
    let m = g.method;
    let big = [0x5a; 8958];
    let jumbo_data = data(&big[..8946]);
    assert_eq!(jumbo_data.len(), 9000);
    let jumbo_udp = dgram(&big);
    assert_eq!(jumbo_udp.len(), 9000);
    let no_df = |f: &[u8]| frag(f, 0);
    // A tunnel adds a header: past the 1500-byte MTU, a packet that may
    // not be fragmented gets fragmentation-needed back; one that may is
    // dropped (one frame in, one frame out: no fragmenting).
    let (df, nodf) = match m {
        Method::Tun => (ToClient, dropped(DropReason::TooBig)),
        _ => (ToServer, ToServer),
    };
    g.after(
        vec![syn()],
        "9000-byte TCP frame (DF)",
        jumbo_data.clone(),
        df,
    );
    g.after(
        vec![syn()],
        "9000-byte TCP frame (no DF)",
        no_df(&jumbo_data),
        nodf,
    );
    g.add("9000-byte UDP frame (DF)", jumbo_udp.clone(), df);
    g.add("9000-byte UDP frame (no DF)", no_df(&jumbo_udp), nodf);
    g.add(
        "9000-byte SYN (DF)",
        from_client_ip(ip(CIP, VIP), tcp(CPORT, 80).syn(), &big[..8946]),
        df,
    );
    let max = dgram(&[1; 65507]);
    g.add("65535-byte UDP packet", max, df);
}

/// Adds the cases of a group for the method it is given.
type GroupFn = fn(&mut Group);

/// The whole corpus.
fn corpus() -> Vec<Case> {
    let groups: [(&'static str, GroupFn); 8] = [
        ("truncated", truncations),
        ("bad lengths", bad_lengths),
        ("IPv4 options", ip_options),
        ("fragments", fragments),
        ("TCP flags", tcp_flags),
        ("ICMP errors", icmp_errors),
        ("VLAN tags", vlans),
        ("jumbo frames", jumbo),
    ];
    let mut cases = Vec::new();
    for (group, f) in groups {
        for method in METHODS {
            f(&mut Group {
                cases: &mut cases,
                group,
                method,
            });
        }
    }
    cases
}

// ----------------------------------------------------------------- driver

/// Verdicts seen, by kind: transmitted, passed, dropped by reason.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Tally {
    cases: u64,
    tx: u64,
    pass: u64,
    drops: [u64; DropReason::COUNT],
}

impl Tally {
    fn add(&mut self, v: Verdict) {
        match v {
            Verdict::Tx(_) => self.tx += 1,
            Verdict::Pass => self.pass += 1,
            Verdict::Drop(r) => self.drops[r as usize] += 1,
        }
    }
}

fn verdict_of(w: Want) -> Verdict {
    match w {
        ToServer | ToClient => Verdict::Tx(0),
        Pass => Verdict::Pass,
        Want::Drop(r) => Verdict::Drop(r),
    }
}

/// An IPv4 header at `l3` of `frame` whose checksum holds.
fn ipv4_at(frame: &[u8], l3: usize) -> Result<(Ipv4Addr, Ipv4Addr, u8), String> {
    let h = frame.get(l3..l3 + 20).ok_or("no IPv4 header")?;
    let ihl = usize::from(h[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([h[2], h[3]]));
    if h[0] >> 4 != 4 || ihl < 20 || frame.len() < l3 + total || total < ihl {
        return Err(format!("not a whole IPv4 packet: {:02x?}", h));
    }
    if csum(&frame[l3..l3 + ihl]) != 0 {
        return Err("IPv4 header checksum wrong".into());
    }
    let a = |i: usize| Ipv4Addr::new(h[i], h[i + 1], h[i + 2], h[i + 3]);
    Ok((a(12), a(16), h[9]))
}

/// Where the transmitted `out` went is where `want` says.
fn check_tx(m: Method, want: Want, out: &[u8]) -> Result<(), String> {
    if out.get(12..14) != Some(&[0x08, 0x00][..]) {
        return Err("transmitted frame is not IPv4".into());
    }
    let (_, dst, proto) = ipv4_at(out, ETH)?;
    let (mac, addr) = match want {
        ToServer => (rs_mac(1), if m == Method::Dr { VIP } else { rip(1) }),
        _ => (CLIENT_MAC, CIP),
    };
    if out[..6] != mac || dst != Ipv4Addr::from(addr) {
        return Err(format!(
            "sent to {:02x?} / {dst}, want {mac:02x?} / {}",
            &out[..6],
            Ipv4Addr::from(addr)
        ));
    }
    if want == ToServer && m == Method::Tun && proto != 4 {
        return Err(format!("tunnelled with protocol {proto}, want 4"));
    }
    Ok(())
}

/// Run one case; `Err` says what went wrong. Adds its verdict to `seen`.
fn run_case(c: &Case, seen: &mut Tally) -> Result<(), String> {
    let mut p = pipeline(c.method);
    let mut mine = Tally::default();
    for (i, s) in c.setup.iter().enumerate() {
        let mut fr = s.clone();
        let v = catch_unwind(AssertUnwindSafe(|| p.process(S, &mut fr)))
            .map_err(|_| format!("set-up frame {i}: the pipeline panicked"))?;
        mine.add(v);
        if !matches!(v, Verdict::Tx(_)) {
            return Err(format!("set-up frame {i}: {v:?}, want Tx"));
        }
    }
    let mut fr = c.input.clone();
    let v = catch_unwind(AssertUnwindSafe(|| p.process(S + 1, &mut fr)))
        .map_err(|_| "the pipeline panicked".to_string())?;
    mine.add(v);
    seen.add(v);
    if v != verdict_of(c.want) {
        return Err(format!("verdict {v:?}, want {:?}", c.want));
    }
    match c.want {
        ToServer | ToClient => check_tx(c.method, c.want, &fr)?,
        _ => {
            if fr != c.input {
                return Err("a frame passed or dropped was changed".into());
            }
        }
    }
    // Every frame counted once, under the verdict it got.
    let st = p.stats();
    let counted = Tally {
        cases: 0,
        tx: st.tx,
        pass: st.pass,
        drops: st.drops,
    };
    if counted != mine {
        return Err(format!("counted {counted:?}, verdicts {mine:?}"));
    }
    Ok(())
}

/// The summary table: per group, cases and verdicts, drops by reason.
fn summary(by_group: &BTreeMap<(usize, &'static str), Tally>) -> String {
    let reasons: Vec<DropReason> = DropReason::ALL
        .into_iter()
        .filter(|r| by_group.values().any(|t| t.drops[*r as usize] > 0))
        .collect();
    let mut s = format!("{:<14} {:>6} {:>6} {:>6}", "group", "cases", "tx", "pass");
    for r in &reasons {
        let _ = write!(s, " {:>16}", format!("drop:{}", r.name()));
    }
    s.push('\n');
    let mut total = Tally::default();
    let row = |name: &str, t: &Tally, s: &mut String| {
        let _ = write!(s, "{name:<14} {:>6} {:>6} {:>6}", t.cases, t.tx, t.pass);
        for r in &reasons {
            let _ = write!(s, " {:>16}", t.drops[*r as usize]);
        }
        s.push('\n');
    };
    for ((_, g), t) in by_group {
        row(g, t, &mut s);
        total.cases += t.cases;
        total.tx += t.tx;
        total.pass += t.pass;
        for (a, b) in total.drops.iter_mut().zip(t.drops) {
            *a += b;
        }
    }
    row("total", &total, &mut s);
    s
}

#[test]
fn hostile_frames_get_a_counted_verdict_and_never_a_panic() {
    let cases = corpus();
    let mut failures = Vec::new();
    let mut by_group: BTreeMap<(usize, &'static str), Tally> = BTreeMap::new();
    let mut order: Vec<&'static str> = Vec::new();
    let mut per_method = [0u64; 3];
    for c in &cases {
        if !order.contains(&c.group) {
            order.push(c.group);
        }
        let pos = order
            .iter()
            .position(|g| *g == c.group)
            .expect("just added");
        let t = by_group.entry((pos, c.group)).or_default();
        t.cases += 1;
        per_method[METHODS
            .iter()
            .position(|m| *m == c.method)
            .expect("a method")] += 1;
        if let Err(e) = run_case(c, t) {
            failures.push(format!("[{}] {} {}: {e}", c.group, c.method.name(), c.desc));
        }
    }
    println!(
        "hostile frames: {} cases (DR {}, NAT {}, TUN {}), {} failed\n{}",
        cases.len(),
        per_method[0],
        per_method[1],
        per_method[2],
        failures.len(),
        summary(&by_group)
    );
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    // The corpus covers what it says: every group, every method.
    assert_eq!(by_group.len(), 8);
    assert!(per_method.iter().all(|&n| n > 100), "{per_method:?}");
}

#[test]
fn the_driver_catches_a_wrong_verdict_and_a_changed_frame() {
    let mut t = Tally::default();
    let wrong = Case {
        group: "self-test",
        desc: "a SYN said to be dropped".into(),
        method: Method::Dr,
        setup: vec![],
        input: syn(),
        want: NO_CONN,
    };
    let e = run_case(&wrong, &mut t).unwrap_err();
    assert!(e.contains("verdict Tx(0)"), "{e}");
    let misrouted = Case {
        want: ToClient,
        ..wrong
    };
    let e = run_case(&misrouted, &mut t).unwrap_err();
    assert!(e.contains("sent to"), "{e}");
    assert_eq!((t.tx, t.pass), (2, 0));
}
