//! The sync daemon commands: ipvsadm's values and messages, both roles at
//! once, `-L --daemon` as ipvsadm prints the kernel's filled-in settings,
//! the `--stats`/`--json` extensions, `-S` without daemons, the state
//! file's daemons coming back through a reload, and the metrics.

use std::net::{IpAddr, Ipv4Addr};

use serde_json::{json, Value};
use xvs_config::SyncRole;
use xvs_control::syncd::{self, SyncPeer, SyncStatus};
use xvs_control::{ConnEntry, Control, NoRuntime, Request, Runtime};

mod common;
use common::{ok, req, run};

#[test]
fn bad_values_are_refused_with_ipvsadm_messages() {
    let table = [
        (
            "--start-daemon slave",
            "illegal start-daemon parameter specified",
        ),
        (
            "--stop-daemon primary",
            "illegal stop-daemon parameter specified",
        ),
        (
            "--start-daemon master --syncid 256",
            "illegal syncid specified",
        ),
        (
            "--start-daemon master --syncid -1",
            "illegal syncid specified",
        ),
        (
            "--start-daemon master --syncid x",
            "illegal syncid specified",
        ),
        (
            "--start-daemon master --mcast-port 0",
            "illegal mcast-port specified",
        ),
        (
            "--start-daemon master --mcast-port 65536",
            "illegal mcast-port specified",
        ),
        (
            "--start-daemon master --mcast-ttl 0",
            "illegal mcast-ttl specified",
        ),
        (
            "--start-daemon master --mcast-ttl 256",
            "illegal mcast-ttl specified",
        ),
        (
            "--start-daemon master --sync-maxlen 0",
            "illegal sync-maxlen specified",
        ),
        (
            "--start-daemon master --sync-maxlen 65508",
            "illegal sync-maxlen specified",
        ),
        (
            "--start-daemon master --mcast-group 198.18.0.1",
            "invalid IPv4 mcast-group `198.18.0.1'",
        ),
        (
            "--start-daemon master --mcast-group 224.0.0",
            "invalid IPv4 mcast-group `224.0.0'",
        ),
        (
            "--start-daemon master --mcast-group 2001:2::1",
            "invalid IPv6 mcast-group `2001:2::1'",
        ),
        (
            "--start-daemon master --syncid 1 --syncid 2",
            "multiple 'syncid' options specified",
        ),
    ];
    for (line, msg) in table {
        let mut c = Control::new();
        let r = run(&mut c, line);
        assert_eq!(r.code, 2, "{line}");
        assert!(
            r.stderr.starts_with(&format!("{msg}\n")),
            "{line}: {}",
            r.stderr
        );
        assert!(c.model().sync_daemons.is_empty());
    }
    // --stop-daemon takes --syncid and nothing else of the daemon options.
    let mut c = Control::new();
    assert_eq!(run(&mut c, "--stop-daemon master --mcast-port 9").code, 2);
}

#[test]
fn both_roles_run_at_once_and_twice_is_refused() {
    let mut c = Control::new();
    assert_eq!(ok(&mut c, "-L --daemon"), "");
    let g = c.generation();
    ok(
        &mut c,
        "--start-daemon backup --mcast-interface sync0 --syncid 42",
    );
    ok(
        &mut c,
        "--start-daemon master --mcast-interface sync0 --syncid 42",
    );
    assert!(c.generation() > g, "a daemon change reaches the state file");
    for line in [
        "--start-daemon master",
        "--start-daemon backup --mcast-interface other",
    ] {
        let r = run(&mut c, line);
        assert_eq!(
            (r.code, r.stderr.as_str()),
            (255, "Daemon has already run\n"),
            "{line}"
        );
    }
    // Master first, then backup, with the kernel's defaults filled in.
    assert_eq!(
        ok(&mut c, "-L --daemon"),
        "master sync daemon (mcast=sync0, syncid=42, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)\n\
         backup sync daemon (mcast=sync0, syncid=42, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)\n"
    );
    ok(&mut c, "--stop-daemon master --syncid 42");
    let r = run(&mut c, "--stop-daemon master");
    assert_eq!((r.code, r.stderr.as_str()), (255, "No daemon is running\n"));
    ok(&mut c, "--stop-daemon backup");
    assert_eq!(ok(&mut c, "-L --daemon"), "");
}

#[test]
fn listing_shows_given_options_and_the_default_interface() {
    let mut c = Control::new();
    ok(
        &mut c,
        "--start-daemon master --sync-maxlen 1200 --mcast-group 239.1.2.3 --mcast-port 9000 --mcast-ttl 4",
    );
    assert_eq!(
        ok(&mut c, "-L --daemon"),
        "master sync daemon (mcast=eth0, syncid=0, maxlen=1200, group=239.1.2.3, port=9000, ttl=4)\n"
    );
    let mut c = Control::new();
    ok(
        &mut c,
        "--start-daemon backup --mcast-interface averyveryverylongname --mcast-group ff02::81",
    );
    // ipvsadm passes 15 bytes of the name; an IPv6 group has 48 header bytes.
    assert_eq!(
        ok(&mut c, "-L --daemon"),
        "backup sync daemon (mcast=averyveryverylo, syncid=0, maxlen=1452, group=ff02::81, port=8848, ttl=1)\n"
    );
    // A backup's explicit maxlen is clamped to at least 1024.
    let mut c = Control::new();
    ok(&mut c, "--start-daemon backup --sync-maxlen 100");
    assert!(ok(&mut c, "-L --daemon").contains("maxlen=1024,"));
}

#[test]
fn save_does_not_hold_daemons_but_a_restore_may_start_them() {
    let mut c = Control::new();
    ok(&mut c, "-A -t 198.18.0.1:80 -s rr");
    ok(&mut c, "--start-daemon master --mcast-interface sync0");
    let saved = ok(&mut c, "-S -n");
    assert!(!saved.contains("daemon"), "{saved}");
    let mut d = Control::new();
    let r = d.execute(
        &Request {
            args: vec!["-R".into()],
            stdin: Some(format!(
                "{saved}--start-daemon backup --mcast-interface sync0 --syncid 3\n"
            )),
        },
        &NoRuntime,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(d.model().sync_daemons.len(), 1);
    assert_eq!(d.model().sync_daemons[0].syncid, 3);
}

#[test]
fn a_reload_starts_the_files_daemons_and_stops_none() {
    let mut c = Control::new();
    ok(
        &mut c,
        "--start-daemon master --mcast-interface sync0 --mcast-port 9000",
    );
    let conf = c.model().sync_daemons[0].clone();
    let line = syncd::start_line(&conf);
    assert_eq!(
        line,
        "--start-daemon master --mcast-interface sync0 --syncid 0 --mcast-port 9000"
    );
    // The line parses back to the same settings.
    let mut d = Control::new();
    let n = d
        .reload(&format!("-A -t 198.18.0.1:80 -s rr\n{line}\n"))
        .unwrap();
    assert_eq!(n, 2);
    assert_eq!(d.model().sync_daemons, vec![conf.clone()]);
    // A rules file without daemons leaves them running.
    d.reload("-A -t 198.18.0.1:80 -s wlc\n").unwrap();
    assert_eq!(d.model().sync_daemons, vec![conf]);
}

struct Live(Vec<SyncStatus>);

impl Runtime for Live {
    fn connections(&self) -> Vec<ConnEntry> {
        Vec::new()
    }
    fn sync_status(&self) -> Vec<SyncStatus> {
        self.0.clone()
    }
}

fn live() -> Live {
    Live(vec![SyncStatus {
        role: SyncRole::Backup,
        maxlen: 8972,
        counters: vec![("datagrams", 7), ("installed", 30)],
        peers: vec![SyncPeer {
            addr: IpAddr::V4(Ipv4Addr::new(198, 18, 9, 1)),
            counters: vec![("datagrams", 7), ("dropped_size_mismatch", 1)],
        }],
    }])
}

#[test]
fn stats_json_and_metrics_show_the_runtime_counters() {
    let mut c = Control::new();
    ok(&mut c, "--start-daemon backup --mcast-interface sync0");
    let rt = live();
    let r = c.execute(&req("-L --daemon --stats"), &rt);
    assert_eq!(r.code, 0);
    assert_eq!(
        r.stdout,
        "backup sync daemon (mcast=sync0, syncid=0, maxlen=8972, group=224.0.0.81, port=8848, ttl=1)\n\
         \x20 datagrams                7\n\
         \x20 installed                30\n\
         \x20 peer 198.18.9.1\n\
         \x20   datagrams              7\n\
         \x20   dropped_size_mismatch  1\n"
    );
    // Without --stats, only ipvsadm's line (the maxlen from the runtime).
    let r = c.execute(&req("-L --daemon"), &rt);
    assert_eq!(
        r.stdout,
        "backup sync daemon (mcast=sync0, syncid=0, maxlen=8972, group=224.0.0.81, port=8848, ttl=1)\n"
    );
    let r = c.execute(&req("-L --daemon --json"), &rt);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        v,
        json!({"schema": 1, "daemons": [{
            "state": "backup", "mcast_interface": "sync0", "syncid": 0,
            "maxlen": 8972, "group": "224.0.0.81", "port": 8848, "ttl": 1,
            "counters": {"datagrams": 7, "installed": 30},
            "peers": [{"address": "198.18.9.1",
                       "counters": {"datagrams": 7, "dropped_size_mismatch": 1}}]
        }]})
    );
    let page = xvs_control::metrics::render_sync(c.model(), &rt.0);
    for want in [
        "xvs_sync_daemon_running{role=\"master\"} 0\n",
        "xvs_sync_daemon_running{role=\"backup\"} 1\n",
        "xvs_sync_total{role=\"backup\",counter=\"installed\"} 30\n",
        "xvs_sync_peer_total{role=\"backup\",peer=\"198.18.9.1\",counter=\"dropped_size_mismatch\"} 1\n",
        "# TYPE xvs_sync_total counter\n",
    ] {
        assert!(page.contains(want), "{want} in\n{page}");
    }
}
