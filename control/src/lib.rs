//! Control plane of xvs: everything between `xvsadm ARGS` and the
//! configuration the data plane runs.
//!
//! xvsadm speaks ipvsadm's language byte for byte, so existing scripts,
//! tutorials and muscle memory keep working: [`grammar`] turns an argument
//! vector into a typed [`grammar::Command`] with ipvsadm's parser messages,
//! [`model`] applies it to the configuration with IPVS's refusal messages,
//! [`listing`] prints `-L`/`-S` exactly as ipvsadm does, [`rate`] keeps the
//! 2-second rate estimates, [`exec`] ties one invocation together and
//! [`proto`] carries it over the daemon's Unix socket.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod access;
pub mod announce;
pub mod exec;
pub mod grammar;
#[cfg(feature = "testkit")]
pub mod invariants;
pub mod json;
pub mod listing;
pub mod metrics;
pub mod model;
pub mod proto;
pub mod rate;
pub mod reload;
pub mod syncd;

pub use exec::Control;
pub use listing::{ConnEntry, NoRuntime, Runtime};
pub use proto::{Request, Response};
