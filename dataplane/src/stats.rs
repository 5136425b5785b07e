//! Traffic counters shared between the workers (writers) and the control
//! thread (reader for listings and rates).
//!
//! Counters are 64-bit and only ever added to with relaxed atomics: a
//! listing may see one packet's counters half-updated, never a torn value.

use std::sync::atomic::{AtomicU64, Ordering};

/// ipvsadm's five counters of a service or a destination.
#[derive(Debug, Default)]
pub struct Counters {
    /// Connections scheduled.
    pub conns: AtomicU64,
    /// Packets client → server.
    pub inpkts: AtomicU64,
    /// Packets server → client (NAT only; DR/TUN never see them).
    pub outpkts: AtomicU64,
    /// Bytes client → server (IP length).
    pub inbytes: AtomicU64,
    /// Bytes server → client.
    pub outbytes: AtomicU64,
}

/// A plain copy of [`Counters`] at one instant.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CounterValues {
    /// Connections scheduled.
    pub conns: u64,
    /// Packets in.
    pub inpkts: u64,
    /// Packets out.
    pub outpkts: u64,
    /// Bytes in.
    pub inbytes: u64,
    /// Bytes out.
    pub outbytes: u64,
}

impl Counters {
    /// Count one new connection.
    #[inline]
    pub fn add_conn(&self) {
        self.conns.fetch_add(1, Ordering::Relaxed);
    }

    /// Count one inbound packet of `bytes` IP bytes.
    #[inline]
    pub fn add_in(&self, bytes: u64) {
        self.inpkts.fetch_add(1, Ordering::Relaxed);
        self.inbytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Count one outbound packet of `bytes` IP bytes.
    #[inline]
    pub fn add_out(&self, bytes: u64) {
        self.outpkts.fetch_add(1, Ordering::Relaxed);
        self.outbytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Read all five counters.
    pub fn get(&self) -> CounterValues {
        CounterValues {
            conns: self.conns.load(Ordering::Relaxed),
            inpkts: self.inpkts.load(Ordering::Relaxed),
            outpkts: self.outpkts.load(Ordering::Relaxed),
            inbytes: self.inbytes.load(Ordering::Relaxed),
            outbytes: self.outbytes.load(Ordering::Relaxed),
        }
    }

    /// Zero all five counters (`-Z`).
    pub fn zero(&self) {
        self.conns.store(0, Ordering::Relaxed);
        self.inpkts.store(0, Ordering::Relaxed);
        self.outpkts.store(0, Ordering::Relaxed);
        self.inbytes.store(0, Ordering::Relaxed);
        self.outbytes.store(0, Ordering::Relaxed);
    }
}
