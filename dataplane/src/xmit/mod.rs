//! Forwarding methods, one file each, chosen by the `Fwd` a connection was
//! bound with.

pub mod dr;
pub mod nat;
pub mod tun;
