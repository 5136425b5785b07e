//! Director failover (issue 14): two xvs directors share the VIP through
//! keepalived (VRRP only, in each director's namespace, with its own
//! configuration); keepalived's notify scripts (the shipped
//! `scripts/examples/keepalived-notify.sh`) make the VIP's holder the sync
//! master and the other the sync backup, and a `vrrp_script` tracks xvsd.
//! 20 long-lived TCP streams go through the master (rr over 3 real
//! servers, DR); the master dies (xvsd and keepalived killed, its link
//! down); the backup takes the VIP, announces it by gratuitous ARP, and
//! every stream carries on with no reset and no lost byte, because the
//! backup was synced every connection. The same failover without sync
//! breaks every stream: what sync buys. A backup that has the service but
//! only one of the three real servers still carries every stream on: the
//! connections to the servers it lacks were installed without one of its
//! servers and are forwarded by the method their records name, as IPVS
//! does.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use xvs_tests::daemon::{shared_pin_dir, Start, Xvsd};
use xvs_tests::listing;
use xvs_tests::netns::{run_ok, DrLan, Host, Proc, VIP};
use xvs_tests::rig;

/// The notify script that ships with xvs.
const NOTIFY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../scripts/examples/keepalived-notify.sh"
);
/// Streams per run.
const STREAMS: u64 = 20;
/// How long each stream lives; the master dies a few seconds in.
const STREAM_MS: u64 = 9_000;
/// Longest an exchange may wait before its stream counts as broken.
const EXCHANGE_TIMEOUT_MS: u64 = 5_000;
/// The sync id both directors use.
const SYNCID: &str = "42";

/// The tests take turns (two cores for everything).
static NET: Mutex<()> = Mutex::new(());

fn net_lock() -> MutexGuard<'static, ()> {
    NET.lock().unwrap_or_else(|e| e.into_inner())
}

/// A directory of its own for one keepalived (configuration, pid files),
/// removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("xvs-failover-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One director: its host, its xvsd, its keepalived.
struct Director {
    host: Host,
    xvsd: Xvsd,
    keepalived: Option<Proc>,
    dir: TempDir,
    /// The pins of a daemon started with the shared bpffs (removed last).
    _pins: Option<PinGuard>,
}

/// Removes what a daemon killed with its program pinned left in the
/// shared bpffs.
struct PinGuard(PathBuf);

impl Drop for PinGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// How the master dies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Death {
    /// The whole machine: off the wire, xvsd and keepalived killed.
    Machine,
    /// xvsd alone (SIGKILL), its program left pinned and dropping the
    /// VIP's frames: keepalived notices through its `vrrp_script` and
    /// gives the VIP up.
    Xvsd,
}

impl Director {
    /// xvsd on `host` with the service VIP:80, rr over the real servers
    /// `rs` by direct routing, the same on both directors.
    fn start(host: Host, rs: &[Host], pinned: bool) -> Director {
        let how = Start {
            socket: None,
            shared_bpffs: pinned,
        };
        let args = ["--iface".to_string(), host.iface.clone()];
        let pins = pinned.then(|| PinGuard(shared_pin_dir(&host.iface)));
        let xvsd = Xvsd::start_opts(Some(&host.ns), &args, &how);
        let svc = format!("{VIP}:80");
        xvsd.adm_ok(&["-A", "-t", &svc, "-s", "rr"]);
        for r in rs {
            xvsd.adm_ok(&["-a", "-t", &svc, "-r", &format!("{}:80", r.ip), "-g"]);
            // The next hops are known before the director needs them.
            host.exec_ok(&["ping", "-c", "1", "-W", "2", &r.ip.to_string()]);
        }
        let dir = TempDir::new(&host.ns);
        Director {
            host,
            xvsd,
            keepalived: None,
            dir,
            _pins: pins,
        }
    }

    /// keepalived (VRRP only) with `priority`, tracking xvsd, and with
    /// `sync` the notify script switching the sync daemon's role.
    fn start_keepalived(&mut self, priority: u8, sync: bool) {
        let xvsadm = xvs_tests::bin("xvsadm");
        let (xvsadm, sock) = (xvsadm.display(), self.xvsd.socket().display());
        let h = &self.host;
        let notify = |state: &str| {
            if sync {
                format!(
                    "    notify_{} \"{NOTIFY} {state} {} {SYNCID} {sock} {xvsadm}\"\n",
                    state.to_lowercase(),
                    h.iface
                )
            } else {
                String::new()
            }
        };
        let conf = format!(
            "global_defs {{\n    router_id {ns}\n    script_user root\n    vrrp_version 3\n    \
             vrrp_garp_master_delay 1\n    vrrp_garp_master_repeat 3\n}}\n\
             vrrp_script xvsd_alive {{\n    script \"{xvsadm} --socket {sock} -L -n\"\n    \
             interval 1\n    timeout 1\n    fall 1\n    rise 1\n}}\n\
             vrrp_instance xvs {{\n    state BACKUP\n    interface {iface}\n    \
             virtual_router_id 51\n    priority {priority}\n    advert_int 0.2\n    \
             virtual_ipaddress {{\n        {VIP}/32 dev {iface}\n    }}\n    \
             track_script {{\n        xvsd_alive\n    }}\n{}{}{}}}\n",
            notify("MASTER"),
            notify("BACKUP"),
            notify("FAULT"),
            ns = h.ns,
            iface = h.iface,
        );
        let path = self.dir.0.join("keepalived.conf");
        std::fs::write(&path, conf).expect("write keepalived.conf");
        let (pid, vrrp_pid) = (self.dir.0.join("main.pid"), self.dir.0.join("vrrp.pid"));
        let (path, pid, vrrp_pid) = (path.display(), pid.display(), vrrp_pid.display());
        let (path, pid, vrrp_pid) = (path.to_string(), pid.to_string(), vrrp_pid.to_string());
        self.keepalived = Some(h.spawn(&[
            "keepalived",
            "--vrrp",
            "--dont-fork",
            "--log-console",
            "--no-syslog",
            "-f",
            &path,
            "-p",
            &pid,
            "-r",
            &vrrp_pid,
        ]));
    }

    /// Whether the VIP is on this director's interface.
    fn holds_vip(&self) -> bool {
        let out = self
            .host
            .exec_ok(&["ip", "-4", "-o", "addr", "show", "dev", &self.host.iface]);
        out.contains(&format!(" {VIP}/32 "))
    }

    /// Whether the sync daemon of `role` runs (`-L --daemon`).
    fn sync_daemon(&self, role: &str) -> bool {
        let out = self.xvsd.adm(&["-L", "--daemon"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|l| l.starts_with(&format!("{role} sync daemon")))
    }

    /// The connections `-Ln` counts active on this director.
    fn active(&self) -> u64 {
        let l = listing::parse(&self.xvsd.adm_ok(&["-Ln"]));
        l.iter()
            .flat_map(|s| s.dests.iter())
            .map(|d| d.fields.get(2).and_then(|f| f.parse().ok()).unwrap_or(0))
            .sum()
    }

    /// A counter of `-L --dataplane` (0 if absent).
    fn counter(&self, name: &str) -> u64 {
        let dp = self.xvsd.adm_ok(&["-L", "--dataplane"]);
        dp.split_whitespace()
            .skip_while(|w| *w != name)
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    /// The machine dies: off the wire first (a dead machine says nothing,
    /// while this one's kernel, still holding the VIP, would reset the
    /// connections once xvsd's program is gone), then xvsd and keepalived
    /// killed (SIGKILL: nothing of theirs runs).
    fn crash(&mut self) {
        self.host
            .exec_ok(&["ip", "link", "set", "dev", &self.host.iface, "down"]);
        self.xvsd.kill9();
        for f in ["vrrp.pid", "main.pid"] {
            if let Ok(pid) = std::fs::read_to_string(self.dir.0.join(f)) {
                let _ = Command::new("kill").args(["-9", pid.trim()]).status();
            }
        }
        drop(self.keepalived.take());
    }
}

/// Waits until `f` holds, at most `within`; whether it did.
fn wait_for(within: Duration, f: impl FnMut() -> bool) -> bool {
    xvs_tests::wait_until(within, Duration::from_millis(20), f)
}

/// What one failover run saw.
struct Run {
    /// The client's report and whether every stream completed.
    out: String,
    ok: bool,
    /// From the master's death to the VIP on the backup.
    takeover: Duration,
    /// The backup's counters after the run.
    backup_installed: u64,
    backup_no_conn: u64,
    /// Connections the backup installed for servers it lacks.
    backup_unbound: u64,
    /// The backup's `-L --dataplane` and `-Lnc` after the run.
    backup_report: String,
    /// The backup's `-Ln` after the run.
    backup_ln: String,
}

/// The connections `-Lnc` lists as ESTABLISHED on `d`.
fn established(d: &Director) -> u64 {
    d.xvsd.adm_ok(&["-Lnc"]).matches("ESTABLISHED").count() as u64
}

/// Two directors, keepalived on both, 20 streams through the master, the
/// master crashes; `sync` says whether the sync daemons run; the backup
/// has the first `backup_servers` of the three real servers.
fn failover(sync: bool, death: Death, backup_servers: usize) -> Run {
    let mut lan = DrLan::new();
    let b_host = lan.add_host("dir2", "198.18.0.3".parse().expect("address"));
    // keepalived places the VIP, not the topology.
    lan.director.exec_ok(&[
        "ip",
        "addr",
        "del",
        &format!("{VIP}/32"),
        "dev",
        &lan.director.iface,
    ]);
    let _servers: Vec<Proc> = rig::stream_on(&lan.rs, 80, 120);
    // A NIC hands its driver (and XDP) only the frames addressed to it;
    // a veth hands over every frame the bridge sends it, and the bridge
    // floods a dead director's frames once its port goes down. Unknown
    // unicast is not flooded to the directors, so that frames reach the
    // backup only once the VIP has moved, as on real hardware.
    for h in [&lan.director, &b_host] {
        run_ok(&[
            "ip",
            "-n",
            &lan.switch_ns,
            "link",
            "set",
            "dev",
            &h.port,
            "type",
            "bridge_slave",
            "flood",
            "off",
        ]);
    }
    let mut a = Director::start(lan.director.clone(), &lan.rs, death == Death::Xvsd);
    let mut b = Director::start(b_host, &lan.rs[..backup_servers], false);
    for r in &lan.rs[backup_servers..] {
        // Its neighbours are as warm as the master's.
        b.host
            .exec_ok(&["ping", "-c", "1", "-W", "2", &r.ip.to_string()]);
    }
    a.start_keepalived(150, sync);
    b.start_keepalived(100, sync);
    assert!(
        wait_for(Duration::from_secs(10), || a.holds_vip()),
        "the preferred director did not take the VIP"
    );
    assert!(!b.holds_vip(), "both directors hold the VIP");
    if sync {
        assert!(
            wait_for(Duration::from_secs(10), || a.sync_daemon("master")
                && !a.sync_daemon("backup")
                && b.sync_daemon("backup")),
            "keepalived's notify did not set the sync roles:\nA:\n{}\nB:\n{}",
            a.xvsd.stderr_so_far(),
            b.xvsd.stderr_so_far()
        );
    }

    let streams = rig::start_streams(
        &lan.client.ns,
        &format!("{VIP}:80"),
        STREAMS,
        STREAM_MS,
        64,
        EXCHANGE_TIMEOUT_MS,
    );
    assert!(
        wait_for(Duration::from_secs(5), || a.active() == STREAMS),
        "the master does not count the streams active: {}",
        a.active()
    );
    if sync {
        // -Ln counts only the connections to servers the backup has.
        assert!(
            wait_for(Duration::from_secs(5), || established(&b) >= STREAMS),
            "the backup was not synced every stream:\n{}\n{}",
            b.xvsd.adm_ok(&["-Lnc"]),
            b.xvsd.adm_ok(&["-L", "--dataplane"])
        );
        if backup_servers == lan.rs.len() {
            assert_eq!(b.active(), STREAMS, "{}", b.xvsd.adm_ok(&["-Ln"]));
        }
    } else {
        assert_eq!(b.active(), 0, "no sync, yet the backup knows streams");
    }
    // Exchanges through the master for a while.
    std::thread::sleep(Duration::from_millis(1500));

    let died = Instant::now();
    match death {
        Death::Machine => a.crash(),
        Death::Xvsd => {
            a.xvsd.kill9();
            assert!(
                lan.director_has_xdp(),
                "the killed daemon's program is pinned and drops the VIP's frames"
            );
        }
    }
    assert!(
        wait_for(Duration::from_secs(10), || b.holds_vip()),
        "the backup did not take the VIP"
    );
    let takeover = died.elapsed();
    // The client heard the gratuitous ARP: the VIP is at the backup's MAC.
    let moved = wait_for(Duration::from_secs(3), || {
        lan.client
            .exec_ok(&["ip", "neigh", "show", &VIP.to_string()])
            .contains(&b.host.mac)
    });
    assert!(moved, "the client still sends the VIP's frames elsewhere");
    if sync {
        assert!(
            wait_for(Duration::from_secs(5), || b.sync_daemon("master")),
            "the new VIP holder did not become sync master"
        );
    }

    let (out, ok) = streams.finish(Duration::from_millis(
        STREAM_MS + EXCHANGE_TIMEOUT_MS + 20_000,
    ));
    let run = Run {
        out,
        ok,
        takeover,
        backup_installed: b.counter("installed"),
        backup_no_conn: b.counter("no_conn"),
        backup_unbound: b.counter("unbound"),
        backup_ln: b.xvsd.adm_ok(&["-Ln"]),
        backup_report: format!(
            "{}\n{}",
            b.xvsd.adm_ok(&["-L", "--dataplane"]),
            b.xvsd.adm_ok(&["-Lnc"])
        ),
    };
    let exit = b.xvsd.stop();
    assert!(exit.status.success(), "{}", exit.stderr);
    run
}

/// The longest exchange the client saw (`max_ms=`), in ms.
fn max_ms(out: &str) -> u64 {
    out.split_whitespace()
        .find_map(|w| w.strip_prefix("max_ms="))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn have_keepalived() -> bool {
    Command::new("keepalived")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success() || !o.stderr.is_empty())
}

#[test]
fn synced_streams_survive_the_masters_death() {
    assert!(
        have_keepalived(),
        "keepalived is not installed (scripts/lib.sh installs it)"
    );
    assert!(Path::new(NOTIFY).is_file(), "{NOTIFY} is missing");
    let _g = net_lock();
    let run = failover(true, Death::Machine, 3);
    eprintln!(
        "failover with sync: VIP on the backup {} ms after the master died; \
         the longest exchange took {} ms",
        run.takeover.as_millis(),
        max_ms(&run.out)
    );
    assert_survived(&run);
}

#[test]
fn synced_streams_survive_the_death_of_xvsd_alone() {
    assert!(
        have_keepalived(),
        "keepalived is not installed (scripts/lib.sh installs it)"
    );
    let _g = net_lock();
    let run = failover(true, Death::Xvsd, 3);
    eprintln!(
        "failover on xvsd's death: VIP on the backup {} ms after xvsd died; \
         the longest exchange took {} ms",
        run.takeover.as_millis(),
        max_ms(&run.out)
    );
    assert_survived(&run);
}

#[test]
fn synced_streams_to_servers_the_backup_lacks_survive_too() {
    assert!(
        have_keepalived(),
        "keepalived is not installed (scripts/lib.sh installs it)"
    );
    let _g = net_lock();
    let run = failover(true, Death::Machine, 1);
    eprintln!(
        "failover to a backup with one of three servers: VIP on the backup {} ms \
         after the master died; {} connections installed for servers it lacks",
        run.takeover.as_millis(),
        run.backup_unbound
    );
    assert_survived(&run);
    // rr over three servers: two thirds of the streams went to servers
    // the backup does not have.
    assert!(
        run.backup_unbound >= STREAMS / 2,
        "unbound {}\n{}",
        run.backup_unbound,
        run.backup_report
    );
    // -Ln lists the service with its one server only (as IPVS).
    let l = listing::parse(&run.backup_ln);
    assert_eq!(l.len(), 1, "{}", run.backup_ln);
    assert_eq!(l[0].dests.len(), 1, "{}", run.backup_ln);
    assert!(
        run.backup_ln.contains("198.18.0.11:80"),
        "{}",
        run.backup_ln
    );
}

/// Every stream of `run` completed, kept exchanging after the failover,
/// and the backup knew them all.
fn assert_survived(run: &Run) {
    assert!(
        run.ok,
        "a stream broke:\n{}\nthe backup:\n{}",
        run.out, run.backup_report
    );
    assert!(
        run.out.contains(&format!("conns={STREAMS} ")) && run.out.contains("failed=0"),
        "{}",
        run.out
    );
    // Every stream kept exchanging after the failover (a line every 50 ms,
    // less the pause).
    for l in run.out.lines().filter(|l| l.starts_with("conn ")) {
        let n: u64 = l
            .rsplit('=')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        assert!(
            n >= STREAM_MS / 50 / 3,
            "a stream stalled: {l}\n{}",
            run.out
        );
    }
    assert!(
        run.backup_installed >= STREAMS,
        "installed {}",
        run.backup_installed
    );
    assert_eq!(
        run.backup_no_conn, 0,
        "the backup met segments it did not know"
    );
}

#[test]
fn without_sync_the_same_failover_breaks_the_streams() {
    assert!(
        have_keepalived(),
        "keepalived is not installed (scripts/lib.sh installs it)"
    );
    let _g = net_lock();
    let run = failover(false, Death::Machine, 3);
    eprintln!(
        "failover without sync: VIP on the backup {} ms after the master died",
        run.takeover.as_millis()
    );
    assert!(!run.ok, "the streams survived without sync:\n{}", run.out);
    assert!(
        run.out.contains(&format!("failed={STREAMS} ")),
        "every stream breaks:\n{}",
        run.out
    );
    assert_eq!(run.backup_installed, 0);
    assert!(run.backup_no_conn > 0, "the backup dropped their segments");
}
