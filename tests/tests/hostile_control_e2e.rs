//! A corpus of hostile control clients against a real xvsd (control only:
//! no interface, so it starts in milliseconds): requests over the size
//! limit or claiming 4 GiB, malformed and truncated messages, arguments
//! that are not UTF-8, two thousand clients at once, clients that connect
//! and never send. Each must get a clear error or be closed; meanwhile
//! the daemon keeps answering everyone else, and at the end it still runs
//! with its configuration unchanged (`-S` before and after) and exits
//! cleanly. The test prints what it tried and what each case got.

use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use xvs_control::proto::{self, Request, Response, MAX_FRAME, REQUEST_DEADLINE};
use xvs_tests::daemon::Xvsd;

/// A configuration to keep: two services, three servers, one of each
/// method.
const CONFIG: &[&[&str]] = &[
    &["-A", "-t", "198.18.0.100:80", "-s", "rr"],
    &["-a", "-t", "198.18.0.100:80", "-r", "198.18.0.11:80", "-g"],
    &[
        "-a",
        "-t",
        "198.18.0.100:80",
        "-r",
        "198.18.0.12:8080",
        "-m",
    ],
    &["-A", "-u", "198.18.0.100:53", "-s", "wlc", "-p", "60"],
    &[
        "-a",
        "-u",
        "198.18.0.100:53",
        "-r",
        "198.18.0.13:53",
        "-i",
        "-w",
        "3",
    ],
];

/// What one case of the corpus did, for the summary.
struct Outcome {
    case: &'static str,
    clients: usize,
    result: String,
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn connect(sock: &Path) -> UnixStream {
    let s = UnixStream::connect(sock).expect("connect to the control socket");
    s.set_read_timeout(Some(REQUEST_DEADLINE + Duration::from_secs(10)))
        .expect("read timeout");
    s
}

/// Send `bytes` raw and read the daemon's response, if it gives one.
fn raw(sock: &Path, bytes: &[u8]) -> Option<Response> {
    let mut s = connect(sock);
    // The daemon may answer and close before it has read it all.
    let _ = s.write_all(bytes);
    proto::read_frame(&mut s).ok()
}

/// A frame: `body` after its length.
fn frame(body: &[u8]) -> Vec<u8> {
    let mut f = Vec::from((body.len() as u32).to_be_bytes());
    f.extend_from_slice(body);
    f
}

/// The response to `bytes` must be a refusal (exit 255) whose message
/// contains `says`; returns its message.
fn refused(sock: &Path, what: &str, bytes: &[u8], says: &str) -> String {
    let r = raw(sock, bytes).unwrap_or_else(|| panic!("{what}: no response"));
    assert_eq!(r.code, 255, "{what}: {r:?}");
    assert!(
        r.stderr.starts_with("xvsd: bad request: ") && r.stderr.contains(says),
        "{what}: {:?}",
        r.stderr
    );
    r.stderr.trim_end().to_owned()
}

/// True once the daemon has closed `s` (end of file, or reset).
fn closed_by_peer(s: &mut UnixStream) -> bool {
    let mut b = [0u8; 64];
    match s.read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

#[test]
fn hostile_control_clients_get_an_error_or_are_closed_and_change_nothing() {
    let d = Xvsd::start_control_only();
    let sock = d.socket().to_path_buf();
    for args in CONFIG {
        d.adm_ok(args);
    }
    let before = d.adm_ok(&["-S", "-n"]);
    let listing = d.adm_ok(&["-L", "-n"]);
    let mut done: Vec<Outcome> = Vec::new();
    let mut note = |case, clients, result: String| {
        done.push(Outcome {
            case,
            clients,
            result,
        })
    };

    // Sizes: the length is refused before anything is read or allocated.
    let msg = refused(
        &sock,
        "4 GiB prefix",
        &u32::MAX.to_be_bytes(),
        "exceeds the limit",
    );
    note("length prefix claiming 4 GiB", 1, msg);
    let over = ((MAX_FRAME + 1) as u32).to_be_bytes();
    let msg = refused(&sock, "64 MiB + 1 prefix", &over, "exceeds the limit");
    note("length prefix of 64 MiB + 1", 1, msg);
    // An oversized request actually sent: refused after its prefix; the
    // daemon closes instead of reading the rest.
    let mut s = connect(&sock);
    s.write_all(&over).expect("write the prefix");
    let chunk = vec![b'x'; 1 << 20];
    let mut sent = 0usize;
    for _ in 0..(MAX_FRAME >> 20) + 1 {
        if s.write_all(&chunk).is_err() {
            break;
        }
        sent += chunk.len();
    }
    let r: Response = proto::read_frame(&mut s).expect("a response before the close");
    assert_eq!(r.code, 255, "{r:?}");
    note(
        "65 MiB request sent in full",
        1,
        format!(
            "exit 255 after the prefix; {} MiB written before the close",
            sent >> 20
        ),
    );
    // Just under the limit: read whole, then a command-line error.
    let big = Request {
        args: vec!["-A".into(), "-t".into(), "9".repeat(MAX_FRAME - 64)],
        stdin: None,
    };
    let t0 = Instant::now();
    let r = proto::call(&sock, &big).expect("an answer to a 64 MiB request");
    assert_eq!(r.code, 2, "{}", &r.stderr[..r.stderr.len().min(200)]);
    note(
        "request of 64 MiB - 40 B (an address that long)",
        1,
        format!("exit 2 in {:?}", t0.elapsed()),
    );
    // xvsadm itself refuses rules over the limit on standard input.
    let mut child = Command::new(xvs_tests::bin("xvsadm"))
        .arg("--socket")
        .arg(&sock)
        .arg("-R")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run xvsadm -R");
    {
        let mut stdin = child.stdin.take().expect("stdin");
        let line = b"-A -t 198.18.0.200:80 -s rr\n".repeat(1 << 15);
        for _ in 0..(MAX_FRAME / line.len()) + 2 {
            if stdin.write_all(&line).is_err() {
                break;
            }
        }
    }
    let out = child.wait_with_output().expect("xvsadm -R ends");
    assert_eq!(out.status.code(), Some(255), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("exceed 64 MiB"),
        "{}",
        text(&out.stderr)
    );
    note(
        "xvsadm -R with 65 MiB of rules",
        1,
        format!("exit 255: {}", text(&out.stderr).trim_end()),
    );

    // Malformed messages: each one refused with the parser's reason.
    let bodies: [(&'static str, &[u8], &str); 9] = [
        ("empty body", b"", "malformed message"),
        ("JSON cut short", b"{\"args\":[\"-L\"", "malformed message"),
        ("args not a list", b"{\"args\":1}", "malformed message"),
        ("a JSON list", b"[1,2,3]", "malformed message"),
        ("JSON null", b"null", "malformed message"),
        ("no args", b"{\"stdin\":null}", "malformed message"),
        (
            "stdin a number",
            b"{\"args\":[],\"stdin\":5}",
            "malformed message",
        ),
        (
            "bytes that are not UTF-8",
            b"{\"args\":[\"-A\xff\xfe\"]}",
            "malformed message",
        ),
        (
            "a lone surrogate escape",
            b"{\"args\":[\"-L\\udc80\"]}",
            "malformed message",
        ),
    ];
    for (case, body, says) in bodies {
        let msg = refused(&sock, case, &frame(body), says);
        note(case, 1, msg);
    }
    let mut trailing = frame(b"{\"args\":[\"-L\",\"-n\"]}");
    trailing.extend_from_slice(b"garbage after the frame");
    let r = raw(&sock, &trailing).expect("a response");
    assert_eq!((r.code, r.stdout.as_str()), (0, listing.as_str()));
    note(
        "bytes after a whole request",
        1,
        "ignored: request served".into(),
    );

    // Truncated messages: the client goes away mid-message; nothing to
    // answer, nothing to break.
    for (case, bytes) in [
        ("2 bytes of a length prefix", vec![0u8, 0]),
        ("prefix of 100 and 1 byte of body", {
            let mut v = Vec::from(100u32.to_be_bytes());
            v.push(b'{');
            v
        }),
        ("half of a valid request", {
            let f = frame(b"{\"args\":[\"-C\"]}");
            f[..f.len() / 2].to_vec()
        }),
    ] {
        let mut s = connect(&sock);
        s.write_all(&bytes).expect("write");
        drop(s);
        note(case, 1, "closed by the client; nothing executed".into());
    }

    // Arguments that are not UTF-8, on xvsadm's command line.
    let out = Command::new(xvs_tests::bin("xvsadm"))
        .arg("--socket")
        .arg(&sock)
        .arg("-A")
        .arg("-t")
        .arg(std::ffi::OsStr::from_bytes(b"198.18.0.\xff:80"))
        .output()
        .expect("run xvsadm");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).starts_with("xvsadm: argument 5 is not valid UTF-8"),
        "{}",
        text(&out.stderr)
    );
    note(
        "xvsadm argument that is not UTF-8",
        1,
        format!("exit 2: {}", text(&out.stderr).lines().next().unwrap_or("")),
    );

    // Clients that connect and never send, more of them than any pool of
    // readers: the others are still served at once.
    const SILENT: usize = 64;
    let t0 = Instant::now();
    let mut silent: Vec<UnixStream> = (0..SILENT).map(|_| connect(&sock)).collect();
    let t = Instant::now();
    assert_eq!(d.adm_ok(&["-L", "-n"]), listing);
    let answered = t.elapsed();
    assert!(
        answered < Duration::from_secs(1),
        "xvsadm -Ln took {answered:?} behind {SILENT} silent clients"
    );
    // A client trickling a byte at a time is held to the same deadline.
    let mut trickle = connect(&sock);
    let trickled = std::thread::spawn(move || {
        let f = frame(b"{\"args\":[\"-L\",\"-n\"]}");
        let t = Instant::now();
        for b in f.iter().take(f.len() - 1) {
            if trickle.write_all(&[*b]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
            if t.elapsed() > REQUEST_DEADLINE + Duration::from_secs(5) {
                break;
            }
        }
        (closed_by_peer(&mut trickle), t.elapsed())
    });
    // The deadline frees them all.
    for (i, s) in silent.iter_mut().enumerate() {
        assert!(closed_by_peer(s), "silent client {i} still open");
    }
    let freed = t0.elapsed();
    assert!(
        freed >= REQUEST_DEADLINE && freed < REQUEST_DEADLINE + Duration::from_secs(5),
        "silent clients closed after {freed:?}"
    );
    note(
        "clients that connect and never send",
        SILENT,
        format!("xvsadm -Ln answered in {answered:?} meanwhile; all closed after {freed:?}"),
    );
    let (closed, after) = trickled.join().expect("trickling client");
    assert!(closed, "the trickling client was not closed ({after:?})");
    note(
        "client sending a byte every 500 ms",
        1,
        format!("closed after {after:?}"),
    );

    // Two thousand clients at once, each asking for the listing.
    const CLIENTS: usize = 2000;
    const THREADS: usize = 40;
    let t0 = Instant::now();
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            let sock = sock.clone();
            std::thread::spawn(move || {
                let req = Request {
                    args: vec!["-L".into(), "-n".into()],
                    stdin: None,
                };
                // All of this thread's connections open and sent at once.
                let mut conns: Vec<UnixStream> = (0..CLIENTS / THREADS)
                    .map(|_| {
                        let mut s = connect(&sock);
                        proto::write_frame(&mut s, &req).expect("send");
                        s
                    })
                    .collect();
                conns
                    .iter_mut()
                    .map(|s| proto::read_frame::<_, Response>(s).map_err(|e| e.to_string()))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut answers = 0usize;
    for t in threads {
        for r in t.join().expect("client thread") {
            let r = r.expect("every client gets its answer");
            assert_eq!((r.code, r.stdout.as_str()), (0, listing.as_str()));
            answers += 1;
        }
    }
    assert_eq!(answers, CLIENTS);
    note(
        "concurrent clients, each xvsadm -Ln",
        CLIENTS,
        format!("all answered, identical listings, in {:?}", t0.elapsed()),
    );

    // Nothing changed, and the daemon is well.
    assert_eq!(d.adm_ok(&["-S", "-n"]), before, "configuration changed");
    let stderr = d.stderr_so_far();
    assert!(!stderr.contains("panicked"), "{stderr}");
    let exit = d.stop();
    assert!(exit.status.success() && !exit.killed, "{}", exit.stderr);

    let width = done.iter().map(|o| o.case.len()).max().unwrap_or(0);
    let mut summary = format!(
        "hostile control clients: {} cases, {} connections\n",
        done.len(),
        done.iter().map(|o| o.clients).sum::<usize>()
    );
    for o in &done {
        summary.push_str(&format!(
            "  {:<width$}  {:>5}  {}\n",
            o.case, o.clients, o.result
        ));
    }
    summary.push_str("  configuration unchanged (-S before = after); xvsd exited 0\n");
    println!("{summary}");
}
