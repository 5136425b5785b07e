//! Reading a received datagram: the kernel's receiving rules, with a typed
//! reason for everything it drops or skips.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use xvs_config::sync::flags;
use xvs_config::SyncConn;

use crate::{
    num_states, HEADER_LEN, HEADER_V0_LEN, OPT_F_PARAM, OPT_PE_DATA, OPT_PE_NAME, OPT_SEQ_DATA,
    PE_NAME_MAXLEN, PROTO_VERSION, RECORD_V0_LEN, RECORD_V4_LEN, RECORD_V6_LEN, SEQ_DATA_LEN,
    STYPE_F_INET6,
};

/// Which protocol version a datagram was read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// The old format (4-byte header, 24-byte IPv4 records).
    V0,
    /// The current format.
    V1,
}

/// Why a whole datagram was dropped (nothing of it is installed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DropReason {
    /// Shorter than the smallest header.
    #[error("datagram of {0} bytes is shorter than a header")]
    TooShort(usize),
    /// The header's size is not the datagram's length.
    #[error("header says {size} bytes, datagram has {len}")]
    SizeMismatch {
        /// The header's size field.
        size: u16,
        /// The datagram's length.
        len: usize,
    },
    /// Another sync group's datagram (the backup has a syncid).
    #[error("syncid {0} is not ours")]
    OtherSyncId(u8),
    /// A record starts where fewer than 36 bytes are left.
    #[error("record {0} starts past the end")]
    RecordTruncated(usize),
    /// A record's length runs past the datagram.
    #[error("record {0} runs past the end")]
    RecordOverrun(usize),
    /// A record's version bits are not 0.
    #[error("record {0} has version {1}")]
    RecordVersion(usize, u8),
    /// A record's type is neither IPv4 nor IPv6.
    #[error("record {0} has type {1}")]
    RecordType(usize, u8),
    /// A record's length is shorter than its fixed part.
    #[error("record {0} is shorter than its address family's record")]
    RecordShort(usize),
    /// An option's type and length do not fit in the record.
    #[error("record {0}: option header past the record's end")]
    OptionTruncated(usize),
    /// An option of length 0 or running past the record.
    #[error("record {0}: option of bad length")]
    OptionLength(usize),
    /// A sequence option that is not 24 bytes, or a second one.
    #[error("record {0}: bad sequence option")]
    BadSeqOption(usize),
    /// A persistence engine data option given twice.
    #[error("record {0}: bad persistence engine data")]
    BadPeData(usize),
    /// A persistence engine name longer than 16 bytes, or given twice.
    #[error("record {0}: bad persistence engine name")]
    BadPeName(usize),
    /// A version 0 record (or its options) past the end.
    #[error("v0 record {0} runs past the end")]
    V0Overrun(usize),
}

impl DropReason {
    /// The counter of datagrams dropped for this reason.
    pub fn name(&self) -> &'static str {
        match self {
            DropReason::TooShort(_) => "dropped_too_short",
            DropReason::SizeMismatch { .. } => "dropped_size_mismatch",
            DropReason::OtherSyncId(_) => "dropped_other_syncid",
            DropReason::RecordTruncated(_) | DropReason::RecordOverrun(_) => {
                "dropped_record_overrun"
            }
            DropReason::V0Overrun(_) => "dropped_record_overrun",
            DropReason::RecordVersion(..) => "dropped_record_version",
            DropReason::RecordType(..) => "dropped_record_type",
            DropReason::RecordShort(_) => "dropped_record_short",
            DropReason::OptionTruncated(_) | DropReason::OptionLength(_) => "dropped_option_length",
            DropReason::BadSeqOption(_) | DropReason::BadPeData(_) | DropReason::BadPeName(_) => {
                "dropped_bad_option"
            }
        }
    }
}

/// Why one record was skipped (the rest of the datagram is kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SkipReason {
    /// A protocol IPVS has no handler for.
    #[error("unsupported protocol {0}")]
    Protocol(u8),
    /// A state past the protocol's last.
    #[error("protocol {0} has no state {1}")]
    State(u8, u16),
    /// An option this receiver does not know and may not skip.
    #[error("unknown mandatory option {0}")]
    MandatoryOption(u8),
    /// Persistence engine data (xvs has no persistence engine, and data
    /// without an engine name is invalid).
    #[error("persistence engine data")]
    PeData,
}

impl SkipReason {
    /// The counter of records skipped for this reason.
    pub fn name(&self) -> &'static str {
        match self {
            SkipReason::Protocol(_) => "skipped_protocol",
            SkipReason::State(..) => "skipped_state",
            SkipReason::MandatoryOption(_) => "skipped_mandatory_option",
            SkipReason::PeData => "skipped_pe_data",
        }
    }
}

/// One record of a datagram: a connection, or why it was skipped.
pub type Record = Result<SyncConn, SkipReason>;

/// What a datagram held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Datagram {
    /// The version it was read as.
    pub version: Version,
    /// The sender's syncid.
    pub syncid: u8,
    /// How many records the header announced (all were read).
    pub nr_conns: u8,
}

/// Decode `buf` as a backup with `my_syncid` (0: any) does. The records
/// (connections with the kernel's backup flags, `(wire & BACKUP_MASK) |
/// SYNC` for version 1, or skip reasons) are appended to `out`, which is
/// cleared first and left empty when the datagram is dropped.
pub fn decode(buf: &[u8], my_syncid: u8, out: &mut Vec<Record>) -> Result<Datagram, DropReason> {
    out.clear();
    let r = decode_inner(buf, my_syncid, out);
    if r.is_err() {
        out.clear();
    }
    r
}

fn decode_inner(buf: &[u8], my_syncid: u8, out: &mut Vec<Record>) -> Result<Datagram, DropReason> {
    if buf.len() < HEADER_V0_LEN {
        return Err(DropReason::TooShort(buf.len()));
    }
    let size = be16(buf, 2);
    if usize::from(size) != buf.len() {
        return Err(DropReason::SizeMismatch {
            size,
            len: buf.len(),
        });
    }
    let syncid = buf[1];
    if my_syncid != 0 && syncid != my_syncid {
        return Err(DropReason::OtherSyncId(syncid));
    }
    let v1 = buf.len() >= HEADER_LEN
        && buf[0] == 0
        && buf[5] == PROTO_VERSION
        && buf[6] == 0
        && buf[7] == 0;
    if v1 {
        let nr = buf[4];
        decode_v1(buf, nr, out)?;
        Ok(Datagram {
            version: Version::V1,
            syncid,
            nr_conns: nr,
        })
    } else {
        let nr = buf[0];
        decode_v0(buf, nr, out)?;
        Ok(Datagram {
            version: Version::V0,
            syncid,
            nr_conns: nr,
        })
    }
}

fn decode_v1(buf: &[u8], nr: u8, out: &mut Vec<Record>) -> Result<(), DropReason> {
    let mut at = HEADER_LEN;
    for i in 0..usize::from(nr) {
        if at + RECORD_V4_LEN > buf.len() {
            return Err(DropReason::RecordTruncated(i));
        }
        let ver_size = be16(buf, at + 2);
        let size = usize::from(ver_size & 0x0fff);
        let end = at + size;
        if end > buf.len() {
            return Err(DropReason::RecordOverrun(i));
        }
        if ver_size >> 12 != 0 {
            return Err(DropReason::RecordVersion(i, (ver_size >> 12) as u8));
        }
        out.push(record_v1(&buf[at..end], i)?);
        // The next record starts at a 4-byte boundary; the padding after
        // the last one is absent.
        at += (size + 3) & !3;
    }
    Ok(())
}

/// One version 1 record; `rec` is exactly its `ver_size` bytes.
fn record_v1(rec: &[u8], i: usize) -> Result<Record, DropReason> {
    let ty = rec.first().copied().unwrap_or(0);
    let fixed = if ty & STYPE_F_INET6 != 0 {
        RECORD_V6_LEN
    } else if ty == 0 {
        RECORD_V4_LEN
    } else {
        return Err(DropReason::RecordType(i, ty));
    };
    if rec.len() < fixed {
        return Err(DropReason::RecordShort(i));
    }
    // Options: every one is read (and its length checked) even when an
    // earlier one already decided to skip the record, except after an
    // unknown mandatory one, where the kernel stops reading.
    let mut seq = false;
    let mut pe_data = false;
    let mut pe_name = false;
    let mut p = fixed;
    let mut mandatory = None;
    while p < rec.len() {
        if p + 2 > rec.len() {
            return Err(DropReason::OptionTruncated(i));
        }
        let ptype = rec[p];
        let plen = usize::from(rec[p + 1]);
        p += 2;
        if plen == 0 || p + plen > rec.len() {
            return Err(DropReason::OptionLength(i));
        }
        match ptype & !OPT_F_PARAM {
            OPT_SEQ_DATA => {
                if seq || plen != SEQ_DATA_LEN {
                    return Err(DropReason::BadSeqOption(i));
                }
                seq = true;
            }
            OPT_PE_DATA => {
                if pe_data {
                    return Err(DropReason::BadPeData(i));
                }
                pe_data = true;
            }
            OPT_PE_NAME => {
                if pe_name || plen > PE_NAME_MAXLEN {
                    return Err(DropReason::BadPeName(i));
                }
                pe_name = true;
            }
            other => {
                if ptype & OPT_F_PARAM == 0 {
                    mandatory = Some(other);
                    break;
                }
            }
        }
        p += plen;
    }
    if let Some(t) = mandatory {
        return Ok(Err(SkipReason::MandatoryOption(t)));
    }
    let protocol = rec[1];
    let wire_flags = be32(rec, 4);
    let state = be16(rec, 8);
    let fl = (wire_flags & flags::BACKUP_MASK) | flags::SYNC;
    if let Some(skip) = check_state(protocol, fl, state) {
        return Ok(Err(skip));
    }
    // Persistence engine data needs an engine of that name; xvs has none
    // (the kernel skips the record when the engine is not loaded).
    if pe_data {
        return Ok(Err(SkipReason::PeData));
    }
    let (caddr, vaddr, daddr) = if fixed == RECORD_V6_LEN {
        (
            IpAddr::V6(v6(rec, 24)),
            IpAddr::V6(v6(rec, 40)),
            IpAddr::V6(v6(rec, 56)),
        )
    } else {
        (
            IpAddr::V4(v4(rec, 24)),
            IpAddr::V4(v4(rec, 28)),
            IpAddr::V4(v4(rec, 32)),
        )
    };
    Ok(Ok(SyncConn {
        protocol,
        flags: fl,
        state,
        cport: be16(rec, 10),
        vport: be16(rec, 12),
        dport: be16(rec, 14),
        fwmark: be32(rec, 16),
        timeout: be32(rec, 20),
        caddr,
        vaddr,
        daddr,
    }))
}

/// The kernel's state check: a connection of an unknown protocol or with a
/// state past its protocol's last is skipped; a template's state is not
/// checked (a bad one is just not used).
fn check_state(protocol: u8, fl: u32, state: u16) -> Option<SkipReason> {
    if fl & flags::TEMPLATE != 0 {
        return None;
    }
    match num_states(protocol) {
        None => Some(SkipReason::Protocol(protocol)),
        Some(n) if state >= n => Some(SkipReason::State(protocol, state)),
        Some(_) => None,
    }
}

fn decode_v0(buf: &[u8], nr: u8, out: &mut Vec<Record>) -> Result<(), DropReason> {
    let mut at = HEADER_V0_LEN;
    for i in 0..usize::from(nr) {
        if at + RECORD_V0_LEN > buf.len() {
            return Err(DropReason::V0Overrun(i));
        }
        let rec = &buf[at..at + RECORD_V0_LEN];
        let fl = (u32::from(be16(rec, 20)) | flags::SYNC) & !flags::HASHED;
        at += RECORD_V0_LEN;
        if fl & flags::SEQ_MASK != 0 {
            at += SEQ_DATA_LEN;
            if at > buf.len() {
                return Err(DropReason::V0Overrun(i));
            }
        }
        let protocol = rec[1];
        let state = be16(rec, 22);
        if let Some(skip) = check_state(protocol, fl, state) {
            out.push(Err(skip));
            continue;
        }
        out.push(Ok(SyncConn {
            protocol,
            flags: fl,
            state,
            cport: be16(rec, 2),
            vport: be16(rec, 4),
            dport: be16(rec, 6),
            fwmark: 0,
            timeout: 0,
            caddr: IpAddr::V4(v4(rec, 8)),
            vaddr: IpAddr::V4(v4(rec, 12)),
            daddr: IpAddr::V4(v4(rec, 16)),
        }));
    }
    Ok(())
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn v4(b: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3])
}

fn v6(b: &[u8], at: usize) -> Ipv6Addr {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[at..at + 16]);
    Ipv6Addr::from(a)
}
