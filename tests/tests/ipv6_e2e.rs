//! IPv6 end to end: a real client, a real xvsd on the director's veth and
//! three real servers on the DR LAN with IPv6 turned on (addresses from
//! 2001:2::/48 only, no DAD), real TCP connections over IPv6.

use xvs_tests::daemon::Xvsd;
use xvs_tests::lan6::{addr6, endpoint6, VIP6};
use xvs_tests::listing;
use xvs_tests::netns::{self, DrLan};
use xvs_tests::node::ClientSummary;

const NODE: &str = env!("CARGO_BIN_EXE_xvs-node");
const CONNS: u64 = 300;

/// `xvs-node serve` on every real server (names rs1..rs3), on every
/// address of both families.
fn serve_rs(lan: &DrLan, port: u16) -> Vec<netns::Proc> {
    let port = port.to_string();
    lan.rs
        .iter()
        .map(|h| {
            h.spawn_ready(&[
                NODE, "serve", "--name", &h.role, "--port", &port, "--bind", "::",
            ])
        })
        .collect()
}

/// `count` sequential TCP connections from the client to `target`.
fn client_run(lan: &DrLan, target: &str, count: u64) -> ClientSummary {
    let out = lan.client.exec(&[
        NODE,
        "client",
        "--connect",
        target,
        "--count",
        &count.to_string(),
        "--timeout-ms",
        "2000",
        "--deadline-ms",
        "60000",
        "--max-failures",
        "10",
    ]);
    if !out.status.success() {
        eprintln!("client stderr:\n{}", String::from_utf8_lossy(&out.stderr));
    }
    ClientSummary::from_output(&out)
}

#[test]
fn ipv6_dr_rr_splits_300_connections_exactly() {
    xvs_tests::bin("xvsd");
    xvs_tests::bin("xvsadm");
    let lan = DrLan::new();
    lan.enable_ipv6();
    let _servers = serve_rs(&lan, 80);
    // The real servers answer over IPv6 directly (the LAN works).
    for h in &lan.rs {
        let s = client_run(&lan, &endpoint6(addr6(h), 80), 2);
        assert_eq!((s.ok, s.count(&h.role)), (2, 2), "{}: {s:?}", h.role);
    }

    let xvsd = Xvsd::start(&lan.director.ns, &[&lan.director.iface]);
    let vip = endpoint6(VIP6, 80);
    xvsd.adm_ok(&["-A", "-t", &vip, "-s", "rr"]);
    for h in &lan.rs {
        xvsd.adm_ok(&["-a", "-t", &vip, "-r", &endpoint6(addr6(h), 80), "-g"]);
    }
    assert!(lan.director_has_xdp(), "no XDP program on the director");

    let s = client_run(&lan, &vip, CONNS);
    assert_eq!((s.ok, s.failed), (CONNS, 0), "{s:?}");
    let got: Vec<u64> = lan.rs.iter().map(|h| s.count(&h.role)).collect();
    assert_eq!(got, vec![CONNS / 3; 3], "rr over rs1..rs3: {s:?}");

    let out = xvsd.adm_ok(&["-Ln", "--stats"]);
    let l = listing::parse(&out);
    let svc = l
        .iter()
        .find(|s| s.addr == vip)
        .unwrap_or_else(|| panic!("{vip} not listed:\n{out}"));
    let total = svc.stats().expect("stats columns");
    assert_eq!(total.conns, CONNS, "service Conns:\n{out}");
    assert!(total.in_pkts >= 4 * CONNS, "service InPkts:\n{out}");
    assert_eq!(total.out_pkts, 0, "DR sees no replies:\n{out}");
    for h in &lan.rs {
        let d = svc
            .dest(&endpoint6(addr6(h), 80))
            .unwrap_or_else(|| panic!("{} not listed:\n{out}", h.role));
        assert_eq!(d.stats().expect("stats").conns, CONNS / 3, "{out}");
    }

    let exit = xvsd.stop();
    assert!(
        exit.status.success(),
        "xvsd: {}\n{}",
        exit.status,
        exit.stderr
    );
    let workers = exit.worker_frames();
    assert!(!workers.is_empty(), "{}", exit.stderr);
    for w in &workers {
        assert_eq!(w.lost, 0, "worker {} lost frames: {w:?}", w.worker);
    }
    assert!(!lan.director_has_xdp(), "XDP program left attached");
}
