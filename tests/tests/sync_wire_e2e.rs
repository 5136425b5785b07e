//! Connection sync on the wire, in namespaces, against the layouts of
//! shared/SYNC.md rather than against xvs's own encoder and decoder:
//!
//! - an xvsd master's datagrams, caught on the LAN and read byte by byte
//!   here (header, 36-byte records, flags with the forwarding method,
//!   states, timeouts, templates), for DR and NAT TCP connections, a TUN
//!   UDP flow and a persistent service's templates;
//! - an xvsd backup installing datagrams built here byte by byte, as a
//!   kernel master sends them (version 1 with and without options, version
//!   0), and listing them with `-Lnc`, a record for a real server the
//!   backup lacks among them (installed and listed, not under `-Ln`),
//!   and an IPv6 record installed into its IPv6 table, while a record for
//!   a service it lacks and an IPv6 firewall-mark template are counted;
//! - the resync extension: a backup started after the connections exist
//!   gets them from the master within seconds;
//! - IPv6: connections through an xvs master (2001:2::/48) reach an xvs
//!   backup by the resync and by the records sent as they happen.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use xvs_tests::daemon::Xvsd;
use xvs_tests::lan6::{self, addr6, endpoint6};
use xvs_tests::netns::{DrLan, Host, VIP};
use xvs_tests::node::{Holder, Lines};
use xvs_tests::rig;

const NODE: &str = env!("CARGO_BIN_EXE_xvs-node");
const UDP: &str = env!("CARGO_BIN_EXE_xvs-udp");
const GROUP: &str = "224.0.0.81";
/// The persistent service's address.
const VIP2: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 101);
/// The client's address for the NAT service.
const NAT_CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 30);

static NET: Mutex<()> = Mutex::new(());

fn net_lock() -> MutexGuard<'static, ()> {
    NET.lock().unwrap_or_else(|e| e.into_inner())
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex"))
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn ip(b: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3])
}

/// One IPv4 record as SYNC.md §1.3 lays it out.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Rec {
    protocol: u8,
    flags: u32,
    state: u16,
    cport: u16,
    vport: u16,
    dport: u16,
    fwmark: u32,
    timeout: u32,
    caddr: Ipv4Addr,
    vaddr: Ipv4Addr,
    daddr: Ipv4Addr,
}

/// Read a version 1 datagram of sync group `syncid`, checking the header
/// and every length on the way.
fn read_v1(d: &[u8], syncid: u8) -> Vec<Rec> {
    assert!(d.len() >= 8, "short datagram {}", hex(d));
    assert!(d.len() <= 1472, "datagram of {} bytes > maxlen", d.len());
    assert_eq!(d[0], 0, "reserved");
    assert_eq!(d[1], syncid, "syncid");
    assert_eq!(usize::from(be16(d, 2)), d.len(), "size");
    assert_eq!(d[5], 1, "version");
    assert_eq!(be16(d, 6), 0, "spare");
    let mut at = 8;
    let mut out = Vec::new();
    for _ in 0..d[4] {
        let r = &d[at..];
        assert_eq!(r[0], 0, "type: IPv4");
        let size = usize::from(be16(r, 2) & 0x0fff);
        assert_eq!(be16(r, 2) >> 12, 0, "record version");
        assert_eq!(size, 36, "no options from an xvs master");
        out.push(Rec {
            protocol: r[1],
            flags: be32(r, 4),
            state: be16(r, 8),
            cport: be16(r, 10),
            vport: be16(r, 12),
            dport: be16(r, 14),
            fwmark: be32(r, 16),
            timeout: be32(r, 20),
            caddr: ip(r, 24),
            vaddr: ip(r, 28),
            daddr: ip(r, 32),
        });
        at += (size + 3) & !3;
    }
    assert_eq!(at, d.len(), "the records fill the datagram");
    out
}

/// The listener's datagrams from `from` until `done` holds for the records
/// read so far, or `within` passed.
fn collect(
    l: &Lines,
    from: Ipv4Addr,
    syncid: u8,
    within: Duration,
    done: impl Fn(&[Rec]) -> bool,
) -> Vec<Rec> {
    let end = Instant::now() + within;
    let mut recs = Vec::new();
    while !done(&recs) {
        let left = end.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "timed out; records so far: {recs:#?}");
        let Some(line) = l.next_line(left) else {
            continue;
        };
        let mut w = line.split_whitespace();
        assert_eq!(w.next(), Some("dgram"), "{line}");
        let src = w.next().expect("source");
        if !src.starts_with(&format!("{from}:")) {
            continue;
        }
        recs.extend(read_v1(&unhex(w.next().expect("hex")), syncid));
    }
    recs
}

fn start_listener(h: &Host, port: u16) -> Lines {
    let l = Lines::spawn(
        &h.ns,
        &[
            UDP,
            "listen",
            "--port",
            &port.to_string(),
            "--group",
            GROUP,
            "--iface-addr",
            &h.ip.to_string(),
            "--duration-ms",
            "90000",
        ],
    );
    assert_eq!(
        l.next_line(Duration::from_secs(5)).as_deref(),
        Some("ready")
    );
    l
}

/// Send `n` UDP datagrams from one client socket to `to`.
fn udp_flow(h: &Host, to: &str, n: usize) {
    let payload = hex(b"sync test payload");
    let mut args = vec![UDP, "send", "--to", to, "--from"];
    let from = h.ip.to_string();
    args.push(&from);
    for _ in 0..n {
        args.push(&payload);
    }
    h.exec_ok(&args);
}

/// Wait until `f` holds, at most `within`.
fn wait_for(within: Duration, what: &str, mut f: impl FnMut() -> Option<String>) {
    let end = Instant::now() + within;
    loop {
        let r = f();
        match r {
            None => return,
            Some(last) if Instant::now() >= end => panic!("{what}: not within {within:?}:\n{last}"),
            Some(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

const TCP: u8 = 6;
const UDP_P: u8 = 17;
const DROUTE: u32 = 3;
const TUNNEL: u32 = 2;
const MASQ: u32 = 0;
const TEMPLATE: u32 = 0x1000;

#[test]
fn a_kernel_layout_receiver_reads_what_an_xvs_master_sends() {
    let _g = net_lock();
    let mut lan = DrLan::new();
    lan.add_vip(VIP2);
    let sync = lan.add_host("sync", Ipv4Addr::new(198, 18, 0, 50));
    let _servers = rig::serve_on(&lan.rs, 80, &[]);
    let listener = start_listener(&sync, 8848);

    let xvsd = Xvsd::start(&lan.director.ns, &[&lan.director.iface]);
    let dr = format!("{VIP}:80");
    let persist = format!("{VIP2}:80");
    xvsd.adm_ok(&["-A", "-t", &dr, "-s", "rr"]);
    xvsd.adm_ok(&["-A", "-t", &persist, "-s", "rr", "-p", "300"]);
    for h in &lan.rs {
        let rip = h.ip.to_string();
        xvsd.adm_ok(&["-a", "-t", &dr, "-r", &rip, "-g"]);
        xvsd.adm_ok(&["-a", "-t", &persist, "-r", &rip, "-g"]);
    }
    // NAT on one arm: the client's second address is routed back through
    // the director on rs1, so rs1's replies to it are translated.
    let nat = format!("{VIP}:8080");
    let tun = format!("{VIP}:6000");
    let rs1 = lan.rs[0].ip;
    lan.add_client_addrs(&[NAT_CLIENT]);
    lan.rs[0].exec_ok(&[
        "ip",
        "route",
        "add",
        &format!("{NAT_CLIENT}/32"),
        "via",
        &lan.director.ip.to_string(),
    ]);
    xvsd.adm_ok(&["-A", "-t", &nat, "-s", "rr"]);
    xvsd.adm_ok(&["-a", "-t", &nat, "-r", &format!("{rs1}:80"), "-m"]);
    xvsd.adm_ok(&["-A", "-u", &tun, "-s", "rr"]);
    xvsd.adm_ok(&["-a", "-u", &tun, "-r", &rs1.to_string(), "-i"]);
    let iface = lan.director.iface.clone();
    xvsd.adm_ok(&[
        "--start-daemon",
        "master",
        "--mcast-interface",
        &iface,
        "--syncid",
        "42",
    ]);
    assert_eq!(
        xvsd.adm_ok(&["-L", "--daemon"]),
        format!(
            "master sync daemon (mcast={iface}, syncid=42, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)\n"
        )
    );

    // Real TCP connections through the director (DR), to both services.
    for (target, n) in [(&dr, "6"), (&persist, "3")] {
        let out = lan.client.exec(&[
            NODE,
            "client",
            "--connect",
            target,
            "--count",
            n,
            "--timeout-ms",
            "3000",
        ]);
        assert!(out.status.success(), "{target}: {out:?}");
    }
    lan.client_source(VIP, Some(NAT_CLIENT));
    let out = lan.client.exec(&[
        NODE,
        "client",
        "--connect",
        &nat,
        "--count",
        "3",
        "--timeout-ms",
        "3000",
    ]);
    assert!(out.status.success(), "{nat}: {out:?}");
    lan.client_source(VIP, None);
    // The real servers cannot decapsulate (no ipip module here): a UDP
    // flow of five datagrams from one socket, the third of which syncs.
    udp_flow(&lan.client, &tun, 5);

    let client = lan.client.ip;
    let rips: BTreeSet<Ipv4Addr> = lan.rs.iter().map(|h| h.ip).collect();
    let want = |r: &Rec, vaddr: Ipv4Addr, vport: u16, proto: u8, fwd: u32| {
        (r.caddr == client || r.caddr == NAT_CLIENT)
            && r.vaddr == vaddr
            && r.vport == vport
            && r.protocol == proto
            && r.flags & 7 == fwd
    };
    let recs = collect(
        &listener,
        lan.director.ip,
        42,
        Duration::from_secs(20),
        |rs| {
            let conn = |v, p, proto, fwd| {
                rs.iter()
                    .any(|r| r.flags & TEMPLATE == 0 && want(r, v, p, proto, fwd))
            };
            conn(VIP, 80, TCP, DROUTE)
                && conn(VIP2, 80, TCP, DROUTE)
                && rs.iter().any(|r| r.flags & TEMPLATE != 0)
                && conn(VIP, 8080, TCP, MASQ)
                && conn(VIP, 6000, UDP_P, TUNNEL)
        },
    );
    for r in &recs {
        eprintln!("record: {r:?}");
        assert_eq!(r.flags & !0x3fff, 0, "no local-only flag bits: {r:?}");
        assert_eq!(r.flags & 0x40, 0, "HASHED is never sent: {r:?}");
        assert_eq!(r.fwmark, 0, "{r:?}");
        assert!(r.timeout > 0, "{r:?}");
        if r.flags & TEMPLATE != 0 {
            // <proto, caddr & mask, 0, vaddr, vport, daddr, dport>, the
            // persistence timeout, state NONE or ASSURED.
            assert_eq!((r.protocol, r.caddr, r.cport), (TCP, client, 0), "{r:?}");
            assert_eq!((r.vaddr, r.vport, r.dport), (VIP2, 80, 80), "{r:?}");
            assert!(rips.contains(&r.daddr), "{r:?}");
            assert!(r.timeout <= 300 && r.timeout >= 290, "{r:?}");
            assert!(r.state <= 1, "{r:?}");
        } else if r.protocol == TCP {
            assert!(r.cport >= 1024, "{r:?}");
            assert!(rips.contains(&r.daddr) && r.dport == 80, "{r:?}");
            let (caddr, fwd) = if r.vport == 8080 {
                (NAT_CLIENT, MASQ)
            } else {
                (client, DROUTE)
            };
            assert_eq!((r.caddr, r.flags & 7), (caddr, fwd), "{r:?}");
            // Only ESTABLISHED, FIN_WAIT, TIME_WAIT, CLOSE, CLOSE_WAIT.
            assert!([1, 4, 5, 6, 7].contains(&r.state), "{r:?}");
            assert!(r.flags & 0x100 == 0 || r.state != 1, "{r:?}");
        } else {
            assert_eq!(r.protocol, UDP_P, "{r:?}");
            assert_eq!(r.state, 0, "UDP has one state: {r:?}");
            assert_eq!((r.caddr, r.daddr, r.dport), (client, rs1, 6000), "{r:?}");
            assert_eq!(r.flags & 7, TUNNEL, "{r:?}");
        }
    }
    let stats = xvsd.adm_ok(&["-L", "--daemon", "--stats"]);
    assert!(stats.contains("datagrams_sent"), "{stats}");
    drop(xvsd);
}

/// How a kernel master writes a connection (SYNC.md §1).
#[derive(Clone, Copy)]
enum Form {
    /// A version 1 record: type 0 (36 bytes) or, for IPv6 addresses,
    /// type 1 (72 bytes), options after the fixed part.
    V1,
    /// A whole version 0 datagram of group `syncid` holding the one record
    /// (IPv4 only, no timeout, no options).
    V0 { syncid: u8 },
}

/// A TCP connection in ESTABLISHED with flags `flags`, from port `cport`
/// of `addrs[0]` (the client) to port 80 of `addrs[1]` (the virtual
/// address) and port 80 of `addrs[2]` (the real server), as a kernel
/// master writes it in form `form`, with `opts` after a v1 record's
/// fixed part; a v1 record's timeout is 600 s.
fn record(form: Form, cport: u16, addrs: [IpAddr; 3], flags: u32, opts: &[u8]) -> Vec<u8> {
    const ESTABLISHED: u16 = 1;
    let addrs: Vec<u8> = addrs
        .iter()
        .flat_map(|a| match a {
            IpAddr::V4(a) => a.octets().to_vec(),
            IpAddr::V6(a) => a.octets().to_vec(),
        })
        .collect();
    let ports: Vec<u8> = [cport, 80, 80]
        .iter()
        .flat_map(|p| p.to_be_bytes())
        .collect();
    match form {
        Form::V1 => {
            let kind = u8::from(addrs.len() == 3 * 16);
            let size = (24 + addrs.len() + opts.len()) as u16;
            [
                &[kind, TCP][..],
                &size.to_be_bytes(),
                &flags.to_be_bytes(),
                &ESTABLISHED.to_be_bytes(),
                &ports,
                &0u32.to_be_bytes(), // firewall mark
                &600u32.to_be_bytes(),
                &addrs,
                opts,
            ]
            .concat()
        }
        Form::V0 { syncid } => {
            assert!(opts.is_empty() && addrs.len() == 12, "v0: IPv4, no options");
            [
                &[1, syncid, 0, 28, 0, TCP][..],
                &ports,
                &addrs,
                &(flags as u16).to_be_bytes(),
                &ESTABLISHED.to_be_bytes(),
            ]
            .concat()
        }
    }
}

/// [`CLIENT`], [`VIP`] and real server `rip`, as [`record`] takes them.
fn v4(rip: Ipv4Addr) -> [IpAddr; 3] {
    [CLIENT.into(), VIP.into(), rip.into()]
}

/// [`CLIENT6`], [`VIP6`] and real server `rip`, as [`record`] takes them.
fn v6(rip: Ipv6Addr) -> [IpAddr; 3] {
    [CLIENT6.into(), VIP6.into(), rip.into()]
}

fn dgram_v1(syncid: u8, recs: &[Vec<u8>]) -> Vec<u8> {
    let mut d = vec![0, syncid, 0, 0, recs.len() as u8, 1, 0, 0];
    for (i, r) in recs.iter().enumerate() {
        d.extend_from_slice(r);
        while i + 1 < recs.len() && d.len() % 4 != 0 {
            d.push(0);
        }
    }
    let n = d.len() as u16;
    d[2..4].copy_from_slice(&n.to_be_bytes());
    d
}

/// An IPv6 template record of firewall mark 5: firewall-mark services
/// are IPv4's here, so a backup cannot install it.
fn rec_v1_ipv6_mark_template() -> Vec<u8> {
    let mut r = record(Form::V1, 0, v6(RIP6), DROUTE, &[]);
    r[1] = 0;
    r[4..8].copy_from_slice(&(DROUTE | TEMPLATE).to_be_bytes());
    r[8..10].copy_from_slice(&0u16.to_be_bytes());
    r[16..20].copy_from_slice(&5u32.to_be_bytes());
    r[40..56].copy_from_slice(&Ipv6Addr::from(5u128).octets());
    r
}

/// Counter `name` of the `-L --dataplane` listing `dp` (0 if absent).
fn counter(dp: &str, name: &str) -> u64 {
    dp.split_whitespace()
        .skip_while(|w| *w != name)
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// A client that never sent a packet here: only sync can know it.
const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 77);
/// The IPv6 one.
const CLIENT6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0x77);
/// The backup's IPv6 service's address.
const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0x100);
/// Its real server.
const RIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0x11);

#[test]
fn an_xvs_backup_installs_kernel_layout_datagrams() {
    let _g = net_lock();
    let mut lan = DrLan::new();
    let sync = lan.add_host("sync", Ipv4Addr::new(198, 18, 0, 50));
    let state = std::env::temp_dir().join(format!(
        "xvs-sync-{}-{}.state",
        lan.prefix,
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&state);
    let daemon_args: Vec<String> = [
        "--iface",
        &lan.director.iface,
        "--state-dir",
        &state.display().to_string(),
    ]
    .map(String::from)
    .to_vec();
    let xvsd = Xvsd::start_with(Some(&lan.director.ns), &daemon_args);
    let dr = format!("{VIP}:80");
    xvsd.adm_ok(&["-A", "-t", &dr, "-s", "rr"]);
    for h in &lan.rs {
        xvsd.adm_ok(&["-a", "-t", &dr, "-r", &h.ip.to_string(), "-g"]);
    }
    let dr6 = format!("[{VIP6}]:80");
    xvsd.adm_ok(&["-A", "-t", &dr6, "-s", "rr"]);
    xvsd.adm_ok(&["-a", "-t", &dr6, "-r", &format!("[{RIP6}]:80"), "-g"]);
    // An interface that does not exist: the kernel's ENODEV, nothing runs.
    let r = xvsd.adm(&["--start-daemon", "master", "--mcast-interface", "nosuch0"]);
    assert_eq!(
        (r.status.code(), String::from_utf8_lossy(&r.stderr).as_ref()),
        (Some(255), "No such device\n")
    );
    assert_eq!(xvsd.adm_ok(&["-L", "--daemon"]), "");
    let iface = lan.director.iface.clone();
    xvsd.adm_ok(&["--start-daemon", "backup", "--mcast-interface", &iface]);
    let r = xvsd.adm(&["--start-daemon", "backup", "--mcast-interface", &iface]);
    assert_eq!(
        (r.status.code(), String::from_utf8_lossy(&r.stderr).as_ref()),
        (Some(255), "Daemon has already run\n")
    );
    let [rs1, rs2, rs3] = [lan.rs[0].ip, lan.rs[1].ip, lan.rs[2].ip];

    // Options: an optional one of odd length (so the next record starts
    // after padding) and a persistence engine name without data.
    let odd = [0x40 | 9, 3, 0xaa, 0xbb, 0xcc];
    let name = [3, 3, b's', b'i', b'p'];
    let plain = dgram_v1(7, &[record(Form::V1, 40001, v4(rs1), DROUTE, &[])]);
    let with_opts = dgram_v1(
        7,
        &[
            record(Form::V1, 40002, v4(rs2), DROUTE | 0x40, &odd),
            record(Form::V1, 40003, v4(rs3), DROUTE, &name),
        ],
    );
    let v0 = record(Form::V0 { syncid: 7 }, 40004, v4(rs1), DROUTE, &[]);
    // A real server this backup does not have (installed all the same,
    // forwarded by the record's method), a service it does not have, an
    // IPv6 connection (installed into the IPv6 table) and an IPv6
    // firewall-mark template (marks are IPv4's here): the service it
    // lacks and the template are counted, not installed.
    let unknown = Ipv4Addr::new(198, 18, 0, 99);
    let mut other_svc = record(Form::V1, 40007, v4(rs1), DROUTE, &[]);
    other_svc[12..14].copy_from_slice(&443u16.to_be_bytes());
    let others = dgram_v1(
        7,
        &[
            record(Form::V1, 40006, v4(unknown), DROUTE, &[]),
            other_svc,
            record(Form::V1, 40008, v6(RIP6), DROUTE, &[]),
            rec_v1_ipv6_mark_template(),
        ],
    );
    // Malformed: the size field one byte short.
    let mut bad = dgram_v1(7, &[record(Form::V1, 40005, v4(rs1), DROUTE, &[])]);
    bad[3] -= 1;
    let to = format!("{GROUP}:8848");
    let from = sync.ip.to_string();
    let datagrams = [
        hex(&plain),
        hex(&with_opts),
        hex(&v0),
        hex(&bad),
        hex(&others),
    ];
    let mut args = vec![UDP, "send", "--to", &to, "--from", &from];
    args.extend(datagrams.iter().map(String::as_str));

    let want = [
        (40001, rs1),
        (40002, rs2),
        (40003, rs3),
        (40004, rs1),
        (40006, unknown),
    ];
    let mut sent = false;
    wait_for(Duration::from_secs(10), "the records in -Lnc", || {
        // The backup joined the group when --start-daemon returned; resend
        // until the entries show, in case the first ones raced the join.
        if !sent {
            sync.exec_ok(&args);
            sent = true;
        }
        let conns = xvsd.adm_ok(&["-Lnc"]);
        // An established TCP connection from, to and on these endpoints.
        let listed = |ends: [String; 3]| {
            conns.lines().any(|l| {
                let words: Vec<&str> = l.split_whitespace().collect();
                words.len() == 6
                    && words[0] == "TCP"
                    && words[2] == "ESTABLISHED"
                    && words[3..] == ends
            })
        };
        let v6 = listed([
            format!("[{CLIENT6}]:40008"),
            format!("[{VIP6}]:80"),
            format!("[{RIP6}]:80"),
        ]);
        let all = v6
            && want.iter().all(|(cport, rip)| {
                listed([
                    format!("{CLIENT}:{cport}"),
                    format!("{VIP}:80"),
                    format!("{rip}:80"),
                ])
            });
        (!all).then_some(conns)
    });
    let conns = xvsd.adm_ok(&["-Lnc"]);
    assert!(!conns.contains(":40005 "), "the malformed one: {conns}");
    assert!(!conns.contains(":40007 "), "another service's: {conns}");
    // The server it lacks is not listed under the service (as IPVS).
    let ln = xvsd.adm_ok(&["-Ln"]);
    assert!(!ln.contains(&unknown.to_string()), "{ln}");
    let dp = xvsd.adm_ok(&["-L", "--dataplane"]);
    let counter = |name: &str| counter(&dp, name);
    for name in ["unbound", "rejected_no_service", "rejected_family"] {
        assert_eq!(counter(name), 1, "{name} in {dp}");
    }
    // Parked until its destination was published (again if a worker
    // still ran the older snapshot when it came back).
    assert!(counter("parked") >= 1, "{dp}");
    // Version 1 records expire by the received timeout (600 s); version 0
    // carries none, so the backup's ESTABLISHED timeout (900 s) applies.
    for l in conns.lines().filter(|l| l.contains(&format!("{CLIENT}:"))) {
        let exp = l.split_whitespace().nth(1).expect("expire column");
        let (m, s) = exp.split_once(':').expect("mm:ss");
        let secs: u32 = m.parse::<u32>().unwrap() * 60 + s.parse::<u32>().unwrap();
        let full = if l.contains(":40004 ") { 900 } else { 600 };
        assert!((full - 20..=full).contains(&secs), "{l}");
    }
    let stats = xvsd.adm_ok(&["-L", "--daemon", "--stats"]);
    assert!(stats.contains(&format!("peer {}", sync.ip)), "{stats}");
    for line in ["datagrams_v0", "dropped_size_mismatch"] {
        assert!(
            stats.lines().any(|l| l.trim_start().starts_with(line)),
            "{line} in {stats}"
        );
    }
    // -S leaves the daemon out; the state file brings it back with xvsd.
    assert!(!xvsd.adm_ok(&["-S", "-n"]).contains("daemon"));
    let daemons = xvsd.adm_ok(&["-L", "--daemon"]);
    xvsd.stop();
    let xvsd = Xvsd::start_with(Some(&lan.director.ns), &daemon_args);
    assert_eq!(xvsd.adm_ok(&["-L", "--daemon"]), daemons);
    assert!(
        daemons.starts_with("backup sync daemon (mcast="),
        "{daemons}"
    );
    drop(xvsd);
    let _ = std::fs::remove_dir_all(&state);
}

#[test]
fn a_late_backup_gets_the_table_from_the_master() {
    let _g = net_lock();
    let mut lan = DrLan::new();
    let dir2 = lan.add_host("dir2", Ipv4Addr::new(198, 18, 0, 3));
    let _servers = rig::serve_on(&lan.rs, 80, &[]);
    let dr = format!("{VIP}:80");
    let rules = |x: &Xvsd| x.add_dr_service(&dr, "rr", &lan.rs);
    let master = Xvsd::start(&lan.director.ns, &[&lan.director.iface]);
    rules(&master);
    master.adm_ok(&[
        "--start-daemon",
        "master",
        "--mcast-interface",
        &lan.director.iface,
    ]);
    // Idle connections: two inbound packets each (SYN, ACK), so the
    // threshold rule (the third packet) never sends them.
    let holder = Holder::start(&lan.client.ns, NODE, &dr, 8, Duration::from_secs(10));
    assert_eq!(holder.held(), 8);
    let established = |x: &Xvsd| {
        x.adm_ok(&["-Lnc"])
            .lines()
            .filter(|l| l.contains(" ESTABLISHED ") && l.contains(&format!(" {VIP}:80 ")))
            .count()
    };
    wait_for(
        Duration::from_secs(5),
        "8 connections on the master",
        || (established(&master) != 8).then(|| master.adm_ok(&["-Lnc"])),
    );

    let backup = Xvsd::start(&dir2.ns, &[&dir2.iface]);
    rules(&backup);
    let started = Instant::now();
    backup.adm_ok(&["--start-daemon", "backup", "--mcast-interface", &dir2.iface]);
    wait_for(Duration::from_secs(10), "the backup has the 8", || {
        (established(&backup) != 8).then(|| backup.adm_ok(&["-Lnc"]))
    });
    eprintln!("resync: 8 connections in {:?}", started.elapsed());
    let stats = backup.adm_ok(&["-L", "--daemon", "--stats"]);
    assert!(stats.contains("resync_completed"), "{stats}");
    let mstats = master.adm_ok(&["-L", "--daemon", "--stats"]);
    assert!(
        mstats.contains(&format!("peer {}", dir2.ip)),
        "the master counts the requester: {mstats}"
    );
    holder.release(Duration::from_secs(10));
    drop(backup);
    drop(master);
}

#[test]
fn ipv6_connections_reach_a_backup_by_resync_and_by_sync() {
    let _g = net_lock();
    let mut lan = DrLan::new();
    let dir2 = lan.add_host("dir2", Ipv4Addr::new(198, 18, 0, 3));
    lan.enable_ipv6();
    let _servers = rig::serve_on(&lan.rs, 80, &["--bind", "::"]);
    let vip = endpoint6(lan6::VIP6, 80);
    let rules = |x: &Xvsd| {
        x.adm_ok(&["-A", "-t", &vip, "-s", "rr"]);
        for h in &lan.rs {
            x.adm_ok(&["-a", "-t", &vip, "-r", &endpoint6(addr6(h), 80), "-g"]);
        }
    };
    let master = Xvsd::start(&lan.director.ns, &[&lan.director.iface]);
    rules(&master);
    master.adm_ok(&[
        "--start-daemon",
        "master",
        "--mcast-interface",
        &lan.director.iface,
    ]);
    let v6_lines = |x: &Xvsd, state: &str| {
        x.adm_ok(&["-Lnc"])
            .lines()
            .filter(|l| l.contains(state) && l.contains(&format!(" {vip} ")))
            .count()
    };
    // Idle connections (SYN and ACK only: never sent by the threshold),
    // so only the resync can bring them to the backup.
    let holder = Holder::start(&lan.client.ns, NODE, &vip, 4, Duration::from_secs(10));
    assert_eq!(holder.held(), 4);
    wait_for(
        Duration::from_secs(5),
        "4 connections on the master",
        || (v6_lines(&master, " ESTABLISHED ") != 4).then(|| master.adm_ok(&["-Lnc"])),
    );

    let backup = Xvsd::start(&dir2.ns, &[&dir2.iface]);
    rules(&backup);
    backup.adm_ok(&["--start-daemon", "backup", "--mcast-interface", &dir2.iface]);
    wait_for(
        Duration::from_secs(10),
        "the resync's 4 on the backup",
        || (v6_lines(&backup, " ESTABLISHED ") != 4).then(|| backup.adm_ok(&["-Lnc"])),
    );

    // Complete connections now: their third packets and their FINs send
    // records as they happen.
    let out = lan.client.exec(&[
        NODE,
        "client",
        "--connect",
        &vip,
        "--count",
        "3",
        "--timeout-ms",
        "3000",
    ]);
    assert!(out.status.success(), "{vip}: {out:?}");
    wait_for(Duration::from_secs(10), "3 more on the backup", || {
        (v6_lines(&backup, "") < 7).then(|| backup.adm_ok(&["-Lnc"]))
    });
    let dp = backup.adm_ok(&["-L", "--dataplane"]);
    let counter = |name: &str| counter(&dp, name);
    assert!(counter("installed") >= 7, "{dp}");
    assert_eq!(counter("rejected_family"), 0, "{dp}");
    holder.release(Duration::from_secs(10));
    drop(backup);
    drop(master);
}
