//! UDP headers.

use super::{get_u16, set_u16, Error, Result};
use std::net::Ipv4Addr;

const SRC_PORT: usize = 0;
const DST_PORT: usize = 2;
const LEN: usize = 4;
const CHECKSUM: usize = 6;
/// Offset of the checksum in the header.
pub const CHECKSUM_OFFSET: usize = CHECKSUM;
/// Length of the header.
pub const HEADER_LEN: usize = 8;

/// A view of a UDP datagram whose header was validated.
#[derive(Debug)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// Wrap `buf`: a whole header whose length field covers it and fits.
    pub fn new_checked(buf: T) -> Result<Self> {
        let b = buf.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let len = usize::from(get_u16(b, LEN));
        if len < HEADER_LEN {
            return Err(Error::Malformed);
        }
        if len > b.len() {
            return Err(Error::Truncated);
        }
        Ok(UdpPacket { buf })
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

    /// Length field (header + payload).
    pub fn len(&self) -> usize {
        usize::from(get_u16(self.buf.as_ref(), LEN))
    }

    /// Whether the datagram has no payload.
    pub fn is_empty(&self) -> bool {
        self.len() <= HEADER_LEN
    }

    /// Checksum field (0: the sender computed none).
    pub fn checksum(&self) -> u16 {
        get_u16(self.buf.as_ref(), CHECKSUM)
    }

    /// The payload, up to the length field.
    pub fn payload(&self) -> &[u8] {
        &self.buf.as_ref()[HEADER_LEN..self.end()]
    }

    fn end(&self) -> usize {
        self.len().clamp(HEADER_LEN, self.buf.as_ref().len())
    }

    /// Whether the checksum verifies (or is absent) for a datagram from
    /// `src` to `dst` (bytes past the length field are ignored).
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        self.checksum() == 0
            || super::checksum::transport_checksum(
                src,
                dst,
                super::ipv4::PROTO_UDP,
                &self.buf.as_ref()[..self.end()],
            ) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    /// Set the source port (checksum not updated).
    pub fn set_src_port(&mut self, v: u16) {
        set_u16(self.buf.as_mut(), SRC_PORT, v);
    }

    /// Set the destination port (checksum not updated).
    pub fn set_dst_port(&mut self, v: u16) {
        set_u16(self.buf.as_mut(), DST_PORT, v);
    }

    /// Set the length field (checksum not updated; the caller keeps it
    /// within the buffer).
    pub fn set_len(&mut self, v: u16) {
        set_u16(self.buf.as_mut(), LEN, v);
    }

    /// Set the checksum field (0: none).
    pub fn set_checksum(&mut self, v: u16) {
        set_u16(self.buf.as_mut(), CHECKSUM, v);
    }

    /// Compute the checksum of the datagram (up to its length field) from
    /// `src` to `dst` and store it (a computed 0 is stored as `0xffff`).
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let end = self.end();
        let c = super::checksum::transport_checksum(
            src,
            dst,
            super::ipv4::PROTO_UDP,
            &self.buf.as_ref()[..end],
        );
        self.set_checksum(super::checksum::udp_wire(c));
    }

    /// The payload, mutable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = self.end();
        &mut self.buf.as_mut()[HEADER_LEN..end]
    }
}

/// Write an 8-byte UDP header (checksum 0: none) at the start of `buf`
/// for `payload_len` bytes of payload. Fails when `buf` is too short or
/// the length does not fit in 16 bits.
pub fn emit_header(buf: &mut [u8], src_port: u16, dst_port: u16, payload_len: u16) -> Result<()> {
    let Some(h) = buf.get_mut(..HEADER_LEN) else {
        return Err(Error::Truncated);
    };
    let Some(len) = payload_len.checked_add(HEADER_LEN as u16) else {
        return Err(Error::Malformed);
    };
    set_u16(h, SRC_PORT, src_port);
    set_u16(h, DST_PORT, dst_port);
    set_u16(h, LEN, len);
    set_u16(h, CHECKSUM, 0);
    Ok(())
}
