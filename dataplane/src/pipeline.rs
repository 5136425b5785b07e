//! The pure packet logic, in three steps: parse the frame once
//! (`packet`), track its connection (`conn::tracker`), transmit it by the
//! connection's forwarding method (`xmit`), rewriting in place. It never
//! sees a NIC or a clock: time is passed in and frames are byte buffers,
//! so tests, fuzzing and benchmarks drive it directly.

use crate::conn::table::{ConnTable, Hint, Key, Partition, ReplyKey};
use crate::conn::tracker::{self, fwd_of, nat_rport, Bound, Reply, Track, Tracker};
use crate::flow::{Addr, FlowKey};
use crate::frame::FrameBuf;
use crate::packet::{self, Parsed, Quoted};
use crate::svc::{DestRt, Fwd, ReplyFilter, Snapshot};
use crate::wire::eth::Mac;
use crate::wire::icmpv6::QuotedFlow6;
use crate::wire::ipv4::{PROTO_TCP, PROTO_UDP};
use crate::xmit::{self, Dir, Out, XmitCtx, XmitError};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

/// The verdict types, at the path other crates know them by.
pub use crate::verdict::{DropReason, Verdict};

/// Per-worker counters of the pipeline (plain integers: one writer).
#[derive(Debug, Default, Clone)]
pub struct PipelineStats {
    /// Frames transmitted.
    pub tx: u64,
    /// Frames passed to the kernel.
    pub pass: u64,
    /// Frames dropped, by reason.
    pub drops: [u64; DropReason::COUNT],
    /// Connections created.
    pub conns_created: u64,
    /// Connections expired.
    pub conns_expired: u64,
    /// Persistence templates created.
    pub templates_created: u64,
    /// ICMP fragmentation-needed sent back for tunnelled packets.
    pub frag_needed: u64,
    /// Half-open or expired entries evicted to make room for new ones.
    pub conns_evicted: u64,
    /// Frames forwarded without a connection entry (table full).
    pub stateless: u64,
}

impl tracker::Counts for PipelineStats {
    #[inline]
    fn conn_created(&mut self) {
        self.conns_created += 1;
    }

    #[inline]
    fn template_created(&mut self) {
        self.templates_created += 1;
    }

    #[inline]
    fn conn_expired(&mut self) {
        self.conns_expired += 1;
    }

    #[inline]
    fn conn_evicted(&mut self) {
        self.conns_evicted += 1;
    }

    #[inline]
    fn stateless(&mut self) {
        self.stateless += 1;
    }
}

/// How often the expiry sweep walks a worker's whole partition.
pub use crate::conn::tracker::SWEEP_PERIOD_NS;

/// The packet pipeline of one worker.
#[derive(Debug)]
pub struct Pipeline {
    /// The configuration; taken out while a frame is processed (moving an
    /// `Arc` costs nothing, cloning one costs two locked instructions).
    snap: Option<Arc<Snapshot>>,
    /// The IPv4 connections of this worker.
    track: Tracker,
    /// Its IPv6 connections (a table of their own: 84-byte entries).
    track6: Tracker<Ipv6Addr>,
    ports: Vec<PortInfo>,
    /// Identification of the next tunnel header.
    ident: u16,
    stats: PipelineStats,
    /// The findings of [`Pipeline::prefetch`] for [`Pipeline::process`].
    hints: Hints,
    /// The counter shard of this worker (see [`Pipeline::set_writer`]).
    writer: usize,
}

/// Entries of the IPv6 table a pipeline made by [`Pipeline::with_table`]
/// starts with (a director gives its workers a shared one).
pub const IPV6_MIN_CAPACITY: usize = 1024;

/// The IPv6 table's capacity next to an IPv4 table of `conns` entries: an
/// eighth of it (IPv6 entries are larger, and IPv6 traffic is the smaller
/// share today), at least [`IPV6_MIN_CAPACITY`].
pub fn ipv6_capacity(conns: usize) -> usize {
    (conns / 8).max(IPV6_MIN_CAPACITY)
}

use std::cell::Cell;

/// Frames per batch whose prefetch findings [`Hints`] keeps (a worker's
/// RX batch).
pub const HINT_BATCH: usize = 64;

/// The prefetch pass's findings for a batch of frames, handed on to their
/// processing so that each frame's keys are hashed and its bucket scanned
/// once: stage 0 of the pass ([`Hints::prefetch`]) over every frame of the
/// batch, then stage 1, then [`Hints::take`] once per frame as it is
/// processed, all in the same order. A finding is used only for the key it
/// was made for, so frames out of step cost a lookup, never a wrong one.
/// Cells, so that a port's prefetch callback and its processing callback
/// can both hold it.
#[derive(Debug)]
pub struct Hints {
    /// Each frame's findings, in plain words (so that a stage reads and
    /// writes only what it needs).
    key: [Cell<(u64, u64)>; HINT_BATCH],
    hash: [Cell<(u64, u64)>; HINT_BATCH],
    cand: [Cell<(u32, u32)>; HINT_BATCH],
    /// Frames seen by stage 0, stage 1 and [`Hints::take`] in this batch.
    staged: Cell<usize>,
    scanned: Cell<usize>,
    taken: Cell<usize>,
    /// What was called last: 0 stage 0, 1 stage 1, 2 take.
    last: Cell<u8>,
}

impl Default for Hints {
    fn default() -> Self {
        Hints {
            key: std::array::from_fn(|_| Cell::new((0, 0))),
            hash: std::array::from_fn(|_| Cell::new((0, 0))),
            cand: std::array::from_fn(|_| Cell::new((0, 0))),
            staged: Cell::new(0),
            scanned: Cell::new(0),
            taken: Cell::new(0),
            last: Cell::new(2),
        }
    }
}

impl Hints {
    /// Run prefetch stage `stage` for `frame` (the next frame of this
    /// stage): stage 0 hashes its keys and requests their buckets, stage 1
    /// finds the entries whose tags match there and requests them. IPv4
    /// frames only (see [`Hints::prefetch_both`]).
    #[inline(always)]
    pub fn prefetch(&self, table: &ConnTable, stage: u8, frame: &[u8]) {
        self.pass(table, None, None, stage, frame);
    }

    /// [`Hints::prefetch`] for IPv4 frames in `table` and IPv6 TCP and
    /// UDP frames (no extension headers) in `table6`. An IPv6 frame's key
    /// is not kept (40 bytes a frame): its candidate entry is passed on
    /// alone, its processing reads that entry first and hashes the key
    /// only when the entry is not the frame's (see [`Hint::unkeyed`]).
    #[inline(always)]
    pub fn prefetch_both(
        &self,
        table: &ConnTable,
        table6: &ConnTable<Ipv6Addr>,
        stage: u8,
        frame: &[u8],
    ) {
        self.pass(table, Some(table6), None, stage, frame);
    }

    /// [`Hints::prefetch_both`] that reads an IPv4 frame passing `filter`
    /// (from a NAT real server's address, see [`ReplyFilter`]; none: no
    /// NAT destination) as a reply first: stage 0 requests its reply
    /// bucket alone, stage 1 scans that alone (see
    /// [`ConnTable::hint_reply`]).
    #[inline(always)]
    pub fn prefetch_filtered(
        &self,
        table: &ConnTable,
        table6: &ConnTable<Ipv6Addr>,
        filter: Option<&ReplyFilter>,
        stage: u8,
        frame: &[u8],
    ) {
        self.pass(table, Some(table6), filter, stage, frame);
    }

    #[inline(always)]
    fn pass(
        &self,
        table: &ConnTable,
        table6: Option<&ConnTable<Ipv6Addr>>,
        filter: Option<&ReplyFilter>,
        stage: u8,
        frame: &[u8],
    ) {
        if stage == 0 {
            if self.last.get() != 0 {
                self.last.set(0);
                self.staged.set(0);
            }
            let n = self.staged.get();
            if n < HINT_BATCH {
                self.staged.set(n + 1);
                let h = hint(table, filter, frame);
                let (k, mut hash, cand) = h.parts();
                if k.1 == 0 {
                    if let Some(t6) = table6 {
                        // An IPv6 frame's slot: no key, its hash alone.
                        hash = (hint6(t6, frame), 0);
                    }
                }
                self.key[n].set(k);
                self.hash[n].set(hash);
                self.cand[n].set(cand);
            }
            return;
        }
        if self.last.get() != 1 {
            if self.last.get() == 0 {
                self.scanned.set(0);
            }
            self.last.set(1);
        }
        let n = self.scanned.get();
        if n >= self.staged.get() {
            return;
        }
        // (`staged` never passes the batch: one bounds check for all.)
        if let (Some(key), Some(hash), Some(cand)) =
            (self.key.get(n), self.hash.get(n), self.cand.get(n))
        {
            self.scanned.set(n + 1);
            if key.get().1 != 0 {
                cand.set(table.hint_entries(hash.get()));
            } else if let Some(t6) = table6 {
                let hash = hash.get();
                if hash.0 != 0 {
                    cand.set(t6.hint_entries(hash));
                }
            }
        }
    }

    /// The findings for the next frame processed (none once the batch's
    /// are used up).
    #[inline(always)]
    pub fn take(&self) -> HintWords {
        if self.last.get() != 2 {
            self.last.set(2);
            self.taken.set(0);
        }
        let n = self.taken.get();
        if n >= self.staged.get() {
            return HintWords::default();
        }
        match (self.key.get(n), self.hash.get(n), self.cand.get(n)) {
            (Some(key), Some(hash), Some(cand)) => {
                self.taken.set(n + 1);
                HintWords {
                    key: key.get(),
                    hash: hash.get(),
                    cand: cand.get(),
                }
            }
            _ => HintWords::default(),
        }
    }
}

/// The prefetch pass's findings for one frame as [`Hints`] keeps them,
/// in plain words: the connection's candidate entry is all the
/// established path reads, and the whole [`Hint`] is made only for a
/// packet that path does not take.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HintWords {
    key: (u64, u64),
    hash: (u64, u64),
    cand: (u32, u32),
}

impl HintWords {
    /// The findings as the table takes them.
    #[inline(always)]
    pub fn hint(&self) -> Hint {
        Hint::of_parts(self.key, self.hash, self.cand)
    }

    /// The connection index's candidate (see [`Hint::cand`]).
    #[inline(always)]
    fn cand(&self) -> u32 {
        self.cand.0
    }

    /// The hash and candidate of [`Hint::unkeyed`] of these findings,
    /// as two words: what an IPv6 frame takes from the IPv4 pass (kept
    /// in registers to `process6`, the hint made only if the established
    /// path leaves the packet).
    #[inline(always)]
    fn unkeyed(&self) -> (u64, u32) {
        // `of_parts` has no key exactly when the key's second word is 0.
        if self.key.1 == 0 {
            (self.hash.0, self.cand.0)
        } else {
            (0, 0)
        }
    }
}

/// Stage 0 of the prefetch pass for one frame: its keys, hashed, and their
/// buckets requested (only the reply bucket for a frame that passes
/// `filter`).
#[inline(always)]
fn hint(table: &ConnTable, filter: Option<&ReplyFilter>, frame: &[u8]) -> Hint {
    // A hint only: read the key at the offsets of the common case (IPv4
    // without options, TCP or UDP) without validating; `process` parses
    // properly and uses the hint only if the key is the same.
    let Some(h) = frame.get(..38) else {
        return Hint::default();
    };
    if h[12..15] != [0x08, 0x00, 0x45] {
        return Hint::default();
    }
    let proto = h[23];
    if proto != PROTO_TCP && proto != PROTO_UDP {
        return Hint::default();
    }
    let key = FlowKey {
        proto,
        cip: Ipv4Addr::new(h[26], h[27], h[28], h[29]),
        cport: u16::from_be_bytes([h[34], h[35]]),
        vip: Ipv4Addr::new(h[30], h[31], h[32], h[33]),
        vport: u16::from_be_bytes([h[36], h[37]]),
    };
    // The same frame read as a NAT real server's reply.
    let rk = ReplyKey {
        proto,
        rip: key.cip,
        rport: key.cport,
        cip: key.vip,
        cport: key.vport,
    };
    if let Some(f) = filter {
        if f.reply_first(key.cip, key.vip) {
            return table.hint_reply(&Key::conn(&key), &rk);
        }
        // A client's TCP segment that opens nothing, from no NAT server's
        // address: its connection's, all but always, so its reply key is
        // left unhashed (a lookup of it, if one is needed, hashes it).
        if !f.from_nat(key.cip)
            && proto == PROTO_TCP
            && frame
                .get(47)
                .is_some_and(|&fl| fl & crate::wire::tcp::SYN == 0)
        {
            return table.hint_conn(&Key::conn(&key));
        }
    }
    table.hint(&Key::conn(&key), &rk)
}

/// Stage 0 of the prefetch pass for an IPv6 frame (TCP or UDP right
/// after the fixed header): its key's hash, its bucket requested; 0 for
/// any other frame.
#[inline(always)]
fn hint6(table: &ConnTable<Ipv6Addr>, frame: &[u8]) -> u64 {
    // A hint only, as for IPv4: `process6` parses properly and uses the
    // candidate only if its entry has the frame's key.
    let Some(h) = frame.get(..58) else {
        return 0;
    };
    if h[12..14] != [0x86, 0xdd] {
        return 0;
    }
    let proto = h[20];
    if proto != PROTO_TCP && proto != PROTO_UDP {
        return 0;
    }
    let addr = |o: usize| {
        let mut a = [0u8; 16];
        a.copy_from_slice(&h[o..o + 16]);
        Ipv6Addr::from(a)
    };
    let key = FlowKey {
        proto,
        cip: addr(22),
        cport: u16::from_be_bytes([h[54], h[55]]),
        vip: addr(38),
        vport: u16::from_be_bytes([h[56], h[57]]),
    };
    table.hint_unkeyed(&Key::conn(&key))
}

/// One interface of the worker's group, as the pipeline needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortInfo {
    /// Interface index (0: unknown, single-port tests).
    pub ifindex: u32,
    /// Its MAC (source of everything sent out of it).
    pub mac: Mac,
    /// Its IP MTU.
    pub mtu: u16,
}

impl Pipeline {
    /// A pipeline over `snap` with its own table of `max_conns` entries
    /// (tests and benchmarks: one worker), transmitting with source MAC
    /// `our_mac`.
    pub fn new(snap: Arc<Snapshot>, max_conns: usize, our_mac: Mac) -> Self {
        let (table, mut parts) = ConnTable::new(max_conns, 1);
        let part = parts.pop().expect("one partition");
        let mut p = Pipeline::with_table(snap, Arc::new(table), part, our_mac);
        let (t6, mut parts6) = ConnTable::<Ipv6Addr>::empty(ipv6_capacity(max_conns), 1);
        p.set_table6(Arc::new(t6), parts6.pop().expect("one partition"));
        p
    }

    /// A pipeline of one worker of a shared table, owning partition `part`
    /// (and a small IPv6 table of its own until [`Pipeline::set_table6`]).
    pub fn with_table(
        snap: Arc<Snapshot>,
        table: Arc<ConnTable>,
        part: Partition,
        our_mac: Mac,
    ) -> Self {
        let (t6, mut parts6) = ConnTable::<Ipv6Addr>::empty(IPV6_MIN_CAPACITY, 1);
        let part6 = parts6.pop().expect("one partition");
        Pipeline {
            snap: Some(snap),
            track: Tracker::new(table, part),
            track6: Tracker::new(Arc::new(t6), part6),
            ports: vec![PortInfo {
                ifindex: 0,
                mac: our_mac,
                mtu: 1500,
            }],
            ident: 0,
            stats: PipelineStats::default(),
            hints: Hints::default(),
            writer: usize::MAX,
        }
    }

    /// Keep IPv6 connections in `table` (shared by the workers, each
    /// owning one partition), in place of the pipeline's own.
    pub fn set_table6(&mut self, table: Arc<ConnTable<Ipv6Addr>>, part: Partition) {
        let mut t = Tracker::new(table, part);
        t.set_writer(self.writer);
        if let Some((port, worker)) = self.track.sync_link() {
            t.set_sync(port, worker);
        }
        self.track6 = t;
    }

    /// The shared IPv6 connection table.
    pub fn table6(&self) -> &Arc<ConnTable<Ipv6Addr>> {
        self.track6.table()
    }

    /// This worker's partition of the IPv6 table.
    pub fn partition6(&self) -> &Partition {
        self.track6.partition()
    }

    /// The interfaces of this worker's group, in port order.
    pub fn set_ports(&mut self, ports: Vec<PortInfo>) {
        if !ports.is_empty() {
            self.ports = ports;
        }
    }

    /// Interface `ifindex`'s MAC is now `mac`: the source of what is sent
    /// out of it and the only unicast destination accepted on it.
    pub fn set_port_mac(&mut self, ifindex: u32, mac: Mac) {
        for p in self.ports.iter_mut().filter(|p| p.ifindex == ifindex) {
            p.mac = mac;
        }
    }

    /// The port toward `dest`'s next hop and a transmit context with both
    /// MACs; `None` (and a resolution asked for) while its neighbour or
    /// port is unknown.
    #[inline]
    fn next_hop(&self, dest: &DestRt) -> Option<(u8, XmitCtx)> {
        let (out, src, dst) = self.hop(dest)?;
        Some((out, XmitCtx::macs(src, dst)))
    }

    /// The port toward `dest`'s next hop, its MAC and the next hop's:
    /// what every method needs, without the rest of a transmit context
    /// (direct routing needs nothing else, and builds none).
    #[inline(always)]
    fn hop(&self, dest: &DestRt) -> Option<(u8, Mac, Mac)> {
        // Written out rather than chained through closures: the compiler
        // left the closure a call of its own on every packet.
        if let Some(mac) = dest.neigh.mac() {
            // One port (the common case): no route to read.
            let out = if self.ports.len() == 1 {
                Some(0)
            } else {
                self.port_of(dest.neigh.oif())
            };
            if let Some(out) = out {
                if let Some(port) = self.ports.get(usize::from(out)) {
                    return Some((out, port.mac, mac));
                }
            }
        }
        dest.neigh.want();
        None
    }

    /// The port whose interface is `oif`; with a single port, that one.
    #[inline]
    fn port_of(&self, oif: Option<u32>) -> Option<u8> {
        if self.ports.len() == 1 {
            return Some(0);
        }
        let oif = oif?;
        self.ports
            .iter()
            .position(|p| p.ifindex == oif)
            .map(|i| i as u8)
    }

    /// Count into the counter shards of worker `w` (see `stats`); without
    /// this the pipeline counts through the shared shards.
    pub fn set_writer(&mut self, w: usize) {
        self.writer = w;
        self.track.set_writer(w);
        self.track6.set_writer(w);
    }

    /// Take part in connection sync as worker `worker` of `port` (see
    /// [`Tracker::set_sync`]).
    pub fn set_sync(&mut self, port: Arc<crate::sync::SyncPort>, worker: usize) {
        self.track6.set_sync(port.clone(), worker);
        self.track.set_sync(port, worker);
    }

    /// Install the sync records queued for this worker, a bounded number
    /// (between batches; nothing to do costs two atomic loads). Returns
    /// how many were taken.
    pub fn sync_in(&mut self, now_ns: u64) -> usize {
        let Some(snap) = self.snap.take() else {
            return 0;
        };
        let n = self
            .track
            .install_queued(&mut self.track6, &snap, now_ns, &mut self.stats);
        self.snap = Some(snap);
        n
    }

    /// Switch to a newer configuration snapshot (between batches).
    pub fn set_snapshot(&mut self, snap: Arc<Snapshot>) {
        self.snap = Some(snap);
    }

    /// The counters.
    pub fn stats(&self) -> &PipelineStats {
        &self.stats
    }

    /// The shared connection table.
    pub fn table(&self) -> &Arc<ConnTable> {
        self.track.table()
    }

    /// This worker's partition of the table.
    pub fn partition(&self) -> &Partition {
        self.track.partition()
    }

    /// Expire this worker's share of connections and templates: the sweep
    /// walks the partition once per [`SWEEP_PERIOD_NS`], a slice per call,
    /// so it never stalls the worker. A template that still controls
    /// connections is kept (IPVS: it does not expire while in use).
    pub fn expire(&mut self, now_ns: u64) {
        let Some(snap) = self.snap.take() else {
            return;
        };
        self.track.expire(&snap, now_ns, &mut self.stats);
        self.track6.expire(&snap, now_ns, &mut self.stats);
        self.snap = Some(snap);
    }

    /// Request the connection-table memory `frame` will need: stage 0 for
    /// every frame of a batch, then stage 1, then process them in the same
    /// order (the misses then overlap instead of coming one after another,
    /// and each frame's keys are hashed once).
    #[inline(always)]
    pub fn prefetch(&self, stage: u8, frame: &[u8]) {
        // Only stage 0 reads the filter.
        let filter = if stage == 0 {
            self.snap.as_deref().and_then(Snapshot::reply_filter)
        } else {
            None
        };
        self.hints.pass(
            self.track.table(),
            Some(self.track6.table()),
            filter,
            stage,
            frame,
        );
    }

    /// The current snapshot's [`ReplyFilter`] (none without NAT
    /// destinations), for a caller running the prefetch pass with its own
    /// [`Hints`] ([`Hints::prefetch_filtered`]); taken again after each
    /// [`Pipeline::set_snapshot`].
    pub fn reply_filter(&self) -> Option<ReplyFilter> {
        self.snap
            .as_deref()
            .and_then(Snapshot::reply_filter)
            .copied()
    }

    /// Process one frame in place. `now` is a monotonic clock in ns.
    #[inline]
    pub fn process<B: FrameBuf + ?Sized>(&mut self, now: u64, frame: &mut B) -> Verdict {
        self.process_on(now, 0, frame)
    }

    /// Process one frame that arrived on port `ingress` of the group.
    #[inline]
    pub fn process_on<B: FrameBuf + ?Sized>(
        &mut self,
        now: u64,
        ingress: u8,
        frame: &mut B,
    ) -> Verdict {
        let hint = self.hints.take();
        self.process_hinted(now, ingress, frame, &hint)
    }

    /// [`Pipeline::process_on`] with the prefetch pass's findings for the
    /// frame (from a [`Hints`] of the caller's).
    // Always in line, with `process_inner`, in the caller's per-frame loop:
    // as a call of its own, its frame and saved registers cost about 20
    // instructions a packet, a twentieth of an established DR packet.
    #[inline(always)]
    pub fn process_hinted<B: FrameBuf + ?Sized>(
        &mut self,
        now: u64,
        ingress: u8,
        frame: &mut B,
        hint: &HintWords,
    ) -> Verdict {
        self.batch().process_hinted(now, ingress, frame, hint)
    }
}

/// A [`Pipeline`] processing a batch of frames under one snapshot
/// ([`Pipeline::batch`]): the same results as the pipeline's own
/// `process*` calls, without taking the snapshot out and putting it back
/// for every frame.
#[derive(Debug)]
pub struct Batch<'p> {
    pipe: &'p mut Pipeline,
    snap: Option<Arc<Snapshot>>,
}

impl Batch<'_> {
    /// [`Pipeline::process`] within the batch.
    #[inline]
    pub fn process<B: FrameBuf + ?Sized>(&mut self, now: u64, frame: &mut B) -> Verdict {
        let hint = self.pipe.hints.take();
        self.process_hinted(now, 0, frame, &hint)
    }

    /// [`Pipeline::process_hinted`] within the batch.
    #[inline(always)]
    pub fn process_hinted<B: FrameBuf + ?Sized>(
        &mut self,
        now: u64,
        ingress: u8,
        frame: &mut B,
        hint: &HintWords,
    ) -> Verdict {
        let Some(snap) = self.snap.as_deref() else {
            return Verdict::Drop(DropReason::NoDest);
        };
        let v = self.pipe.process_inner(snap, now, ingress, frame, hint);
        self.pipe.count(v);
        v
    }
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        // Back in its place, which nothing can have filled meanwhile (the
        // batch holds the pipeline).
        if let Some(s) = self.snap.take() {
            self.pipe.snap = Some(s);
        }
    }
}

impl Pipeline {
    /// Process a batch of frames under the current snapshot, taken once
    /// for the batch instead of once per frame; it goes back when the
    /// [`Batch`] is dropped. Nothing between two frames of a batch can
    /// change the snapshot: a new one comes between batches.
    #[inline]
    pub fn batch(&mut self) -> Batch<'_> {
        let snap = self.snap.take();
        Batch { pipe: self, snap }
    }

    #[inline(always)]
    fn count(&mut self, v: Verdict) {
        match v {
            Verdict::Tx(_) => self.stats.tx += 1,
            Verdict::Pass => self.stats.pass += 1,
            Verdict::Drop(r) => self.stats.drops[r as usize] += 1,
        }
    }

    #[inline(always)]
    fn process_inner<B: FrameBuf + ?Sized>(
        &mut self,
        snap: &Snapshot,
        now_ns: u64,
        ingress: u8,
        buf: &mut B,
        hint: &HintWords,
    ) -> Verdict {
        let frame = buf.bytes();
        // The common frame first, without the general parse's result
        // wrapped around it (the parsed view is then built in place).
        let p = match packet::parse_plain(frame) {
            Some(p) => p,
            // IPv6 straight to its own path: the general IPv4 parse would
            // only pass it.
            None if packet::is_ipv6(frame) => {
                let (hash, cand) = hint.unkeyed();
                return self.process6(snap, now_ns, ingress, buf, hash, cand);
            }
            None => match packet::parse_any(frame) {
                Ok(p) => p,
                Err(v) => return v,
            },
        };
        // Another host's frame (the steering program passes these; this
        // guards against one that got here anyway): never forwarded.
        if frame[0] & 1 == 0 {
            if let Some(port) = self.ports.get(ingress as usize) {
                if frame[..6] != port.mac {
                    return Verdict::Drop(DropReason::OtherHost);
                }
            }
        }
        if p.quoted.is_some() {
            return self.icmp(snap, ingress, &p, buf);
        }
        // A sender with TX checksum offload (the default) left a partial
        // checksum: complete it before anything forwards or rewrites it.
        p.complete_partial(frame);
        // The hint is made only if the established path leaves the packet.
        match self.track.track_lazy(
            snap,
            now_ns,
            ingress,
            &p,
            frame,
            hint.cand(),
            || hint.hint(),
            &mut self.stats,
        ) {
            // Direct routing, the most common method, in line: the MACs
            // are all it changes.
            Track::In(dest, b) if fwd_of(b.fwd) == Fwd::Dr => match self.hop(dest) {
                Some((out, src, dst)) => {
                    let sent = xmit::dr::packet_xmit(buf, &p, &XmitCtx::macs(src, dst));
                    self.verdict(sent, out, ingress)
                }
                None => Verdict::Drop(DropReason::NoNeigh),
            },
            // An IPv4 tunnel in line as well, from the destination's
            // header template (an IPv6 real server goes the general way).
            Track::In(dest, b) if fwd_of(b.fwd) == Fwd::Tun && dest.outer4.is_some() => {
                self.tun4(dest, ingress, &p, buf)
            }
            // And NAT to an address service's destination, with the
            // checksum changes the snapshot summed for it.
            Track::In(dest, b) if fwd_of(b.fwd) == Fwd::Nat && dest.nat4.is_some() => {
                self.nat4(b, dest, ingress, &p, buf)
            }
            Track::In(dest, b) => self.xmit(b, dest, ingress, p.key.vport, &p, buf),
            Track::Out(r) => self.reply(&r, &p, buf),
            Track::Pass => Verdict::Pass,
            Track::Drop(r) => Verdict::Drop(r),
        }
    }

    /// [`Pipeline::process_inner`] for an IPv6 frame: parsed, tracked in
    /// the IPv6 table, sent by the connection's method (direct routing,
    /// NAT, or IPv6-in-IPv6 tunnel, which answers a packet too big for the
    /// tunnel with an ICMPv6 packet too big), or a NAT real server's reply
    /// sent back to its client.
    #[inline(never)]
    fn process6<B: FrameBuf + ?Sized>(
        &mut self,
        snap: &Snapshot,
        now_ns: u64,
        ingress: u8,
        buf: &mut B,
        hash: u64,
        cand: u32,
    ) -> Verdict {
        let frame = buf.bytes();
        // The common frame at fixed offsets first, the walk of the
        // extension headers only for the rest.
        let p = match packet::parse_plain6(frame) {
            Some(p) => p,
            None => match packet::parse6(frame) {
                Ok(p) => p,
                Err(v) => return v,
            },
        };
        if frame[0] & 1 == 0 {
            if let Some(port) = self.ports.get(ingress as usize) {
                if frame[..6] != port.mac {
                    return Verdict::Drop(DropReason::OtherHost);
                }
            }
        }
        if p.key.proto == crate::wire::ipv6::NEXT_ICMPV6 {
            return self.icmp(snap, ingress, &p, buf);
        }
        p.complete_partial(frame);
        // The hint is made only if the established path leaves the packet.
        match self.track6.track_lazy(
            snap,
            now_ns,
            ingress,
            &p,
            frame,
            cand,
            || Hint::unkeyed_of(hash, cand),
            &mut self.stats,
        ) {
            // Direct routing in line, as for IPv4.
            Track::In(dest, b) if fwd_of(b.fwd) == Fwd::Dr => match self.hop(dest) {
                Some((out, src, dst)) => {
                    let sent = xmit::dr::packet_xmit(buf, &p, &XmitCtx::macs(src, dst));
                    self.verdict(sent, out, ingress)
                }
                None => Verdict::Drop(DropReason::NoNeigh),
            },
            Track::In(dest, b) => self.xmit6(b, dest, ingress, &p, buf),
            Track::Out(r) => self.reply6(&r, &p, buf),
            Track::Pass => Verdict::Pass,
            Track::Drop(r) => Verdict::Drop(r),
        }
    }

    /// [`Pipeline::xmit`] for an IPv6 frame.
    fn xmit6<B: FrameBuf + ?Sized>(
        &mut self,
        b: Bound,
        dest: &Arc<DestRt>,
        ingress: u8,
        pkt: &packet::Parsed<Ipv6Addr>,
        buf: &mut B,
    ) -> Verdict {
        let Some((out, mut ctx)) = self.next_hop(dest) else {
            return Verdict::Drop(DropReason::NoNeigh);
        };
        let port = self.ports[out as usize];
        let sent = match fwd_of(b.fwd) {
            Fwd::Dr => xmit::dr::packet_xmit(buf, pkt, &ctx),
            Fwd::Nat => {
                let Some(rip) = Ipv6Addr::of_ip(dest.sched.addr) else {
                    return Verdict::Drop(DropReason::FwdUnsupported);
                };
                ctx.addr6 = rip;
                ctx.port = b.rport.unwrap_or_else(|| nat_rport(dest, pkt.key.vport));
                ctx.dir = Dir::In;
                xmit::nat::packet_xmit6(buf, pkt, &ctx)
            }
            Fwd::Tun => {
                ctx.tun = dest.tun;
                ctx.mtu = port.mtu;
                match (dest.sched.addr, dest.neigh.src(), dest.neigh.src6()) {
                    (IpAddr::V6(rip), _, Some(src)) => {
                        ctx.addr6 = rip;
                        ctx.tun_src6 = src;
                        xmit::tun::packet_xmit6(buf, pkt, &ctx)
                    }
                    (IpAddr::V4(rip), Some(src), _) => {
                        ctx.addr = rip;
                        ctx.tun_src = src;
                        ctx.ident = self.ident.wrapping_add(1);
                        let sent = xmit::tun::packet_xmit6in4(buf, pkt, &ctx);
                        if sent != Err(XmitError::NoTailroom) {
                            self.ident = ctx.ident;
                        }
                        sent
                    }
                    _ => {
                        dest.neigh.want();
                        return Verdict::Drop(DropReason::NoNeigh);
                    }
                }
            }
        };
        self.verdict(sent, out, ingress)
    }

    /// An IPv4 packet for a tunnel to IPv6 real server `dest` (IPv4 in
    /// IPv6), with `ctx` holding the MACs, out of port `out`.
    #[allow(clippy::too_many_arguments)]
    #[cold]
    fn xmit_4in6<B: FrameBuf + ?Sized>(
        &mut self,
        dest: &DestRt,
        mut ctx: XmitCtx,
        mtu: u16,
        out: u8,
        ingress: u8,
        pkt: &Parsed,
        buf: &mut B,
    ) -> Verdict {
        let (IpAddr::V6(rip), Some(src)) = (dest.sched.addr, dest.neigh.src6()) else {
            dest.neigh.want();
            return Verdict::Drop(DropReason::NoNeigh);
        };
        ctx.addr6 = rip;
        ctx.tun_src6 = src;
        ctx.tun = dest.tun;
        ctx.mtu = mtu;
        ctx.ident = self.ident.wrapping_add(1);
        let sent = xmit::tun::packet_xmit4in6(buf, pkt, &ctx);
        if sent != Err(XmitError::NoTailroom) {
            self.ident = ctx.ident;
        }
        self.verdict(sent, out, ingress)
    }

    /// [`Pipeline::reply`] for an IPv6 frame: back to the client as from
    /// [VIP]:vport.
    fn reply6<B: FrameBuf + ?Sized>(
        &mut self,
        r: &Reply<Ipv6Addr>,
        pkt: &packet::Parsed<Ipv6Addr>,
        buf: &mut B,
    ) -> Verdict {
        let Some(port) = self.ports.get(usize::from(r.ret_port)).copied() else {
            return Verdict::Drop(DropReason::NoNeigh);
        };
        let mut ctx = XmitCtx::macs(port.mac, r.ret_mac);
        ctx.addr6 = r.vip;
        ctx.port = r.vport;
        ctx.dir = Dir::Out;
        let sent = xmit::nat::packet_xmit6(buf, pkt, &ctx);
        self.verdict(sent, r.ret_port, r.ret_port)
    }

    /// Send a frame of a connection bound to `dest` as `b` towards its
    /// real server by the connection's forwarding method.
    #[inline]
    fn xmit<B: FrameBuf + ?Sized>(
        &mut self,
        b: Bound,
        dest: &Arc<DestRt>,
        ingress: u8,
        vport: u16,
        pkt: &Parsed,
        buf: &mut B,
    ) -> Verdict {
        let Some((out, src_mac, dst_mac)) = self.hop(dest) else {
            return Verdict::Drop(DropReason::NoNeigh);
        };
        let sent = match fwd_of(b.fwd) {
            // Only the MACs change.
            Fwd::Dr => xmit::dr::packet_xmit(buf, pkt, &XmitCtx::macs(src_mac, dst_mac)),
            Fwd::Nat => {
                let port = b.rport.unwrap_or_else(|| nat_rport(dest, vport));
                // The destination's translation, made with the snapshot:
                // the packet adds its checksum changes, in line.
                if let Some(nat) = &dest.nat4 {
                    let frame = buf.bytes();
                    if nat.rewrite_in(frame, pkt, port) {
                        xmit::set_macs(frame, src_mac, dst_mac);
                        return Verdict::Tx(out);
                    }
                }
                let Some(rip) = dest.rip() else {
                    return Verdict::Drop(DropReason::FwdUnsupported);
                };
                let mut ctx = XmitCtx::macs(src_mac, dst_mac);
                ctx.addr = rip;
                ctx.port = port;
                ctx.dir = Dir::In;
                xmit::nat::packet_xmit(buf, pkt, &ctx)
            }
            Fwd::Tun => {
                // The destination's outer header, made with the snapshot:
                // the packet adds the route's source, the MACs, the MTU
                // and the identification, and no transmit context.
                let Some(outer) = &dest.outer4 else {
                    let ctx = XmitCtx::macs(src_mac, dst_mac);
                    let mtu = self.ports[out as usize].mtu;
                    return self.xmit_4in6(dest, ctx, mtu, out, ingress, pkt, buf);
                };
                let Some(src) = dest.neigh.src() else {
                    dest.neigh.want();
                    return Verdict::Drop(DropReason::NoNeigh);
                };
                let hop = xmit::tun::TunHop {
                    src_mac,
                    dst_mac,
                    src,
                    mtu: self.ports[out as usize].mtu,
                    ident: self.ident.wrapping_add(1),
                };
                let sent = xmit::tun::packet_xmit_outer(buf, pkt, outer, &hop);
                if sent != Err(XmitError::NoTailroom) {
                    self.ident = hop.ident;
                }
                sent
            }
        };
        self.verdict(sent, out, ingress)
    }

    /// Send a frame of a NAT connection to `dest`, whose translation the
    /// snapshot made (`DestRt::nat4`): what [`Pipeline::xmit`] does for
    /// it, in line in `process_inner`. A packet the translation refuses
    /// (an ICMP error, a port not the destination's) and a destination
    /// without a neighbour go the general way, which gives them the same
    /// answer as before.
    #[inline(always)]
    fn nat4<B: FrameBuf + ?Sized>(
        &mut self,
        b: Bound,
        dest: &Arc<DestRt>,
        ingress: u8,
        pkt: &Parsed,
        buf: &mut B,
    ) -> Verdict {
        if let (Some(nat), Some((out, src_mac, dst_mac))) = (&dest.nat4, self.hop(dest)) {
            let port = b.rport.unwrap_or_else(|| nat_rport(dest, pkt.key.vport));
            let frame = buf.bytes();
            // `process_inner` sent ICMP errors their own way already.
            if nat.rewrite_plain(frame, pkt, port) {
                xmit::set_macs(frame, src_mac, dst_mac);
                return Verdict::Tx(out);
            }
        }
        self.xmit(b, dest, ingress, pkt.key.vport, pkt, buf)
    }

    /// Send a frame of a tunnelled connection to `dest`, an IPv4 real
    /// server, with its outer header template: what [`Pipeline::xmit`]
    /// does for it, the same bytes and verdicts, but in line in
    /// `process_inner` with no transmit context. The route is read once
    /// (MAC, interface and source from the neighbour cell, the port's MAC
    /// and MTU from one entry) and stays in registers; a packet past the
    /// MTU leaves for the checked encapsulation, out of line.
    #[inline(always)]
    fn tun4<B: FrameBuf + ?Sized>(
        &mut self,
        dest: &DestRt,
        ingress: u8,
        pkt: &Parsed,
        buf: &mut B,
    ) -> Verdict {
        let Some(outer) = &dest.outer4 else {
            return Verdict::Drop(DropReason::FwdUnsupported);
        };
        let n = &dest.neigh;
        // Unresolved MAC, port or source: the same outcome as the general
        // path, which asks for each of them in turn.
        let (Some(dst_mac), Some(src)) = (n.mac(), n.src()) else {
            n.want();
            return Verdict::Drop(DropReason::NoNeigh);
        };
        let Some(out) = self.port_of(n.oif()) else {
            n.want();
            return Verdict::Drop(DropReason::NoNeigh);
        };
        let Some(&port) = self.ports.get(usize::from(out)) else {
            n.want();
            return Verdict::Drop(DropReason::NoNeigh);
        };
        let hop = xmit::tun::TunHop {
            src_mac: port.mac,
            dst_mac,
            src,
            mtu: port.mtu,
            ident: self.ident.wrapping_add(1),
        };
        let sent = xmit::tun::packet_xmit_in_line(buf, pkt, outer, &hop);
        if sent != Err(XmitError::NoTailroom) {
            self.ident = hop.ident;
        }
        self.verdict(sent, out, ingress)
    }

    /// The verdict for what a forwarding method did with a frame bound for
    /// port `out` that came in on port `ingress`.
    #[inline]
    fn verdict(&mut self, sent: Result<Out, XmitError>, out: u8, ingress: u8) -> Verdict {
        match sent {
            Ok(Out::Tx) => Verdict::Tx(out),
            Ok(Out::FragNeeded) => {
                self.stats.frag_needed += 1;
                Verdict::Tx(ingress)
            }
            Err(XmitError::NoTailroom) => Verdict::Drop(DropReason::NoTailroom),
            Err(XmitError::TooBig) => Verdict::Drop(DropReason::TooBig),
            Err(XmitError::Malformed) => Verdict::Drop(DropReason::Malformed),
            Err(XmitError::MtuTooSmall) => Verdict::Drop(DropReason::MtuTooSmall),
        }
    }

    /// A real server's reply on a NAT connection: back to the client as
    /// from VIP:vport.
    // Always in line, in `process_inner`: as a call of its own, its frame
    // and saved registers cost about fifteen instructions a reply.
    #[inline(always)]
    fn reply<B: FrameBuf + ?Sized>(&mut self, r: &Reply, pkt: &Parsed, buf: &mut B) -> Verdict {
        let Some(port) = self.ports.get(usize::from(r.ret_port)) else {
            return Verdict::Drop(DropReason::NoNeigh);
        };
        if pkt.quoted.is_some() {
            return self.reply_icmp(r, port.mac, pkt, buf);
        }
        // The common reply, in line.
        let frame = buf.bytes();
        xmit::nat::rewrite_reply(frame, pkt, r.vip, r.vport);
        xmit::set_macs(frame, port.mac, r.ret_mac);
        Verdict::Tx(r.ret_port)
    }

    /// [`Pipeline::reply`] for an ICMP error about a NAT connection from
    /// its real server's side, sent from `src_mac`: translated, out of line.
    #[cold]
    #[inline(never)]
    fn reply_icmp<B: FrameBuf + ?Sized>(
        &mut self,
        r: &Reply,
        src_mac: Mac,
        pkt: &Parsed,
        buf: &mut B,
    ) -> Verdict {
        let mut ctx = XmitCtx::macs(src_mac, r.ret_mac);
        ctx.addr = r.vip;
        ctx.port = r.vport;
        ctx.dir = Dir::Out;
        let sent = xmit::nat::packet_xmit(buf, pkt, &ctx);
        self.verdict(sent, r.ret_port, r.ret_port)
    }

    /// An ICMP or ICMPv6 error about one of our connections: from the
    /// client side (about a packet the client got from the VIP) it goes to
    /// the real server by the connection's method (NAT: translated); from a
    /// NAT real server's side it goes back to the client, translated.
    /// Anything else is not ours.
    #[cold]
    fn icmp<A: IcmpFamily, B: FrameBuf + ?Sized>(
        &mut self,
        snap: &Snapshot,
        ingress: u8,
        pkt: &Parsed<A>,
        buf: &mut B,
    ) -> Verdict {
        let Some(q) = A::quote(buf.bytes(), pkt) else {
            return Verdict::Pass;
        };
        // The quoted datagram reversed: a client's packet to the VIP (the
        // error is about a reply the client got) or a real server's reply
        // (the error is about a packet forwarded to it).
        let (proto, (src, sport), (dst, dport)) = A::ends(&q);
        let about = FlowKey {
            proto,
            cip: dst,
            cport: dport,
            vip: src,
            vport: sport,
        };
        if let Some(v) = A::tracker(self).lookup(&about) {
            let Some(dest) = snap.dest(v.dest).cloned() else {
                return Verdict::Drop(DropReason::NoDest);
            };
            if fwd_of(v.fwd) != Fwd::Nat {
                return A::forward(self, Bound::of(&v), &dest, ingress, pkt, &q, buf);
            }
            let (Some(mac), Some(out), Some(nat)) =
                (dest.neigh.mac(), self.port_of(dest.neigh.oif()), v.nat)
            else {
                return Verdict::Drop(DropReason::NoNeigh);
            };
            let mut ctx = XmitCtx::macs(self.ports[out as usize].mac, mac);
            ctx.port = nat.rport;
            ctx.dir = Dir::In;
            let sent = A::translate(buf, pkt, &q, &mut ctx, nat.rip);
            return self.verdict(sent, out, ingress);
        }
        if let Some(v) = A::tracker(self).lookup_reply(&about) {
            let Some(r) = Reply::of(&v) else {
                return Verdict::Pass;
            };
            let Some(port) = self.ports.get(usize::from(r.ret_port)).copied() else {
                return Verdict::Drop(DropReason::NoNeigh);
            };
            let mut ctx = XmitCtx::macs(port.mac, r.ret_mac);
            ctx.port = r.vport;
            ctx.dir = Dir::Out;
            let sent = A::translate(buf, pkt, &q, &mut ctx, r.vip);
            return self.verdict(sent, r.ret_port, r.ret_port);
        }
        Verdict::Pass
    }
}

/// What differs between an ICMP error and an ICMPv6 one for
/// [`Pipeline::icmp`]: how the quoted datagram is read, which tracker and
/// forwarding path the family has, and how a NAT translation rewrites the
/// message. The decisions are the same for both and live there, once.
trait IcmpFamily: Addr {
    /// The quoted datagram, as this family's parser gives it.
    type Quote;

    /// The datagram `pkt` (an error message in `frame`) quotes, if it is
    /// about TCP or UDP.
    fn quote(frame: &[u8], pkt: &Parsed<Self>) -> Option<Self::Quote>;

    /// The quoted datagram's protocol, source and destination (address
    /// and port each), in the direction it was sent.
    fn ends(q: &Self::Quote) -> (u8, (Self, u16), (Self, u16));

    /// This family's connection tracker.
    fn tracker(p: &Pipeline) -> &Tracker<Self>;

    /// Send the error to the real server of a connection bound as `b`, by
    /// its (non-NAT) forwarding method.
    fn forward<B: FrameBuf + ?Sized>(
        p: &mut Pipeline,
        b: Bound,
        dest: &Arc<DestRt>,
        ingress: u8,
        pkt: &Parsed<Self>,
        q: &Self::Quote,
        buf: &mut B,
    ) -> Verdict;

    /// Translate the error in place as NAT does, with `addr` the address
    /// the quoted datagram's NAT side gets (`ctx` holds the rest).
    fn translate<B: FrameBuf + ?Sized>(
        buf: &mut B,
        pkt: &Parsed<Self>,
        q: &Self::Quote,
        ctx: &mut XmitCtx,
        addr: Self,
    ) -> Result<Out, XmitError>;
}

impl IcmpFamily for Ipv4Addr {
    type Quote = Quoted;

    #[inline]
    fn quote(_frame: &[u8], pkt: &Parsed) -> Option<Quoted> {
        pkt.quoted
    }

    #[inline]
    fn ends(q: &Quoted) -> (u8, (Ipv4Addr, u16), (Ipv4Addr, u16)) {
        let f = q.flow;
        (f.proto, (f.src, f.sport), (f.dst, f.dport))
    }

    #[inline]
    fn tracker(p: &Pipeline) -> &Tracker {
        &p.track
    }

    #[inline]
    fn forward<B: FrameBuf + ?Sized>(
        p: &mut Pipeline,
        b: Bound,
        dest: &Arc<DestRt>,
        ingress: u8,
        pkt: &Parsed,
        q: &Quoted,
        buf: &mut B,
    ) -> Verdict {
        p.xmit(b, dest, ingress, q.flow.sport, pkt, buf)
    }

    #[inline]
    fn translate<B: FrameBuf + ?Sized>(
        buf: &mut B,
        pkt: &Parsed,
        _q: &Quoted,
        ctx: &mut XmitCtx,
        addr: Ipv4Addr,
    ) -> Result<Out, XmitError> {
        ctx.addr = addr;
        xmit::nat::packet_xmit(buf, pkt, ctx)
    }
}

impl IcmpFamily for Ipv6Addr {
    type Quote = QuotedFlow6;

    #[inline]
    fn quote(frame: &[u8], pkt: &Parsed<Ipv6Addr>) -> Option<QuotedFlow6> {
        packet::quoted6(frame, pkt)
    }

    #[inline]
    fn ends(q: &QuotedFlow6) -> (u8, (Ipv6Addr, u16), (Ipv6Addr, u16)) {
        (q.proto, (q.src, q.sport), (q.dst, q.dport))
    }

    #[inline]
    fn tracker(p: &Pipeline) -> &Tracker<Ipv6Addr> {
        &p.track6
    }

    #[inline]
    fn forward<B: FrameBuf + ?Sized>(
        p: &mut Pipeline,
        b: Bound,
        dest: &Arc<DestRt>,
        ingress: u8,
        pkt: &Parsed<Ipv6Addr>,
        _q: &QuotedFlow6,
        buf: &mut B,
    ) -> Verdict {
        p.xmit6(b, dest, ingress, pkt, buf)
    }

    #[inline]
    fn translate<B: FrameBuf + ?Sized>(
        buf: &mut B,
        pkt: &Parsed<Ipv6Addr>,
        q: &QuotedFlow6,
        ctx: &mut XmitCtx,
        addr: Ipv6Addr,
    ) -> Result<Out, XmitError> {
        ctx.addr6 = addr;
        xmit::nat::icmp6_xmit(buf, pkt, q, ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{dr_service, frame, rip, rs_mac, service_with, tcp_frame, Fixture};
    use crate::xmit::tun::TunKind;

    const NOW: u64 = 1_000_000_000;

    /// What processing `frames` gives (verdicts and frames out), with the
    /// prefetch pass over `pre` (indexes into `frames`) first.
    fn run(f: &mut Fixture, frames: &[Vec<u8>], pre: &[usize]) -> Vec<(Verdict, Vec<u8>)> {
        run_at(f, NOW, frames, pre)
    }

    /// What `f`'s table holds for the TCP connection from `client:cport`
    /// to the VIP's port 80: its state, deadline, destination and NAT
    /// fields (it must have one).
    fn tracked(
        f: &Fixture,
        client: [u8; 4],
        cport: u16,
    ) -> (u8, u32, u32, Option<crate::conn::table::NatInit>) {
        let key = FlowKey {
            proto: PROTO_TCP,
            cip: Ipv4Addr::from(client),
            cport,
            vip: Ipv4Addr::from(crate::testkit::VIP),
            vport: 80,
        };
        let v = f.pipeline.table().lookup(&Key::conn(&key)).unwrap();
        (v.state, v.expires, v.dest, v.nat)
    }

    /// A pipeline with one IPv6 DR service (rr over three servers, TCP
    /// port 80) and the IPv6 table of one partition it writes.
    fn dr6_pipeline() -> Pipeline {
        use crate::testkit::v6::service6;
        crate::stats::set_workers(1);
        let fwds = vec![(Fwd::Dr, TunKind::Ipip); 3];
        let (svc, _) = service6("rr", &fwds, PROTO_TCP, 80, None);
        let snap = Arc::new(Snapshot::of_services(&[svc], Default::default()));
        let mut p = Pipeline::new(snap, 1, crate::testkit::DIR_MAC);
        p.set_writer(0);
        p
    }

    /// [`run`] at time `now`.
    fn run_at(
        f: &mut Fixture,
        now: u64,
        frames: &[Vec<u8>],
        pre: &[usize],
    ) -> Vec<(Verdict, Vec<u8>)> {
        for stage in 0..2 {
            for &i in pre {
                f.pipeline.prefetch(stage, &frames[i]);
            }
        }
        frames
            .iter()
            .map(|fr| {
                let mut fr = fr.clone();
                (f.pipeline.process(now, &mut fr), fr)
            })
            .collect()
    }

    #[test]
    fn the_prefetch_pass_changes_nothing_but_the_cost_even_out_of_step() {
        let syn = |p: u16| tcp_frame([198, 18, 0, 10], p, 80, true, false, b"");
        let ack = |p: u16| tcp_frame([198, 18, 0, 10], p, 80, false, true, b"x");
        let mut plain = Fixture::new(dr_service("rr", 3, None), 100);
        let mut hinted = Fixture::new(dr_service("rr", 3, None), 100);
        let syns: Vec<Vec<u8>> = (0..6).map(|p| syn(1000 + p)).collect();
        let acks: Vec<Vec<u8>> = (0..6).map(|p| ack(1000 + p)).collect();
        let want = run(&mut plain, &syns, &[]);
        assert!(want.iter().all(|(v, _)| *v == Verdict::Tx(0)));
        // New flows with hints (their keys found absent), in step.
        assert_eq!(run(&mut hinted, &syns, &[0, 1, 2, 3, 4, 5]), want);
        let want = run(&mut plain, &acks, &[]);
        // In step, shorter (the rest without hints), out of order, and a
        // pass over other frames altogether: the same frames out.
        for pre in [
            &[0, 1, 2, 3, 4, 5][..],
            &[0, 1],
            &[5, 4, 3, 2, 1, 0],
            &[1, 1, 1],
        ] {
            assert_eq!(run(&mut hinted, &acks, pre), want, "prefetch of {pre:?}");
        }
        let other: Vec<Vec<u8>> = vec![syn(2000), syn(2001)];
        for stage in 0..2 {
            for fr in &other {
                hinted.pipeline.prefetch(stage, fr);
            }
        }
        let got: Vec<(Verdict, Vec<u8>)> = acks
            .iter()
            .map(|fr| {
                let mut fr = fr.clone();
                (hinted.pipeline.process(NOW, &mut fr), fr)
            })
            .collect();
        assert_eq!(got, want);
        assert_eq!(hinted.pipeline.partition().len(), 6);
    }

    #[test]
    fn a_batch_processes_as_frame_by_frame_and_gives_the_snapshot_back() {
        // SYNs, then segments of those connections, a FIN, a frame of no
        // service and a UDP datagram: the same verdicts, frames out and
        // counters whether each frame takes the snapshot or the batch does.
        let syn = |p: u16| tcp_frame([198, 18, 0, 10], p, 80, true, false, b"");
        let ack = |p: u16| tcp_frame([198, 18, 0, 10], p, 80, false, true, b"x");
        let mut fin = ack(1002);
        fin[14 + 20 + 13] |= 0x01;
        let frames: Vec<Vec<u8>> = (0..4)
            .map(syn)
            .chain((0..4).map(ack))
            .chain([fin, tcp_frame([198, 18, 0, 10], 7, 81, true, false, b"")])
            .chain([crate::testkit::udp_frame([198, 18, 0, 11], 5, 80, b"u")])
            .collect();
        let mut plain = Fixture::new(dr_service("rr", 3, None), 100);
        let mut batched = Fixture::new(dr_service("rr", 3, None), 100);
        let want = run(&mut plain, &frames, &[]);
        assert!(want.iter().any(|(v, _)| *v == Verdict::Tx(0)));
        assert!(want.iter().any(|(v, _)| *v != Verdict::Tx(0)));
        let mut b = batched.pipeline.batch();
        let got: Vec<(Verdict, Vec<u8>)> = frames
            .iter()
            .map(|fr| {
                let mut fr = fr.clone();
                (b.process(NOW, &mut fr), fr)
            })
            .collect();
        drop(b);
        assert_eq!(got, want);
        assert_eq!(
            format!("{:?}", batched.pipeline.stats()),
            format!("{:?}", plain.pipeline.stats())
        );
        // The snapshot is back: the pipeline's own calls still forward.
        let again = run(&mut batched, &frames[4..8], &[]);
        assert!(again.iter().all(|(v, _)| *v == Verdict::Tx(0)));
    }

    #[test]
    fn an_ipv6_frame_takes_the_unkeyed_hint_of_the_words() {
        let words = [
            0u64,
            1,
            0x8000_0000_0000_0000,
            u64::MAX,
            0x1234_5678_9abc_def0,
        ];
        let cands = [0u32, 1, 77, u32::MAX];
        for &k0 in &words {
            for &k1 in &words {
                for &h in &words {
                    for &c in &cands {
                        let w = HintWords {
                            key: (k0, k1),
                            hash: (h, h ^ 5),
                            cand: (c, c ^ 3),
                        };
                        let (hash, cand) = w.unkeyed();
                        assert_eq!(
                            Hint::<Ipv6Addr>::unkeyed_of(hash, cand),
                            w.hint().unkeyed::<Ipv6Addr>(),
                            "{w:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn the_hints_taken_are_what_the_pass_found_for_each_frame() {
        // Frames of connections, of new flows and of no flow at all (not
        // TCP/UDP over IPv4): what `take` hands on, made into a hint, is
        // the pass's finding for that frame, and its candidate is the
        // hint's, which is all the established path reads.
        let syn = |p: u16| tcp_frame([198, 18, 0, 10], p, 80, true, false, b"");
        let ack = |p: u16| tcp_frame([198, 18, 0, 10], p, 80, false, true, b"x");
        let mut f = Fixture::new(dr_service("rr", 3, None), 100);
        let syns: Vec<Vec<u8>> = (0..6).map(|p| syn(1000 + p)).collect();
        assert!(run(&mut f, &syns, &[])
            .iter()
            .all(|(v, _)| *v == Verdict::Tx(0)));
        let mut frames: Vec<Vec<u8>> = (0..6).map(|p| ack(1000 + p)).collect();
        frames.extend((0..3).map(|p| syn(3000 + p)));
        let mut arp = ack(1000);
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        frames.push(arp);
        let table = f.pipeline.table().clone();
        let hints = Hints::default();
        for stage in 0..2 {
            for fr in &frames {
                hints.prefetch(&table, stage, fr);
            }
        }
        let mut found = 0;
        for fr in &frames {
            // (A frame without a key is not scanned.)
            let (k, h, _) = hint(&table, None, fr).parts();
            let want = match k.1 {
                0 => Hint::default(),
                _ => Hint::of_parts(k, h, table.hint_entries(h)),
            };
            let got = hints.take();
            assert_eq!(got.hint(), want);
            assert_eq!(got.cand(), want.cand());
            if table
                .lookup_hot_at(
                    got.cand(),
                    &Key::conn(&packet::parse(fr).map_or(
                        FlowKey {
                            proto: 0,
                            cip: Ipv4Addr::UNSPECIFIED,
                            cport: 0,
                            vip: Ipv4Addr::UNSPECIFIED,
                            vport: 0,
                        },
                        |p| p.key,
                    )),
                )
                .is_some()
            {
                found += 1;
            }
        }
        assert_eq!(found, 6, "every connection's entry named");
        // Past the batch's frames: nothing.
        assert_eq!(hints.take(), HintWords::default());
    }

    #[test]
    fn the_prefetch_pass_over_ipv6_frames_changes_nothing_but_the_cost() {
        use crate::testkit::v6::{tcp6_frame, udp6_frame};
        let run6 = |p: &mut Pipeline, frames: &[Vec<u8>], pre: &[usize]| {
            for stage in 0..2 {
                for &i in pre {
                    p.prefetch(stage, &frames[i]);
                }
            }
            let out: Vec<(Verdict, Vec<u8>)> = frames
                .iter()
                .map(|fr| {
                    let mut fr = fr.clone();
                    (p.process(NOW, &mut fr), fr)
                })
                .collect();
            out
        };
        let cip: Ipv6Addr = "2001:2:0:1::10".parse().unwrap();
        // IPv6 TCP frames with an IPv4 frame and an IPv6 UDP frame (no
        // service) among them: every slot of the batch stays in step.
        let batch = |syn: bool| -> Vec<Vec<u8>> {
            let mut b: Vec<Vec<u8>> = (0..6)
                .map(|p| tcp6_frame(cip, 1000 + p, 80, syn, !syn, b"x"))
                .collect();
            b.insert(2, tcp_frame([198, 18, 0, 10], 1000, 80, syn, !syn, b""));
            b.insert(5, udp6_frame(cip, 53, 53, b"q"));
            b
        };
        let (syns, acks) = (batch(true), batch(false));
        let (mut plain, mut hinted) = (dr6_pipeline(), dr6_pipeline());
        let want = run6(&mut plain, &syns, &[]);
        assert_eq!(want.iter().filter(|(v, _)| *v == Verdict::Tx(0)).count(), 6);
        let all: Vec<usize> = (0..syns.len()).collect();
        assert_eq!(run6(&mut hinted, &syns, &all), want);
        let want = run6(&mut plain, &acks, &[]);
        assert_eq!(want.iter().filter(|(v, _)| *v == Verdict::Tx(0)).count(), 6);
        // In step, shorter, out of order, repeated: the same frames out.
        let rev: Vec<usize> = all.iter().rev().copied().collect();
        for pre in [&all[..], &[0, 1], &rev[..], &[3, 3, 3]] {
            assert_eq!(run6(&mut hinted, &acks, pre), want, "prefetch of {pre:?}");
        }
        assert_eq!(hinted.partition6().len(), 6);
    }

    #[test]
    fn ipv6_frames_of_a_flow_made_earlier_in_their_batch_find_its_connection() {
        use crate::testkit::v6::tcp6_frame;
        let cip: Ipv6Addr = "2001:2:0:1::20".parse().unwrap();
        let syn = |p: u16| tcp6_frame(cip, p, 80, true, false, b"");
        let ack = |p: u16| tcp6_frame(cip, p, 80, false, true, b"x");
        // The pass finds every key absent (it runs before the batch); the
        // first SYN of flow 1000 makes the connection, the repeated SYN
        // and the ACK behind it must find it, not make a second one or
        // drop the ACK.
        let frames = vec![syn(1000), syn(1001), syn(1000), ack(1000), ack(1001)];
        let mut hinted = dr6_pipeline();
        for stage in 0..2 {
            for fr in &frames {
                hinted.prefetch(stage, fr);
            }
        }
        let out: Vec<(Verdict, Vec<u8>)> = frames
            .iter()
            .map(|fr| {
                let mut fr = fr.clone();
                (hinted.process(NOW, &mut fr), fr)
            })
            .collect();
        assert!(out.iter().all(|(v, _)| *v == Verdict::Tx(0)), "{out:?}");
        assert_eq!(hinted.partition6().len(), 2, "one connection a flow");
        // Flow 1000's frames all go to the server its first SYN chose.
        assert_eq!(out[0].1[..6], out[2].1[..6]);
        assert_eq!(out[0].1[..6], out[3].1[..6]);
        assert_eq!(out[1].1[..6], out[4].1[..6]);
        assert_ne!(out[0].1[..6], out[1].1[..6], "rr spreads the flows");
        // As the same frames without a pass (the repeated SYN, made
        // absent by the pass, ran the scheduler before its insert found
        // the entry, as an IPv4 one does: nothing comes after it here
        // that the scheduler's next choice would change).
        let mut plain = dr6_pipeline();
        for (i, fr) in frames.iter().enumerate() {
            let mut fr = fr.clone();
            assert_eq!((plain.process(NOW, &mut fr), fr), out[i], "frame {i}");
        }
    }

    #[test]
    fn a_changed_port_mac_is_followed_as_destination_and_source() {
        let mut f = Fixture::new(dr_service("rr", 1, None), 100);
        let dir = crate::testkit::DIR_MAC;
        let new: Mac = [0x02, 0, 0, 0, 0xd1, 0x02];
        f.pipeline.set_ports(vec![PortInfo {
            ifindex: 7,
            mac: dir,
            mtu: 1500,
        }]);
        let syn = |dst: Mac, p: u16| {
            let mut fr = tcp_frame([198, 18, 0, 10], p, 80, true, false, b"");
            fr[..6].copy_from_slice(&dst);
            fr
        };
        let out = run(&mut f, &[syn(dir, 1), syn(new, 2)], &[]);
        assert_eq!(out[0].0, Verdict::Tx(0));
        assert_eq!(out[0].1[6..12], dir);
        assert_eq!(out[1].0, Verdict::Drop(DropReason::OtherHost));
        f.pipeline.set_port_mac(9, new);
        assert_eq!(
            run(&mut f, &[syn(new, 3)], &[])[0].0,
            Verdict::Drop(DropReason::OtherHost)
        );
        f.pipeline.set_port_mac(7, new);
        let out = run(&mut f, &[syn(dir, 4), syn(new, 5)], &[]);
        assert_eq!(out[0].0, Verdict::Drop(DropReason::OtherHost));
        assert_eq!(out[1].0, Verdict::Tx(0));
        assert_eq!(out[1].1[6..12], new, "sent from the new MAC");
        assert_eq!(f.pipeline.stats().drops[DropReason::OtherHost as usize], 3);
    }

    #[test]
    fn a_nat_reply_is_found_through_its_hint() {
        let fwds = vec![(crate::svc::Fwd::Nat, TunKind::Ipip)];
        let mut f = Fixture::new(service_with("rr", &fwds, None, 80, None), 100);
        let syns: Vec<Vec<u8>> = (0..4)
            .map(|p| tcp_frame([198, 18, 0, 10], 1000 + p, 80, true, false, b""))
            .collect();
        assert!(run(&mut f, &syns, &[0, 1, 2, 3])
            .iter()
            .all(|(v, _)| *v == Verdict::Tx(0)));
        let reply = |p: u16| {
            frame::eth(
                rs_mac(1),
                crate::testkit::DIR_MAC,
                &frame::ip_packet(
                    &frame::ip(rip(1), [198, 18, 0, 10]),
                    &frame::tcp(8080, p).ack(1),
                    b"r",
                ),
            )
        };
        let replies: Vec<Vec<u8>> = (0..5).map(|p| reply(1000 + p)).collect();
        let out = run(&mut f, &replies, &[0, 1, 2, 3, 4]);
        for (i, (v, fr)) in out.iter().enumerate() {
            if i < 4 {
                assert_eq!(*v, Verdict::Tx(0), "reply {i}");
                // Back to the client as from VIP:80.
                assert_eq!(fr[26..30], crate::testkit::VIP, "reply {i}");
                assert_eq!(fr[34..36], 80u16.to_be_bytes(), "reply {i}");
            } else {
                assert_ne!(*v, Verdict::Tx(0), "no connection: not translated");
            }
        }
    }

    #[test]
    fn the_established_shortcut_tracks_as_the_full_path_does() {
        // The same packets through a pipeline without hints (the full
        // path) and through one with the prefetch pass (the lean read and
        // the straight line for established segments, the lean reply
        // read): the same frames out, entries, counters and sync records.
        for fwd in [crate::svc::Fwd::Dr, crate::svc::Fwd::Nat] {
            let fixture = || {
                let fwds = vec![(fwd, TunKind::Ipip)];
                let mut f = Fixture::new(service_with("rr", &fwds, None, 80, None), 100);
                let port = Arc::new(crate::sync::SyncPort::new(1));
                f.pipeline.set_sync(port.clone(), 0);
                port.set_master(true);
                (f, port)
            };
            let ((mut plain, pport), (mut hinted, hport)) = (fixture(), fixture());
            let client = [198, 18, 0, 10];
            let ports: Vec<u16> = (0..3).map(|i| 1000 + i).collect();
            let syns: Vec<Vec<u8>> = ports
                .iter()
                .map(|&p| tcp_frame(client, p, 80, true, false, b""))
                .collect();
            let mut batch: Vec<Vec<u8>> = ports
                .iter()
                .map(|&p| tcp_frame(client, p, 80, false, true, b"xy"))
                .collect();
            if fwd == crate::svc::Fwd::Nat {
                batch.extend(ports.iter().map(|&p| {
                    frame::eth(
                        rs_mac(1),
                        crate::testkit::DIR_MAC,
                        &frame::ip_packet(
                            &frame::ip(rip(1), client),
                            &frame::tcp(8080, p).ack(1),
                            b"r",
                        ),
                    )
                }));
            }
            let all: Vec<usize> = (0..batch.len()).collect();
            let at = run_at;
            assert_eq!(
                at(&mut plain, NOW, &syns, &[]),
                at(&mut hinted, NOW, &syns, &[0, 1, 2])
            );
            // Past the 3rd and the 53rd packet (sync records), the clock
            // moving by a few ticks per round.
            for round in 1..=60u64 {
                let now = NOW + round * 25_000_000;
                let want = at(&mut plain, now, &batch, &[]);
                assert!(want.iter().all(|(v, _)| *v == Verdict::Tx(0)), "{fwd:?}");
                assert_eq!(
                    at(&mut hinted, now, &batch, &all),
                    want,
                    "{fwd:?} round {round}"
                );
            }
            let records = |port: &crate::sync::SyncPort| {
                let mut v = Vec::new();
                port.drain_out(&mut |c| v.push(c));
                v
            };
            let got = records(&hport);
            assert_eq!(
                got.len(),
                2 * ports.len(),
                "{fwd:?}: the 3rd and 53rd packets"
            );
            assert_eq!(records(&pport), got, "{fwd:?}");
            for &p in &ports {
                assert_eq!(
                    tracked(&hinted, client, p),
                    tracked(&plain, client, p),
                    "{fwd:?} port {p}"
                );
            }
            assert_eq!(hinted.svc.stats.get(), plain.svc.stats.get(), "{fwd:?}");
            assert_eq!(
                hinted.dests[0].stats.get(),
                plain.dests[0].stats.get(),
                "{fwd:?}"
            );
            assert!(plain.svc.stats.get().inpkts > 60 * 3, "{fwd:?}");
        }
    }

    #[test]
    fn the_established_shortcut_tracks_ipv6_udp_as_the_full_path_does() {
        // As above for IPv6 UDP flows (no TCP state: the UDP timeout, and
        // records of state NONE), through the IPv6 table's hints.
        use crate::testkit::v6::{service6, udp6_frame, VIP6};
        use crate::testkit::DIR_MAC;
        crate::stats::set_workers(1);
        let fixture = || {
            let fwds = vec![(Fwd::Dr, TunKind::Ipip)];
            let (svc, dests) = service6("rr", &fwds, PROTO_UDP, 53, None);
            let snap = Arc::new(Snapshot::of_services(
                std::slice::from_ref(&svc),
                Default::default(),
            ));
            let mut p = Pipeline::new(snap, 16, DIR_MAC);
            p.set_writer(0);
            let port = Arc::new(crate::sync::SyncPort::new(1));
            p.set_sync(port.clone(), 0);
            port.set_master(true);
            (p, svc, dests, port)
        };
        let (mut plain, psvc, pdests, pport) = fixture();
        let (mut hinted, hsvc, hdests, hport) = fixture();
        let cip: Ipv6Addr = "2001:2:0:1::10".parse().unwrap();
        let batch: Vec<Vec<u8>> = (0..3)
            .map(|i| udp6_frame(cip, 5000 + i, 53, b"q"))
            .collect();
        let all: Vec<usize> = (0..batch.len()).collect();
        let at = |p: &mut Pipeline, now: u64, pre: &[usize]| {
            for stage in 0..2 {
                for &i in pre {
                    p.prefetch(stage, &batch[i]);
                }
            }
            batch
                .iter()
                .map(|fr| {
                    let mut fr = fr.clone();
                    (p.process(now, &mut fr), fr)
                })
                .collect::<Vec<_>>()
        };
        for round in 0..60u64 {
            let now = NOW + round * 25_000_000;
            let want = at(&mut plain, now, &[]);
            assert!(want.iter().all(|(v, _)| *v == Verdict::Tx(0)));
            assert_eq!(at(&mut hinted, now, &all), want, "round {round}");
        }
        let records = |port: &crate::sync::SyncPort| {
            let mut v = Vec::new();
            port.drain_out(&mut |c| v.push(c));
            v
        };
        let got = records(&hport);
        assert_eq!(got.len(), 2 * batch.len(), "the 3rd and 53rd datagrams");
        assert_eq!(records(&pport), got);
        for i in 0..3 {
            let key = Key::conn(&FlowKey {
                proto: PROTO_UDP,
                cip,
                cport: 5000 + i,
                vip: VIP6,
                vport: 53,
            });
            let entry = |p: &Pipeline| {
                let v = p.table6().lookup(&key).unwrap();
                (v.state, v.expires, v.dest)
            };
            assert_eq!(entry(&hinted), entry(&plain), "flow {i}");
        }
        assert_eq!(hsvc.stats.get(), psvc.stats.get());
        assert_eq!(hdests[0].stats.get(), pdests[0].stats.get());
        assert_eq!(psvc.stats.get().inpkts, 60 * 3);
    }

    /// Flow `i`'s client address and port written into `frame` (2^24
    /// clients of 256 ports each, inside 198.18.0.0/15).
    fn set_client(frame: &mut [u8], i: usize) {
        let cip = [
            198,
            18 | (i >> 24) as u8 & 1,
            (i >> 16) as u8,
            (i >> 8) as u8,
        ];
        frame[26..30].copy_from_slice(&cip);
        frame[34..36].copy_from_slice(&(1024 + (i & 0xff) as u16).to_be_bytes());
    }

    #[test]
    fn a_nat_table_filled_to_capacity_through_the_prefetch_pass_takes_every_connection() {
        // As xvs-bench's NAT runs fill theirs: as many connections as the
        // table holds (its slots 4/5 used, probe runs overflowing), first
        // packets in batches through the prefetch pass, in a scattered
        // order. Every one must get its entry: NAT cannot forward without.
        let n: usize = std::env::var("XVS_TEST_FILL")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(1_200_000);
        let fwds = vec![(crate::svc::Fwd::Nat, TunKind::Ipip)];
        let mut f = Fixture::new(service_with("wrr", &fwds, None, 80, None), n);
        let syn = tcp_frame([198, 18, 0, 1], 1024, 80, true, false, b"");
        let ack = tcp_frame([198, 18, 0, 1], 1024, 80, false, true, b"x");
        let step = (n * 5 / 8) | 1;
        assert_eq!(gcd(step, n), 1);
        let mut batch: Vec<Vec<u8>> = vec![syn.clone(); HINT_BATCH];
        let mut pass = |f: &mut Fixture, tmpl: &[u8], order: &mut dyn Iterator<Item = usize>| {
            let mut out = Vec::new();
            loop {
                let ids: Vec<usize> = order.take(HINT_BATCH).collect();
                if ids.is_empty() {
                    return out;
                }
                for (fr, &i) in batch.iter_mut().zip(&ids) {
                    fr.clear();
                    fr.extend_from_slice(tmpl);
                    set_client(fr, i);
                }
                for stage in 0..2 {
                    for fr in &batch[..ids.len()] {
                        f.pipeline.prefetch(stage, fr);
                    }
                }
                for (fr, &i) in batch.iter_mut().zip(&ids) {
                    out.push((i, f.pipeline.process(NOW, fr)));
                }
            }
        };
        let refused: Vec<(usize, Verdict)> = pass(&mut f, &syn, &mut (0..n).map(|k| k * step % n))
            .into_iter()
            .filter(|&(_, v)| v != Verdict::Tx(0))
            .collect();
        assert!(
            refused.is_empty(),
            "{} refused, first {:?}",
            refused.len(),
            refused.first()
        );
        assert_eq!(f.pipeline.partition().len(), n);
        // Lookups at that fill through the pass: every present key is its
        // connection's, as the walk without hints finds it.
        let table = f.pipeline.table().clone();
        let key = |i: usize| {
            let mut fr = syn.clone();
            set_client(&mut fr, i);
            FlowKey {
                proto: PROTO_TCP,
                cip: Ipv4Addr::new(fr[26], fr[27], fr[28], fr[29]),
                cport: u16::from_be_bytes([fr[34], fr[35]]),
                vip: Ipv4Addr::new(fr[30], fr[31], fr[32], fr[33]),
                vport: 80,
            }
        };
        let got = pass(&mut f, &ack, &mut (0..n).step_by(7));
        assert!(got.iter().all(|&(_, v)| v == Verdict::Tx(0)));
        assert_eq!(f.pipeline.partition().len(), n, "no key was taken as new");
        for &(i, _) in got.iter().step_by(97) {
            assert!(table.lookup(&Key::conn(&key(i))).is_some());
        }
        // Absent keys (clients never seen) through the pass: no connection
        // is found and none can be made (the partition is full; NAT drops).
        let absent = pass(&mut f, &ack, &mut (n..n + 20_000));
        assert!(absent
            .iter()
            .all(|&(_, v)| v == Verdict::Drop(DropReason::NoConn)));
        for &(i, _) in absent.iter().step_by(13) {
            assert!(table.lookup(&Key::conn(&key(i))).is_none());
        }
    }

    #[test]
    fn a_flow_made_earlier_in_the_batch_is_found_though_the_pass_saw_it_absent() {
        // The prefetch pass runs over the whole batch before any frame of
        // it is processed: a flow whose first packet comes earlier in the
        // batch was absent then. A later packet of it must still find the
        // connection, not take it for a new flow (evicting another one, or
        // refused by a full NAT table) nor drop it as having none.
        let fwds = vec![(crate::svc::Fwd::Nat, TunKind::Ipip)];
        let cap = 500;
        let mut f = Fixture::new(service_with("rr", &fwds, None, 80, None), cap);
        let seg = |p: u16, syn: bool| tcp_frame([198, 18, 0, 10], p, 80, syn, !syn, b"x");
        let old: Vec<u16> = (1000..1000 + cap as u16 - 1).collect();
        for syn in [true, false] {
            let frames: Vec<Vec<u8>> = old.iter().map(|&p| seg(p, syn)).collect();
            assert!(run(&mut f, &frames, &[])
                .iter()
                .all(|(v, _)| *v == Verdict::Tx(0)));
        }
        // Ports whose keys the pass proves absent (no tag in their run).
        let table = f.pipeline.table().clone();
        let absent = |p: u16| {
            let fr = seg(p, true);
            let (k, h, _) = hint(&table, None, &fr).parts();
            k.1 != 0 && table.hint_entries(h).0 == u32::MAX
        };
        let fresh: Vec<u16> = (3000..).filter(|&p| absent(p)).take(3).collect();
        // The last free entry: a SYN and its retransmission in one batch.
        let batch = [seg(fresh[0], true), seg(fresh[0], true)];
        let out = run(&mut f, &batch, &[0, 1]);
        assert_eq!(out[0].0, Verdict::Tx(0));
        assert_eq!(
            out[1].0,
            Verdict::Tx(0),
            "the retransmission is the connection's"
        );
        assert_eq!(
            f.pipeline.stats().conns_evicted,
            0,
            "no connection made way"
        );
        assert_eq!(f.pipeline.partition().len(), cap);
        assert!(old.iter().all(|&p| table
            .lookup(&Key::conn(&packet::parse(&seg(p, false)).unwrap().key))
            .is_some()));
        // With room: a SYN and the next segment of its flow in one batch.
        let mut g = Fixture::new(service_with("rr", &fwds, None, 80, None), 100);
        let table = g.pipeline.table().clone();
        let absent = |p: u16| {
            let fr = seg(p, true);
            let (k, h, _) = hint(&table, None, &fr).parts();
            k.1 != 0 && table.hint_entries(h).0 == u32::MAX
        };
        let p = (3000..).find(|&p| absent(p)).unwrap();
        let out = run(&mut g, &[seg(p, true), seg(p, false)], &[0, 1]);
        assert_eq!(out[0].0, Verdict::Tx(0));
        assert_eq!(
            out[1].0,
            Verdict::Tx(0),
            "the second segment is the connection's"
        );
    }

    /// A tunnel service over real servers of every kind the template
    /// covers (IPIP, GRE, GUE with and without checksum), an IPv6 real
    /// server (IPv4 in IPv6: the general path), one whose MAC is not
    /// resolved and one whose route has no source address.
    fn tunnels() -> (Arc<crate::svc::ServiceRt>, Vec<Arc<DestRt>>) {
        use crate::svc::{NeighCell, SchedState, ServiceRt, SvcKey};
        let gue = |checksum| TunKind::Gue {
            port: 6080,
            checksum,
        };
        let kinds = [
            TunKind::Ipip,
            TunKind::Gre,
            gue(false),
            gue(true),
            TunKind::Gre,
            TunKind::Ipip,
            TunKind::Ipip,
        ];
        let mut dests = Vec::new();
        for (k, &tun) in kinds.iter().enumerate() {
            let i = k as u8 + 1;
            let addr = if i == 5 {
                IpAddr::V6(crate::testkit::v6::rip6(i))
            } else {
                IpAddr::V4(Ipv4Addr::from(rip(i)))
            };
            let neigh = Arc::new(NeighCell::default());
            if i != 6 {
                neigh.set(Some(rs_mac(i)));
            }
            let src = (i != 7).then_some(Ipv4Addr::from(crate::testkit::DIR_IP));
            neigh.set_route(0, src);
            neigh.set_src6(Some(crate::testkit::v6::DIR_IP6));
            dests.push(Arc::new(DestRt {
                id: u32::from(i),
                in_service: true,
                sched: xvs_scheduler::Dest::new(addr, 80, 1),
                fwd: Fwd::Tun,
                tun,
                stats: Arc::default(),
                neigh,
                outer4: DestRt::outer4_of(tun, addr),
                nat4: None,
            }));
        }
        let sched = xvs_scheduler::new("rr", 0).expect("rr");
        let svc = Arc::new(ServiceRt {
            id: 0,
            persist: None,
            key: SvcKey::Addr {
                proto: PROTO_TCP,
                vip: IpAddr::V4(Ipv4Addr::from(crate::testkit::VIP)),
                port: 80,
            },
            stats: Arc::default(),
            sched: Arc::new(std::sync::Mutex::new(SchedState::new(sched, dests.clone()))),
        });
        (svc, dests)
    }

    /// [`Pipeline::process`] with every forwarded frame sent by the
    /// general [`Pipeline::xmit`], as before tunnels were sent in line.
    fn process_general(p: &mut Pipeline, now: u64, buf: &mut Vec<u8>) -> Verdict {
        let snap = p.snap.take().expect("a snapshot");
        let pkt = match packet::parse_any(buf) {
            Ok(pkt) => pkt,
            Err(v) => {
                p.snap = Some(snap);
                return v;
            }
        };
        let hint = p.hints.take().hint();
        let v = match p.track.track(&snap, now, 0, &pkt, buf, &hint, &mut p.stats) {
            Track::In(dest, b) => p.xmit(b, dest, 0, pkt.key.vport, &pkt, buf),
            Track::Out(r) => p.reply(&r, &pkt, buf),
            Track::Pass => Verdict::Pass,
            Track::Drop(r) => Verdict::Drop(r),
        };
        p.snap = Some(snap);
        v
    }

    #[test]
    fn tunnels_sent_in_line_are_what_the_general_path_sends() {
        // The same frames through the in-line path and the general one:
        // every kind, short and long packets (each way the packet moves),
        // TOS and TTL, packets past the MTU with DF (fragmentation needed)
        // and without (refused), an IPv6 real server, unresolved routes,
        // and egress MTUs at and below the tunnel's needs.
        let client = [198, 18, 0, 10];
        let seg = |port: u16, syn: bool, tos: u8, df: bool, len: usize| {
            let mut l4 = frame::tcp(port, 80);
            l4 = if syn { l4.syn() } else { l4.ack(1) };
            let ip = frame::ip(client, crate::testkit::VIP).with(|i| {
                i.tos = tos;
                i.ttl = 3 + tos;
                i.df = df;
            });
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            frame::eth(
                crate::testkit::CLIENT_MAC,
                crate::testkit::DIR_MAC,
                &frame::ip_packet(&ip, &l4, &payload),
            )
        };
        let ports: Vec<u16> = (2000..2014).collect();
        let mut batch = Vec::new();
        for &p in &ports {
            batch.push(seg(p, true, 0, true, 0));
        }
        for &p in &ports {
            for (tos, df, len) in [
                (0, true, 0),
                (0xb8, false, 9),
                (0x10, true, 30),
                (0, true, 300),
                (0x04, true, 1440),
                (0, true, 1460),
                (0, false, 1460),
            ] {
                batch.push(seg(p, false, tos, df, len));
            }
        }
        for mtu in [1500, 1400, 9000, 80, 60] {
            let mut inline = Fixture::new(tunnels(), 100);
            let mut general = Fixture::new(tunnels(), 100);
            for f in [&mut inline, &mut general] {
                f.pipeline.set_ports(vec![PortInfo {
                    ifindex: 0,
                    mac: crate::testkit::DIR_MAC,
                    mtu,
                }]);
            }
            let mut verdicts = std::collections::BTreeSet::new();
            for (i, fr) in batch.iter().enumerate() {
                let (mut a, mut b) = (fr.clone(), fr.clone());
                let va = inline.pipeline.process(NOW, &mut a);
                let vb = process_general(&mut general.pipeline, NOW, &mut b);
                assert_eq!(va, vb, "mtu {mtu} frame {i}");
                assert_eq!(a, b, "mtu {mtu} frame {i}");
                verdicts.insert(format!("{va:?}"));
            }
            for (x, y) in inline.dests.iter().zip(&general.dests) {
                assert_eq!(x.neigh.take_wanted(), y.neigh.take_wanted());
            }
            assert_eq!(inline.pipeline.ident, general.pipeline.ident, "mtu {mtu}");
            assert_eq!(
                inline.pipeline.stats().frag_needed,
                general.pipeline.stats().frag_needed,
                "mtu {mtu}"
            );
            if mtu == 1500 {
                // Every outcome the batch is meant to reach.
                for v in [
                    Verdict::Tx(0),
                    Verdict::Drop(DropReason::TooBig),
                    Verdict::Drop(DropReason::NoNeigh),
                ] {
                    assert!(verdicts.contains(&format!("{v:?}")), "{v:?}: {verdicts:?}");
                }
                assert!(inline.pipeline.stats().frag_needed > 0);
            }
            if mtu == 60 {
                let v = Verdict::Drop(DropReason::MtuTooSmall);
                assert!(verdicts.contains(&format!("{v:?}")), "{verdicts:?}");
            }
        }
    }

    fn gcd(a: usize, b: usize) -> usize {
        if b == 0 {
            a
        } else {
            gcd(b, a % b)
        }
    }

    /// Frames of a NAT server `i` (1-based) from `rport` to `cip:cport`.
    fn from_server(i: u8, rport: u16, cip: [u8; 4], cport: u16, syn: bool) -> Vec<u8> {
        let mut l4 = frame::tcp(rport, cport);
        l4 = if syn { l4.syn() } else { l4.ack(1) };
        frame::eth(
            rs_mac(i),
            crate::testkit::DIR_MAC,
            &frame::ip_packet(&frame::ip(rip(i), cip), &l4, b"r"),
        )
    }

    #[test]
    fn a_frame_from_a_nat_server_is_hinted_as_a_reply_first() {
        let fwds = vec![
            (Fwd::Nat, TunKind::Ipip),
            (Fwd::Dr, TunKind::Ipip),
            (Fwd::Tun, TunKind::Ipip),
        ];
        let f = Fixture::new(service_with("rr", &fwds, None, 80, None), 100);
        let snap = f.pipeline.snap.clone().unwrap();
        let filter = snap.reply_filter().unwrap();
        let (nat, vip) = (Ipv4Addr::from(rip(1)), Ipv4Addr::from(crate::testkit::VIP));
        let client = Ipv4Addr::from(crate::testkit::CIP);
        assert!(filter.reply_first(nat, client), "a NAT server's reply");
        assert!(!filter.reply_first(nat, vip), "a NAT server to a VIP");
        assert!(!filter.reply_first(client, vip), "a client");
        // Not every address passes (the bitmap is not full).
        let passing = (0..4096u32)
            .filter(|&i| filter.reply_first(Ipv4Addr::from(0xc612_0000 | i), client))
            .count();
        assert!(passing < 4096 / 8, "{passing} of 4096 addresses pass");
        let table = f.pipeline.table().clone();
        let reply = |p: u16| from_server(1, 8080, crate::testkit::CIP, p, false);
        // Before any NAT connection: as any frame.
        assert_eq!(
            hint(&table, Some(filter), &reply(1000)),
            hint(&table, None, &reply(1000))
        );
        let mut f = f;
        // One flow to each server (rr); the NAT server's replies.
        let syns: Vec<Vec<u8>> = (1000..1003)
            .map(|p| tcp_frame(crate::testkit::CIP, p, 80, true, false, b""))
            .collect();
        assert!(run(&mut f, &syns, &[0, 1, 2])
            .iter()
            .all(|(v, _)| *v == Verdict::Tx(0)));
        let port = (1000..1003)
            .find(|&p| {
                let key = packet::parse(&syns[usize::from(p - 1000)]).unwrap().key;
                table.lookup(&Key::conn(&key)).unwrap().dest == 1
            })
            .unwrap();
        let reply = reply(port);
        // Stage 0 hashes the reply key alone, stage 1 scans the reply
        // index alone.
        let (k, h, c) = hint(&table, Some(filter), &reply).parts();
        assert_eq!((h.0, c), (0, (0, 0)));
        assert_ne!(h.1, 0);
        let (cand, rcand) = table.hint_entries(h);
        assert_eq!(cand, 0, "the connection index not scanned");
        assert!(rcand != 0 && rcand != u32::MAX, "the reply's entry named");
        let key = Key::conn(&packet::parse(&reply).unwrap().key);
        assert!(Hint::of_parts(k, h, (cand, rcand)).names_reply(&key));
        // A skipped stage 1 names nothing, nor does the hint give a
        // probe without the key's hash.
        let skipped = Hint::of_parts(k, h, c);
        assert!(!skipped.names_reply(&key));
        assert!(skipped.probe(&key).is_none());
        // The same server as a client of the VIP (hairpin): a client's.
        let hairpin = from_server(1, 5000, crate::testkit::VIP, 80, true);
        let (_, h, _) = hint(&table, Some(filter), &hairpin).parts();
        assert_ne!(h.0, 0);
        // A client's segment that opens nothing: its key alone hashed. A
        // client's SYN too, and any client frame without a filter: no NAT
        // connection has the client's address as its server
        // (`ConnTable::replies_from`), so its reply lookup finds nothing.
        // The NAT server's frame without a filter: both keys.
        let seg = tcp_frame(crate::testkit::CIP, port, 80, false, true, b"");
        let (_, h, _) = hint(&table, Some(filter), &seg).parts();
        assert!(h.0 != 0 && h.1 == 0, "{h:?}");
        let (_, h, _) = hint(&table, Some(filter), &syns[0]).parts();
        assert!(h.0 != 0 && h.1 == 0, "{h:?}");
        let (_, h, _) = hint(&table, None, &seg).parts();
        assert!(h.0 != 0 && h.1 == 0, "{h:?}");
        let (_, h, _) = hint(&table, None, &reply).parts();
        assert!(h.0 != 0 && h.1 != 0, "{h:?}");
    }

    #[test]
    fn reading_replies_first_changes_nothing_but_the_cost() {
        // Two pipelines fed the same frames, one without the prefetch
        // pass (client first, then reply: the full path), one with it
        // over the batch in step, shorter, reversed, or not at all: the
        // same verdicts, frames out, entries and counters. NAT, DR and TUN
        // connections; replies; frames from a NAT server's address to
        // clients that are no replies; the NAT server as a client of the
        // VIP (hairpin); replies whose destination left the snapshot.
        let fwds = vec![
            (Fwd::Nat, TunKind::Ipip),
            (Fwd::Nat, TunKind::Ipip),
            (Fwd::Dr, TunKind::Ipip),
            (Fwd::Tun, TunKind::Ipip),
        ];
        let mut plain = Fixture::new(service_with("rr", &fwds, None, 80, None), 200);
        let mut hinted = Fixture::new(service_with("rr", &fwds, None, 80, None), 200);
        let clients: Vec<[u8; 4]> = (0..3).map(|i| [198, 18, 1, 10 + i]).collect();
        let flows: Vec<([u8; 4], u16)> = clients
            .iter()
            .flat_map(|&c| (0..4).map(move |p| (c, 2000 + p)))
            .collect();
        let pass = run_at;
        let same = |plain: &mut Fixture,
                    hinted: &mut Fixture,
                    now: u64,
                    frames: &[Vec<u8>],
                    what: &str| {
            let n = frames.len();
            let all: Vec<usize> = (0..n).collect();
            let half: Vec<usize> = (0..n / 2).collect();
            let rev: Vec<usize> = (0..n).rev().collect();
            let mut txs = 0;
            for (round, pre) in [&all[..], &half, &rev, &[]].into_iter().enumerate() {
                let now = now + round as u64 * 20_000_000;
                let want = pass(plain, now, frames, &[]);
                txs += want.iter().filter(|(v, _)| *v == Verdict::Tx(0)).count();
                assert_eq!(
                    pass(hinted, now, frames, pre),
                    want,
                    "{what}, pass over {pre:?}"
                );
            }
            txs
        };
        // Every flow opened (the servers in turn), and the hairpin flow.
        let mut syns: Vec<Vec<u8>> = flows
            .iter()
            .map(|&(c, p)| tcp_frame(c, p, 80, true, false, b""))
            .collect();
        syns.push(from_server(1, 5000, crate::testkit::VIP, 80, true));
        let want = pass(&mut plain, NOW, &syns, &[]);
        assert!(want.iter().all(|(v, _)| *v == Verdict::Tx(0)));
        let all: Vec<usize> = (0..syns.len()).collect();
        assert_eq!(pass(&mut hinted, NOW, &syns, &all), want);
        // Established: the clients' segments, both NAT servers' frames to
        // every client (each flow's reply, and frames of no connection),
        // the hairpin flow's segments, a new hairpin flow.
        let mut batch: Vec<Vec<u8>> = Vec::new();
        for &(c, p) in &flows {
            batch.push(tcp_frame(c, p, 80, false, true, b"xy"));
            batch.push(from_server(1, 8080, c, p, false));
            batch.push(from_server(2, 8080, c, p, false));
        }
        batch.push(from_server(1, 5000, crate::testkit::VIP, 80, false));
        batch.push(from_server(2, 5001, crate::testkit::VIP, 80, true));
        let txs = same(&mut plain, &mut hinted, NOW + 10_000_000, &batch, "mixed");
        // 12 client segments, 6 replies, the hairpin segment and the new
        // hairpin flow's SYN, in each of the four rounds.
        assert_eq!(txs, 4 * (12 + 6 + 2), "every connection's frame forwarded");
        let dests = |f: &Fixture| {
            f.dests
                .iter()
                .map(|d| format!("{:?}", d.stats.get()))
                .collect::<Vec<_>>()
        };
        let check = |plain: &Fixture, hinted: &Fixture, what: &str| {
            for &(c, p) in &flows {
                assert_eq!(
                    tracked(hinted, c, p),
                    tracked(plain, c, p),
                    "{what}: flow {c:?}:{p}"
                );
            }
            assert_eq!(
                hinted.pipeline.partition().len(),
                plain.pipeline.partition().len()
            );
            assert_eq!(
                format!("{:?}", hinted.svc.stats.get()),
                format!("{:?}", plain.svc.stats.get()),
                "{what}"
            );
            assert_eq!(dests(hinted), dests(plain), "{what}");
            assert_eq!(
                format!("{:?}", hinted.pipeline.stats()),
                format!("{:?}", plain.pipeline.stats()),
                "{what}"
            );
        };
        check(&plain, &hinted, "mixed");
        assert!(plain.dest(1).stats.get().outpkts > 0, "replies counted");
        // Server 2 leaves the snapshot altogether (its connections stay in
        // the table): its address is in the reply filter no more, its
        // replies take the usual order.
        let gone = |f: &mut Fixture| {
            let dests: Vec<_> = f.dests.iter().filter(|d| d.id != 2).cloned().collect();
            let snap = Snapshot::new([f.svc.clone()], dests, [], Default::default());
            assert!(!snap
                .reply_filter()
                .unwrap()
                .reply_first(Ipv4Addr::from(rip(2)), Ipv4Addr::from(clients[0])));
            f.pipeline.set_snapshot(Arc::new(snap));
        };
        gone(&mut plain);
        gone(&mut hinted);
        // Its replies are read as clients' segments now, their reply key
        // unhashed by the pass: the lookups after the miss find them.
        let filter = hinted.pipeline.reply_filter().unwrap();
        let r2 = from_server(2, 8080, clients[0], 2000, false);
        let (_, h, _) = hint(hinted.pipeline.table(), Some(&filter), &r2).parts();
        assert!(h.0 != 0 && h.1 == 0, "{h:?}");
        same(
            &mut plain,
            &mut hinted,
            NOW + 200_000_000,
            &batch,
            "server 2 gone",
        );
        check(&plain, &hinted, "server 2 gone");
    }
}
