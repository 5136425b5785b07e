//! Restart and live upgrade without losing a connection (issue 11): long
//! streams through xvsd survive `kill -9` and a start with the same
//! arguments, and a live upgrade (SIGUSR2), in DR and in NAT mode; a
//! connection table whose header does not match starts empty and says
//! why.
//!
//! While xvsd is gone the steering program stays pinned and drops the
//! VIP's packets; TCP retransmits them once the next daemon has mapped the
//! connection table again, so the streams see a pause, never a reset.

use std::path::Path;
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use xvs_tests::daemon::{Start, TempFile, Xvsd};
use xvs_tests::lans::NatLan;
use xvs_tests::listing;
use xvs_tests::netns::{unique_prefix, DrLan, VIP};
use xvs_tests::rig;

const STREAM: &str = env!("CARGO_BIN_EXE_xvs-stream");
/// Streams per run.
const STREAMS: u64 = 20;
/// How long each stream lives (a few restarts fit in it).
const STREAM_MS: u64 = 12_000;

/// The tests take turns (two cores for everything).
static NET: Mutex<()> = Mutex::new(());

fn net_lock() -> MutexGuard<'static, ()> {
    NET.lock().unwrap_or_else(|e| e.into_inner())
}

/// Each real server's (ActiveConn, InActConn) in `-Ln`.
fn counts(xvsd: &Xvsd, svc: &str) -> Vec<(String, u64, u64)> {
    let l = listing::parse(&xvsd.adm_ok(&["-Ln"]));
    let s = l
        .iter()
        .find(|s| s.addr == svc)
        .unwrap_or_else(|| panic!("no {svc} in the listing: {l:?}"));
    s.dests
        .iter()
        .map(|d| {
            let n = |i: usize| d.fields.get(i).and_then(|f| f.parse().ok()).unwrap_or(0);
            (d.addr.clone(), n(2), n(3))
        })
        .collect()
}

fn active(c: &[(String, u64, u64)]) -> u64 {
    c.iter().map(|d| d.1).sum()
}

/// Waits (at most 5 s) until `-Ln` counts every stream as active.
fn wait_active(xvsd: &Xvsd, svc: &str) -> Vec<(String, u64, u64)> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let c = counts(xvsd, svc);
        if active(&c) == STREAMS || Instant::now() > deadline {
            return c;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// After a restart or an upgrade: the same real servers hold the same
/// active connections (inactive ones may only have expired meanwhile).
fn assert_counts_kept(before: &[(String, u64, u64)], after: &[(String, u64, u64)], what: &str) {
    assert_eq!(active(before), STREAMS, "before {what}: {before:?}");
    assert_eq!(after.len(), before.len(), "{what}: {before:?} -> {after:?}");
    for (b, a) in before.iter().zip(after) {
        assert_eq!((&a.0, a.1), (&b.0, b.1), "{what}: {before:?} -> {after:?}");
        assert!(a.2 <= b.2, "{what}: {before:?} -> {after:?}");
    }
}

/// Streams through `args`'s daemon survive a `kill -9` and a new start
/// with the same arguments, then a live upgrade.
fn streams_survive(director_ns: &str, args: &[String], client_ns: &str, svc: &str) {
    // Pins outlive the daemon's mount namespace, as on a real host.
    let how = Start {
        socket: None,
        shared_bpffs: true,
    };
    // The first start seeds the state directory from --config; the start
    // after the crash gets the same state directory and no --config: the
    // rules must come back from the state file.
    let state = std::env::temp_dir().join(format!(
        "xvs-restart-{}-{}.state",
        unique_prefix(),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&state);
    let state_arg = ["--state-dir".to_string(), state.display().to_string()];
    let first: Vec<String> = args.iter().cloned().chain(state_arg.clone()).collect();
    let mut again: Vec<String> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--config" {
            it.next();
        } else {
            again.push(a.clone());
        }
    }
    again.extend(state_arg);
    assert_ne!(first.len(), again.len(), "the rules came from --config");
    let mut xvsd = Xvsd::start_opts(Some(director_ns), &first, &how);
    // Warm-up: resolves every next hop (a first SYN may wait on one).
    let warm = Command::new("ip")
        .args([
            "netns",
            "exec",
            client_ns,
            STREAM,
            "client",
            "--connect",
            svc,
        ])
        .args(["--conns", "6", "--duration-ms", "300"])
        .output()
        .expect("warm-up");
    assert!(warm.status.success(), "warm-up: {warm:?}");

    let streams = rig::start_streams(client_ns, svc, STREAMS, STREAM_MS, 8, 8000);
    let before = wait_active(&xvsd, svc);
    std::thread::sleep(Duration::from_millis(1000));
    let said = xvsd.kill_hard();
    std::thread::sleep(Duration::from_millis(300));
    xvsd = Xvsd::start_opts(Some(director_ns), &again, &how);
    assert!(
        xvsd.stderr_so_far().contains("rules from the state file"),
        "the rules did not come back from the state file; stderr:\n{}",
        xvsd.stderr_so_far()
    );
    let after = counts(&xvsd, svc);
    assert!(
        xvsd.stderr_so_far().contains("restored"),
        "the table was not restored; stderr:\n{}\nbefore the kill:\n{said}",
        xvsd.stderr_so_far()
    );
    assert_counts_kept(&before, &after, "kill -9 and restart");

    std::thread::sleep(Duration::from_millis(1500));
    let before = counts(&xvsd, svc);
    xvsd.upgrade();
    let after = counts(&xvsd, svc);
    assert_counts_kept(&before, &after, "live upgrade");

    let (out, ok) = streams.finish(Duration::from_millis(STREAM_MS + 20_000));
    assert!(ok, "a stream failed:\n{out}");
    assert!(
        out.contains(&format!("conns={STREAMS} ")) && out.contains("failed=0"),
        "{out}"
    );
    // Every stream kept exchanging after both gaps (~20 lines a second).
    for l in out.lines().filter(|l| l.starts_with("conn ")) {
        let n: u64 = l
            .rsplit('=')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        assert!(n >= STREAM_MS / 50 / 2, "a stream stalled: {l}\n{out}");
    }
    let exit = xvsd.stop();
    let _ = std::fs::remove_dir_all(&state);
    assert!(exit.status.success(), "{}", exit.stderr);
}

#[test]
fn dr_streams_survive_kill_9_restart_and_live_upgrade() {
    let _g = net_lock();
    let lan = DrLan::new();
    let _servers = rig::stream_on(&lan.rs, 80, 120);
    let svc = format!("{VIP}:80");
    let rules = TempFile::new("rules", &rig::rules(&svc, "wlc", &lan.rs, 80, "-g"));
    let args = rig::xvsd_args(&[&lan.director.iface], Some(&rules.0), Some(65536));
    streams_survive(&lan.director.ns, &args, &lan.client.ns, &svc);
}

#[test]
fn nat_streams_survive_kill_9_restart_and_live_upgrade() {
    let _g = net_lock();
    let lan = NatLan::new();
    let _servers = rig::stream_on(&lan.rs, 8080, 120);
    let svc = format!("{}:80", lan.vip);
    let rules = TempFile::new("rules", &rig::rules(&svc, "wlc", &lan.rs, 8080, "-m"));
    let args = rig::xvsd_args(
        &[&lan.director.iface, &lan.director_rs.iface],
        Some(&rules.0),
        Some(65536),
    );
    streams_survive(&lan.director.ns, &args, &lan.client.ns, &svc);
}

/// Overwrites the first bytes of `path` (the table's header) with text.
fn scribble(path: &Path) {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open the table file");
    f.seek(SeekFrom::Start(0)).expect("seek");
    f.write_all(b"this is not a connection table header at all")
        .expect("write");
}

#[test]
fn a_corrupted_table_header_starts_empty_and_says_why() {
    let _g = net_lock();
    let lan = DrLan::new();
    let table = std::env::temp_dir().join(format!("xvs-{}.table", unique_prefix()));
    let svc = format!("{VIP}:80");
    let rules = TempFile::new("rules", &rig::rules(&svc, "rr", &lan.rs[..1], 80, "-g"));
    let mut args = rig::xvsd_args(&[&lan.director.iface], Some(&rules.0), Some(4096));
    args.extend(["--table-file".into(), table.display().to_string()]);
    let xvsd = Xvsd::start_with(Some(&lan.director.ns), &args);
    let _server = lan.rs[0].spawn_ready(&[STREAM, "serve", "--port", "80", "--lifetime-s", "60"]);
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lan.client.ns,
            STREAM,
            "client",
            "--connect",
            &svc,
        ])
        .args(["--conns", "3", "--duration-ms", "300"])
        .output()
        .expect("client");
    assert!(out.status.success(), "{out:?}");
    let conns = |x: &Xvsd| listing::parse(&x.adm_ok(&["-Ln"]))[0].dests[0].fields[3].clone();
    assert_ne!(conns(&xvsd), "0", "the closed connections are listed");
    xvsd.kill_hard();

    // As the table was: restored.
    let xvsd = Xvsd::start_with(Some(&lan.director.ns), &args);
    assert!(
        xvsd.stderr_so_far().contains("restored"),
        "{}",
        xvsd.stderr_so_far()
    );
    assert_ne!(conns(&xvsd), "0");
    xvsd.kill_hard();

    // Garbage over the header: never read, the daemon starts empty.
    scribble(&table);
    let xvsd = Xvsd::start_with(Some(&lan.director.ns), &args);
    let said = xvsd.stderr_so_far();
    let want = format!(
        "xvsd: connection table {}: not a connection table (bad magic): starting empty",
        table.display()
    );
    assert!(said.contains(&want), "{said}");
    assert_eq!(conns(&xvsd), "0");
    assert!(xvsd
        .adm_ok(&["-Lnc"])
        .lines()
        .all(|l| !l.contains("198.18.")));
    let exit = xvsd.stop();
    assert!(exit.status.success(), "{}", exit.stderr);
    assert!(!table.exists(), "a clean stop removes the table file");
    let _ = std::fs::remove_file(&table);
}
