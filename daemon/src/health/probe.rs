//! The probes: one blocking function per check kind, each bounded by a
//! deadline (socket timeouts set from what is left of it, a command killed
//! when it passes), run on the checker's probe threads.
//!
//! Probes only ever address the configured real server (or, for `vip`,
//! the VIP through that server's MAC or tunnel): the key carries nothing
//! else to aim at.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use regex::bytes::Regex;
use xvs_config::check::{CheckKind, CheckSpec, HttpMethod, ProbeKey};

use super::{tls, vip, ProbeCtx};

/// A probe's result: up (with the weight an `exec` check asked for), or
/// down and why.
pub type Outcome = Result<Option<i32>, String>;

/// Most bytes of a reply or HTTP response read.
pub const MAX_REPLY: usize = 1 << 20;

/// Run the probe of `key` with `ctx`, giving up at `deadline`.
pub fn run(key: &ProbeKey, ctx: &ProbeCtx, deadline: Instant) -> Outcome {
    let addr = SocketAddr::new(key.addr, key.port);
    let spec = &key.spec;
    match spec.kind {
        CheckKind::None => Ok(None),
        CheckKind::Tcp => tcp(addr, spec, deadline),
        CheckKind::Http => http(addr, spec, false, deadline),
        CheckKind::Https => http(addr, spec, true, deadline),
        CheckKind::Udp => udp(addr, spec, deadline),
        CheckKind::Ping => vip::ping(key.addr, deadline),
        CheckKind::Exec => exec(key, ctx, deadline),
        CheckKind::Vip => vip::probe(key, ctx, deadline),
    }
}

/// What is left until `deadline`, or the timeout error.
pub fn left(deadline: Instant) -> Result<Duration, String> {
    let d = deadline.saturating_duration_since(Instant::now());
    if d < Duration::from_millis(1) {
        Err("timeout".into())
    } else {
        Ok(d)
    }
}

fn timed_out(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// The bytes `--check-send`/`--check-receive` stand for.
fn bytes(s: &str) -> Result<Vec<u8>, String> {
    xvs_config::check::unescape(s)
}

fn regex(spec: &CheckSpec) -> Result<Option<Regex>, String> {
    spec.regex
        .as_deref()
        .map(|r| Regex::new(r).map_err(|e| format!("bad regex: {e}")))
        .transpose()
}

/// Whether `reply` contains `receive` and matches `re` (each if given).
fn reply_matches(reply: &[u8], receive: Option<&[u8]>, re: Option<&Regex>) -> bool {
    receive.is_none_or(|r| r.is_empty() || reply.windows(r.len()).any(|w| w == r))
        && re.is_none_or(|re| re.is_match(reply))
}

/// Connect to `addr` within the deadline, with both socket timeouts set to
/// what is left of it.
fn connect(addr: SocketAddr, deadline: Instant) -> Result<TcpStream, String> {
    let s = TcpStream::connect_timeout(&addr, left(deadline)?).map_err(|e| {
        if timed_out(&e) {
            "connect: timeout".to_string()
        } else {
            format!("connect: {e}")
        }
    })?;
    let _ = s.set_nodelay(true);
    Ok(s)
}

/// Something to read from and write to under a deadline.
trait Timed: Read + Write {
    fn set_timeouts(&mut self, t: Duration) -> io::Result<()>;
}

impl Timed for TcpStream {
    fn set_timeouts(&mut self, t: Duration) -> io::Result<()> {
        self.set_read_timeout(Some(t))?;
        self.set_write_timeout(Some(t))
    }
}

fn send_all<S: Timed>(s: &mut S, data: &[u8], deadline: Instant) -> Result<(), String> {
    let mut sent = 0;
    while sent < data.len() {
        s.set_timeouts(left(deadline)?)
            .map_err(|e| format!("send: {e}"))?;
        match s.write(&data[sent..]) {
            Ok(0) => return Err("send: connection closed".into()),
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if timed_out(&e) => return Err("send: timeout".into()),
            Err(e) => return Err(format!("send: {e}")),
        }
    }
    s.flush().map_err(|e| format!("send: {e}"))
}

/// Read until `done` says the reply is complete, the peer closes, or
/// [`MAX_REPLY`] bytes came; a timeout before any of these is an error.
fn read_reply<S: Timed>(
    s: &mut S,
    deadline: Instant,
    done: impl Fn(&[u8]) -> bool,
) -> Result<Vec<u8>, String> {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        if done(&buf) || buf.len() >= MAX_REPLY {
            return Ok(buf);
        }
        let t = left(deadline).map_err(|_| format!("timeout after {} byte(s)", buf.len()))?;
        s.set_timeouts(t).map_err(|e| format!("receive: {e}"))?;
        match s.read(&mut chunk) {
            Ok(0) => return Ok(buf),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // A TLS peer that closes without close_notify: the end.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(buf),
            Err(e) if timed_out(&e) => {
                return Err(format!("timeout after {} byte(s)", buf.len()));
            }
            Err(e) => return Err(format!("receive: {e}")),
        }
    }
}

fn tcp(addr: SocketAddr, spec: &CheckSpec, deadline: Instant) -> Outcome {
    let re = regex(spec)?;
    let mut s = connect(addr, deadline)?;
    if let Some(send) = &spec.send {
        send_all(&mut s, &bytes(send)?, deadline)?;
    }
    if spec.receive.is_none() && re.is_none() {
        return Ok(None);
    }
    let receive = spec.receive.as_deref().map(bytes).transpose()?;
    let matches = |b: &[u8]| reply_matches(b, receive.as_deref(), re.as_ref());
    let reply = read_reply(&mut s, deadline, matches)?;
    if matches(&reply) {
        Ok(None)
    } else {
        Err(format!("unexpected reply {:?}", excerpt(&reply)))
    }
}

/// The first bytes of `b`, for an error message.
fn excerpt(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(&b[..b.len().min(40)]).into_owned();
    if b.len() > 40 {
        format!("{s}...")
    } else {
        s
    }
}

/// The `Host:` value of a request to `addr` without `--check-host`.
fn default_host(addr: SocketAddr, tls: bool) -> String {
    let ip = match addr.ip() {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("[{a}]"),
    };
    if addr.port() == if tls { 443 } else { 80 } {
        ip
    } else {
        format!("{ip}:{}", addr.port())
    }
}

/// The request an `http`/`https` check sends (HTTP/1.0: the server closes
/// after the response, which is never chunked).
pub fn request(spec: &CheckSpec, host: &str) -> String {
    let path = if spec.path.starts_with('/') {
        spec.path.clone()
    } else {
        format!("/{}", spec.path)
    };
    format!(
        "{} {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: xvsd-check\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        spec.method.name()
    )
}

/// Whether `buf` holds a whole response: the headers, and for a GET the
/// `Content-Length` bytes of body if the header says how many.
fn response_complete(buf: &[u8], head: bool) -> bool {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    if head {
        return true;
    }
    let headers = String::from_utf8_lossy(&buf[..end]);
    let len = headers.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse::<usize>().ok())
            .flatten()
    });
    len.is_some_and(|n| buf.len() - (end + 4) >= n)
}

/// Judge an HTTP response against the check's status set and body regex.
pub fn judge_response(resp: &[u8], spec: &CheckSpec) -> Outcome {
    let line_end = resp
        .windows(2)
        .position(|w| w == b"\r\n")
        .unwrap_or(resp.len());
    let line = String::from_utf8_lossy(&resp[..line_end]);
    let mut words = line.split_whitespace();
    let code = match (words.next(), words.next()) {
        (Some(v), Some(c)) if v.starts_with("HTTP/") => c.parse::<u16>().ok(),
        _ => None,
    };
    let Some(code) = code else {
        return Err(if resp.is_empty() {
            "empty response".into()
        } else {
            format!("not an HTTP response: {:?}", excerpt(resp))
        });
    };
    if !spec.expect.contains(code) {
        return Err(format!("status {code}, expected {}", spec.expect));
    }
    if let Some(re) = regex(spec)? {
        let body = resp
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(&[][..], |p| &resp[p + 4..]);
        if !re.is_match(body) {
            return Err(format!(
                "status {code}, body does not match /{}/",
                re.as_str()
            ));
        }
    }
    Ok(None)
}

fn http(addr: SocketAddr, spec: &CheckSpec, secure: bool, deadline: Instant) -> Outcome {
    let host = spec
        .host
        .clone()
        .unwrap_or_else(|| default_host(addr, secure));
    let req = request(spec, &host);
    let head = spec.method == HttpMethod::Head;
    let tcp = connect(addr, deadline)?;
    let resp = if secure {
        let mut s = tls::connect(tcp, addr.ip(), spec)?;
        send_all(&mut s, req.as_bytes(), deadline)?;
        read_reply(&mut s, deadline, |b| response_complete(b, head))?
    } else {
        let mut s = tcp;
        send_all(&mut s, req.as_bytes(), deadline)?;
        read_reply(&mut s, deadline, |b| response_complete(b, head))?
    };
    judge_response(&resp, spec)
}

impl Timed for tls::Stream {
    fn set_timeouts(&mut self, t: Duration) -> io::Result<()> {
        self.sock.set_timeouts(t)
    }
}

fn udp(addr: SocketAddr, spec: &CheckSpec, deadline: Instant) -> Outcome {
    let re = regex(spec)?;
    let local: SocketAddr = match addr {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let s = UdpSocket::bind(local).map_err(|e| format!("socket: {e}"))?;
    s.connect(addr).map_err(|e| format!("connect: {e}"))?;
    let payload = spec
        .send
        .as_deref()
        .map(bytes)
        .transpose()?
        .unwrap_or_default();
    s.send(&payload).map_err(|e| format!("send: {e}"))?;
    let receive = spec.receive.as_deref().map(bytes).transpose()?;
    let expect_reply = receive.is_some() || re.is_some();
    let mut buf = vec![0u8; 65536];
    loop {
        let Ok(t) = left(deadline) else {
            return if expect_reply {
                Err("no reply".into())
            } else {
                Ok(None)
            };
        };
        s.set_read_timeout(Some(t))
            .map_err(|e| format!("receive: {e}"))?;
        match s.recv(&mut buf) {
            Ok(n) => {
                if reply_matches(&buf[..n], receive.as_deref(), re.as_ref()) {
                    return Ok(None);
                }
                if !expect_reply {
                    return Ok(None);
                }
                return Err(format!("unexpected reply {:?}", excerpt(&buf[..n])));
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                return Err("port unreachable".into());
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted || timed_out(&e) => {}
            Err(e) => return Err(format!("receive: {e}")),
        }
    }
}

/// `exec`: `sh -c CMD xvs-check VIP VPORT RIP RPORT` (the arguments are
/// also in `XVS_VIP`, `XVS_VPORT`, `XVS_RIP`, `XVS_RPORT`), in its own
/// process group, killed with it at the deadline.
fn exec(key: &ProbeKey, ctx: &ProbeCtx, deadline: Instant) -> Outcome {
    use std::os::unix::process::CommandExt;
    let Some(cmd) = key.spec.cmd.as_deref() else {
        return Err("no --check-cmd".into());
    };
    let (vip, vport) = ctx.service.clone().unwrap_or_default();
    let (rip, rport) = (key.addr.to_string(), key.port.to_string());
    let vport = vport.to_string();
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(cmd)
        .arg("xvs-check")
        .args([&vip, &vport, &rip, &rport])
        .env("XVS_VIP", &vip)
        .env("XVS_VPORT", &vport)
        .env("XVS_RIP", &rip)
        .env("XVS_RPORT", &rport)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot run /bin/sh: {e}"))?;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                return match status.code() {
                    Some(0) => Ok(None),
                    Some(1) => Err("exit 1".into()),
                    Some(c @ 2..=255) => Ok(Some(c - 2)),
                    Some(c) => Err(format!("exit {c}")),
                    None => Err("killed by a signal".into()),
                };
            }
            Ok(None) => {}
            Err(e) => return Err(format!("wait: {e}")),
        }
        if Instant::now() >= deadline {
            // The whole group: a shell's children go with it.
            let _ = Command::new("/bin/sh")
                .arg("-c")
                .arg(format!("kill -9 -- -{}", child.id()))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let _ = child.kill();
            let _ = child.wait();
            return Err("timeout: command killed".into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};
    use xvs_config::check::{CheckConf, StatusSet};

    fn spec(f: impl FnOnce(&mut CheckConf)) -> CheckSpec {
        let mut c = CheckConf {
            kind: Some(CheckKind::Tcp),
            timeout: Some(2),
            ..CheckConf::default()
        };
        f(&mut c);
        c.resolve(&CheckConf::default())
    }

    fn key(addr: SocketAddr, spec: CheckSpec) -> ProbeKey {
        ProbeKey {
            addr: addr.ip(),
            port: addr.port(),
            vip: None,
            spec,
        }
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(2)
    }

    /// A one-shot server on loopback answering every connection with
    /// `reply` (after reading the request's first bytes).
    fn server(reply: &'static [u8]) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { return };
                let mut b = [0u8; 1024];
                let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
                let _ = s.read(&mut b);
                let _ = s.write_all(reply);
            }
        });
        addr
    }

    #[test]
    fn tcp_connect_send_and_expect() {
        let addr = server(b"+PONG\r\n");
        let ctx = ProbeCtx::default();
        assert_eq!(run(&key(addr, spec(|_| {})), &ctx, soon()), Ok(None));
        let expect = spec(|c| {
            c.send = Some(r"PING\r\n".into());
            c.receive = Some("PONG".into());
        });
        assert_eq!(run(&key(addr, expect), &ctx, soon()), Ok(None));
        let wrong = spec(|c| c.regex = Some("^-ERR".into()));
        let e = run(&key(addr, wrong), &ctx, soon()).unwrap_err();
        assert!(e.contains("unexpected reply"), "{e}");
        let closed = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let e = run(&key(closed, spec(|_| {})), &ctx, soon()).unwrap_err();
        assert!(e.starts_with("connect:") && e.contains("refused"), "{e}");
    }

    #[test]
    fn http_status_and_body() {
        let ok = server(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nhealthy");
        let bad = server(b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n");
        let ctx = ProbeCtx::default();
        let http = |f: fn(&mut CheckConf)| {
            spec(|c| {
                c.kind = Some(CheckKind::Http);
                f(c);
            })
        };
        assert_eq!(run(&key(ok, http(|_| {})), &ctx, soon()), Ok(None));
        let e = run(&key(bad, http(|_| {})), &ctx, soon()).unwrap_err();
        assert_eq!(e, "status 500, expected 200-299");
        let s = http(|c| c.expect = Some(StatusSet::parse("500").unwrap()));
        assert_eq!(run(&key(bad, s), &ctx, soon()), Ok(None));
        let s = http(|c| c.regex = Some("heal+thy$".into()));
        assert_eq!(run(&key(ok, s), &ctx, soon()), Ok(None));
        let s = http(|c| c.regex = Some("sick".into()));
        let e = run(&key(ok, s), &ctx, soon()).unwrap_err();
        assert!(e.contains("does not match /sick/"), "{e}");
        let r = request(&http(|c| c.path = Some("health".into())), "example");
        assert!(
            r.starts_with("GET /health HTTP/1.0\r\nHost: example\r\n"),
            "{r}"
        );
    }

    #[test]
    fn http_head_ends_at_the_headers_and_host_defaults() {
        // A server that answers HEAD with headers and keeps the connection
        // open: the response is complete at the blank line, not at close.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut b = [0u8; 1024];
            let n = s.read(&mut b).unwrap();
            tx.send(String::from_utf8_lossy(&b[..n]).into_owned())
                .unwrap();
            let _ = s.write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n");
            std::thread::sleep(Duration::from_secs(3));
        });
        let head = spec(|c| {
            c.kind = Some(CheckKind::Http);
            c.method = Some(HttpMethod::Head);
            c.path = Some("/ping".into());
        });
        let t0 = Instant::now();
        assert_eq!(
            run(&key(addr, head), &ProbeCtx::default(), soon()),
            Ok(None)
        );
        assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
        let req = rx.recv().unwrap();
        let want = format!("HEAD /ping HTTP/1.0\r\nHost: 127.0.0.1:{}\r\n", addr.port());
        assert!(req.starts_with(&want), "{req}");
        // IPv6 servers: the Host header brackets the address.
        let v6: SocketAddr = "[2001:2::11]:80".parse().unwrap();
        assert_eq!(default_host(v6, false), "[2001:2::11]");
        let v6: SocketAddr = "[2001:2::11]:8443".parse().unwrap();
        assert_eq!(default_host(v6, true), "[2001:2::11]:8443");
    }

    #[test]
    fn tcp_and_udp_probe_ipv6_servers() {
        let ctx = ProbeCtx::default();
        let l = TcpListener::bind("[::1]:0").unwrap();
        let addr = l.local_addr().unwrap();
        assert_eq!(run(&key(addr, spec(|_| {})), &ctx, soon()), Ok(None));
        drop(l);
        let e = run(&key(addr, spec(|_| {})), &ctx, soon()).unwrap_err();
        assert!(e.contains("refused"), "{e}");
        let closed = UdpSocket::bind("[::1]:0").unwrap().local_addr().unwrap();
        let udp = spec(|c| {
            c.kind = Some(CheckKind::Udp);
            c.timeout = Some(1);
        });
        let e = run(&key(closed, udp), &ctx, soon()).unwrap_err();
        assert_eq!(e, "port unreachable", "ICMPv6 port unreachable");
    }

    #[test]
    fn udp_refused_silent_and_reply() {
        let ctx = ProbeCtx::default();
        let udp = |f: fn(&mut CheckConf)| {
            spec(|c| {
                c.kind = Some(CheckKind::Udp);
                c.timeout = Some(1);
                f(c);
            })
        };
        let closed = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let e = run(&key(closed, udp(|_| {})), &ctx, soon()).unwrap_err();
        assert_eq!(e, "port unreachable");
        let echo = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = echo.local_addr().unwrap();
        std::thread::spawn(move || {
            let mut b = [0u8; 512];
            while let Ok((n, from)) = echo.recv_from(&mut b) {
                let _ = echo.send_to(&b[..n], from);
            }
        });
        let s = udp(|c| {
            c.send = Some("hello".into());
            c.receive = Some("hello".into());
        });
        assert_eq!(run(&key(addr, s), &ctx, soon()), Ok(None));
        let s = udp(|c| {
            c.send = Some("hello".into());
            c.receive = Some("bye".into());
        });
        assert!(run(&key(addr, s), &ctx, soon()).is_err());
        // No reply expected, none refused: up once the timeout passes.
        let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
        let s = udp(|_| {});
        let t = Instant::now() + Duration::from_millis(300);
        assert_eq!(
            run(&key(silent.local_addr().unwrap(), s), &ctx, t),
            Ok(None)
        );
    }

    #[test]
    fn exec_exit_codes_arguments_and_timeout() {
        let addr: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let ctx = ProbeCtx {
            service: Some(("198.18.0.10".into(), 80)),
            ..ProbeCtx::default()
        };
        let exec = |cmd: &str| {
            let cmd = cmd.to_string();
            key(
                addr,
                spec(move |c| {
                    c.kind = Some(CheckKind::Exec);
                    c.cmd = Some(cmd);
                }),
            )
        };
        assert_eq!(run(&exec("exit 0"), &ctx, soon()), Ok(None));
        assert_eq!(run(&exec("exit 1"), &ctx, soon()), Err("exit 1".into()));
        assert_eq!(run(&exec("exit 7"), &ctx, soon()), Ok(Some(5)));
        let args =
            r#"[ "$1 $2 $3 $4" = "198.18.0.10 80 127.0.0.1 8080" ] && [ "$XVS_RIP" = 127.0.0.1 ]"#;
        assert_eq!(run(&exec(args), &ctx, soon()), Ok(None));
        let t0 = Instant::now();
        let t = t0 + Duration::from_millis(300);
        let e = run(&exec("sleep 5; exit 0"), &ctx, t).unwrap_err();
        assert_eq!(e, "timeout: command killed");
        assert!(t0.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn exec_gets_ipv6_addresses_bare() {
        let addr: SocketAddr = "[2001:2::11]:8080".parse().unwrap();
        let ctx = ProbeCtx {
            service: Some(("2001:2::10".into(), 80)),
            ..ProbeCtx::default()
        };
        let args =
            r#"[ "$1 $2 $3 $4" = "2001:2::10 80 2001:2::11 8080" ] && [ "$XVS_RIP" = 2001:2::11 ]"#;
        let k = key(
            addr,
            spec(|c| {
                c.kind = Some(CheckKind::Exec);
                c.cmd = Some(args.into());
            }),
        );
        assert_eq!(run(&k, &ctx, soon()), Ok(None));
    }

    /// Runs `openssl ARGS` in `dir`, panicking with its stderr on failure.
    fn openssl(dir: &std::path::Path, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .output()
            .expect("openssl (scripts/lib.sh installs it)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A CA, a certificate it signed for `checked.test`, and another CA.
    fn pki(dir: &std::path::Path) {
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        for ca in ["ca", "other"] {
            let (key, pem, subj) = (
                format!("{ca}.key"),
                format!("{ca}.pem"),
                format!("/CN=xvs {ca}"),
            );
            let mut a = vec!["req", "-x509"];
            a.extend(ec);
            a.extend(["-keyout", &key, "-out", &pem, "-days", "2", "-subj", &subj]);
            openssl(dir, &a);
        }
        let mut a = vec!["req"];
        a.extend(ec);
        a.extend([
            "-keyout",
            "leaf.key",
            "-out",
            "leaf.csr",
            "-subj",
            "/CN=checked.test",
        ]);
        openssl(dir, &a);
        std::fs::write(dir.join("ext"), "subjectAltName=DNS:checked.test\n").unwrap();
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                "leaf.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "leaf.pem",
                "-days",
                "2",
                "-extfile",
                "ext",
            ],
        );
    }

    /// Kills the TLS server and removes its files on drop.
    struct TlsServer(std::process::Child, std::path::PathBuf);

    impl Drop for TlsServer {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
            let _ = std::fs::remove_dir_all(&self.1);
        }
    }

    #[test]
    fn https_without_and_with_a_ca() {
        let dir = std::env::temp_dir().join(format!("xvs-https-check-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        pki(&dir);
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let accept = format!("127.0.0.1:{port}");
        let child = Command::new("openssl")
            .args(["s_server", "-quiet", "-www", "-accept", &accept])
            .args(["-cert", "leaf.pem", "-key", "leaf.key"])
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl s_server");
        let _server = TlsServer(child, dir.clone());
        let addr: SocketAddr = accept.parse().unwrap();
        let t0 = Instant::now();
        while TcpStream::connect(addr).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "s_server did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let ctx = ProbeCtx::default();
        let ca = dir.join("ca.pem").display().to_string();
        let other = dir.join("other.pem").display().to_string();
        let https = |host: Option<&str>, ca: Option<&str>| {
            let (host, ca) = (host.map(str::to_string), ca.map(str::to_string));
            key(
                addr,
                spec(move |c| {
                    c.kind = Some(CheckKind::Https);
                    c.host = host;
                    c.ca = ca;
                    c.regex = Some("s_server".into());
                }),
            )
        };
        // No CA: any certificate; the page (s_server's status) matches.
        assert_eq!(run(&https(None, None), &ctx, soon()), Ok(None));
        assert_eq!(
            run(&https(Some("checked.test"), Some(&ca)), &ctx, soon()),
            Ok(None)
        );
        let e = run(&https(Some("wrong.test"), Some(&ca)), &ctx, soon()).unwrap_err();
        assert!(e.contains("certificate"), "{e}");
        let e = run(&https(Some("checked.test"), Some(&other)), &ctx, soon()).unwrap_err();
        assert!(e.contains("certificate"), "{e}");
    }
}
