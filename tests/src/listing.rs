//! Parsing `xvsadm -L` listings (ipvsadm's format) for assertions.
//!
//! Tests check numbers through this parser rather than by string matching so
//! that column padding is checked once (in the control crate's own tests)
//! and end-to-end tests state intent: "300 connections", "no outbound packets".

/// One destination line (`  -> addr:port ...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedDest {
    /// `addr:port` as printed.
    pub addr: String,
    /// The remaining columns, whitespace-split.
    pub fields: Vec<String>,
}

/// One service line and its destinations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedService {
    /// `TCP`, `UDP`, `SCTP` or `FWM`.
    pub proto: String,
    /// `addr:port` (or the mark for `FWM`) as printed.
    pub addr: String,
    /// The remaining columns, whitespace-split.
    pub fields: Vec<String>,
    /// Destinations in listing order.
    pub dests: Vec<ListedDest>,
}

/// Counters of a `--stats` row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Connections scheduled.
    pub conns: u64,
    /// Packets client → server.
    pub in_pkts: u64,
    /// Packets server → client (0 in DR and TUN).
    pub out_pkts: u64,
    /// Bytes client → server.
    pub in_bytes: u64,
    /// Bytes server → client.
    pub out_bytes: u64,
}

impl Stats {
    /// Reads the five counters of a `--stats` row.
    pub fn from_fields(fields: &[String]) -> Option<Self> {
        if fields.len() != 5 {
            return None;
        }
        let n: Vec<u64> = fields
            .iter()
            .map(|f| parse_count(f))
            .collect::<Option<_>>()?;
        Some(Stats {
            conns: n[0],
            in_pkts: n[1],
            out_pkts: n[2],
            in_bytes: n[3],
            out_bytes: n[4],
        })
    }
}

/// Parses a counter as ipvsadm prints it: plain, or scaled with a `K`, `M`,
/// `G` or `T` suffix (then the value is approximate).
pub fn parse_count(s: &str) -> Option<u64> {
    let (digits, scale) = match s.chars().last()? {
        'K' => (&s[..s.len() - 1], 1_000),
        'M' => (&s[..s.len() - 1], 1_000_000),
        'G' => (&s[..s.len() - 1], 1_000_000_000),
        'T' => (&s[..s.len() - 1], 1_000_000_000_000),
        _ => (s, 1),
    };
    digits.parse::<u64>().ok()?.checked_mul(scale)
}

impl ListedService {
    /// The row's `--stats` counters.
    pub fn stats(&self) -> Option<Stats> {
        Stats::from_fields(&self.fields)
    }

    /// The destination printed as `addr` (`198.18.0.11:80`).
    pub fn dest(&self, addr: &str) -> Option<&ListedDest> {
        self.dests.iter().find(|d| d.addr == addr)
    }
}

impl ListedDest {
    /// The row's `--stats` counters.
    pub fn stats(&self) -> Option<Stats> {
        Stats::from_fields(&self.fields)
    }
}

/// Parses any `-L`/`-Ln` listing (plain, `--stats`, `--rate`, ...): header
/// lines are skipped, every other line is a service or a destination.
pub fn parse(listing: &str) -> Vec<ListedService> {
    let mut services: Vec<ListedService> = Vec::new();
    for line in listing.lines() {
        if line.starts_with("IP Virtual Server")
            || line.starts_with("Prot ")
            || line.starts_with("  -> RemoteAddress")
            || line.trim().is_empty()
        {
            continue;
        }
        let mut words = line.split_whitespace().map(str::to_owned);
        if line.starts_with("  -> ") {
            let _arrow = words.next();
            let addr = words.next().unwrap_or_default();
            if let Some(svc) = services.last_mut() {
                svc.dests.push(ListedDest {
                    addr,
                    fields: words.collect(),
                });
            }
        } else {
            let proto = words.next().unwrap_or_default();
            let addr = words.next().unwrap_or_default();
            services.push(ListedService {
                proto,
                addr,
                fields: words.collect(),
                dests: Vec::new(),
            });
        }
    }
    services
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATS: &str = "\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes
  -> RemoteAddress:Port
TCP  198.18.0.100:80                   300     1500        0   123456        0
  -> 198.18.0.11:80                    100      500        0    41152        0
  -> 198.18.0.12:80                    100      500        0    41152        0
  -> 198.18.0.13:80                    100      500        0   123456K       0
";

    #[test]
    fn parses_stats_listing() {
        let l = parse(STATS);
        assert_eq!(l.len(), 1);
        let svc = &l[0];
        assert_eq!(
            (svc.proto.as_str(), svc.addr.as_str()),
            ("TCP", "198.18.0.100:80")
        );
        let s = svc.stats().unwrap();
        assert_eq!(
            (s.conns, s.in_pkts, s.out_pkts, s.in_bytes),
            (300, 1500, 0, 123456)
        );
        assert_eq!(svc.dests.len(), 3);
        assert_eq!(
            svc.dest("198.18.0.12:80").unwrap().stats().unwrap().conns,
            100
        );
        assert_eq!(
            svc.dest("198.18.0.13:80")
                .unwrap()
                .stats()
                .unwrap()
                .in_bytes,
            123_456_000
        );
    }

    #[test]
    fn parses_plain_listing() {
        let l = parse(
            "IP Virtual Server version 1.2.1 (size=4096)\n\
             Prot LocalAddress:Port Scheduler Flags\n  \
             -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n\
             TCP  198.18.0.100:80 wrr persistent 360\n  \
             -> 198.18.0.11:80               Route   3      0          0         \n",
        );
        assert_eq!(l[0].fields, ["wrr", "persistent", "360"]);
        assert_eq!(l[0].dests[0].fields, ["Route", "3", "0", "0"]);
        assert_eq!(l[0].stats(), None);
    }
}
