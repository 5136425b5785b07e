//! TCP headers (the fields a director reads).

use super::{get_u16, set_u16, Error, Result};
use std::net::Ipv4Addr;

const SRC_PORT: usize = 0;
const DST_PORT: usize = 2;
const SEQ: usize = 4;
const ACK_NUM: usize = 8;
const DATA_OFF: usize = 12;
const FLAGS: usize = 13;
const CHECKSUM: usize = 16;
/// Offset of the checksum in the header.
pub const CHECKSUM_OFFSET: usize = CHECKSUM;
/// Length of a header without options.
pub const MIN_HEADER_LEN: usize = 20;

/// FIN flag.
pub const FIN: u8 = 0x01;
/// SYN flag.
pub const SYN: u8 = 0x02;
/// RST flag.
pub const RST: u8 = 0x04;
/// ACK flag.
pub const ACK: u8 = 0x10;

/// A view of a TCP segment whose header was validated.
#[derive(Debug)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    /// Wrap `buf`: a whole header whose data offset is ≥ 5 and inside it.
    pub fn new_checked(buf: T) -> Result<Self> {
        let b = buf.as_ref();
        if b.len() < MIN_HEADER_LEN {
            return Err(Error::Truncated);
        }
        let off = usize::from(b[DATA_OFF] >> 4) * 4;
        if off < MIN_HEADER_LEN {
            return Err(Error::Malformed);
        }
        if off > b.len() {
            return Err(Error::Truncated);
        }
        Ok(TcpPacket { buf })
    }

    /// Source port.
    #[inline]
    pub fn src_port(&self) -> u16 {
        get_u16(self.buf.as_ref(), SRC_PORT)
    }

    /// Destination port.
    #[inline]
    pub fn dst_port(&self) -> u16 {
        get_u16(self.buf.as_ref(), DST_PORT)
    }

    /// The flag byte (FIN, SYN, RST, PSH, ACK, URG, ECE, CWR).
    #[inline]
    pub fn flags(&self) -> u8 {
        self.buf.as_ref()[FLAGS]
    }

    /// Sequence number.
    pub fn seq(&self) -> u32 {
        let b = self.buf.as_ref();
        u32::from_be_bytes([b[SEQ], b[SEQ + 1], b[SEQ + 2], b[SEQ + 3]])
    }

    /// Acknowledgment number.
    pub fn ack_num(&self) -> u32 {
        let b = self.buf.as_ref();
        u32::from_be_bytes([b[ACK_NUM], b[ACK_NUM + 1], b[ACK_NUM + 2], b[ACK_NUM + 3]])
    }

    /// Header length in bytes (data offset × 4).
    pub fn header_len(&self) -> usize {
        usize::from(self.buf.as_ref()[DATA_OFF] >> 4) * 4
    }

    /// Checksum field.
    pub fn checksum(&self) -> u16 {
        get_u16(self.buf.as_ref(), CHECKSUM)
    }

    /// Whether the checksum verifies for a segment that is the whole
    /// buffer, sent from `src` to `dst`.
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        super::checksum::transport_checksum(src, dst, super::ipv4::PROTO_TCP, self.buf.as_ref())
            == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
    /// Set the source port (checksum not updated).
    pub fn set_src_port(&mut self, v: u16) {
        set_u16(self.buf.as_mut(), SRC_PORT, v);
    }

    /// Set the destination port (checksum not updated).
    pub fn set_dst_port(&mut self, v: u16) {
        set_u16(self.buf.as_mut(), DST_PORT, v);
    }

    /// Set the checksum field.
    pub fn set_checksum(&mut self, v: u16) {
        set_u16(self.buf.as_mut(), CHECKSUM, v);
    }

    /// Compute the checksum of the whole buffer as a segment from `src` to
    /// `dst` and store it.
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let c = super::checksum::transport_checksum(
            src,
            dst,
            super::ipv4::PROTO_TCP,
            self.buf.as_ref(),
        );
        self.set_checksum(c);
    }
}
