//! The xvsadm binary against an in-process daemon on a temporary socket.

use std::io::Write;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};

use xvs_control::proto::serve_one;
use xvs_control::{Control, NoRuntime};

fn temp_socket(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("xvs-control-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("xvsd.sock")
}

/// Serve `n` connections with a shared `Control`.
fn daemon(path: &Path, n: usize) -> std::thread::JoinHandle<()> {
    let listener = UnixListener::bind(path).unwrap();
    let ctl = Arc::new(Mutex::new(Control::new()));
    std::thread::spawn(move || {
        for stream in listener.incoming().take(n) {
            let ctl = ctl.clone();
            let _ = serve_one(stream.unwrap(), move |req| {
                ctl.lock().unwrap().execute(&req, &NoRuntime)
            });
        }
    })
}

fn xvsadm(args: &[&str], stdin: Option<&str>, env_socket: Option<&Path>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xvsadm"));
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_remove("XVS_SOCKET");
    if let Some(p) = env_socket {
        cmd.env("XVS_SOCKET", p);
    }
    let mut child = cmd.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> &str {
    std::str::from_utf8(b).unwrap()
}

#[test]
fn local_answers_need_no_daemon() {
    let missing = Path::new("/nonexistent/xvsd.sock");
    let out = xvsadm(&["-v"], None, Some(missing));
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        text(&out.stdout),
        "xvsadm v0.1.0 (compatible with ipvsadm v1.31)\n"
    );
    let out = xvsadm(&["-h"], None, Some(missing));
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("--add-service"));
    let out = xvsadm(&["-A", "-t", "198.18.0.1:0"], None, Some(missing));
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr),
        "Zero port specified for non-persistent service\n\
Try `xvsadm -h' or 'xvsadm --help' for more information.\n"
    );
    let out = xvsadm(&["-Ln"], None, Some(missing));
    assert_eq!(out.status.code(), Some(255));
    assert!(text(&out.stderr).starts_with("xvsadm: cannot reach xvsd at /nonexistent/xvsd.sock: "));
}

#[test]
fn talks_to_the_daemon() {
    let sock = temp_socket("talk");
    let t = daemon(&sock, 5);
    let s = sock.to_str().unwrap();
    let out = xvsadm(
        &["--socket", s, "-A", "-t", "198.18.0.1:80", "-s", "rr"],
        None,
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = xvsadm(
        &["-R"],
        Some("ipvsadm -a -t 198.18.0.1:80 -r 198.18.1.1:80 -g -w 1\n"),
        Some(&sock),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = xvsadm(&[&format!("--socket={s}"), "-S", "-n"], None, None);
    assert_eq!(
        text(&out.stdout),
        "-A -t 198.18.0.1:80 -s rr\n-a -t 198.18.0.1:80 -r 198.18.1.1:80 -g -w 1\n"
    );
    let out = xvsadm(&["-A", "-t", "198.18.0.1:80"], None, Some(&sock));
    assert_eq!(out.status.code(), Some(255));
    assert_eq!(text(&out.stderr), "Service already exists\n");
    let out = xvsadm(&["-L", "-n", "-t", "198.18.0.9:80"], None, Some(&sock));
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stderr), "No such service\n");
    t.join().unwrap();
    let _ = std::fs::remove_dir_all(sock.parent().unwrap());
}
