//! IPVS's TCP connection states and the protocol timeouts.
//!
//! The states are shared vocabulary: the data plane moves connections
//! through them, listings (`-Lnc`) and, later, the synchronisation daemon
//! name them; the timeouts are configured by `--set` and applied by the
//! workers. Only the inbound half is modelled (DR and TUN connections never
//! show the director the server's replies).

/// TCP flag bits, as in the TCP header's 13th byte.
const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const ACK: u8 = 0x10;

/// IPVS TCP connection states (UDP connections use `None` plus the UDP
/// timeout).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum TcpState {
    /// NONE.
    None = 0,
    /// ESTABLISHED.
    Established,
    /// SYN_SENT.
    SynSent,
    /// SYN_RECV.
    SynRecv,
    /// FIN_WAIT.
    FinWait,
    /// TIME_WAIT.
    TimeWait,
    /// CLOSE.
    Close,
    /// CLOSE_WAIT.
    CloseWait,
    /// LAST_ACK.
    LastAck,
    /// LISTEN.
    Listen,
    /// SYNACK.
    SynAck,
}

use TcpState::*;

/// IPVS's input-only transition table, rows syn, fin, ack, rst; columns in
/// the order of the enum's discriminants.
const INPUT_ONLY: [[TcpState; 11]; 4] = [
    // syn
    [
        SynRecv,
        Established,
        Established,
        SynRecv,
        SynRecv,
        SynRecv,
        SynRecv,
        SynRecv,
        SynRecv,
        SynRecv,
        SynRecv,
    ],
    // fin
    [
        Close, FinWait, SynSent, TimeWait, FinWait, TimeWait, Close, CloseWait, LastAck, Listen,
        TimeWait,
    ],
    // ack
    [
        Close,
        Established,
        SynSent,
        Established,
        FinWait,
        TimeWait,
        Close,
        CloseWait,
        Close,
        Listen,
        Established,
    ],
    // rst
    [
        Close, Close, Close, SynRecv, Close, Close, Close, Close, LastAck, Listen, Close,
    ],
];

impl TcpState {
    /// The state after an inbound segment with TCP `flags`. IPVS reads the
    /// flags in the order RST, SYN, FIN, ACK; a segment with none of them
    /// leaves the state as it is.
    #[inline]
    pub fn next(self, flags: u8) -> TcpState {
        let row = if flags & RST != 0 {
            3
        } else if flags & SYN != 0 {
            0
        } else if flags & FIN != 0 {
            1
        } else if flags & ACK != 0 {
            2
        } else {
            return self;
        };
        INPUT_ONLY[row][self as usize]
    }

    /// The state whose discriminant is `v` (unknown values are NONE).
    #[inline]
    pub fn from_u8(v: u8) -> TcpState {
        const ALL: [TcpState; 11] = [
            None,
            Established,
            SynSent,
            SynRecv,
            FinWait,
            TimeWait,
            Close,
            CloseWait,
            LastAck,
            Listen,
            SynAck,
        ];
        ALL.get(usize::from(v)).copied().unwrap_or(None)
    }

    /// ipvsadm's name of the state (`-c` listing).
    pub fn name(self) -> &'static str {
        match self {
            None => "NONE",
            Established => "ESTABLISHED",
            SynSent => "SYN_SENT",
            SynRecv => "SYN_RECV",
            FinWait => "FIN_WAIT",
            TimeWait => "TIME_WAIT",
            Close => "CLOSE",
            CloseWait => "CLOSE_WAIT",
            LastAck => "LAST_ACK",
            Listen => "LISTEN",
            SynAck => "SYNACK",
        }
    }

    /// Whether the connection counts as active (ESTABLISHED) in IPVS terms.
    pub fn is_active(self) -> bool {
        self == Established
    }
}

/// Protocol timeouts in seconds (IPVS defaults; `--set tcp tcpfin udp`,
/// `-L --timeout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// ESTABLISHED.
    pub tcp: u32,
    /// FIN_WAIT.
    pub tcp_fin: u32,
    /// UDP.
    pub udp: u32,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            tcp: 900,
            tcp_fin: 120,
            udp: 300,
        }
    }
}

impl Timeouts {
    /// The timeout of a TCP state, in seconds.
    #[inline]
    pub fn tcp_state(&self, s: TcpState) -> u32 {
        match s {
            None => 2,
            Established => self.tcp,
            SynSent => 120,
            SynRecv => 60,
            FinWait => self.tcp_fin,
            TimeWait => 120,
            Close => 10,
            CloseWait => 60,
            LastAck => 30,
            Listen => 120,
            SynAck => 120,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_way_handshake_and_close() {
        let s = TcpState::None.next(SYN);
        assert_eq!(s, SynRecv);
        let s = s.next(ACK);
        assert_eq!(s, Established);
        let s = s.next(ACK | FIN);
        assert_eq!(s, FinWait);
        assert_eq!(s.next(ACK), FinWait);
        assert_eq!(Established.next(RST), Close);
        assert_eq!(Established.next(0), Established);
        assert_eq!(TimeWait.next(SYN), SynRecv);
    }

    #[test]
    fn default_timeouts() {
        let t = Timeouts::default();
        assert_eq!(t.tcp_state(Established), 900);
        assert_eq!(t.tcp_state(SynRecv), 60);
        assert_eq!(t.tcp_state(FinWait), 120);
        assert_eq!(t.tcp_state(Close), 10);
        assert_eq!(t.tcp_state(None), 2);
        assert_eq!(t.udp, 300);
    }

    #[test]
    fn states_round_trip_through_their_numbers() {
        for v in 0..11u8 {
            assert_eq!(TcpState::from_u8(v) as u8, v);
        }
        assert_eq!(TcpState::from_u8(200), TcpState::None);
        assert_eq!(TcpState::from_u8(1).name(), "ESTABLISHED");
    }
}
