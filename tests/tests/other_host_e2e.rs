//! Frames addressed to another host's MAC are not forwarded. The switch
//! floods a frame for a MAC it has not learned (a dead director's, after
//! its table aged out) to every port, the director's veth included; the
//! kernel drops such a frame as another host's, and xvs must too: its
//! steering program leaves it to the kernel and counts it as
//! `other_host`, no connection is made and no real server sees a segment,
//! while traffic addressed to the director goes on as before.

use std::time::{Duration, Instant};

use xvs_tests::daemon::{TempFile, Xvsd};
use xvs_tests::netns::{DrLan, Host, VIP};
use xvs_tests::node::{ClientSummary, Clients};
use xvs_tests::rig;

/// A unicast MAC no host of the LAN has: the bridge floods frames to it.
const OTHER_MAC: &str = "02:00:00:00:ee:01";
/// SYNs sent to it.
const SYNS: u64 = 300;

/// The counter `name` of `group`'s line in `-L --dataplane` (`GROUP: NAME
/// VALUE NAME VALUE ...`).
fn counter(listing: &str, group: &str, name: &str) -> u64 {
    let line = listing
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{group}:")))
        .unwrap_or_else(|| panic!("no {group} line in:\n{listing}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    words
        .windows(2)
        .find(|w| w[0] == name)
        .and_then(|w| w[1].parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {line:?}"))
}

/// TCP segments received by `h`'s kernel (`InSegs` of /proc/net/snmp).
fn tcp_in_segs(h: &Host) -> u64 {
    let snmp = h.exec_ok(&["cat", "/proc/net/snmp"]);
    let tcp: Vec<&str> = snmp.lines().filter(|l| l.starts_with("Tcp:")).collect();
    assert_eq!(tcp.len(), 2, "{snmp}");
    let names: Vec<&str> = tcp[0].split_whitespace().collect();
    let values: Vec<&str> = tcp[1].split_whitespace().collect();
    let i = names
        .iter()
        .position(|n| *n == "InSegs")
        .unwrap_or_else(|| panic!("no InSegs in {}", tcp[0]));
    values[i].parse().expect("InSegs")
}

fn client_run(lan: &DrLan, count: u64) -> ClientSummary {
    Clients::default().run(&lan.client.ns, &format!("{VIP}:80"), count)
}

/// The director's data-plane listing and the real servers' TCP segment
/// counts, once two reads 300 ms apart agree on every counter the test
/// compares (within 10 s).
fn settled(xvsd: &Xvsd, lan: &DrLan, steering: &str) -> (String, Vec<u64>) {
    let read = || {
        let listing = xvsd.adm_ok(&["-L", "--dataplane"]);
        let segs: Vec<u64> = lan.rs.iter().map(tcp_in_segs).collect();
        (listing, segs)
    };
    let key = |(listing, segs): &(String, Vec<u64>)| {
        let mut k: Vec<u64> = ["redirect", "no_socket", "other_host"]
            .iter()
            .map(|n| counter(listing, steering, n))
            .collect();
        k.extend(
            ["rx", "tx", "conns_created"]
                .iter()
                .map(|n| counter(listing, "pipeline", n)),
        );
        k.extend(segs);
        k
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = read();
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let now = read();
        if key(&now) == key(&last) {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "the counters did not settle within 10 s:\n{}",
            now.0
        );
        last = now;
    }
}

#[test]
fn frames_for_another_hosts_mac_reach_no_real_server() {
    let lan = DrLan::new();
    for h in &lan.rs {
        // Were a spoofed SYN forwarded, its SYN-ACK would go nowhere.
        h.exec_ok(&["ip", "route", "add", "blackhole", "198.18.0.0/15"]);
    }
    let _servers = rig::serve_on(&lan.rs, 80, &["--lifetime-s", "90"]);
    let rules = TempFile::new(
        "rules",
        &rig::rules(&format!("{VIP}:80"), "rr", &lan.rs, 80, "-g"),
    );
    let args = rig::xvsd_args(&[&lan.director.iface], Some(&rules.0), None);
    let xvsd = Xvsd::start_with(Some(&lan.director.ns), &args);
    let steering = format!("steering {}", lan.director.iface);

    // Traffic to the director is forwarded (and every next hop resolved).
    let warm = client_run(&lan, 6);
    assert_eq!((warm.ok, warm.failed), (6, 0), "{warm:?}");

    // The warm-up's last segments (its final ACKs) may still be on their
    // way: take "before" once nothing moves any more.
    let (before, segs_before) = settled(&xvsd, &lan, &steering);
    let flood = rig::SynFlood {
        from: &lan.client,
        dst_mac: OTHER_MAC,
        vip: VIP,
        port: 80,
        count: SYNS,
        secs: 10,
        rate: 1000,
    }
    .run();
    let report = String::from_utf8_lossy(&flood.stdout).into_owned();
    assert!(flood.status.success(), "the SYNs were not sent: {flood:?}");
    assert!(
        report.contains(&format!("sent {SYNS} ")),
        "sent fewer SYNs than {SYNS}: {report}"
    );

    // Every SYN reaches the director (flooded) and is left to the kernel.
    let base = counter(&before, &steering, "other_host");
    let deadline = Instant::now() + Duration::from_secs(10);
    let after = loop {
        let now = xvsd.adm_ok(&["-L", "--dataplane"]);
        if counter(&now, &steering, "other_host") - base >= SYNS || Instant::now() > deadline {
            break now;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        counter(&after, &steering, "other_host") - base,
        SYNS,
        "before:\n{before}\nafter:\n{after}"
    );
    for name in ["redirect", "no_socket"] {
        assert_eq!(
            counter(&after, &steering, name),
            counter(&before, &steering, name),
            "{name} moved: before:\n{before}\nafter:\n{after}"
        );
    }
    for name in ["rx", "tx", "conns_created"] {
        assert_eq!(
            counter(&after, "pipeline", name),
            counter(&before, "pipeline", name),
            "{name} moved: before:\n{before}\nafter:\n{after}"
        );
    }
    let segs_after: Vec<u64> = lan.rs.iter().map(tcp_in_segs).collect();
    assert_eq!(
        segs_after, segs_before,
        "a real server received TCP segments"
    );

    // Traffic to the director still flows.
    let s = client_run(&lan, 30);
    assert_eq!((s.ok, s.failed), (30, 0), "{s:?}");
    let last = xvsd.adm_ok(&["-L", "--dataplane"]);
    assert!(
        counter(&last, "pipeline", "conns_created")
            >= counter(&after, "pipeline", "conns_created") + 30,
        "{last}"
    );

    // The director's MAC changes: at the next publish (any configuration
    // change) the program and the workers follow it; the old MAC is now
    // another host's.
    const NEW_MAC: &str = "02:00:00:00:d1:02";
    lan.director.exec_ok(&[
        "ip",
        "link",
        "set",
        "dev",
        &lan.director.iface,
        "address",
        NEW_MAC,
    ]);
    xvsd.adm_ok(&["-A", "-t", &format!("{VIP}:81"), "-s", "rr"]);
    lan.client
        .exec_ok(&["ip", "neigh", "flush", "dev", &lan.client.iface]);
    let s = client_run(&lan, 10);
    assert_eq!((s.ok, s.failed), (10, 0), "after the MAC change: {s:?}");
    let moved = xvsd.adm_ok(&["-L", "--dataplane"]);
    assert_eq!(
        counter(&moved, "drops", "other_host"),
        0,
        "the workers did not follow the new MAC:\n{moved}"
    );
    let old = rig::SynFlood {
        from: &lan.client,
        dst_mac: &lan.director.mac,
        vip: VIP,
        port: 80,
        count: 50,
        secs: 10,
        rate: 1000,
    }
    .run();
    assert!(old.status.success(), "{old:?}");
    let base = counter(&moved, &steering, "other_host");
    let deadline = Instant::now() + Duration::from_secs(10);
    let now = loop {
        let now = xvsd.adm_ok(&["-L", "--dataplane"]);
        if counter(&now, &steering, "other_host") - base >= 50 || Instant::now() > deadline {
            break now;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        counter(&now, &steering, "other_host") - base,
        50,
        "frames to the old MAC:\n{now}"
    );
    let exit = xvsd.stop();
    assert!(exit.status.success(), "{}", exit.stderr);
}
