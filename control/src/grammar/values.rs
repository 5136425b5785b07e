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

/// Parse `a.b.c.d[:port]`, `[v6addr]:port` or a bare IPv6 address.
/// Names are never resolved: anything else is `None`.
///
/// As in ipvsadm, brackets are only for an address with a port: `[v6addr]`
/// alone is refused, a bare IPv6 address has no port (`2001:2::1:80` is
/// the address `2001:2::1:80`), and zone ids (`fe80::1%eth0`) are not
/// addresses. ipvsadm takes `[a.b.c.d]:port` as `a.b.c.d` without its
/// port (it looks for the port again in what the bracket kept); that is a
/// slip, and here brackets hold IPv6 addresses only.
pub fn parse_addr_port(s: &str) -> Option<(IpAddr, Option<u16>)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (addr, after) = rest.split_once(']')?;
        let ip: Ipv6Addr = addr.parse().ok()?;
        let port = parse_port(after.strip_prefix(':')?)?;
        return Some((IpAddr::V6(ip), Some(port)));
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
/// IPv6 takes a prefix length 1..128 only (ipvsadm reads it with `atoi`,
/// so `64x` passes there as 64; here the whole value must be the number).
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
