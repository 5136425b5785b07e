//! IPVS TCP states and timeouts, as seen from the inbound half only (DR and
//! TUN connections never show the director the server's replies).
//!
//! Both are shared with the control plane and live in `xvs-config`; they
//! are re-exported here, where the connection code has always found them.

pub use xvs_config::state::{TcpState, Timeouts};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::tcp::{ACK, FIN, RST, SYN};
    use TcpState::*;

    #[test]
    fn three_way_handshake_and_close() {
        let s = TcpState::None.next(SYN);
        assert_eq!(s, SynRecv);
        let s = s.next(ACK);
        assert_eq!(s, Established);
        let s = s.next(ACK | FIN);
        assert_eq!(s, FinWait);
        let s = s.next(ACK);
        assert_eq!(s, FinWait);
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
}
