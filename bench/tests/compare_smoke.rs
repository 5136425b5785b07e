//! `xvs-bench compare` end to end, briefly: the reflector, xvs DR and
//! nftables DNAT for about a second each. Not a benchmark (no timing is
//! asserted): it checks that the tool builds its topology, runs every
//! forwarder, and writes a sane JSON report and a chart.

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
        .args(["compare", "--modes", "reflect,dr,nft", "--secs", "1"])
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
    assert_eq!(rows.len(), 3, "{json}");
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
    let dr = rows.iter().find(|r| r["mode"] == "dr").expect("dr row");
    assert_eq!(
        dr["dests"].as_array().map(Vec::len),
        Some(3),
        "{}",
        dr["dests"]
    );
    let _ = std::fs::remove_dir_all(&out);
}

fn row_label(mode: &str) -> &'static str {
    match mode {
        "reflect" => "reflector",
        "dr" => "xvs DR",
        _ => "nft DNAT",
    }
}
