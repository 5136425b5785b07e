//! Connections: the table that keeps every packet of a flow on one real
//! server (shared by all workers, see `table`), the IPVS TCP state machine
//! (`state`), the table's clock (`time`), and the life of a connection
//! from choice to expiry, with persistence templates and the
//! active/inactive/persistent counts that feed lc/wlc and the listings
//! (`tracker`).

pub mod state;
pub mod table;
pub mod time;
pub mod tracker;
