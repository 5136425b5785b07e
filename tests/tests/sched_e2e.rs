//! Schedulers end to end: a real xvsd on the director's veth, real TCP
//! clients and servers, and live configuration changes while connections
//! are open.
//!
//! Where a scheduler is deterministic the test does not just check "some
//! spread": it runs the same `xvs_scheduler` code on a model of the
//! service (same list order, same updates, same counts) and demands the
//! exact split the data plane produced. Long-lived connections come from
//! `xvs-node hold` (opened, left idle, completed on release), so ActiveConn
//! is real ESTABLISHED state seen by the director.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use xvs_scheduler::{Dest, DestHash, Flow, Scheduler, SourceHash, WeightedRoundRobin};
use xvs_tests::daemon::Xvsd;
use xvs_tests::listing::{self, ListedService};
use xvs_tests::netns::{self, DrLan, VIP};
use xvs_tests::node::{ClientSummary, Clients, Holder};
use xvs_tests::rig;

const NODE: &str = env!("CARGO_BIN_EXE_xvs-node");
/// How long a holder may take to open its connections, and to finish.
const HOLD_WAIT: Duration = Duration::from_secs(15);

/// Tests that run xvsd or push traffic take turns (two cores: a busy
/// worker of one test would starve another test's clients).
static NET: Mutex<()> = Mutex::new(());

fn net_lock() -> MutexGuard<'static, ()> {
    NET.lock().unwrap_or_else(|e| e.into_inner())
}

/// A DR LAN with servers rs1..rs3 on port 80 (idle timeout long enough
/// for held connections), the real servers' MACs already known to the
/// director's kernel, and xvsd attached to the director's interface.
struct Rig {
    xvsd: Xvsd,
    _servers: Vec<netns::Proc>,
    lan: DrLan,
}

impl Rig {
    fn new() -> Self {
        xvs_tests::bin("xvsd");
        xvs_tests::bin("xvsadm");
        let lan = DrLan::new();
        let servers = rig::serve_on(&lan.rs, 80, &["--idle-timeout-s", "30"]);
        // Resolve the real servers now, so that no first SYN is dropped
        // for an unknown next hop (xvsd mirrors the kernel's table).
        rig::resolve(&lan.director, &lan.rs);
        let xvsd = Xvsd::start(&lan.director.ns, &[&lan.director.iface]);
        Rig {
            xvsd,
            _servers: servers,
            lan,
        }
    }

    fn adm(&self, args: &[&str]) -> String {
        self.xvsd.adm_ok(args)
    }

    /// `rs1`'s `addr:port`, etc.
    fn rip(&self, i: usize) -> String {
        format!("{}:80", self.lan.rs[i].ip)
    }

    /// Adds rs1, rs2, rs3 (in that order, so listed newest first) to
    /// `vip` with `weights`.
    fn add_servers(&self, vip: &str, weights: [u32; 3]) {
        for (i, w) in weights.iter().enumerate() {
            self.adm(&[
                "-a",
                "-t",
                vip,
                "-r",
                &self.rip(i),
                "-g",
                "-w",
                &w.to_string(),
            ]);
        }
    }

    /// `count` sequential connections from the client to `target`; all
    /// must succeed.
    fn run(&self, target: &str, count: u64) -> ClientSummary {
        Clients::new(3000, 30_000, 3).run_all_ok(&self.lan.client.ns, target, count)
    }

    /// Replies per real server (rs1, rs2, rs3) of a run of `count`.
    fn split(&self, target: &str, count: u64) -> [u64; 3] {
        let s = self.run(target, count);
        [s.count("rs1"), s.count("rs2"), s.count("rs3")]
    }

    /// Opens `count` idle connections to `target` from the client.
    fn hold(&self, target: &str, count: u64) -> Holder {
        let h = Holder::start(&self.lan.client.ns, NODE, target, count, HOLD_WAIT);
        assert_eq!(h.held(), count, "not every held connection opened");
        h
    }

    fn listed(&self, args: &[&str]) -> Vec<ListedService> {
        listing::parse(&self.adm(args))
    }

    /// The `-Ln` columns (Forward Weight ActiveConn InActConn) of server
    /// `i` of `vip`.
    fn dest_row(&self, vip: &str, i: usize) -> Vec<String> {
        let l = self.listed(&["-Ln"]);
        let svc = service(&l, vip);
        svc.dest(&self.rip(i))
            .unwrap_or_else(|| panic!("{} not listed: {svc:?}", self.rip(i)))
            .fields
            .clone()
    }

    /// ActiveConn of server `i` of `vip`.
    fn active(&self, vip: &str, i: usize) -> u64 {
        self.dest_row(vip, i)[2].parse().expect("ActiveConn")
    }

    /// Waits (bounded) until `cond` holds, re-reading the daemon's view;
    /// panics with `what` otherwise.
    fn wait_for(&self, what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while !cond() {
            assert!(
                Instant::now() < deadline,
                "{what} not seen within {timeout:?}:\n{}",
                self.adm(&["-Ln", "--thresholds"])
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn service<'a>(l: &'a [ListedService], addr: &str) -> &'a ListedService {
    l.iter()
        .find(|s| s.addr == addr)
        .unwrap_or_else(|| panic!("service {addr} not listed: {l:?}"))
}

fn v4(ip: Ipv4Addr) -> IpAddr {
    IpAddr::V4(ip)
}

/// The model of a service's list: rs1..rs3 added in order, so newest
/// first, as the data plane walks it.
fn model_dests(rig: &Rig, weights: [i32; 3]) -> Vec<Dest> {
    (0..3)
        .rev()
        .map(|i| Dest::new(v4(rig.lan.rs[i].ip), 80, weights[i]))
        .collect()
}

/// `rsN` name of a model destination.
fn model_name(rig: &Rig, d: &Dest) -> String {
    let i = rig
        .lan
        .rs
        .iter()
        .position(|h| v4(h.ip) == d.addr)
        .expect("a real server");
    format!("rs{}", i + 1)
}

fn flow(saddr: Ipv4Addr, daddr: Ipv4Addr) -> Flow {
    Flow {
        proto: 6,
        saddr: v4(saddr),
        sport: 40000,
        daddr: v4(daddr),
        dport: 80,
    }
}

#[test]
fn scheduler_names_flags_and_thresholds_through_xvsadm() {
    let xvsd = Xvsd::start_control_only();
    let fail = |args: &[&str], code: i32, msg: &str| {
        let out = xvsd.adm(args);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        assert!(err.contains(msg), "{args:?}: expected {msg:?} in {err:?}");
        err
    };

    // Every scheduler name is accepted and listed as given.
    for (port, name) in (8000..).zip(xvs_scheduler::NAMES) {
        let vip = format!("198.18.0.100:{port}");
        xvsd.adm_ok(&["-A", "-t", &vip, "-s", name]);
        let l = listing::parse(&xvsd.adm_ok(&["-Ln", "-t", &vip]));
        assert_eq!(service(&l, &vip).fields, [*name], "{l:?}");
        xvsd.adm_ok(&["-D", "-t", &vip]);
    }

    // Scheduler flags, listed in ipvsadm's spelling and saved with -b.
    xvsd.adm_ok(&[
        "-A",
        "-t",
        "198.18.0.100:80",
        "-s",
        "sh",
        "-b",
        "sh-fallback,sh-port",
    ]);
    xvsd.adm_ok(&["-A", "-t", "198.18.0.100:81", "-s", "mh", "-b", "mh-port"]);
    let out = xvsd.adm_ok(&["-Ln"]);
    assert!(
        out.contains("TCP  198.18.0.100:80 sh (sh-fallback,sh-port)\n"),
        "{out}"
    );
    assert!(out.contains("TCP  198.18.0.100:81 mh (mh-port)\n"), "{out}");
    xvsd.adm_ok(&[
        "-E",
        "-t",
        "198.18.0.100:81",
        "-s",
        "mh",
        "-b",
        "mh-fallback,mh-port",
    ]);
    let save = xvsd.adm_ok(&["-Sn"]);
    assert!(
        save.contains("-A -t 198.18.0.100:80 -s sh -b sh-fallback,sh-port\n"),
        "{save}"
    );
    assert!(
        save.contains("-A -t 198.18.0.100:81 -s mh -b mh-fallback,mh-port\n"),
        "{save}"
    );

    // Unknown scheduler: refused by the daemon (exit 255), nothing changes.
    fail(
        &["-A", "-t", "198.18.0.100:82", "-s", "nosuch"],
        255,
        "Scheduler or persistence engine not found",
    );
    fail(
        &["-E", "-t", "198.18.0.100:80", "-s", "RR"],
        255,
        "Scheduler or persistence engine not found",
    );
    let out = xvsd.adm_ok(&["-Ln"]);
    assert!(!out.contains(":82"), "{out}");
    assert!(out.contains(":80 sh (sh-fallback,sh-port)"), "{out}");

    // Unknown flag: the parser's message and its usage hint, exit 2.
    let err = fail(
        &["-A", "-t", "198.18.0.100:83", "-s", "sh", "-b", "sh-bogus"],
        2,
        "invalid scheduler flag",
    );
    assert!(err.contains("Try `xvsadm -h'"), "{err}");

    // Thresholds: set, listed with --thresholds, cleared, range-checked.
    let vip = "198.18.0.100:80";
    let rip = "198.18.0.11:80";
    xvsd.adm_ok(&["-a", "-t", vip, "-r", rip, "-g", "-x", "10", "-y", "5"]);
    let thr = |xvsd: &Xvsd| {
        let l = listing::parse(&xvsd.adm_ok(&["-Ln", "--thresholds"]));
        service(&l, vip).dest(rip).expect("listed").fields.clone()
    };
    assert_eq!(thr(&xvsd), ["10", "5", "0", "0"]);
    xvsd.adm_ok(&["-e", "-t", vip, "-r", rip, "-g", "-x", "20"]);
    assert_eq!(thr(&xvsd), ["20", "0", "0", "0"]);
    fail(
        &["-e", "-t", vip, "-r", rip, "-g", "-x", "5", "-y", "6"],
        255,
        "Numerical result out of range",
    );
    assert_eq!(thr(&xvsd), ["20", "0", "0", "0"]);
    xvsd.adm_ok(&["-e", "-t", vip, "-r", rip, "-g"]);
    assert_eq!(thr(&xvsd), ["0", "0", "0", "0"]);

    let exit = xvsd.stop();
    assert!(exit.status.success() && !exit.killed, "{}", exit.stderr);
}

#[test]
fn lc_and_wlc_steer_new_connections_away_from_long_lived_ones() {
    let _g = net_lock();
    let rig = Rig::new();
    let vip = format!("{VIP}:80");
    rig.adm(&["-A", "-t", &vip, "-s", "lc"]);
    // Only rs1 takes connections while the long-lived ones are opened.
    rig.add_servers(&vip, [1, 0, 0]);
    let held = rig.hold(&vip, 4);
    rig.wait_for(
        "4 active connections on rs1",
        Duration::from_secs(3),
        || rig.active(&vip, 0) == 4,
    );
    for i in [1, 2] {
        rig.adm(&["-e", "-t", &vip, "-r", &rig.rip(i), "-g", "-w", "1"]);
    }

    // lc: rs1 carries 4 * 256 of overhead; short connections (each left
    // inactive in FIN_WAIT) alternate between rs3 and rs2, rs3 first (it
    // is first in the list and ties go to the first).
    assert_eq!(rig.split(&vip, 20), [0, 10, 10], "lc");
    assert_eq!(rig.active(&vip, 0), 4);

    // Switch to wlc with the connections still open, and make rs1 heavy
    // enough that it takes part again: overhead/weight decides, exactly
    // as the scheduler crate computes it from the listed counts.
    rig.adm(&["-E", "-t", &vip, "-s", "wlc"]);
    rig.adm(&["-e", "-t", &vip, "-r", &rig.rip(0), "-g", "-w", "100"]);
    let model = model_dests(&rig, [100, 1, 1]);
    for (i, d) in model.iter().enumerate() {
        let row = rig.dest_row(&vip, 2 - i);
        let n = |k: usize| row[k].parse::<u32>().expect("count");
        d.load
            .active
            .store(n(2), std::sync::atomic::Ordering::Relaxed);
        d.load
            .inactive
            .store(n(3), std::sync::atomic::Ordering::Relaxed);
    }
    assert_eq!(model[2].load.active(), 4, "rs1 still holds its 4");
    let mut wlc = xvs_scheduler::WeightedLeastConn::new();
    wlc.update(&model);
    let mut expect = [0u64; 3];
    let f = flow(rig.lan.client.ip, VIP);
    for _ in 0..30 {
        let i = wlc.schedule(&model, &f, 0).expect("a server");
        model[i]
            .load
            .inactive
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        expect[2 - i] += 1;
    }
    assert!(expect[0] > 0 && expect[0] < 30, "model: {expect:?}");
    assert_eq!(rig.split(&vip, 30), expect, "wlc");

    // The long-lived connections survived the scheduler switch and the
    // weight change: each completes its exchange with rs1.
    let s = held.release(HOLD_WAIT);
    assert_eq!((s.ok, s.count("rs1")), (4, 4), "{s:?}");
}

#[test]
fn sh_keeps_each_client_on_one_server_and_spreads_clients() {
    let _g = net_lock();
    let rig = Rig::new();
    let vip = format!("{VIP}:80");
    rig.adm(&["-A", "-t", &vip, "-s", "sh"]);
    rig.add_servers(&vip, [1, 1, 1]);
    let clients: Vec<Ipv4Addr> = (20..30).map(|n| Ipv4Addr::new(198, 18, 0, n)).collect();
    rig.lan.add_client_addrs(&clients);

    let model = model_dests(&rig, [1, 1, 1]);
    let mut sh = SourceHash::new(0);
    sh.update(&model);
    let mut seen = std::collections::BTreeSet::new();
    for &c in &clients {
        rig.lan.client_source(VIP, Some(c));
        let s = rig.run(&vip, 5);
        let want = model_name(&rig, &model[sh.schedule(&model, &flow(c, VIP), 0).unwrap()]);
        assert_eq!(
            s.count(&want),
            5,
            "client {c}: every connection to {want} (bucket {}): {s:?}",
            SourceHash::bucket(u32::from(c), 0, 0)
        );
        seen.insert(want);
    }
    assert!(seen.len() >= 2, "10 clients all on {seen:?}");

    // sh-port hashes the source port too: one client's connections spread.
    rig.adm(&["-E", "-t", &vip, "-s", "sh", "-b", "sh-port"]);
    rig.lan.client_source(VIP, Some(clients[0]));
    let split = rig.split(&vip, 30);
    assert!(
        split.iter().filter(|&&n| n > 0).count() >= 2,
        "sh-port: one client still on one server: {split:?}"
    );
}

#[test]
fn dh_picks_the_server_by_destination_address() {
    let _g = net_lock();
    let rig = Rig::new();
    // One dh service per virtual address, same three real servers.
    let vips: Vec<Ipv4Addr> = (101..109).map(|n| Ipv4Addr::new(198, 18, 0, n)).collect();
    let model = model_dests(&rig, [1, 1, 1]);
    let mut dh = DestHash::new();
    dh.update(&model);
    let mut seen = std::collections::BTreeSet::new();
    for &v in &vips {
        rig.lan.add_vip(v);
        let target = format!("{v}:80");
        rig.adm(&["-A", "-t", &target, "-s", "dh"]);
        rig.add_servers(&target, [1, 1, 1]);
    }
    for &v in &vips {
        let target = format!("{v}:80");
        let i = dh.schedule(&model, &flow(rig.lan.client.ip, v), 0).unwrap();
        let want = model_name(&rig, &model[i]);
        let s = rig.run(&target, 4);
        assert_eq!(
            s.count(&want),
            4,
            "{v}: bucket {} -> {want}: {s:?}",
            DestHash::bucket(u32::from(v))
        );
        seen.insert(want);
    }
    assert_eq!(seen.len(), 3, "8 addresses cover every server: {seen:?}");
}

#[test]
fn weight_zero_drains_and_wrr_reweights_live() {
    let _g = net_lock();
    let rig = Rig::new();
    let vip = format!("{VIP}:80");
    rig.adm(&["-A", "-t", &vip, "-s", "rr"]);
    rig.add_servers(&vip, [1, 1, 1]);
    // rr hands one long-lived connection to each server.
    let held = rig.hold(&vip, 3);
    rig.wait_for("1 active connection each", Duration::from_secs(3), || {
        (0..3).all(|i| rig.active(&vip, i) == 1)
    });

    // Quiesce rs1: no new connections, its open one stays.
    rig.adm(&["-e", "-t", &vip, "-r", &rig.rip(0), "-g", "-w", "0"]);
    assert_eq!(rig.split(&vip, 20), [0, 10, 10], "rr with rs1 at weight 0");
    let row = rig.dest_row(&vip, 0);
    assert_eq!((row[1].as_str(), row[2].as_str()), ("0", "1"), "{row:?}");

    // Switch to wrr and re-weight while rs1 drains; every phase must match
    // the scheduler crate's wrr under the same updates (cw/mw/gcd rule).
    let mut model = model_dests(&rig, [0, 1, 1]);
    let mut wrr = WeightedRoundRobin::new();
    rig.adm(&["-E", "-t", &vip, "-s", "wrr"]);
    wrr.update(&model);
    let f = flow(rig.lan.client.ip, VIP);
    let phase = |wrr: &mut WeightedRoundRobin, model: &[Dest], n: u64| {
        let mut expect = [0u64; 3];
        for _ in 0..n {
            let i = wrr.schedule(model, &f, 0).expect("a server");
            expect[2 - i] += 1;
        }
        assert_eq!(rig.split(&vip, n), expect, "wrr phase of {n}");
    };
    phase(&mut wrr, &model, 5);
    for (i, w) in [(1usize, 4i32), (2, 2)] {
        rig.adm(&[
            "-e",
            "-t",
            &vip,
            "-r",
            &rig.rip(i),
            "-g",
            "-w",
            &w.to_string(),
        ]);
        model[2 - i].weight = w;
        model[2 - i].last_weight = w;
        wrr.update(&model);
        phase(&mut wrr, &model, 3);
    }
    phase(&mut wrr, &model, 13);

    // The drained server's connection (and the others) complete normally.
    let s = held.release(HOLD_WAIT);
    assert_eq!(s.ok, 3, "{s:?}");
    assert_eq!(
        (s.count("rs1"), s.count("rs2"), s.count("rs3")),
        (1, 1, 1),
        "{s:?}"
    );
}

#[test]
fn thresholds_set_and_clear_the_overload_state() {
    let _g = net_lock();
    let rig = Rig::new();
    let vip = format!("{VIP}:80");
    // FIN_WAIT expires after 1 s, so closed connections stop counting soon.
    rig.adm(&["--set", "900", "1", "300"]);
    rig.adm(&["-A", "-t", &vip, "-s", "rr"]);
    rig.add_servers(&vip, [1, 0, 0]);
    rig.adm(&[
        "-e",
        "-t",
        &vip,
        "-r",
        &rig.rip(0),
        "-g",
        "-w",
        "1",
        "-x",
        "2",
        "-y",
        "1",
    ]);
    // Two long-lived connections reach rs1's upper threshold.
    let held = rig.hold(&vip, 2);
    rig.wait_for("2 active on rs1", Duration::from_secs(3), || {
        rig.active(&vip, 0) == 2
    });
    let l = rig.listed(&["-Ln", "--thresholds"]);
    assert_eq!(
        service(&l, &vip).dest(&rig.rip(0)).expect("rs1").fields,
        ["2", "1", "2", "0"],
        "--thresholds of rs1"
    );
    for i in [1, 2] {
        rig.adm(&["-e", "-t", &vip, "-r", &rig.rip(i), "-g", "-w", "1"]);
    }
    // Overloaded: rr skips rs1.
    assert_eq!(rig.split(&vip, 10), [0, 5, 5], "rs1 overloaded");

    // Closing them brings rs1 below its lower threshold once FIN_WAIT
    // expires: the overload clears and rs1 is scheduled again, until its
    // total reaches the upper threshold again.
    let s = held.release(HOLD_WAIT);
    assert_eq!((s.ok, s.count("rs1")), (2, 2), "{s:?}");
    rig.wait_for("rs1 connections expired", Duration::from_secs(10), || {
        rig.dest_row(&vip, 0)[2..] == ["0", "0"]
    });
    let split = rig.split(&vip, 9);
    assert!(
        (1..=2).contains(&split[0]),
        "rs1 back in service but capped by -x 2: {split:?}"
    );
}
