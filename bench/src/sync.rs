//! What connection sync costs, measured on the code that does it: a
//! master's pipeline emits the records of short and of long-lived TCP
//! connections, a sender thread encodes them into the kernel's v1
//! datagrams and sends them over loopback UDP, a receiver thread decodes
//! them, and a backup's pipeline installs them. The figures that size a
//! cluster of directors come from here: records and bytes per connection,
//! and how many records per second a sender, a receiver and one installing
//! worker take (per CPU second of the thread, so a loaded machine does not
//! lower them).

use std::net::UdpSocket;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use xvs_dataplane::pipeline::{Pipeline, Verdict};
use xvs_dataplane::sync::{SyncConn, SyncPort, IN_QUEUE};
use xvs_dataplane::testkit::frame::{eth, ip, ip_packet, tcp, L4};
use xvs_dataplane::testkit::{dr_service, Fixture, CLIENT_MAC, DIR_MAC, VIP};
use xvs_sync::{Encoder, PushError};

use crate::pipeline::thread_cpu_ns;

/// Payload size of a datagram: the kernel's default for IPv4 on a
/// 1500-byte MTU.
const MAXLEN: u16 = 1472;
/// Datagrams the sender may be ahead of the receiver (well inside a
/// default socket receive buffer, so loopback loses none).
const WINDOW: u64 = 64;
/// Most connections of a run (distinct client addresses in 198.18.0.0/15).
pub const MAX_CONNS: usize = 1 << 17;

/// What to run.
#[derive(Debug, Clone, clap::Args)]
pub struct SyncArgs {
    /// Short connections (SYN, ACK, request, FIN, ACK from the client).
    /// At most 131072 connections in all.
    #[arg(long, default_value_t = 50_000)]
    pub short: usize,
    /// Long-lived connections.
    #[arg(long, default_value_t = 10_000)]
    pub long: usize,
    /// Data segments from the client per long-lived connection.
    #[arg(long, default_value_t = 1000)]
    pub segments: u32,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// The figures of one run.
#[derive(Debug, Clone, Serialize)]
pub struct SyncReport {
    /// Short connections run.
    pub short_conns: usize,
    /// Records a short connection made the master emit.
    pub records_per_short_conn: f64,
    /// Payload bytes (UDP) those records took, per short connection.
    pub bytes_per_short_conn: f64,
    /// Long-lived connections run.
    pub long_conns: usize,
    /// Client segments per long-lived connection (handshake and close
    /// besides).
    pub segments_per_long_conn: u32,
    /// Records per long-lived connection.
    pub records_per_long_conn: f64,
    /// Payload bytes per long-lived connection.
    pub bytes_per_long_conn: f64,
    /// Records per datagram of `maxlen` bytes.
    pub records_per_datagram: f64,
    /// Payload bytes per record, the datagram header shared out.
    pub bytes_per_record: f64,
    /// Datagrams sent (all records of the run).
    pub datagrams: u64,
    /// Records the sender encodes and sends per CPU second.
    pub sender_records_per_s: f64,
    /// Records the receiver receives and decodes per CPU second.
    pub receiver_records_per_s: f64,
    /// Records one backup worker installs per CPU second (new entries and
    /// updates of entries it has).
    pub install_records_per_s: f64,
    /// Records one worker installs per CPU second as new entries.
    pub install_new_per_s: f64,
    /// Records one worker applies per CPU second to entries it has.
    pub install_updates_per_s: f64,
    /// Records installed as new connections.
    pub installed: u64,
    /// Records that updated a connection installed before.
    pub updated: u64,
    /// Records lost anywhere (must be 0).
    pub lost: u64,
}

/// Client `i`'s segment of kind `l4` to the VIP's port 80.
fn seg(i: usize, l4: L4) -> Vec<u8> {
    let cip = [198, 18 | ((i >> 16) & 1) as u8, (i >> 8) as u8, i as u8];
    eth(CLIENT_MAC, DIR_MAC, &ip_packet(&ip(cip, VIP), &l4, b"x"))
}

/// Run `frames` through the master's pipeline, each forwarded, and move
/// what it emits into `out`.
fn emit(
    p: &mut Pipeline,
    port: &SyncPort,
    now: u64,
    frames: &mut [Vec<u8>],
    out: &mut Vec<SyncConn>,
) {
    for f in frames.iter_mut() {
        let v = p.process(now, f);
        assert!(matches!(v, Verdict::Tx(_)), "not forwarded: {v:?}");
    }
    port.drain_out(&mut |c| out.push(c));
}

/// The master's records for `short` short and `long` long connections.
fn master_records(a: &SyncArgs) -> (Vec<SyncConn>, Vec<SyncConn>) {
    let n = a.short + a.long;
    let mut f = Fixture::new(dr_service("rr", 3, None), n + 1024);
    let port = Arc::new(SyncPort::new(1));
    f.pipeline.set_sync(port.clone(), 0);
    port.set_master(true);
    let now = 1_000_000_000;
    let sport = 5000;
    let mut short = Vec::new();
    for i in 0..a.short {
        let mut frames = vec![
            seg(i, tcp(sport, 80).syn()),
            seg(i, tcp(sport, 80).ack(1)),
            seg(i, tcp(sport, 80).ack(1).flags(0x18)),
            seg(i, tcp(sport, 80).ack(1).fin()),
            seg(i, tcp(sport, 80).ack(2)),
        ];
        emit(&mut f.pipeline, &port, now, &mut frames, &mut short);
    }
    let mut long = Vec::new();
    for i in a.short..n {
        let mut frames = vec![seg(i, tcp(sport, 80).syn()), seg(i, tcp(sport, 80).ack(1))];
        emit(&mut f.pipeline, &port, now, &mut frames, &mut long);
        let mut data = seg(i, tcp(sport, 80).ack(1).flags(0x18));
        for _ in 0..a.segments {
            let v = f.pipeline.process(now, &mut data);
            assert!(matches!(v, Verdict::Tx(_)), "not forwarded: {v:?}");
            // Forwarding rewrote the destination MAC: the next segment
            // comes to the director again.
            data[0..6].copy_from_slice(&DIR_MAC);
            port.drain_out(&mut |c| long.push(c));
        }
        let mut close = vec![
            seg(i, tcp(sport, 80).ack(1).fin()),
            seg(i, tcp(sport, 80).ack(2)),
        ];
        emit(&mut f.pipeline, &port, now, &mut close, &mut long);
    }
    let c = port.counters();
    assert_eq!(c.out_dropped, 0, "the master dropped records");
    (short, long)
}

/// Encode `records` into datagrams as the master's sender does.
fn encode(records: &[SyncConn]) -> Vec<Vec<u8>> {
    let mut enc = Encoder::new(0, MAXLEN);
    let mut out = Vec::new();
    for r in records {
        if enc.push(r) == Err(PushError::Full) {
            out.extend(enc.take());
            enc.push(r).expect("a record fits an empty datagram");
        }
    }
    out.extend(enc.take());
    out
}

/// Send every record over loopback (encoding on the sender's thread) and
/// decode them on a receiver thread; returns the records received and the
/// two threads' rates (records per CPU second) and the datagram count.
fn carry(records: &[SyncConn]) -> std::io::Result<(Vec<SyncConn>, f64, f64, u64)> {
    let rx = UdpSocket::bind("127.0.0.1:0")?;
    rx.set_read_timeout(Some(Duration::from_secs(5)))?;
    let tx = UdpSocket::bind("127.0.0.1:0")?;
    tx.connect(rx.local_addr()?)?;
    let received = Arc::new(AtomicU64::new(0));
    let expect = encode(records).len() as u64;
    let got = received.clone();
    let receiver = std::thread::spawn(move || {
        let t0 = thread_cpu_ns();
        let mut buf = vec![0u8; 65536];
        let mut decoded = Vec::new();
        let mut out = Vec::new();
        for _ in 0..expect {
            let Ok(n) = rx.recv(&mut buf) else {
                break;
            };
            if xvs_sync::decode(&buf[..n], 0, &mut decoded).is_ok() {
                out.extend(decoded.drain(..).filter_map(Result::ok));
            }
            got.fetch_add(1, Ordering::Release);
        }
        (out, thread_cpu_ns() - t0)
    });
    let t0 = thread_cpu_ns();
    let mut enc = Encoder::new(0, MAXLEN);
    let mut sent = 0u64;
    let send = |d: Vec<u8>, sent: &mut u64| -> std::io::Result<()> {
        while *sent >= received.load(Ordering::Acquire) + WINDOW {
            std::thread::sleep(Duration::from_micros(50));
        }
        tx.send(&d)?;
        *sent += 1;
        Ok(())
    };
    for r in records {
        if enc.push(r) == Err(PushError::Full) {
            if let Some(d) = enc.take() {
                send(d, &mut sent)?;
            }
            enc.push(r).expect("a record fits an empty datagram");
        }
    }
    if let Some(d) = enc.take() {
        send(d, &mut sent)?;
    }
    let send_ns = thread_cpu_ns() - t0;
    let (out, recv_ns) = receiver.join().expect("the receiver ends");
    let rate = |ns: u64| records.len() as f64 / (ns.max(1) as f64 / 1e9);
    Ok((out, rate(send_ns), rate(recv_ns), sent))
}

/// Install `records` on a backup's pipeline (one worker): first each
/// connection's first record (a new entry), then the others (updates of
/// entries it has). Returns the CPU nanoseconds of the installing calls
/// for each part and the counters (new, updates, rejected).
fn install(records: &[SyncConn], conns: usize) -> (u64, u64, u64, u64, u64) {
    let mut seen = std::collections::HashSet::new();
    let (first, rest): (Vec<SyncConn>, Vec<SyncConn>) = records
        .iter()
        .partition(|r| seen.insert((r.protocol, r.caddr, r.cport, r.vaddr, r.vport)));
    let mut f = Fixture::new(dr_service("rr", 3, None), conns + 1024);
    let port = Arc::new(SyncPort::new(1));
    f.pipeline.set_sync(port.clone(), 0);
    port.set_backup(true);
    let now = 2_000_000_000;
    let mut timed = |part: &[SyncConn]| {
        let mut ns = 0;
        for chunk in part.chunks(IN_QUEUE) {
            for r in chunk {
                assert!(port.push_in(*r), "the backup's queue is full");
            }
            let t0 = thread_cpu_ns();
            while f.pipeline.sync_in(now) > 0 {}
            ns += thread_cpu_ns() - t0;
        }
        ns
    };
    let new_ns = timed(&first);
    let update_ns = timed(&rest);
    let c = port.counters();
    let rejected = c.rejected_state + c.rejected_proto + c.rejected_no_dest + c.rejected_full;
    (
        new_ns,
        update_ns,
        c.installed,
        c.updated + c.replaced + c.stale,
        rejected,
    )
}

/// Run the benchmark.
pub fn run(a: &SyncArgs) -> std::io::Result<SyncReport> {
    let a = SyncArgs {
        short: a.short.min(MAX_CONNS),
        long: a.long.min(MAX_CONNS - a.short.min(MAX_CONNS)),
        ..a.clone()
    };
    let (short, long) = master_records(&a);
    let bytes = |r: &[SyncConn]| encode(r).iter().map(|d| d.len() as u64).sum::<u64>();
    let per = |x: u64, n: usize| x as f64 / n.max(1) as f64;
    let all: Vec<SyncConn> = short.iter().chain(&long).copied().collect();
    let total_bytes = bytes(&all);
    let (got, sender, receiver, datagrams) = carry(&all)?;
    let (new_ns, update_ns, installed, updated, rejected) = install(&got, a.short + a.long);
    let rate = |n: u64, ns: u64| n as f64 / (ns.max(1) as f64 / 1e9);
    Ok(SyncReport {
        short_conns: a.short,
        records_per_short_conn: per(short.len() as u64, a.short),
        bytes_per_short_conn: per(bytes(&short), a.short),
        long_conns: a.long,
        segments_per_long_conn: a.segments,
        records_per_long_conn: per(long.len() as u64, a.long),
        bytes_per_long_conn: per(bytes(&long), a.long),
        records_per_datagram: all.len() as f64 / datagrams.max(1) as f64,
        bytes_per_record: total_bytes as f64 / all.len().max(1) as f64,
        datagrams,
        sender_records_per_s: sender,
        receiver_records_per_s: receiver,
        install_records_per_s: rate(installed + updated, new_ns + update_ns),
        install_new_per_s: rate(installed, new_ns),
        install_updates_per_s: rate(updated, update_ns),
        installed,
        updated,
        lost: (all.len() - got.len()) as u64 + rejected,
    })
}

/// The report as text.
pub fn text(r: &SyncReport) -> String {
    format!(
        "short connections     {}: {:.2} records, {:.1} payload bytes each\n\
         long-lived            {} of {} segments: {:.2} records, {:.1} payload bytes each\n\
         datagrams             {} of {:.1} records, {:.1} bytes per record\n\
         sender                {:.0} records/s (encode + send, per CPU second)\n\
         receiver              {:.0} records/s (receive + decode, per CPU second)\n\
         install, one worker   {:.0} records/s ({} new: {:.0}/s, {} updates: {:.0}/s)\n\
         lost                  {}\n",
        r.short_conns,
        r.records_per_short_conn,
        r.bytes_per_short_conn,
        r.long_conns,
        r.segments_per_long_conn,
        r.records_per_long_conn,
        r.bytes_per_long_conn,
        r.datagrams,
        r.records_per_datagram,
        r.bytes_per_record,
        r.sender_records_per_s,
        r.receiver_records_per_s,
        r.install_records_per_s,
        r.installed,
        r.install_new_per_s,
        r.updated,
        r.install_updates_per_s,
        r.lost,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_run_carries_every_record_and_counts_what_the_rules_say() {
        let r = run(&SyncArgs {
            short: 200,
            long: 20,
            segments: 120,
            json: false,
        })
        .expect("loopback works");
        assert_eq!(r.lost, 0, "{r:?}");
        // Short: the 3rd packet (ESTABLISHED) and the FIN (FIN_WAIT; the
        // last ACK leaves a director that sees one direction there).
        assert_eq!(r.records_per_short_conn, 2.0, "{r:?}");
        // Long: the 3rd packet, then every 50th (53rd, 103rd) of the 122
        // before the close, and the FIN.
        assert_eq!(r.records_per_long_conn, 4.0, "{r:?}");
        assert_eq!(r.installed, 220, "{r:?}");
        assert_eq!(r.updated, 200 + 20 * 3, "{r:?}");
        // 36-byte records after an 8-byte header, at most 1472 bytes: 40
        // a datagram.
        assert_eq!(r.datagrams, (200 * 2 + 20 * 4) / 40);
        assert!(
            r.bytes_per_record > 36.0 && r.bytes_per_record < 37.0,
            "{r:?}"
        );
    }
}
