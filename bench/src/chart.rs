//! The comparison chart, as a hand-written SVG: two panels side by side,
//! forwarded Mpps and p99 one-way latency, one bar per forwarder, with
//! the value on each bar and a dashed line at the reflector's rate (the
//! ceiling of the machine), so the ranking reads at a glance.

use std::fmt::Write;

/// One bar group: a forwarder's name and its two values (`None`: n/a).
#[derive(Debug, Clone)]
pub struct Bar {
    /// Label under the bars.
    pub label: String,
    /// Forwarded Mpps.
    pub mpps: Option<f64>,
    /// p99 latency in µs.
    pub p99_us: Option<f64>,
    /// Fill colour.
    pub color: &'static str,
}

const W: f64 = 960.0;
const H: f64 = 460.0;
const TOP: f64 = 70.0;
const BOTTOM: f64 = 90.0;
const PANEL_W: f64 = 400.0;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A "nice" axis maximum at or above `v` (1, 2, 2.5 or 5 × 10^k).
fn nice_max(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if m * p >= v {
            return m * p;
        }
    }
    10.0 * p
}

fn panel(
    out: &mut String,
    x0: f64,
    title: &str,
    unit: &str,
    bars: &[Bar],
    value: impl Fn(&Bar) -> Option<f64>,
    reference: Option<(f64, &str)>,
) {
    let y0 = H - BOTTOM;
    let ph = y0 - TOP;
    let max = bars.iter().filter_map(&value).fold(0.0, f64::max);
    let max = nice_max(max.max(reference.map_or(0.0, |r| r.0)) * 1.1);
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" font-size="16" font-weight="bold" text-anchor="middle">{}</text>"#,
        x0 + PANEL_W / 2.0,
        TOP - 22.0,
        esc(title)
    );
    // Grid and axis labels: 5 steps.
    for i in 0..=5 {
        let v = max * f64::from(i) / 5.0;
        let y = y0 - ph * f64::from(i) / 5.0;
        let _ = writeln!(
            out,
            r##"<line x1="{x0:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end" fill="#555">{}</text>"##,
            x0 + PANEL_W,
            x0 - 6.0,
            y + 4.0,
            trim(v)
        );
    }
    let _ = writeln!(
        out,
        r##"<text x="{:.1}" y="{:.1}" font-size="12" fill="#555" transform="rotate(-90 {:.1} {:.1})" text-anchor="middle">{}</text>"##,
        x0 - 42.0,
        TOP + ph / 2.0,
        x0 - 42.0,
        TOP + ph / 2.0,
        esc(unit)
    );
    let n = bars.len().max(1) as f64;
    let slot = PANEL_W / n;
    let bw = (slot * 0.6).min(60.0);
    for (i, b) in bars.iter().enumerate() {
        let cx = x0 + slot * (i as f64 + 0.5);
        match value(b) {
            Some(v) => {
                let h = ph * (v / max).clamp(0.0, 1.0);
                let _ = writeln!(
                    out,
                    r#"<rect x="{:.1}" y="{:.1}" width="{bw:.1}" height="{h:.1}" fill="{}"/><text x="{cx:.1}" y="{:.1}" font-size="12" text-anchor="middle">{}</text>"#,
                    cx - bw / 2.0,
                    y0 - h,
                    b.color,
                    y0 - h - 5.0,
                    trim(v)
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    r##"<text x="{cx:.1}" y="{:.1}" font-size="12" text-anchor="middle" fill="#999">n/a</text>"##,
                    y0 - 6.0
                );
            }
        }
        let _ = writeln!(
            out,
            r#"<text x="{cx:.1}" y="{:.1}" font-size="12" text-anchor="middle">{}</text>"#,
            y0 + 18.0,
            esc(&b.label)
        );
    }
    if let Some((v, label)) = reference {
        let y = y0 - ph * (v / max).clamp(0.0, 1.0);
        let (lx, ly) = (x0 + PANEL_W, TOP - 6.0);
        let _ = writeln!(
            out,
            r##"<line x1="{x0:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#444" stroke-dasharray="6 4"/><line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#444" stroke-dasharray="6 4"/><text x="{lx:.1}" y="{ly:.1}" font-size="11" text-anchor="end" fill="#444">{}</text>"##,
            x0 + PANEL_W,
            lx - 150.0,
            ly - 4.0,
            lx - 124.0,
            ly - 4.0,
            esc(label)
        );
    }
    let _ = writeln!(
        out,
        r##"<line x1="{x0:.1}" y1="{y0:.1}" x2="{:.1}" y2="{y0:.1}" stroke="#333"/>"##,
        x0 + PANEL_W
    );
}

fn trim(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// The chart: `title` on top, `note` (machine, traffic; one text line
/// per line) at the bottom.
pub fn svg(title: &str, note: &str, bars: &[Bar]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="DejaVu Sans, Arial, sans-serif">"#
    );
    let _ = writeln!(
        out,
        r##"<rect width="100%" height="100%" fill="#fff"/><text x="{:.1}" y="26" font-size="18" font-weight="bold" text-anchor="middle">{}</text>"##,
        W / 2.0,
        esc(title)
    );
    let reflector = bars
        .iter()
        .find(|b| b.label == "reflector")
        .and_then(|b| b.mpps);
    panel(
        &mut out,
        80.0,
        "Forwarded rate (higher is better)",
        "Mpps",
        bars,
        |b| b.mpps,
        reflector.map(|v| (v, "reflector (the ceiling)")),
    );
    panel(
        &mut out,
        80.0 + PANEL_W + 80.0,
        "p99 one-way latency (lower is better)",
        "microseconds",
        bars,
        |b| b.p99_us,
        None,
    );
    for (i, line) in note.lines().enumerate() {
        let _ = writeln!(
            out,
            r##"<text x="{:.1}" y="{:.1}" font-size="12" text-anchor="middle" fill="#555">{}</text>"##,
            W / 2.0,
            H - 44.0 + 17.0 * i as f64,
            esc(line)
        );
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn svg_has_every_bar_and_label() {
        let bars = vec![
            Bar {
                label: "reflector".into(),
                mpps: Some(0.55),
                p99_us: Some(40.0),
                color: "#888",
            },
            Bar {
                label: "xvs NAT".into(),
                mpps: None,
                p99_us: None,
                color: "#96b",
            },
        ];
        let s = svg("t <&>", "note", &bars);
        assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
        assert!(s.contains("t &lt;&amp;&gt;"));
        assert_eq!(s.matches("n/a").count(), 2);
        assert!(s.contains(">0.55<") && s.contains(">40.0<"));
        assert_eq!(nice_max(0.61 * 1.1), 1.0);
        assert_eq!(nice_max(42.0), 50.0);
    }
}
