//! Scale-out: directors behind a real ECMP router (BIRD), each announcing
//! the VIP by BGP (ExaBGP fed by `xvsadm --bgp-feed`) only while its xvsd
//! serves it. Needs root, network namespaces, BIRD and ExaBGP (installed
//! by scripts/lib.sh).

use std::time::{Duration, Instant};

use xvs_tests::cluster::{finish_streams, Cluster, CLUSTER_VIP};

/// How long a withdrawal may take from the daemon's death (or decision)
/// to the router's table; measured well under 100 ms on an idle machine,
/// bounded generously for a loaded CI.
const WITHDRAW_WITHIN: Duration = Duration::from_secs(3);
/// How long the first BGP sessions may take to come up.
const SESSIONS_WITHIN: Duration = Duration::from_secs(30);

fn skip() -> bool {
    if !xvs_tests::is_root() {
        eprintln!("skipped: needs root");
        return true;
    }
    false
}

/// Connections the VIP:port service has scheduled on director `i`.
fn conns_of(c: &Cluster, i: usize, svc: &str) -> u64 {
    c.directors[i].stats(svc).conns
}

#[test]
fn three_directors_share_the_vip_and_one_without_servers_withdraws_alone() {
    if skip() {
        return;
    }
    let vip80 = format!("{CLUSTER_VIP}:80");
    let rules = [
        format!("-A -t {vip80} -s mh"),
        format!("-a -t {vip80} -r 198.18.1.21 -g"),
        format!("-a -t {vip80} -r 198.18.1.22 -g"),
        format!("-a -t {vip80} -r 198.18.1.23 -g"),
    ];
    let rules: Vec<&str> = rules.iter().map(String::as_str).collect();
    let c = Cluster::new(3, &rules);
    let _servers = c.serve_nodes(80);
    // (1) The route has the three directors as next hops.
    c.wait_next_hops(&[0, 1, 2], SESSIONS_WITHIN);

    // 300 connections from as many source ports: the router's hash
    // spreads them, every director takes a share.
    let sum = c.client_run(&vip80, 300);
    assert_eq!((sum.total, sum.ok), (300, 300), "{sum:?}");
    let shares: Vec<u64> = (0..3).map(|i| conns_of(&c, i, &vip80)).collect();
    assert_eq!(shares.iter().sum::<u64>(), 300, "{shares:?}");
    // Each gets a fair share: at least 30 of 300 (an even split is 100;
    // below 30 has a chance under 10^-15 with a uniform hash).
    assert!(shares.iter().all(|&n| n >= 30), "shares {shares:?}");

    // (3) d2 loses its servers (weight 0 on every one): only d2's
    // announcement goes.
    let d2 = c.directors[1].xvsd();
    let t = Instant::now();
    for rs in ["198.18.1.21", "198.18.1.22", "198.18.1.23"] {
        d2.adm_ok(&["-e", "-t", &vip80, "-r", rs, "-g", "-w", "0"]);
    }
    let took = c.wait_next_hops(&[0, 2], WITHDRAW_WITHIN);
    eprintln!(
        "d2 without servers: withdrawn {:?} after the last -e",
        took.min(t.elapsed())
    );
    let list = d2.adm_ok(&["-L", "--announce"]);
    assert!(
        list.contains(&format!("{CLUSTER_VIP}"))
            && list.contains("withdrawn: no schedulable real server in -t 198.18.0.100:80"),
        "{list}"
    );
    // The others still announce it.
    for i in [0, 2] {
        let l = c.directors[i].xvsd().adm_ok(&["-L", "--announce"]);
        assert!(l.contains("announced"), "d{}: {l}", i + 1);
    }
    // A server back: announced again.
    d2.adm_ok(&["-e", "-t", &vip80, "-r", "198.18.1.22", "-g", "-w", "1"]);
    c.wait_next_hops(&[0, 1, 2], SESSIONS_WITHIN);

    // d2 below its quorum (three servers of weight 1, then one more
    // back: up weight 2 < quorum 3): only d2 withdraws; quorum met again
    // (back to quorum 1): announced.
    d2.adm_ok(&["-e", "-t", &vip80, "-r", "198.18.1.21", "-g", "-w", "1"]);
    d2.adm_ok(&["-E", "-t", &vip80, "--quorum", "3"]);
    c.wait_next_hops(&[0, 2], WITHDRAW_WITHIN);
    let list = d2.adm_ok(&["-L", "--announce"]);
    assert!(
        list.contains("withdrawn: no quorum in -t 198.18.0.100:80 (up weight 2 < quorum 3)"),
        "{list}"
    );
    d2.adm_ok(&["-E", "-t", &vip80, "--quorum", "1"]);
    c.wait_next_hops(&[0, 1, 2], SESSIONS_WITHIN);

    // Maintenance drains d3: withdrawn, and back when it ends.
    let d3 = c.directors[2].xvsd();
    d3.adm_ok(&["--maintenance", "on"]);
    c.wait_next_hops(&[0, 1], WITHDRAW_WITHIN);
    assert!(d3
        .adm_ok(&["-L", "--announce"])
        .contains("withdrawn: maintenance"));
    d3.adm_ok(&["--maintenance", "off"]);
    c.wait_next_hops(&[0, 1, 2], SESSIONS_WITHIN);
}

#[test]
fn a_killed_director_is_withdrawn_and_streams_survive_it_and_a_join() {
    if skip() {
        return;
    }
    let svc = format!("{CLUSTER_VIP}:8080");
    let rules = [
        format!("-A -t {svc} -s mh"),
        format!("-a -t {svc} -r 198.18.1.21 -g"),
        format!("-a -t {svc} -r 198.18.1.22 -g"),
        format!("-a -t {svc} -r 198.18.1.23 -g"),
    ];
    let rules: Vec<&str> = rules.iter().map(String::as_str).collect();
    let mut c = Cluster::new(3, &rules);
    let _servers = c.serve_streams(8080);
    c.wait_next_hops(&[0, 1, 2], SESSIONS_WITHIN);

    // 30 long-lived streams, an exchange every 100 ms each for 20 s,
    // every echoed byte checked.
    let streams = c.start_streams(&svc, 30, 20000);
    // Let every director carry streams before one dies.
    std::thread::sleep(Duration::from_secs(2));
    let carried: Vec<u64> = (0..3).map(|i| conns_of(&c, i, &svc)).collect();
    assert!(carried[0] > 0, "d1 carries no stream: {carried:?}");

    // kill -9 of d1's xvsd: its feed sees the socket close and withdraws.
    let took = c.kill_xvsd_withdrawn(0, &[1, 2], WITHDRAW_WITHIN);
    eprintln!("kill -9 of xvsd to the route's withdrawal in the router's table: {took:?}");

    // A fourth director joins while the streams run.
    std::thread::sleep(Duration::from_secs(3));
    c.add_director();
    c.wait_next_hops(&[1, 2, 3], SESSIONS_WITHIN);

    let end = finish_streams(streams);
    assert!(end.ok, "the streams failed:\n{}", end.out);
    assert_eq!((end.conns, end.failed), (30, 0), "{}", end.out);
    // The survivors took d1's streams over, and the newcomer some of
    // theirs (entries made mid-stream; none for d4 has a chance of
    // (2/3)^30, 5 in a million).
    let joined = conns_of(&c, 3, &svc);
    assert!(joined > 0, "d4 took no stream over");
    let after: u64 = (1..4).map(|i| conns_of(&c, i, &svc)).sum();
    assert!(
        after > carried[1] + carried[2],
        "d1's streams did not move: {carried:?} then {after}"
    );
}
