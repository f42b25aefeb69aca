//! Per-peer inbound rate limits: token buckets on frames and on bytes. A
//! frame over the budget is delayed until the budget allows it (the reader
//! stops, so HTTP/2 flow control slows the peer down). A peer that keeps the
//! reader held back for at least half of a period of `flood_tolerance` is a
//! flood: measured in time actually spent waiting, so a loaded machine, whose
//! sleeps overshoot, still recognises one.

use std::time::{Duration, Instant};

#[derive(Debug)]
struct TokenBucket {
    per_second: f64,
    burst: f64,
    /// Negative while a delayed frame's cost is being paid off.
    tokens: f64,
    refilled_at: Instant,
}

impl TokenBucket {
    fn new(per_second: f64, burst: f64, now: Instant) -> Self {
        Self { per_second, burst, tokens: burst, refilled_at: now }
    }

    /// Takes `cost` and returns how long to wait before it is paid for.
    fn take(&mut self, now: Instant, cost: f64) -> Duration {
        let elapsed = now.saturating_duration_since(self.refilled_at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        self.refilled_at = now;
        self.tokens -= cost;
        if self.tokens >= 0.0 {
            return Duration::ZERO;
        }
        Duration::try_from_secs_f64(-self.tokens / self.per_second).unwrap_or(Duration::MAX)
    }
}

#[derive(Debug)]
pub(crate) struct Limiter {
    frames: TokenBucket,
    bytes: TokenBucket,
    tolerance: Duration,
    /// The current measuring period and the time spent held back in it.
    period_start: Instant,
    held_back: Duration,
}

/// The peer held the reader back for too long.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Flood;

impl Limiter {
    pub(crate) fn new(config: &crate::NetworkConfig, now: Instant) -> Self {
        Self {
            frames: TokenBucket::new(
                f64::from(config.inbound_frames_per_second),
                f64::from(config.inbound_frame_burst),
                now,
            ),
            bytes: TokenBucket::new(config.inbound_bytes_per_second as f64, config.inbound_byte_burst as f64, now),
            tolerance: config.flood_tolerance,
            period_start: now,
            held_back: Duration::ZERO,
        }
    }

    /// How long to hold a frame of `bytes` before handing it on; after the
    /// wait, report it with [`Limiter::held_back`].
    pub(crate) fn admit(&mut self, now: Instant, bytes: usize) -> Duration {
        let wait = self.frames.take(now, 1.0).max(self.bytes.take(now, bytes as f64));
        if wait.is_zero() && now.saturating_duration_since(self.period_start) >= self.tolerance {
            self.start_period(now);
        }
        wait
    }

    /// Records time spent waiting; a flood once it reaches half of a period
    /// of at least the tolerance.
    pub(crate) fn held_back(&mut self, now: Instant, waited: Duration) -> Result<(), Flood> {
        self.held_back += waited;
        let period = now.saturating_duration_since(self.period_start);
        if period >= self.tolerance {
            if self.held_back.saturating_mul(2) >= period {
                return Err(Flood);
            }
            self.start_period(now);
        }
        Ok(())
    }

    fn start_period(&mut self, now: Instant) {
        self.period_start = now;
        self.held_back = Duration::ZERO;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NetworkConfig;

    fn config(frames: u32, burst: u32) -> NetworkConfig {
        NetworkConfig {
            inbound_frames_per_second: frames,
            inbound_frame_burst: burst,
            flood_tolerance: Duration::from_secs(1),
            ..Default::default()
        }
    }

    #[test]
    fn a_burst_passes_then_frames_wait_their_turn() {
        let start = Instant::now();
        let mut limiter = Limiter::new(&config(10, 5), start);
        for _ in 0..5 {
            assert_eq!(limiter.admit(start, 100), Duration::ZERO);
        }
        let wait = limiter.admit(start, 100);
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-6, "{wait:?}");
        assert_eq!(limiter.held_back(start + wait, wait), Ok(()));
        // A pause long enough to refill starts a new period.
        let later = start + Duration::from_secs(2);
        assert_eq!(limiter.admit(later, 100), Duration::ZERO);
        assert_eq!((limiter.period_start, limiter.held_back), (later, Duration::ZERO));
    }

    #[test]
    fn a_peer_over_its_rate_for_longer_than_the_tolerance_is_a_flood() {
        let start = Instant::now();
        let mut limiter = Limiter::new(&config(10, 1), start);
        let mut now = start;
        let mut admitted = 0;
        // The flooder sends its next frame as soon as the last one is let
        // through, and each wait overshoots by half (a loaded machine).
        loop {
            let wait = limiter.admit(now, 10);
            let waited = wait.mul_f64(1.5);
            now += waited;
            if limiter.held_back(now, waited) == Err(Flood) {
                break;
            }
            admitted += 1;
            assert!(admitted < 100, "never declared a flood");
        }
        assert!(now - start >= Duration::from_secs(1) && now - start < Duration::from_secs(2));
        // Held below the rate meanwhile: 1 burst frame, then at most 10 per second.
        assert!(admitted <= 1 + 10 * 2, "{admitted}");
    }

    #[test]
    fn an_honest_burst_is_delayed_but_not_a_flood() {
        let start = Instant::now();
        let mut limiter = Limiter::new(&config(10, 5), start);
        let mut now = start;
        // Twice the burst at once, then quiet.
        for _ in 0..10 {
            let wait = limiter.admit(now, 10);
            now += wait;
            assert_eq!(limiter.held_back(now, wait), Ok(()));
        }
        now += Duration::from_secs(5);
        assert_eq!(limiter.admit(now, 10), Duration::ZERO);
    }

    #[test]
    fn bytes_are_limited_as_well_as_frames() {
        let start = Instant::now();
        let config = NetworkConfig {
            inbound_bytes_per_second: 1_000,
            inbound_byte_burst: crate::MAX_FRAME_BYTES as u64,
            ..Default::default()
        };
        let mut limiter = Limiter::new(&config, start);
        assert_eq!(limiter.admit(start, crate::MAX_FRAME_BYTES), Duration::ZERO);
        let wait = limiter.admit(start, 500);
        assert!((wait.as_secs_f64() - 0.5).abs() < 1e-6, "{wait:?}");
    }
}
