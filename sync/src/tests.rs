//! Every receiving and sending rule of SYNC.md §1.2–1.4 on hand-built bytes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use xvs_config::sync::flags;
use xvs_config::SyncConn;

use crate::*;

fn conn4(cport: u16) -> SyncConn {
    SyncConn {
        protocol: 6,
        flags: flags::DROUTE,
        state: 1,
        cport,
        vport: 80,
        dport: 8080,
        fwmark: 0,
        timeout: 900,
        caddr: IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)),
        vaddr: IpAddr::V4(Ipv4Addr::new(198, 18, 1, 1)),
        daddr: IpAddr::V4(Ipv4Addr::new(198, 18, 2, 1)),
    }
}

fn conn6(cport: u16) -> SyncConn {
    SyncConn {
        caddr: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
        vaddr: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 1, 1)),
        daddr: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 2, 1)),
        ..conn4(cport)
    }
}

/// A v1 IPv4 record written field by field, with `opts` appended and the
/// length covering them.
fn rec4(proto: u8, fl: u32, state: u16, opts: &[u8]) -> Vec<u8> {
    let mut r = vec![0, proto];
    r.extend_from_slice(&((36 + opts.len()) as u16).to_be_bytes());
    r.extend_from_slice(&fl.to_be_bytes());
    r.extend_from_slice(&state.to_be_bytes());
    r.extend_from_slice(&[0x9c, 0x40, 0, 80, 0x1f, 0x90]); // 40000, 80, 8080
    r.extend_from_slice(&7u32.to_be_bytes()); // fwmark
    r.extend_from_slice(&300u32.to_be_bytes()); // timeout
    r.extend_from_slice(&[198, 18, 0, 9, 198, 18, 1, 1, 198, 18, 2, 2]);
    r.extend_from_slice(opts);
    r
}

/// A v1 datagram of `recs`, each padded to 4 bytes but the last.
fn dgram(syncid: u8, recs: &[Vec<u8>]) -> Vec<u8> {
    let mut d = vec![0, syncid, 0, 0, recs.len() as u8, 1, 0, 0];
    for (i, r) in recs.iter().enumerate() {
        d.extend_from_slice(r);
        if i + 1 < recs.len() {
            while d.len() % 4 != 0 {
                d.push(0);
            }
        }
    }
    let n = d.len() as u16;
    d[2..4].copy_from_slice(&n.to_be_bytes());
    d
}

fn dec(d: &[u8], syncid: u8) -> (Result<Datagram, DropReason>, Vec<Record>) {
    let mut out = Vec::new();
    let r = decode(d, syncid, &mut out);
    (r, out)
}

#[test]
fn header_rules() {
    assert_eq!(dec(&[0, 0, 0], 0).0, Err(DropReason::TooShort(3)));
    let mut d = dgram(5, &[rec4(6, 3, 1, &[])]);
    assert!(dec(&d, 0).0.is_ok(), "syncid 0 accepts any");
    assert!(dec(&d, 5).0.is_ok());
    assert_eq!(dec(&d, 6).0, Err(DropReason::OtherSyncId(5)));
    d.push(0);
    assert_eq!(
        dec(&d, 0).0,
        Err(DropReason::SizeMismatch { size: 44, len: 45 })
    );
    // An empty v1 message is valid.
    let (r, out) = dec(&dgram(1, &[]), 0);
    assert_eq!(r.unwrap().version, Version::V1);
    assert!(out.is_empty());
}

#[test]
fn v1_record_fields() {
    let fl = flags::DROUTE | flags::HASHED | flags::ONE_PACKET | flags::NOOUTPUT | 0x10000;
    let (r, out) = dec(&dgram(0, &[rec4(6, fl, 5, &[])]), 0);
    let g = r.unwrap();
    assert_eq!((g.version, g.nr_conns), (Version::V1, 1));
    let c = out[0].unwrap();
    assert_eq!(c.flags, flags::DROUTE | flags::NOOUTPUT | flags::SYNC);
    assert_eq!(
        (c.protocol, c.state, c.cport, c.vport, c.dport),
        (6, 5, 40000, 80, 8080)
    );
    assert_eq!((c.fwmark, c.timeout), (7, 300));
    assert_eq!(c.caddr, IpAddr::V4(Ipv4Addr::new(198, 18, 0, 9)));
    assert_eq!(c.vaddr, IpAddr::V4(Ipv4Addr::new(198, 18, 1, 1)));
    assert_eq!(c.daddr, IpAddr::V4(Ipv4Addr::new(198, 18, 2, 2)));
}

#[test]
fn reserved_or_spare_set_means_v0() {
    let mut d = dgram(0, &[rec4(6, 3, 1, &[])]);
    d[6] = 1;
    // Read as v0: nr_conns = reserved = 0, so nothing.
    let (r, out) = dec(&d, 0);
    assert_eq!(r.unwrap().version, Version::V0);
    assert!(out.is_empty());
    let mut d = dgram(0, &[rec4(6, 3, 1, &[])]);
    d[5] = 2;
    assert_eq!(dec(&d, 0).0.unwrap().version, Version::V0);
}

#[test]
fn record_length_rules() {
    // Count says two, only one there.
    let mut d = dgram(0, &[rec4(6, 3, 1, &[])]);
    d[4] = 2;
    assert_eq!(dec(&d, 0).0, Err(DropReason::RecordTruncated(1)));
    // Length past the end.
    let mut d = dgram(0, &[rec4(6, 3, 1, &[])]);
    d[8 + 3] = 40;
    assert_eq!(dec(&d, 0).0, Err(DropReason::RecordOverrun(0)));
    // Version bits.
    let mut d = dgram(0, &[rec4(6, 3, 1, &[])]);
    d[8 + 2] = 0x10;
    assert_eq!(dec(&d, 0).0, Err(DropReason::RecordVersion(0, 1)));
    // Shorter than an IPv4 record.
    let mut d = dgram(0, &[rec4(6, 3, 1, &[])]);
    d[8 + 3] = 20;
    assert_eq!(dec(&d, 0).0, Err(DropReason::RecordShort(0)));
    // Type 2: neither family.
    let mut d = dgram(0, &[rec4(6, 3, 1, &[])]);
    d[8] = 2;
    assert_eq!(dec(&d, 0).0, Err(DropReason::RecordType(0, 2)));
    // Type 1 with 36 bytes: an IPv6 record too short.
    let mut d = dgram(0, &[rec4(6, 3, 1, &[])]);
    d[8] = 1;
    assert_eq!(dec(&d, 0).0, Err(DropReason::RecordShort(0)));
}

#[test]
fn a_dropped_datagram_installs_nothing() {
    let mut d = dgram(0, &[rec4(6, 3, 1, &[]), rec4(6, 3, 1, &[])]);
    d[8 + 36] = 2;
    let (r, out) = dec(&d, 0);
    assert_eq!(r, Err(DropReason::RecordType(1, 2)));
    assert!(out.is_empty());
}

#[test]
fn options_and_padding() {
    let mut seq = vec![OPT_SEQ_DATA, 24];
    seq.extend_from_slice(&[1; 24]);
    // An optional unknown option of odd length: the record is 39 bytes,
    // the next starts at 40 (4-byte alignment).
    let odd = [OPT_F_PARAM | 9, 1, 0xaa];
    let d = dgram(
        0,
        &[
            rec4(6, 3 | flags::IN_SEQ, 1, &seq),
            rec4(6, 3, 1, &odd),
            rec4(17, 3, 0, &[]),
        ],
    );
    // 62 + 2 padding, 39 + 1 padding, 36 with none after the last.
    assert_eq!(d.len(), 8 + 64 + 40 + 36);
    let (r, out) = dec(&d, 0);
    r.unwrap();
    assert_eq!(out.len(), 3);
    assert_eq!(out[0].unwrap().flags & flags::IN_SEQ, flags::IN_SEQ);
    assert!(out[1].is_ok());
    assert_eq!(out[2].unwrap().protocol, 17);

    // Unknown mandatory option: this record skipped, the next kept.
    let d = dgram(0, &[rec4(6, 3, 1, &[9, 2, 0, 0]), rec4(6, 3, 1, &[])]);
    let (r, out) = dec(&d, 0);
    r.unwrap();
    assert_eq!(out[0], Err(SkipReason::MandatoryOption(9)));
    assert!(out[1].is_ok());

    // Zero length, overrun, a lone type byte: dropped.
    let cases: [(&[u8], DropReason); 3] = [
        (&[OPT_F_PARAM | 9, 0, 0, 0], DropReason::OptionLength(0)),
        (&[OPT_F_PARAM | 9, 5, 0, 0], DropReason::OptionLength(0)),
        (&[OPT_F_PARAM | 9], DropReason::OptionTruncated(0)),
    ];
    for (opt, why) in cases {
        assert_eq!(dec(&dgram(0, &[rec4(6, 3, 1, opt)]), 0).0, Err(why));
    }

    // Sequence data of the wrong length, or twice.
    let bad = [OPT_SEQ_DATA, 4, 0, 0, 0, 0];
    assert_eq!(
        dec(&dgram(0, &[rec4(6, 3, 1, &bad)]), 0).0,
        Err(DropReason::BadSeqOption(0))
    );
    let twice = [seq.clone(), seq.clone()].concat();
    assert_eq!(
        dec(&dgram(0, &[rec4(6, 3, 1, &twice)]), 0).0,
        Err(DropReason::BadSeqOption(0))
    );
}

#[test]
fn persistence_engine_options() {
    let name = [OPT_PE_NAME, 3, b's', b'i', b'p'];
    let data = [OPT_PE_DATA, 4, 1, 2, 3, 4];
    // A name alone is harmless.
    let (r, out) = dec(&dgram(0, &[rec4(17, 3, 0, &name)]), 0);
    r.unwrap();
    assert!(out[0].is_ok());
    // Data (with or without a name): xvs has no engine, the record is
    // skipped and the next kept.
    let both = [&name[..], &data[..]].concat();
    let d = dgram(
        0,
        &[
            rec4(17, 3, 0, &both),
            rec4(17, 3, 0, &data),
            rec4(17, 3, 0, &[]),
        ],
    );
    let (r, out) = dec(&d, 0);
    r.unwrap();
    assert_eq!(out[0], Err(SkipReason::PeData));
    assert_eq!(out[1], Err(SkipReason::PeData));
    assert!(out[2].is_ok());
    // A name longer than 16 bytes, or data twice: dropped.
    let mut long = vec![OPT_PE_NAME, 17];
    long.extend_from_slice(&[b'x'; 17]);
    assert_eq!(
        dec(&dgram(0, &[rec4(17, 3, 0, &long)]), 0).0,
        Err(DropReason::BadPeName(0))
    );
    let twice = [&data[..], &data[..]].concat();
    assert_eq!(
        dec(&dgram(0, &[rec4(17, 3, 0, &twice)]), 0).0,
        Err(DropReason::BadPeData(0))
    );
}

#[test]
fn protocol_and_state_checks() {
    let d = dgram(
        0,
        &[
            rec4(6, 3, 10, &[]),                   // SYNACK: last TCP state
            rec4(6, 3, 11, &[]),                   // past it
            rec4(17, 3, 1, &[]),                   // UDP has one state
            rec4(1, 3, 0, &[]),                    // ICMP: no IPVS protocol
            rec4(132, 3, 13, &[]),                 // SCTP CLOSED
            rec4(0, 3 | flags::TEMPLATE, 99, &[]), // fwmark template: not checked
        ],
    );
    let (r, out) = dec(&d, 0);
    r.unwrap();
    assert!(out[0].is_ok());
    assert_eq!(out[1], Err(SkipReason::State(6, 11)));
    assert_eq!(out[2], Err(SkipReason::State(17, 1)));
    assert_eq!(out[3], Err(SkipReason::Protocol(1)));
    assert!(out[4].is_ok());
    assert!(out[5].unwrap().is_template());
}

fn rec0(fl: u16, state: u16, seq: bool) -> Vec<u8> {
    let mut r = vec![0, 6, 0x9c, 0x40, 0, 80, 0x1f, 0x90];
    r.extend_from_slice(&[198, 18, 0, 9, 198, 18, 1, 1, 198, 18, 2, 2]);
    r.extend_from_slice(&fl.to_be_bytes());
    r.extend_from_slice(&state.to_be_bytes());
    if seq {
        r.extend_from_slice(&[0; 24]);
    }
    r
}

fn dgram0(syncid: u8, recs: &[Vec<u8>]) -> Vec<u8> {
    let mut d = vec![recs.len() as u8, syncid, 0, 0];
    for r in recs {
        d.extend_from_slice(r);
    }
    let n = d.len() as u16;
    d[2..4].copy_from_slice(&n.to_be_bytes());
    d
}

#[test]
fn version_0() {
    let d = dgram0(
        3,
        &[
            rec0(3 | 0x40, 1, false),
            rec0(0x0400, 1, true),
            rec0(3, 42, false),
        ],
    );
    let (r, out) = dec(&d, 3);
    let g = r.unwrap();
    assert_eq!((g.version, g.syncid, g.nr_conns), (Version::V0, 3, 3));
    let c = out[0].unwrap();
    assert_eq!(c.flags, flags::DROUTE | flags::SYNC);
    assert_eq!(
        (c.cport, c.vport, c.dport, c.timeout, c.fwmark),
        (40000, 80, 8080, 0, 0)
    );
    assert_eq!(c.daddr, IpAddr::V4(Ipv4Addr::new(198, 18, 2, 2)));
    assert_eq!(out[1].unwrap().flags, flags::IN_SEQ | flags::SYNC);
    assert_eq!(out[2], Err(SkipReason::State(6, 42)));
    assert_eq!(dec(&d, 4).0, Err(DropReason::OtherSyncId(3)));
    // Options announced but absent.
    let mut short = dgram0(0, &[rec0(0x0200, 1, true)]);
    short.truncate(short.len() - 1);
    let n = short.len() as u16;
    short[2..4].copy_from_slice(&n.to_be_bytes());
    assert_eq!(dec(&short, 0).0, Err(DropReason::V0Overrun(0)));
    // A count larger than the records.
    let mut d = dgram0(0, &[rec0(3, 1, false)]);
    d[0] = 2;
    assert_eq!(dec(&d, 0).0, Err(DropReason::V0Overrun(1)));
}

#[test]
fn encoder_writes_the_kernel_layout() {
    let mut e = Encoder::new(42, DEFAULT_MAXLEN_V4);
    let mut c = conn4(40000);
    c.flags |= flags::HASHED | 0x10000;
    e.push(&c).unwrap();
    let d = e.take().unwrap();
    assert_eq!(&d[..8], &[0, 42, 0, 44, 1, 1, 0, 0]);
    assert_eq!(&d[8..12], &[0, 6, 0, 36]);
    assert_eq!(&d[12..16], &3u32.to_be_bytes());
    assert_eq!(&d[16..18], &[0, 1]);
    assert_eq!(&d[18..24], &[0x9c, 0x40, 0, 80, 0x1f, 0x90]);
    assert_eq!(&d[24..28], &[0; 4]);
    assert_eq!(&d[28..32], &900u32.to_be_bytes());
    assert_eq!(&d[32..44], &[198, 18, 0, 1, 198, 18, 1, 1, 198, 18, 2, 1]);
    assert!(e.take().is_none(), "an empty encoder gives nothing");
}

#[test]
fn encoder_respects_maxlen_and_count() {
    // 1472 bytes: (1472 − 8) / 36 = 40 records.
    let mut e = Encoder::new(0, DEFAULT_MAXLEN_V4);
    let mut n = 0;
    while e.push(&conn4(n)).is_ok() {
        n += 1;
    }
    assert_eq!(n, 40);
    assert_eq!(e.push(&conn4(0)), Err(PushError::Full));
    assert_eq!(e.take().unwrap().len(), 8 + 40 * 36);
    // 65507 bytes: the count stops at 255.
    let mut e = Encoder::new(0, 65507);
    for i in 0..255 {
        e.push(&conn4(i)).unwrap();
    }
    assert_eq!(e.push(&conn4(0)), Err(PushError::Full));
    assert_eq!(e.take().unwrap()[4], 255);
    // Too small for any record.
    let mut e = Encoder::new(0, 43);
    assert_eq!(e.push(&conn4(1)), Err(PushError::TooBig));
    let mut e = Encoder::new(0, 44);
    e.push(&conn4(1)).unwrap();
    assert_eq!(e.push(&conn6(1)), Err(PushError::TooBig));
    let mut mixed = conn4(1);
    mixed.daddr = conn6(1).daddr;
    assert_eq!(e.push(&mixed), Err(PushError::MixedFamily));
}

#[test]
fn round_trip() {
    let mut e = Encoder::new(9, 1452);
    let mut tpl = conn4(0);
    tpl.protocol = 0;
    tpl.flags = flags::DROUTE | flags::TEMPLATE;
    tpl.fwmark = 5;
    tpl.vaddr = IpAddr::V4(Ipv4Addr::from(5u32));
    let mut nat = conn4(2);
    nat.flags = flags::MASQ | flags::INACTIVE;
    nat.state = 3;
    let sent = [conn4(1), conn6(2), tpl, nat, conn6(3)];
    for c in &sent {
        e.push(c).unwrap();
    }
    let d = e.take().unwrap();
    let (r, out) = dec(&d, 9);
    assert_eq!(r.unwrap().nr_conns, 5);
    for (s, got) in sent.iter().zip(&out) {
        let mut want = *s;
        want.flags = (want.flags & flags::BACKUP_MASK) | flags::SYNC;
        assert_eq!(got.unwrap(), want);
    }
}

#[test]
fn maxlen_defaults_and_clamps() {
    assert_eq!(master_maxlen(None, false), 1472);
    assert_eq!(master_maxlen(None, true), 1452);
    assert_eq!(master_maxlen(Some(65507), false), 65507);
    assert_eq!(master_maxlen(Some(65535), true), 65487);
    assert_eq!(backup_maxlen(None, 1500, false), 1472);
    assert_eq!(backup_maxlen(None, 9000, false), 8972);
    assert_eq!(backup_maxlen(None, 576, false), 1472);
    assert_eq!(backup_maxlen(Some(100), 1500, false), 1024);
}

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut out = Vec::new();
    for _ in 0..20_000 {
        let len = rng.below(600);
        let mut d: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        // Make the size right half of the time so the records are read.
        if len >= 4 && rng.below(2) == 0 {
            d[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            if len >= 8 && rng.below(2) == 0 {
                d[0] = 0;
                d[5] = 1;
                d[6] = 0;
                d[7] = 0;
            }
        }
        let r = decode(&d, rng.below(3) as u8, &mut out);
        if r.is_err() {
            assert!(out.is_empty());
        }
    }
}

#[test]
fn mutated_datagrams_never_panic() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let mut seq = vec![OPT_SEQ_DATA, 24];
    seq.extend_from_slice(&[0; 24]);
    let mut e = Encoder::new(0, 1472);
    for i in 0..10 {
        e.push(&if i % 3 == 0 { conn6(i) } else { conn4(i) })
            .unwrap();
    }
    let valid = [
        e.take().unwrap(),
        dgram(
            0,
            &[
                rec4(6, 0x400, 1, &seq),
                rec4(6, 3, 1, &[OPT_F_PARAM | 7, 1, 0]),
            ],
        ),
        dgram0(0, &[rec0(0x200, 1, true), rec0(3, 1, false)]),
    ];
    let mut out = Vec::new();
    for round in 0..30_000 {
        let mut d = valid[round % valid.len()].clone();
        for _ in 0..1 + rng.below(4) {
            match rng.below(4) {
                0 if !d.is_empty() => {
                    let i = rng.below(d.len());
                    d[i] = rng.next() as u8;
                }
                0 => {}
                1 => d.truncate(rng.below(d.len() + 1)),
                2 => d.push(rng.next() as u8),
                _ => {
                    let i = rng.below(d.len().max(1));
                    if i < d.len() {
                        d[i] ^= 1 << rng.below(8);
                    }
                }
            }
        }
        // Keep the header's size true half of the time.
        if d.len() >= 4 && rng.below(2) == 0 {
            let n = d.len() as u16;
            d[2..4].copy_from_slice(&n.to_be_bytes());
        }
        let r = decode(&d, 0, &mut out);
        if let Ok(g) = r {
            assert_eq!(out.len(), usize::from(g.nr_conns));
            // What was read encodes and reads back the same.
            let conns: Vec<SyncConn> = out.iter().filter_map(|r| r.ok()).collect();
            let mut e = Encoder::new(0, 65507);
            for c in &conns {
                e.push(c).unwrap();
            }
            if let Some(again) = e.take() {
                let mut back = Vec::new();
                decode(&again, 0, &mut back).unwrap();
                for (c, b) in conns.iter().zip(&back) {
                    let mut want = *c;
                    want.flags = (want.flags & flags::BACKUP_MASK) | flags::SYNC;
                    assert_eq!(b.unwrap(), want);
                }
            }
        } else {
            assert!(out.is_empty());
        }
    }
}

/// A v1 IPv6 record written field by field from SYNC.md §1.3 (type 1,
/// addresses at 24, 40 and 56), `opts` appended and counted in its length.
fn rec6(proto: u8, fl: u32, state: u16, opts: &[u8]) -> Vec<u8> {
    let mut r = vec![STYPE_F_INET6, proto];
    r.extend_from_slice(&((72 + opts.len()) as u16).to_be_bytes());
    r.extend_from_slice(&fl.to_be_bytes());
    r.extend_from_slice(&state.to_be_bytes());
    r.extend_from_slice(&[0x9c, 0x41, 0x01, 0xbb, 0x20, 0xfb]); // 40001, 443, 8443
    r.extend_from_slice(&0u32.to_be_bytes()); // fwmark
    r.extend_from_slice(&120u32.to_be_bytes()); // timeout
    for last in [9u8, 0x10, 0x22] {
        let mut a = [0u8; 16];
        a[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        a[15] = last;
        r.extend_from_slice(&a);
    }
    r.extend_from_slice(opts);
    r
}

fn v6(last: u16) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, last))
}

#[test]
fn v6_record_fields() {
    let fl = flags::MASQ | flags::HASHED | flags::INACTIVE;
    let rec = rec6(6, fl, 3, &[]);
    assert_eq!(rec.len(), RECORD_V6_LEN);
    let (r, out) = dec(&dgram(7, &[rec]), 7);
    assert_eq!(r.unwrap().nr_conns, 1);
    let c = out[0].unwrap();
    assert_eq!(c.flags, flags::MASQ | flags::INACTIVE | flags::SYNC);
    assert_eq!(
        (c.protocol, c.state, c.cport, c.vport, c.dport, c.timeout),
        (6, 3, 40001, 443, 8443, 120)
    );
    assert_eq!((c.caddr, c.vaddr, c.daddr), (v6(9), v6(0x10), v6(0x22)));
}

#[test]
fn encoder_writes_the_kernel_v6_layout() {
    let mut e = Encoder::new(3, master_maxlen(None, true));
    let mut c = conn6(40000);
    c.flags |= flags::HASHED;
    e.push(&c).unwrap();
    let d = e.take().unwrap();
    assert_eq!(d.len(), HEADER_LEN + RECORD_V6_LEN);
    assert_eq!(&d[..8], &[0, 3, 0, 80, 1, 1, 0, 0]);
    let r = &d[8..];
    assert_eq!(&r[..4], &[STYPE_F_INET6, 6, 0, 72]);
    assert_eq!(&r[4..8], &flags::DROUTE.to_be_bytes());
    assert_eq!(&r[8..10], &[0, 1]);
    assert_eq!(&r[10..16], &[0x9c, 0x40, 0, 80, 0x1f, 0x90]);
    assert_eq!(&r[16..20], &[0; 4]);
    assert_eq!(&r[20..24], &900u32.to_be_bytes());
    let addr = |a: IpAddr| match a {
        IpAddr::V6(a) => a.octets(),
        IpAddr::V4(_) => unreachable!("conn6 is IPv6"),
    };
    assert_eq!(&r[24..40], &addr(c.caddr));
    assert_eq!(&r[40..56], &addr(c.vaddr));
    assert_eq!(&r[56..72], &addr(c.daddr));
    // 1452 bytes (the IPv6 default): (1452 − 8) / 72 = 20 records.
    let mut e = Encoder::new(0, master_maxlen(None, true));
    let mut n = 0;
    while e.push(&conn6(n)).is_ok() {
        n += 1;
    }
    assert_eq!(n, 20);
    // Exactly one record's room, and one byte less.
    assert!(Encoder::new(0, 80).push(&conn6(1)).is_ok());
    assert_eq!(Encoder::new(0, 79).push(&conn6(1)), Err(PushError::TooBig));
}

#[test]
fn v6_records_with_options_and_padding_beside_v4_ones() {
    let mut seq = vec![OPT_SEQ_DATA, 24];
    seq.extend_from_slice(&[2; 24]);
    let odd = [OPT_F_PARAM | 9, 1, 0xaa];
    let d = dgram(
        0,
        &[
            rec6(6, 3 | flags::OUT_SEQ, 1, &seq), // 98 + 2 padding
            rec4(6, 3, 1, &[]),                   // 36
            rec6(17, 2, 0, &odd),                 // 75 + 1 padding
            rec6(6, 3, 1, &[]),                   // 72, none after the last
        ],
    );
    assert_eq!(d.len(), 8 + 100 + 36 + 76 + 72);
    let (r, out) = dec(&d, 0);
    assert_eq!(r.unwrap().nr_conns, 4);
    let c: Vec<SyncConn> = out.iter().map(|r| r.unwrap()).collect();
    assert_eq!(c[0].flags & flags::OUT_SEQ, flags::OUT_SEQ);
    assert_eq!(c[0].daddr, v6(0x22));
    assert_eq!(c[1].daddr, IpAddr::V4(Ipv4Addr::new(198, 18, 2, 2)));
    assert_eq!(
        (c[2].protocol, c[2].flags),
        (17, flags::TUNNEL | flags::SYNC)
    );
    assert_eq!(c[3].caddr, v6(9));
    // The encoder's mixed datagram reads back the same.
    let mut e = Encoder::new(0, 1472);
    for x in [conn4(1), conn6(2), conn4(3)] {
        e.push(&x).unwrap();
    }
    let d = e.take().unwrap();
    assert_eq!(d.len(), 8 + 36 + 72 + 36);
    let (r, out) = dec(&d, 0);
    r.unwrap();
    assert_eq!(out[1].unwrap().vaddr, conn6(2).vaddr);
}

#[test]
fn malformed_v6_lengths() {
    // Each case: the datagram's records (as `dgram` pads them), then an
    // edit of the bytes, and what the decoder must say.
    type Edit = fn(&mut Vec<u8>);
    let keep: Edit = |_| {};
    let cases: Vec<(&str, Vec<Vec<u8>>, Edit, DropReason)> = vec![
        (
            "length 71: shorter than an IPv6 record",
            vec![rec6(6, 3, 1, &[])],
            |d| d[8 + 3] = 71,
            DropReason::RecordShort(0),
        ),
        (
            "length 36 with the IPv6 type",
            vec![rec6(6, 3, 1, &[])],
            |d| d[8 + 3] = 36,
            DropReason::RecordShort(0),
        ),
        (
            "length past the datagram",
            vec![rec6(6, 3, 1, &[])],
            |d| d[8 + 3] = 76,
            DropReason::RecordOverrun(0),
        ),
        (
            "cut after 60 bytes (size fixed up)",
            vec![rec6(6, 3, 1, &[])],
            |d| {
                d.truncate(8 + 60);
                d[2..4].copy_from_slice(&68u16.to_be_bytes());
            },
            DropReason::RecordOverrun(0),
        ),
        (
            "cut after 30 bytes: not even an IPv4 record's room",
            vec![rec6(6, 3, 1, &[])],
            |d| {
                d.truncate(8 + 30);
                d[2..4].copy_from_slice(&38u16.to_be_bytes());
            },
            DropReason::RecordTruncated(0),
        ),
        (
            "count 2, one record",
            vec![rec6(6, 3, 1, &[])],
            |d| d[4] = 2,
            DropReason::RecordTruncated(1),
        ),
        (
            "second record cut short",
            vec![rec4(6, 3, 1, &[]), rec6(6, 3, 1, &[])],
            |d| {
                let n = d.len() - 1;
                d.truncate(n);
                d[2..4].copy_from_slice(&(n as u16).to_be_bytes());
            },
            DropReason::RecordOverrun(1),
        ),
        (
            "version bits",
            vec![rec6(6, 3, 1, &[])],
            |d| d[8 + 2] = 0x10,
            DropReason::RecordVersion(0, 1),
        ),
        (
            "type 2: neither family",
            vec![rec6(6, 3, 1, &[])],
            |d| d[8] = 2,
            DropReason::RecordType(0, 2),
        ),
        (
            "an option of length 0",
            vec![rec6(6, 3, 1, &[OPT_F_PARAM | 9, 0, 0, 0])],
            keep,
            DropReason::OptionLength(0),
        ),
        (
            "a lone option type byte",
            vec![rec6(6, 3, 1, &[OPT_F_PARAM | 9])],
            keep,
            DropReason::OptionTruncated(0),
        ),
        (
            "an option running past the record",
            vec![rec6(6, 3, 1, &[OPT_F_PARAM | 9, 9, 0, 0])],
            keep,
            DropReason::OptionLength(0),
        ),
        (
            "a short sequence option",
            vec![rec6(6, 3, 1, &[OPT_SEQ_DATA, 2, 0, 0])],
            keep,
            DropReason::BadSeqOption(0),
        ),
    ];
    // The kernel tests the IPv6 bit alone: type 3 is an IPv6 record.
    let mut d = dgram(0, &[rec6(6, 3, 1, &[])]);
    d[8] = 3;
    assert_eq!(dec(&d, 0).1[0].unwrap().daddr, v6(0x22));
    for (what, recs, edit, why) in cases {
        let mut d = dgram(0, &recs);
        edit(&mut d);
        let (r, out) = dec(&d, 0);
        assert_eq!(r, Err(why), "{what}");
        assert!(out.is_empty(), "{what}: nothing of a dropped datagram");
    }
}
