//! A listing too large for one message (`-Lnc` with a million
//! connections) reaches xvsadm in pieces, printed as they arrive: every
//! line arrives, and neither side holds the listing whole.

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::net::UnixListener;
use std::process::{Command, Stdio};

use xvs_control::proto::{self, MAX_FRAME};
use xvs_control::{ConnEntry, Control, Runtime};

const CONNS: u32 = 1_000_000;

/// A runtime with a million connections, made up as they are pulled.
struct Million;

fn entry(i: u32) -> ConnEntry {
    ConnEntry {
        proto: 6,
        template: false,
        state: "ESTABLISHED",
        expire_secs: 900,
        cip: IpAddr::V4(Ipv4Addr::from(0xC612_0000 + i)),
        cport: 1024 + (i % 60_000) as u16,
        vip: IpAddr::V4(Ipv4Addr::new(198, 19, 0, 1)),
        vport: 80,
        dip: IpAddr::V4(Ipv4Addr::new(198, 19, 1, (i % 200) as u8 + 1)),
        dport: 80,
    }
}

impl Runtime for Million {
    fn connections(&self) -> Vec<ConnEntry> {
        (0..CONNS).map(entry).collect()
    }

    fn connections_iter(&self) -> Box<dyn Iterator<Item = ConnEntry> + Send> {
        Box::new((0..CONNS).map(entry))
    }
}

/// Peak resident set of process `pid` so far (`VmHWM`), in KiB; 0 once
/// it has exited.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_million_connections_are_listed_in_bounded_memory() {
    let dir = std::env::temp_dir().join(format!("xvs-stream-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("xvsd.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let server = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let req = proto::read_request(&stream, MAX_FRAME).unwrap();
        let reply = Control::new().execute_reply(&req, &Million);
        proto::write_reply(&stream, reply).unwrap();
    });
    let mut child = Command::new(env!("CARGO_BIN_EXE_xvsadm"))
        .args(["--socket", path.to_str().unwrap(), "-L", "-n", "-c"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut rss = 0;
    let mut lines = 0u64;
    let mut bytes = 0u64;
    let mut first = String::new();
    let mut last = String::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        bytes += line.len() as u64 + 1;
        if lines == 0 {
            first = line.clone();
        }
        lines += 1;
        if lines.is_multiple_of(50_000) {
            rss = rss.max(peak_rss_kib(pid));
        }
        last = line;
    }
    let status = child.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    server.join().unwrap();
    assert!(status.success(), "xvsadm: {status}: {err}");
    assert_eq!(err, "");
    assert_eq!(first, "IPVS connection entries");
    assert_eq!(lines, 2 + u64::from(CONNS));
    let mut want = String::new();
    xvs_control::listing::push_conn(&mut want, &entry(CONNS - 1));
    assert_eq!(format!("{last}\n"), want);
    // More than one message could carry...
    assert!(bytes > MAX_FRAME as u64, "{bytes} bytes");
    // ...yet xvsadm never held it: its peak resident set, sampled while
    // it printed, stays far below the listing's size.
    assert!(rss > 0, "no sample of xvsadm's resident set");
    assert!(
        rss < 32 * 1024,
        "xvsadm peaked at {rss} KiB for {bytes} bytes"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
