//! `xvs-bench compare` end to end, briefly: the reflector, xvs DR over
//! IPv4 and IPv6 and nftables DNAT, and the reflector and xvs DR on a
//! two-queue link, for
//! about a second each, in two rounds. Not a benchmark (no timing is
//! asserted): it checks that the tool builds its topologies, runs every
//! forwarder in every round, summarises the rounds, measures the cost
//! per frame, and writes a sane JSON report and a chart.

use std::process::Command;

#[test]
fn compare_writes_json_and_svg_with_sane_counts() {
    if !xvs_tests::is_root() {
        eprintln!("skipped: needs root (network namespaces, XDP)");
        return;
    }
    // Fails early with the build command when xvsd is missing.
    xvs_tests::bin("xvsd");
    let out = std::env::temp_dir().join(format!("xvs-bench-smoke-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let run = Command::new(env!("CARGO_BIN_EXE_xvs-bench"))
        .args(["compare", "--modes", "reflect,dr,dr6,nft,reflect2q,dr2q"])
        .args(["--rounds", "2", "--secs", "1"])
        .args(["--cost-rate", "20000", "--cost-secs", "0.5"])
        .args(["--lat-rate", "20000", "--lat-secs", "0.5", "--out"])
        .arg(&out)
        .env("XVS_BIN_DIR", xvs_tests::bin_dir())
        .output()
        .expect("run xvs-bench compare");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "compare failed: {stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let json = std::fs::read_to_string(out.join("compare.json")).expect("compare.json");
    let svg = std::fs::read_to_string(out.join("compare.svg")).expect("compare.svg");
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    let report: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
    let rows = report["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 6, "{json}");
    assert_eq!(report["rounds"], 2, "{json}");
    assert_eq!(report["runs"].as_array().map(Vec::len), Some(12), "{json}");
    for row in rows {
        let mode = row["mode"].as_str().unwrap_or("?");
        assert_eq!(row["status"], "ok", "{mode}: {}", row["status"]);
        let t = &row["throughput"];
        let sent = t["sent"].as_u64().unwrap_or(0);
        let received = t["rx"]["received"].as_u64().unwrap_or(0);
        assert!(
            sent > 0 && received > 0,
            "{mode}: sent {sent}, received {received}"
        );
        assert!(received <= sent, "{mode}: received {received} of {sent}");
        let loss = row["loss_pct"].as_f64().unwrap_or(-1.0);
        assert!((0.0..=100.0).contains(&loss), "{mode}: loss {loss}");
        assert!(row["mpps"].as_f64().unwrap_or(0.0) > 0.0, "{mode}");
        assert!(
            svg.contains(row_label(mode)),
            "{mode} missing from the chart"
        );
    }
    // The DR rows' frames were spread over the three real servers.
    for m in ["dr", "dr2q", "dr6"] {
        let dr = rows.iter().find(|r| r["mode"] == m).expect("dr row");
        assert_eq!(
            dr["dests"].as_array().map(Vec::len),
            Some(3),
            "{m}: {}",
            dr["dests"]
        );
    }
    // IPv6 DR sent IPv6 frames (the smallest UDP one is 76 bytes); they
    // came back still addressed to the IPv6 VIP, at the real servers' MACs.
    let dr6 = rows.iter().find(|r| r["mode"] == "dr6").expect("dr6 row");
    assert_eq!(dr6["throughput"]["size"], 76, "{}", dr6["throughput"]);
    let dests = dr6["dests"].as_array().cloned().unwrap_or_default();
    assert!(
        dests.iter().all(|d| d[0]
            .as_str()
            .is_some_and(|s| s.starts_with("2001:2::100 02:58:56:00:01:0"))),
        "dr6: {dests:?}"
    );
    // Both queues carry traffic both ways: the forwarder answered on
    // each queue (a veth delivers what is sent on queue q to the peer's
    // queue q, and each worker or thread sends on its own).
    for m in ["reflect2q", "dr2q"] {
        let row = rows.iter().find(|r| r["mode"] == m).expect("2q row");
        let q = &row["throughput"]["rx_queues"];
        let per_queue: Vec<u64> = q
            .as_array()
            .map(|v| v.iter().filter_map(serde_json::Value::as_u64).collect())
            .unwrap_or_default();
        assert_eq!(per_queue.len(), 2, "{m}: {q}");
        assert!(per_queue.iter().all(|&n| n > 0), "{m}: {q}");
    }
    // Every forwarder's rounds are summarised; the ratios are per round.
    let summary = report["summary"].as_array().expect("summary");
    for s in summary {
        let mode = s["mode"].as_str().unwrap_or("?");
        assert_eq!(s["mpps"]["n"], 2, "{mode}: {s}");
        let cost = s["cost_ns"]["median"].as_f64().unwrap_or(-1.0);
        assert!(cost >= 0.0, "{mode}: no cost per frame: {s}");
        if mode == "dr" || mode == "dr2q" {
            let v = s["vs_reflector"]["median"].as_f64().unwrap_or(0.0);
            assert!(v > 0.0, "{mode}: {s}");
        }
        // IPv6 over IPv4 only for the IPv6 row.
        let v6 = s["vs_ipv4"]["median"].as_f64();
        if mode == "dr6" {
            assert!(v6.is_some_and(|v| v > 0.0), "{mode}: {s}");
        } else {
            assert!(v6.is_none(), "{mode}: {s}");
        }
    }
    let _ = std::fs::remove_dir_all(&out);
}

fn row_label(mode: &str) -> &'static str {
    match mode {
        "reflect" => "reflector",
        "dr" => "xvs DR",
        "reflect2q" => "reflector 2q",
        "dr2q" => "xvs DR 2q",
        "dr6" => "xvs DR IPv6",
        _ => "nft DNAT",
    }
}
