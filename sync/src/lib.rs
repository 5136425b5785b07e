//! The IPVS connection sync protocol on the wire.
//!
//! An xvs director pairs with another xvs director or with a kernel IPVS
//! director, in either role, so the datagrams must be the kernel's byte for
//! byte: version 1 (8-byte header, 36-byte IPv4 and 72-byte IPv6 records,
//! options, 4-byte alignment) is sent and received, version 0 (IPv4 only)
//! is received. This crate is pure (no sockets, no clock) so that every
//! rule can be tested on bytes; the daemon's sender and receiver threads
//! move the bytes.
//!
//! Decoding validates everything a peer sends: a malformed datagram is
//! dropped whole with a [`DropReason`], a record the kernel would skip is
//! reported as a [`SkipReason`] and the rest of the datagram is kept, and
//! no input makes it panic. Unlike the kernel, which installs the records
//! before a malformed one, a dropped datagram installs nothing.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod decode;
mod encode;
pub mod resync;

pub use decode::{decode, Datagram, DropReason, Record, SkipReason, Version};
pub use encode::{Encoder, PushError};

/// Length of the version 1 message header.
pub const HEADER_LEN: usize = 8;
/// Length of the version 0 message header.
pub const HEADER_V0_LEN: usize = 4;
/// Length of an IPv4 record without options.
pub const RECORD_V4_LEN: usize = 36;
/// Length of an IPv6 record without options.
pub const RECORD_V6_LEN: usize = 72;
/// Length of a version 0 record without options.
pub const RECORD_V0_LEN: usize = 24;
/// Length of the sequence option's data (and of version 0's options).
pub const SEQ_DATA_LEN: usize = 24;
/// Most records one datagram carries (the count is one byte).
pub const MAX_RECORDS: usize = 255;
/// The protocol version this crate sends.
pub const PROTO_VERSION: u8 = 1;
/// IP and UDP header bytes of an IPv4 datagram.
pub const HLEN_V4: u16 = 28;
/// IP and UDP header bytes of an IPv6 datagram.
pub const HLEN_V6: u16 = 48;
/// A master's default payload size over IPv4 (1500 − 28), whatever the MTU.
pub const DEFAULT_MAXLEN_V4: u16 = 1500 - HLEN_V4;

/// Record type bit: the record is IPv6.
pub const STYPE_F_INET6: u8 = 1;
/// Option type: sequence adjustment data.
pub const OPT_SEQ_DATA: u8 = 1;
/// Option type: persistence engine data (e.g. a SIP Call-ID).
pub const OPT_PE_DATA: u8 = 2;
/// Option type: persistence engine name (e.g. "sip").
pub const OPT_PE_NAME: u8 = 3;
/// Option type bit: the option may be skipped by a receiver that does not
/// know it.
pub const OPT_F_PARAM: u8 = 0x40;
/// Longest persistence engine name.
pub const PE_NAME_MAXLEN: usize = 16;

/// Number of states of an IPVS protocol, or `None` for a protocol IPVS has
/// no handler for (a record of it is skipped).
pub fn num_states(protocol: u8) -> Option<u16> {
    match protocol {
        6 => Some(11),      // TCP: NONE .. SYNACK
        17 => Some(1),      // UDP: NORMAL
        132 => Some(14),    // SCTP: NONE .. CLOSED
        50 | 51 => Some(1), // ESP, AH
        _ => None,
    }
}

/// Number of template states (NONE, ASSURED).
pub const TEMPLATE_STATES: u16 = 2;

/// The payload size a master uses when `--sync-maxlen` is not given, or
/// clamps a given one to: `[1, 65535 − hlen]`, default 1500 − hlen.
pub fn master_maxlen(explicit: Option<u16>, ipv6: bool) -> u16 {
    let hlen = if ipv6 { HLEN_V6 } else { HLEN_V4 };
    match explicit {
        None | Some(0) => 1500 - hlen,
        Some(n) => n.clamp(1, u16::MAX - hlen),
    }
}

/// The payload size a backup receives: `--sync-maxlen` clamped to
/// `[1024, 65535 − hlen]`, default the interface MTU clamped to
/// `[1500, 65535]`, less hlen.
pub fn backup_maxlen(explicit: Option<u16>, mtu: u32, ipv6: bool) -> u16 {
    let hlen = if ipv6 { HLEN_V6 } else { HLEN_V4 };
    match explicit {
        None | Some(0) => (mtu.clamp(1500, 65535) as u16) - hlen,
        Some(n) => n.clamp(1024, u16::MAX - hlen),
    }
}

#[cfg(test)]
mod tests;
