//! The xvsadm ↔ xvsd protocol over a Unix stream socket.
//!
//! One connection carries one invocation: xvsadm sends its argument vector
//! (and standard input for `-R`), xvsd answers with what to print and the
//! exit status. Each message is a 4-byte big-endian length followed by that
//! many bytes of JSON. The daemon serves connections on its control thread,
//! so every read has a deadline and every length a ceiling: a slow or
//! hostile client costs at most [`REQUEST_DEADLINE`] and never a panic or
//! an unbounded allocation.
//!
//! Who may talk: xvsd creates the socket mode 0600 (0660 with `--group`)
//! and checks every peer's SO_PEERCRED uid before it reads more than a
//! small request ([`MAX_UNPRIVILEGED_FRAME`]); only root (or, with
//! `--group`, that group's members) get a request executed.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Largest message accepted in either direction (64 MiB).
pub const MAX_FRAME: usize = 64 << 20;
/// Largest request read from a peer that may not use the daemon: enough
/// for any command line, too small to cost memory.
pub const MAX_UNPRIVILEGED_FRAME: usize = 64 << 10;
/// Default path of the daemon's socket.
pub const DEFAULT_SOCKET: &str = "/run/xvs/xvsd.sock";
/// Environment variable overriding the socket path.
pub const SOCKET_ENV: &str = "XVS_SOCKET";
/// Longest time the daemon waits for a whole request.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(10);
/// Longest time the daemon waits for the client to take the response.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// One xvsadm invocation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// The arguments, without the program name and without `--socket`.
    pub args: Vec<String>,
    /// Standard input (rules for `-R`).
    pub stdin: Option<String>,
}

/// What xvsadm prints and how it exits.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// Exit status: 0 ok, 1 listed object missing, 2 command-line error,
    /// 255 refused.
    pub code: i32,
    /// Text for standard output.
    pub stdout: String,
    /// Text for standard error.
    pub stderr: String,
}

impl Response {
    /// Success with `stdout`.
    pub fn ok(stdout: impl Into<String>) -> Self {
        Response {
            code: 0,
            stdout: stdout.into(),
            stderr: String::new(),
        }
    }

    /// Failure with exit status `code` and one line on standard error.
    pub fn fail(code: i32, msg: impl std::fmt::Display) -> Self {
        Response {
            code,
            stdout: String::new(),
            stderr: format!("{msg}\n"),
        }
    }
}

/// A framing failure.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The socket failed or timed out.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// A length above [`MAX_FRAME`].
    #[error("message of {0} bytes exceeds the limit of {MAX_FRAME} bytes")]
    TooLarge(u64),
    /// The body is not the expected JSON.
    #[error("malformed message: {0}")]
    Json(#[from] serde_json::Error),
}

/// Write `msg` as one frame.
pub fn write_frame<W: Write, T: Serialize>(w: &mut W, msg: &T) -> Result<(), FrameError> {
    let body = serde_json::to_vec(msg)?;
    if body.len() > MAX_FRAME {
        return Err(FrameError::TooLarge(body.len() as u64));
    }
    let len = u32::try_from(body.len()).map_err(|_| FrameError::TooLarge(body.len() as u64))?;
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(&body);
    w.write_all(&frame)?;
    w.flush()?;
    Ok(())
}

/// Read one frame and decode it. The length is checked before anything
/// is allocated, and the body is read incrementally.
pub fn read_frame<R: Read, T: DeserializeOwned>(r: &mut R) -> Result<T, FrameError> {
    read_frame_max(r, MAX_FRAME)
}

/// [`read_frame`] with a lower ceiling `max` (at most [`MAX_FRAME`]).
pub fn read_frame_max<R: Read, T: DeserializeOwned>(
    r: &mut R,
    max: usize,
) -> Result<T, FrameError> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let len = u64::from(u32::from_be_bytes(len));
    if len > max.min(MAX_FRAME) as u64 {
        return Err(FrameError::TooLarge(len));
    }
    let mut body = Vec::new();
    r.take(len).read_to_end(&mut body)?;
    if (body.len() as u64) < len {
        return Err(FrameError::Io(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed inside a message",
        )));
    }
    Ok(serde_json::from_slice(&body)?)
}

/// A reader that fails once an overall deadline has passed, however
/// slowly the peer trickles bytes.
struct DeadlineReader<'a> {
    stream: &'a UnixStream,
    deadline: Instant,
}

impl Read for DeadlineReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "request not received in time",
            ));
        }
        self.stream.set_read_timeout(Some(left))?;
        let mut s = self.stream;
        s.read(buf)
    }
}

/// Read one request of at most `max` bytes within [`REQUEST_DEADLINE`]
/// (however slowly the peer sends). A request that is too large or
/// malformed is answered here with an error response (exit 255) and
/// returned as `Err`, like a dead or stalled peer.
pub fn read_request(stream: &UnixStream, max: usize) -> Result<Request, FrameError> {
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let mut reader = DeadlineReader {
        stream,
        deadline: Instant::now() + REQUEST_DEADLINE,
    };
    match read_frame_max::<_, Request>(&mut reader, max) {
        Ok(req) => Ok(req),
        Err(FrameError::Io(e)) => Err(FrameError::Io(e)),
        Err(e @ FrameError::TooLarge(_)) | Err(e @ FrameError::Json(_)) => {
            let resp = Response::fail(255, format_args!("xvsd: bad request: {e}"));
            let _ = write_response(stream, &resp);
            Err(e)
        }
    }
}

/// Write the response (within [`WRITE_TIMEOUT`]).
pub fn write_response(stream: &UnixStream, resp: &Response) -> Result<(), FrameError> {
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let mut w = stream;
    write_frame(&mut w, resp)
}

/// Serve one connection: read a request (within [`REQUEST_DEADLINE`]),
/// answer it with `handler`, write the response. A request that is too
/// large or malformed gets an error response (exit 255) and never reaches
/// the handler; a dead or stalled client is an `Err`.
pub fn serve_one(
    stream: UnixStream,
    mut handler: impl FnMut(Request) -> Response,
) -> Result<(), FrameError> {
    let req = read_request(&stream, MAX_FRAME)?;
    write_response(&stream, &handler(req))
}

/// Send one request to the daemon at `path` and wait for its response.
pub fn call(path: &Path, req: &Request) -> Result<Response, FrameError> {
    let mut stream = UnixStream::connect(path)?;
    write_frame(&mut stream, req)?;
    read_frame(&mut stream)
}

/// Remove `--socket PATH` / `--socket=PATH` from `args` and return the
/// socket path: that option, else `$XVS_SOCKET`, else [`DEFAULT_SOCKET`].
/// `Err` carries a message for a `--socket` without a value.
pub fn socket_path(args: &mut Vec<String>) -> Result<PathBuf, String> {
    let mut found: Option<PathBuf> = None;
    let mut i = 0;
    while i < args.len() {
        if args[i] == "--socket" {
            if i + 1 >= args.len() {
                return Err("--socket: missing argument".to_string());
            }
            found = Some(PathBuf::from(args.remove(i + 1)));
            args.remove(i);
        } else if let Some(p) = args[i].strip_prefix("--socket=") {
            if p.is_empty() {
                return Err("--socket: missing argument".to_string());
            }
            found = Some(PathBuf::from(p));
            args.remove(i);
        } else {
            i += 1;
        }
    }
    Ok(found
        .or_else(|| {
            std::env::var_os(SOCKET_ENV)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        })
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn frame_round_trip() {
        let req = Request {
            args: vec!["-L".into(), "-n".into()],
            stdin: Some("é\n".into()),
        };
        let mut buf = Vec::new();
        write_frame(&mut buf, &req).unwrap();
        assert_eq!(&buf[..4], &((buf.len() - 4) as u32).to_be_bytes());
        let back: Request = read_frame(&mut Cursor::new(buf)).unwrap();
        assert_eq!(back, req);
    }

    #[test]
    fn oversized_and_garbage_frames_are_errors() {
        let mut big = Vec::from(((MAX_FRAME + 1) as u32).to_be_bytes());
        big.extend_from_slice(b"{}");
        assert!(matches!(
            read_frame::<_, Request>(&mut Cursor::new(big)),
            Err(FrameError::TooLarge(_))
        ));
        let mut bad = Vec::from(5u32.to_be_bytes());
        bad.extend_from_slice(b"nope!");
        assert!(matches!(
            read_frame::<_, Request>(&mut Cursor::new(bad)),
            Err(FrameError::Json(_))
        ));
        let mut short = Vec::from(100u32.to_be_bytes());
        short.extend_from_slice(b"{");
        assert!(matches!(
            read_frame::<_, Request>(&mut Cursor::new(short)),
            Err(FrameError::Io(_))
        ));
        assert!(read_frame::<_, Request>(&mut Cursor::new(vec![0u8, 1])).is_err());
    }

    #[test]
    fn serve_one_answers_and_rejects() {
        let (mut client, server) = UnixStream::pair().unwrap();
        let t = std::thread::spawn(move || {
            serve_one(server, |req| Response::ok(req.args.join(" "))).unwrap()
        });
        write_frame(
            &mut client,
            &Request {
                args: vec!["-L".into(), "-n".into()],
                stdin: None,
            },
        )
        .unwrap();
        let resp: Response = read_frame(&mut client).unwrap();
        assert_eq!(resp, Response::ok("-L -n"));
        t.join().unwrap();

        let (mut client, server) = UnixStream::pair().unwrap();
        let t = std::thread::spawn(move || serve_one(server, |_| Response::ok("")).is_err());
        client.write_all(&u32::MAX.to_be_bytes()).unwrap();
        let resp: Response = read_frame(&mut client).unwrap();
        assert_eq!(resp.code, 255);
        assert!(t.join().unwrap());
    }

    #[test]
    fn socket_option_is_removed() {
        let mut a: Vec<String> = ["-L", "--socket", "/tmp/x.sock", "-n"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(socket_path(&mut a).unwrap(), PathBuf::from("/tmp/x.sock"));
        assert_eq!(a, vec!["-L", "-n"]);
        let mut a = vec!["--socket=/tmp/y".to_string(), "-L".to_string()];
        assert_eq!(socket_path(&mut a).unwrap(), PathBuf::from("/tmp/y"));
        assert_eq!(a, vec!["-L"]);
        assert!(socket_path(&mut vec!["--socket".to_string()]).is_err());
    }
}
