//! Change notification from the counters to the least-load schedulers.
//!
//! Every worker changes a destination's [`DestLoad`](crate::DestLoad) when
//! it binds, unbinds or moves a connection, without any lock; the
//! least-load schedulers (lc, wlc, sed, nq) want to keep an ordered
//! structure over those loads instead of reading every one of them per new
//! connection. A [`LoadBoard`] is the meeting point: each counter set that
//! a scheduler watches owns one slot (a bit) on its service's board for its
//! whole life, and after every change the writer sets that bit (one atomic
//! OR). The scheduler, under the service lock, takes the set bits of the
//! words its destinations use (a plain load per word, an atomic swap per
//! word that has bits) and re-reads only those destinations. Slots are
//! handed out lowest first, so a service of n destinations uses about
//! n/64 words.
//!
//! Ordering: the writer changes the counter, then sets the bit with
//! `Release`; the scheduler clears the bit with `Acquire`, then reads the
//! counter. So every change that happened before a `schedule()` call is
//! seen by it, and a change racing with the call is seen by the next one
//! (its bit is set again or still set). A bit set for a slot the scheduler
//! does not know (a deleted destination still draining) only costs one
//! needless re-read.
//!
//! A slot never moves while its counters live (it is freed when the
//! `DestLoad` is dropped), so no writer can ever mark a stale slot of a
//! live destination. Allocation and freeing are lock-free (a bitmap of used
//! slots), and a full board simply leaves the destination unwatched: the
//! scheduler then falls back to the plain scan.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Slots per board (64 words of 64 bits).
pub const BOARD_SLOTS: usize = 4096;
const WORDS: usize = BOARD_SLOTS / 64;

/// The dirty bits of one service's watched destinations.
#[derive(Debug)]
pub struct LoadBoard {
    /// One bit per slot: the slot's counters changed since last taken.
    dirty: Box<[AtomicU64]>,
    /// One bit per slot: the slot belongs to a live `DestLoad`.
    used: Box<[AtomicU64]>,
    /// The scheduler instance that last took the dirty bits (its id), so a
    /// second scheduler over the same destinations knows it missed changes.
    owner: AtomicU64,
}

impl Default for LoadBoard {
    fn default() -> Self {
        let words = || (0..WORDS).map(|_| AtomicU64::new(0)).collect();
        LoadBoard {
            dirty: words(),
            used: words(),
            owner: AtomicU64::new(0),
        }
    }
}

impl LoadBoard {
    /// A board with every slot free.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Claim a free slot, or `None` when all are taken.
    fn alloc(&self) -> Option<u32> {
        for (w, word) in self.used.iter().enumerate() {
            let mut cur = word.load(Ordering::Relaxed);
            while cur != u64::MAX {
                let bit = (!cur).trailing_zeros();
                match word.compare_exchange_weak(
                    cur,
                    cur | 1 << bit,
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return Some((w * 64) as u32 + bit),
                    Err(now) => cur = now,
                }
            }
        }
        None
    }

    /// Give slot `slot` back.
    fn free(&self, slot: u32) {
        let (w, bit) = (slot as usize / 64, slot % 64);
        self.used[w].fetch_and(!(1 << bit), Ordering::AcqRel);
    }

    /// Note that the counters in `slot` changed.
    #[inline]
    pub fn mark(&self, slot: u32) {
        let (w, bit) = (slot as usize / 64, slot % 64);
        self.dirty[w].fetch_or(1 << bit, Ordering::Release);
    }

    /// Take every set dirty bit of the slots below `limit` (clearing it)
    /// and call `f` with its slot.
    #[inline]
    pub fn take(&self, limit: usize, mut f: impl FnMut(u32)) {
        let words = limit.div_ceil(64).min(WORDS);
        for (w, word) in self.dirty[..words].iter().enumerate() {
            // A plain load first: an unchanged word must not cost a locked
            // instruction.
            if word.load(Ordering::Relaxed) == 0 {
                continue;
            }
            let mut bits = word.swap(0, Ordering::Acquire);
            while bits != 0 {
                let b = bits.trailing_zeros();
                bits &= bits - 1;
                f((w * 64) as u32 + b);
            }
        }
    }

    /// Make scheduler `id` the one that takes the dirty bits; true when it
    /// already was (false: another scheduler may have taken bits meant
    /// for it, so it must re-read every destination).
    #[inline]
    pub fn claim(&self, id: u64) -> bool {
        self.owner.load(Ordering::Relaxed) == id || self.owner.swap(id, Ordering::AcqRel) == id
    }
}

/// A counter set's place on a board: fixed for the life of the counters.
#[derive(Debug)]
pub struct Watch {
    /// The board of the service the destination belongs to.
    pub board: Arc<LoadBoard>,
    /// This destination's slot on it.
    pub slot: u32,
}

impl Watch {
    /// Claim a slot on `board`, or `None` when it is full.
    pub fn new(board: &Arc<LoadBoard>) -> Option<Watch> {
        Some(Watch {
            board: board.clone(),
            slot: board.alloc()?,
        })
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.board.free(self.slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_unique_and_come_back() {
        let b = LoadBoard::new();
        let all: Vec<Watch> = (0..BOARD_SLOTS).map(|_| Watch::new(&b).unwrap()).collect();
        let mut seen: Vec<u32> = all.iter().map(|w| w.slot).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), BOARD_SLOTS);
        assert!(Watch::new(&b).is_none());
        let freed = all[1234].slot;
        drop(all);
        let again = Watch::new(&b).unwrap();
        assert!(again.slot <= freed);
    }

    #[test]
    fn take_returns_each_marked_slot_once() {
        let b = LoadBoard::new();
        for s in [0, 63, 64, 1000, 4095, 1000] {
            b.mark(s);
        }
        let mut low = Vec::new();
        b.take(65, |s| low.push(s));
        // whole words: 64..128 is read for slot 64
        assert_eq!(low, vec![0, 63, 64]);
        let mut got = Vec::new();
        b.take(BOARD_SLOTS, |s| got.push(s));
        assert_eq!(got, vec![1000, 4095]);
        let mut again = Vec::new();
        b.take(BOARD_SLOTS, |s| again.push(s));
        assert!(again.is_empty());
    }

    #[test]
    fn claim_tells_a_new_owner() {
        let b = LoadBoard::new();
        assert!(!b.claim(7));
        assert!(b.claim(7));
        assert!(!b.claim(8));
        assert!(!b.claim(7));
    }
}
