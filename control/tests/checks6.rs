//! Health checks of IPv6 services and IPv6 real servers: the `[addr]:port`
//! forms in the grammar, listings, JSON, metrics and the save format.

mod common;

use common::{ok, report, status};
use serde_json::Value;
use xvs_config::check::{CheckKind, Health, ProbeKey};
use xvs_control::metrics::{render, DataplaneStats};
use xvs_control::{Control, NoRuntime, Request};

fn table() -> Control {
    let mut c = Control::new();
    for l in [
        "-A -t [2001:2::10]:80 -s rr --check tcp --check-interval 1 --check-fall 2 \
         --sorry-server [2001:2::9]:8080",
        "-a -t [2001:2::10]:80 -r [2001:2::1:1]:80 -g -w 2 --check vip",
        "-a -t [2001:2::10]:80 -r [2001:2::1:2]:80 -g -w 1 --check ping",
        "-a -t [2001:2::10]:80 -r [2001:2::1:3]:8080 -m -w 1 --check http --check-path /up",
        "-A -u [2001:2::11]:53 -s rr --check udp --check-send x",
        "-a -u [2001:2::11]:53 -r [2001:2::1:1]:53 -m -w 1",
    ] {
        ok(&mut c, l);
    }
    c
}

#[test]
fn ipv6_probes_aim_at_the_servers_and_the_vip() {
    let c = table();
    let probes = c.model().probes();
    let find = |kind: CheckKind, addr: &str| {
        probes
            .iter()
            .find(|(k, _)| k.spec.kind == kind && k.addr.to_string() == addr)
            .map(|(k, _)| k.clone())
            .unwrap_or_else(|| panic!("no {kind} probe of {addr}: {probes:?}"))
    };
    let vip = find(CheckKind::Vip, "2001:2::1:1");
    assert_eq!(vip.vip, Some(("2001:2::10".parse().unwrap(), 80)));
    assert_eq!(
        find(CheckKind::Ping, "2001:2::1:2").port,
        0,
        "a ping has no port"
    );
    assert_eq!(find(CheckKind::Http, "2001:2::1:3").port, 8080);
    assert_eq!(find(CheckKind::Udp, "2001:2::1:1").port, 53);
    // Probes aim only at configured servers (and the VIP).
    for (k, _) in &probes {
        assert!(k.addr.to_string().starts_with("2001:2::1:"), "{k:?}");
    }
    assert_eq!(probes.len(), 4);
}

#[test]
fn ipv6_check_listing_json_and_metrics() {
    let mut c = table();
    assert!(report(
        &mut c,
        "2001:2::1:1",
        status(Health::Up, 5, "ok", 1500)
    ));
    let out = ok(&mut c, "-L -n --check");
    assert!(
        out.contains("TCP  [2001:2::10]:80 up 2 quorum 1 sorry [2001:2::9]:8080\n"),
        "{out}"
    );
    assert!(
        out.contains("  -> [2001:2::1:1]:80             vip    UP       2      2 "),
        "{out}"
    );
    assert!(
        out.contains("  -> [2001:2::1:2]:80             ping   DOWN     0      1 "),
        "{out}"
    );
    let plain = ok(&mut c, "-L -n");
    assert!(
        plain.contains("  -> [2001:2::1:2]:80             Route   0 "),
        "{plain}"
    );
    let v: Value = serde_json::from_str(&ok(&mut c, "-L -n --json")).unwrap();
    let s = &v["services"][0];
    assert_eq!(s["sorry_server"]["address"], "2001:2::9");
    assert_eq!(s["sorry_server"]["port"], 8080);
    let d = &s["dests"][0];
    assert_eq!(d["address"], "2001:2::1:1");
    assert_eq!(d["check"]["type"], "vip");
    assert_eq!(d["health"]["state"], "UP");
    let page = render(c.model(), &DataplaneStats::default());
    let svc = "service=\"TCP [2001:2::10]:80\"";
    for want in [
        format!("xvs_real_up{{{svc},server=\"[2001:2::1:1]:80\"}} 1"),
        format!("xvs_real_up{{{svc},server=\"[2001:2::1:2]:80\"}} 0"),
        "xvs_check_transitions_total{server=\"[2001:2::1:1]:80\",check=\"vip\"} 1".to_string(),
        // A ping probes the address alone.
        "xvs_check_transitions_total{server=\"2001:2::1:2\",check=\"ping\"} 0".to_string(),
    ] {
        assert!(page.lines().any(|l| l == want), "missing {want}\n{page}");
    }
}

#[test]
fn ipv6_checks_survive_save_and_restore() {
    let mut c = table();
    let saved = ok(&mut c, "-S -n");
    assert!(saved.contains("--sorry-server [2001:2::9]:8080"), "{saved}");
    assert!(
        saved.contains("-r [2001:2::1:1]:80 -g -w 2 --check vip"),
        "{saved}"
    );
    let mut d = Control::new();
    let r = d.execute(
        &Request {
            args: vec!["-R".into()],
            stdin: Some(saved.clone()),
        },
        &NoRuntime,
    );
    assert_eq!((r.code, r.stderr.as_str()), (0, ""));
    assert_eq!(ok(&mut d, "-S -n"), saved);
    assert_eq!(d.model().probes().len(), 4);
}

/// A reload (SIGHUP's path) that changes one thing keeps every other
/// check's state: the server found up stays up, with its weight in
/// `-Ln`, and its probe is the same key the checker keeps running.
#[test]
fn reload_keeps_the_state_of_unchanged_checks() {
    let mut c = table();
    report(&mut c, "2001:2::1:1", status(Health::Up, 5, "ok", 1500));
    let before: Vec<ProbeKey> = c.model().probes().into_iter().map(|(k, _)| k).collect();
    let saved = ok(&mut c, "-S -n");
    let changed = saved.replace(
        "-r [2001:2::1:3]:8080 -m -w 1",
        "-r [2001:2::1:3]:8080 -m -w 4",
    );
    assert_ne!(changed, saved);
    assert!(c.reload(&changed).unwrap() >= 1);
    let after: Vec<ProbeKey> = c.model().probes().into_iter().map(|(k, _)| k).collect();
    assert_eq!(before, after, "the probes stay the same");
    let check = ok(&mut c, "-L -n --check");
    assert!(
        check.contains("  -> [2001:2::1:1]:80             vip    UP       2      2 "),
        "{check}"
    );
    let plain = ok(&mut c, "-L -n");
    assert!(
        plain.contains("  -> [2001:2::1:1]:80             Route   2 "),
        "{plain}"
    );
    // So does an -e that changes only the weight.
    ok(&mut c, "-e -t [2001:2::10]:80 -r [2001:2::1:1]:80 -g -w 5");
    let check = ok(&mut c, "-L -n --check");
    assert!(
        check.contains("  -> [2001:2::1:1]:80             vip    UP       5      5 "),
        "{check}"
    );
    let changed = changed.replace("-r [2001:2::1:1]:80 -g -w 2", "-r [2001:2::1:1]:80 -g -w 5");
    // A changed check is a new probe, which starts down.
    let changed = changed.replace("--check vip", "--check vip --check-port 81");
    c.reload(&changed).unwrap();
    let check = ok(&mut c, "-L -n --check");
    assert!(
        check.contains("  -> [2001:2::1:1]:80             vip    DOWN     0      5 "),
        "{check}"
    );
}

/// The one-line examples in `scripts/examples/` (IPv4 and IPv6) are
/// accepted as written, and set up the checks they say.
#[test]
fn the_builtin_examples_are_accepted() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/examples");
    for (file, vip) in [
        ("health-check-builtin.sh", "198.18.0.100"),
        ("health-check-builtin6.sh", "2001:2::100"),
    ] {
        let text = std::fs::read_to_string(format!("{dir}/{file}")).unwrap();
        assert!(text.contains(&format!("VIP={vip}\n")), "{file}");
        let mut c = Control::new();
        let mut n = 0;
        for line in text.lines().filter_map(|l| l.strip_prefix("xvsadm ")) {
            ok(&mut c, &line.replace("$VIP", vip));
            n += 1;
        }
        assert!(n >= 3, "{file}: {n} xvsadm lines");
        let probes = c.model().probes();
        assert!(
            probes.iter().any(|(k, _)| k.spec.kind == CheckKind::Http),
            "{file}: {probes:?}"
        );
        // Nothing is up yet: the sorry server is in use.
        let check = ok(&mut c, "-L -n --check");
        assert!(
            check.contains(" sorry ") && check.contains(" in-use"),
            "{check}"
        );
    }
}
