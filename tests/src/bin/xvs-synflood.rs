//! `xvs-synflood`: a SYN flood for xvs's end-to-end tests, from spoofed
//! sources, to show that a full connection table locks no real client out.
//!
//! ```text
//! xvs-synflood --iface IF --src-mac MAC --dst-mac MAC --vip A --port P
//!              --count N --secs S [--rate R] [--seed X]
//! ```
//!
//! Sends at most N TCP SYNs to `A:P` within S seconds (at R frames per
//! second, or as fast as the packet socket takes them when R is 0), each
//! from a random address of 198.18.0.0/15 outside 198.18.0.0/24 (the test
//! LAN's hosts) and a random port, so that every SYN opens a connection of
//! its own. Prints `sent N secs S pps R` at the end; exits 1 if the socket
//! cannot be opened, 2 on a usage error.
//!
//! The spoofed addresses exist nowhere: the real servers must route them
//! to a blackhole so that their SYN-ACKs go nowhere.

#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::time::{Duration, Instant};
use xvs_dataplane::io::rawsock::PacketSocket;

/// Ethernet + IPv4 + TCP headers, no payload, no options.
const LEN: usize = 14 + 20 + 20;

fn arg<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

fn parse<T: std::str::FromStr>(
    args: &[String],
    name: &str,
    default: Option<T>,
) -> Result<T, String> {
    match arg(args, name) {
        Some(v) => v.parse().map_err(|_| format!("{name}: bad value {v:?}")),
        None => default.ok_or(format!("{name} is required")),
    }
}

fn mac(s: &str) -> Result<[u8; 6], String> {
    let mut m = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut m {
        let p = parts.next().ok_or(format!("bad MAC {s:?}"))?;
        *b = u8::from_str_radix(p, 16).map_err(|_| format!("bad MAC {s:?}"))?;
    }
    if parts.next().is_some() {
        return Err(format!("bad MAC {s:?}"));
    }
    Ok(m)
}

/// The one's complement sum of `b` as 16-bit big-endian words, unfolded.
fn sum16(b: &[u8]) -> u32 {
    b.chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum()
}

fn fold(mut s: u32) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// xorshift64*: the sources need only look random to the director.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// A source in 198.18.0.0/15 outside 198.18.0.0/24.
fn spoofed(r: &mut Rng) -> [u8; 4] {
    loop {
        let host = (r.next() >> 40) as u32 & 0x1_ffff;
        if host >> 8 != 0 {
            return (0xC612_0000 | host).to_be_bytes();
        }
    }
}

/// Write a SYN from `src:sport` (sequence `seq`) into `f`, whose Ethernet
/// header, destination and constant fields are already there.
fn stamp(f: &mut [u8; LEN], src: [u8; 4], sport: u16, seq: u32) {
    f[26..30].copy_from_slice(&src);
    f[24..26].copy_from_slice(&[0, 0]);
    let ip = !fold(sum16(&f[14..34]));
    f[24..26].copy_from_slice(&ip.to_be_bytes());
    f[34..36].copy_from_slice(&sport.to_be_bytes());
    f[38..42].copy_from_slice(&seq.to_be_bytes());
    f[50..52].copy_from_slice(&[0, 0]);
    // Pseudo-header: addresses, protocol, TCP length; then the segment.
    let l4 = sum16(&f[26..34]) + 6 + 20 + sum16(&f[34..LEN]);
    f[50..52].copy_from_slice(&(!fold(l4)).to_be_bytes());
}

fn run(args: &[String]) -> Result<ExitCode, String> {
    let iface: String = parse(args, "--iface", None)?;
    let src_mac = mac(arg(args, "--src-mac").ok_or("--src-mac is required")?)?;
    let dst_mac = mac(arg(args, "--dst-mac").ok_or("--dst-mac is required")?)?;
    let vip: std::net::Ipv4Addr = parse(args, "--vip", None)?;
    let port: u16 = parse(args, "--port", None)?;
    let count: u64 = parse(args, "--count", None)?;
    let secs: f64 = parse(args, "--secs", None)?;
    let rate: f64 = parse(args, "--rate", Some(0.0))?;
    let seed: u64 = parse(args, "--seed", Some(0x9E37_79B9_7F4A_7C15))?;

    let sock = match PacketSocket::bind(&iface, 0) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("xvs-synflood: packet socket on {iface}: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    let mut f = [0u8; LEN];
    f[0..6].copy_from_slice(&dst_mac);
    f[6..12].copy_from_slice(&src_mac);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    // IPv4: version 4, IHL 5, total length 40, DF, TTL 64, TCP.
    f[14] = 0x45;
    f[16..18].copy_from_slice(&40u16.to_be_bytes());
    f[20] = 0x40;
    f[22] = 64;
    f[23] = 6;
    f[30..34].copy_from_slice(&vip.octets());
    // TCP: destination port, data offset 5, SYN, window 64240.
    f[36..38].copy_from_slice(&port.to_be_bytes());
    f[46] = 5 << 4;
    f[47] = 0x02;
    f[48..50].copy_from_slice(&64240u16.to_be_bytes());

    let mut rng = Rng(seed | 1);
    let start = Instant::now();
    let limit = Duration::from_secs_f64(secs.max(0.0));
    let mut sent = 0u64;
    let mut errors = 0u64;
    while sent < count {
        let elapsed = start.elapsed();
        if elapsed >= limit {
            break;
        }
        if rate > 0.0 {
            let due = Duration::from_secs_f64(sent as f64 / rate);
            if due > elapsed {
                std::thread::sleep((due - elapsed).min(Duration::from_millis(5)));
                continue;
            }
        }
        let src = spoofed(&mut rng);
        let r = rng.next();
        let sport = 1024 + (r % 64000) as u16;
        stamp(&mut f, src, sport, (r >> 32) as u32);
        match sock.send(&f) {
            Ok(_) => sent += 1,
            // A full socket buffer: try again (bounded by the deadline).
            Err(_) => {
                errors += 1;
                std::thread::yield_now();
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "sent {sent} secs {secs:.2} pps {:.0} errors {errors}",
        sent as f64 / secs.max(1e-9)
    );
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("xvs-synflood: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamped_syn_parses_with_good_checksums() {
        let mut f = [0u8; LEN];
        f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        f[14] = 0x45;
        f[16..18].copy_from_slice(&40u16.to_be_bytes());
        f[22] = 64;
        f[23] = 6;
        f[30..34].copy_from_slice(&[198, 18, 0, 100]);
        f[36..38].copy_from_slice(&80u16.to_be_bytes());
        f[46] = 5 << 4;
        f[47] = 0x02;
        let mut r = Rng(7);
        for _ in 0..1000 {
            let src = spoofed(&mut r);
            assert_eq!(src[..2], [198, 18 | (src[1] & 1)]);
            assert!(src[1] == 19 || src[2] != 0, "{src:?} is on the LAN");
            stamp(&mut f, src, 4321, 99);
            // A correct checksum sums (with itself) to 0xffff.
            assert_eq!(fold(sum16(&f[14..34])), 0xffff);
            let l4 = sum16(&f[26..34]) + 6 + 20 + sum16(&f[34..LEN]);
            assert_eq!(fold(l4), 0xffff);
        }
    }
}
