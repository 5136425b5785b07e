//! Option values: numbers, ports, addresses, scheduler flags, netmasks and
//! timeouts, each with ipvsadm's acceptance rules (no name resolution).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use xvs_scheduler::{SCHED_FLAG_1, SCHED_FLAG_2, SCHED_FLAG_3};

use super::{err, ParseError, MAX_TIMEOUT};

/// Parse an unsigned decimal number in `min..=max` (ipvsadm's
/// `string_to_number`: the whole string must be the number).
pub fn parse_number(s: &str, min: u64, max: u64) -> Option<u64> {
    let digits = s.strip_prefix('+').unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let v: u64 = digits.parse().ok()?;
    (min..=max).contains(&v).then_some(v)
}

pub(super) fn parse_port(s: &str) -> Option<u16> {
    parse_number(s, 0, 65535).and_then(|v| u16::try_from(v).ok())
}

/// Parse `a.b.c.d[:port]`, `[v6addr][:port]` or a bare IPv6 address.
/// Names are never resolved: anything else is `None`.
pub fn parse_addr_port(s: &str) -> Option<(IpAddr, Option<u16>)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (addr, after) = rest.split_once(']')?;
        let ip: Ipv6Addr = addr.parse().ok()?;
        let port = match after {
            "" => None,
            p => Some(parse_port(p.strip_prefix(':')?)?),
        };
        return Some((IpAddr::V6(ip), port));
    }
    if let Ok(ip) = s.parse::<Ipv6Addr>() {
        return Some((IpAddr::V6(ip), None));
    }
    match s.split_once(':') {
        Some((addr, port)) => {
            let ip: Ipv4Addr = addr.parse().ok()?;
            Some((IpAddr::V4(ip), Some(parse_port(port)?)))
        }
        None => Some((IpAddr::V4(s.parse().ok()?), None)),
    }
}

/// Parse `-b`'s comma list into `SCHED_FLAG_*` bits.
pub fn parse_sched_flags(s: &str) -> Option<u32> {
    let mut flags = 0;
    for word in s.split(',') {
        flags |= match word {
            "sh-fallback" | "mh-fallback" | "flag-1" => SCHED_FLAG_1,
            "sh-port" | "mh-port" | "flag-2" => SCHED_FLAG_2,
            "mh-sorted" | "flag-3" => SCHED_FLAG_3,
            _ => return None,
        };
    }
    Some(flags)
}

/// Parse `-M`: a prefix length, or (IPv4) a contiguous dotted mask.
pub(super) fn parse_netmask(s: &str, v6: bool) -> Option<u8> {
    if v6 {
        return parse_number(s, 1, 128).and_then(|v| u8::try_from(v).ok());
    }
    if let Some(v) = parse_number(s, 0, 32) {
        return u8::try_from(v).ok();
    }
    let mask = u32::from(s.parse::<Ipv4Addr>().ok()?);
    let prefix = mask.leading_ones();
    // Contiguous masks only: a mask with holes has no prefix length.
    (mask.checked_shl(prefix).unwrap_or(0) == 0).then_some(prefix as u8)
}

pub(super) fn parse_timeout(s: &str, min: u32) -> Result<u32, ParseError> {
    match parse_number(s, u64::from(min), u64::from(MAX_TIMEOUT)) {
        Some(v) => Ok(v as u32),
        None => err(format!("invalid timeout value `{s}' specified")),
    }
}
