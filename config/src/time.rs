//! Seconds, as configured, and ticks, as connection entries store them.
//!
//! Connection expiry times are 32-bit counts of 10 ms ticks, so that an
//! entry stays small; every conversion from a configured timeout goes
//! through [`ticks_of_secs`] so that the tick length is written once.

/// Ticks per second (a tick is 10 ms).
pub const TICKS_PER_SEC: u32 = 100;

/// Nanoseconds per tick.
pub const TICK_NS: u64 = 1_000_000_000 / TICKS_PER_SEC as u64;

/// The tick `ns` nanoseconds of the shared monotonic clock fall in (the
/// count wraps after about 497 days; expiry comparisons are modular).
#[inline]
pub const fn ticks_of_ns(ns: u64) -> u32 {
    (ns / TICK_NS) as u32
}

/// `secs` seconds in ticks (saturating: no configurable timeout comes near
/// the limit, ipvsadm's largest being 31 days).
#[inline]
pub const fn ticks_of_secs(secs: u32) -> u32 {
    secs.saturating_mul(TICKS_PER_SEC)
}

/// Nanoseconds per second.
pub const NS_PER_SEC: u64 = 1_000_000_000;

/// `secs` seconds in nanoseconds of the monotonic clock.
#[inline]
pub const fn ns_of_secs(secs: u32) -> u64 {
    secs as u64 * NS_PER_SEC
}

/// `ticks` ticks in whole seconds, rounded down.
#[inline]
pub const fn secs_of_ticks(ticks: u32) -> u32 {
    ticks / TICKS_PER_SEC
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_saturation() {
        assert_eq!(ticks_of_secs(900), 90_000);
        assert_eq!(secs_of_ticks(ticks_of_secs(86_400 * 31)), 86_400 * 31);
        assert_eq!(ticks_of_secs(u32::MAX), u32::MAX);
        assert_eq!(secs_of_ticks(199), 1);
        assert_eq!(ticks_of_ns(2_500_000_000), 250);
        assert_eq!(u64::from(ticks_of_secs(3)) * TICK_NS, 3_000_000_000);
        assert_eq!(ns_of_secs(900), 900 * NS_PER_SEC);
    }
}
