//! The resync extension: a backup that starts late asks an xvs master for
//! its whole table, so that a rebooted director has its connections back in
//! seconds (the kernel has no such thing: its backup learns only what
//! traffic makes the master send).
//!
//! Kernel peers must never see it, so it lives on its own UDP port, the
//! sync port + [`PORT_OFFSET`] (the port − 1000 when that would pass
//! 65535), never on the sync port itself:
//!
//! - the backup sends a [`request`] (8 bytes: `"XVSR"`, version 1, its
//!   syncid, two zero bytes) to the sync group on that port, from a unicast
//!   socket of its own, once a second until answered (at most
//!   [`REQUEST_TRIES`] times);
//! - every xvs master of the group (same syncid, or either syncid 0)
//!   answers by unicast to the request's source: ordinary version 1 sync
//!   datagrams of every live connection and template, then an [`end`]
//!   marker (12 bytes: `"XVSE"`, version 1, syncid, two zero bytes, the
//!   record count as a big-endian u32).
//!
//! Neither message can pass for a sync datagram: their first byte is not
//! 0 (so not version 1) and their size field is not their length (so a
//! version 0 reader drops them).

/// The resync port is the sync port plus this.
pub const PORT_OFFSET: u16 = 1000;
/// Requests a backup sends before it gives up.
pub const REQUEST_TRIES: u32 = 10;
const REQUEST_MAGIC: [u8; 4] = *b"XVSR";
const END_MAGIC: [u8; 4] = *b"XVSE";
const VERSION: u8 = 1;

/// The resync port of sync port `port`.
pub fn port(port: u16) -> u16 {
    port.checked_add(PORT_OFFSET).unwrap_or(port - PORT_OFFSET)
}

/// A backup's request for the table.
pub fn request(syncid: u8) -> [u8; 8] {
    let m = REQUEST_MAGIC;
    [m[0], m[1], m[2], m[3], VERSION, syncid, 0, 0]
}

/// The marker a master sends after the last datagram of a resync.
pub fn end(syncid: u8, records: u32) -> [u8; 12] {
    let m = END_MAGIC;
    let r = records.to_be_bytes();
    [
        m[0], m[1], m[2], m[3], VERSION, syncid, 0, 0, r[0], r[1], r[2], r[3],
    ]
}

/// A resync message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message {
    /// A backup asks for the table.
    Request {
        /// The backup's syncid.
        syncid: u8,
    },
    /// A master has sent the whole table.
    End {
        /// The master's syncid.
        syncid: u8,
        /// Records it sent.
        records: u32,
    },
}

/// Read a resync message; `None` for anything else (a sync datagram, or
/// garbage).
pub fn parse(buf: &[u8]) -> Option<Message> {
    match buf {
        [a, b, c, d, VERSION, syncid, 0, 0] if [*a, *b, *c, *d] == REQUEST_MAGIC => {
            Some(Message::Request { syncid: *syncid })
        }
        [a, b, c, d, VERSION, syncid, 0, 0, r0, r1, r2, r3] if [*a, *b, *c, *d] == END_MAGIC => {
            Some(Message::End {
                syncid: *syncid,
                records: u32::from_be_bytes([*r0, *r1, *r2, *r3]),
            })
        }
        _ => None,
    }
}

/// Whether a master of `master` syncid answers a backup of `backup`
/// syncid (0 on either side matches all, as a backup's 0 accepts any).
pub fn matches(master: u8, backup: u8) -> bool {
    master == backup || master == 0 || backup == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_never_pass_for_sync_datagrams() {
        assert_eq!(parse(&request(7)), Some(Message::Request { syncid: 7 }));
        assert_eq!(
            parse(&end(7, 70_000)),
            Some(Message::End {
                syncid: 7,
                records: 70_000
            })
        );
        assert_eq!(parse(&request(7)[..7]), None);
        assert_eq!(parse(b"XVSQ\x01\x07\x00\x00"), None);
        let mut out = Vec::new();
        for m in [&request(0)[..], &end(0, 1)[..]] {
            assert!(crate::decode(m, 0, &mut out).is_err());
        }
        assert_eq!(port(8848), 9848);
        assert_eq!(port(65000), 64000);
        assert!(matches(3, 3) && matches(0, 3) && matches(3, 0) && !matches(3, 4));
    }
}
