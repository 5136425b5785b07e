//! Rate estimates for `--rate`: IPVS's 2-second EWMA.
//!
//! IPVS samples every service's and destination's counters every two
//! seconds and keeps, per counter, `avg += (rate - avg) / 4` in fixed
//! point: connection and packet rates are kept scaled by 2^10 and byte
//! rates by 2^5, so a 2-second delta `d` enters as `d << 9` (packets) or
//! `d << 4` (bytes), the update is `avg += (rate - avg) >> 2` (arithmetic
//! shift), and the reported value rounds: `(avg + 0x1FF) >> 10` for
//! CPS/PPS, `(avg + 0xF) >> 5` for BPS. xvs does the same. The daemon's
//! timer may not fire exactly every 2 s, so the delta is scaled by the real
//! interval (`d * 2^10 * 1000 / ms`), which is `d << 9` at 2000 ms exactly.

use std::time::Instant;

use xvs_config::stats::CounterValues;

/// Nominal estimator period.
pub const PERIOD_MS: u64 = 2000;

/// Ticks closer together than this are ignored (the interval would be too
/// short for a meaningful rate).
const MIN_INTERVAL_MS: u64 = 100;

/// Rates in units per second, as `--rate` prints them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rates {
    /// Connections per second.
    pub cps: u64,
    /// Inbound packets per second.
    pub inpps: u64,
    /// Outbound packets per second.
    pub outpps: u64,
    /// Inbound bytes per second.
    pub inbps: u64,
    /// Outbound bytes per second.
    pub outbps: u64,
}

/// The estimator state of one service or destination.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateEst {
    last: CounterValues,
    /// CPS scaled by 2^10.
    cps: i64,
    /// Inbound PPS scaled by 2^10.
    inpps: i64,
    /// Outbound PPS scaled by 2^10.
    outpps: i64,
    /// Inbound BPS scaled by 2^5.
    inbps: i64,
    /// Outbound BPS scaled by 2^5.
    outbps: i64,
}

/// One EWMA step: `avg += (scaled_rate - avg) >> 2`, where the rate of
/// `delta` over `ms` milliseconds is scaled by `2^scale`.
fn step(avg: &mut i64, delta: u64, ms: u64, scale: u32) {
    let rate = (i128::from(delta) << scale) * 1000 / i128::from(ms.max(1));
    let rate = rate.min(i128::from(i64::MAX / 2)) as i64;
    *avg += (rate - *avg) >> 2;
}

fn report(avg: i64, scale: u32) -> u64 {
    let round = (1i64 << (scale - 1)) - 1;
    u64::try_from(avg.saturating_add(round) >> scale).unwrap_or(0)
}

impl RateEst {
    /// Forget the history: used by `-Z` (the counters are zeroed too, so
    /// the last sample is zero).
    pub fn reset(&mut self) {
        *self = RateEst::default();
    }

    /// Take the current counters as the last sample without updating the
    /// averages.
    pub fn prime(&mut self, now: CounterValues) {
        self.last = now;
    }

    /// Fold a sample taken `ms` milliseconds after the previous one.
    pub fn update(&mut self, now: CounterValues, ms: u64) {
        // Counters may have been zeroed behind our back; a counter that
        // went backwards contributes nothing.
        let d = |n: u64, l: u64| n.saturating_sub(l);
        step(&mut self.cps, d(now.conns, self.last.conns), ms, 10);
        step(&mut self.inpps, d(now.inpkts, self.last.inpkts), ms, 10);
        step(&mut self.outpps, d(now.outpkts, self.last.outpkts), ms, 10);
        step(&mut self.inbps, d(now.inbytes, self.last.inbytes), ms, 5);
        step(&mut self.outbps, d(now.outbytes, self.last.outbytes), ms, 5);
        self.last = now;
    }

    /// The rates as listed.
    pub fn rates(&self) -> Rates {
        Rates {
            cps: report(self.cps, 10),
            inpps: report(self.inpps, 10),
            outpps: report(self.outpps, 10),
            inbps: report(self.inbps, 5),
            outbps: report(self.outbps, 5),
        }
    }
}

/// One sampling instant of the daemon's 2-second timer, as every
/// estimator folds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sample {
    /// The first sample: taken as the starting point only.
    First,
    /// A sample taken this many milliseconds after the previous one.
    After(u64),
}

impl RateEst {
    /// Fold the counters `now` read at `sample`.
    pub fn sample(&mut self, now: CounterValues, sample: Sample) {
        match sample {
            Sample::First => self.prime(now),
            Sample::After(ms) => self.update(now, ms),
        }
    }
}

/// Paces the estimators: decides, at each tick of the daemon's timer,
/// whether and how the counters are sampled (the model then samples every
/// service and destination, see `Model::sample_rates`).
#[derive(Debug, Clone, Default)]
pub struct Estimator {
    last_tick: Option<Instant>,
}

impl Estimator {
    /// A new estimator; its first tick only takes the initial sample.
    pub fn new() -> Self {
        Estimator::default()
    }

    /// The sample to take at `now`, or `None` if the previous one is too
    /// recent for a meaningful rate.
    pub fn tick(&mut self, now: Instant) -> Option<Sample> {
        let sample = match self.last_tick {
            None => Sample::First,
            Some(last) => {
                let ms = u64::try_from(now.saturating_duration_since(last).as_millis())
                    .unwrap_or(u64::MAX);
                if ms < MIN_INTERVAL_MS {
                    return None;
                }
                Sample::After(ms)
            }
        };
        self.last_tick = Some(now);
        Some(sample)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vals(conns: u64, pkts: u64, bytes: u64) -> CounterValues {
        CounterValues {
            conns,
            inpkts: pkts,
            outpkts: pkts / 2,
            inbytes: bytes,
            outbytes: bytes / 2,
        }
    }

    #[test]
    fn converges_to_steady_rate() {
        let mut e = RateEst::default();
        let (mut c, mut p, mut b) = (0, 0, 0);
        for _ in 0..100 {
            c += 200; // 100/s
            p += 20_000; // 10k/s
            b += 20_000_000; // 10 MB/s
            e.update(vals(c, p, b), PERIOD_MS);
        }
        let r = e.rates();
        assert_eq!(r.cps, 100);
        assert_eq!(r.inpps, 10_000);
        assert_eq!(r.outpps, 5_000);
        assert_eq!(r.inbps, 10_000_000);
        assert_eq!(r.outbps, 5_000_000);
    }

    #[test]
    fn first_step_is_a_quarter() {
        let mut e = RateEst::default();
        e.update(vals(800, 0, 0), PERIOD_MS); // 400/s
        assert_eq!(e.rates().cps, 100);
        // Fixed point as IPVS: 800 << 9 = 409600, >> 2 = 102400, +0x1FF >> 10 = 100.
        assert_eq!(e.cps, 102_400);
    }

    #[test]
    fn decays_and_resets() {
        let mut e = RateEst::default();
        e.update(vals(2000, 2000, 2000), PERIOD_MS);
        for _ in 0..200 {
            e.update(vals(2000, 2000, 2000), PERIOD_MS);
        }
        assert_eq!(e.rates(), Rates::default());
        e.update(vals(4000, 4000, 4000), PERIOD_MS);
        assert_ne!(e.rates(), Rates::default());
        e.reset();
        assert_eq!(e.rates(), Rates::default());
    }

    #[test]
    fn ticks_too_close_together_are_skipped() {
        let mut est = Estimator::new();
        let t0 = Instant::now();
        assert_eq!(est.tick(t0), Some(Sample::First));
        let t1 = t0 + std::time::Duration::from_millis(50);
        assert_eq!(est.tick(t1), None);
        let t2 = t0 + std::time::Duration::from_millis(2000);
        assert_eq!(est.tick(t2), Some(Sample::After(2000)));
    }

    #[test]
    fn huge_deltas_do_not_overflow() {
        let mut e = RateEst::default();
        e.update(vals(u64::MAX, u64::MAX, u64::MAX), 1);
        e.update(vals(0, 0, 0), 1);
        let _ = e.rates();
        e.update(vals(u64::MAX, u64::MAX, u64::MAX), 1);
        let _ = e.rates();
    }
}
