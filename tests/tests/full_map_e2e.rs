//! A steering map that is full makes the command that filled it fail,
//! with ipvsadm's refusal status and a clear message, and changes
//! nothing: the configuration, the maps and the workers' snapshot stay as
//! they were, and traffic to the services already there keeps flowing.

use std::process::Output;

use xvs_tests::daemon::Xvsd;
use xvs_tests::netns::{DrLan, VIP};
use xvs_tests::rig;

const STREAM: &str = env!("CARGO_BIN_EXE_xvs-stream");

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A client run of `ms` milliseconds against the VIP; its output.
fn traffic(lan: &DrLan, conns: &str, ms: &str) -> Output {
    lan.client.exec(&[
        STREAM,
        "client",
        "--connect",
        &format!("{VIP}:80"),
        "--conns",
        conns,
        "--duration-ms",
        ms,
        "--timeout-ms",
        "3000",
    ])
}

/// Rules for 33 NAT services of 1000 real servers each on distinct
/// addresses: every NAT server takes two nat_map entries (its replies and
/// its ICMP errors), 66,000 in all, more than the map's 65,536.
fn overflowing_rules() -> String {
    let mut rules = String::new();
    for s in 0..33u32 {
        let vip = format!("198.18.200.{}:80", s + 1);
        rules.push_str(&format!("-A -t {vip} -s rr\n"));
        for d in 0..1000u32 {
            let n = 0xC613_0000 + s * 1000 + d;
            let rip = std::net::Ipv4Addr::from(n);
            rules.push_str(&format!("-a -t {vip} -r {rip}:8080 -m\n"));
        }
    }
    rules
}

#[test]
fn a_full_steering_map_refuses_the_command_and_changes_nothing() {
    xvs_tests::bin("xvsd");
    let lan = DrLan::new();
    let _servers = rig::stream_on(&lan.rs, 80, 120);
    let xvsd = Xvsd::start_with(
        Some(&lan.director.ns),
        &["--iface".into(), lan.director.iface.clone()],
    );
    let vip = format!("{VIP}:80");
    xvsd.add_dr_service(&vip, "rr", &lan.rs);
    let warm = traffic(&lan, "3", "300");
    assert!(
        warm.status.success(),
        "warm-up: {}{}",
        text(&warm.stdout),
        text(&warm.stderr)
    );
    let before = xvsd.adm_ok(&["-Ln"]);
    let saved = xvsd.adm_ok(&["-S", "-n"]);

    let out = xvsd.adm_stdin(&["-R"], &overflowing_rules());
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(255), "stderr: {err}");
    assert!(
        err.starts_with(
            "Memory allocation problem: the steering map nat_map is full (65536 entries)"
        ) && err.ends_with("; nothing changed\n"),
        "{err}"
    );
    assert_eq!(xvsd.adm_ok(&["-Ln"]), before);
    assert_eq!(xvsd.adm_ok(&["-S", "-n"]), saved);

    // The service that was there still carries traffic.
    let after = traffic(&lan, "3", "1000");
    assert!(
        after.status.success(),
        "after the refused restore: {}{}",
        text(&after.stdout),
        text(&after.stderr)
    );
    // The maps were left as they were: a change that fits is taken.
    xvsd.adm_ok(&["-A", "-t", "198.18.200.1:80", "-s", "rr"]);
    xvsd.adm_ok(&["-a", "-t", "198.18.200.1:80", "-r", "198.19.0.1:8080", "-m"]);
    let exit = xvsd.stop();
    assert!(exit.status.success(), "xvsd: {exit:?}");
}
