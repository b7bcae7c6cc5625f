//! Pacing of a rate-limited body (`--limit-rate`), shared by the HTTP/1 core and the
//! HTTP/2 glue: a body may have sent at most `RATE_BURST + rate × elapsed` bytes at
//! any time since it started.

use std::time::{Duration, Instant};

/// Body bytes a rate-limited response may send at once before pacing starts.
pub const RATE_BURST: u64 = 64 * 1024;

/// One body's pace: `rate` bytes per second from `start`.
#[derive(Clone, Copy, Debug)]
pub struct Pace {
    rate: u64,
    start: Instant,
}

impl Pace {
    /// A body starting at `start`, paced at `rate` bytes per second (at least 1).
    pub fn new(rate: u64, start: Instant) -> Pace {
        Pace {
            rate: rate.max(1),
            start,
        }
    }

    /// Bytes that may go now, having sent `sent`; or, when none, the time at which
    /// `want` more (a few milliseconds' worth at least) may go.
    pub fn allowance(&self, now: Instant, sent: u64, want: u64) -> Result<u64, Instant> {
        let elapsed = now.saturating_duration_since(self.start).as_secs_f64();
        let budget = RATE_BURST + (self.rate as f64 * elapsed) as u64;
        if budget > sent {
            return Ok(budget - sent);
        }
        let step = want.min(RATE_BURST).max(self.rate / 100).max(1);
        let due = (sent + step - RATE_BURST) as f64 / self.rate as f64;
        Err(self.start + Duration::from_secs_f64(due))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_goes_at_once_then_bytes_come_at_the_rate() {
        let t0 = Instant::now();
        let p = Pace::new(1000, t0);
        assert_eq!(p.allowance(t0, 0, 1 << 20), Ok(RATE_BURST));
        let due = p.allowance(t0, RATE_BURST, 100).unwrap_err();
        // 100 bytes more at 1000 B/s: 0.1 s after the start.
        assert_eq!(due, t0 + Duration::from_millis(100));
        assert_eq!(p.allowance(due, RATE_BURST, 100), Ok(100));
    }
}
