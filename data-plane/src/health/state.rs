//! Endpoints' live state, kept across swaps by upstream name and address: requests in flight
//! (least-request, the circuit breaker), consecutive errors and ejections (passive health), and
//! the active checks' verdict.

use std::{
    sync::{
        LazyLock,
        atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

static BASE: LazyLock<Instant> = LazyLock::new(Instant::now);

/// Milliseconds since the process's first look at the clock.
pub fn now_ms() -> u64 {
    u64::try_from(BASE.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// The longest one ejection lasts, however many came before.
pub const MAX_EJECTION: Duration = Duration::from_secs(300);

/// One endpoint of one upstream.
#[derive(Debug)]
pub struct EndpointState {
    /// Requests sent to it and not finished.
    pub in_flight: AtomicU32,
    errors: AtomicU32,
    /// Until when (`now_ms`) it is ejected; 0: it is not.
    ejected_until: AtomicU64,
    /// Ejections in a row, for the growing back-off.
    ejections: AtomicU32,
    /// The active checks' verdict: up until a checker says otherwise.
    up: AtomicBool,
}

impl Default for EndpointState {
    fn default() -> Self {
        Self {
            in_flight: AtomicU32::new(0),
            errors: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            ejections: AtomicU32::new(0),
            up: AtomicBool::new(true),
        }
    }
}

/// Outlier detection settings, resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Passive {
    pub consecutive_errors: u32,
    pub base_ejection: Duration,
    pub max_ejection_percent: u32,
}

impl EndpointState {
    /// Neither ejected nor down by its checks.
    #[inline]
    pub fn usable(&self, now_ms: u64) -> bool {
        self.up.load(Ordering::Relaxed) && self.ejected_until.load(Ordering::Relaxed) <= now_ms
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// The active checks' verdict; whether it changed. Coming back up also ends an ejection:
    /// the endpoint was restarted or repaired, and the checks say it works.
    pub fn set_up(&self, up: bool) -> bool {
        let changed = self.up.swap(up, Ordering::Relaxed) != up;
        if changed && up {
            self.ejected_until.store(0, Ordering::Relaxed);
            self.errors.store(0, Ordering::Relaxed);
        }
        changed
    }

    pub fn is_ejected(&self, now_ms: u64) -> bool {
        self.ejected_until.load(Ordering::Relaxed) > now_ms
    }

    /// A request that worked: the error streak ends, and past ejections count for less.
    pub fn succeeded(&self) {
        if self.errors.load(Ordering::Relaxed) != 0 {
            self.errors.store(0, Ordering::Relaxed);
        }
        if self.ejections.load(Ordering::Relaxed) != 0 && !self.is_ejected(now_ms()) {
            let _ = self
                .ejections
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        }
    }

    /// A request that failed; whether the streak reached the threshold (the caller decides
    /// whether the endpoint may be ejected).
    pub fn failed(&self, passive: &Passive) -> bool {
        self.errors.fetch_add(1, Ordering::Relaxed) + 1 >= passive.consecutive_errors
    }

    /// Ejects it for the base time times its ejections in a row (at most [`MAX_EJECTION`]);
    /// returns for how long.
    pub fn eject(&self, passive: &Passive) -> Duration {
        self.errors.store(0, Ordering::Relaxed);
        let times = self
            .ejections
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        let length = passive
            .base_ejection
            .saturating_mul(times)
            .min(MAX_EJECTION);
        let until = now_ms().saturating_add(u64::try_from(length.as_millis()).unwrap_or(u64::MAX));
        self.ejected_until.store(until, Ordering::Relaxed);
        length
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{EndpointState, Passive, now_ms};

    #[test]
    fn errors_in_a_row_eject_for_a_growing_time() {
        let passive = Passive {
            consecutive_errors: 3,
            base_ejection: Duration::from_secs(10),
            max_ejection_percent: 50,
        };
        let state = EndpointState::default();
        assert!(!state.failed(&passive));
        state.succeeded();
        assert!(!state.failed(&passive));
        assert!(!state.failed(&passive));
        assert!(state.failed(&passive));
        assert_eq!(state.eject(&passive), Duration::from_secs(10));
        assert!(!state.usable(now_ms()));
        assert_eq!(state.eject(&passive), Duration::from_secs(20));
        assert!(state.usable(now_ms() + 21_000));
        state.set_up(false);
        assert!(!state.usable(now_ms() + 21_000));
    }
}
