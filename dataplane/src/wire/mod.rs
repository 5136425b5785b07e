//! Zero-copy packet views with in-place setters, in the manner of smoltcp's
//! `wire`: `new_checked` validates once, accessors never panic afterwards,
//! field offsets are named constants.

pub mod checksum;
pub mod eth;
pub mod icmp;
pub mod icmpv6;
pub mod ipv4;
pub mod ipv6;
pub mod tcp;
pub mod udp;

/// Why a buffer is not a valid packet of the expected kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The buffer ends before the header (or the length it announces) does.
    #[error("truncated")]
    Truncated,
    /// A header field has an impossible value.
    #[error("malformed")]
    Malformed,
}

/// Result of a `new_checked`.
pub type Result<T> = core::result::Result<T, Error>;

#[inline]
pub(crate) fn get_u16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

#[inline]
pub(crate) fn set_u16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}
