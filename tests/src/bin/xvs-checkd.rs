//! `xvs-checkd`: a real server for the health-check tests, answering both
//! the clients' requests and the director's probes, and telling which
//! probes came.
//!
//! ```text
//! xvs-checkd --name NAME --ports P[,P...] [--state FILE] [--lifetime-s S]
//! ```
//!
//! On every port (TCP, all addresses): a request line that is not HTTP
//! (`xvs-node client`'s) gets `NAME\n`, as `xvs-node serve` answers; an
//! HTTP request (`GET`/`HEAD`) gets the status and body that FILE holds
//! when it comes (`CODE BODY...` on its first line; no FILE or no such
//! file: `200 ok NAME`) and prints `probe http PORT PATH`; a connection
//! closed before sending a byte (a TCP connect check) prints `probe tcp
//! PORT`. It prints `ready` once every port is bound, and stops after
//! `--lifetime-s` (default 300).

#![forbid(unsafe_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct Opts {
    name: String,
    ports: Vec<u16>,
    state: Option<String>,
    lifetime: Duration,
}

fn parse() -> Result<Opts, String> {
    let mut o = Opts {
        name: String::new(),
        ports: Vec::new(),
        state: None,
        lifetime: Duration::from_secs(300),
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let v = it.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--name" => o.name = v.clone(),
            "--ports" => {
                for p in v.split(',') {
                    o.ports
                        .push(p.parse().map_err(|_| format!("bad port {p:?}"))?);
                }
            }
            "--state" => o.state = Some(v.clone()),
            "--lifetime-s" => {
                o.lifetime = Duration::from_secs(v.parse().map_err(|_| format!("bad {v:?}"))?)
            }
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    if o.name.is_empty() || o.ports.is_empty() {
        return Err("--name and --ports are required".into());
    }
    Ok(o)
}

fn main() -> ExitCode {
    let o = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("xvs-checkd: {e}");
            return ExitCode::from(2);
        }
    };
    let out = Arc::new(Mutex::new(std::io::stdout()));
    let mut listeners = Vec::new();
    for &p in &o.ports {
        match TcpListener::bind(("0.0.0.0", p)) {
            Ok(l) => listeners.push((p, l)),
            Err(e) => {
                eprintln!("xvs-checkd: bind port {p}: {e}");
                return ExitCode::from(1);
            }
        }
    }
    println!("ready {}", o.name);
    let end = Instant::now() + o.lifetime;
    let name = Arc::new(o.name);
    let state = Arc::new(o.state);
    for (port, l) in listeners {
        let (name, state, out) = (name.clone(), state.clone(), out.clone());
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                let (name, state, out) = (name.clone(), state.clone(), out.clone());
                std::thread::spawn(move || answer(s, port, &name, state.as_deref(), &out));
            }
        });
    }
    std::thread::sleep(end.saturating_duration_since(Instant::now()));
    ExitCode::SUCCESS
}

fn say(out: &Mutex<std::io::Stdout>, line: &str) {
    let mut o = out.lock().unwrap_or_else(|e| e.into_inner());
    let _ = writeln!(o, "{line}");
    let _ = o.flush();
}

fn answer(
    mut s: TcpStream,
    port: u16,
    name: &str,
    state: Option<&str>,
    out: &Mutex<std::io::Stdout>,
) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(5)));
    let mut req = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => req.extend_from_slice(&buf[..n]),
        }
        let http = req.starts_with(b"GET ") || req.starts_with(b"HEAD ");
        let complete = if http {
            req.windows(4).any(|w| w == b"\r\n\r\n")
        } else {
            req.contains(&b'\n')
        };
        if complete || req.len() > 8192 {
            break;
        }
    }
    if req.is_empty() {
        say(out, &format!("probe tcp {port}"));
        return;
    }
    if !(req.starts_with(b"GET ") || req.starts_with(b"HEAD ")) {
        let _ = s.write_all(format!("{name}\n").as_bytes());
        return;
    }
    let line = String::from_utf8_lossy(&req);
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    say(out, &format!("probe http {port} {path}"));
    let st = state
        .and_then(|f| std::fs::read_to_string(f).ok())
        .unwrap_or_else(|| format!("200 ok {name}"));
    let first = st.lines().next().unwrap_or("200");
    let (code, body) = first.split_once(' ').unwrap_or((first, ""));
    let head = req.starts_with(b"HEAD ");
    let mut resp = format!(
        "HTTP/1.1 {code} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if !head {
        resp.push_str(body);
    }
    let _ = s.write_all(resp.as_bytes());
}
