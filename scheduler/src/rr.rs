//! Round robin (`rr`).
//!
//! IPVS keeps a pointer to the last destination it chose and hands the next
//! connection to the first usable destination after it, wrapping around the
//! list. The pointer is a list position, not an index, so adding a server
//! does not disturb the rotation; we keep the chosen destination's key and
//! find it again after every change.

use crate::common::{key_of, DestKey};
use crate::{DestSet, Flow, Scheduler};

/// Round-robin scheduler: the next usable destination after the last one
/// chosen, wrapping.
#[derive(Debug, Default)]
pub struct RoundRobin {
    /// Index of the last chosen destination in the current list; `None`
    /// means "the list head", so the next pick starts at the front.
    last: Option<usize>,
    /// Keys of the current list, to follow `last` across updates.
    keys: Vec<DestKey>,
}

impl RoundRobin {
    /// A round-robin scheduler positioned at the list head.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Scheduler for RoundRobin {
    fn name(&self) -> &'static str {
        "rr"
    }

    /// Keep the pointer on the same destination when it still exists. When
    /// it was deleted, IPVS moves the pointer to the deleted entry's
    /// predecessor, so the rotation continues with the entry that followed
    /// it; we do the same by walking back through the old list to the
    /// nearest survivor, or to the list head (the front) if there is none.
    fn update(&mut self, dests: &DestSet) {
        let new_keys: Vec<DestKey> = dests.iter().map(key_of).collect();
        let find = |k: &DestKey| new_keys.iter().position(|n| n == k);
        self.last = match self.last {
            Some(old) if old < self.keys.len() => self.keys[..=old].iter().rev().find_map(find),
            _ => None,
        };
        self.keys = new_keys;
    }

    fn schedule(&mut self, dests: &DestSet, _flow: &Flow, _now_ns: u64) -> Option<usize> {
        let n = dests.len();
        if n == 0 {
            return None;
        }
        // Start after the last choice (or at the front); the last choice
        // itself is tried last, so a lone usable server is chosen again.
        let start = match self.last {
            Some(l) if l < n => l + 1,
            _ => 0,
        };
        let chosen = (0..n)
            .map(|k| (start + k) % n)
            .find(|&i| dests[i].available())?;
        self.last = Some(chosen);
        Some(chosen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::testutil::*;

    fn svc() -> Svc {
        Svc::new(Box::new(RoundRobin::new()))
    }

    #[test]
    fn empty_gives_none() {
        assert_eq!(svc().picks(2), vec![None, None]);
    }

    #[test]
    fn walks_newest_first() {
        let mut s = svc();
        s.add(dest(1, 1)).add(dest(2, 1)).add(dest(3, 1));
        assert_eq!(s.picks(6), some(&[3, 2, 1, 3, 2, 1]));
    }

    #[test]
    fn exact_thirds() {
        let mut s = svc();
        s.add(dest(1, 1)).add(dest(2, 5)).add(dest(3, 1));
        let picks = s.picks(300);
        for n in 1..=3 {
            assert_eq!(picks.iter().filter(|p| **p == Some(n)).count(), 100);
        }
    }

    #[test]
    fn skips_quiesced_and_overloaded() {
        let mut s = svc();
        s.add(dest(1, 1)).add(dest(2, 0)).add(dest(3, 1));
        assert_eq!(s.picks(4), some(&[3, 1, 3, 1]));
        set_overloaded(s.get(3), true);
        assert_eq!(s.picks(2), some(&[1, 1]));
        set_overloaded(s.get(1), true);
        assert_eq!(s.picks(1), vec![None]);
    }

    #[test]
    fn add_keeps_position() {
        let mut s = svc();
        s.add(dest(1, 1)).add(dest(2, 1)).add(dest(3, 1));
        assert_eq!(s.picks(2), some(&[3, 2]));
        // New server goes to the front; the pointer stays on 2.
        s.add(dest(4, 1));
        assert_eq!(s.picks(4), some(&[1, 4, 3, 2]));
    }

    #[test]
    fn edit_keeps_position() {
        let mut s = svc();
        s.add(dest(1, 1)).add(dest(2, 1)).add(dest(3, 1));
        assert_eq!(s.picks(1), some(&[3]));
        s.edit(1, 7);
        assert_eq!(s.picks(3), some(&[2, 1, 3]));
    }

    #[test]
    fn delete_of_last_choice_continues_with_its_successor() {
        let mut s = svc();
        s.add(dest(1, 1))
            .add(dest(2, 1))
            .add(dest(3, 1))
            .add(dest(4, 1));
        // list 4 3 2 1
        assert_eq!(s.picks(2), some(&[4, 3]));
        s.del(3);
        assert_eq!(s.picks(3), some(&[2, 1, 4]));
    }

    #[test]
    fn delete_of_front_choice_restarts_at_front() {
        let mut s = svc();
        s.add(dest(1, 1)).add(dest(2, 1)).add(dest(3, 1));
        assert_eq!(s.picks(1), some(&[3]));
        s.del(3);
        assert_eq!(s.picks(3), some(&[2, 1, 2]));
    }

    #[test]
    fn delete_of_other_keeps_position() {
        let mut s = svc();
        s.add(dest(1, 1)).add(dest(2, 1)).add(dest(3, 1));
        assert_eq!(s.picks(1), some(&[3]));
        s.del(1);
        assert_eq!(s.picks(3), some(&[2, 3, 2]));
    }

    #[test]
    fn delete_all_then_add() {
        let mut s = svc();
        s.add(dest(1, 1)).add(dest(2, 1));
        assert_eq!(s.picks(1), some(&[2]));
        s.del(2).del(1);
        assert_eq!(s.picks(1), vec![None]);
        s.add(dest(5, 1));
        assert_eq!(s.picks(2), some(&[5, 5]));
    }
}
