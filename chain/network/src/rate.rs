//! Per-peer inbound rate limits: token buckets on frames and on bytes. A
//! frame over the budget is delayed until the budget allows it (the reader
//! stops, so HTTP/2 flow control slows the peer down); a peer that stays over
//! it for longer than the tolerance is a flood.

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
        if self.tokens >= 0.0 { Duration::ZERO } else { Duration::from_secs_f64(-self.tokens / self.per_second) }
    }
}

#[derive(Debug)]
pub(crate) struct Limiter {
    frames: TokenBucket,
    bytes: TokenBucket,
    tolerance: Duration,
    /// When the peer's unbroken run of delayed frames began.
    throttled_since: Option<Instant>,
}

/// The peer stayed over its rate limit for longer than the tolerance.
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
            throttled_since: None,
        }
    }

    /// How long to hold a frame of `bytes` before handing it on.
    pub(crate) fn admit(&mut self, now: Instant, bytes: usize) -> Result<Duration, Flood> {
        let wait = self.frames.take(now, 1.0).max(self.bytes.take(now, bytes as f64));
        if wait.is_zero() {
            self.throttled_since = None;
            return Ok(wait);
        }
        let since = *self.throttled_since.get_or_insert(now);
        if now.saturating_duration_since(since) > self.tolerance { Err(Flood) } else { Ok(wait) }
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
            assert_eq!(limiter.admit(start, 100), Ok(Duration::ZERO));
        }
        let wait = limiter.admit(start, 100).unwrap();
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-6, "{wait:?}");
        // A pause long enough to refill ends the throttled run.
        let later = start + Duration::from_secs(2);
        assert_eq!(limiter.admit(later, 100), Ok(Duration::ZERO));
        assert_eq!(limiter.throttled_since, None);
    }

    #[test]
    fn a_peer_over_its_rate_for_longer_than_the_tolerance_is_a_flood() {
        let start = Instant::now();
        let mut limiter = Limiter::new(&config(10, 1), start);
        let mut now = start;
        let mut admitted = 0;
        // The flooder sends its next frame as soon as the last one is let through.
        while let Ok(wait) = limiter.admit(now, 10) {
            now += wait;
            admitted += 1;
            assert!(admitted < 100, "never declared a flood");
        }
        assert!(now - start > Duration::from_secs(1));
        // Held to the rate meanwhile: 1 burst frame, then 10 per second.
        assert!(admitted <= 1 + 10 * 12 / 10 + 1, "{admitted}");
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
        assert_eq!(limiter.admit(start, crate::MAX_FRAME_BYTES), Ok(Duration::ZERO));
        let wait = limiter.admit(start, 500).unwrap();
        assert!((wait.as_secs_f64() - 0.5).abs() < 1e-6, "{wait:?}");
    }
}
