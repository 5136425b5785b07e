//! Health checks end to end: xvsd probing real servers in namespaces
//! (`xvs-checkd` answers both the clients and the probes, and says which
//! probes came), the effective weights in `-Ln`, and where new connections
//! go while servers fail and recover.
//!
//! Every bound below is the one the checks promise: a server that stops
//! answering is out within interval × fall + timeout (+1 s), one that
//! answers again is back within interval × rise (+1 s).

use std::time::{Duration, Instant};

use xvs_tests::daemon::{TempFile, Xvsd};
use xvs_tests::health::{
    add_fast_checked, add_gue, all, clients, gue_lan_and_xvsd, lan_and_xvsd, net_lock,
    wait_check_line, wait_weights, weights,
};
use xvs_tests::lans::GUE_PORT;
use xvs_tests::netns::{self, DrLan, Proc};
use xvs_tests::node::Lines;

const CHECKD: &str = env!("CARGO_BIN_EXE_xvs-checkd");

/// `xvs-checkd` on `h` answering on `ports`, with its HTTP answers in
/// `state` if given.
fn checkd(h: &netns::Host, ports: &str, state: Option<&TempFile>) -> Proc {
    let mut cmd = vec![CHECKD, "--name", &h.role, "--ports", ports];
    let arg;
    if let Some(s) = state {
        arg = s.arg();
        cmd.extend(["--state", &arg]);
    }
    h.spawn_ready(&cmd)
}

fn rs_addr(lan: &DrLan, i: usize, port: u16) -> String {
    format!("{}:{port}", lan.rs[i].ip)
}

/// Interval 1 s, fall 2: a stopped listener is out (no new connection
/// goes to it, none fails) within interval × fall + timeout + 1 s, and
/// back within interval × rise + 1 s of its restart.
#[test]
fn tcp_check_takes_a_stopped_server_out_and_back() {
    const INTERVAL: u64 = 1;
    const FALL: u64 = 2;
    const RISE: u64 = 2;
    const TIMEOUT: u64 = 1;
    let _g = net_lock();
    let (lan, xvsd) = lan_and_xvsd(false);
    let mut servers: Vec<Option<Proc>> =
        lan.rs.iter().map(|h| Some(checkd(h, "80", None))).collect();
    let svc = format!("{}:80", lan.vip);
    xvsd.adm_ok(&[
        "-A",
        "-t",
        &svc,
        "-s",
        "rr",
        "--check",
        "tcp",
        "--check-interval",
        &INTERVAL.to_string(),
        "--check-fall",
        &FALL.to_string(),
        "--check-rise",
        &RISE.to_string(),
        "--check-timeout",
        &TIMEOUT.to_string(),
    ]);
    for h in &lan.rs {
        xvsd.adm_ok(&["-a", "-t", &svc, "-r", &h.ip.to_string(), "-g"]);
    }
    let addrs: Vec<String> = (0..3).map(|i| rs_addr(&lan, i, 80)).collect();
    let refs: Vec<&str> = addrs.iter().map(String::as_str).collect();
    // New servers start down: nothing is scheduled before the checks pass.
    assert!(
        all(&weights(&xvsd, &svc), &refs, 0),
        "{:?}",
        weights(&xvsd, &svc)
    );
    // First runs spread over one interval, then rise = 2 successes.
    wait_weights(&xvsd, &svc, Duration::from_secs(4), "all up", |w| {
        all(w, &refs, 1)
    });
    let s = clients(&lan, &svc, 30);
    assert_eq!((s.ok, s.failed), (30, 0), "{s:?}");
    assert_eq!(
        (s.count("rs1"), s.count("rs2"), s.count("rs3")),
        (10, 10, 10)
    );

    // A change that leaves the checks as they are keeps their state: no
    // server goes back to DOWN, no probe starts again.
    xvsd.adm_ok(&["-E", "-t", &svc, "-s", "wrr"]);
    assert!(
        all(&weights(&xvsd, &svc), &refs, 1),
        "{:?}",
        weights(&xvsd, &svc)
    );
    let log = xvsd.stderr_so_far();
    for a in &addrs {
        let started = format!("check tcp {a}: started");
        assert_eq!(log.matches(&started).count(), 1, "{log}");
    }

    // rs2's listener stops.
    servers[1] = None;
    let took = wait_weights(
        &xvsd,
        &svc,
        Duration::from_secs(INTERVAL * FALL + TIMEOUT + 1),
        "rs2 out",
        |w| w.get(&addrs[1]) == Some(&0) && w.get(&addrs[0]) == Some(&1),
    );
    eprintln!("rs2 out after {took:?}");
    let s = clients(&lan, &svc, 30);
    assert_eq!((s.ok, s.failed), (30, 0), "{s:?}");
    assert_eq!(s.count("rs2"), 0, "{s:?}");

    // It comes back.
    servers[1] = Some(checkd(&lan.rs[1], "80", None));
    let took = wait_weights(
        &xvsd,
        &svc,
        Duration::from_secs(INTERVAL * RISE + 1),
        "rs2 back",
        |w| all(w, &refs, 1),
    );
    eprintln!("rs2 back after {took:?}");
    let s = clients(&lan, &svc, 30);
    assert_eq!((s.ok, s.failed), (30, 0), "{s:?}");
    assert!(s.count("rs2") >= 9, "{s:?}");
    let log = xvsd.stderr_so_far();
    assert!(
        log.contains(&format!("check tcp {}: FALLING -> DOWN", addrs[1])),
        "transition not logged:\n{log}"
    );
    drop(servers);
}

/// An HTTP check takes out a server answering 500, and one whose body no
/// longer matches the regex; both come back when they answer right.
#[test]
fn http_check_status_and_body_regex() {
    let _g = net_lock();
    let (lan, xvsd) = lan_and_xvsd(false);
    let states: Vec<TempFile> = (1..=3)
        .map(|i| TempFile::new(&format!("http-rs{i}"), "200 all good\n"))
        .collect();
    let _servers: Vec<Proc> = lan
        .rs
        .iter()
        .zip(&states)
        .map(|(h, st)| checkd(h, "80", Some(st)))
        .collect();
    let svc = format!("{}:80", lan.vip);
    add_fast_checked(
        &xvsd,
        &svc,
        &[
            "--check",
            "http",
            "--check-path",
            "/health",
            "--check-regex",
            "good$",
        ],
    );
    xvsd.add_direct(&svc, &lan.rs);
    let addrs: Vec<String> = (0..3).map(|i| rs_addr(&lan, i, 80)).collect();
    let refs: Vec<&str> = addrs.iter().map(String::as_str).collect();
    wait_weights(&xvsd, &svc, Duration::from_secs(3), "all up", |w| {
        all(w, &refs, 1)
    });
    let out_within = Duration::from_secs(1 + 1 + 1);

    std::fs::write(&states[0].0, "500 all good\n").unwrap();
    wait_weights(&xvsd, &svc, out_within, "rs1 (500) out", |w| {
        w.get(&addrs[0]) == Some(&0)
    });
    std::fs::write(&states[1].0, "200 all bad\n").unwrap();
    wait_weights(&xvsd, &svc, out_within, "rs2 (regex) out", |w| {
        w.get(&addrs[1]) == Some(&0) && w.get(&addrs[2]) == Some(&1)
    });
    let s = clients(&lan, &svc, 20);
    assert_eq!((s.ok, s.failed, s.count("rs3")), (20, 0, 20), "{s:?}");
    let check = xvsd.adm_ok(&["-Ln", "--check"]);
    for (addr, why) in [(&addrs[0], "500"), (&addrs[1], "does not match")] {
        let line = check
            .lines()
            .find(|l| l.contains(addr.as_str()))
            .unwrap_or_else(|| panic!("{addr} not in -Ln --check:\n{check}"));
        assert!(line.contains("DOWN") && line.contains(why), "{line}");
    }

    std::fs::write(&states[0].0, "200 all good\n").unwrap();
    std::fs::write(&states[1].0, "200 all good\n").unwrap();
    wait_weights(&xvsd, &svc, Duration::from_secs(1 + 1), "both back", |w| {
        all(w, &refs, 1)
    });
}

/// An `exec` check's exit code sets the weight `-Ln` shows (code − 2);
/// exit 1 takes the server out.
#[test]
fn exec_check_sets_the_weight() {
    xvs_tests::bin("xvsadm");
    let xvsd = Xvsd::start_control_only();
    let code = TempFile::new("exec-code", "7\n");
    let cmd = format!("exit $(cat {})", code.arg());
    xvsd.adm_ok(&["-A", "-t", "198.18.0.100:80", "-s", "wrr"]);
    xvsd.adm_ok(&[
        "-a",
        "-t",
        "198.18.0.100:80",
        "-r",
        "198.18.0.11:80",
        "-m",
        "-w",
        "1",
        "--check",
        "exec",
        "--check-cmd",
        &cmd,
        "--check-interval",
        "1",
        "--check-rise",
        "1",
        "--check-fall",
        "1",
    ]);
    xvsd.adm_ok(&["-a", "-t", "198.18.0.100:80", "-r", "198.18.0.12:80", "-m"]);
    let svc = "198.18.0.100:80";
    let within = Duration::from_secs(3);
    wait_weights(&xvsd, svc, within, "weight 5 from exit 7", |w| {
        w.get("198.18.0.11:80") == Some(&5) && w.get("198.18.0.12:80") == Some(&1)
    });
    std::fs::write(&code.0, "12\n").unwrap();
    wait_weights(&xvsd, svc, within, "weight 10 from exit 12", |w| {
        w.get("198.18.0.11:80") == Some(&10)
    });
    std::fs::write(&code.0, "1\n").unwrap();
    wait_weights(&xvsd, svc, within, "out on exit 1", |w| {
        w.get("198.18.0.11:80") == Some(&0)
    });
    // -S keeps the configured weight and the check.
    let saved = xvsd.adm_ok(&["-S", "-n"]);
    let line = saved
        .lines()
        .find(|l| l.contains("198.18.0.11:80"))
        .unwrap_or_else(|| panic!("{saved}"));
    assert!(line.contains("-w 1") && line.contains("exec"), "{line}");
}

/// `vip`: a direct-routing server without the VIP on `lo` does not answer
/// for it and is reported down, while the others are up; with the VIP
/// back it comes up.
#[test]
fn vip_check_finds_a_dr_server_without_the_vip() {
    let _g = net_lock();
    let (lan, xvsd) = lan_and_xvsd(false);
    let _servers: Vec<Proc> = lan.rs.iter().map(|h| checkd(h, "80", None)).collect();
    let vip_lo = format!("{}/32", lan.vip);
    lan.rs[2].exec_ok(&["ip", "addr", "del", &vip_lo, "dev", "lo"]);
    let svc = format!("{}:80", lan.vip);
    add_fast_checked(&xvsd, &svc, &["--check", "vip"]);
    xvsd.add_direct(&svc, &lan.rs);
    let addrs: Vec<String> = (0..3).map(|i| rs_addr(&lan, i, 80)).collect();
    // The first probes may find no MAC yet (the neighbour table resolves
    // the servers as they are added): allow a few intervals.
    wait_weights(&xvsd, &svc, Duration::from_secs(6), "rs1, rs2 up", |w| {
        w.get(&addrs[0]) == Some(&1) && w.get(&addrs[1]) == Some(&1)
    });
    // rs3 has been probed (with rise 1, a single answer would have
    // brought it up) and stays down.
    let line = wait_check_line(&xvsd, &addrs[2], Duration::from_secs(4), |l| {
        l.contains("no answer")
    });
    assert!(line.contains("DOWN"), "{line}");
    for a in &addrs[..2] {
        let l = wait_check_line(&xvsd, a, Duration::ZERO, |_| true);
        assert!(l.contains("UP"), "{l}");
    }
    assert_eq!(weights(&xvsd, &svc).get(&addrs[2]), Some(&0));
    let s = clients(&lan, &svc, 20);
    assert_eq!((s.ok, s.failed, s.count("rs3")), (20, 0, 0), "{s:?}");

    lan.rs[2].exec_ok(&["ip", "addr", "add", &vip_lo, "dev", "lo"]);
    wait_weights(&xvsd, &svc, Duration::from_secs(3), "rs3 up", |w| {
        w.get(&addrs[2]) == Some(&1)
    });
}

/// `vip` through tunnels: the SYN goes in each server's GUE tunnel;
/// the server without the VIP on `lo` is down, the others up.
#[test]
fn vip_check_reaches_tun_servers_through_their_tunnel() {
    let _g = net_lock();
    let (lan, xvsd) = gue_lan_and_xvsd(false);
    let _servers: Vec<Proc> = lan.rs.iter().map(|h| checkd(h, "80", None)).collect();
    let vip_lo = format!("{}/32", lan.vip);
    lan.rs[2].exec_ok(&["ip", "addr", "del", &vip_lo, "dev", "lo"]);
    let svc = format!("{}:80", lan.vip);
    add_fast_checked(&xvsd, &svc, &["--check", "vip"]);
    let ips: Vec<String> = lan.rs.iter().map(|h| h.ip.to_string()).collect();
    add_gue(&xvsd, &svc, &ips, GUE_PORT);
    let addrs: Vec<String> = (0..3).map(|i| rs_addr(&lan, i, 80)).collect();
    wait_weights(&xvsd, &svc, Duration::from_secs(4), "rs1, rs2 up", |w| {
        w.get(&addrs[0]) == Some(&1) && w.get(&addrs[1]) == Some(&1)
    });
    let line = wait_check_line(&xvsd, &addrs[2], Duration::from_secs(4), |l| {
        l.contains("no answer")
    });
    assert!(line.contains("DOWN"), "{line}");
    let s = clients(&lan, &svc, 20);
    assert_eq!((s.ok, s.failed, s.count("rs3")), (20, 0, 0), "{s:?}");
}

/// All servers down: new connections go to the sorry server; one back:
/// the sorry server gets no new connection.
#[test]
fn sorry_server_stands_in_while_all_are_down() {
    let _g = net_lock();
    let (lan, xvsd) = lan_and_xvsd(false);
    let mut servers: Vec<Option<Proc>> =
        lan.rs.iter().map(|h| Some(checkd(h, "80", None))).collect();
    let svc = format!("{}:80", lan.vip);
    let sorry = rs_addr(&lan, 2, 80);
    add_fast_checked(&xvsd, &svc, &["--sorry-server", &sorry, "--check", "tcp"]);
    xvsd.add_direct(&svc, &lan.rs[..2]);
    let (a1, a2) = (rs_addr(&lan, 0, 80), rs_addr(&lan, 1, 80));
    wait_weights(&xvsd, &svc, Duration::from_secs(3), "rs1, rs2 up", |w| {
        w.get(&a1) == Some(&1) && w.get(&a2) == Some(&1)
    });
    let s = clients(&lan, &svc, 20);
    assert_eq!((s.ok, s.failed, s.count("rs3")), (20, 0, 0), "{s:?}");

    servers[0] = None;
    servers[1] = None;
    wait_weights(&xvsd, &svc, Duration::from_secs(3), "rs1, rs2 out", |w| {
        w.get(&a1) == Some(&0) && w.get(&a2) == Some(&0)
    });
    let s = clients(&lan, &svc, 20);
    assert_eq!((s.ok, s.failed, s.count("rs3")), (20, 0, 20), "{s:?}");

    servers[0] = Some(checkd(&lan.rs[0], "80", None));
    wait_weights(&xvsd, &svc, Duration::from_secs(2), "rs1 back", |w| {
        w.get(&a1) == Some(&1)
    });
    let s = clients(&lan, &svc, 20);
    assert_eq!((s.ok, s.failed, s.count("rs1")), (20, 0, 20), "{s:?}");
    drop(servers);
}

/// Three services sharing three servers with the same check: one probe
/// per server and interval, not three (counted by the servers).
#[test]
fn shared_servers_are_probed_once() {
    let _g = net_lock();
    let (lan, xvsd) = lan_and_xvsd(false);
    let servers: Vec<Lines> = lan
        .rs
        .iter()
        .map(|h| {
            Lines::spawn(
                &h.ns,
                &[CHECKD, "--name", &h.role, "--ports", "80,81,82,8080"],
            )
        })
        .collect();
    for s in &servers {
        let l = s.next_line(Duration::from_secs(5));
        assert!(
            l.as_deref().is_some_and(|l| l.starts_with("ready")),
            "{l:?}"
        );
    }
    let svcs: Vec<String> = [80, 81, 82]
        .iter()
        .map(|p| format!("{}:{p}", lan.vip))
        .collect();
    for svc in &svcs {
        xvsd.adm_ok(&[
            "-A",
            "-t",
            svc,
            "-s",
            "rr",
            "--check",
            "tcp",
            "--check-port",
            "8080",
            "--check-interval",
            "1",
            "--check-rise",
            "1",
        ]);
        for h in &lan.rs {
            xvsd.adm_ok(&["-a", "-t", svc, "-r", &h.ip.to_string(), "-g"]);
        }
    }
    for (svc, port) in svcs.iter().zip([80, 81, 82]) {
        let addrs: Vec<String> = (0..3).map(|i| rs_addr(&lan, i, port)).collect();
        let refs: Vec<&str> = addrs.iter().map(String::as_str).collect();
        wait_weights(&xvsd, svc, Duration::from_secs(3), "all up", |w| {
            all(w, &refs, 1)
        });
    }
    // Count the probes each server gets in 4 s: 4 (±1) with one probe
    // per interval, 12 if every service probed on its own.
    for s in &servers {
        while s.next_line(Duration::ZERO).is_some() {}
    }
    let window = Duration::from_secs(4);
    let end = Instant::now() + window;
    let mut counts = [0u32; 3];
    for (i, s) in servers.iter().enumerate() {
        // Lines queue up while another server's are read: read each
        // server's lines up to the end of the window, then what is queued.
        while let Some(l) = s.next_line(end.saturating_duration_since(Instant::now())) {
            if l == "probe tcp 8080" {
                counts[i] += 1;
            }
        }
    }
    for (i, c) in counts.iter().enumerate() {
        assert!(
            (3..=5).contains(c),
            "rs{} got {c} probes in {window:?}",
            i + 1
        );
    }
    let probes = xvsd.adm_ok(&["-Ln", "--check"]);
    assert!(!probes.is_empty());
}
