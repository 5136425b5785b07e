//! Health checks as the listings, JSON, metrics and rules show them, with
//! the checker's results fed in as the daemon feeds them.

mod common;

use common::{ok, report, run, status};
use serde_json::Value;
use xvs_config::check::Health;
use xvs_control::metrics::{render, DataplaneStats};
use xvs_control::Control;

fn table() -> Control {
    let mut c = Control::new();
    for l in [
        "-A -t 198.18.0.10:80 -s rr --check http --check-path /health --check-interval 1 \
         --quorum 2 --sorry-server 198.18.2.1:80",
        "-a -t 198.18.0.10:80 -r 198.18.1.1:80 -m -w 3",
        "-a -t 198.18.0.10:80 -r 198.18.1.2:80 -m -w 1 --check-on-fail remove",
        "-a -t 198.18.0.10:80 -r 198.18.1.3:80 -m -w 1 --check none",
    ] {
        ok(&mut c, l);
    }
    c
}

#[test]
fn listings_show_effective_weights_and_the_sorry_server_in_use() {
    let mut c = table();
    // Nothing reported yet: both checked servers are down; 1.2 is
    // removed, 1.1 inhibited; up weight 1 (1.3) < quorum 2: the sorry
    // server stands in, every real server at 0.
    let out = ok(&mut c, "-L -n");
    assert_eq!(
        out,
        "IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  198.18.0.10:80 rr
  -> 198.18.1.1:80                Masq    0      0          0         
  -> 198.18.1.3:80                Masq    0      0          0         
  -> 198.18.2.1:80                Masq    1      0          0         
"
    );
    // 1.1 up: quorum met, the sorry server leaves, weights come back.
    assert!(report(
        &mut c,
        "198.18.1.1",
        status(Health::Up, 100, "ok", 1200)
    ));
    let out = ok(&mut c, "-L -n -t 198.18.0.10:80");
    assert!(
        out.contains("  -> 198.18.1.1:80                Masq    3      0"),
        "{out}"
    );
    assert!(
        out.contains("  -> 198.18.1.3:80                Masq    1      0"),
        "{out}"
    );
    assert!(
        !out.contains("198.18.1.2") && !out.contains("198.18.2.1"),
        "{out}"
    );
    // -S keeps what is configured, not what is scheduled.
    let saved = ok(&mut c, "-S -n");
    assert_eq!(
        saved,
        "-A -t 198.18.0.10:80 -s rr --check http --check-path /health --check-interval 1 --quorum 2 --sorry-server 198.18.2.1:80
-a -t 198.18.0.10:80 -r 198.18.1.1:80 -m -w 3
-a -t 198.18.0.10:80 -r 198.18.1.2:80 -m -w 1 --check-on-fail remove
-a -t 198.18.0.10:80 -r 198.18.1.3:80 -m -w 1 --check none
"
    );
}

#[test]
fn the_check_listing_has_one_fixed_width_line_per_server() {
    let mut c = table();
    report(
        &mut c,
        "198.18.1.1",
        status(Health::Falling, 1, "HTTP 500", 2345),
    );
    let out = ok(&mut c, "-L -n --check");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "IP Virtual Server version 1.2.1 (size=4096)");
    assert_eq!(lines[1], "Prot LocalAddress:Port Quorum");
    assert_eq!(
        lines[2],
        "  -> RemoteAddress:Port           Check  State    Weight Config For       Latency    Last"
    );
    assert_eq!(
        lines[3],
        "TCP  198.18.0.10:80 up 4 quorum 2 sorry 198.18.2.1:80"
    );
    assert!(
        lines[4].starts_with("  -> 198.18.1.1:80                http   FALLING  3      3      "),
        "{}",
        lines[4]
    );
    assert!(lines[4].ends_with(" 2.345ms    HTTP 500"), "{}", lines[4]);
    assert_eq!(
        lines[5],
        "  -> 198.18.1.2:80                http   DOWN     -      1      -         -          no result yet"
    );
    assert_eq!(
        lines[6],
        "  -> 198.18.1.3:80                -      -        1      1      -         -          -"
    );
    assert_eq!(lines.len(), 7);
    // Every server line has its columns at the same offsets.
    for l in &lines[4..] {
        assert_eq!(&l[33..34], " ", "{l}");
        assert_eq!(&l[40..41], " ", "{l}");
    }
    // One service, no header; a missing one fails as -L does.
    let one = ok(&mut c, "-L -n --check -t 198.18.0.10:80");
    assert!(one.starts_with("Prot LocalAddress:Port Quorum\n"), "{one}");
    assert_eq!(run(&mut c, "-L -n --check -t 198.18.0.11:80").code, 1);
    // Down: the sorry server is in use.
    report(
        &mut c,
        "198.18.1.1",
        status(Health::Down, 1, "HTTP 500", 2345),
    );
    let out = ok(&mut c, "-L -n --check");
    assert!(
        out.contains("TCP  198.18.0.10:80 up 1 quorum 2 sorry 198.18.2.1:80 in-use\n"),
        "{out}"
    );
}

#[test]
fn json_carries_checks_states_and_both_weights() {
    let mut c = table();
    report(&mut c, "198.18.1.1", status(Health::Up, 1234, "ok", 800));
    let v: Value = serde_json::from_str(&ok(&mut c, "-L -n --json")).unwrap();
    let s = &v["services"][0];
    assert_eq!(
        (s["quorum"].clone(), s["up_weight"].clone()),
        (2.into(), 4.into())
    );
    assert_eq!(s["sorry_server"]["in_use"], false);
    let d = &s["dests"][0];
    assert_eq!(d["address"], "198.18.1.1");
    assert_eq!(
        (d["weight"].clone(), d["effective_weight"].clone()),
        (3.into(), 3.into())
    );
    assert_eq!(d["check"]["type"], "http");
    assert_eq!(d["check"]["path"], "/health");
    assert_eq!(d["check"]["interval"], 1);
    assert_eq!(d["check"]["port"], 80);
    assert_eq!(d["health"]["state"], "UP");
    assert_eq!(d["health"]["since"], 1234);
    assert_eq!(d["health"]["latency_us"], 800);
    let removed = &s["dests"][1];
    assert_eq!(removed["in_service"], false);
    assert_eq!(removed["effective_weight"], 0);
    assert_eq!(removed["health"]["state"], "DOWN");
    assert_eq!(s["dests"][2]["check"], Value::Null);
}

#[test]
fn metrics_carry_up_latency_and_transitions() {
    let mut c = table();
    report(&mut c, "198.18.1.1", status(Health::Up, 1, "ok", 800));
    let page = render(c.model(), &DataplaneStats::default());
    let svc = "service=\"TCP 198.18.0.10:80\"";
    for want in [
        format!("xvs_real_up{{{svc},server=\"198.18.1.1:80\"}} 1"),
        format!("xvs_real_up{{{svc},server=\"198.18.1.2:80\"}} 0"),
        format!("xvs_real_up{{{svc},server=\"198.18.1.3:80\"}} 1"),
        format!("xvs_dest_configured_weight{{{svc},server=\"198.18.1.2:80\"}} 1"),
        format!("xvs_dest_weight{{{svc},server=\"198.18.1.2:80\"}} 0"),
        "# TYPE xvs_check_latency_seconds histogram".to_string(),
        "xvs_check_latency_seconds_bucket{server=\"198.18.1.1:80\",check=\"http\",le=\"0.0005\"} 0"
            .to_string(),
        "xvs_check_latency_seconds_bucket{server=\"198.18.1.1:80\",check=\"http\",le=\"0.001\"} 1"
            .to_string(),
        "xvs_check_latency_seconds_bucket{server=\"198.18.1.1:80\",check=\"http\",le=\"+Inf\"} 1"
            .to_string(),
        "xvs_check_latency_seconds_count{server=\"198.18.1.1:80\",check=\"http\"} 1".to_string(),
        "xvs_check_transitions_total{server=\"198.18.1.1:80\",check=\"http\"} 1".to_string(),
        "xvs_check_transitions_total{server=\"198.18.1.2:80\",check=\"http\"} 0".to_string(),
    ] {
        assert!(page.lines().any(|l| l == want), "missing {want}\n{page}");
    }
}
