//! `xvs-bench report`: the whole set (micro, two workers, compare) in
//! one run, printed as the Markdown of README's Performance section with
//! the date and the machine, so that the published figures are always
//! the output of one command (`scripts/bench.sh`) and never copied by
//! hand from several runs.

use crate::compare::{self, CompareArgs, Figure, Mode};
use crate::micro::{self, MicroArgs, MicroResult, Spread};
use crate::workers::{self, Scaling};
use clap::Parser;
use std::fmt::Write;
use std::path::PathBuf;

/// Arguments of `xvs-bench report`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReportArgs {
    /// Small counts everywhere (a minute or two): to check that every
    /// part runs, not for figures.
    #[arg(long)]
    pub quick: bool,
    /// Repetitions of every micro case.
    #[arg(long, default_value_t = 5)]
    pub reps: usize,
    /// Table sizes of micro.
    #[arg(long, value_delimiter = ',', default_value = "10000,1000000,10000000")]
    pub flows: Vec<usize>,
    /// Rounds of compare.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Seconds of each compare throughput run.
    #[arg(long, default_value_t = 5.0)]
    pub secs: f64,
    /// Offered rate of compare's cost run, frames/s.
    #[arg(long, default_value_t = 200_000.0)]
    pub cost_rate: f64,
    /// Skip compare (it needs root).
    #[arg(long)]
    pub no_compare: bool,
    /// Where to write bench.md (and compare's outputs).
    #[arg(long, default_value = "target/xvs-bench")]
    pub out: PathBuf,
}

#[derive(Parser)]
struct Micro {
    #[command(flatten)]
    a: MicroArgs,
}

#[derive(Parser)]
struct Compare {
    #[command(flatten)]
    a: CompareArgs,
}

/// The date and time now, UTC (from `date`, which every host has).
fn now_utc() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown date".into())
}

fn fig(v: &[f64], unit: &str, digits: usize) -> String {
    let s = Spread::of(v);
    format!("{:.*}{unit} ±{:.0}%", digits, s.median, s.pct() / 2.0)
}

fn mark(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "**NOT met**"
    }
}

/// micro's result as Markdown.
pub fn micro_markdown(r: &MicroResult) -> String {
    let mut s = String::new();
    let sizes: Vec<String> = r.flows.iter().map(|&f| micro::human(f)).collect();
    let _ = writeln!(
        s,
        "Pipeline in memory, one core (`xvs-bench micro`): median of {} repetitions run interleaved, ± half the spread (max − min) / median; goals judged on the median; CPU: the thread's own time per packet (without the time it was preempted).\n",
        r.reps
    );
    let _ = writeln!(s, "| case | {} |", sizes.join(" conns | ") + " conns");
    let _ = writeln!(s, "|---|{}", "---|".repeat(sizes.len()));
    for &(name, _) in micro::METHODS {
        let mut est = format!("| {name} established |");
        let mut new = format!("| {name} new connection |");
        for &flows in &r.flows {
            let Some(c) = r.case(name, flows) else {
                est.push_str(" - |");
                new.push_str(" - |");
                continue;
            };
            let e = Spread::of(&c.est()).median;
            let cpu = format!(" (CPU {:.1} ns)", Spread::of(&c.est_cpu()).median);
            if name == "DR" {
                let g = micro::goal_established_ns(flows);
                let _ = write!(
                    est,
                    " {}{cpu} (≤ {g:.0}: {}) |",
                    fig(&c.est(), " ns", 1),
                    mark(e <= g)
                );
            } else {
                let v = r.vs_dr(name, flows);
                let ratio = Spread::of(&v).median;
                let _ = write!(
                    est,
                    " {}{cpu}, {} DR (≤ {:.1}×: {}) |",
                    fig(&c.est(), " ns", 1),
                    fig(&v, "×", 2),
                    micro::GOAL_VS_DR,
                    mark(ratio <= micro::GOAL_VS_DR)
                );
            }
            let n = Spread::of(&c.new_conn()).median;
            match micro::goal_new_conn_ns(flows) {
                Some(g) => {
                    let _ = write!(
                        new,
                        " {} (≤ {g:.0}: {}) |",
                        fig(&c.new_conn(), " ns", 0),
                        mark(n <= g)
                    );
                }
                None => {
                    let _ = write!(new, " {} |", fig(&c.new_conn(), " ns", 0));
                }
            }
        }
        let _ = writeln!(s, "{est}\n{new}");
    }
    let mem: Vec<String> = r
        .flows
        .iter()
        .filter_map(|&f| r.cases.iter().find(|c| c.flows == f)?.runs.first())
        .map(|x| format!("{:.1}", x.bytes_per_conn))
        .collect();
    let _ = writeln!(
        s,
        "\nConnection table: {} bytes per connection at {} connections.",
        mem.join(" / "),
        sizes.join(" / ")
    );
    let csum: Vec<String> = micro::CSUM_VARIANTS
        .iter()
        .filter_map(|&(name, _)| {
            let c = r.cases.iter().find(|c| c.name == name)?;
            Some(format!("{name} {}", fig(&c.est(), " ns", 1)))
        })
        .collect();
    if !csum.is_empty() {
        let _ = writeln!(
            s,
            "DR with checksums, {} connections: {}.",
            sizes.first().map_or("", String::as_str),
            csum.join(", ")
        );
    }
    if let Some(sr) = &r.sched {
        let _ = writeln!(
            s,
            "\nSchedulers, ns per `schedule()` (median of {} runs):\n",
            sr.runs
        );
        let heads: Vec<String> = crate::sched::SIZES
            .iter()
            .map(|n| format!("{n} dests"))
            .collect();
        let _ = writeln!(s, "| scheduler | {} | goal at 100 |", heads.join(" | "));
        let _ = writeln!(s, "|---|{}---|", "---|".repeat(heads.len()));
        for row in &sr.rows {
            let v: Vec<String> = row.ns.iter().map(|x| format!("{x:.0}")).collect();
            let _ = writeln!(
                s,
                "| {} | {} | < {:.0}: {} |",
                row.name,
                v.join(" | "),
                row.goal_ns(),
                mark(row.at_100() < row.goal_ns())
            );
        }
        let _ = writeln!(
            s,
            "\nmh table rebuild, 1000 destinations: {:.2} ms (< 10 ms: {}).",
            sr.mh_rebuild_ms,
            mark(sr.mh_rebuild_ms < 10.0)
        );
    }
    s
}

/// The two-worker scaling as Markdown.
pub fn workers_markdown(w: &Scaling) -> String {
    let mut s = String::new();
    let r = Spread::of(&w.ratios);
    let _ = writeln!(
        s,
        "Two workers (`xvs-bench pipeline --workers {}`): DR established, {} connections per worker, each worker on its own core with its own partition, services shared; {} repetitions alternating one and {} workers.\n",
        w.workers,
        w.flows,
        w.ratios.len(),
        w.workers
    );
    let _ = writeln!(s, "| workers | Mpps | vs one worker |");
    let _ = writeln!(s, "|---|---|---|");
    let mpps = |v: &[f64]| {
        let m: Vec<f64> = v.iter().map(|x| x / 1e6).collect();
        fig(&m, "", 2)
    };
    let _ = writeln!(s, "| 1 | {} | 1× |", mpps(&w.one));
    let goal = if w.workers == 2 {
        format!(
            " (≥ {:.1}×: {})",
            workers::GOAL_RATIO_2,
            mark(r.median >= workers::GOAL_RATIO_2)
        )
    } else {
        String::new()
    };
    let _ = writeln!(
        s,
        "| {} | {} | {}{goal} |",
        w.workers,
        mpps(&w.many),
        fig(&w.ratios, "×", 2)
    );
    s
}

/// compare's report as Markdown.
pub fn compare_markdown(r: &compare::Report, cost_rate: f64) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Forwarding on a veth pair (`xvs-bench compare`), {} rounds, every forwarder once per round; medians over the rounds, ± half the spread; ratios taken within each round. {}. CPU per frame: the forwarder's CPU time (its threads' user + system time; nft: the forwarding core's softirq time) per forwarded frame at {:.0} kpps offered.\n",
        r.rounds,
        r.traffic,
        cost_rate / 1e3
    );
    let _ = writeln!(
        s,
        "| forwarder | Mpps | vs reflector | vs nft DNAT | loss | p99 latency | CPU per frame |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|");
    let f = |x: Option<Figure>, unit: &str, d: usize| {
        x.map_or("-".into(), |x| {
            format!("{:.*}{unit} ±{:.0}%", d, x.median, x.spread_pct() / 2.0)
        })
    };
    for row in &r.rows {
        let sum = r.summary.iter().find(|x| x.mode == row.mode);
        if !row.ok() {
            let _ = writeln!(s, "| {} | {} | | | | | |", row.mode.label(), row.status);
            continue;
        }
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {:.1}% | {:.0} µs | {} |",
            row.mode.label(),
            f(sum.and_then(|x| x.mpps), "", 3),
            if matches!(row.mode, Mode::Reflect | Mode::Reflect2q) {
                "1×".into()
            } else {
                f(sum.and_then(|x| x.vs_reflector), "×", 2)
            },
            f(sum.and_then(|x| x.vs_nft), "×", 2),
            row.loss_pct,
            row.lat_us[1],
            f(sum.and_then(|x| x.cost_ns), " ns", 0),
        );
    }
    let _ = writeln!(s);
    for (text, met) in &r.goals {
        let m = match met {
            Some(true) => "met",
            Some(false) => "**NOT met**",
            None => "not measured",
        };
        let _ = writeln!(s, "- {text}: {m}");
    }
    s
}

/// Run the set and return the Markdown (also written to `--out`/bench.md).
pub fn run(a: &ReportArgs) -> Result<String, String> {
    let flows: Vec<String> = if a.quick {
        vec!["10000".into(), "100000".into()]
    } else {
        a.flows.iter().map(usize::to_string).collect()
    };
    let reps = if a.quick { 2 } else { a.reps }.to_string();
    let mut margs = vec!["micro", "--flows"];
    let flows_s = flows.join(",");
    margs.extend([flows_s.as_str(), "--reps", &reps]);
    if a.quick {
        margs.extend(["--packets", "1000000", "--sched-runs", "1"]);
    }
    let m = micro::measure(&Micro::parse_from(margs).a);
    let cores: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .collect();
    let w = if a.quick {
        workers::scaling(2, 10_000, (3, 0.3, 1), &cores, false)
    } else {
        workers::scaling(2, 10_000, (3, 2.0, 5), &cores, false)
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Measured {} on {} with `scripts/bench.sh`{}.\n",
        now_utc(),
        compare::machine(),
        if a.quick {
            " --quick (small counts: not figures)"
        } else {
            ""
        }
    );
    out.push_str(&micro_markdown(&m));
    out.push('\n');
    out.push_str(&workers_markdown(&w));
    if a.no_compare {
        out.push_str("\nForwarding: not measured (--no-compare).\n");
    } else if !xvs_tests::is_root() {
        out.push_str("\nForwarding: not measured (compare needs root).\n");
    } else {
        let rounds = if a.quick { 1 } else { a.rounds }.to_string();
        let secs = if a.quick { 1.0 } else { a.secs }.to_string();
        let cost = a.cost_rate.to_string();
        let dir = a.out.to_string_lossy().to_string();
        let mut cargs = vec!["compare", "--rounds", &rounds, "--secs", &secs];
        cargs.extend(["--cost-rate", &cost, "--out", &dir]);
        if a.quick {
            cargs.extend(["--cost-secs", "1", "--lat-secs", "0.5"]);
        }
        let r = compare::run(&Compare::parse_from(cargs).a)?;
        out.push('\n');
        out.push_str(&compare_markdown(&r, a.cost_rate));
    }
    std::fs::create_dir_all(&a.out).map_err(|e| format!("{}: {e}", a.out.display()))?;
    let p = a.out.join("bench.md");
    std::fs::write(&p, &out).map_err(|e| format!("{}: {e}", p.display()))?;
    eprintln!("report: wrote {}", p.display());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn micro_and_workers_render_as_markdown_with_goals() {
        let m = micro::measure(&MicroArgs {
            flows: vec![1000],
            packets: 10_000,
            servers: 3,
            reps: 2,
            sched_runs: 1,
            no_sched: true,
            no_csum: true,
        });
        let md = micro_markdown(&m);
        assert!(md.contains("| case | 1k conns |"), "{md}");
        assert!(md.contains("| DR established |"), "{md}");
        assert!(md.contains("(≤ 35: "), "{md}");
        assert!(md.contains("DR (≤ 1.3×: "), "{md}");
        assert!(md.contains("(≤ 150: "), "{md}");
        let w = workers::scaling(2, 100, (3, 0.02, 1), &[], false);
        let md = workers_markdown(&w);
        assert!(md.contains("| 2 |") && md.contains("(≥ 1.8×: "), "{md}");
    }
}
