//! What the pipeline decided about a frame. Its own module because both
//! sides use it: the pipeline produces verdicts, the ports (`io`) act on
//! them, and neither should have to import the other.

/// Why a frame was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum DropReason {
    /// Shorter than its headers or with impossible header fields.
    Malformed = 0,
    /// A TCP segment other than SYN for which no connection exists.
    NoConn,
    /// The scheduler found no usable real server.
    NoDest,
    /// The real server's MAC is not resolved yet (resolution requested).
    NoNeigh,
    /// The connection table is full (nothing evictable) and the new flow
    /// cannot go without an entry (NAT needs one to translate replies).
    ConnTableFull,
    /// The forwarding method cannot serve this real server (an IPv6 real
    /// server behind the IPv4 data plane).
    FwdUnsupported,
    /// The pipeline said pass, but the port cannot hand frames to the kernel.
    PassUnavailable,
    /// Too big to tunnel and not allowed to fragment (no DF: IPVS would
    /// fragment; one frame in, one frame out cannot).
    TooBig,
    /// The egress port is not in this worker's group.
    NoPort,
    /// The frame's buffer cannot grow to hold the encapsulated result.
    NoTailroom,
    /// The egress MTU leaves no room for the tunnel's headers and a
    /// minimal inner packet (a configuration error, counted apart).
    MtuTooSmall,
    /// Addressed to another host's unicast MAC (reached the socket through
    /// a promiscuous or flooding link): never forwarded, as the kernel
    /// drops such frames.
    OtherHost,
}

impl DropReason {
    /// Number of reasons.
    pub const COUNT: usize = 12;
    /// Every reason, in index order.
    pub const ALL: [DropReason; Self::COUNT] = [
        DropReason::Malformed,
        DropReason::NoConn,
        DropReason::NoDest,
        DropReason::NoNeigh,
        DropReason::ConnTableFull,
        DropReason::FwdUnsupported,
        DropReason::PassUnavailable,
        DropReason::TooBig,
        DropReason::NoPort,
        DropReason::NoTailroom,
        DropReason::MtuTooSmall,
        DropReason::OtherHost,
    ];

    /// A short name for logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::NoConn => "no_conn",
            DropReason::NoDest => "no_dest",
            DropReason::NoNeigh => "no_neigh",
            DropReason::ConnTableFull => "conn_table_full",
            DropReason::FwdUnsupported => "fwd_unsupported",
            DropReason::PassUnavailable => "pass_unavailable",
            DropReason::TooBig => "too_big",
            DropReason::NoPort => "no_port",
            DropReason::NoTailroom => "no_tailroom",
            DropReason::MtuTooSmall => "mtu_too_small",
            DropReason::OtherHost => "other_host",
        }
    }
}

/// What to do with a frame after `process`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Transmit the (rewritten) frame on port `n` of the worker's group
    /// (0 is the first interface; a single-interface worker only has 0).
    Tx(u8),
    /// Not ours: give it to the kernel unchanged.
    Pass,
    /// Drop it, for this reason.
    Drop(DropReason),
}
