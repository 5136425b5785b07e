//! Health checks of real servers: what is configured, and what a check
//! has found.
//!
//! A service's check options (`-A`/`-E`) are the defaults of its real
//! servers; a real server's own options (`-a`/`-e`) override them field by
//! field. [`CheckConf`] holds the options as written (every field
//! optional, so that "not given" and "given as the default" stay
//! distinct, which `-S` needs); [`CheckConf::resolve`] merges the two
//! layers with the defaults into a [`CheckSpec`], the check that runs.
//! Two services sharing a real server with equal specs share one probe:
//! the spec, with the server's address, is the probe's identity.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Default seconds between two probes of a server.
pub const DEFAULT_INTERVAL: u32 = 5;
/// Default seconds a probe may take.
pub const DEFAULT_TIMEOUT: u32 = 3;
/// Default successes in a row that bring a server up.
pub const DEFAULT_RISE: u32 = 2;
/// Default failures in a row that take a server down.
pub const DEFAULT_FALL: u32 = 3;
/// Default quorum of a service: the least sum of up servers' weights.
pub const DEFAULT_QUORUM: u32 = 1;

/// What a check does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum CheckKind {
    /// No check: the server is taken as it is configured (ipvsadm).
    #[default]
    None,
    /// TCP connect, optionally sending a string and expecting another.
    Tcp,
    /// HTTP request, status and body checked.
    Http,
    /// HTTP over TLS.
    Https,
    /// UDP payload, reply expected (or at least no ICMP unreachable).
    Udp,
    /// ICMP echo.
    Ping,
    /// A command: exit 0 up, 1 down, 2..=255 up with weight = code - 2.
    Exec,
    /// A half-open TCP probe to the VIP through the server's MAC (DR) or
    /// tunnel (TUN): proves that the server answers for the VIP.
    Vip,
}

impl CheckKind {
    /// Every kind, in the order `--help` lists them.
    pub const ALL: [CheckKind; 8] = [
        CheckKind::None,
        CheckKind::Tcp,
        CheckKind::Http,
        CheckKind::Https,
        CheckKind::Udp,
        CheckKind::Ping,
        CheckKind::Exec,
        CheckKind::Vip,
    ];

    /// The word `--check` takes and listings print.
    pub fn name(self) -> &'static str {
        match self {
            CheckKind::None => "none",
            CheckKind::Tcp => "tcp",
            CheckKind::Http => "http",
            CheckKind::Https => "https",
            CheckKind::Udp => "udp",
            CheckKind::Ping => "ping",
            CheckKind::Exec => "exec",
            CheckKind::Vip => "vip",
        }
    }

    /// The kind named `s` (as [`CheckKind::name`] writes it).
    pub fn parse(s: &str) -> Option<CheckKind> {
        CheckKind::ALL.into_iter().find(|k| k.name() == s)
    }
}

impl fmt::Display for CheckKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What happens to a server while its check says it is down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum OnFail {
    /// Weight 0: no new connections, established ones continue.
    #[default]
    Inhibit,
    /// Out of scheduling entirely (as `-d`; its connections expire).
    Remove,
}

impl OnFail {
    /// The word `--check-on-fail` takes.
    pub fn name(self) -> &'static str {
        match self {
            OnFail::Inhibit => "inhibit",
            OnFail::Remove => "remove",
        }
    }

    /// The value named `s`.
    pub fn parse(s: &str) -> Option<OnFail> {
        match s {
            "inhibit" => Some(OnFail::Inhibit),
            "remove" => Some(OnFail::Remove),
            _ => None,
        }
    }
}

/// HTTP request method of an `http`/`https` check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum HttpMethod {
    /// `GET` (the body can be matched).
    #[default]
    Get,
    /// `HEAD`.
    Head,
}

impl HttpMethod {
    /// The method as sent and as `--check-method` takes it.
    pub fn name(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Head => "HEAD",
        }
    }

    /// The method named `s` (case-insensitive).
    pub fn parse(s: &str) -> Option<HttpMethod> {
        if s.eq_ignore_ascii_case("get") {
            Some(HttpMethod::Get)
        } else if s.eq_ignore_ascii_case("head") {
            Some(HttpMethod::Head)
        } else {
            None
        }
    }
}

/// Accepted HTTP status codes: a list of codes and inclusive ranges
/// (`200-299,301`), kept as written, sorted and merged.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StatusSet(Vec<(u16, u16)>);

impl Default for StatusSet {
    fn default() -> Self {
        StatusSet(vec![(200, 299)])
    }
}

impl StatusSet {
    /// Parse `200-299,301`: codes 100..=599, ranges low-high.
    pub fn parse(s: &str) -> Result<StatusSet, String> {
        let mut v = Vec::new();
        for part in s.split(',') {
            let part = part.trim();
            let (lo, hi) = match part.split_once('-') {
                Some((a, b)) => (a.trim(), b.trim()),
                None => (part, part),
            };
            let code = |x: &str| -> Result<u16, String> {
                match x.parse::<u16>() {
                    Ok(c) if (100..=599).contains(&c) => Ok(c),
                    _ => Err(format!("invalid HTTP status code '{x}'")),
                }
            };
            let (lo, hi) = (code(lo)?, code(hi)?);
            if lo > hi {
                return Err(format!("invalid HTTP status range '{part}'"));
            }
            v.push((lo, hi));
        }
        v.sort_unstable();
        let mut merged: Vec<(u16, u16)> = Vec::with_capacity(v.len());
        for (lo, hi) in v {
            match merged.last_mut() {
                Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
                _ => merged.push((lo, hi)),
            }
        }
        Ok(StatusSet(merged))
    }

    /// Whether `code` is accepted.
    pub fn contains(&self, code: u16) -> bool {
        self.0.iter().any(|&(lo, hi)| (lo..=hi).contains(&code))
    }
}

impl fmt::Display for StatusSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (lo, hi)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if lo == hi {
                write!(f, "{lo}")?;
            } else {
                write!(f, "{lo}-{hi}")?;
            }
        }
        Ok(())
    }
}

/// Check options as written on one level (service or real server). Every
/// field is optional: `None` means "not given here".
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct CheckConf {
    /// `--check`.
    pub kind: Option<CheckKind>,
    /// `--check-port` (default: the real server's port; the VIP's port
    /// for `vip`).
    pub port: Option<u16>,
    /// `--check-path` (HTTP, default `/`).
    pub path: Option<String>,
    /// `--check-host` (HTTP `Host:` and TLS SNI; default the address).
    pub host: Option<String>,
    /// `--check-method GET|HEAD`.
    pub method: Option<HttpMethod>,
    /// `--check-expect` (HTTP status codes; default `200-299`).
    pub expect: Option<StatusSet>,
    /// `--check-regex` (HTTP body, TCP/UDP reply must match).
    pub regex: Option<String>,
    /// `--check-send` (TCP/UDP payload; `\n`, `\r`, `\t`, `\xHH`, `\\`
    /// escapes as written on the command line).
    pub send: Option<String>,
    /// `--check-receive` (TCP/UDP: the reply must contain this).
    pub receive: Option<String>,
    /// `--check-cmd` (exec: the command line).
    pub cmd: Option<String>,
    /// `--check-ca` (https: verify the certificate against this CA file;
    /// without it, certificates are not verified).
    pub ca: Option<String>,
    /// `--check-interval SECS`.
    pub interval: Option<u32>,
    /// `--check-timeout SECS`.
    pub timeout: Option<u32>,
    /// `--check-rise N`.
    pub rise: Option<u32>,
    /// `--check-fall N`.
    pub fall: Option<u32>,
    /// `--check-on-fail inhibit|remove`.
    pub on_fail: Option<OnFail>,
}

impl CheckConf {
    /// Whether nothing is given on this level.
    pub fn is_empty(&self) -> bool {
        *self == CheckConf::default()
    }

    /// `self` (a real server's options) over `svc` (its service's), over
    /// the defaults: the check that runs.
    pub fn resolve(&self, svc: &CheckConf) -> CheckSpec {
        macro_rules! pick {
            ($f:ident) => {
                self.$f.clone().or_else(|| svc.$f.clone())
            };
        }
        CheckSpec {
            kind: pick!(kind).unwrap_or_default(),
            port: pick!(port),
            path: pick!(path).unwrap_or_else(|| "/".to_string()),
            host: pick!(host),
            method: pick!(method).unwrap_or_default(),
            expect: pick!(expect).unwrap_or_default(),
            regex: pick!(regex),
            send: pick!(send),
            receive: pick!(receive),
            cmd: pick!(cmd),
            ca: pick!(ca),
            interval: pick!(interval).unwrap_or(DEFAULT_INTERVAL).max(1),
            timeout: pick!(timeout).unwrap_or(DEFAULT_TIMEOUT).max(1),
            rise: pick!(rise).unwrap_or(DEFAULT_RISE).max(1),
            fall: pick!(fall).unwrap_or(DEFAULT_FALL).max(1),
            on_fail: pick!(on_fail).unwrap_or_default(),
        }
    }
}

/// A resolved check: what one probe of one server does, with every
/// default filled in.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CheckSpec {
    /// What the probe does.
    pub kind: CheckKind,
    /// Port probed (`None`: the real server's, or the VIP's for `vip`).
    pub port: Option<u16>,
    /// HTTP path.
    pub path: String,
    /// HTTP `Host:` / TLS SNI.
    pub host: Option<String>,
    /// HTTP method.
    pub method: HttpMethod,
    /// Accepted HTTP status codes.
    pub expect: StatusSet,
    /// Regular expression the body or reply must match.
    pub regex: Option<String>,
    /// Payload sent (TCP, UDP).
    pub send: Option<String>,
    /// String the reply must contain (TCP, UDP).
    pub receive: Option<String>,
    /// Command (exec).
    pub cmd: Option<String>,
    /// CA file (https).
    pub ca: Option<String>,
    /// Seconds between probes (at least 1).
    pub interval: u32,
    /// Seconds a probe may take (at least 1).
    pub timeout: u32,
    /// Successes in a row to come up (at least 1).
    pub rise: u32,
    /// Failures in a row to go down (at least 1).
    pub fall: u32,
    /// What down means for scheduling.
    pub on_fail: OnFail,
}

impl CheckSpec {
    /// Whether a check runs at all.
    pub fn enabled(&self) -> bool {
        self.kind != CheckKind::None
    }

    /// The probe interval.
    pub fn interval(&self) -> Duration {
        Duration::from_secs(u64::from(self.interval))
    }

    /// The probe timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(u64::from(self.timeout))
    }
}

/// The state of a checked server, as `-Ln --check` prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Health {
    /// Not checked (`--check none`): `-`.
    #[default]
    Unchecked,
    /// Up: scheduled with its (possibly dynamic) weight.
    Up,
    /// Up, but the last probes failed (fewer than `fall` in a row).
    Falling,
    /// Down: inhibited or removed.
    Down,
    /// Down, but the last probes passed (fewer than `rise` in a row).
    Rising,
}

impl Health {
    /// Whether the server takes new connections in this state.
    pub fn is_up(self) -> bool {
        matches!(self, Health::Unchecked | Health::Up | Health::Falling)
    }

    /// The word listings print.
    pub fn name(self) -> &'static str {
        match self {
            Health::Unchecked => "-",
            Health::Up => "UP",
            Health::Falling => "FALLING",
            Health::Down => "DOWN",
            Health::Rising => "RISING",
        }
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the checker knows about one probed server: the daemon's checker
/// produces these; the model applies them to the weights it hands the
/// data plane, and the listings print them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HealthStatus {
    /// Current state.
    pub state: Health,
    /// Seconds since the Unix epoch when the state was entered.
    pub since: u64,
    /// The last probe's result: `ok`, or why it failed.
    pub last: String,
    /// The last probe's duration in microseconds.
    pub latency_us: u64,
    /// Weight set by an `exec` check (exit code - 2), if any.
    pub weight: Option<i32>,
    /// Transitions since the check started.
    pub transitions: u64,
    /// Every probe's duration so far (the metrics' histogram).
    pub latency: LatencyHist,
}

/// Upper bounds, in microseconds, of the probe latency histogram's
/// buckets (a last, unbounded bucket follows).
pub const LATENCY_BOUNDS_US: [u64; 10] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 500_000, 1_000_000,
];

/// A histogram of probe durations: the checker records every probe, the
/// metrics page prints it as a Prometheus histogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LatencyHist {
    /// Probes per bucket of [`LATENCY_BOUNDS_US`] (not cumulative); the
    /// last counts probes above every bound.
    pub buckets: [u64; LATENCY_BOUNDS_US.len() + 1],
    /// Sum of all durations in microseconds.
    pub sum_us: u64,
}

impl LatencyHist {
    /// Count one probe of `us` microseconds.
    pub fn record(&mut self, us: u64) {
        let i = LATENCY_BOUNDS_US
            .iter()
            .position(|&b| us <= b)
            .unwrap_or(LATENCY_BOUNDS_US.len());
        self.buckets[i] += 1;
        self.sum_us = self.sum_us.saturating_add(us);
    }

    /// Probes recorded.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }
}

/// The bytes a `--check-send`/`--check-receive` string stands for:
/// `\n`, `\r`, `\t`, `\0`, `\\` and `\xHH` escapes, the rest as
/// written.
pub fn unescape(s: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        out.push(match bytes.next() {
            Some(b'n') => b'\n',
            Some(b'r') => b'\r',
            Some(b't') => b'\t',
            Some(b'0') => 0,
            Some(b'\\') => b'\\',
            Some(b'x') => {
                let hex = [bytes.next(), bytes.next()];
                let digits: Option<Vec<u8>> = hex.into_iter().collect();
                match digits
                    .and_then(|d| String::from_utf8(d).ok())
                    .and_then(|d| u8::from_str_radix(&d, 16).ok())
                {
                    Some(v) => v,
                    None => return Err(format!("invalid \\x escape in `{s}'")),
                }
            }
            Some(c) => return Err(format!("invalid escape `\\{}' in `{s}'", c as char)),
            None => return Err(format!("trailing backslash in `{s}'")),
        });
    }
    Ok(out)
}

/// A service's quorum rule (`--quorum`, `--sorry-server`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Quorum {
    /// Least sum of up servers' weights (`None`: [`DEFAULT_QUORUM`]).
    pub weight: Option<u32>,
    /// Where new connections go while the quorum is not met.
    pub sorry: Option<SocketAddr>,
}

impl Quorum {
    /// The effective quorum weight.
    pub fn weight(&self) -> u32 {
        self.weight.unwrap_or(DEFAULT_QUORUM)
    }
}

/// The identity of one probe: which server, checked how. Services whose
/// real servers resolve to the same key share the probe.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProbeKey {
    /// Real server address.
    pub addr: IpAddr,
    /// Port probed (the spec's, else the real server's).
    pub port: u16,
    /// For `vip` checks: the VIP and its port (the probe's destination),
    /// else `None`.
    pub vip: Option<(IpAddr, u16)>,
    /// The check.
    pub spec: CheckSpec,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_sets_parse_merge_and_print() {
        let s = StatusSet::parse("301, 200-299,250-302").unwrap();
        assert_eq!(s.to_string(), "200-302");
        assert!(s.contains(200) && s.contains(302) && !s.contains(303));
        assert_eq!(StatusSet::parse("200,204").unwrap().to_string(), "200,204");
        assert!(StatusSet::parse("99").is_err());
        assert!(StatusSet::parse("300-200").is_err());
        assert!(StatusSet::parse("").is_err());
        assert!(StatusSet::default().contains(204));
    }

    #[test]
    fn server_options_override_service_options_field_by_field() {
        let svc = CheckConf {
            kind: Some(CheckKind::Http),
            path: Some("/health".into()),
            interval: Some(1),
            ..CheckConf::default()
        };
        let rs = CheckConf {
            path: Some("/rs".into()),
            fall: Some(2),
            ..CheckConf::default()
        };
        let spec = rs.resolve(&svc);
        assert_eq!(spec.kind, CheckKind::Http);
        assert_eq!(spec.path, "/rs");
        assert_eq!((spec.interval, spec.timeout), (1, DEFAULT_TIMEOUT));
        assert_eq!((spec.rise, spec.fall), (DEFAULT_RISE, 2));
        assert_eq!(spec.on_fail, OnFail::Inhibit);
        assert!(!CheckConf::default()
            .resolve(&CheckConf::default())
            .enabled());
    }

    #[test]
    fn escapes_and_histogram() {
        assert_eq!(unescape("GET /\\r\\n\\x41\\\\").unwrap(), b"GET /\r\nA\\");
        assert!(unescape("a\\q").is_err());
        assert!(unescape("a\\x4").is_err());
        assert!(unescape("a\\").is_err());
        let mut h = LatencyHist::default();
        h.record(400);
        h.record(2_000_000);
        h.record(1_000);
        assert_eq!((h.buckets[0], h.buckets[1], h.buckets[10]), (1, 1, 1));
        assert_eq!((h.count(), h.sum_us), (3, 2_001_400));
    }

    #[test]
    fn names_round_trip() {
        for k in CheckKind::ALL {
            assert_eq!(CheckKind::parse(k.name()), Some(k));
        }
        assert_eq!(CheckKind::parse("smtp"), None);
        assert_eq!(OnFail::parse("remove"), Some(OnFail::Remove));
        assert_eq!(HttpMethod::parse("head"), Some(HttpMethod::Head));
        assert!(Health::Falling.is_up() && !Health::Rising.is_up());
    }
}
