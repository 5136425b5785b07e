//! The control plane end to end with the real binaries: configuration
//! files and restarts, the metrics endpoint, the control socket's defences,
//! and configuration churn at 1000 edits per second under live traffic.
//!
//! All but the last run xvsd control-only (no interface, no namespace);
//! the last builds the DR LAN of `xvs_tests::netns` and pushes real TCP
//! through the director.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use xvs_control::proto::{self, Request, Response};
use xvs_dataplane::pipeline::DropReason;
use xvs_tests::daemon::Xvsd;
use xvs_tests::listing;
use xvs_tests::netns::{DrLan, VIP};
use xvs_tests::rig;

const STREAM: &str = env!("CARGO_BIN_EXE_xvs-stream");

/// The namespace test takes turns with itself (and keeps control-only
/// daemons of other tests from competing for the two cores meanwhile).
static NET: Mutex<()> = Mutex::new(());

fn net_lock() -> MutexGuard<'static, ()> {
    NET.lock().unwrap_or_else(|e| e.into_inner())
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

const RULES: &str = "\
# a table with one of everything xvs stores
-A -t 198.18.0.100:80 -s wrr
-a -t 198.18.0.100:80 -r 198.18.0.11:80 -g -w 3
-a -t 198.18.0.100:80 -r 198.18.0.12:80 -g -w 0 -x 100 -y 10
-a -t 198.18.0.100:80 -r 198.18.0.13:8080 -m -w 2
-A -u 198.18.0.100:53 -s sh -b sh-fallback,sh-port -o
-a -u 198.18.0.100:53 -r 198.18.0.11:53 -i -w 1 --tun-type gue --tun-port 6080 --tun-csum
-A -t 198.18.0.101:0 -s rr -p 600 -M 255.255.255.0
-a -t 198.18.0.101:0 -r 198.18.0.12:0 -g -w 1
-A -f 7 -s mh -b mh-port -p 60
-a -f 7 -r 198.18.0.13:0 -g -w 5
-A -t [2001:2::100]:443 -s lc
-a -t [2001:2::100]:443 -r [2001:2::11]:443 -m -w 1
";

#[test]
fn config_file_brings_a_saved_table_back_after_restart() {
    let d = Xvsd::start_control_only();
    let out = d.adm_stdin(&["-R"], RULES);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let saved = d.adm_ok(&["-S", "-n"]);
    let listed = d.adm_ok(&["-Ln"]);
    assert_eq!(saved.lines().filter(|l| l.starts_with("-A ")).count(), 5);
    assert_eq!(saved.lines().filter(|l| l.starts_with("-a ")).count(), 7);
    d.stop().assert_clean();

    // xvsadm -S > FILE; restart with --config FILE: the same table.
    let file = std::env::temp_dir().join(format!("xvs-e2e-{}.rules", std::process::id()));
    std::fs::write(&file, &saved).expect("write the saved table");
    let d = Xvsd::start_with(None, &["--config".into(), file.display().to_string()]);
    assert_eq!(d.adm_ok(&["-S", "-n"]), saved);
    assert_eq!(d.adm_ok(&["-Ln"]), listed);
    assert!(
        d.stderr_so_far().contains("5 service(s) loaded"),
        "{}",
        d.stderr_so_far()
    );
    // A save restores to an identical save through the binaries too.
    let out = d.adm_stdin(&["-R"], "-C\n");
    assert_eq!(out.status.code(), Some(0));
    let out = d.adm_stdin(&["-R"], &saved);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(d.adm_ok(&["-S", "-n"]), saved);
    drop(d);

    // A bad file: xvsd refuses to start and says where.
    std::fs::write(
        &file,
        format!("{saved}-a -t 198.18.0.100:80 -r 198.18.0.99 -w 70000\n"),
    )
    .expect("write");
    let sock = std::env::temp_dir().join(format!("xvs-e2e-bad-{}.sock", std::process::id()));
    let state = std::env::temp_dir().join(format!("xvs-e2e-bad-{}.state", std::process::id()));
    let out = Command::new(xvs_tests::bin("xvsd"))
        .arg("--config")
        .arg(&file)
        .arg("--state-dir")
        .arg(&state)
        .arg("--socket")
        .arg(&sock)
        .output()
        .expect("run xvsd");
    let _ = std::fs::remove_dir_all(&state);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains(&file.display().to_string()) && err.contains("illegal weight specified"),
        "{err}"
    );
    assert!(
        !sock.exists(),
        "xvsd created its socket despite a bad config"
    );
    let _ = std::fs::remove_file(&file);
}

const HINT: &str = "Try `xvsadm -h' or 'xvsadm --help' for more information.\n";

/// IPv6 through the binaries: a restored table lists and saves with
/// bracketed, compressed addresses, and malformed input gets ipvsadm's
/// messages and exit codes without changing the table.
#[test]
fn ipv6_rules_list_save_and_refuse_as_ipvsadm() {
    let d = Xvsd::start_control_only();
    let rules = "\
-A -t [2001:2:0:0::100]:80 -s rr -p 300 -M 64
-a -t [2001:2::100]:80 -r 2001:2::11 -g -w 2
-a -t [2001:2::100]:80 -r [2001:2::12]:8080 -m
-A -f 7 -6 -s wlc
-a -f 7 -6 -r 2001:2::21 -g
-A -t 198.18.0.100:80 -s rr
-a -t 198.18.0.100:80 -r 2001:2::31 -i
";
    let out = d.adm_stdin(&["-R"], rules);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let listed = d.adm_ok(&["-Ln"]);
    let (head, body) = listed.split_once('\n').expect("a header line");
    assert!(
        head.starts_with("IP Virtual Server version 1.2.1 (size="),
        "{head}"
    );
    assert_eq!(
        body,
        "Prot LocalAddress:Port Scheduler Flags\n  \
-> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n\
TCP  198.18.0.100:80 rr\n  \
-> [2001:2::31]:80              Tunnel  1      0          0         \n\
TCP  [2001:2::100]:80 rr persistent 300 mask 64\n  \
-> [2001:2::11]:80              Route   2      0          0         \n  \
-> [2001:2::12]:8080            Masq    1      0          0         \n\
FWM  7 IPv6 wlc\n  \
-> [2001:2::21]:0               Route   1      0          0         \n"
    );
    let saved = d.adm_ok(&["-S", "-n"]);
    assert_eq!(
        saved,
        "-A -t 198.18.0.100:80 -s rr\n\
-a -t 198.18.0.100:80 -r [2001:2::31]:80 -i -w 1 --tun-type ipip\n\
-A -t [2001:2::100]:80 -s rr -p 300 -M 64\n\
-a -t [2001:2::100]:80 -r [2001:2::11]:80 -g -w 2\n\
-a -t [2001:2::100]:80 -r [2001:2::12]:8080 -m -w 1\n\
-A -f 7 -6 -s wlc\n\
-a -f 7 -6 -r [2001:2::21]:0 -g -w 1\n"
    );
    for (args, code, stderr) in [
        (
            &["-A", "-t", "[2001:2::1]", "-p"][..],
            2,
            format!("illegal virtual server address[:port] specified\n{HINT}"),
        ),
        (
            &["-A", "-t", "[2001:2::1", "-p"][..],
            2,
            format!("illegal virtual server address[:port] specified\n{HINT}"),
        ),
        (
            &["-A", "-t", "2001:2::1:80"][..],
            2,
            format!("Zero port specified for non-persistent service\n{HINT}"),
        ),
        (
            &["-A", "-6", "-f", "8"][..],
            2,
            format!("-6 used before -f\n\n{HINT}"),
        ),
        (
            &["-A", "-t", "[2001:2::1]:80", "-p", "-M", "129"][..],
            2,
            format!("illegal ipv6 netmask specified\n{HINT}"),
        ),
        (
            &["-a", "-t", "198.18.0.100:80", "-r", "[2001:2::32]:80", "-m"][..],
            2,
            format!("Different address family is allowed only for tunneling servers\n{HINT}"),
        ),
        (
            &["-a", "-t", "[2001:2::100]:80", "-r", "fe80::2", "-g"][..],
            255,
            "Invalid operation.  Possibly wrong module version, address not unicast, ...\n"
                .to_string(),
        ),
        (
            &["-L", "-n", "-t", "[2001:2::101]:80"][..],
            1,
            "No such service\n".to_string(),
        ),
    ] {
        let out = d.adm(args);
        assert_eq!(
            (out.status.code(), text(&out.stdout), text(&out.stderr)),
            (Some(code), String::new(), stderr),
            "{args:?}"
        );
    }
    // A bad IPv6 line stops a restore with status 2.
    let out = d.adm_stdin(
        &["-R"],
        "-A -t [2001:2::102]:80 -s rr\n-A -t [2001:2::103 -s rr\n",
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).starts_with("illegal virtual server address[:port] specified\n"),
        "{}",
        text(&out.stderr)
    );
    let after = d.adm_ok(&["-S", "-n"]);
    assert!(!after.contains("2001:2::103"), "{after}");
    d.stop().assert_clean();
}

/// GET `path` from `addr`; returns (status line, headers, body).
fn http(addr: &str, request: &str) -> (String, String, String) {
    let mut s = TcpStream::connect(addr).expect("connect to the metrics endpoint");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    (status.to_string(), headers.to_string(), body.to_string())
}

fn metric(page: &str, name_and_labels: &str) -> Option<u64> {
    page.lines().find_map(|l| {
        l.strip_prefix(name_and_labels)?
            .strip_prefix(' ')?
            .parse()
            .ok()
    })
}

#[test]
fn metrics_endpoint_serves_services_dests_and_drops() {
    // ":0": loopback, any free port.
    let d = Xvsd::start_with(None, &["--metrics".into(), ":0".into()]);
    let log = d.stderr_so_far();
    let addr = log
        .lines()
        .find_map(|l| {
            l.strip_prefix("xvsd: metrics on http://")?
                .strip_suffix("/metrics")
        })
        .unwrap_or_else(|| panic!("no metrics address in:\n{log}"))
        .to_string();
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");
    d.adm_ok(&["-A", "-t", "198.18.0.100:80", "-s", "rr"]);
    d.adm_ok(&[
        "-a",
        "-t",
        "198.18.0.100:80",
        "-r",
        "198.18.0.11",
        "-w",
        "2",
    ]);
    d.adm_ok(&["-A", "-f", "7", "-p"]);

    let get = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
    let deadline = Instant::now() + Duration::from_secs(5);
    let page = loop {
        let (status, headers, body) = http(&addr, get);
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert!(
            headers.contains("Content-Type: text/plain; version=0.0.4"),
            "{headers}"
        );
        if metric(&body, "xvs_services") == Some(2) {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "page never showed 2 services:\n{body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let svc = "service=\"TCP 198.18.0.100:80\"";
    for (name, want) in [
        (format!("xvs_service_connections_total{{{svc}}}"), 0),
        (format!("xvs_service_packets_in_total{{{svc}}}"), 0),
        (format!("xvs_service_bytes_out_total{{{svc}}}"), 0),
        (
            "xvs_service_connections_total{service=\"FWM 7\"}".to_string(),
            0,
        ),
        (
            format!("xvs_dest_weight{{{svc},server=\"198.18.0.11:80\"}}"),
            2,
        ),
        (
            format!("xvs_dest_active_connections{{{svc},server=\"198.18.0.11:80\"}}"),
            0,
        ),
        (
            format!("xvs_dest_bytes_in_total{{{svc},server=\"198.18.0.11:80\"}}"),
            0,
        ),
        ("xvs_dataplane_workers".to_string(), 0),
        ("xvs_dataplane_rx_frames_total".to_string(), 0),
        ("xvs_dataplane_tx_frames_total".to_string(), 0),
        ("xvs_dataplane_pass_frames_total".to_string(), 0),
        ("xvs_dataplane_connections_created_total".to_string(), 0),
        ("xvs_dataplane_templates_created_total".to_string(), 0),
        ("xvs_dataplane_frag_needed_total".to_string(), 0),
        (
            "xvs_dataplane_drops_total{reason=\"tx_ring_full\"}".to_string(),
            0,
        ),
    ] {
        assert_eq!(metric(&page, &name), Some(want), "{name} in:\n{page}");
    }
    for r in DropReason::ALL {
        let name = format!("xvs_dataplane_drops_total{{reason=\"{}\"}}", r.name());
        assert_eq!(metric(&page, &name), Some(0), "{name} in:\n{page}");
    }
    assert!(page.contains("# TYPE xvs_service_connections_total counter"));
    assert!(page.contains("# TYPE xvs_dest_weight gauge"));
    // Every sample line is `name{labels} value` or `name value`.
    for l in page.lines().filter(|l| !l.starts_with('#')) {
        let (_, v) = l.rsplit_once(' ').unwrap_or_else(|| panic!("{l:?}"));
        v.parse::<i64>().unwrap_or_else(|_| panic!("{l:?}"));
    }

    let (status, _, _) = http(&addr, "GET /other HTTP/1.1\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    let (status, _, _) = http(&addr, "POST /metrics HTTP/1.1\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 405 Method Not Allowed");
    // Garbage and a silent client do not take the endpoint down.
    let mut junk = TcpStream::connect(&addr).unwrap();
    junk.write_all(&[0xff; 10000]).unwrap();
    drop(junk);
    let idle = TcpStream::connect(&addr).unwrap();
    let (status, _, _) = http(&addr, get);
    assert_eq!(status, "HTTP/1.1 200 OK");
    drop(idle);
    d.stop().assert_clean();
}

/// Send raw bytes on the control socket and read the response frame.
fn raw_call(sock: &Path, bytes: &[u8]) -> Option<Response> {
    let mut s = UnixStream::connect(sock).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let _ = s.write_all(bytes);
    proto::read_frame(&mut s).ok()
}

fn run_as(uid: u32, gid: u32, sock: &Path, args: &[&str]) -> Output {
    Command::new("setpriv")
        .args([
            &format!("--reuid={uid}"),
            &format!("--regid={gid}"),
            "--clear-groups",
        ])
        .arg(xvs_tests::bin("xvsadm"))
        .arg("--socket")
        .arg(sock)
        .args(args)
        .output()
        .expect("run setpriv")
}

#[test]
fn control_socket_refuses_strangers_and_hostile_input() {
    let d = Xvsd::start_control_only();
    d.adm_ok(&["-A", "-t", "198.18.0.100:80", "-s", "rr"]);
    let before = d.adm_ok(&["-S"]);
    let meta = std::fs::metadata(d.socket()).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);

    // Oversized, malformed, truncated requests: an error, never a crash.
    let r = raw_call(d.socket(), &u32::MAX.to_be_bytes()).expect("a response");
    assert_eq!(r.code, 255);
    assert!(r.stderr.contains("bad request"), "{}", r.stderr);
    let mut bad = 9u32.to_be_bytes().to_vec();
    bad.extend_from_slice(b"{\"args\":1");
    let r = raw_call(d.socket(), &bad).expect("a response");
    assert_eq!(r.code, 255);
    let mut wrong = Vec::from(14u32.to_be_bytes());
    wrong.extend_from_slice(b"[1,2,3,4,5,6] ");
    assert_eq!(raw_call(d.socket(), &wrong).map(|r| r.code), Some(255));
    let mut short = Vec::from(100u32.to_be_bytes());
    short.extend_from_slice(b"{");
    let mut s = UnixStream::connect(d.socket()).unwrap();
    s.write_all(&short).unwrap();
    drop(s);
    // A client that connects and says nothing does not hold others up.
    let _idle = UnixStream::connect(d.socket()).unwrap();
    let t0 = Instant::now();
    assert_eq!(d.adm_ok(&["-S"]), before);
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    // Absurd argument vectors.
    let huge = "9".repeat(1 << 20);
    let many: Vec<String> = (0..20_000).map(|i| format!("-{}", i % 7)).collect();
    for args in [
        vec!["-A".to_string(), "-t".into(), huge.clone()],
        vec![
            "-a".to_string(),
            "-t".into(),
            "198.18.0.100:80".into(),
            "-r".into(),
            huge,
        ],
        many,
    ] {
        let r = proto::call(d.socket(), &Request { args, stdin: None }).expect("answer");
        assert_eq!(r.code, 2, "{}", r.stderr);
    }
    // A restore that fails half-way changes nothing.
    let out = d.adm_stdin(
        &["-R"],
        "-A -t 198.18.0.102:80\n-a -t 198.18.0.102:80 -r 198.18.0.11\n-A -t 198.18.0.100:80\n",
    );
    assert_eq!(out.status.code(), Some(255));
    assert_eq!(text(&out.stderr), "Service already exists\n");
    assert_eq!(d.adm_ok(&["-S"]), before);

    // Not root: the socket (0600) is not even reachable.
    let out = run_as(65534, 65534, d.socket(), &["-Ln"]);
    assert_eq!(out.status.code(), Some(255), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("cannot reach xvsd"),
        "{}",
        text(&out.stderr)
    );
    let exit = d.stop();
    assert!(exit.status.success(), "{}", exit.stderr);

    // --group: the group reaches the socket; membership is still checked
    // against the peer's uid (nobody is no member of gid 4242).
    let d = Xvsd::start_with(None, &["--group".into(), "4242".into()]);
    let meta = std::fs::metadata(d.socket()).unwrap();
    assert_eq!(
        (meta.permissions().mode() & 0o777, meta.gid()),
        (0o660, 4242)
    );
    let out = run_as(65534, 4242, d.socket(), &["-A", "-t", "198.18.0.100:80"]);
    assert_eq!(out.status.code(), Some(255), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("permission denied"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(d.adm_ok(&["-S"]), "");
    drop(d);
    // nobody's primary group is nogroup: with --group nogroup it may.
    let d = Xvsd::start_with(None, &["--group".into(), "nogroup".into()]);
    let out = run_as(65534, 65534, d.socket(), &["-A", "-t", "198.18.0.100:80"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(d.adm_ok(&["-S"]), "-A -t 198.18.0.100:80 -s wlc\n");
}

/// TCP RetransSegs of a namespace (from /proc/net/snmp).
fn retrans_segs(lan: &DrLan) -> u64 {
    let snmp = lan.client.exec_ok(&["cat", "/proc/net/snmp"]);
    let tcp: Vec<&str> = snmp.lines().filter(|l| l.starts_with("Tcp:")).collect();
    let names: Vec<&str> = tcp[0].split_whitespace().collect();
    let values: Vec<&str> = tcp[1].split_whitespace().collect();
    let i = names
        .iter()
        .position(|n| *n == "RetransSegs")
        .expect("RetransSegs");
    values[i].parse().expect("number")
}

fn metrics_page(lan: &DrLan) -> String {
    lan.director.exec_ok(&[
        STREAM,
        "get",
        "--connect",
        "127.0.0.1:9100",
        "--path",
        "/metrics",
    ])
}

fn field(out: &str, key: &str) -> u64 {
    out.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
        .unwrap_or_else(|| panic!("no {key}= in {out:?}"))
}

/// The edit the churn thread makes at step `i`: a cycle that adds, fills,
/// reweights, empties and deletes a service unrelated to the traffic, and
/// re-sets the live service's servers to what they are.
fn churn_args(i: u64) -> Vec<String> {
    let other = "198.18.0.200:80";
    let vip = format!("{VIP}:80");
    let line = match i % 8 {
        0 => format!("-A -t {other} -s wrr"),
        1 => format!("-a -t {other} -r 198.18.0.11:80 -g -w 1"),
        2 => format!("-a -t {other} -r 198.18.0.12:80 -g -w 2"),
        3 => format!("-e -t {other} -r 198.18.0.11:80 -g -w {}", 3 + i % 5),
        4 => format!("-e -t {vip} -r 198.18.0.1{}:80 -g -w 1", 1 + (i / 8) % 3),
        5 => format!("-E -t {other} -s rr -p {}", 60 + i % 100),
        6 => format!("-d -t {other} -r 198.18.0.12:80"),
        _ => format!("-D -t {other}"),
    };
    line.split_whitespace().map(String::from).collect()
}

#[test]
fn established_connections_lose_nothing_while_rules_change_1000_times_a_second() {
    let _g = net_lock();
    xvs_tests::bin("xvsd");
    let lan = DrLan::new();
    let _servers = rig::stream_on(&lan.rs, 80, 120);
    let xvsd = Xvsd::start_with(
        Some(&lan.director.ns),
        &[
            "--iface".into(),
            lan.director.iface.clone(),
            "--metrics".into(),
            "9100".into(),
        ],
    );
    let vip = format!("{VIP}:80");
    xvsd.add_dr_service(&vip, "rr", &lan.rs);
    // Warm up: one connection per real server resolves every next hop (a
    // first SYN may be dropped while a neighbour resolves).
    let warm = lan.client.exec(&[
        STREAM,
        "client",
        "--connect",
        &vip,
        "--conns",
        "3",
        "--duration-ms",
        "300",
    ]);
    assert!(
        warm.status.success(),
        "warm-up: {}{}",
        text(&warm.stdout),
        text(&warm.stderr)
    );
    // Let the metrics page (refreshed every second) catch up.
    std::thread::sleep(Duration::from_millis(1300));
    let page0 = metrics_page(&lan);
    let stats0 = listing::parse(&xvsd.adm_ok(&["-Ln", "--stats", "--exact"]));
    let svc0 = stats0
        .iter()
        .find(|s| s.addr == vip)
        .expect("service")
        .stats()
        .expect("stats");
    let retrans0 = retrans_segs(&lan);

    // The churn: ~1000 edits per second over the control socket.
    let stop = Arc::new(AtomicBool::new(false));
    let churn = {
        let stop = stop.clone();
        let sock = xvsd.socket().to_path_buf();
        std::thread::spawn(move || {
            let start = Instant::now();
            let (mut done, mut failures) = (0u64, Vec::new());
            while !stop.load(Ordering::Relaxed) && start.elapsed() < Duration::from_secs(30) {
                let args = churn_args(done);
                match proto::call(
                    &sock,
                    &Request {
                        args: args.clone(),
                        stdin: None,
                    },
                ) {
                    Ok(r) if r.code == 0 => {}
                    Ok(r) => failures.push(format!("{args:?}: {}", r.stderr)),
                    Err(e) => failures.push(format!("{args:?}: {e}")),
                }
                done += 1;
                // Pace at 1000 per second.
                let due = start + Duration::from_millis(done);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
            (done, start.elapsed(), failures)
        })
    };
    let out = lan.client.exec(&[
        STREAM,
        "client",
        "--connect",
        &vip,
        "--conns",
        "4",
        "--duration-ms",
        "5000",
        "--timeout-ms",
        "3000",
        "--size",
        "200",
    ]);
    stop.store(true, Ordering::Relaxed);
    let (edits, elapsed, failures) = churn.join().expect("churn thread");
    let summary = text(&out.stdout);
    eprintln!(
        "{summary}edits={edits} in {elapsed:?} ({:.0}/s)",
        edits as f64 / elapsed.as_secs_f64()
    );
    assert!(
        out.status.success(),
        "stream client failed:\n{summary}{}",
        text(&out.stderr)
    );
    assert!(
        failures.is_empty(),
        "{} edits failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    let rate = edits as f64 / elapsed.as_secs_f64();
    assert!(rate >= 800.0, "only {rate:.0} edits per second");
    let exchanges = field(&summary, "exchanges");
    assert_eq!(field(&summary, "failed"), 0);
    assert!(exchanges >= 1000, "{summary}");
    // No exchange stalled on a retransmission timeout, and TCP never had
    // to retransmit: the director lost no packet of these connections.
    assert!(field(&summary, "max_ms") < 1000, "{summary}");
    assert_eq!(retrans_segs(&lan) - retrans0, 0, "the client retransmitted");

    // Counters: 4 new connections, at least one packet and 200 bytes in
    // per exchange, the service the sum of its servers.
    let out = xvsd.adm_ok(&["-Ln", "--stats", "--exact"]);
    let stats1 = listing::parse(&out);
    let s1 = stats1.iter().find(|s| s.addr == vip).expect("service");
    let svc1 = s1.stats().expect("stats");
    assert_eq!(svc1.conns - svc0.conns, 4, "{out}");
    assert!(svc1.in_pkts - svc0.in_pkts >= exchanges, "{out}");
    assert!(svc1.in_bytes - svc0.in_bytes >= 200 * exchanges, "{out}");
    let dests: Vec<_> = s1.dests.iter().map(|d| d.stats().expect("stats")).collect();
    assert_eq!(
        dests.iter().map(|d| d.conns).sum::<u64>(),
        svc1.conns,
        "{out}"
    );
    assert_eq!(
        dests.iter().map(|d| d.in_pkts).sum::<u64>(),
        svc1.in_pkts,
        "{out}"
    );
    assert_eq!(
        dests.iter().map(|d| d.in_bytes).sum::<u64>(),
        svc1.in_bytes,
        "{out}"
    );

    // The data plane dropped nothing meanwhile (metrics endpoint).
    std::thread::sleep(Duration::from_millis(1300));
    let page1 = metrics_page(&lan);
    for r in DropReason::ALL {
        let name = format!("xvs_dataplane_drops_total{{reason=\"{}\"}}", r.name());
        let (a, b) = (metric(&page0, &name), metric(&page1, &name));
        assert!(a.is_some() && a == b, "{name}: {a:?} -> {b:?}");
    }
    let created = "xvs_dataplane_connections_created_total";
    assert_eq!(
        metric(&page1, created)
            .zip(metric(&page0, created))
            .map(|(b, a)| b - a),
        Some(4),
        "{page1}"
    );
    assert_eq!(metric(&page1, "xvs_dataplane_workers"), Some(1), "{page1}");
    // The steering program's counters are shown: it redirected at least
    // what the worker read (it is read after the worker), and the worker
    // read every exchange's request.
    let rx = metric(&page1, "xvs_dataplane_rx_frames_total").expect("rx");
    let redirected: u64 = page1
        .lines()
        .filter(|l| l.starts_with("xvs_dataplane_steer_redirect_frames_total{iface="))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<u64>().ok())
        .sum();
    assert!(rx >= exchanges, "{page1}");
    assert!(redirected >= rx, "{page1}");

    let exit = xvsd.stop();
    exit.assert_clean();
    for w in exit.worker_frames() {
        assert_eq!(w.lost, 0, "{w:?}");
    }
}
