//! Time as the connection table keeps it: a `u32` of 10 ms ticks, so that
//! a deadline fits in one atomic word and comparisons wrap instead of
//! overflowing. Every conversion from the clock's nanoseconds or from the
//! configuration's seconds goes through here, so the tick length is
//! written once (in `xvs_config::time`).

pub use xvs_config::time::{TICKS_PER_SEC, TICK_NS};

/// Nanoseconds → ticks (wraps after ~497 days; comparisons use wrapping
/// arithmetic).
#[inline]
pub fn ticks(now_ns: u64) -> u32 {
    xvs_config::time::ticks_of_ns(now_ns)
}

/// Whether tick `t` is at or after `deadline` (wrapping).
#[inline]
pub fn reached(t: u32, deadline: u32) -> bool {
    t.wrapping_sub(deadline) < (1 << 31)
}

/// Seconds → ticks (saturating).
#[inline]
pub fn secs(s: u32) -> u32 {
    xvs_config::time::ticks_of_secs(s)
}

/// The deadline `s` seconds after tick `now`.
#[inline]
pub fn after(now: u32, s: u32) -> u32 {
    now.wrapping_add(secs(s))
}

/// Nanoseconds from tick `now` until `deadline` (0 once reached).
#[inline]
pub fn left_ns(now: u32, deadline: u32) -> u64 {
    if reached(now, deadline) {
        0
    } else {
        u64::from(deadline.wrapping_sub(now)) * TICK_NS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_become_ticks_and_deadlines_wrap() {
        assert_eq!(ticks(1_000_000_000), TICKS_PER_SEC);
        assert_eq!(secs(900), 90_000);
        assert_eq!(secs(u32::MAX), u32::MAX);
        let near_wrap = u32::MAX - 50;
        let d = after(near_wrap, 1);
        assert_eq!(d, 49);
        assert!(!reached(near_wrap, d));
        assert!(reached(d, d));
        assert!(reached(d.wrapping_add(1), d));
        assert_eq!(left_ns(near_wrap, d), 100 * TICK_NS);
        assert_eq!(left_ns(d, d), 0);
    }
}
