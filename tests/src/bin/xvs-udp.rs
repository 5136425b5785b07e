//! `xvs-udp`: raw UDP datagrams for the connection sync tests, shown and
//! sent as hex so that the test itself reads and writes every byte.
//!
//! ```text
//! xvs-udp listen --port P [--group G --iface-addr A] [--duration-ms D]
//! xvs-udp send --to ADDR:PORT [--from A] [--ttl T] HEX...
//! ```
//!
//! `listen` binds 0.0.0.0:P (joining multicast group G on the interface
//! with address A if given), prints `ready`, then `dgram SRC:PORT HEX` for
//! every datagram, for at most D ms (default 60000). `send` sends each HEX
//! argument as one datagram from A (an ephemeral port) and prints `sent N`.

#![forbid(unsafe_code)]

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::process::ExitCode;
use std::time::{Duration, Instant};

fn arg<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

fn parse<T: std::str::FromStr>(args: &[String], name: &str) -> Result<Option<T>, String> {
    arg(args, name)
        .map(|v| v.parse().map_err(|_| format!("{name}: bad value {v:?}")))
        .transpose()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Result<Vec<u8>, String> {
    if !s.len().is_multiple_of(2) {
        return Err(format!("odd hex length: {s}"));
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(|_| format!("bad hex: {s}")))
        .collect()
}

fn listen(args: &[String]) -> Result<(), String> {
    let port: u16 = parse(args, "--port")?.ok_or("--port is required")?;
    let dur: u64 = parse(args, "--duration-ms")?.unwrap_or(60_000);
    let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port)).map_err(|e| e.to_string())?;
    if let Some(g) = parse::<Ipv4Addr>(args, "--group")? {
        let a: Ipv4Addr = parse(args, "--iface-addr")?.ok_or("--iface-addr is required")?;
        sock.join_multicast_v4(&g, &a).map_err(|e| e.to_string())?;
    }
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .map_err(|e| e.to_string())?;
    let out = std::io::stdout();
    writeln!(out.lock(), "ready").map_err(|e| e.to_string())?;
    let end = Instant::now() + Duration::from_millis(dur);
    let mut buf = vec![0u8; 65536];
    while Instant::now() < end {
        if let Ok((n, from)) = sock.recv_from(&mut buf) {
            let mut o = out.lock();
            writeln!(o, "dgram {from} {}", hex(&buf[..n])).map_err(|e| e.to_string())?;
            o.flush().map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

fn send(args: &[String]) -> Result<(), String> {
    let to: SocketAddr = parse(args, "--to")?.ok_or("--to is required")?;
    let from: Ipv4Addr = parse(args, "--from")?.unwrap_or(Ipv4Addr::UNSPECIFIED);
    let ttl: u32 = parse(args, "--ttl")?.unwrap_or(1);
    let sock = UdpSocket::bind((from, 0)).map_err(|e| e.to_string())?;
    sock.set_multicast_ttl_v4(ttl).map_err(|e| e.to_string())?;
    let mut skip = false;
    let mut n = 0;
    for a in args {
        if skip {
            skip = false;
            continue;
        }
        if a.starts_with("--") {
            skip = true;
            continue;
        }
        sock.send_to(&unhex(a)?, to).map_err(|e| e.to_string())?;
        n += 1;
        // Apart, so a receiver reading them one by one misses none.
        std::thread::sleep(Duration::from_millis(5));
    }
    println!("sent {n}");
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let r = match args.first().map(String::as_str) {
        Some("listen") => listen(&args[1..]),
        Some("send") => send(&args[1..]),
        _ => Err("usage: xvs-udp listen|send ...".into()),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xvs-udp: {e}");
            ExitCode::FAILURE
        }
    }
}
