//! Direct routing end to end: a real client, a real xvsd on the director's
//! veth, three real servers, one bridge.
//!
//! The topology tests run on any root-capable machine; the control-only
//! test needs the `xvsd`/`xvsadm` binaries; the DR tests need a working
//! data plane (AF_XDP on veth, copy mode).

use std::sync::{Mutex, MutexGuard};

use xvs_tests::daemon::{Xvsd, XvsdExit};
use xvs_tests::listing::{self, ListedService};
use xvs_tests::netns::{self, DrLan, VIP};
use xvs_tests::node::{ClientSummary, Clients};
use xvs_tests::rig;

const NODE: &str = env!("CARGO_BIN_EXE_xvs-node");
const CONNS: u64 = 300;

/// Tests that run xvsd or push traffic take turns: on two cores, a busy
/// worker of one test would starve another test's clients into timeouts.
static NET: Mutex<()> = Mutex::new(());

fn net_lock() -> MutexGuard<'static, ()> {
    NET.lock().unwrap_or_else(|e| e.into_inner())
}

/// Fails fast (before building a topology) when xvsd/xvsadm are not built.
fn require_daemon_binaries() {
    xvs_tests::bin("xvsd");
    xvs_tests::bin("xvsadm");
}

/// Runs `count` sequential TCP connections from the client to `target`.
fn client_run(lan: &DrLan, target: &str, count: u64) -> ClientSummary {
    Clients::new(2000, 60_000, 10).run(&lan.client.ns, target, count)
}

fn service<'a>(l: &'a [ListedService], addr: &str) -> &'a ListedService {
    l.iter()
        .find(|s| s.addr == addr)
        .unwrap_or_else(|| panic!("service {addr} not listed: {l:?}"))
}

/// Stops xvsd and checks the clean-exit contract: every worker accounts for
/// all its frames, and the XDP program is gone from the interface.
fn stop_and_check_exit(xvsd: Xvsd, lan: &DrLan) -> XvsdExit {
    let exit = xvsd.stop();
    exit.assert_clean();
    for w in &exit.assert_frames_accounted() {
        assert!(w.total > 0, "worker {} owns no frames: {w:?}", w.worker);
    }
    assert!(
        !lan.director_has_xdp(),
        "XDP program still attached to {} after xvsd exited",
        lan.director.iface
    );
    exit
}

#[test]
fn topology_comes_up_real_servers_answer_and_is_cleaned_up() {
    let _g = net_lock();
    let names;
    {
        let lan = DrLan::new();
        names = lan.namespace_names();
        let listed = netns::list_netns();
        for n in &names {
            assert!(n.starts_with(&format!("{}-", lan.prefix)), "{n}");
            assert!(listed.contains(n), "namespace {n} missing");
        }
        for h in lan.hosts() {
            assert!(h.iface.len() <= 15 && h.port.len() <= 15);
            let queues = h.exec_ok(&["ls", &format!("/sys/class/net/{}/queues", h.iface)]);
            assert_eq!(
                queues.split_whitespace().collect::<Vec<_>>(),
                ["rx-0", "tx-0"]
            );
            let link = h.exec_ok(&["ip", "link", "show", &h.iface]);
            assert!(
                link.contains(&h.mac),
                "{} has not MAC {}: {link}",
                h.iface,
                h.mac
            );
            let v6 = h.exec_ok(&["ip", "-6", "addr", "show"]);
            assert!(v6.trim().is_empty(), "IPv6 still on in {}: {v6}", h.ns);
        }

        let _servers = rig::serve_on(&lan.rs, 80, &[]);
        for h in &lan.rs {
            let s = client_run(&lan, &format!("{}:80", h.ip), 5);
            assert_eq!((s.ok, s.failed), (5, 0), "{s:?}");
            assert_eq!(s.count(&h.role), 5, "{s:?}");
        }

        // UDP too (fresh source port per request).
        let udp =
            lan.rs[1].spawn_ready(&[NODE, "serve", "--name", "rs2u", "--port", "53", "--udp"]);
        let out = lan.client.exec(&[
            NODE,
            "client",
            "--udp",
            "--connect",
            &format!("{}:53", lan.rs[1].ip),
            "--count",
            "5",
            "--timeout-ms",
            "2000",
        ]);
        let s = ClientSummary::from_output(&out);
        assert_eq!((s.ok, s.count("rs2u")), (5, 5), "{s:?}");
        drop(udp);

        // The director alone owns the VIP on the wire: the client resolves
        // it to the director's MAC (real servers keep quiet: arp_ignore).
        lan.client
            .exec_ok(&["ping", "-c", "2", "-W", "2", &lan.director.ip.to_string()]);
        lan.client
            .exec_ok(&["ping", "-c", "1", "-W", "2", &VIP.to_string()]);
        let neigh = lan
            .client
            .exec_ok(&["ip", "neigh", "show", &VIP.to_string()]);
        assert!(
            neigh.contains(&lan.director.mac),
            "VIP resolves to {neigh:?}, not the director {}",
            lan.director.mac
        );
        assert!(!lan.director_has_xdp());
    }
    let listed = netns::list_netns();
    for n in &names {
        assert!(!listed.contains(n), "namespace {n} left behind");
    }
}

#[test]
fn topology_is_cleaned_up_after_a_panic() {
    let _g = net_lock();
    let mut names = Vec::new();
    let mut pid = 0;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let lan = DrLan::new();
        names = lan.namespace_names();
        let server = lan.rs[0].spawn_ready(&[NODE, "serve", "--name", "rs1", "--port", "80"]);
        pid = server.pid();
        // Leak the guard: the namespace guard must still kill what runs inside.
        std::mem::forget(server);
        panic!("deliberate panic inside a test topology");
    }));
    assert!(result.is_err());
    assert_eq!(names.len(), 6);
    let listed = netns::list_netns();
    for n in &names {
        assert!(!listed.contains(n), "namespace {n} left behind after panic");
    }
    // The leaked server was killed; it is a zombie at most (never reaped
    // since its Child was forgotten), never running.
    let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let running = state
        .rsplit_once(") ")
        .is_some_and(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X'));
    assert!(!running, "server {pid} survived its namespace: {state}");
}

#[test]
fn control_only_round_trip() {
    let xvsd = Xvsd::start_control_only();
    let code = |out: &std::process::Output| out.status.code();
    let stderr = |out: &std::process::Output| String::from_utf8_lossy(&out.stderr).into_owned();

    xvsd.adm_ok(&["-A", "-t", "198.18.0.100:80", "-s", "rr"]);
    let again = xvsd.adm(&["-A", "-t", "198.18.0.100:80", "-s", "rr"]);
    assert_eq!(code(&again), Some(255), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("Service already exists"),
        "{}",
        stderr(&again)
    );

    xvsd.adm_ok(&[
        "-a",
        "-t",
        "198.18.0.100:80",
        "-r",
        "198.18.0.11:80",
        "-g",
        "-w",
        "2",
    ]);
    xvsd.adm_ok(&["-a", "-t", "198.18.0.100:80", "-r", "198.18.0.12", "-g"]);
    let no_svc = xvsd.adm(&["-a", "-t", "198.18.0.100:81", "-r", "198.18.0.11:81", "-g"]);
    assert_eq!(code(&no_svc), Some(255), "{}", stderr(&no_svc));
    assert!(
        stderr(&no_svc).contains("Service not defined"),
        "{}",
        stderr(&no_svc)
    );

    let bad = xvsd.adm(&["-A", "-t", "not-an-address", "-s", "rr"]);
    assert_eq!(code(&bad), Some(2), "{}", stderr(&bad));

    // Byte-exact listing (the size= of the header is the daemon's own).
    let out = xvsd.adm_ok(&["-Ln"]);
    let mut lines = out.lines();
    assert!(lines
        .next()
        .unwrap_or_default()
        .starts_with("IP Virtual Server version 1.2.1 (size="));
    let rest: Vec<&str> = lines.collect();
    let row =
        |addr: &str, w: u32| format!("  -> {addr:<28} {:<7} {w:<6} {:<10} {:<10}", "Route", 0, 0);
    assert_eq!(
        rest,
        [
            "Prot LocalAddress:Port Scheduler Flags".to_owned(),
            "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn".to_owned(),
            "TCP  198.18.0.100:80 rr".to_owned(),
            row("198.18.0.11:80", 2),
            row("198.18.0.12:80", 1),
        ]
    );
    let svc = listing::parse(&out);
    assert_eq!(svc.len(), 1);
    assert_eq!(svc[0].dests.len(), 2);

    // Stats of a fresh service are all zero.
    let stats = listing::parse(&xvsd.adm_ok(&["-Ln", "--stats"]));
    let s = service(&stats, "198.18.0.100:80");
    assert_eq!(s.stats().expect("stats columns"), Default::default());

    // The socket can also come from XVS_SOCKET.
    let via_env = std::process::Command::new(xvs_tests::bin("xvsadm"))
        .arg("-Ln")
        .env("XVS_SOCKET", xvsd.socket())
        .output()
        .expect("run xvsadm");
    assert!(via_env.status.success(), "{}", stderr(&via_env));
    assert_eq!(String::from_utf8_lossy(&via_env.stdout), out);

    xvsd.adm_ok(&["-d", "-t", "198.18.0.100:80", "-r", "198.18.0.12:80"]);
    let gone = xvsd.adm(&["-d", "-t", "198.18.0.100:80", "-r", "198.18.0.12:80"]);
    assert_eq!(code(&gone), Some(255), "{}", stderr(&gone));
    assert!(
        stderr(&gone).contains("No such destination"),
        "{}",
        stderr(&gone)
    );
    xvsd.adm_ok(&["-D", "-t", "198.18.0.100:80"]);
    let no_such = xvsd.adm(&["-D", "-t", "198.18.0.100:80"]);
    assert_eq!(code(&no_such), Some(255), "{}", stderr(&no_such));
    assert!(
        stderr(&no_such).contains("No such service"),
        "{}",
        stderr(&no_such)
    );
    assert!(listing::parse(&xvsd.adm_ok(&["-Ln"])).is_empty());

    xvsd.stop().assert_clean();
}

/// Configures `sched` over rs1..rs3 with `weights`, pushes CONNS connections
/// through the VIP and checks the split and the stats.
fn dr_split(sched: &str, weights: [u64; 3], expect: [u64; 3], offloads: bool) {
    let _g = net_lock();
    require_daemon_binaries();
    let lan = DrLan::new();
    if !offloads {
        lan.tx_offload_off();
    }
    let _servers = rig::serve_on(&lan.rs, 80, &[]);
    let xvsd = Xvsd::start(&lan.director.ns, &[&lan.director.iface]);
    let vip = format!("{VIP}:80");
    xvsd.adm_ok(&["-A", "-t", &vip, "-s", sched]);
    for (h, w) in lan.rs.iter().zip(weights) {
        let rip = format!("{}:80", h.ip);
        xvsd.adm_ok(&["-a", "-t", &vip, "-r", &rip, "-g", "-w", &w.to_string()]);
    }
    assert!(
        lan.director_has_xdp(),
        "no XDP program on {}",
        lan.director.iface
    );

    let s = client_run(&lan, &vip, CONNS);
    assert_eq!((s.ok, s.failed), (CONNS, 0), "{s:?}");
    let got: Vec<u64> = lan.rs.iter().map(|h| s.count(&h.role)).collect();
    assert_eq!(got, expect, "{sched} split over rs1..rs3: {s:?}");

    let out = xvsd.adm_ok(&["-Ln", "--stats"]);
    let l = listing::parse(&out);
    let svc = service(&l, &vip);
    let total = svc
        .stats()
        .unwrap_or_else(|| panic!("no stats columns:\n{out}"));
    assert_eq!(total.conns, CONNS, "service Conns:\n{out}");
    // Each connection sends at least SYN, ACK, the request and FIN.
    assert!(total.in_pkts >= 4 * CONNS, "service InPkts:\n{out}");
    assert_eq!(total.out_pkts, 0, "DR sees no outbound packets:\n{out}");
    assert_eq!(total.out_bytes, 0, "DR sees no outbound bytes:\n{out}");
    let (mut sum_pkts, mut sum_bytes) = (0, 0);
    for (h, n) in lan.rs.iter().zip(expect) {
        let d = svc
            .dest(&format!("{}:80", h.ip))
            .unwrap_or_else(|| panic!("{} not listed:\n{out}", h.ip));
        let st = d
            .stats()
            .unwrap_or_else(|| panic!("no stats columns:\n{out}"));
        assert_eq!(st.conns, n, "Conns of {}:\n{out}", h.role);
        assert!(st.in_pkts >= 4 * n, "InPkts of {}:\n{out}", h.role);
        assert_eq!(st.out_pkts, 0, "OutPkts of {}:\n{out}", h.role);
        sum_pkts += st.in_pkts;
        sum_bytes += st.in_bytes;
    }
    assert_eq!(
        sum_pkts, total.in_pkts,
        "service InPkts = sum of dests:\n{out}"
    );
    assert_eq!(
        sum_bytes, total.in_bytes,
        "service InBytes = sum of dests:\n{out}"
    );

    // UDP too; the real servers answer from the VIP (bound to it).
    let vip_udp = format!("{VIP}:53");
    let bind = VIP.to_string();
    let _udp = rig::serve_on(&lan.rs, 53, &["--udp", "--bind", &bind]);
    xvsd.adm_ok(&["-A", "-u", &vip_udp, "-s", sched]);
    for (h, w) in lan.rs.iter().zip(weights) {
        let rip = format!("{}:53", h.ip);
        xvsd.adm_ok(&["-a", "-u", &vip_udp, "-r", &rip, "-g", "-w", &w.to_string()]);
    }
    let udp_run = |count: &str| {
        lan.client.exec(&[
            NODE,
            "client",
            "--udp",
            "--connect",
            &vip_udp,
            "--count",
            count,
            "--timeout-ms",
            "2000",
        ])
    };
    // The new destinations' MACs are resolved on first use: the first
    // datagram may be dropped (no_neigh) while resolution is requested.
    udp_run("3");
    let out = udp_run("30");
    let s = ClientSummary::from_output(&out);
    assert_eq!(
        (s.ok, s.failed),
        (30, 0),
        "UDP over DR: {s:?}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    stop_and_check_exit(xvsd, &lan);
}

#[test]
fn dr_rr_splits_evenly_and_counts_every_packet() {
    dr_split("rr", [1, 1, 1], [100, 100, 100], true);
}

/// The one test whose hosts send complete checksums (TX checksum offload
/// off): what every test ran with before the director completed partial
/// ones.
#[test]
fn dr_wrr_follows_weights_offloads_off() {
    dr_split("wrr", [3, 2, 1], [150, 100, 50], false);
}

#[test]
fn director_own_traffic_reaches_its_kernel_and_exit_is_clean() {
    let _g = net_lock();
    require_daemon_binaries();
    let lan = DrLan::new();
    let _servers = rig::serve_on(&lan.rs, 80, &[]);
    let dip = lan.director.ip.to_string();
    let _own = lan.director.spawn_ready(&[
        NODE, "serve", "--name", "director", "--port", "2222", "--bind", &dip,
    ]);
    let xvsd = Xvsd::start(&lan.director.ns, &[&lan.director.iface]);
    let vip = format!("{VIP}:80");
    xvsd.adm_ok(&["-A", "-t", &vip, "-s", "rr"]);
    for h in &lan.rs {
        xvsd.adm_ok(&["-a", "-t", &vip, "-r", &format!("{}:80", h.ip), "-g"]);
    }
    assert!(
        lan.director_has_xdp(),
        "no XDP program on {}",
        lan.director.iface
    );

    // Not VIP traffic: the XDP program must pass it to the kernel.
    let ping = lan
        .client
        .exec(&["ping", "-c", "3", "-i", "0.2", "-W", "2", &dip]);
    assert!(
        ping.status.success(),
        "ping to the director's own address failed:\n{}",
        String::from_utf8_lossy(&ping.stdout)
    );
    let s = client_run(&lan, &format!("{dip}:2222"), 20);
    assert_eq!((s.ok, s.count("director")), (20, 20), "{s:?}");

    // And VIP traffic still flows alongside.
    let s = client_run(&lan, &vip, 30);
    assert_eq!(s.ok, 30, "{s:?}");

    stop_and_check_exit(xvsd, &lan);

    // With xvsd gone, the director's kernel still answers.
    lan.client.exec_ok(&["ping", "-c", "1", "-W", "2", &dip]);
}
