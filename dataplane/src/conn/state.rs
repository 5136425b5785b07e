//! IPVS TCP states and timeouts, as seen from the inbound half only (DR and
//! TUN connections never show the director the server's replies).
//!
//! Both are shared with the control plane and live in `xvs-config`; they
//! are re-exported here, where the connection code has always found them.

pub use xvs_config::state::{TcpState, Timeouts};
