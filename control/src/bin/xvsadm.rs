//! xvsadm: ipvsadm's command line for the xvs daemon.
//!
//! Help, version and command-line errors are answered here, so they work
//! without a daemon; everything else is sent to xvsd over its Unix socket
//! and its answer is printed as is, as it arrives, with its exit status.

use std::io::{Read, Write};
use std::process::ExitCode;

use xvs_control::announce;
use xvs_control::grammar::{self, Command, HINT};
use xvs_control::proto::{self, Request, MAX_FRAME};

fn print_out(s: &str) {
    // A closed pipe (`xvsadm -Ln | head`) is not an error worth a panic.
    let _ = std::io::stdout().write_all(s.as_bytes());
    let _ = std::io::stdout().flush();
}

fn print_err(s: &str) {
    let _ = std::io::stderr().write_all(s.as_bytes());
}

fn exit(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code & 0xff).unwrap_or(255))
}

fn main() -> ExitCode {
    // `std::env::args` would panic on an argument that is not UTF-8.
    let mut args: Vec<String> = Vec::new();
    for (i, a) in std::env::args_os().skip(1).enumerate() {
        match a.into_string() {
            Ok(a) => args.push(a),
            Err(a) => {
                print_err(&format!(
                    "xvsadm: argument {} is not valid UTF-8: {a:?}\n{HINT}\n",
                    i + 1
                ));
                return exit(2);
            }
        }
    }
    let path = match proto::socket_path(&mut args) {
        Ok(p) => p,
        Err(msg) => {
            print_err(&format!("{msg}\n{HINT}\n"));
            return exit(2);
        }
    };
    let mut stdin = None;
    match grammar::parse(&args) {
        Err(e) => {
            print_err(&format!("{e}\n{HINT}\n"));
            return exit(2);
        }
        Ok(Command::Help) => {
            print_out(&grammar::usage());
            return exit(0);
        }
        Ok(Command::Version) => {
            print_out(&grammar::version());
            return exit(0);
        }
        Ok(Command::BgpFeed) => {
            // Runs until the speaker that started it goes away.
            let e = announce::run_feed(&path, &mut std::io::stdout(), &mut std::io::stderr());
            print_err(&format!(
                "xvsadm: bgp-feed: cannot write to the speaker: {e}\n"
            ));
            return exit(1);
        }
        Ok(Command::Restore) => {
            let mut buf = Vec::new();
            let limit = (MAX_FRAME as u64).saturating_sub(4096);
            if let Err(e) = std::io::stdin().take(limit + 1).read_to_end(&mut buf) {
                print_err(&format!(
                    "xvsadm: cannot read rules from standard input: {e}\n"
                ));
                return exit(255);
            }
            if buf.len() as u64 > limit {
                print_err("xvsadm: rules on standard input exceed 64 MiB\n");
                return exit(255);
            }
            stdin = Some(String::from_utf8_lossy(&buf).into_owned());
        }
        Ok(_) => {}
    }
    // Output is printed as it arrives: a listing of any size is never
    // held whole.
    match proto::call_streaming(&path, &Request { args, stdin }, print_out) {
        Ok(resp) => {
            print_out(&resp.stdout);
            print_err(&resp.stderr);
            exit(resp.code)
        }
        Err(e) => {
            print_err(&format!(
                "xvsadm: cannot reach xvsd at {}: {e}\n",
                path.display()
            ));
            exit(255)
        }
    }
}
