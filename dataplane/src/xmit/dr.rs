//! Direct routing: the frame goes to the real server's MAC unchanged at the
//! IP layer (the real server holds the VIP on a non-ARPing interface).

use super::{set_macs, Out, XmitCtx, XmitError};
use crate::flow::Addr;
use crate::frame::FrameBuf;
use crate::packet::Parsed;

/// Rewrite the Ethernet header in place: destination := `ctx.dst_mac`
/// (the real server), source := `ctx.src_mac` (the egress interface).
/// The same for both families: the IP header, hop limit included, is left
/// as it is (IPVS does not decrement TTL or hop limit either).
#[inline]
pub fn packet_xmit<B: FrameBuf + ?Sized, A: Addr>(
    buf: &mut B,
    _pkt: &Parsed<A>,
    ctx: &XmitCtx,
) -> Result<Out, XmitError> {
    set_macs(buf.bytes(), ctx.src_mac, ctx.dst_mac);
    Ok(Out::Tx)
}
