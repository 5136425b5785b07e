//! The rise/fall state machine of one probe.
//!
//! A server that flaps must not flap in the listings and the schedulers
//! with it: it takes `rise` successes in a row to come up and `fall`
//! failures in a row to go down. A new check starts DOWN, so a server
//! added with a check gets no connection before it has proved itself.

use std::time::{SystemTime, UNIX_EPOCH};

use xvs_config::check::{CheckSpec, Health, HealthStatus};

use super::probe::Outcome;

/// One probe's state and last result.
#[derive(Debug, Clone)]
pub struct Machine {
    status: HealthStatus,
    /// Successes (DOWN, RISING) or failures (UP, FALLING) in a row.
    streak: u32,
}

fn epoch_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Machine {
    /// A check that has not run yet: DOWN.
    pub fn new(spec: &CheckSpec) -> Machine {
        Machine {
            status: HealthStatus {
                state: Health::Down,
                since: epoch_secs(),
                last: format!("not checked yet (needs {} success(es))", spec.rise),
                latency_us: 0,
                weight: None,
                transitions: 0,
                latency: Default::default(),
            },
            streak: 0,
        }
    }

    /// The status the listings and the model see.
    pub fn status(&self) -> &HealthStatus {
        &self.status
    }

    /// Take one probe's result (`us`: its duration); returns the log line
    /// of a state change (`UP -> FALLING: connect: ...`), if any.
    pub fn record(&mut self, spec: &CheckSpec, outcome: &Outcome, us: u64) -> Option<String> {
        self.status.latency_us = us;
        self.status.latency.record(us);
        let ok = outcome.is_ok();
        match outcome {
            Ok(w) => {
                self.status.last = "ok".into();
                self.status.weight = *w;
            }
            Err(e) => self.status.last = e.clone(),
        }
        let from = self.status.state;
        let to = match (from, ok) {
            (Health::Up, true) | (Health::Falling, true) => {
                self.streak = 0;
                Health::Up
            }
            (Health::Down, false) | (Health::Rising, false) => {
                self.streak = 0;
                Health::Down
            }
            (Health::Down | Health::Rising | Health::Unchecked, true) => {
                self.streak += 1;
                if self.streak >= spec.rise {
                    self.streak = 0;
                    Health::Up
                } else {
                    Health::Rising
                }
            }
            (Health::Up | Health::Falling | Health::Unchecked, false) => {
                self.streak += 1;
                if self.streak >= spec.fall {
                    self.streak = 0;
                    Health::Down
                } else {
                    Health::Falling
                }
            }
        };
        if to == from {
            return None;
        }
        self.status.state = to;
        self.status.since = epoch_secs();
        self.status.transitions += 1;
        let why = match outcome {
            Ok(Some(w)) => format!("ok, weight {w}"),
            Ok(None) => "ok".into(),
            Err(e) => e.clone(),
        };
        let count = match to {
            Health::Rising => format!(" ({}/{} successes)", self.streak, spec.rise),
            Health::Falling => format!(" ({}/{} failures)", self.streak, spec.fall),
            _ => String::new(),
        };
        Some(format!(
            "{from} -> {to}{count}: {why} ({}.{:03} ms)",
            us / 1000,
            us % 1000
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xvs_config::check::CheckConf;

    fn spec(rise: u32, fall: u32) -> CheckSpec {
        CheckConf {
            kind: Some(xvs_config::check::CheckKind::Tcp),
            rise: Some(rise),
            fall: Some(fall),
            ..CheckConf::default()
        }
        .resolve(&CheckConf::default())
    }

    fn run(m: &mut Machine, s: &CheckSpec, results: &str) -> Vec<Health> {
        results
            .chars()
            .map(|c| {
                let o: Outcome = if c == '+' {
                    Ok(None)
                } else {
                    Err("refused".into())
                };
                m.record(s, &o, 10);
                m.status().state
            })
            .collect()
    }

    #[test]
    fn starts_down_rises_and_falls_with_damping() {
        use Health::*;
        let s = spec(2, 3);
        let mut m = Machine::new(&s);
        assert_eq!(m.status().state, Down);
        assert_eq!(
            run(&mut m, &s, "+-++--+---"),
            [Rising, Down, Rising, Up, Falling, Falling, Up, Falling, Falling, Down]
        );
        assert_eq!(m.status().transitions, 8);
        assert_eq!(m.status().last, "refused");
        assert_eq!(m.status().latency.count(), 10);
    }

    #[test]
    fn rise_one_comes_up_at_once_and_logs_why() {
        let s = spec(1, 1);
        let mut m = Machine::new(&s);
        let line = m.record(&s, &Ok(Some(7)), 1500).unwrap();
        assert_eq!(line, "DOWN -> UP: ok, weight 7 (1.500 ms)");
        assert_eq!(m.status().weight, Some(7));
        assert_eq!(m.record(&s, &Ok(Some(7)), 1500), None);
        let line = m.record(&s, &Err("status 500".into()), 2000).unwrap();
        assert_eq!(line, "UP -> DOWN: status 500 (2.000 ms)");
    }
}
