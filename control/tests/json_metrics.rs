//! `-L --json` (its documented shape) and the metrics page and server.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use xvs_config::stats::CounterValues;
use xvs_control::metrics::{self, DataplaneSample, DataplaneStats, MetricsServer};
use xvs_control::{ConnEntry, Control, Request, Runtime};

mod common;
use common::{ok, run};

fn table() -> Control {
    let mut c = Control::new();
    for l in [
        "-A -t 198.18.0.100:80 -s sh -b sh-port -p 60 -M 255.255.255.0",
        "-a -t 198.18.0.100:80 -r 198.18.0.12:80 -g -w 2 -x 50 -y 10",
        "-a -t 198.18.0.100:80 -r 198.18.0.11:8080 -m -w 0",
        "-A -f 7 -6 -s rr",
        "-a -f 7 -6 -r 2001:2::5 -i --tun-type gue --tun-port 6080 --tun-remcsum",
        "-A -u 198.18.0.53:53 -o",
    ] {
        ok(&mut c, l);
    }
    let m = c.model();
    m.services[0].counters.add_values(CounterValues {
        conns: 5,
        inpkts: 1 << 40,
        outpkts: 3,
        inbytes: u64::MAX,
        outbytes: 7,
    });
    m.services[0].dests[1]
        .load
        .active
        .store(4, Ordering::Relaxed);
    c
}

#[test]
fn json_listing_has_the_documented_shape() {
    let mut c = table();
    let v: Value = serde_json::from_str(&ok(&mut c, "-L -n --json")).expect("valid JSON");
    assert_eq!(v["schema"], 1);
    assert_eq!(v["version"], "1.2.1");
    assert_eq!(v["conn_tab_size"], 4096);
    let svcs = v["services"].as_array().unwrap();
    // -L order: address services by protocol/address, then fwmarks.
    assert_eq!(svcs.len(), 3);
    let tcp = &svcs[0];
    assert_eq!(
        *tcp,
        json!({
            "protocol": "TCP", "fwmark": null, "family": "inet",
            "address": "198.18.0.100", "port": 80, "scheduler": "sh",
            "sched_flags": ["sh-port"], "persistent": 60, "netmask": 24, "ops": false,
            "stats": {"conns": 5, "inpkts": 1u64 << 40, "outpkts": 3,
                      "inbytes": u64::MAX, "outbytes": 7},
            "rates": {"cps": 0, "inpps": 0, "outpps": 0, "inbps": 0, "outbps": 0},
            "dests": [
                {"address": "198.18.0.11", "port": 8080, "forward": "Masq", "weight": 0,
                 "u_threshold": 0, "l_threshold": 0, "active_conns": 0,
                 "inactive_conns": 0, "persistent_conns": 0, "tunnel": null,
                 "stats": {"conns": 0, "inpkts": 0, "outpkts": 0, "inbytes": 0, "outbytes": 0},
                 "rates": {"cps": 0, "inpps": 0, "outpps": 0, "inbps": 0, "outbps": 0},
                 "effective_weight": 0, "in_service": true, "check": null,
                 "health": {"state": "-", "since": null, "last": null, "latency_us": null,
                            "exec_weight": null, "transitions": 0}},
                {"address": "198.18.0.12", "port": 80, "forward": "Route", "weight": 2,
                 "u_threshold": 50, "l_threshold": 10, "active_conns": 4,
                 "inactive_conns": 0, "persistent_conns": 0, "tunnel": null,
                 "stats": {"conns": 0, "inpkts": 0, "outpkts": 0, "inbytes": 0, "outbytes": 0},
                 "rates": {"cps": 0, "inpps": 0, "outpps": 0, "inbps": 0, "outbps": 0},
                 "effective_weight": 2, "in_service": true, "check": null,
                 "health": {"state": "-", "since": null, "last": null, "latency_us": null,
                            "exec_weight": null, "transitions": 0}}
            ],
            "quorum": 1, "up_weight": 2, "sorry_server": null
        })
    );
    assert_eq!(svcs[1]["protocol"], "UDP");
    assert_eq!(svcs[1]["ops"], true);
    let fwm = &svcs[2];
    assert_eq!(
        (
            &fwm["protocol"],
            &fwm["fwmark"],
            &fwm["family"],
            &fwm["address"]
        ),
        (&Value::Null, &json!(7), &json!("inet6"), &Value::Null)
    );
    assert_eq!(
        fwm["dests"][0]["tunnel"],
        json!({"type": "gue", "port": 6080, "csum": "remcsum"})
    );
    assert_eq!(fwm["netmask"], 128);

    // --nosort: insertion order, servers newest first.
    let v: Value = serde_json::from_str(&ok(&mut c, "-L --json --nosort")).unwrap();
    let order: Vec<&Value> = v["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| &s["scheduler"])
        .collect();
    assert_eq!(order, [&json!("sh"), &json!("rr"), &json!("wlc")]);
    assert_eq!(v["services"][0]["dests"][0]["port"], 8080);

    // One service; a missing one exits 1 as the text listing does.
    let v: Value = serde_json::from_str(&ok(&mut c, "-L -f 7 -6 --json")).unwrap();
    assert_eq!(v["services"].as_array().unwrap().len(), 1);
    let r = run(&mut c, "-L -t 198.18.0.1:80 --json");
    assert_eq!((r.code, r.stderr.as_str()), (1, "No such service\n"));

    let v: Value = serde_json::from_str(&ok(&mut c, "-L --timeout --json")).unwrap();
    assert_eq!(
        v,
        json!({"schema": 1, "timeout": {"tcp": 900, "tcpfin": 120, "udp": 300}})
    );
    let v: Value = serde_json::from_str(&ok(&mut c, "-L --daemon --json")).unwrap();
    assert_eq!(v, json!({"schema": 1, "daemons": []}));
    // --json is a listing option only.
    for line in ["-S --json", "-A -t 198.18.0.9:80 --json", "-Z --json"] {
        assert_eq!(run(&mut c, line).code, 2, "{line}");
    }
    // An empty table.
    let v: Value = serde_json::from_str(&ok(&mut Control::new(), "-L --json")).unwrap();
    assert_eq!(v["services"], json!([]));
}

struct OneConn;

impl Runtime for OneConn {
    fn connections(&self) -> Vec<ConnEntry> {
        let a = |s: &str| s.parse().unwrap();
        vec![ConnEntry {
            proto: 6,
            template: false,
            state: "ESTABLISHED",
            expire_secs: 899,
            cip: a("198.18.0.10"),
            cport: 40000,
            vip: a("198.18.0.100"),
            vport: 80,
            dip: a("198.18.0.11"),
            dport: 80,
        }]
    }
}

#[test]
fn json_connections() {
    let mut c = Control::new();
    let r = c.execute(
        &Request {
            args: vec!["-Lnc".into(), "--json".into()],
            stdin: None,
        },
        &OneConn,
    );
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        v,
        json!({"schema": 1, "connections": [{
            "protocol": "TCP", "template": false, "state": "ESTABLISHED", "expire_secs": 899,
            "client": {"address": "198.18.0.10", "port": 40000},
            "virtual": {"address": "198.18.0.100", "port": 80},
            "destination": {"address": "198.18.0.11", "port": 80}}]})
    );
}

fn sample(page: &str, key: &str) -> Option<String> {
    page.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ').map(String::from))
}

#[test]
fn metrics_page_and_server() {
    let c = table();
    let one = |metric, label: Option<(&'static str, &str)>, value| DataplaneSample {
        metric,
        label: label.map(|(k, v)| (k, v.to_string())),
        help: "help",
        value,
    };
    // As the data plane lists them: a family's samples need not be
    // adjacent (the steering counters come per interface).
    let dp = DataplaneStats {
        workers: 2,
        counters: vec![
            one("rx_frames_total", None, 12),
            one("tx_frames_total", None, 10),
            one("connections_expired_total", None, 1),
            one("drops_total", Some(("reason", "no_neigh")), 3),
            one("drops_total", Some(("reason", "no_dest")), 0),
            one("drops_total", Some(("reason", "tx_ring_full")), 2),
            one("steer_pass_frames_total", Some(("iface", "eth0")), 4),
            one("steer_redirect_frames_total", Some(("iface", "eth0")), 12),
            one("steer_pass_frames_total", Some(("iface", "eth1")), 5),
            one("steer_redirect_frames_total", Some(("iface", "eth1")), 0),
        ],
    };
    let page = metrics::render(c.model(), &dp);
    let svc = "service=\"TCP 198.18.0.100:80\"";
    for (key, want) in [
        ("xvs_services".to_string(), "3"),
        (format!("xvs_service_connections_total{{{svc}}}"), "5"),
        (
            format!("xvs_service_packets_in_total{{{svc}}}"),
            "1099511627776",
        ),
        (
            format!("xvs_service_bytes_in_total{{{svc}}}"),
            "18446744073709551615",
        ),
        (
            format!("xvs_dest_weight{{{svc},server=\"198.18.0.11:8080\"}}"),
            "0",
        ),
        (
            format!("xvs_dest_active_connections{{{svc},server=\"198.18.0.12:80\"}}"),
            "4",
        ),
        (
            "xvs_dest_weight{service=\"FWM 7 IPv6\",server=\"[2001:2::5]:0\"}".to_string(),
            "1",
        ),
        (
            "xvs_service_connections_total{service=\"UDP 198.18.0.53:53\"}".to_string(),
            "0",
        ),
        ("xvs_dataplane_workers".to_string(), "2"),
        ("xvs_dataplane_tx_frames_total".to_string(), "10"),
        ("xvs_dataplane_connections_expired_total".to_string(), "1"),
        (
            "xvs_dataplane_drops_total{reason=\"no_neigh\"}".to_string(),
            "3",
        ),
        (
            "xvs_dataplane_drops_total{reason=\"no_dest\"}".to_string(),
            "0",
        ),
        ("xvs_dataplane_rx_frames_total".to_string(), "12"),
        (
            "xvs_dataplane_drops_total{reason=\"tx_ring_full\"}".to_string(),
            "2",
        ),
        (
            "xvs_dataplane_steer_pass_frames_total{iface=\"eth1\"}".to_string(),
            "5",
        ),
        (
            "xvs_dataplane_steer_redirect_frames_total{iface=\"eth0\"}".to_string(),
            "12",
        ),
    ] {
        assert_eq!(
            sample(&page, &key).as_deref(),
            Some(want),
            "{key} in\n{page}"
        );
    }
    // Every family is announced once, its samples right after it.
    let mut seen = std::collections::HashSet::new();
    let mut current = String::new();
    for l in page.lines() {
        if let Some(rest) = l.strip_prefix("# TYPE ") {
            let name = rest.split_whitespace().next().unwrap();
            assert!(seen.insert(name.to_string()), "{name} twice");
            current = name.to_string();
        } else if !l.starts_with('#') {
            let name = l.split(['{', ' ']).next().unwrap();
            assert_eq!(name, current, "{name} not under its TYPE line");
        }
    }

    let shared = Arc::new(Mutex::new(page.clone()));
    let server = MetricsServer::start("127.0.0.1:0".parse().unwrap(), shared.clone()).unwrap();
    let addr = server.local_addr();
    let get = |req: &str| {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(req.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    };
    let resp = get("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"), "{resp}");
    assert!(resp.ends_with(&page));
    assert!(resp.contains(&format!("Content-Length: {}\r\n", page.len())));
    *shared.lock().unwrap() = "xvs_services 0\n".into();
    assert!(get("GET /metrics?x=1 HTTP/1.0\r\n\r\n").ends_with("\r\n\r\nxvs_services 0\n"));
    let head = get("HEAD /metrics HTTP/1.1\r\n\r\n");
    assert!(
        head.starts_with("HTTP/1.1 200 OK") && head.ends_with("\r\n\r\n"),
        "{head}"
    );
    assert!(get("GET / HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
    assert!(get("DELETE /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405"));
    assert!(get("\r\n\r\n").starts_with("HTTP/1.1 405"));
    server.stop();
    assert!(
        TcpStream::connect(addr).is_err(),
        "still listening after stop"
    );
}

#[test]
fn a_stuck_metrics_client_does_not_hold_up_a_scrape() {
    let shared = Arc::new(Mutex::new("xvs_services 0\n".to_string()));
    let server = MetricsServer::start("127.0.0.1:0".parse().unwrap(), shared).unwrap();
    let addr = server.local_addr();
    // One client connects and never sends; another sends half a request
    // and stops.
    let _silent = TcpStream::connect(addr).unwrap();
    let mut half = TcpStream::connect(addr).unwrap();
    half.write_all(b"GET /metr").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(50));
    let t0 = std::time::Instant::now();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(1)))
        .unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out)
        .expect("a scrape answered within 1 s");
    assert!(out.ends_with("\r\n\r\nxvs_services 0\n"), "{out}");
    assert!(t0.elapsed() < std::time::Duration::from_secs(1));
    // More stuck clients than are served at once: the extra ones are
    // closed, and once the stuck ones time out a scrape is answered again.
    let stuck: Vec<TcpStream> = (0..metrics::MAX_CLIENTS + 4)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(1)))
        .unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out)
        .expect("answered after the stuck clients timed out");
    assert!(out.starts_with("HTTP/1.1 200 OK"), "{out}");
    drop(stuck);
    server.stop();
}
