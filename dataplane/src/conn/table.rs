//! A fixed-capacity open-addressing hash table of connections (linear
//! probing, backward-shift deletion: no tombstones, no allocation after
//! creation, expiry swept a bounded number of slots at a time).

use super::Conn;
use crate::flow::FlowKey;

/// The table is full: the new connection is dropped (and counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

/// A connection table owned by one worker.
#[derive(Debug)]
pub struct ConnTable {
    slots: Box<[Option<Conn>]>,
    mask: usize,
    len: usize,
    limit: usize,
    cursor: usize,
}

impl ConnTable {
    /// A table holding at most `max_conns` connections (slots are sized to
    /// the next power of two of 8/7 of that, allocated now).
    pub fn new(max_conns: usize) -> Self {
        let max_conns = max_conns.max(1);
        let cap = (max_conns + max_conns / 7 + 1).next_power_of_two();
        let slots: Vec<Option<Conn>> = (0..cap).map(|_| None).collect();
        ConnTable {
            slots: slots.into_boxed_slice(),
            mask: cap - 1,
            len: 0,
            limit: max_conns,
            cursor: 0,
        }
    }

    /// Connections held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the table holds no connection.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Maximum number of connections.
    pub fn capacity(&self) -> usize {
        self.limit
    }

    #[inline]
    fn home(&self, key: &FlowKey) -> usize {
        key.hash64() as usize & self.mask
    }

    /// The slot holding `key`, if any.
    #[inline]
    pub fn find(&self, key: &FlowKey) -> Option<usize> {
        let mut i = self.home(key);
        loop {
            match &self.slots[i] {
                None => return None,
                Some(c) if c.key == *key => return Some(i),
                Some(_) => i = (i + 1) & self.mask,
            }
        }
    }

    /// The connection in slot `i`.
    #[inline]
    pub fn get_mut(&mut self, i: usize) -> Option<&mut Conn> {
        self.slots.get_mut(i).and_then(Option::as_mut)
    }

    /// Insert a connection whose key is not in the table.
    pub fn insert(&mut self, conn: Conn) -> Result<usize, Full> {
        if self.len >= self.limit {
            return Err(Full);
        }
        let mut i = self.home(&conn.key);
        while self.slots[i].is_some() {
            i = (i + 1) & self.mask;
        }
        self.slots[i] = Some(conn);
        self.len += 1;
        Ok(i)
    }

    /// Remove the connection in slot `i` (dropping it unbinds it).
    pub fn remove(&mut self, i: usize) -> Option<Conn> {
        let out = self.slots.get_mut(i)?.take()?;
        self.len -= 1;
        // Backward shift: pull later members of the probe run into the hole.
        let mut hole = i;
        let mut j = (i + 1) & self.mask;
        while let Some(c) = &self.slots[j] {
            let home = self.home(&c.key);
            // Move c into the hole if its home is not cyclically in (hole, j].
            let dist_home = j.wrapping_sub(home) & self.mask;
            let dist_hole = j.wrapping_sub(hole) & self.mask;
            if dist_home >= dist_hole {
                self.slots[hole] = self.slots[j].take();
                hole = j;
            }
            j = (j + 1) & self.mask;
        }
        Some(out)
    }

    /// Examine up to `budget` slots from the sweep cursor and remove the
    /// connections expired at `now`. Returns how many were removed.
    pub fn expire(&mut self, now: u64, budget: usize) -> usize {
        let mut removed = 0;
        for _ in 0..budget.min(self.slots.len()) {
            let i = self.cursor;
            let expired = matches!(&self.slots[i], Some(c) if c.expires <= now);
            if expired {
                self.remove(i);
                removed += 1;
                // A later entry may have shifted into `i`: look again.
                continue;
            }
            self.cursor = (i + 1) & self.mask;
        }
        removed
    }

    /// Every connection (for listings).
    pub fn iter(&self) -> impl Iterator<Item = &Conn> {
        self.slots.iter().filter_map(Option::as_ref)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::state::TcpState;
    use crate::stats::Counters;
    use crate::svc::{DestRt, Fwd, NeighCell};
    use std::net::{IpAddr, Ipv4Addr};
    use std::sync::Arc;
    use xvs_scheduler::Dest;

    fn dest() -> Arc<DestRt> {
        Arc::new(DestRt {
            sched: Dest::new(IpAddr::V4(Ipv4Addr::new(198, 18, 0, 11)), 80, 1),
            fwd: Fwd::Dr,
            stats: Arc::new(Counters::default()),
            neigh: Arc::new(NeighCell::default()),
        })
    }

    fn key(n: u32) -> FlowKey {
        FlowKey {
            proto: 6,
            cip: Ipv4Addr::from(0xC612_0000 + n),
            cport: (n % 60000) as u16 + 1024,
            vip: Ipv4Addr::new(198, 18, 0, 100),
            vport: 80,
        }
    }

    #[test]
    fn insert_find_remove_keep_probe_runs_intact() {
        let d = dest();
        let svc = Arc::new(Counters::default());
        let mut t = ConnTable::new(1000);
        for n in 0..1000 {
            let c = Conn::bind(key(n), TcpState::SynRecv, 10, d.clone(), svc.clone());
            t.insert(c).unwrap();
        }
        assert_eq!(d.sched.load.inactive(), 1000);
        let c = Conn::bind(key(5000), TcpState::SynRecv, 10, d.clone(), svc.clone());
        assert!(t.insert(c).is_err(), "table must refuse past its limit");
        assert_eq!(d.sched.load.inactive(), 1000, "refused conn unbound");
        for n in (0..1000).step_by(2) {
            let i = t.find(&key(n)).unwrap();
            t.remove(i);
        }
        for n in 0..1000 {
            assert_eq!(t.find(&key(n)).is_some(), n % 2 == 1, "key {n}");
        }
        assert_eq!(t.len(), 500);
        assert_eq!(d.sched.load.inactive(), 500);
    }

    #[test]
    fn expiry_sweeps_everything_eventually() {
        let d = dest();
        let svc = Arc::new(Counters::default());
        let mut t = ConnTable::new(100);
        for n in 0..100 {
            let exp = if n % 3 == 0 { 5 } else { 50 };
            let c = Conn::bind(key(n), TcpState::Established, exp, d.clone(), svc.clone());
            t.insert(c).unwrap();
        }
        assert_eq!(d.sched.load.active(), 100);
        let mut removed = 0;
        for _ in 0..100 {
            removed += t.expire(10, 7);
        }
        assert_eq!(removed, 34);
        assert_eq!(t.len(), 66);
        for n in 0..100 {
            assert_eq!(t.find(&key(n)).is_some(), n % 3 != 0);
        }
        assert_eq!(d.sched.load.active(), 66);
    }
}
