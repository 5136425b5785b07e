//! The daemon's life around the data plane, in real namespaces: one xvsd
//! per interface and per control socket, error exits that leave the
//! interface as it was, a `kill -9` that leaves the steering program
//! pinned (dropping, not resetting, the VIP's traffic) for a restarted
//! xvsd to take over, and `xvsd --cleanup` for what a dead daemon left.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use xvs_tests::daemon::{shared_pin_dir, Start, TempFile, Xvsd, XvsdExit};
use xvs_tests::netns::{self, DrLan};
use xvs_tests::node::{ClientSummary, Clients};
use xvs_tests::rig;

const VIP_PORT: &str = "198.18.0.100:80";
/// How long a daemon that must refuse to start may take to do so.
const EXIT_TIMEOUT: Duration = Duration::from_secs(20);

/// Tests that run xvsd or push traffic take turns (two cores).
static NET: Mutex<()> = Mutex::new(());

fn net_lock() -> MutexGuard<'static, ()> {
    NET.lock().unwrap_or_else(|e| e.into_inner())
}

/// The rules of the tests: the VIP's port 80 over the three real servers.
fn rules(lan: &DrLan) -> String {
    let mut r = format!("-A -t {VIP_PORT} -s rr\n");
    for h in &lan.rs {
        r.push_str(&format!("-a -t {VIP_PORT} -r {}:80 -g -w 1\n", h.ip));
    }
    r
}

/// Removes what a test's daemons pinned in the shared bpffs, whatever
/// happened (the interface itself goes with the LAN).
struct PinGuard(std::path::PathBuf);

impl Drop for PinGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `count` sequential TCP connections from the client to the VIP.
fn client_run(lan: &DrLan, count: u64) -> ClientSummary {
    Clients::new(2000, 30_000, 3).run(&lan.client.ns, VIP_PORT, count)
}

fn assert_forwards(lan: &DrLan, when: &str) {
    let s = client_run(lan, 12);
    assert_eq!((s.ok, s.failed), (12, 0), "{when}: {s:?}");
}

fn iface_args(lan: &DrLan, extra: &[&str]) -> Vec<String> {
    let mut a = vec!["--iface".to_owned(), lan.director.iface.clone()];
    a.extend(extra.iter().map(|s| (*s).to_owned()));
    a
}

fn shared() -> Start {
    Start {
        shared_bpffs: true,
        ..Start::default()
    }
}

fn assert_failed_with(exit: &XvsdExit, needle: &str) {
    assert!(
        !exit.killed,
        "xvsd did not exit by itself:\n{}",
        exit.stderr
    );
    assert!(
        !exit.status.success(),
        "xvsd exited 0; stderr:\n{}",
        exit.stderr
    );
    assert!(
        exit.stderr.contains(needle),
        "no {needle:?} in xvsd's stderr:\n{}",
        exit.stderr
    );
}

fn lock_file(lan: &DrLan) -> std::path::PathBuf {
    Path::new("/run/xvs").join(format!("{}.lock", lan.director.iface))
}

#[test]
fn a_second_daemon_on_the_interface_or_the_socket_is_refused_and_the_first_keeps_forwarding() {
    let _g = net_lock();
    let lan = DrLan::new();
    let _servers = rig::serve_on(&lan.rs, 80, &[]);
    let cfg = TempFile::new("rules", &rules(&lan));
    let first = Xvsd::start_opts(
        Some(&lan.director.ns),
        &iface_args(&lan, &["--config", &cfg.arg()]),
        &Start::default(),
    );
    assert_forwards(&lan, "the first daemon alone");
    let pid = first.pid().expect("running");

    // The same interface, another socket.
    let second = Xvsd::run_to_exit(
        Some(&lan.director.ns),
        &iface_args(&lan, &[]),
        &Start::default(),
        EXIT_TIMEOUT,
    );
    assert_failed_with(&second, &format!("interface {}", lan.director.iface));
    assert_failed_with(&second, &format!("pid {pid}"));
    assert!(lan.director_has_xdp(), "the first daemon's program is gone");
    assert_forwards(&lan, "after a second daemon was refused the interface");

    // The same socket, no interface: the live socket is not unlinked.
    let third = Xvsd::run_to_exit(
        None,
        &[],
        &Start {
            socket: Some(first.socket().to_path_buf()),
            ..Start::default()
        },
        EXIT_TIMEOUT,
    );
    assert_failed_with(&third, "another xvsd is listening");
    assert!(first.socket().exists(), "the live socket was unlinked");
    let listed = first.adm_ok(&["-Ln"]);
    assert!(listed.contains(VIP_PORT), "{listed}");
    assert_forwards(&lan, "after a second daemon was refused the socket");

    // SIGHUP does not stop the daemon (it reloads); SIGQUIT stops it
    // cleanly, as SIGTERM does.
    signal(pid, "HUP");
    wait_for(
        || first.stderr_so_far().contains("SIGHUP"),
        "the SIGHUP hook",
    );
    first.adm_ok(&["-Ln"]);
    assert_forwards(&lan, "after SIGHUP");
    signal(pid, "QUIT");
    wait_for(|| !first.socket().exists(), "a clean exit on SIGQUIT");
    let exit = first.stop();
    assert!(exit.status.success(), "{}", exit.stderr);
    assert!(!exit.killed);
    assert!(!lan.director_has_xdp());
    assert!(
        !lock_file(&lan).exists(),
        "lock file left after a clean stop"
    );
}

fn signal(pid: u32, sig: &str) {
    netns::run_ok(&["sh", "-c", &format!("kill -{sig} {pid}")]);
}

fn wait_for(mut cond: impl FnMut() -> bool, what: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(std::time::Instant::now() < deadline, "no {what} within 5 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_start_that_fails_after_attaching_leaves_the_interface_as_it_was() {
    let _g = net_lock();
    let lan = DrLan::new();
    let _pins = PinGuard(shared_pin_dir(&lan.director.iface));
    let bad = TempFile::new("bad-rules", "-A -t 198.18.0.100:80 -s no-such-scheduler\n");
    let exit = Xvsd::run_to_exit(
        Some(&lan.director.ns),
        &iface_args(&lan, &["--config", &bad.arg()]),
        &shared(),
        EXIT_TIMEOUT,
    );
    // It did attach (the message comes after the attach line) ...
    assert!(
        exit.stderr.contains("XDP steering program attached"),
        "{}",
        exit.stderr
    );
    assert_failed_with(&exit, &bad.arg());
    // ... and detached, unpinned and let the interface go.
    assert!(
        !lan.director_has_xdp(),
        "XDP program left on the link:\n{}",
        exit.stderr
    );
    assert!(!shared_pin_dir(&lan.director.iface).exists());
    assert!(!lock_file(&lan).exists());
}

/// Whether a TCP connect from the client to the VIP times out (`true`)
/// rather than being refused by a reset (`false`); panics if it connects.
fn connect_times_out(lan: &DrLan) -> bool {
    let out = lan.client.exec(&[
        "timeout",
        "2",
        "bash",
        "-c",
        "exec 3<>/dev/tcp/198.18.0.100/80",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        Some(124) => true,
        Some(0) => panic!("connected to the VIP with no daemon running"),
        _ => {
            assert!(err.contains("refused"), "unexpected failure: {err}");
            false
        }
    }
}

/// The `no_socket` counter of the interface's steering program, from
/// `xvsadm -L --dataplane`.
fn no_socket(xvsd: &Xvsd, iface: &str) -> u64 {
    let text = xvsd.adm_ok(&["-L", "--dataplane"]);
    let line = text
        .lines()
        .find(|l| l.contains(&format!("steering {iface}:")))
        .unwrap_or_else(|| panic!("no steering line for {iface}:\n{text}"));
    let rest = line
        .split_once("no_socket ")
        .unwrap_or_else(|| panic!("no no_socket in {line:?}"))
        .1;
    rest.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("bad no_socket in {line:?}"))
}

#[test]
fn after_kill_9_the_program_stays_pinned_drops_without_reset_and_a_restart_takes_over() {
    let _g = net_lock();
    let lan = DrLan::new();
    let iface = lan.director.iface.clone();
    let pins = shared_pin_dir(&iface);
    let _pins = PinGuard(pins.clone());
    let _servers = rig::serve_on(&lan.rs, 80, &[]);
    let cfg = TempFile::new("rules", &rules(&lan));
    let args = iface_args(&lan, &["--config", &cfg.arg()]);
    let ns = Some(lan.director.ns.as_str());

    let mut first = Xvsd::start_opts(ns, &args, &shared());
    assert!(pins.join("link").exists(), "{}", first.stderr_so_far());
    assert_forwards(&lan, "before the crash");
    // A live daemon's interface is not cleaned up under it.
    let refused = Xvsd::run_to_exit(
        ns,
        &["--cleanup".into(), iface.clone()],
        &shared(),
        EXIT_TIMEOUT,
    );
    assert_failed_with(&refused, &format!("interface {iface}"));
    assert!(lan.director_has_xdp());

    first.kill9();
    assert!(
        lan.director_has_xdp(),
        "the program went with the killed daemon"
    );
    assert!(pins.join("link").exists() && pins.join("svc_map").exists());
    // The VIP's SYNs are dropped, not refused: no reset reaches the client.
    assert!(
        connect_times_out(&lan),
        "a connect to the VIP was reset while xvsd was dead"
    );

    // A restart on the same (now stale) socket takes the program over.
    let second = Xvsd::start_opts(
        ns,
        &args,
        &Start {
            socket: Some(first.socket().to_path_buf()),
            shared_bpffs: true,
        },
    );
    assert!(
        second.stderr_so_far().contains("taken over"),
        "{}",
        second.stderr_so_far()
    );
    // The counter lives in the pinned map: the dropped SYNs are counted.
    assert!(no_socket(&second, &iface) > 0);
    assert_forwards(&lan, "after the restart");
    let exit = second.stop();
    assert!(exit.status.success(), "{}", exit.stderr);
    assert!(!lan.director_has_xdp(), "a clean stop left the program");
    assert!(!pins.exists(), "a clean stop left the pins");

    // `--cleanup` after a crash leaves the link clean.
    let mut third = Xvsd::start_opts(ns, &args, &shared());
    assert_forwards(&lan, "third daemon");
    third.kill9();
    assert!(lan.director_has_xdp());
    let cleaned = Xvsd::run_to_exit(
        ns,
        &["--cleanup".into(), iface.clone()],
        &shared(),
        EXIT_TIMEOUT,
    );
    assert!(
        cleaned.status.success() && !cleaned.killed,
        "--cleanup failed: {}",
        cleaned.stderr
    );
    assert!(!lan.director_has_xdp(), "--cleanup left the program");
    assert!(!pins.exists(), "--cleanup left the pins");
    assert!(!lock_file(&lan).exists(), "--cleanup left the lock file");
}

#[test]
fn maps_pinned_by_an_incompatible_version_are_never_reused() {
    let _g = net_lock();
    let lan = DrLan::new();
    let iface = lan.director.iface.clone();
    let pins = shared_pin_dir(&iface);
    let _pins = PinGuard(pins.clone());
    xvs_tests::daemon::ensure_shared_bpffs();
    std::fs::create_dir_all(&pins).unwrap();
    // A svc_map with another key layout than this version's.
    let map = pins.join("svc_map");
    netns::run_ok(&[
        "bpftool",
        "map",
        "create",
        &map.display().to_string(),
        "type",
        "hash",
        "key",
        "4",
        "value",
        "4",
        "entries",
        "16",
        "name",
        "svc_map",
    ]);
    let exit = Xvsd::run_to_exit(
        Some(&lan.director.ns),
        &iface_args(&lan, &[]),
        &shared(),
        EXIT_TIMEOUT,
    );
    assert_failed_with(&exit, "incompatible version");
    assert_failed_with(&exit, &format!("--cleanup {iface}"));
    assert!(!lan.director_has_xdp());
    assert!(map.exists(), "the foreign map was removed");
    let cleaned = Xvsd::run_to_exit(
        Some(&lan.director.ns),
        &["--cleanup".into(), iface.clone()],
        &shared(),
        EXIT_TIMEOUT,
    );
    assert!(cleaned.status.success(), "{}", cleaned.stderr);
    assert!(!pins.exists());
}

#[test]
fn a_daemon_whose_socket_file_was_removed_still_stops_on_sigterm() {
    let _g = net_lock();
    let xvsd = Xvsd::start_control_only();
    xvsd.adm_ok(&["-A", "-t", VIP_PORT, "-s", "rr"]);
    std::fs::remove_file(xvsd.socket()).expect("remove the control socket file");
    let exit = xvsd.stop();
    assert!(
        !exit.killed && exit.status.success(),
        "xvsd did not stop cleanly after its socket file went: {:?}\n{}",
        exit.status,
        exit.stderr
    );
    assert!(
        exit.stderr.contains("cannot wake the control acceptor"),
        "{}",
        exit.stderr
    );
}
