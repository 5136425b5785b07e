//! IPv6 as a user types and reads it: every listing, the save format,
//! JSON, metrics labels, the check and announce listings and `-Lnc`, byte
//! for byte (ipvsadm 1.31's format strings; IPv6 names are never cut).

use std::net::IpAddr;

use serde_json::Value;
use xvs_control::metrics::{self, DataplaneStats};
use xvs_control::{ConnEntry, Control, NoRuntime, Request};

mod common;
use common::{ok, req, run, Conns};

/// An IPv4 service tunnelling to an IPv6 server, an IPv6 service with
/// every forwarding method (a tunnelled IPv4 server among them), names
/// longer than ipvsadm's columns, and a persistent IPv6 firewall mark.
const RULES: &[&str] = &[
    "-A -t [2001:2::100]:80 -s rr -p 300 -M 64",
    "-a -t [2001:2::100]:80 -r 2001:2::11 -g -w 2 -x 100 -y 10",
    "-a -t [2001:2::100]:80 -r [2001:2::12]:8080 -m",
    "-a -t [2001:2::100]:80 -r 198.18.1.1 -i --tun-type gue --tun-port 6080",
    "-A -u [2001:2:0:ffff:ffff:ffff:ffff:fffe]:5353 -s sh",
    "-a -u [2001:2:0:ffff:ffff:ffff:ffff:fffe]:5353 -r [2001:2:0:ffff:ffff:ffff:ffff:1234]:53 -m",
    "-A -f 7 -6 -s wlc -p 60 -M 48",
    "-a -f 7 -6 -r 2001:2::21 -g",
    "-A -t 198.18.0.100:80 -s rr",
    "-a -t 198.18.0.100:80 -r 2001:2::31 -i",
];

const LONG_VIP: &str = "[2001:2:0:ffff:ffff:ffff:ffff:fffe]:5353";
const LONG_RIP: &str = "[2001:2:0:ffff:ffff:ffff:ffff:1234]:53";

fn table() -> Control {
    let mut c = Control::new();
    for l in RULES {
        assert_eq!(ok(&mut c, l), "", "{l}");
    }
    c
}

/// `"  -> %-28s %-7s %-6d %-10u %-10u"`.
fn dest(name: &str, fwd: &str, weight: i32) -> String {
    format!("  -> {name:<28} {fwd:<7} {weight:<6} {:<10} {:<10}\n", 0, 0)
}

/// A `--stats`/`--rate` row of zeros: `"%-33s"` or `"  -> %-28s"`, then
/// five `"%9llu"`.
fn zeros(name: &str) -> String {
    format!("{name:<33}{}\n", "        0".repeat(5))
}

#[test]
fn listing_brackets_compresses_and_never_cuts_ipv6() {
    let mut c = table();
    let want = [
        "IP Virtual Server version 1.2.1 (size=4096)\n".to_string(),
        "Prot LocalAddress:Port Scheduler Flags\n".into(),
        "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n".into(),
        "TCP  198.18.0.100:80 rr\n".into(),
        dest("[2001:2::31]:80", "Tunnel", 1),
        "TCP  [2001:2::100]:80 rr persistent 300 mask 64\n".into(),
        dest("198.18.1.1:80", "Tunnel", 1),
        dest("[2001:2::11]:80", "Route", 2),
        dest("[2001:2::12]:8080", "Masq", 1),
        format!("UDP  {LONG_VIP} sh\n"),
        dest(LONG_RIP, "Masq", 1),
        "FWM  7 IPv6 wlc persistent 60 mask 48\n".into(),
        dest("[2001:2::21]:0", "Route", 1),
    ]
    .concat();
    assert_eq!(ok(&mut c, "-Ln"), want);
    // The long names run past their columns, as in ipvsadm.
    assert!(want.contains(&format!("  -> {LONG_RIP} Masq    1 ")));
    // One service, no version header.
    assert_eq!(
        ok(&mut c, "-Ln -t [2001:2::100]:80"),
        [
            "Prot LocalAddress:Port Scheduler Flags\n".to_string(),
            "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n".into(),
            "TCP  [2001:2::100]:80 rr persistent 300 mask 64\n".into(),
            dest("198.18.1.1:80", "Tunnel", 1),
            dest("[2001:2::11]:80", "Route", 2),
            dest("[2001:2::12]:8080", "Masq", 1),
        ]
        .concat()
    );
    assert!(ok(&mut c, "-Ln -f 7 -6").starts_with("Prot LocalAddress:Port Scheduler Flags\n"));
    // Written another way, the same service.
    assert_eq!(
        ok(&mut c, "-Ln -t [2001:2:0:0:0:0:0:100]:80"),
        ok(&mut c, "-Ln -t [2001:2::100]:80")
    );
    // The IPv4 mark 7 is another service; so is an address not listed.
    let r = run(&mut c, "-Ln -f 7");
    assert_eq!((r.code, r.stderr.as_str()), (1, "No such service\n"));
    let r = run(&mut c, "-Ln -t [2001:2::101]:80");
    assert_eq!((r.code, r.stderr.as_str()), (1, "No such service\n"));
}

#[test]
fn stats_rate_thresholds_and_persistent_conn_columns() {
    let mut c = table();
    let rows = [
        zeros("TCP  198.18.0.100:80"),
        zeros("  -> [2001:2::31]:80"),
        zeros("TCP  [2001:2::100]:80"),
        zeros("  -> 198.18.1.1:80"),
        zeros("  -> [2001:2::11]:80"),
        zeros("  -> [2001:2::12]:8080"),
        zeros(&format!("UDP  {LONG_VIP}")),
        zeros(&format!("  -> {LONG_RIP}")),
        zeros("FWM  7 IPv6"),
        zeros("  -> [2001:2::21]:0"),
    ]
    .concat();
    let head = "IP Virtual Server version 1.2.1 (size=4096)\n";
    assert_eq!(
        ok(&mut c, "-Ln --stats"),
        format!(
            "{head}Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes\n  \
-> RemoteAddress:Port\n{rows}"
        )
    );
    assert_eq!(
        ok(&mut c, "-Ln --rate"),
        format!(
            "{head}Prot LocalAddress:Port                 CPS    InPPS   OutPPS    InBPS   OutBPS\n  \
-> RemoteAddress:Port\n{rows}"
        )
    );
    // "  -> %-28s %-10u %-10u %-10u %-10u"
    let th = |name: &str, u: u32, l: u32| {
        format!("  -> {name:<28} {u:<10} {l:<10} {:<10} {:<10}\n", 0, 0)
    };
    assert_eq!(
        ok(&mut c, "-Ln --thresholds"),
        [
            head.to_string(),
            "Prot LocalAddress:Port            Uthreshold Lthreshold ActiveConn InActConn \n"
                .into(),
            "  -> RemoteAddress:Port\n".into(),
            "TCP  198.18.0.100:80 rr\n".into(),
            th("[2001:2::31]:80", 0, 0),
            "TCP  [2001:2::100]:80 rr persistent 300 mask 64\n".into(),
            th("198.18.1.1:80", 0, 0),
            th("[2001:2::11]:80", 100, 10),
            th("[2001:2::12]:8080", 0, 0),
            format!("UDP  {LONG_VIP} sh\n"),
            th(LONG_RIP, 0, 0),
            "FWM  7 IPv6 wlc persistent 60 mask 48\n".into(),
            th("[2001:2::21]:0", 0, 0),
        ]
        .concat()
    );
    // "  -> %-28s %-9u %-11u %-10u %-10u"
    let pc = |name: &str, w: u32| format!("  -> {name:<28} {w:<9} {:<11} {:<10} {:<10}\n", 0, 0, 0);
    assert_eq!(
        ok(&mut c, "-Ln --persistent-conn"),
        [
            head.to_string(),
            "Prot LocalAddress:Port            Weight    PersistConn ActiveConn InActConn \n"
                .into(),
            "  -> RemoteAddress:Port\n".into(),
            "TCP  198.18.0.100:80 rr\n".into(),
            pc("[2001:2::31]:80", 1),
            "TCP  [2001:2::100]:80 rr persistent 300 mask 64\n".into(),
            pc("198.18.1.1:80", 1),
            pc("[2001:2::11]:80", 2),
            pc("[2001:2::12]:8080", 1),
            format!("UDP  {LONG_VIP} sh\n"),
            pc(LONG_RIP, 1),
            "FWM  7 IPv6 wlc persistent 60 mask 48\n".into(),
            pc("[2001:2::21]:0", 1),
        ]
        .concat()
    );
    let tun = ok(&mut c, "-Ln --tun-info");
    assert!(tun.contains(
        "\n  -> [2001:2::31]:80              Tunnel  ipip          1      0          0         \n"
    ));
    assert!(tun.contains(
        "\n  -> 198.18.1.1:80                Tunnel  gue:6080      1      0          0         \n"
    ));
}

#[test]
fn save_writes_brackets_minus_6_and_prefix_lengths_and_restores() {
    let mut c = table();
    let saved = ok(&mut c, "-S");
    assert_eq!(
        saved,
        "-A -t 198.18.0.100:80 -s rr\n\
-a -t 198.18.0.100:80 -r [2001:2::31]:80 -i -w 1 --tun-type ipip\n\
-A -t [2001:2::100]:80 -s rr -p 300 -M 64\n\
-a -t [2001:2::100]:80 -r 198.18.1.1:80 -i -w 1 --tun-type gue --tun-port 6080 --tun-nocsum\n\
-a -t [2001:2::100]:80 -r [2001:2::11]:80 -g -w 2 -x 100 -y 10\n\
-a -t [2001:2::100]:80 -r [2001:2::12]:8080 -m -w 1\n\
-A -u [2001:2:0:ffff:ffff:ffff:ffff:fffe]:5353 -s sh\n\
-a -u [2001:2:0:ffff:ffff:ffff:ffff:fffe]:5353 -r [2001:2:0:ffff:ffff:ffff:ffff:1234]:53 -m -w 1\n\
-A -f 7 -6 -s wlc -p 60 -M 48\n\
-a -f 7 -6 -r [2001:2::21]:0 -g -w 1\n"
    );
    assert_eq!(ok(&mut c, "-S -n"), saved);
    // The default prefix length (128) is not written.
    let mut d = Control::new();
    ok(&mut d, "-A -t [2001:2::1]:443 -s rr -p");
    ok(&mut d, "-A -f 9 -6 -p 30 -M 128");
    assert_eq!(
        ok(&mut d, "-S"),
        "-A -t [2001:2::1]:443 -s rr -p 360\n-A -f 9 -6 -s wlc -p 30\n"
    );
    assert!(ok(&mut d, "-Ln").contains("\nTCP  [2001:2::1]:443 rr persistent 360\n"));
    // What -S writes, -R reads back to the same table.
    let mut e = Control::new();
    let r = e.execute(
        &Request {
            args: vec!["-R".into()],
            stdin: Some(saved.clone()),
        },
        &NoRuntime,
    );
    assert_eq!((r.code, r.stderr.as_str()), (0, ""));
    assert_eq!(ok(&mut e, "-S"), saved);
    assert_eq!(ok(&mut e, "-Ln"), ok(&mut c, "-Ln"));
}

#[test]
fn edits_and_deletes_find_ipv6_services_however_written() {
    let mut c = table();
    ok(&mut c, "-E -t [2001:2:0::100]:80 -s wrr -p 300 -M 56");
    ok(
        &mut c,
        "-e -t [2001:2::100]:80 -r [2001:2:0:0::11]:80 -g -w 5",
    );
    ok(&mut c, "-d -f 7 -6 -r 2001:2::21");
    ok(&mut c, "-Z -f 7 -6");
    let listed = ok(&mut c, "-Ln");
    assert!(listed.contains("\nTCP  [2001:2::100]:80 wrr persistent 300 mask 56\n"));
    assert!(listed.contains(&dest("[2001:2::11]:80", "Route", 5)));
    assert!(listed.ends_with("FWM  7 IPv6 wlc persistent 60 mask 48\n"));
    let r = run(&mut c, "-d -t [2001:2::100]:80 -r 2001:2::99");
    assert_eq!((r.code, r.stderr.as_str()), (255, "No such destination\n"));
    let r = run(&mut c, "-a -f 7 -r 198.18.1.9");
    assert_eq!((r.code, r.stderr.as_str()), (255, "Service not defined\n"));
    ok(&mut c, "-D -f 7 -6");
    ok(&mut c, "-D -t [2001:2::100]:80");
    let r = run(&mut c, "-D -t [2001:2::100]:80");
    assert_eq!((r.code, r.stderr.as_str()), (255, "No such service\n"));
}

#[test]
fn malformed_ipv6_exits_2_with_ipvsadm_messages() {
    let hint = "Try `xvsadm -h' or 'xvsadm --help' for more information.\n";
    let mut c = table();
    let before = ok(&mut c, "-S");
    for (line, msg) in [
        (
            "-A -t [2001:2::1 -p",
            "illegal virtual server address[:port] specified\n",
        ),
        (
            "-A -t [2001:2::1] -p",
            "illegal virtual server address[:port] specified\n",
        ),
        (
            "-A -t [::1]x -p",
            "illegal virtual server address[:port] specified\n",
        ),
        (
            "-A -t [fe80::1%eth0]:80",
            "illegal virtual server address[:port] specified\n",
        ),
        (
            "-A -t 2001:2::1:80",
            "Zero port specified for non-persistent service\n",
        ),
        (
            "-a -t [2001:2::100]:80 -r [2001:2::11]",
            "illegal real server address[:port] specified\n",
        ),
        ("-A -6 -f 8", "-6 used before -f\n\n"),
        ("-L -6", "-6 used before -f\n\n"),
        (
            "-A -t [2001:2::1]:80 -p -M 129",
            "illegal ipv6 netmask specified\n",
        ),
        ("-A -f 8 -6 -p -M 0", "illegal ipv6 netmask specified\n"),
        (
            "-a -t 198.18.0.100:80 -r 2001:2::32 -g",
            "Different address family is allowed only for tunneling servers\n",
        ),
        (
            "-a -t [2001:2::100]:80 -r 198.18.1.2:80 -m",
            "Different address family is allowed only for tunneling servers\n",
        ),
    ] {
        let r = run(&mut c, line);
        assert_eq!(
            (r.code, r.stdout.as_str(), r.stderr),
            (2, "", format!("{msg}{hint}")),
            "{line}"
        );
    }
    let invalid = "Invalid operation.  Possibly wrong module version, address not unicast, ...\n";
    for line in [
        "-a -t [2001:2::100]:80 -r [::ffff:198.18.1.2]:80 -m",
        "-a -t [2001:2::100]:80 -r fe80::2 -g",
        "-a -t [2001:2::100]:80 -r ff02::2 -g",
        "-a -t 198.18.0.100:80 -r [::ffff:198.18.1.2]:80 -i",
    ] {
        let r = run(&mut c, line);
        assert_eq!((r.code, r.stderr.as_str()), (255, invalid), "{line}");
    }
    assert_eq!(ok(&mut c, "-S"), before);
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[allow(clippy::too_many_arguments)]
fn conn(
    proto: u8,
    template: bool,
    state: &'static str,
    expire_secs: u64,
    c: (&str, u16),
    v: (&str, u16),
    d: (&str, u16),
) -> ConnEntry {
    ConnEntry {
        proto,
        template,
        state,
        expire_secs,
        cip: ip(c.0),
        cport: c.1,
        vip: ip(v.0),
        vport: v.1,
        dip: ip(d.0),
        dport: d.1,
    }
}

/// `-Lnc` prints what ipvsadm prints after reading
/// /proc/net/ip_vs_conn: each address through `inet_ntop`, in brackets,
/// compressed; `"%-18s"` pads and never cuts.
#[test]
fn connection_listing_of_ipv6_and_mixed_flows() {
    let rt = Conns(vec![
        conn(
            6,
            false,
            "ESTABLISHED",
            899,
            ("2001:2::5", 40000),
            ("2001:2::100", 80),
            ("2001:2::11", 80),
        ),
        conn(
            17,
            false,
            "UDP",
            299,
            ("2001:2:0:ffff:ffff:ffff:ffff:5", 65000),
            ("2001:2:0:ffff:ffff:ffff:ffff:fffe", 5353),
            ("2001:2:0:ffff:ffff:ffff:ffff:1234", 53),
        ),
        conn(
            6,
            false,
            "SYN_RECV",
            59,
            ("198.18.0.2", 52000),
            ("198.18.0.100", 80),
            ("2001:2::31", 80),
        ),
        conn(
            0,
            true,
            "NONE",
            6000,
            ("2001:2::", 0),
            ("::7", 0),
            ("2001:2::21", 0),
        ),
    ]);
    let mut c = table();
    let r = c.execute(&req("-Lnc"), &rt);
    assert_eq!(
        r.stdout,
        "IPVS connection entries\n\
pro expire state       source             virtual            destination\n\
TCP 14:59  ESTABLISHED [2001:2::5]:40000  [2001:2::100]:80   [2001:2::11]:80\n\
UDP 04:59  UDP         [2001:2:0:ffff:ffff:ffff:ffff:5]:65000 [2001:2:0:ffff:ffff:ffff:ffff:fffe]:5353 [2001:2:0:ffff:ffff:ffff:ffff:1234]:53\n\
TCP 00:59  SYN_RECV    198.18.0.2:52000   198.18.0.100:80    [2001:2::31]:80\n\
IP  100:00 NONE        [2001:2::]:0       [::7]:0            [2001:2::21]:0\n"
    );
    let r = c.execute(&req("-L -n -c --persistent-conn"), &rt);
    assert!(r.stdout.ends_with(
        "\nIP  100:00 NONE        [2001:2::]:0       [::7]:0            [2001:2::21]:0\n"
    ));
    let r = c.execute(&req("-L -n -c --json"), &rt);
    let v: Value = serde_json::from_str(&r.stdout).expect("JSON");
    let addr = |i: usize, end: &str| {
        let a = &v["connections"][i][end];
        (
            a["address"].as_str().unwrap().to_string(),
            a["port"].as_u64().unwrap(),
        )
    };
    assert_eq!(addr(0, "client"), ("2001:2::5".into(), 40000));
    assert_eq!(addr(2, "virtual"), ("198.18.0.100".into(), 80));
    assert_eq!(addr(2, "destination"), ("2001:2::31".into(), 80));
    assert_eq!(addr(3, "virtual"), ("::7".into(), 0));
}

#[test]
fn json_metrics_check_and_announce_name_ipv6_the_same_way() {
    let mut c = table();
    let v: Value = serde_json::from_str(&ok(&mut c, "-L -n --json")).expect("JSON");
    let s = &v["services"][1];
    assert_eq!(
        (&s["family"], &s["address"], &s["port"], &s["netmask"]),
        (
            &"inet6".into(),
            &"2001:2::100".into(),
            &80.into(),
            &64.into()
        )
    );
    let addrs: Vec<&str> = s["dests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["address"].as_str().unwrap())
        .collect();
    assert_eq!(addrs, ["198.18.1.1", "2001:2::11", "2001:2::12"]);
    assert_eq!(v["services"][0]["dests"][0]["address"], "2001:2::31");
    let mark = &v["services"][3];
    assert_eq!(
        (&mark["fwmark"], &mark["family"], &mark["netmask"]),
        (&7.into(), &"inet6".into(), &48.into())
    );

    let page = metrics::render(c.model(), &DataplaneStats::default());
    for want in [
        "xvs_dest_weight{service=\"TCP [2001:2::100]:80\",server=\"[2001:2::11]:80\"} 2\n",
        "xvs_dest_weight{service=\"TCP [2001:2::100]:80\",server=\"198.18.1.1:80\"} 1\n",
        "xvs_dest_weight{service=\"TCP 198.18.0.100:80\",server=\"[2001:2::31]:80\"} 1\n",
        "xvs_dest_weight{service=\"FWM 7 IPv6\",server=\"[2001:2::21]:0\"} 1\n",
        "xvs_service_connections_total{service=\"UDP [2001:2:0:ffff:ffff:ffff:ffff:fffe]:5353\"} 0\n",
    ] {
        assert!(page.contains(want), "{want} not in\n{page}");
    }

    // "  -> %-28s", then the check columns; long names push them right.
    let checks = ok(&mut c, "-L -n --check");
    for want in [
        "\nTCP  [2001:2::100]:80 up 4 quorum 1\n",
        "\n  -> [2001:2::12]:8080            -      -        1      1      -         -          -\n",
        &format!("\n  -> {LONG_RIP} -      -        1      1      -         -          -\n"),
        "\nFWM  7 IPv6 up 1 quorum 1\n",
    ] {
        assert!(checks.contains(want), "{want:?} not in\n{checks}");
    }
    ok(
        &mut c,
        "-E -t [2001:2::100]:80 -s rr -p 300 -M 64 --quorum 9 --sorry-server [2001:2::99]:80",
    );
    let checks = ok(&mut c, "-L -n --check -t [2001:2::100]:80");
    assert!(
        checks.contains("\nTCP  [2001:2::100]:80 up 4 quorum 9 sorry [2001:2::99]:80 in-use\n"),
        "{checks}"
    );

    c.set_serving(true);
    let announce = ok(&mut c, "-L --announce");
    assert_eq!(
        announce,
        "Announce: data plane serving, maintenance off\n\
VIP                                      State\n\
198.18.0.100                             announced\n\
2001:2::100                              withdrawn: no quorum in -t [2001:2::100]:80 (up weight 4 < quorum 9)\n\
2001:2:0:ffff:ffff:ffff:ffff:fffe        announced\n"
    );
}
