//! `xvs-node`: the real servers and the client of xvs's end-to-end tests.
//!
//! Plain kernel sockets on purpose: whatever xvs does to a frame, a real
//! TCP/UDP stack has to accept it. Every wait is bounded (per-operation
//! timeouts, a total deadline for the client, a lifetime for servers) so a
//! broken data plane fails a test instead of hanging it.
//!
//! ```text
//! xvs-node serve --name NAME --port P [--bind ADDR] [--udp] [--lifetime-s S]
//!                [--idle-timeout-s I]
//! xvs-node client --connect ADDR:PORT --count N [--timeout-ms T]
//!                 [--deadline-ms D] [--max-failures F] [--udp] [--size B]
//! xvs-node hold --connect ADDR:PORT --count N [--timeout-ms T] [--hold-max-ms H]
//! ```
//!
//! The TCP server reads one request line, answers with `NAME\n` and closes.
//! `--size B` pads each UDP request to B bytes (a datagram too big for a
//! path, to see what the path answers).
//!
//! The UDP server answers every datagram with `NAME\n` (bind it to the VIP
//! for DR, so replies leave from the VIP). The client makes N sequential
//! requests, one connection (or one fresh UDP socket) each, and prints one
//! `NAME COUNT` line per name plus `total=N ok=N failed=N`; it exits 1 if
//! any request failed, 2 on a usage error. The TCP server waits up to
//! `--idle-timeout-s` (default 5) for a request line.
//!
//! `hold` makes long-lived connections: it opens N connections one after
//! the other without sending anything, prints `held K` (K connected), then
//! waits for a line (or EOF) on stdin, or `--hold-max-ms` (default 60000);
//! then it completes the request/reply exchange on every connection and
//! reports like `client` (a connection that failed to open counts as
//! failed). Serve with an idle timeout longer than the hold.

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::ExitCode;
use std::time::{Duration, Instant};

const USAGE: &str = "usage:
  xvs-node serve --name NAME --port P [--bind ADDR] [--udp] [--lifetime-s S]
  xvs-node client --connect ADDR:PORT --count N [--timeout-ms T] [--deadline-ms D]
                  [--max-failures F] [--udp] [--size B]
  xvs-node hold --connect ADDR:PORT --count N [--timeout-ms T] [--hold-max-ms H]";

/// The request line the client sends (the server reads up to a newline).
const REQUEST: &[u8] = b"xvs\n";
/// Longest reply or request accepted.
const MAX_MSG: u64 = 256;
/// Failure messages printed to stderr before only counting.
const MAX_REPORTED_FAILURES: u64 = 10;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("serve") => Opts::parse(&args[1..]).and_then(|o| serve(&o)),
        Some("client") => Opts::parse(&args[1..]).and_then(|o| client(&o)),
        Some("hold") => Opts::parse(&args[1..]).and_then(|o| hold(&o)),
        _ => Err(Fail::Usage(
            "a command (serve, client or hold) is required".into(),
        )),
    };
    match result {
        Ok(code) => code,
        Err(Fail::Usage(msg)) => {
            eprintln!("xvs-node: {msg}\n{USAGE}");
            ExitCode::from(2)
        }
        Err(Fail::Io(msg)) => {
            eprintln!("xvs-node: {msg}");
            ExitCode::from(1)
        }
    }
}

enum Fail {
    Usage(String),
    Io(String),
}

#[derive(Default)]
struct Opts {
    name: Option<String>,
    port: Option<u16>,
    bind: Option<IpAddr>,
    udp: bool,
    lifetime: Option<Duration>,
    connect: Option<SocketAddr>,
    count: Option<u64>,
    timeout: Option<Duration>,
    deadline: Option<Duration>,
    max_failures: Option<u64>,
    idle_timeout: Option<Duration>,
    hold_max: Option<Duration>,
    size: Option<usize>,
}

impl Opts {
    fn parse(args: &[String]) -> Result<Self, Fail> {
        fn num<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, Fail> {
            v.parse()
                .map_err(|_| Fail::Usage(format!("invalid value {v:?} for {flag}")))
        }
        let mut o = Opts::default();
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            if flag == "--udp" {
                o.udp = true;
                continue;
            }
            let v = it
                .next()
                .ok_or_else(|| Fail::Usage(format!("{flag} needs a value")))?;
            match flag.as_str() {
                "--name" => o.name = Some(v.clone()),
                "--port" => o.port = Some(num(flag, v)?),
                "--bind" => o.bind = Some(num(flag, v)?),
                "--lifetime-s" => o.lifetime = Some(Duration::from_secs(num(flag, v)?)),
                "--connect" => o.connect = Some(num(flag, v)?),
                "--count" => o.count = Some(num(flag, v)?),
                "--timeout-ms" => o.timeout = Some(Duration::from_millis(num(flag, v)?)),
                "--deadline-ms" => o.deadline = Some(Duration::from_millis(num(flag, v)?)),
                "--max-failures" => o.max_failures = Some(num(flag, v)?),
                "--idle-timeout-s" => o.idle_timeout = Some(Duration::from_secs(num(flag, v)?)),
                "--hold-max-ms" => o.hold_max = Some(Duration::from_millis(num(flag, v)?)),
                "--size" => o.size = Some(num(flag, v)?),
                _ => return Err(Fail::Usage(format!("unknown option {flag}"))),
            }
        }
        Ok(o)
    }
}

fn io_err(what: &str) -> impl Fn(std::io::Error) -> Fail + '_ {
    move |e| Fail::Io(format!("{what}: {e}"))
}

fn serve(o: &Opts) -> Result<ExitCode, Fail> {
    let name = o
        .name
        .clone()
        .ok_or_else(|| Fail::Usage("serve needs --name".into()))?;
    let port = o
        .port
        .ok_or_else(|| Fail::Usage("serve needs --port".into()))?;
    let addr = SocketAddr::new(o.bind.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)), port);
    // A safety net: a server outlives no test run even if its guard is lost.
    let lifetime = o.lifetime.unwrap_or(Duration::from_secs(900));
    let end = Instant::now() + lifetime;
    let reply = format!("{name}\n");
    if o.udp {
        let sock = UdpSocket::bind(addr).map_err(io_err("bind"))?;
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .map_err(io_err("set timeout"))?;
        println!("ready udp {addr}");
        let mut buf = [0u8; 2048];
        while Instant::now() < end {
            if let Ok((_, peer)) = sock.recv_from(&mut buf) {
                let _ = sock.send_to(reply.as_bytes(), peer);
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let idle = o.idle_timeout.unwrap_or(Duration::from_secs(5));
    if idle.is_zero() {
        return Err(Fail::Usage("--idle-timeout-s must be positive".into()));
    }
    let listener = TcpListener::bind(addr).map_err(io_err("bind"))?;
    listener
        .set_nonblocking(true)
        .map_err(io_err("set nonblocking"))?;
    println!("ready tcp {addr}");
    while Instant::now() < end {
        match listener.accept() {
            Ok((stream, _)) => {
                let reply = reply.clone();
                // One short-lived thread per connection: a stuck peer never
                // blocks the others, and every socket call has a timeout.
                std::thread::spawn(move || answer(stream, reply.as_bytes(), idle));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => eprintln!("xvs-node {name}: accept: {e}"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads the request line (bounded, waiting at most `idle` per read),
/// writes the reply, closes.
fn answer(mut stream: TcpStream, reply: &[u8], idle: Duration) {
    let timeout = Some(idle);
    if stream.set_nonblocking(false).is_err()
        || stream.set_read_timeout(timeout).is_err()
        || stream.set_write_timeout(timeout).is_err()
    {
        return;
    }
    let mut req = Vec::new();
    let mut byte = [0u8; 1];
    // Read to the newline so that nothing unread is left when we close
    // (closing with unread data would send RST instead of FIN).
    while req.len() < MAX_MSG as usize {
        match stream.read(&mut byte) {
            Ok(1) => {
                req.push(byte[0]);
                if byte[0] == b'\n' {
                    break;
                }
            }
            _ => break,
        }
    }
    let _ = stream.write_all(reply);
    let _ = stream.shutdown(std::net::Shutdown::Write);
    // Wait for the client's FIN (bounded) so the close is orderly.
    let _ = stream.take(MAX_MSG).read_to_end(&mut Vec::new());
}

fn client(o: &Opts) -> Result<ExitCode, Fail> {
    let target = o
        .connect
        .ok_or_else(|| Fail::Usage("client needs --connect ADDR:PORT".into()))?;
    let count = o
        .count
        .ok_or_else(|| Fail::Usage("client needs --count N".into()))?;
    let timeout = o.timeout.unwrap_or(Duration::from_millis(2000));
    if timeout.is_zero() {
        return Err(Fail::Usage("--timeout-ms must be positive".into()));
    }
    let deadline = Instant::now() + o.deadline.unwrap_or(Duration::from_secs(120));
    let max_failures = o.max_failures.unwrap_or(u64::MAX);

    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let (mut ok, mut failed) = (0u64, 0u64);
    for i in 0..count {
        if Instant::now() >= deadline || failed >= max_failures {
            let why = if failed >= max_failures {
                "too many failures"
            } else {
                "deadline passed"
            };
            eprintln!(
                "xvs-node client: {why}; {} requests not attempted",
                count - i
            );
            failed += count - i;
            break;
        }
        let result = if o.udp {
            udp_request(target, timeout, o.size.unwrap_or(0))
        } else {
            tcp_request(target, timeout)
        };
        match result {
            Ok(name) => {
                ok += 1;
                *counts.entry(name).or_default() += 1;
            }
            Err(e) => {
                failed += 1;
                if failed <= MAX_REPORTED_FAILURES {
                    eprintln!("xvs-node client: request {i} to {target}: {e}");
                }
            }
        }
    }
    Ok(report(&counts, count, ok, failed))
}

/// Prints the per-name counts and the summary line; the exit code.
fn report(counts: &BTreeMap<String, u64>, total: u64, ok: u64, failed: u64) -> ExitCode {
    for (name, n) in counts {
        println!("{name} {n}");
    }
    println!("total={total} ok={ok} failed={failed}");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn hold(o: &Opts) -> Result<ExitCode, Fail> {
    let target = o
        .connect
        .ok_or_else(|| Fail::Usage("hold needs --connect ADDR:PORT".into()))?;
    let count = o
        .count
        .ok_or_else(|| Fail::Usage("hold needs --count N".into()))?;
    let timeout = o.timeout.unwrap_or(Duration::from_millis(3000));
    if timeout.is_zero() {
        return Err(Fail::Usage("--timeout-ms must be positive".into()));
    }
    let hold_max = o.hold_max.unwrap_or(Duration::from_secs(60));

    let mut conns = Vec::new();
    let mut failed = 0u64;
    for i in 0..count {
        match TcpStream::connect_timeout(&target, timeout) {
            Ok(s) => conns.push(s),
            Err(e) => {
                failed += 1;
                if failed <= MAX_REPORTED_FAILURES {
                    eprintln!("xvs-node hold: connection {i} to {target}: {e}");
                }
            }
        }
    }
    println!("held {}", conns.len());
    let _ = std::io::stdout().flush();

    // Release on a stdin line or EOF, or after hold_max at the latest.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
        let _ = tx.send(());
    });
    let _ = rx.recv_timeout(hold_max);

    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let mut ok = 0u64;
    for (i, s) in conns.into_iter().enumerate() {
        match exchange(s, timeout) {
            Ok(name) => {
                ok += 1;
                *counts.entry(name).or_default() += 1;
            }
            Err(e) => {
                failed += 1;
                if failed <= MAX_REPORTED_FAILURES {
                    eprintln!("xvs-node hold: exchange on held connection {i}: {e}");
                }
            }
        }
    }
    Ok(report(&counts, count, ok, failed))
}

fn reply_name(buf: &[u8]) -> Result<String, String> {
    let name = String::from_utf8_lossy(buf).trim().to_owned();
    if name.is_empty() {
        Err("empty reply".into())
    } else {
        Ok(name)
    }
}

fn tcp_request(target: SocketAddr, timeout: Duration) -> Result<String, String> {
    let s = TcpStream::connect_timeout(&target, timeout).map_err(|e| format!("connect: {e}"))?;
    exchange(s, timeout)
}

/// Sends the request line on a connected stream and reads the reply to EOF.
fn exchange(mut s: TcpStream, timeout: Duration) -> Result<String, String> {
    s.set_read_timeout(Some(timeout))
        .and_then(|()| s.set_write_timeout(Some(timeout)))
        .map_err(|e| format!("set timeout: {e}"))?;
    s.write_all(REQUEST).map_err(|e| format!("write: {e}"))?;
    let mut buf = Vec::new();
    (&mut s)
        .take(MAX_MSG)
        .read_to_end(&mut buf)
        .map_err(|e| format!("read: {e}"))?;
    reply_name(&buf)
}

fn udp_request(target: SocketAddr, timeout: Duration, size: usize) -> Result<String, String> {
    let any: SocketAddr = match target {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    // A fresh socket per request: a new source port, hence a new flow.
    let s = UdpSocket::bind(any).map_err(|e| format!("bind: {e}"))?;
    s.connect(target).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| format!("set timeout: {e}"))?;
    let mut req = REQUEST.to_vec();
    req.resize(size.max(REQUEST.len()), b'.');
    s.send(&req).map_err(|e| format!("send: {e}"))?;
    let mut buf = [0u8; MAX_MSG as usize];
    let n = s.recv(&mut buf).map_err(|e| format!("recv: {e}"))?;
    reply_name(&buf[..n])
}
