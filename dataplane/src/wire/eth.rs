//! Ethernet II frames.

use super::{get_u16, Error, Result};

/// A MAC address.
pub type Mac = [u8; 6];

/// EtherType of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of ARP.
pub const ETHERTYPE_ARP: u16 = 0x0806;
/// EtherType of IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86dd;

const DST: usize = 0;
const SRC: usize = 6;
const ETHERTYPE: usize = 12;
/// Length of the Ethernet header.
pub const HEADER_LEN: usize = 14;

/// A view of an Ethernet II frame.
#[derive(Debug)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wrap `buf` without checking it: for a frame already validated
    /// (see `crate::packet`); accessors index past the header otherwise.
    #[inline]
    pub fn new_unchecked(buf: T) -> Self {
        EthernetFrame { buf }
    }

    /// Wrap `buf`, checking it holds a whole header.
    pub fn new_checked(buf: T) -> Result<Self> {
        if buf.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(EthernetFrame { buf })
    }

    /// Destination MAC.
    pub fn dst(&self) -> Mac {
        let mut m = [0; 6];
        m.copy_from_slice(&self.buf.as_ref()[DST..DST + 6]);
        m
    }

    /// Source MAC.
    pub fn src(&self) -> Mac {
        let mut m = [0; 6];
        m.copy_from_slice(&self.buf.as_ref()[SRC..SRC + 6]);
        m
    }

    /// EtherType.
    pub fn ethertype(&self) -> u16 {
        get_u16(self.buf.as_ref(), ETHERTYPE)
    }

    /// Bytes after the header.
    pub fn payload(&self) -> &[u8] {
        &self.buf.as_ref()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    /// Set the destination MAC.
    pub fn set_dst(&mut self, mac: Mac) {
        self.buf.as_mut()[DST..DST + 6].copy_from_slice(&mac);
    }

    /// Set the source MAC.
    pub fn set_src(&mut self, mac: Mac) {
        self.buf.as_mut()[SRC..SRC + 6].copy_from_slice(&mac);
    }

    /// Set the EtherType.
    pub fn set_ethertype(&mut self, v: u16) {
        super::set_u16(self.buf.as_mut(), ETHERTYPE, v);
    }

    /// Bytes after the header, mutable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buf.as_mut()[HEADER_LEN..]
    }
}
