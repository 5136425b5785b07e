//! Building version 1 datagrams as the kernel's master does: records
//! appended to one buffer until the next would pass the payload size or the
//! count would pass 255.

use std::net::IpAddr;

use xvs_config::sync::flags;
use xvs_config::SyncConn;

use crate::{HEADER_LEN, MAX_RECORDS, PROTO_VERSION, RECORD_V4_LEN, RECORD_V6_LEN, STYPE_F_INET6};

/// Why a record was not added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    /// The datagram is full: [`Encoder::take`] it and push again.
    #[error("datagram full")]
    Full,
    /// The record does not fit in an empty datagram of this payload size.
    #[error("record larger than the payload size")]
    TooBig,
    /// The three addresses are not of one family.
    #[error("addresses of mixed families")]
    MixedFamily,
}

/// One datagram being filled.
#[derive(Debug, Clone)]
pub struct Encoder {
    buf: Vec<u8>,
    maxlen: usize,
    count: usize,
}

impl Encoder {
    /// An empty datagram of sync group `syncid`, at most `maxlen` bytes of
    /// UDP payload.
    pub fn new(syncid: u8, maxlen: u16) -> Self {
        let mut buf = Vec::with_capacity(usize::from(maxlen).max(HEADER_LEN));
        buf.extend_from_slice(&[0, syncid, 0, 0, 0, PROTO_VERSION, 0, 0]);
        Encoder {
            buf,
            maxlen: usize::from(maxlen),
            count: 0,
        }
    }

    /// Records in the datagram.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the datagram has no record.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Append `c` (its flags without HASHED and the local-only bits, its
    /// timeout in seconds, no options).
    pub fn push(&mut self, c: &SyncConn) -> Result<(), PushError> {
        let (ty, len) = match (c.caddr, c.vaddr, c.daddr) {
            (IpAddr::V4(_), IpAddr::V4(_), IpAddr::V4(_)) => (0u8, RECORD_V4_LEN),
            (IpAddr::V6(_), IpAddr::V6(_), IpAddr::V6(_)) => (STYPE_F_INET6, RECORD_V6_LEN),
            _ => return Err(PushError::MixedFamily),
        };
        if HEADER_LEN + len > self.maxlen {
            return Err(PushError::TooBig);
        }
        let pad = (4 - self.buf.len() % 4) % 4;
        if self.count >= MAX_RECORDS || self.buf.len() + pad + len > self.maxlen {
            return Err(PushError::Full);
        }
        self.buf.resize(self.buf.len() + pad, 0);
        let wire_flags = c.flags & !flags::HASHED & 0xffff;
        self.buf.push(ty);
        self.buf.push(c.protocol);
        self.buf.extend_from_slice(&(len as u16).to_be_bytes());
        self.buf.extend_from_slice(&wire_flags.to_be_bytes());
        self.buf.extend_from_slice(&c.state.to_be_bytes());
        self.buf.extend_from_slice(&c.cport.to_be_bytes());
        self.buf.extend_from_slice(&c.vport.to_be_bytes());
        self.buf.extend_from_slice(&c.dport.to_be_bytes());
        self.buf.extend_from_slice(&c.fwmark.to_be_bytes());
        self.buf.extend_from_slice(&c.timeout.to_be_bytes());
        for a in [c.caddr, c.vaddr, c.daddr] {
            match a {
                IpAddr::V4(a) => self.buf.extend_from_slice(&a.octets()),
                IpAddr::V6(a) => self.buf.extend_from_slice(&a.octets()),
            }
        }
        self.count += 1;
        Ok(())
    }

    /// The finished datagram (header's size and count filled in), or `None`
    /// when it has no record; the encoder is then empty again.
    pub fn take(&mut self) -> Option<Vec<u8>> {
        if self.count == 0 {
            return None;
        }
        let size = self.buf.len() as u16;
        self.buf[2..4].copy_from_slice(&size.to_be_bytes());
        self.buf[4] = self.count as u8;
        let syncid = self.buf[1];
        let mut next = Vec::with_capacity(self.buf.capacity());
        next.extend_from_slice(&[0, syncid, 0, 0, 0, PROTO_VERSION, 0, 0]);
        self.count = 0;
        Some(std::mem::replace(&mut self.buf, next))
    }
}
