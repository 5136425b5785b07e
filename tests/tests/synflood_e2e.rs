//! A SYN flood against a small connection table (issue 12): spoofed SYNs
//! from a namespace of their own, over a hundred times `--conn-max`, while a client
//! keeps long-lived streams open and opens new connections. The streams
//! must lose no byte, and at least 95% of the new connections complete:
//! half-open entries are evicted for new ones (never established ones),
//! and a flow that finds nothing to evict is forwarded without an entry.
//!
//! The real servers answer the spoofed SYNs; a blackhole route for
//! 198.18.0.0/15 (beyond the LAN's /24) sends their SYN-ACKs nowhere.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use xvs_tests::daemon::{TempFile, Xvsd};
use xvs_tests::netns::{DrLan, VIP};
use xvs_tests::rig;

const STREAM: &str = env!("CARGO_BIN_EXE_xvs-stream");
const NODE: &str = env!("CARGO_BIN_EXE_xvs-node");

/// The daemon's table (one worker: one partition of this size).
const CONN_MAX: u64 = 4096;
/// The flood: `FLOOD_PPS` SYNs a second for `FLOOD_SECS` (at most
/// `FLOOD_MAX`), 15 times `--conn-max` a second. Paced rather than at the
/// packet socket's full rate (0.1-0.2 Mpps here): at that rate the flooder,
/// xvsd, the servers and the clients fight over two cores and the
/// director's RX ring overflows, losing real clients' packets before xvsd
/// ever sees them, which tests the machine rather than the table.
const FLOOD_PPS: u64 = 60_000;
const FLOOD_SECS: u64 = 8;
const FLOOD_MAX: u64 = FLOOD_PPS * FLOOD_SECS;
/// Long-lived streams, a line every 50 ms each, for this long.
const STREAMS: u64 = 10;
const STREAM_MS: u64 = 14_000;
/// New connections opened during the flood.
const NEW_CONNS: u64 = 200;

/// The number after `name ` in `text` (`-L --dataplane`, the flood's
/// report).
fn number<T: std::str::FromStr>(text: &str, name: &str) -> T {
    let pat = format!(" {name} ");
    let padded = format!(" {}", text.replace('\n', " \n "));
    padded
        .split_once(&pat)
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
}

/// A counter after `name ` in `text`.
fn value(text: &str, name: &str) -> u64 {
    number(text, name)
}

/// `xvsadm -L --dataplane`.
fn dataplane(xvsd: &Xvsd) -> String {
    xvsd.adm_ok(&["-L", "--dataplane"])
}

/// The value of `name=V` in `text`.
fn kv(text: &str, name: &str) -> u64 {
    text.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{name}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name}= in:\n{text}"))
}

#[test]
fn a_syn_flood_locks_out_no_real_client_and_disturbs_no_stream() {
    let mut lan = DrLan::new();
    let flooder = lan.add_host("fl", Ipv4Addr::new(198, 18, 0, 20));
    for h in &lan.rs {
        // SYN-ACKs to the spoofed sources go nowhere.
        h.exec_ok(&["ip", "route", "add", "blackhole", "198.18.0.0/15"]);
    }
    let _servers: Vec<_> = lan
        .rs
        .iter()
        .flat_map(|h| {
            [
                rig::serve(h, 80, &["--lifetime-s", "90"]),
                h.spawn_ready(&[STREAM, "serve", "--port", "9000", "--lifetime-s", "90"]),
            ]
        })
        .collect();
    let web = format!("{VIP}:80");
    let echo = format!("{VIP}:9000");
    let rules: String = [80, 9000]
        .map(|port| rig::rules(&format!("{VIP}:{port}"), "wlc", &lan.rs, port, "-g"))
        .concat();
    let rules = TempFile::new("rules", &rules);
    let args = rig::xvsd_args(&[&lan.director.iface], Some(&rules.0), Some(CONN_MAX));
    let xvsd = Xvsd::start_with(Some(&lan.director.ns), &args);
    let cl = lan.client.ns.clone();
    // Warm-up: every next hop resolved before the clock starts.
    let warm = lan
        .client
        .exec(&[NODE, "client", "--connect", &web, "--count", "6"]);
    assert!(warm.status.success(), "warm-up: {warm:?}");

    let streams = rig::start_streams(&cl, &echo, STREAMS, STREAM_MS, 8, 8000);

    let flood = rig::SynFlood {
        from: &flooder,
        dst_mac: &lan.director.mac,
        vip: VIP,
        port: 80,
        count: FLOOD_MAX,
        secs: FLOOD_SECS,
        rate: FLOOD_PPS,
    }
    .spawn();
    let flood_start = Instant::now();
    // Let the flood fill the table, then open connections through it.
    std::thread::sleep(Duration::from_millis(1000));
    let during = dataplane(&xvsd);
    let clients = lan.client.exec(&[
        NODE,
        "client",
        "--connect",
        &web,
        "--count",
        &NEW_CONNS.to_string(),
        "--timeout-ms",
        "3000",
        "--deadline-ms",
        "20000",
        "--max-failures",
        &NEW_CONNS.to_string(),
    ]);
    let clients = String::from_utf8_lossy(&clients.stdout).into_owned();
    let clients_done = flood_start.elapsed().as_secs_f64();
    let (flooded, flood_ok) = flood.finish(Duration::from_secs(FLOOD_SECS + 10));
    let (streamed, streams_ok) = streams.finish(Duration::from_millis(STREAM_MS + 20_000));
    let after = dataplane(&xvsd);

    let ok = kv(&clients, "ok");
    let sent = value(&flooded, "sent");
    println!("flood: {}", flooded.trim());
    println!("table while flooded (1 s in):\n{during}");
    println!(
        "new connections (1 s to {clients_done:.2} s into the flood): {}",
        clients.trim().replace('\n', "; ")
    );
    let summary = streamed.lines().find(|l| l.starts_with("conns="));
    println!("streams: {}", summary.unwrap_or("(no summary)"));
    println!("data plane after the flood:\n{after}");
    println!(
        "synflood summary: flood_sent={sent} conn_max={CONN_MAX} conns_evicted={} stateless={} \
         conns_created={} conn_table_full={} no_conn={} new_conns_ok={ok}/{NEW_CONNS}",
        value(&after, "conns_evicted"),
        value(&after, "stateless"),
        value(&after, "conns_created"),
        value(&after, "conn_table_full"),
        value(&after, "no_conn"),
    );

    assert!(flood_ok, "the flood did not run:\n{flooded}");
    assert!(
        sent >= 10 * CONN_MAX,
        "the flood sent only {sent} SYNs (conn-max {CONN_MAX})"
    );
    // The new connections were all opened while the flood went on.
    let flood_secs: f64 = number(&flooded, "secs");
    assert!(
        clients_done <= flood_secs,
        "the flood ({flood_secs} s) ended before the clients ({clients_done:.2} s)"
    );
    // The flood filled the table and turned it over: entries were evicted.
    assert!(
        value(&after, "conns_evicted") >= CONN_MAX,
        "the table never filled:\n{after}"
    );
    assert!(streams_ok, "a stream failed:\n{streamed}");
    assert!(
        streamed.contains(&format!("conns={STREAMS} ")) && streamed.contains("failed=0"),
        "{streamed}"
    );
    // Every stream kept exchanging all along (a line every 50 ms).
    for l in streamed.lines().filter(|l| l.starts_with("conn ")) {
        assert!(
            kv(l, "exchanges") >= STREAM_MS / 50 / 2,
            "a stream stalled: {l}"
        );
    }
    assert!(
        ok * 100 >= NEW_CONNS * 95,
        "only {ok} of {NEW_CONNS} new connections completed: {clients}"
    );
    let exit = xvsd.stop();
    assert!(exit.status.success(), "{}", exit.stderr);
}
