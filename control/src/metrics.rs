//! `xvsd --metrics ADDR`: a Prometheus text endpoint.
//!
//! Scrapers poll; the control thread owns the configuration and the data
//! plane handles, neither of which may be shared with another thread
//! without locks on the hot path. So the control thread renders the page
//! ([`render`]) every second and after every change, and a small thread
//! ([`MetricsServer`]) serves the latest text from an `Arc<Mutex<String>>`:
//! a scrape never touches the configuration or the workers, and a slow
//! scraper never delays a control request. HTTP is the minimum Prometheus
//! needs: `GET /metrics`, one request per connection, bounded reads and
//! timeouts. Each client is answered on its own short-lived thread, with
//! a deadline for the whole exchange and a bound on how many are served
//! at once, so a client that connects and never sends (or never reads)
//! cannot hold up the next scrape.

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use xvs_config::check::{CheckKind, HealthStatus, LATENCY_BOUNDS_US};
use xvs_config::stats::CounterValues;
use xvs_config::svc::SvcKey;

use crate::listing::{addr_port, proto_name};
use crate::model::Model;
use crate::syncd::SyncStatus;
use xvs_config::SyncRole;

/// Longest request head read from a scraper.
const MAX_REQUEST: usize = 8192;
/// Deadline for a whole exchange with one client (reading its request
/// and writing the page).
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// Most clients served at once; a connection beyond them is closed
/// unanswered (a scraper retries at its next interval).
pub const MAX_CLIENTS: usize = 16;

/// The data plane's counters for the metrics page (from
/// `Director::counters`), as plain values so this crate's tests need no
/// data plane.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DataplaneStats {
    /// Worker threads (one per RX queue).
    pub workers: usize,
    /// Every counter, in the data plane's order (a family's samples are
    /// shown together, where its first one is).
    pub counters: Vec<DataplaneSample>,
}

/// One data-plane counter as a metric sample.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DataplaneSample {
    /// Family name without the `xvs_dataplane_` prefix.
    pub metric: &'static str,
    /// Label name and value, if the family has several samples.
    pub label: Option<(&'static str, String)>,
    /// The family's help text.
    pub help: &'static str,
    /// The value.
    pub value: u64,
}

/// Parse `--metrics`: `PORT` or `:PORT` (loopback, 127.0.0.1), `HOST:PORT`,
/// `[V6]:PORT`.
pub fn parse_listen_addr(s: &str) -> Result<SocketAddr, String> {
    let bad = || format!("bad --metrics address {s:?} (want PORT, :PORT or HOST:PORT)");
    let port_only = s.strip_prefix(':').unwrap_or(s);
    if !port_only.is_empty() && port_only.bytes().all(|b| b.is_ascii_digit()) {
        let port: u16 = port_only.parse().map_err(|_| bad())?;
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    s.parse::<SocketAddr>().map_err(|_| bad())
}

fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// The `service` label: `TCP 198.18.0.100:80`, `FWM 10`, `FWM 10 IPv6`.
pub fn service_label(key: &SvcKey) -> String {
    match *key {
        SvcKey::Addr { proto, vip, port } => {
            format!("{} {}", proto_name(proto), addr_port(vip, port))
        }
        SvcKey::Fwmark { mark, v6: false } => format!("FWM {mark}"),
        SvcKey::Fwmark { mark, v6: true } => format!("FWM {mark} IPv6"),
    }
}

const COUNTER_FIELDS: [(&str, &str); 5] = [
    ("connections_total", "Connections scheduled"),
    ("packets_in_total", "Packets from clients"),
    ("packets_out_total", "Packets to clients (NAT only)"),
    ("bytes_in_total", "Bytes from clients"),
    ("bytes_out_total", "Bytes to clients (NAT only)"),
];

fn values(c: CounterValues) -> [u64; 5] {
    [c.conns, c.inpkts, c.outpkts, c.inbytes, c.outbytes]
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// The page: per-service and per-destination counters and load, the data
/// plane's totals and drop reasons.
pub fn render(model: &Model, dp: &DataplaneStats) -> String {
    let mut out = String::new();
    family(
        &mut out,
        "xvs_services",
        "gauge",
        "Virtual services configured",
    );
    let _ = writeln!(out, "xvs_services {}", model.services.len());
    family(
        &mut out,
        "xvs_config_generation",
        "gauge",
        "Configuration changes applied since start",
    );
    let _ = writeln!(out, "xvs_config_generation {}", model.generation);

    let svcs: Vec<(String, [u64; 5])> = model
        .services
        .iter()
        .map(|s| (escape(&service_label(&s.key)), values(s.counters.get())))
        .collect();
    for (i, (field, help)) in COUNTER_FIELDS.iter().enumerate() {
        let name = format!("xvs_service_{field}");
        family(&mut out, &name, "counter", &format!("{help}, per service"));
        for (label, v) in &svcs {
            let _ = writeln!(out, "{name}{{service=\"{label}\"}} {}", v[i]);
        }
    }

    struct Row {
        labels: String,
        v: [u64; 5],
        gauges: [i64; 6],
    }
    let mut dests = Vec::new();
    for (s, (slabel, _)) in model.services.iter().zip(&svcs) {
        for d in model.service_state(s).dests {
            let dest = d.dest;
            dests.push(Row {
                labels: format!(
                    "service=\"{slabel}\",server=\"{}\"",
                    escape(&addr_port(dest.addr, dest.port))
                ),
                v: values(dest.counters.get()),
                gauges: [
                    i64::from(d.weight),
                    i64::from(dest.weight),
                    i64::from(!d.removed && d.health.is_up()),
                    i64::from(dest.load.active()),
                    i64::from(dest.load.inactive()),
                    i64::from(dest.load.persist()),
                ],
            });
        }
    }
    for (i, (field, help)) in COUNTER_FIELDS.iter().enumerate() {
        let name = format!("xvs_dest_{field}");
        family(
            &mut out,
            &name,
            "counter",
            &format!("{help}, per real server"),
        );
        for r in &dests {
            let _ = writeln!(out, "{name}{{{}}} {}", r.labels, r.v[i]);
        }
    }
    let gauges = [
        (
            "weight",
            "Weight the real server is scheduled with (0: quiesced or down)",
        ),
        ("configured_weight", "Weight configured for the real server"),
        (
            "up",
            "Whether the real server takes new connections (its check passes)",
        ),
        ("active_connections", "Active (ESTABLISHED) connections"),
        ("inactive_connections", "Inactive connections"),
        ("persistent_connections", "Persistence templates"),
    ];
    for (i, (field, help)) in gauges.iter().enumerate() {
        // xvs_real_up: the name keepalived exporters use for this.
        let name = if *field == "up" {
            "xvs_real_up".to_string()
        } else {
            format!("xvs_dest_{field}")
        };
        family(&mut out, &name, "gauge", help);
        for r in &dests {
            let _ = writeln!(out, "{name}{{{}}} {}", r.labels, r.gauges[i]);
        }
    }

    render_checks(&mut out, model);

    family(
        &mut out,
        "xvs_dataplane_workers",
        "gauge",
        "Data-plane worker threads (one per RX queue)",
    );
    let _ = writeln!(out, "xvs_dataplane_workers {}", dp.workers);
    // Each family once, with all its samples, in first-seen order.
    let mut families: Vec<&DataplaneSample> = Vec::new();
    for c in &dp.counters {
        if !families.iter().any(|f| f.metric == c.metric) {
            families.push(c);
        }
    }
    for f in families {
        let name = format!("xvs_dataplane_{}", f.metric);
        family(&mut out, &name, "counter", f.help);
        for c in dp.counters.iter().filter(|c| c.metric == f.metric) {
            match &c.label {
                Some((k, v)) => {
                    let _ = writeln!(out, "{name}{{{k}=\"{}\"}} {}", escape(v), c.value);
                }
                None => {
                    let _ = writeln!(out, "{name} {}", c.value);
                }
            }
        }
    }
    out
}

/// The probes' families: a latency histogram and a transitions counter
/// per probe, labelled with the server and port probed and the check type
/// (probes of one server differing in other options get a `variant`).
fn render_checks(out: &mut String, model: &Model) {
    let mut rows: Vec<(String, Option<&HealthStatus>)> = Vec::new();
    for (key, _) in model.probes() {
        // A ping probes the address alone.
        let server = match key.spec.kind {
            CheckKind::Ping => crate::listing::ip_text(key.addr),
            _ => addr_port(key.addr, key.port),
        };
        let mut labels = format!("server=\"{}\",check=\"{}\"", escape(&server), key.spec.kind);
        let same = rows.iter().filter(|(l, _)| l.starts_with(&labels)).count();
        if same > 0 {
            let _ = write!(labels, ",variant=\"{same}\"");
        }
        rows.push((labels, model.health(&key)));
    }
    let name = "xvs_check_latency_seconds";
    family(out, name, "histogram", "Duration of health-check probes");
    for (labels, st) in &rows {
        let h = st.map(|s| s.latency).unwrap_or_default();
        let mut cumulative = 0;
        for (i, bound) in LATENCY_BOUNDS_US.iter().enumerate() {
            cumulative += h.buckets[i];
            let le = *bound as f64 / 1e6;
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels},le=\"+Inf\"}} {}\n{name}_sum{{{labels}}} {}\n{name}_count{{{labels}}} {}",
            h.count(),
            h.sum_us as f64 / 1e6,
            h.count()
        );
    }
    let name = "xvs_check_transitions_total";
    family(out, name, "counter", "Health state changes of a probe");
    for (labels, st) in &rows {
        let _ = writeln!(
            out,
            "{name}{{{labels}}} {}",
            st.map_or(0, |s| s.transitions)
        );
    }
}

/// The metrics thread: serves the latest page until stopped.
#[derive(Debug)]
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    join: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// Bind `addr` and serve `page` from a new thread.
    pub fn start(addr: SocketAddr, page: Arc<Mutex<String>>) -> io::Result<Self> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let join = std::thread::Builder::new()
            .name("xvs-metrics".into())
            .spawn(move || {
                let busy = Arc::new(AtomicUsize::new(0));
                for conn in listener.incoming() {
                    if s2.load(Ordering::Relaxed) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    if busy.fetch_add(1, Ordering::AcqRel) >= MAX_CLIENTS {
                        busy.fetch_sub(1, Ordering::AcqRel);
                        continue;
                    }
                    let (page, busy2) = (page.clone(), busy.clone());
                    let spawned = std::thread::Builder::new()
                        .name("xvs-metrics-client".into())
                        .spawn(move || {
                            let _ = answer(conn, &page);
                            busy2.fetch_sub(1, Ordering::AcqRel);
                        });
                    if spawned.is_err() {
                        busy.fetch_sub(1, Ordering::AcqRel);
                    }
                }
            })?;
        Ok(MetricsServer {
            addr,
            stop,
            join: Some(join),
        })
    }

    /// The address actually bound (port 0 picks one).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stop the thread and wait for it.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the blocking accept.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(j) = self.join.take() {
            let _ = j.join();
        }
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The time left before `deadline`, or a timeout error once it passed.
/// The connection sync families of the metrics page (appended to
/// [`render`]'s): which daemons run, their
/// counters and their peers' (`xvs_sync_daemon_running`,
/// `xvs_sync_total`, `xvs_sync_peer_total`).
pub fn render_sync(model: &Model, status: &[SyncStatus]) -> String {
    let mut out = String::new();
    out.push_str("# HELP xvs_sync_daemon_running Connection sync daemons running, by role.\n");
    out.push_str("# TYPE xvs_sync_daemon_running gauge\n");
    for role in [SyncRole::Master, SyncRole::Backup] {
        let on = u8::from(model.sync_daemon(role).is_some());
        let _ = writeln!(
            out,
            "xvs_sync_daemon_running{{role=\"{}\"}} {on}",
            role.name()
        );
    }
    out.push_str("# HELP xvs_sync_total Connection sync counters, by role and counter.\n");
    out.push_str("# TYPE xvs_sync_total counter\n");
    for st in status {
        for (name, v) in &st.counters {
            let _ = writeln!(
                out,
                "xvs_sync_total{{role=\"{}\",counter=\"{name}\"}} {v}",
                st.role.name()
            );
        }
    }
    out.push_str("# HELP xvs_sync_peer_total Connection sync counters per peer address.\n");
    out.push_str("# TYPE xvs_sync_peer_total counter\n");
    for st in status {
        for p in &st.peers {
            for (name, v) in &p.counters {
                let _ = writeln!(
                    out,
                    "xvs_sync_peer_total{{role=\"{}\",peer=\"{}\",counter=\"{name}\"}} {v}",
                    st.role.name(),
                    p.addr
                );
            }
        }
    }
    out
}

fn left(deadline: Instant) -> io::Result<Duration> {
    let d = deadline.saturating_duration_since(Instant::now());
    if d.is_zero() {
        return Err(io::Error::new(io::ErrorKind::TimedOut, "client too slow"));
    }
    Ok(d)
}

/// Read one request head (bounded) and answer it, all within
/// [`IO_TIMEOUT`].
fn answer(mut conn: TcpStream, page: &Mutex<String>) -> io::Result<()> {
    let deadline = Instant::now() + IO_TIMEOUT;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while head.len() < MAX_REQUEST {
        conn.set_read_timeout(Some(left(deadline)?))?;
        let n = conn.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
        if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
            break;
        }
    }
    let text = String::from_utf8_lossy(&head);
    let mut words = text.lines().next().unwrap_or("").split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, ctype, body) = match (method, path) {
        ("GET" | "HEAD", "/metrics") => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            page.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        ),
        ("GET" | "HEAD", _) => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "xvsd serves /metrics only\n".to_string(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            "only GET /metrics\n".to_string(),
        ),
    };
    let mut resp = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if method != "HEAD" {
        resp.push_str(&body);
    }
    let mut rest = resp.as_bytes();
    while !rest.is_empty() {
        conn.set_write_timeout(Some(left(deadline)?))?;
        match conn.write(rest) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => rest = &rest[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    conn.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses() {
        let lo = |p| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), p);
        assert_eq!(parse_listen_addr("9100").unwrap(), lo(9100));
        assert_eq!(parse_listen_addr(":9100").unwrap(), lo(9100));
        assert_eq!(
            parse_listen_addr("0.0.0.0:9100").unwrap(),
            "0.0.0.0:9100".parse().unwrap()
        );
        assert_eq!(
            parse_listen_addr("[::1]:9100").unwrap(),
            "[::1]:9100".parse().unwrap()
        );
        for bad in ["", ":", "99999", "host:1", "1.2.3.4", "[::1]"] {
            assert!(parse_listen_addr(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn labels_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
