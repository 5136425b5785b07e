//! The bounded address cache behind lblc and lblcr.
//!
//! IPVS keeps these caches in a hash table that grows with traffic and is
//! pruned by a timer. Here the cache is allocated once, when the scheduler
//! is created, as a set-associative table: an address hashes to one bucket
//! of [`WAYS`] slots. A lookup or insert touches only that bucket, so
//! `schedule` never allocates and costs the same however full the cache
//! is. When a bucket is full, an expired entry is reused first, else the
//! least recently used one is evicted; entries idle longer than
//! [`EXPIRE_NS`] are never returned (IPVS's 24 h expiry, collected lazily
//! instead of by a timer).

use std::net::IpAddr;

/// Idle time after which a cache entry is dead: 24 hours.
pub const EXPIRE_NS: u64 = 24 * 3600 * 1_000_000_000;

/// Slots per bucket.
pub const WAYS: usize = 4;

/// Default number of buckets: with [`WAYS`] slots each, 16384 entries,
/// the size at which IPVS starts pruning its lblc/lblcr tables.
pub const DEFAULT_BUCKETS: usize = 4096;

/// One cached address.
#[derive(Debug, Clone)]
pub(crate) struct Entry<V> {
    /// The cached destination address (the key).
    pub key: IpAddr,
    /// Last time the entry was looked up or created.
    pub lastuse: u64,
    /// What the scheduler stores for the address.
    pub val: V,
}

/// A fixed-capacity, set-associative map from address to `V`.
#[derive(Debug)]
pub(crate) struct AddrCache<V> {
    /// `buckets * WAYS` slots; bucket `b` is `slots[b * WAYS..][..WAYS]`.
    slots: Vec<Option<Entry<V>>>,
    /// `buckets - 1` (buckets is a power of two).
    mask: usize,
}

/// Whether an entry last used at `lastuse` has expired at `now`.
pub(crate) fn expired(lastuse: u64, now: u64) -> bool {
    now.saturating_sub(lastuse) > EXPIRE_NS
}

/// Spread an address over the buckets (murmur3's 64-bit finaliser over the
/// address's bits).
fn mix(addr: &IpAddr) -> u64 {
    let mut x = match addr {
        IpAddr::V4(a) => u64::from(u32::from(*a)),
        IpAddr::V6(a) => {
            let v = u128::from(*a);
            ((v >> 64) as u64) ^ (v as u64).rotate_left(32) ^ 0x6a09_e667_f3bc_c908
        }
    };
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

impl<V> AddrCache<V> {
    /// A cache of `buckets` (rounded up to a power of two, at least 1)
    /// times [`WAYS`] entries, all allocated now.
    pub fn new(buckets: usize) -> Self {
        let buckets = buckets.max(1).next_power_of_two();
        let mut slots = Vec::with_capacity(buckets * WAYS);
        slots.resize_with(buckets * WAYS, || None);
        AddrCache {
            slots,
            mask: buckets - 1,
        }
    }

    /// Total number of entries the cache can hold.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Entries currently held (expired ones included until reused).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.slots.iter().filter(|s| s.is_some()).count()
    }

    /// The slot range of `key`'s bucket.
    fn bucket(&self, key: &IpAddr) -> std::ops::Range<usize> {
        let b = (mix(key) as usize) & self.mask;
        b * WAYS..b * WAYS + WAYS
    }

    /// The live entry for `key`, if any. An expired entry is dropped.
    #[inline]
    pub fn get_mut(&mut self, key: &IpAddr, now: u64) -> Option<&mut Entry<V>> {
        let range = self.bucket(key);
        let slot = self.slots[range]
            .iter_mut()
            .find(|s| s.as_ref().is_some_and(|e| e.key == *key))?;
        if slot.as_ref().is_some_and(|e| expired(e.lastuse, now)) {
            *slot = None;
            return None;
        }
        slot.as_mut()
    }

    /// Store `val` for `key` (replacing any entry for it), evicting an
    /// expired or else the least recently used entry of the bucket when it
    /// is full.
    pub fn insert(&mut self, key: IpAddr, now: u64, val: V) -> &mut Entry<V> {
        let range = self.bucket(&key);
        let bucket = &mut self.slots[range];
        let pos = bucket
            .iter()
            .position(|s| s.as_ref().is_some_and(|e| e.key == key))
            .or_else(|| bucket.iter().position(Option::is_none))
            .or_else(|| {
                // Full: the entry idle longest (expired ones first, since
                // they are idle longest of all).
                (0..WAYS).min_by_key(|&i| bucket[i].as_ref().map_or(0, |e| e.lastuse))
            })
            .unwrap_or(0);
        bucket[pos].insert(Entry {
            key,
            lastuse: now,
            val,
        })
    }

    /// Visit every entry; drop those for which `keep` returns false.
    pub fn retain_mut(&mut self, mut keep: impl FnMut(&mut Entry<V>) -> bool) {
        for slot in &mut self.slots {
            if let Some(e) = slot {
                if !keep(e) {
                    *slot = None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn a(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(0xC612_0000 + n))
    }

    #[test]
    fn insert_get_replace() {
        let mut c = AddrCache::new(16);
        assert_eq!(c.capacity(), 64);
        c.insert(a(1), 5, 10u32);
        assert_eq!(c.get_mut(&a(1), 6).map(|e| e.val), Some(10));
        c.insert(a(1), 7, 11);
        assert_eq!(c.get_mut(&a(1), 8).map(|e| e.val), Some(11));
        assert_eq!(c.len(), 1);
        assert!(c.get_mut(&a(2), 8).is_none());
    }

    #[test]
    fn expiry_after_24h_idle() {
        let mut c = AddrCache::new(1);
        c.insert(a(1), 0, 1u8);
        assert!(c.get_mut(&a(1), EXPIRE_NS).is_some());
        assert!(c.get_mut(&a(1), EXPIRE_NS + 1).is_none());
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn never_grows_and_evicts_lru() {
        let mut c = AddrCache::new(1);
        for n in 0..WAYS as u32 {
            c.insert(a(n), u64::from(n) + 100, n);
        }
        // touch 0 so 1 becomes the least recently used
        c.get_mut(&a(0), 200).unwrap().lastuse = 200;
        c.insert(a(99), 300, 99);
        assert_eq!(c.len(), WAYS);
        assert!(c.get_mut(&a(1), 300).is_none());
        assert!(c.get_mut(&a(0), 300).is_some());
        assert!(c.get_mut(&a(99), 300).is_some());
        // many more inserts: still bounded
        for n in 0..10_000 {
            c.insert(a(n), 400, n);
        }
        assert_eq!(c.len(), WAYS);
        assert_eq!(c.slots.capacity(), WAYS);
    }

    #[test]
    fn spreads_addresses() {
        let mut c = AddrCache::new(DEFAULT_BUCKETS);
        for n in 0..8192 {
            c.insert(a(n), 1, ());
        }
        // a decent hash keeps almost all of half a cache's worth of keys
        assert!(c.len() > 7700, "{}", c.len());
    }
}
