//! SIGHUP reload by difference, and rules that survive a restart, through
//! a real xvsd on a DR LAN.
//!
//! A reload that rebuilt everything would zero the counters of servers
//! that did not change and cut the connections of the ones removed; this
//! test holds real connections across the reload and checks that neither
//! happens, then restarts the daemon without `--config` and expects the
//! rules back from its state directory.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use xvs_tests::daemon::Xvsd;
use xvs_tests::listing::{self, ListedService, Stats};
use xvs_tests::netns::{self, DrLan, VIP};
use xvs_tests::node::{ClientSummary, Clients, Holder};
use xvs_tests::rig;

const NODE: &str = env!("CARGO_BIN_EXE_xvs-node");
/// How long a holder may take to open its connections, and to finish.
const HOLD_WAIT: Duration = Duration::from_secs(15);
/// Connections held open across the reload (rr: half on each server).
const HELD: u64 = 10;

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Self {
        let d = std::env::temp_dir().join(format!(
            "xvs-reload-{}-{}",
            netns::unique_prefix(),
            std::process::id()
        ));
        std::fs::create_dir_all(&d).expect("scratch directory");
        Scratch(d)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn rules(rips: &[String]) -> String {
    let mut r = format!("-A -t {VIP}:80 -s rr\n");
    for rip in rips {
        r.push_str(&format!("-a -t {VIP}:80 -r {rip} -g -w 1\n"));
    }
    r
}

fn start(lan: &DrLan, state: &Path, config: Option<&Path>) -> Xvsd {
    let mut args = vec![
        "--iface".to_owned(),
        lan.director.iface.clone(),
        "--state-dir".to_owned(),
        state.display().to_string(),
    ];
    if let Some(c) = config {
        args.push("--config".into());
        args.push(c.display().to_string());
    }
    Xvsd::start_with(Some(&lan.director.ns), &args)
}

fn hup(xvsd: &Xvsd) {
    let pid = xvsd.pid().expect("xvsd runs");
    let st = Command::new("sh")
        .args(["-c", &format!("kill -HUP {pid}")])
        .status()
        .expect("run kill");
    assert!(st.success(), "kill -HUP {pid}: {st}");
}

fn service(xvsd: &Xvsd, args: &[&str]) -> ListedService {
    let l = listing::parse(&xvsd.adm_ok(args));
    let vip = format!("{VIP}:80");
    l.into_iter()
        .find(|s| s.addr == vip)
        .unwrap_or_else(|| panic!("{vip} not listed"))
}

fn dest_stats(xvsd: &Xvsd, rip: &str) -> Stats {
    service(xvsd, &["-Ln", "--stats", "--exact"])
        .dest(rip)
        .and_then(|d| d.stats())
        .unwrap_or_else(|| panic!("no stats for {rip}"))
}

/// Waits (bounded) until `cond` holds on the daemon's `-Ln`.
fn wait_for(xvsd: &Xvsd, what: &str, mut cond: impl FnMut(&ListedService) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = service(xvsd, &["-Ln"]);
        if cond(&s) {
            return;
        }
        assert!(Instant::now() < deadline, "{what} not seen: {s:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn run_clients(lan: &DrLan, count: u64) -> ClientSummary {
    Clients::new(3000, 30_000, 3).run_all_ok(&lan.client.ns, &format!("{VIP}:80"), count)
}

#[test]
fn sighup_drains_a_removed_server_keeps_counters_and_rules_survive_a_restart() {
    xvs_tests::bin("xvsd");
    xvs_tests::bin("xvsadm");
    let scratch = Scratch::new();
    let state = scratch.0.join("state");
    let config = scratch.0.join("rules");

    let lan = DrLan::new();
    let _servers = rig::serve_on(&lan.rs[..2], 80, &["--idle-timeout-s", "30"]);
    rig::resolve(&lan.director, &lan.rs[..2]);
    let rs1 = format!("{}:80", lan.rs[0].ip);
    let rs2 = format!("{}:80", lan.rs[1].ip);
    std::fs::write(&config, rules(&[rs1.clone(), rs2.clone()])).unwrap();

    let xvsd = start(&lan, &state, Some(&config));
    assert!(
        xvsd.stderr_so_far().contains("rules from --config"),
        "{}",
        xvsd.stderr_so_far()
    );
    let saved = std::fs::read_to_string(state.join("rules")).expect("state file written");
    assert!(saved.contains(&rs2), "{saved}");

    // Long-lived connections on both servers, then one short one for rs1's
    // counters.
    let held = Holder::start(&lan.client.ns, NODE, &format!("{VIP}:80"), HELD, HOLD_WAIT);
    assert_eq!(held.held(), HELD);
    wait_for(&xvsd, "held connections on both servers", |s| {
        [&rs1, &rs2].iter().all(|r| {
            s.dest(r)
                .is_some_and(|d| d.fields.get(2).map(String::as_str) == Some("5"))
        })
    });
    let before = dest_stats(&xvsd, &rs1);
    assert!(before.conns >= HELD / 2, "{before:?}");

    // A config with an error changes nothing and names the line.
    std::fs::write(
        &config,
        format!(
            "{}-a -t {VIP}:80 -r nonsense\n",
            rules(std::slice::from_ref(&rs1))
        ),
    )
    .unwrap();
    hup(&xvsd);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !xvsd.stderr_so_far().contains("nothing changed") {
        assert!(Instant::now() < deadline, "{}", xvsd.stderr_so_far());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        xvsd.stderr_so_far().contains("line 3"),
        "{}",
        xvsd.stderr_so_far()
    );
    assert!(service(&xvsd, &["-Ln"]).dest(&rs2).is_some());

    // Server 2 removed, server 1 unchanged.
    std::fs::write(&config, rules(std::slice::from_ref(&rs1))).unwrap();
    hup(&xvsd);
    // IPVS lists a deleted server no more, even while its connections
    // last (they hold it in the trash).
    wait_for(&xvsd, "rs2 removed", |s| s.dest(&rs2).is_none());
    // The state file follows within a moment (its writer is a thread of
    // its own, so the listing may be ahead of it).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let saved = std::fs::read_to_string(state.join("rules")).unwrap_or_default();
        if !saved.contains(&rs2) && saved.contains(&rs1) {
            break;
        }
        assert!(Instant::now() < deadline, "state file not updated: {saved}");
        std::thread::sleep(Duration::from_millis(50));
    }

    // rs1 kept its counters and its connections.
    let after = dest_stats(&xvsd, &rs1);
    assert!(
        after.conns >= before.conns && after.in_pkts >= before.in_pkts,
        "rs1's counters reset by the reload: {before:?} -> {after:?}"
    );
    let active = service(&xvsd, &["-Ln"]).dest(&rs1).unwrap().fields[2].clone();
    assert_eq!(active, "5", "rs1's ActiveConn after the reload");

    // New connections all go to rs1.
    let fresh = run_clients(&lan, 10);
    assert_eq!(fresh.count("rs1"), 10, "{fresh:?}");
    let later = dest_stats(&xvsd, &rs1);
    assert!(later.conns >= before.conns + 10, "{before:?} -> {later:?}");

    // The removed server's connections drained to the end: every held
    // connection completes, half of them answered by rs2.
    let done = held.release(HOLD_WAIT);
    assert_eq!((done.ok, done.failed), (HELD, 0), "{done:?}");
    assert_eq!(
        (done.count("rs1"), done.count("rs2")),
        (HELD / 2, HELD / 2),
        "{done:?}"
    );
    let exit = xvsd.stop();
    assert!(exit.status.success(), "{}", exit.stderr);

    // A restart with the same state directory and no --config has the
    // rules back.
    let xvsd = start(&lan, &state, None);
    assert!(
        xvsd.stderr_so_far().contains("rules from the state file"),
        "{}",
        xvsd.stderr_so_far()
    );
    let s = service(&xvsd, &["-Ln"]);
    assert_eq!(s.fields, ["rr"], "{s:?}");
    assert!(s.dest(&rs1).is_some() && s.dest(&rs2).is_none(), "{s:?}");
    let again = run_clients(&lan, 4);
    assert_eq!(again.count("rs1"), 4, "{again:?}");
}
