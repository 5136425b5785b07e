//! NAT and TUN forwarding end to end, with real TCP/UDP clients and servers
//! and a real xvsd:
//!
//! * NAT: the director has an interface on the client segment and one on the
//!   server segment (its kernel does not forward: `ip_forward=0`), the real
//!   servers route back through it; TCP with port mapping (VIP:80 → RIP:8080)
//!   and UDP request/response, replies really pass back through xvsd.
//! * TUN: the DR LAN with a user-space IPIP/GUE decapsulator on each real
//!   server (this kernel has no ipip module); real TCP connections and UDP
//!   exchanges complete.
//! * A mixed service with one real server of each method.
//!
//! Every host keeps the kernel's default offloads: clients and servers
//! send partial checksums, which xvsd completes.

use std::sync::{Mutex, MutexGuard};

use xvs_tests::daemon::Xvsd;
use xvs_tests::lans::{NatLan, TunLan, TunType, GUE_PORT, NAT_VIP};
use xvs_tests::listing;
use xvs_tests::netns::VIP;
use xvs_tests::node::{ClientSummary, Clients};
use xvs_tests::rig;

static NET: Mutex<()> = Mutex::new(());

fn net_lock() -> MutexGuard<'static, ()> {
    NET.lock().unwrap_or_else(|e| e.into_inner())
}

fn client(ns: &str, target: &str, count: u64, udp: bool) -> ClientSummary {
    Clients::new(3000, 60_000, 10)
        .udp(udp)
        .run(ns, target, count)
}

fn stop_clean(xvsd: Xvsd) -> String {
    let exit = xvsd.stop();
    exit.assert_clean();
    exit.assert_frames_accounted();
    exit.stderr
}

#[test]
fn nat_tcp_with_port_mapping_and_udp_replies_pass_back_through_the_director() {
    let _g = net_lock();
    let lan = NatLan::new();
    let vip = NAT_VIP.to_string();
    // TCP servers on 8080 (the service maps 80 -> 8080), UDP servers on 53.
    let mut servers = Vec::new();
    for h in &lan.rs {
        servers.push(rig::serve(h, 8080, &[]));
        servers.push(rig::serve(h, 53, &["--udp"]));
    }
    let xvsd = Xvsd::start(
        &lan.director.ns,
        &[&lan.director.iface, &lan.director_rs.iface],
    );
    xvsd.adm_ok(&["-A", "-t", &format!("{vip}:80"), "-s", "rr"]);
    xvsd.adm_ok(&["-A", "-u", &format!("{vip}:53"), "-s", "rr"]);
    for h in &lan.rs {
        xvsd.adm_ok(&[
            "-a",
            "-t",
            &format!("{vip}:80"),
            "-r",
            &format!("{}:8080", h.ip),
            "-m",
        ]);
        xvsd.adm_ok(&[
            "-a",
            "-u",
            &format!("{vip}:53"),
            "-r",
            &format!("{}:53", h.ip),
            "-m",
        ]);
    }
    let tcp = client(&lan.client.ns, &format!("{vip}:80"), 30, false);
    assert_eq!(tcp.ok, 30, "every NAT'd TCP exchange completes: {tcp:?}");
    for h in &lan.rs {
        assert_eq!(tcp.count(&h.role), 10, "rr over 3 NAT servers: {tcp:?}");
    }
    let udp = client(&lan.client.ns, &format!("{vip}:53"), 30, true);
    assert_eq!(
        udp.ok, 30,
        "every NAT'd UDP request gets its reply: {udp:?}"
    );
    for h in &lan.rs {
        assert_eq!(
            udp.count(&h.role),
            10,
            "rr over 3 NAT servers (UDP): {udp:?}"
        );
    }
    let stats = xvsd.adm_ok(&["-Ln", "--stats", "--exact"]);
    let listed = listing::parse(&stats);
    let svc = listed
        .iter()
        .find(|s| s.addr == format!("{vip}:80"))
        .unwrap_or_else(|| panic!("no TCP service in {stats}"));
    let st = listing::Stats::from_fields(&svc.fields).expect("stats listed");
    assert_eq!(st.conns, 30);
    assert!(st.out_pkts >= 30 * 3, "replies counted as OutPkts: {stats}");
    let listing_text = xvsd.adm_ok(&["-Ln"]);
    assert!(listing_text.contains("Masq"), "{listing_text}");
    stop_clean(xvsd);
}

fn tun_run(tun: TunType, extra: &[&str]) {
    let _g = net_lock();
    let lan = TunLan::new(tun);
    let bind = VIP.to_string();
    let servers: Vec<_> = lan
        .rs
        .iter()
        .flat_map(|h| {
            [
                rig::serve(h, 80, &[]),
                // UDP answers must leave from the VIP: bound to it.
                rig::serve(h, 53, &["--udp", "--bind", &bind]),
            ]
        })
        .collect();
    let xvsd = Xvsd::start(&lan.director.ns, &[&lan.director.iface]);
    let svc = format!("{VIP}:80");
    xvsd.adm_ok(&["-A", "-t", &svc, "-s", "rr"]);
    for h in &lan.rs {
        let mut args = vec!["-a", "-t", &svc, "-r"];
        let rip = h.ip.to_string();
        args.push(&rip);
        args.push("-i");
        args.extend_from_slice(extra);
        xvsd.adm_ok(&args);
    }
    let sum = client(&lan.client.ns, &svc, 30, false);
    assert_eq!(
        sum.ok, 30,
        "every tunnelled TCP connection completes: {sum:?}"
    );
    for h in &lan.rs {
        assert_eq!(sum.count(&h.role), 10, "{sum:?}");
    }
    for i in 0..lan.rs.len() {
        assert!(
            lan.decapsulated(i) >= 10 * 4,
            "rs{} decapsulated {}",
            i + 1,
            lan.decapsulated(i)
        );
    }
    let udp_svc = format!("{VIP}:53");
    xvsd.adm_ok(&["-A", "-u", &udp_svc, "-s", "rr"]);
    for h in &lan.rs {
        let rip = h.ip.to_string();
        let mut args = vec!["-a", "-u", &udp_svc, "-r", &rip, "-i"];
        args.extend_from_slice(extra);
        xvsd.adm_ok(&args);
    }
    // The new destinations' MACs are resolved on first use: the first
    // datagram may be dropped (no_neigh) while resolution is requested.
    client(&lan.client.ns, &udp_svc, 3, true);
    let udp = client(&lan.client.ns, &udp_svc, 30, true);
    assert_eq!(
        udp.ok, 30,
        "every tunnelled UDP request is answered: {udp:?}"
    );
    for h in &lan.rs {
        assert_eq!(udp.count(&h.role), 10, "{udp:?}");
    }
    let l = xvsd.adm_ok(&["-Ln"]);
    assert!(l.contains("Tunnel"), "{l}");
    drop(servers);
    stop_clean(xvsd);
}

#[test]
fn tun_ipip_tcp_connections_complete_through_a_decapsulator() {
    tun_run(TunType::Ipip, &[]);
}

#[test]
fn tun_gue_tcp_connections_complete_through_a_decapsulator() {
    let port = GUE_PORT.to_string();
    tun_run(
        TunType::Gue { port: GUE_PORT },
        &["--tun-type", "gue", "--tun-port", &port],
    );
}

#[test]
fn one_service_mixes_dr_tun_and_nat_and_each_connection_keeps_its_method() {
    let _g = net_lock();
    // The TUN LAN: rs1 DR, rs2 TUN (decapsulator running on every rs), rs3
    // NAT (its replies must come back through the director: route the
    // client's segment via the director on rs3 and let it answer from its
    // own address).
    let lan = TunLan::new(TunType::Ipip);
    let servers: Vec<_> = lan.rs.iter().map(|h| rig::serve(h, 80, &[])).collect();
    // rs3 reaches the client through the director (host route), so NAT
    // replies pass back through xvsd.
    let dir_ip = lan.director.ip.to_string();
    let client_ip = format!("{}/32", lan.client.ip);
    lan.rs[2].exec_ok(&["ip", "route", "add", &client_ip, "via", &dir_ip]);
    let xvsd = Xvsd::start(&lan.director.ns, &[&lan.director.iface]);
    let svc = format!("{VIP}:80");
    xvsd.adm_ok(&["-A", "-t", &svc, "-s", "rr"]);
    let (r1, r2, r3) = (
        lan.rs[0].ip.to_string(),
        lan.rs[1].ip.to_string(),
        lan.rs[2].ip.to_string(),
    );
    xvsd.adm_ok(&["-a", "-t", &svc, "-r", &r1, "-g"]);
    xvsd.adm_ok(&["-a", "-t", &svc, "-r", &r2, "-i"]);
    xvsd.adm_ok(&["-a", "-t", &svc, "-r", &format!("{r3}:80"), "-m"]);
    let sum = client(&lan.client.ns, &svc, 30, false);
    assert_eq!(sum.ok, 30, "{sum:?}");
    for h in &lan.rs {
        assert_eq!(sum.count(&h.role), 10, "{sum:?}");
    }
    assert!(lan.decapsulated(1) >= 40, "rs2 got its traffic tunnelled");
    assert_eq!(lan.decapsulated(0), 0, "rs1 is DR: nothing tunnelled to it");
    let l = xvsd.adm_ok(&["-Ln"]);
    for m in ["Route", "Tunnel", "Masq"] {
        assert!(l.contains(m), "{l}");
    }
    drop(servers);
    stop_clean(xvsd);
}
