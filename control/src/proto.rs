//! The xvsadm ↔ xvsd protocol over a Unix stream socket.
//!
//! One connection carries one invocation: xvsadm sends its argument vector
//! (and standard input for `-R`), xvsd answers with what to print and the
//! exit status. Each message is a 4-byte big-endian length followed by that
//! many bytes of JSON. A response may come in several frames, so that a
//! listing of any size (a million connections) is sent as it is produced
//! and printed as it arrives, neither side ever holding it whole: the top
//! bit of the length word ([`MORE`]) marks a frame whose standard output
//! is to be printed and that more frames follow; the frame without it
//! carries the exit status (and whatever output is left). Requests are
//! single frames under the old ceiling. The daemon serves connections on
//! its control thread,
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
/// Most standard output one frame of a several-frame response carries.
pub const CHUNK: usize = 1 << 20;
/// Length-word bit of a frame that more frames of the same response
/// follow.
pub const MORE: u32 = 1 << 31;
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

/// A response as the daemon produces it: `resp` (its output is printed
/// first; its status and standard error come last), then, if any, the
/// rest of standard output, produced piece by piece while it is sent.
pub struct Reply {
    /// Exit status, standard error and the start of standard output.
    pub resp: Response,
    /// The rest of standard output, pulled as the client takes it.
    pub rest: Option<Box<dyn Iterator<Item = String> + Send>>,
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reply")
            .field("resp", &self.resp)
            .field("rest", &self.rest.is_some())
            .finish()
    }
}

impl From<Response> for Reply {
    fn from(resp: Response) -> Self {
        Reply { resp, rest: None }
    }
}

impl Reply {
    /// The whole response in one (tests, and callers that want it all).
    pub fn collect(self) -> Response {
        let mut resp = self.resp;
        for piece in self.rest.into_iter().flatten() {
            resp.stdout.push_str(&piece);
        }
        resp
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
    write_frame_flag(w, msg, false)
}

/// Write `msg` as one frame, marked [`MORE`] if `more`.
fn write_frame_flag<W: Write, T: Serialize>(
    w: &mut W,
    msg: &T,
    more: bool,
) -> Result<(), FrameError> {
    let body = serde_json::to_vec(msg)?;
    if body.len() > MAX_FRAME {
        return Err(FrameError::TooLarge(body.len() as u64));
    }
    let mut len = u32::try_from(body.len()).map_err(|_| FrameError::TooLarge(body.len() as u64))?;
    if more {
        len |= MORE;
    }
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

/// Read one frame of a response: whether more follow ([`MORE`]), and the
/// frame's content.
pub fn read_part<R: Read>(r: &mut R) -> Result<(bool, Response), FrameError> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let word = u32::from_be_bytes(len);
    let more = word & MORE != 0;
    let len = u64::from(word & !MORE);
    if len > MAX_FRAME as u64 {
        return Err(FrameError::TooLarge(len));
    }
    Ok((more, read_body(r, len)?))
}

/// Read a whole response, however many frames it comes in, handing each
/// piece of standard output to `out` as it arrives; returns the last
/// frame (its output not yet handed over, its status and standard error).
pub fn read_response<R: Read>(
    r: &mut R,
    mut out: impl FnMut(&str),
) -> Result<Response, FrameError> {
    loop {
        let (more, part) = read_part(r)?;
        if !more {
            return Ok(part);
        }
        out(&part.stdout);
    }
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
    read_body(r, len)
}

/// Read and decode a body of `len` bytes (already checked).
fn read_body<R: Read, T: DeserializeOwned>(r: &mut R, len: u64) -> Result<T, FrameError> {
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

/// Write the response (each write within [`WRITE_TIMEOUT`]); output
/// beyond [`CHUNK`] goes in several frames.
pub fn write_response(stream: &UnixStream, resp: &Response) -> Result<(), FrameError> {
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let mut w = stream;
    write_response_to(&mut w, resp)
}

/// [`write_response`] to any writer.
fn write_response_to<W: Write>(w: &mut W, resp: &Response) -> Result<(), FrameError> {
    if resp.stdout.len() <= CHUNK {
        return write_frame(w, resp);
    }
    write_output(w, &resp.stdout)?;
    write_frame(
        w,
        &Response {
            stdout: String::new(),
            ..resp.clone()
        },
    )
}

/// Write `text` as [`MORE`] frames of at most [`CHUNK`] bytes each.
fn write_output<W: Write>(w: &mut W, mut text: &str) -> Result<(), FrameError> {
    while !text.is_empty() {
        let mut end = text.len().min(CHUNK);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let part = Response {
            code: 0,
            stdout: text[..end].to_string(),
            stderr: String::new(),
        };
        write_frame_flag(w, &part, true)?;
        text = &text[end..];
    }
    Ok(())
}

/// Write a reply (each write within [`WRITE_TIMEOUT`]): its output as it
/// is produced, in frames of at most [`CHUNK`] bytes, then its status. A
/// reply without a rest is exactly [`write_response`].
pub fn write_reply(stream: &UnixStream, reply: Reply) -> Result<(), FrameError> {
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let mut w = stream;
    write_reply_to(&mut w, reply)
}

/// [`write_reply`] to any writer.
pub fn write_reply_to<W: Write>(w: &mut W, reply: Reply) -> Result<(), FrameError> {
    let Reply { resp, rest } = reply;
    let Some(rest) = rest else {
        return write_response_to(w, &resp);
    };
    write_output(w, &resp.stdout)?;
    for piece in rest {
        write_output(w, &piece)?;
    }
    write_frame(
        w,
        &Response {
            stdout: String::new(),
            ..resp
        },
    )
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

/// Send one request to the daemon at `path` and wait for its whole
/// response.
pub fn call(path: &Path, req: &Request) -> Result<Response, FrameError> {
    let mut stdout = String::new();
    let mut last = call_streaming(path, req, |s| stdout.push_str(s))?;
    stdout.push_str(&last.stdout);
    last.stdout = stdout;
    Ok(last)
}

/// Send one request to the daemon at `path`; hand standard output to
/// `out` piece by piece as it arrives. Returns the last frame: its output
/// (not handed to `out`), exit status and standard error.
pub fn call_streaming(
    path: &Path,
    req: &Request,
    out: impl FnMut(&str),
) -> Result<Response, FrameError> {
    let mut stream = UnixStream::connect(path)?;
    write_frame(&mut stream, req)?;
    read_response(&mut stream, out)
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
    fn large_output_comes_in_several_frames() {
        // Over CHUNK, with a multi-byte character across the boundary.
        let mut text = "x".repeat(CHUNK - 1);
        text.push('é');
        text.push_str(&"y".repeat(CHUNK + 5));
        let resp = Response {
            code: 1,
            stdout: text.clone(),
            stderr: "warn\n".into(),
        };
        let mut buf = Vec::new();
        write_response_to(&mut buf, &resp).unwrap();
        let mut pieces = Vec::new();
        let last = read_response(&mut Cursor::new(&buf), |s| pieces.push(s.to_string())).unwrap();
        assert_eq!(pieces.len(), 3);
        assert!(pieces.iter().all(|p| p.len() <= CHUNK));
        assert_eq!(pieces.concat() + &last.stdout, text);
        assert_eq!((last.code, last.stderr.as_str()), (1, "warn\n"));
        // A request reader refuses a several-frame message.
        assert!(matches!(
            read_frame::<_, Response>(&mut Cursor::new(buf)),
            Err(FrameError::TooLarge(_))
        ));
        // A small response is one frame, as before.
        let mut buf = Vec::new();
        write_response_to(&mut buf, &Response::ok("hi")).unwrap();
        assert_eq!(
            read_frame::<_, Response>(&mut Cursor::new(buf)).unwrap(),
            Response::ok("hi")
        );
        // A streamed reply: head, then the pieces, then the status.
        let reply = Reply {
            resp: Response::ok("head\n"),
            rest: Some(Box::new((0..3).map(|i| format!("line {i}\n")))),
        };
        let mut buf = Vec::new();
        write_reply_to(&mut buf, reply).unwrap();
        let mut out = String::new();
        let last = read_response(&mut Cursor::new(buf), |s| out.push_str(s)).unwrap();
        assert_eq!(out, "head\nline 0\nline 1\nline 2\n");
        assert_eq!(last, Response::ok(""));
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
