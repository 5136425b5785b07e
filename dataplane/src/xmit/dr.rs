//! Direct routing: the frame goes to the real server's MAC unchanged at the
//! IP layer (the real server holds the VIP on a non-ARPing interface).

use crate::wire::eth::{EthernetFrame, Mac};

/// Rewrite the Ethernet header in place: destination := real server,
/// source := the egress interface.
#[inline]
pub fn xmit(frame: &mut [u8], rs_mac: Mac, our_mac: Mac) {
    if let Ok(mut eth) = EthernetFrame::new_checked(frame) {
        eth.set_dst(rs_mac);
        eth.set_src(our_mac);
    }
}
