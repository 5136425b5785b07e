//! `xvs-stream`: long-lived TCP connections for xvs's end-to-end tests,
//! and a minimal HTTP GET (for the metrics endpoint inside a namespace).
//!
//! ```text
//! xvs-stream serve --port P [--lifetime-s S]
//! xvs-stream client --connect ADDR:PORT --conns N --duration-ms D
//!                   [--timeout-ms T] [--size B] [--interval-ms I]
//! xvs-stream get --connect ADDR:PORT --path /metrics [--timeout-ms T]
//! ```
//!
//! The server echoes every line on every connection (one thread per
//! connection, at most 64) and prints `ready` once bound. The client opens
//! N connections, then on each one sends a B-byte line and waits for its
//! echo, again and again until D ms have passed; it checks every echo byte
//! for byte and prints `conns=N exchanges=E failed=F max_ms=M` plus one
//! `conn I exchanges=E` line per connection, and exits 1 if any exchange
//! failed. With `--interval-ms I` each connection pauses I ms between
//! exchanges (a long-lived, mostly idle stream). It prints `connected`
//! once every connection is open. Every wait is bounded by T (default
//! 3000 ms).

#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const MAX_LINE: usize = 65536;
const MAX_CONNS: usize = 64;

fn arg<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

fn num(args: &[String], name: &str, default: u64) -> Result<u64, String> {
    match arg(args, name) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|_| format!("{name}: bad number {v:?}")),
    }
}

fn addr(args: &[String]) -> Result<SocketAddr, String> {
    arg(args, "--connect")
        .ok_or("--connect is required")?
        .parse()
        .map_err(|_| "--connect: bad ADDR:PORT".to_string())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let r = match args.first().map(String::as_str) {
        Some("serve") => serve(&args[1..]),
        Some("client") => client(&args[1..]),
        Some("get") => get(&args[1..]),
        _ => Err("usage: xvs-stream serve|client|get ...".to_string()),
    };
    match r {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xvs-stream: {e}");
            ExitCode::from(2)
        }
    }
}

fn serve(args: &[String]) -> Result<ExitCode, String> {
    let port = num(args, "--port", 0)? as u16;
    let lifetime = Duration::from_secs(num(args, "--lifetime-s", 300)?);
    let l = TcpListener::bind(("0.0.0.0", port)).map_err(|e| format!("bind: {e}"))?;
    println!("ready tcp {}", l.local_addr().map_err(|e| e.to_string())?);
    let _ = std::io::stdout().flush();
    let start = Instant::now();
    let live = Arc::new(AtomicUsize::new(0));
    std::thread::spawn(move || {
        std::thread::sleep(lifetime);
        std::process::exit(0);
    });
    for conn in l.incoming() {
        if start.elapsed() > lifetime {
            break;
        }
        let Ok(conn) = conn else { continue };
        if live.load(Ordering::Relaxed) >= MAX_CONNS {
            continue;
        }
        live.fetch_add(1, Ordering::Relaxed);
        let live = live.clone();
        std::thread::spawn(move || {
            let _ = echo(conn, lifetime);
            live.fetch_sub(1, Ordering::Relaxed);
        });
    }
    Ok(ExitCode::SUCCESS)
}

fn echo(conn: TcpStream, lifetime: Duration) -> std::io::Result<()> {
    conn.set_read_timeout(Some(lifetime))?;
    conn.set_nodelay(true)?;
    let mut w = conn.try_clone()?;
    let mut r = BufReader::new(conn).take(u64::MAX);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = (&mut r)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut line)?;
        if n == 0 || line.last() != Some(&b'\n') {
            return Ok(());
        }
        w.write_all(&line)?;
    }
}

struct ConnResult {
    exchanges: u64,
    failed: bool,
    max: Duration,
    error: Option<String>,
}

fn client(args: &[String]) -> Result<ExitCode, String> {
    let target = addr(args)?;
    let conns = num(args, "--conns", 1)?.clamp(1, MAX_CONNS as u64) as usize;
    let duration = Duration::from_millis(num(args, "--duration-ms", 1000)?);
    let timeout = Duration::from_millis(num(args, "--timeout-ms", 3000)?.max(1));
    let size = num(args, "--size", 100)?.clamp(8, MAX_LINE as u64 - 1) as usize;
    let interval = Duration::from_millis(num(args, "--interval-ms", 0)?.min(60_000));
    let mut streams = Vec::new();
    for i in 0..conns {
        let s = TcpStream::connect_timeout(&target, timeout)
            .map_err(|e| format!("connection {i}: connect: {e}"))?;
        s.set_read_timeout(Some(timeout))
            .map_err(|e| e.to_string())?;
        s.set_write_timeout(Some(timeout))
            .map_err(|e| e.to_string())?;
        s.set_nodelay(true).map_err(|e| e.to_string())?;
        streams.push(s);
    }
    println!("connected");
    let _ = std::io::stdout().flush();
    let end = Instant::now() + duration;
    let threads: Vec<_> = streams
        .into_iter()
        .enumerate()
        .map(|(i, s)| std::thread::spawn(move || exchange_loop(i, s, end, size, interval)))
        .collect();
    let results: Vec<ConnResult> = threads
        .into_iter()
        .map(|t| {
            t.join().unwrap_or(ConnResult {
                exchanges: 0,
                failed: true,
                max: Duration::ZERO,
                error: Some("thread panicked".into()),
            })
        })
        .collect();
    let total: u64 = results.iter().map(|r| r.exchanges).sum();
    let failed = results.iter().filter(|r| r.failed).count();
    let max = results.iter().map(|r| r.max).max().unwrap_or_default();
    for (i, r) in results.iter().enumerate() {
        println!("conn {i} exchanges={}", r.exchanges);
        if let Some(e) = &r.error {
            eprintln!("xvs-stream: connection {i}: {e}");
        }
    }
    println!(
        "conns={conns} exchanges={total} failed={failed} max_ms={}",
        max.as_millis()
    );
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn exchange_loop(
    i: usize,
    s: TcpStream,
    end: Instant,
    size: usize,
    interval: Duration,
) -> ConnResult {
    let mut res = ConnResult {
        exchanges: 0,
        failed: false,
        max: Duration::ZERO,
        error: None,
    };
    let Ok(mut w) = s.try_clone() else {
        res.failed = true;
        res.error = Some("cannot clone the socket".into());
        return res;
    };
    let mut r = BufReader::new(s);
    let mut reply = Vec::with_capacity(size);
    while Instant::now() < end {
        let mut msg = format!("{i}:{}:", res.exchanges).into_bytes();
        msg.resize(size - 1, b'x');
        msg.push(b'\n');
        let t0 = Instant::now();
        reply.clear();
        let outcome = w
            .write_all(&msg)
            .and_then(|_| (&mut r).take(size as u64).read_until(b'\n', &mut reply));
        match outcome {
            Ok(_) if reply == msg => {
                res.exchanges += 1;
                res.max = res.max.max(t0.elapsed());
                if !interval.is_zero() {
                    std::thread::sleep(interval.min(end.saturating_duration_since(Instant::now())));
                }
            }
            Ok(_) => {
                res.failed = true;
                res.error = Some(format!("exchange {}: wrong echo", res.exchanges));
                return res;
            }
            Err(e) => {
                res.failed = true;
                res.error = Some(format!("exchange {}: {e}", res.exchanges));
                return res;
            }
        }
    }
    res
}

fn get(args: &[String]) -> Result<ExitCode, String> {
    let target = addr(args)?;
    let path = arg(args, "--path").unwrap_or("/");
    let timeout = Duration::from_millis(num(args, "--timeout-ms", 3000)?.max(1));
    let mut s =
        TcpStream::connect_timeout(&target, timeout).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    s.take(64 << 20)
        .read_to_end(&mut out)
        .map_err(|e| e.to_string())?;
    std::io::stdout()
        .write_all(&out)
        .map_err(|e| e.to_string())?;
    Ok(ExitCode::SUCCESS)
}
