//! End-to-end tests of one xvsadm invocation through `Control::execute`:
//! listings byte for byte (fixtures reproduced from real ipvsadm sessions
//! in shared/seeds, readdressed into 198.18.0.0/15), refusals, exit
//! statuses, save/restore.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use xvs_config::stats::CounterValues;
use xvs_control::listing::push_largenum;
use xvs_control::model::Limits;
use xvs_control::{ConnEntry, Control, NoRuntime, Request, Response};

mod common;
use common::{ok, req, run, Conns};

fn setup(lines: &[&str]) -> Control {
    let mut c = Control::new();
    for l in lines {
        assert_eq!(ok(&mut c, l), "", "{l:?}");
    }
    c
}

fn restore(c: &mut Control, rules: &str) -> Response {
    c.execute(
        &Request {
            args: vec!["-R".into()],
            stdin: Some(rules.into()),
        },
        &NoRuntime,
    )
}

const HEADER: &str = "IP Virtual Server version 1.2.1 (size=4096)\n\
Prot LocalAddress:Port Scheduler Flags\n  \
-> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n";

// Seed 003: an NAT/DR/TUN mixture, edited with -E and -e.
#[test]
fn seed_003_session() {
    let mut c = setup(&["-A -t 198.18.4.5:80 -s rr"]);
    assert_eq!(
        ok(&mut c, "-Ln"),
        format!("{HEADER}TCP  198.18.4.5:80 rr\n")
    );

    ok(&mut c, "-a -t 198.18.4.5:80 -r 198.18.2.100:80");
    assert_eq!(
        ok(&mut c, "-Ln"),
        format!(
            "{HEADER}TCP  198.18.4.5:80 rr\n  \
-> 198.18.2.100:80              Route   1      0          0         \n"
        )
    );

    ok(&mut c, "-a -t 198.18.4.5:80 -r 198.18.2.201:80 -w 2");
    ok(&mut c, "-a -t 198.18.4.5:80 -r 198.18.2.202:80 -w 2 -m");
    ok(&mut c, "-a -t 198.18.4.5:80 -r 198.18.2.203:80 -w 2 -i");
    let body = "  -> 198.18.2.201:80              Route   2      0          0         \n  \
-> 198.18.2.202:80              Masq    2      0          0         \n  \
-> 198.18.2.203:80              Tunnel  2      0          0         \n";
    assert_eq!(
        ok(&mut c, "-Ln"),
        format!(
            "{HEADER}TCP  198.18.4.5:80 rr\n  \
-> 198.18.2.100:80              Route   1      0          0         \n{body}"
        )
    );

    ok(&mut c, "-E -t 198.18.4.5:80 -s wrr");
    ok(&mut c, "-e -t 198.18.4.5:80 -r 198.18.2.100:80 -w 2 -m");
    let out = ok(&mut c, "-Ln");
    assert_eq!(
        out,
        format!(
            "{HEADER}TCP  198.18.4.5:80 wrr\n  \
-> 198.18.2.100:80              Masq    2      0          0         \n{body}"
        )
    );
    // Every server line is the fixed 70 columns of "  -> %-28s %-7s %-6d %-10u %-10u".
    for l in out.lines().filter(|l| l.starts_with("  -> 198")) {
        assert_eq!(l.len(), 70, "{l:?}");
    }
    // -L and -l, clustered or not, print the same.
    assert_eq!(ok(&mut c, "-L -n"), out);
    assert_eq!(ok(&mut c, "-ln"), out);
    assert_eq!(ok(&mut c, "--list --numeric"), out);
    assert_eq!(ok(&mut c, "-L"), out);

    assert_eq!(
        ok(&mut c, "-S -n"),
        "-A -t 198.18.4.5:80 -s wrr\n\
-a -t 198.18.4.5:80 -r 198.18.2.100:80 -m -w 2\n\
-a -t 198.18.4.5:80 -r 198.18.2.201:80 -g -w 2\n\
-a -t 198.18.4.5:80 -r 198.18.2.202:80 -m -w 2\n\
-a -t 198.18.4.5:80 -r 198.18.2.203:80 -i -w 2 --tun-type ipip\n"
    );
}

// Seed 001: persistence per port, port 0 (PCC) and firewall marks (PFWMC).
#[test]
fn seed_001_persistence() {
    let mut c = setup(&[
        "-A -t 198.18.10.100:22 -s rr -p",
        "-a -t 198.18.10.100:22 -r 198.18.10.84",
        "-a -t 198.18.10.100:22 -r 198.18.10.83",
        "-A -t 198.18.10.100:80 -s rr",
        "-a -t 198.18.10.100:80 -r 198.18.10.84",
        "-a -t 198.18.10.100:80 -r 198.18.10.83",
        "-E -t 198.18.10.100:80 -s rr -p",
    ]);
    c.model().services[0].dests[0]
        .load
        .active
        .store(1, Ordering::Relaxed);
    assert_eq!(
        ok(&mut c, "-ln"),
        format!(
            "{HEADER}TCP  198.18.10.100:22 rr persistent 360\n  \
-> 198.18.10.83:22              Route   1      1          0         \n  \
-> 198.18.10.84:22              Route   1      0          0         \n\
TCP  198.18.10.100:80 rr persistent 360\n  \
-> 198.18.10.83:80              Route   1      0          0         \n  \
-> 198.18.10.84:80              Route   1      0          0         \n"
        )
    );

    ok(&mut c, "-C");
    ok(&mut c, "-A -t 198.18.10.100:0 -s rr -p");
    ok(&mut c, "-a -t 198.18.10.100:0 -r 198.18.10.83 -g");
    ok(&mut c, "-a -t 198.18.10.100:0 -r 198.18.10.84 -g");
    assert_eq!(
        ok(&mut c, "-ln"),
        format!(
            "{HEADER}TCP  198.18.10.100:0 rr persistent 360\n  \
-> 198.18.10.83:0               Route   1      0          0         \n  \
-> 198.18.10.84:0               Route   1      0          0         \n"
        )
    );

    ok(&mut c, "-C");
    ok(&mut c, "-A -f 10 -s rr -p");
    ok(&mut c, "-a -f 10 -r 198.18.10.83 -g");
    ok(&mut c, "-a -f 10 -r 198.18.10.84:8080 -m");
    assert_eq!(
        ok(&mut c, "-L -n"),
        format!(
            "{HEADER}FWM  10 rr persistent 360\n  \
-> 198.18.10.83:0               Route   1      0          0         \n  \
-> 198.18.10.84:0               Masq    1      0          0         \n"
        )
    );
    assert_eq!(
        ok(&mut c, "-S"),
        "-A -f 10 -s rr -p 360\n\
-a -f 10 -r 198.18.10.83:0 -g -w 1\n\
-a -f 10 -r 198.18.10.84:0 -m -w 1\n"
    );
}

#[test]
fn service_line_options() {
    let mut c = setup(&[
        "-A -u 198.18.0.53:53 -s sh -b sh-fallback,sh-port -o",
        "-A -t 198.18.0.1:443 -s mh -b mh-port -p 60 -M 255.255.255.0",
        "-A -t [2001:2::1]:80 -s wlc -p -M 64",
        "-A --sctp-service 198.18.0.9:9 -s rr -b flag-3",
        "-A -f 7 -6 -s lc",
        "-a -t [2001:2::1]:80 -r [2001:2::2]:8080 -m -w 3",
    ]);
    assert_eq!(
        ok(&mut c, "-Ln"),
        format!(
            "{HEADER}TCP  198.18.0.1:443 mh (mh-port) persistent 60 mask 255.255.255.0\n\
UDP  198.18.0.53:53 sh (sh-fallback,sh-port) ops\n\
SCTP 198.18.0.9:9 rr (flag-3)\n\
TCP  [2001:2::1]:80 wlc persistent 360 mask 64\n  \
-> [2001:2::2]:8080             Masq    3      0          0         \n\
FWM  7 IPv6 lc\n"
        )
    );
    let saved = ok(&mut c, "-S");
    assert_eq!(
        saved,
        "-A -t 198.18.0.1:443 -s mh -p 60 -M 255.255.255.0 -b mh-port\n\
-A -u 198.18.0.53:53 -s sh -o -b sh-fallback,sh-port\n\
-A --sctp-service 198.18.0.9:9 -s rr -b flag-3\n\
-A -t [2001:2::1]:80 -s wlc -p 360 -M 64\n\
-a -t [2001:2::1]:80 -r [2001:2::2]:8080 -m -w 3\n\
-A -f 7 -6 -s lc\n"
    );
    let mut d = Control::new();
    assert_eq!(restore(&mut d, &saved), Response::ok(""));
    assert_eq!(ok(&mut d, "-S"), saved);
}

#[test]
fn mh_sorted_flag_lists_saves_and_restores() {
    // mh-sorted is mh's name for scheduler flag 3, as mh-port is flag 2's.
    let mut c = setup(&[
        "-A -t 198.18.0.1:80 -s mh -b mh-sorted,mh-port",
        "-A -t 198.18.0.2:80 -s mh -b flag-3",
    ]);
    assert_eq!(
        ok(&mut c, "-Ln"),
        format!(
            "{HEADER}TCP  198.18.0.1:80 mh (mh-port,mh-sorted)
TCP  198.18.0.2:80 mh (mh-sorted)
"
        )
    );
    let saved = ok(&mut c, "-S");
    assert_eq!(
        saved,
        "-A -t 198.18.0.1:80 -s mh -b mh-port,mh-sorted
-A -t 198.18.0.2:80 -s mh -b mh-sorted
"
    );
    let json = ok(&mut c, "-Ln --json");
    assert!(
        json.contains(r#""sched_flags":["mh-port","mh-sorted"]"#),
        "{json}"
    );
    let mut d = Control::new();
    assert_eq!(restore(&mut d, &saved), Response::ok(""));
    assert_eq!(ok(&mut d, "-S"), saved);
}

#[test]
fn nosort_keeps_insertion_and_list_order() {
    let mut c = setup(&[
        "-A -t 198.18.0.20:80",
        "-A -f 3",
        "-A -t 198.18.0.10:80",
        "-a -t 198.18.0.10:80 -r 198.18.1.1",
        "-a -t 198.18.0.10:80 -r 198.18.1.3",
        "-a -t 198.18.0.10:80 -r 198.18.1.2",
    ]);
    let names = |out: &str| -> Vec<String> {
        out.lines()
            .skip(3)
            .map(|l| l.split_whitespace().nth(1).unwrap().to_string())
            .collect()
    };
    assert_eq!(
        names(&ok(&mut c, "-Ln")),
        [
            "198.18.0.10:80",
            "198.18.1.1:80",
            "198.18.1.2:80",
            "198.18.1.3:80",
            "198.18.0.20:80",
            "3"
        ]
    );
    assert_eq!(
        names(&ok(&mut c, "-Ln --nosort")),
        [
            "198.18.0.20:80",
            "3",
            "198.18.0.10:80",
            "198.18.1.2:80",
            "198.18.1.3:80",
            "198.18.1.1:80"
        ]
    );
    assert_eq!(ok(&mut c, "-Ln --sort"), ok(&mut c, "-Ln"));
}

#[test]
fn one_service_listing_and_exit_1() {
    let mut c = setup(&["-A -t 198.18.0.1:80 -s rr", "-A -t 198.18.0.2:80"]);
    assert_eq!(
        ok(&mut c, "-L -n -t 198.18.0.1:80"),
        "Prot LocalAddress:Port Scheduler Flags\n  \
-> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n\
TCP  198.18.0.1:80 rr\n"
    );
    let r = run(&mut c, "-L -n -t 198.18.0.3:80");
    assert_eq!(
        (r.code, r.stdout.as_str(), r.stderr.as_str()),
        (1, "", "No such service\n")
    );
}

#[test]
fn stats_and_large_numbers() {
    let mut c = setup(&[
        "-A -t 198.18.0.100:80 -s wrr",
        "-a -t 198.18.0.100:80 -r 198.18.0.11:80 -m",
    ]);
    {
        let m = c.model();
        let s = &m.services[0].counters;
        s.add_values(CounterValues {
            conns: 12,
            inpkts: 99_999_999,
            outpkts: 100_000_000,
            inbytes: 123_456_789_012,
            outbytes: u64::MAX,
        });
        let d = &m.services[0].dests[0].counters;
        d.add_conn();
        d.add_in(60);
        d.add_out(1500);
    }
    let stats = ok(&mut c, "-Ln --stats");
    assert_eq!(
        stats,
        "IP Virtual Server version 1.2.1 (size=4096)\n\
Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes\n  \
-> RemoteAddress:Port\n\
TCP  198.18.0.100:80                    12 99999999  100000K     123G18446744T\n  \
-> 198.18.0.11:80                      1        1        1       60     1500\n"
    );
    assert_eq!(
        ok(&mut c, "-Ln --stats --exact"),
        "IP Virtual Server version 1.2.1 (size=4096)\n\
Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes\n  \
-> RemoteAddress:Port\n\
TCP  198.18.0.100:80                    12 99999999 100000000 123456789012 18446744073709551615\n  \
-> 198.18.0.11:80                      1        1        1       60     1500\n"
    );
    // -Z zeroes, per service or all.
    ok(&mut c, "-Z -t 198.18.0.100:80");
    assert!(ok(&mut c, "-Ln --stats").contains(
        "TCP  198.18.0.100:80                     0        0        0        0        0\n"
    ));
    let r = run(&mut c, "-Z -t 198.18.0.1:80");
    assert_eq!((r.code, r.stderr.as_str()), (255, "No such service\n"));
    ok(&mut c, "-Z");
}

#[test]
fn large_number_boundaries() {
    let table: &[(u64, &str)] = &[
        (0, "        0"),
        (99_999_999, " 99999999"),
        (100_000_000, "  100000K"),
        (999_999_999, "  999999K"),
        (1_000_000_000, "    1000M"),
        (99_999_999_999, "   99999M"),
        (100_000_000_000, "     100G"),
        (99_999_999_999_999, "   99999G"),
        (100_000_000_000_000, "     100T"),
        (u64::MAX, "18446744T"),
    ];
    for (n, want) in table {
        let mut s = String::new();
        push_largenum(&mut s, *n, false);
        assert_eq!(&s, want, "{n}");
    }
    let exact: &[(u64, &str)] = &[
        (7, "        7"),
        (12_345_678, " 12345678"),
        (123_456_789, " 123456789"),
        (u64::MAX, " 18446744073709551615"),
    ];
    for (n, want) in exact {
        let mut s = String::new();
        push_largenum(&mut s, *n, true);
        assert_eq!(&s, want, "{n}");
    }
}

#[test]
fn rate_listing() {
    let mut c = setup(&[
        "-A -t 198.18.0.100:80",
        "-a -t 198.18.0.100:80 -r 198.18.0.11",
    ]);
    let t0 = Instant::now();
    c.tick(t0);
    let counters = c.model().services[0].counters.clone();
    let dcounters = c.model().services[0].dests[0].counters.clone();
    for i in 1..=60u32 {
        for _ in 0..20 {
            counters.add_conn();
            counters.add_in(1000);
            dcounters.add_conn();
            dcounters.add_in(1000);
        }
        c.tick(t0 + Duration::from_secs(2 * u64::from(i)));
    }
    assert_eq!(
        ok(&mut c, "-Ln --rate"),
        "IP Virtual Server version 1.2.1 (size=4096)\n\
Prot LocalAddress:Port                 CPS    InPPS   OutPPS    InBPS   OutBPS\n  \
-> RemoteAddress:Port\n\
TCP  198.18.0.100:80                    10       10        0    10000        0\n  \
-> 198.18.0.11:80                     10       10        0    10000        0\n"
    );
    ok(&mut c, "-Z");
    assert!(ok(&mut c, "-Ln --rate").contains(
        "TCP  198.18.0.100:80                     0        0        0        0        0\n"
    ));
}

#[test]
fn thresholds_persistent_conn_tun_info() {
    let mut c = setup(&[
        "-A -t 198.18.0.100:80 -p 30",
        "-a -t 198.18.0.100:80 -r 198.18.0.11 -x 100 -y 50",
        "-a -t 198.18.0.100:80 -r 198.18.0.12 -i --tun-type gue --tun-port 6080 --tun-csum -w 5",
    ]);
    {
        let d = &c.model().services[0].dests;
        d[1].load.active.store(3, Ordering::Relaxed);
        d[1].load.inactive.store(4, Ordering::Relaxed);
        d[1].load.persist.store(2, Ordering::Relaxed);
    }
    assert_eq!(
        ok(&mut c, "-Ln --thresholds"),
        "IP Virtual Server version 1.2.1 (size=4096)\n\
Prot LocalAddress:Port            Uthreshold Lthreshold ActiveConn InActConn \n  \
-> RemoteAddress:Port\n\
TCP  198.18.0.100:80 wlc persistent 30\n  \
-> 198.18.0.11:80               100        50         3          4         \n  \
-> 198.18.0.12:80               0          0          0          0         \n"
    );
    assert_eq!(
        ok(&mut c, "-Ln --persistent-conn"),
        "IP Virtual Server version 1.2.1 (size=4096)\n\
Prot LocalAddress:Port            Weight    PersistConn ActiveConn InActConn \n  \
-> RemoteAddress:Port\n\
TCP  198.18.0.100:80 wlc persistent 30\n  \
-> 198.18.0.11:80               1         2           3          4         \n  \
-> 198.18.0.12:80               5         0           0          0         \n"
    );
    assert_eq!(
        ok(&mut c, "-Ln --tun-info"),
        "IP Virtual Server version 1.2.1 (size=4096)\n\
Prot LocalAddress:Port Scheduler Flags\n  \
-> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn InActConn\n\
TCP  198.18.0.100:80 wlc persistent 30\n  \
-> 198.18.0.11:80               Route                 1      3          4         \n  \
-> 198.18.0.12:80               Tunnel  gue:6080,csum 5      0          0         \n"
    );
    let saved = ok(&mut c, "-S");
    assert_eq!(
        saved,
        "-A -t 198.18.0.100:80 -s wlc -p 30\n\
-a -t 198.18.0.100:80 -r 198.18.0.11:80 -g -w 1 -x 100 -y 50\n\
-a -t 198.18.0.100:80 -r 198.18.0.12:80 -i -w 5 --tun-type gue --tun-port 6080 --tun-csum\n"
    );
    let mut d = Control::new();
    assert_eq!(restore(&mut d, &saved).code, 0);
    assert_eq!(ok(&mut d, "-S"), saved);
}

#[test]
fn timeouts() {
    let mut c = Control::new();
    assert_eq!(
        ok(&mut c, "-L --timeout"),
        "Timeout (tcp tcpfin udp): 900 120 300\n"
    );
    let g = c.generation();
    ok(&mut c, "--set 600 0 60");
    assert!(c.generation() > g);
    assert_eq!(
        ok(&mut c, "-L --timeout"),
        "Timeout (tcp tcpfin udp): 600 120 60\n"
    );
    assert_eq!(ok(&mut c, "-L --daemon"), "");
}

fn v4(a: u8, b: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 18, a, b))
}

#[test]
fn connection_listing() {
    let rt = Conns(vec![
        ConnEntry {
            proto: 6,
            template: false,
            state: "ESTABLISHED",
            expire_secs: 899,
            cip: v4(0, 2),
            cport: 52000,
            vip: v4(0, 100),
            vport: 80,
            dip: v4(1, 1),
            dport: 80,
        },
        ConnEntry {
            proto: 0,
            template: true,
            state: "NONE",
            expire_secs: 6000,
            cip: v4(0, 2),
            cport: 0,
            vip: IpAddr::V4(Ipv4Addr::new(0, 0, 0, 10)),
            vport: 0,
            dip: v4(1, 1),
            dport: 0,
        },
    ]);
    let mut c = Control::new();
    let r = c.execute(&req("-Lnc"), &rt);
    assert_eq!(
        r.stdout,
        "IPVS connection entries\n\
pro expire state       source             virtual            destination\n\
TCP 14:59  ESTABLISHED 198.18.0.2:52000   198.18.0.100:80    198.18.1.1:80\n\
IP  100:00 NONE        198.18.0.2:0       0.0.0.10:0         198.18.1.1:0\n"
    );
    let r = c.execute(&req("-L -n -c --persistent-conn"), &rt);
    assert_eq!(
        r.stdout,
        "IPVS connection entries\n\
pro expire state       source             virtual            destination\n\
IP  100:00 NONE        198.18.0.2:0       0.0.0.10:0         198.18.1.1:0\n"
    );
}

#[test]
fn refused_operations() {
    let base = [
        "-A -t 198.18.0.100:80 -s rr",
        "-a -t 198.18.0.100:80 -r 198.18.0.11",
    ];
    let table: &[(&str, &str)] = &[
        ("-A -t 198.18.0.100:80", "Service already exists"),
        (
            "-A -t 198.18.0.101:80 -s bogus",
            "Scheduler or persistence engine not found",
        ),
        (
            "-E -t 198.18.0.100:80 -s bogus",
            "Scheduler or persistence engine not found",
        ),
        (
            "-A -t 198.18.0.101:80 -p --pe bogus",
            "Scheduler or persistence engine not found",
        ),
        ("-E -t 198.18.0.101:80", "No such service"),
        ("-D -t 198.18.0.101:80", "No such service"),
        ("-Z -t 198.18.0.101:80", "No such service"),
        (
            "-a -t 198.18.0.101:80 -r 198.18.0.11",
            "Service not defined",
        ),
        (
            "-e -t 198.18.0.101:80 -r 198.18.0.11",
            "Service not defined",
        ),
        (
            "-d -t 198.18.0.101:80 -r 198.18.0.11",
            "Service not defined",
        ),
        (
            "-a -t 198.18.0.100:80 -r 198.18.0.11",
            "Destination already exists",
        ),
        (
            "-a -t 198.18.0.100:80 -r 198.18.0.11:8080",
            "Destination already exists",
        ),
        (
            "-e -t 198.18.0.100:80 -r 198.18.0.12",
            "No such destination",
        ),
        (
            "-d -t 198.18.0.100:80 -r 198.18.0.12",
            "No such destination",
        ),
        (
            "-a -t 198.18.0.100:80 -r 198.18.0.12 -x 10 -y 11",
            "Numerical result out of range",
        ),
        (
            "-a -t 198.18.0.100:80 -r 198.18.0.12 -y 1",
            "Numerical result out of range",
        ),
        (
            "-a -t 198.18.0.100:80 -r 0.0.0.0",
            "Invalid operation.  Possibly wrong module version, address not unicast, ...",
        ),
        (
            "-a -t 198.18.0.100:80 -r 224.0.0.1",
            "Invalid operation.  Possibly wrong module version, address not unicast, ...",
        ),
        (
            "-a -t 198.18.0.100:80 -r [::ffff:198.18.0.12]:80 -i",
            "Invalid operation.  Possibly wrong module version, address not unicast, ...",
        ),
        ("--stop-daemon master", "No daemon is running"),
        (
            "-A -t 198.18.0.101:80 -p --pe sip",
            "xvs has no SIP persistence engine: --pe sip is not supported",
        ),
    ];
    for (line, msg) in table {
        let mut c = setup(&base);
        let before = ok(&mut c, "-S");
        let g = c.generation();
        let r = run(&mut c, line);
        assert_eq!(
            (r.code, r.stdout.as_str(), r.stderr.as_str()),
            (255, "", format!("{msg}\n").as_str()),
            "{line:?}"
        );
        assert_eq!(ok(&mut c, "-S"), before, "{line:?} changed the table");
        assert_eq!(c.generation(), g);
    }
}

#[test]
fn memory_allocation_problem() {
    let mut c = Control::with_config(
        Limits {
            max_services: 1,
            max_dests: 1,
        },
        4096,
    );
    ok(&mut c, "-A -t 198.18.0.1:80");
    let r = run(&mut c, "-A -t 198.18.0.2:80");
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (255, "Memory allocation problem\n")
    );
    ok(&mut c, "-a -t 198.18.0.1:80 -r 198.18.1.1");
    let r = run(&mut c, "-a -t 198.18.0.1:80 -r 198.18.1.2");
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (255, "Memory allocation problem\n")
    );
}

#[test]
fn parse_errors_exit_2_with_hint() {
    let mut c = setup(&["-A -t 198.18.0.1:80"]);
    let g = c.generation();
    for (line, msg) in [
        (
            "-A -t 198.18.0.1:80 -w 1",
            "Illegal 'weight' option with the 'add-service' command",
        ),
        (
            "-a -t 198.18.0.1:80 -r 198.18.0.2 -w 70000",
            "illegal weight specified",
        ),
        (
            "-A",
            "You need to supply the 'service-address' option for the 'add-service' command",
        ),
        ("-L -A", "multiple commands specified"),
    ] {
        let r = run(&mut c, line);
        assert_eq!(r.code, 2, "{line:?}");
        assert_eq!(r.stdout, "");
        assert_eq!(
            r.stderr,
            format!("{msg}\nTry `xvsadm -h' or 'xvsadm --help' for more information.\n")
        );
    }
    assert_eq!(c.generation(), g);
}

#[test]
fn help_version_and_empty() {
    let mut c = Control::new();
    let h = ok(&mut c, "-h");
    assert!(h.contains("xvsadm -A|E virtual-service"));
    assert_eq!(ok(&mut c, "--help"), h);
    assert_eq!(
        ok(&mut c, "-v"),
        "xvsadm v0.1.0 (compatible with ipvsadm v1.31)\n"
    );
    assert_eq!(
        ok(&mut c, ""),
        "IP Virtual Server version 1.2.1 (size=4096)\n\
Prot LocalAddress:Port Scheduler Flags\n  \
-> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n"
    );
    let mut c = Control::with_config(Limits::default(), 1 << 20);
    assert!(ok(&mut c, "-Ln").starts_with("IP Virtual Server version 1.2.1 (size=1048576)\n"));
}

#[test]
fn port_rules() {
    let mut c = setup(&[
        "-A -t 198.18.0.1:80",
        // DR and TUN take the service's port, whatever is written.
        "-a -t 198.18.0.1:80 -r 198.18.1.1:8080 -g",
        "-a -t 198.18.0.1:80 -r 198.18.1.2:9090 -i",
        // NAT maps ports; no port means the service's.
        "-a -t 198.18.0.1:80 -r 198.18.1.3:8080 -m",
        "-a -t 198.18.0.1:80 -r 198.18.1.4 -m",
    ]);
    assert_eq!(
        ok(&mut c, "-S"),
        "-A -t 198.18.0.1:80 -s wlc\n\
-a -t 198.18.0.1:80 -r 198.18.1.1:80 -g -w 1\n\
-a -t 198.18.0.1:80 -r 198.18.1.2:80 -i -w 1 --tun-type ipip\n\
-a -t 198.18.0.1:80 -r 198.18.1.3:8080 -m -w 1\n\
-a -t 198.18.0.1:80 -r 198.18.1.4:80 -m -w 1\n"
    );
    // Newest first in the model (IPVS list order).
    let order: Vec<IpAddr> = c.model().services[0].dests.iter().map(|d| d.addr).collect();
    assert_eq!(order, [v4(1, 4), v4(1, 3), v4(1, 2), v4(1, 1)]);
    ok(&mut c, "-d -t 198.18.0.1:80 -r 198.18.1.3:8080");
    ok(&mut c, "-d -t 198.18.0.1:80 -r 198.18.1.1");
    ok(&mut c, "-d -t 198.18.0.1:80 -r 198.18.1.2:9090");
    let r = run(&mut c, "-d -t 198.18.0.1:80 -r 198.18.1.4:81");
    assert_eq!(r.stderr, "No such destination\n");
    // Quiescing keeps the last non-zero weight.
    ok(&mut c, "-e -t 198.18.0.1:80 -r 198.18.1.4 -m -w 0");
    let d = &c.model().services[0].dests[0];
    assert_eq!((d.weight, d.last_weight), (0, 1));
}

#[test]
fn generation_counts_changes_only() {
    let mut c = Control::new();
    let g0 = c.generation();
    ok(&mut c, "-A -t 198.18.0.1:80");
    let g1 = c.generation();
    assert!(g1 > g0);
    ok(&mut c, "-Ln");
    ok(&mut c, "-S");
    ok(&mut c, "-Z");
    assert_eq!(c.generation(), g1);
    ok(&mut c, "-D -t 198.18.0.1:80");
    assert!(c.generation() > g1);
}

const RULES: &str = "\
# saved by ipvsadm-save
ipvsadm -A -t 198.18.0.100:80 -s wrr
-a -t 198.18.0.100:80 -r 198.18.1.1:80 -g -w 3

-a -t 198.18.0.100:80 -r 198.18.1.2:80 -m -w 1
-A -u 198.18.0.100:53 -s rr -p 600
-a -u 198.18.0.100:53 -r 198.18.1.1:53 -g -w 1
";

#[test]
fn save_restore_round_trip() {
    let mut c = Control::new();
    assert_eq!(restore(&mut c, RULES), Response::ok(""));
    let saved = ok(&mut c, "-S -n");
    assert_eq!(
        saved,
        "-A -t 198.18.0.100:80 -s wrr\n\
-a -t 198.18.0.100:80 -r 198.18.1.1:80 -g -w 3\n\
-a -t 198.18.0.100:80 -r 198.18.1.2:80 -m -w 1\n\
-A -u 198.18.0.100:53 -s rr -p 600\n\
-a -u 198.18.0.100:53 -r 198.18.1.1:53 -g -w 1\n"
    );
    let mut d = Control::new();
    assert_eq!(restore(&mut d, &saved).code, 0);
    assert_eq!(ok(&mut d, "-S"), saved);
    assert_eq!(ok(&mut d, "-Ln"), ok(&mut c, "-Ln"));
}

#[test]
fn failing_restore_changes_nothing() {
    let mut c = setup(&[
        "-A -t 198.18.0.1:80 -s rr",
        "-a -t 198.18.0.1:80 -r 198.18.1.1",
    ]);
    let before = ok(&mut c, "-S");
    let g = c.generation();
    // A command-line error on line 3: exit 2, nothing applied.
    let r = restore(
        &mut c,
        "-C\n-A -t 198.18.0.2:80\n-a -t 198.18.0.2:80 -r 198.18.1.1 -w x\n",
    );
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (
            2,
            "illegal weight specified\nTry `xvsadm -h' or 'xvsadm --help' for more information.\n"
        )
    );
    assert_eq!(ok(&mut c, "-S"), before);
    assert_eq!(c.generation(), g);
    // A refused rule: exit 255, nothing applied.
    let r = restore(&mut c, "-A -t 198.18.0.2:80\n-A -t 198.18.0.1:80\n");
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (255, "Service already exists\n")
    );
    assert_eq!(ok(&mut c, "-S"), before);
    assert_eq!(c.generation(), g);
    // Listing commands are not rules.
    let r = restore(&mut c, "-A -t 198.18.0.2:80\n-L -n\n");
    assert_eq!(r.code, 2);
    assert_eq!(ok(&mut c, "-S"), before);
    // An empty restore succeeds and changes nothing.
    assert_eq!(restore(&mut c, "\n# nothing\n"), Response::ok(""));
    assert_eq!(c.generation(), g);
}

#[test]
fn failing_restore_leaves_shared_counters_and_overload_alone() {
    let mut c = setup(&[
        "-A -t 198.18.0.1:80 -s wlc",
        "-a -t 198.18.0.1:80 -r 198.18.1.1 -x 10",
    ]);
    let (svc, dest) = {
        let s = &c.model().services[0];
        (s.counters.clone(), s.dests[0].clone())
    };
    svc.add_conn_by(0);
    svc.add_in_by(0, 100);
    dest.counters.add_conn_by(0);
    dest.load.overloaded.store(true, Ordering::Relaxed);
    // -Z and an -e lifting the threshold, then a refused line: the live
    // counters and the overload flag are untouched.
    let r = restore(
        &mut c,
        "-Z\n-e -t 198.18.0.1:80 -r 198.18.1.1 -x 0\n-A -t 198.18.0.1:80\n",
    );
    assert_eq!(r.code, 255, "{r:?}");
    assert_eq!((svc.get().conns, svc.get().inbytes), (1, 100));
    assert_eq!(dest.counters.get().conns, 1);
    assert!(dest.load.overloaded.load(Ordering::Relaxed));
    // The same without the bad line: both happen when the restore commits.
    let r = restore(&mut c, "-Z\n-e -t 198.18.0.1:80 -r 198.18.1.1 -x 0\n");
    assert_eq!(r, Response::ok(""));
    assert_eq!((svc.get().conns, svc.get().inbytes), (0, 0));
    assert_eq!(dest.counters.get().conns, 0);
    assert!(!dest.load.overloaded.load(Ordering::Relaxed));
    // Outside a restore, -Z acts at once, as before.
    svc.add_conn_by(0);
    ok(&mut c, "-Z");
    assert_eq!(svc.get().conns, 0);
}

/// A small deterministic generator for the hostile-input test.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

#[test]
fn hostile_input_never_panics() {
    let words = [
        "-A",
        "-E",
        "-D",
        "-C",
        "-R",
        "-S",
        "-a",
        "-e",
        "-d",
        "-L",
        "-l",
        "-Z",
        "--set",
        "--start-daemon",
        "--stop-daemon",
        "-h",
        "-v",
        "-t",
        "-u",
        "--sctp-service",
        "-f",
        "-6",
        "-s",
        "-p",
        "-M",
        "-b",
        "-o",
        "--pe",
        "-r",
        "-g",
        "-i",
        "-m",
        "--tun-type",
        "--tun-port",
        "--tun-csum",
        "--tun-nocsum",
        "--tun-remcsum",
        "-w",
        "-x",
        "-y",
        "-n",
        "--stats",
        "--rate",
        "--exact",
        "--thresholds",
        "--persistent-conn",
        "--tun-info",
        "-c",
        "--timeout",
        "--daemon",
        "--nosort",
        "--sort",
        "198.18.0.1:80",
        "198.18.0.2",
        "0",
        "[::1]:80",
        "[::]",
        "99999999999999999999999",
        "rr",
        "sh",
        "mh",
        "gue",
        "sip",
        "master",
        "1",
        "65535",
        "-1",
        "",
        "-",
        "--",
        "--=",
        "é",
        "\u{0}",
        "255.255.255.0",
        "-Lnc",
        "-p0",
        "--persistent=",
        "sh-port,sh-fallback",
    ];
    let mut rng = Lcg(42);
    let mut c = setup(&[
        "-A -t 198.18.0.1:80 -p",
        "-a -t 198.18.0.1:80 -r 198.18.0.2",
    ]);
    for _ in 0..20_000 {
        let n = (rng.next() % 8) as usize;
        let args: Vec<String> = (0..n)
            .map(|_| words[(rng.next() as usize) % words.len()].to_string())
            .collect();
        let stdin = (rng.next() & 3 == 0).then(|| args.join(" ").replace(" -", "\n-"));
        let r = c.execute(&Request { args, stdin }, &NoRuntime);
        assert!(matches!(r.code, 0 | 1 | 2 | 255));
    }
}
