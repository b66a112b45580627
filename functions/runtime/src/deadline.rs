//! Invocation deadlines: Lambda gives each invocation a wall-clock deadline, while the engine
//! and the idempotency claims measure time with a monotonic clock.

use std::time::{Duration, Instant, SystemTime};

/// The monotonic instant `margin` before a wall-clock deadline (now, when that has passed).
pub fn instant_before(deadline: SystemTime, margin: Duration) -> Instant {
    let left = deadline
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO);
    Instant::now() + left.saturating_sub(margin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_instant_keeps_the_margin_before_the_deadline() {
        let deadline = SystemTime::now() + Duration::from_secs(10);
        let at = instant_before(deadline, Duration::from_secs(3));
        let now = Instant::now();
        assert!(at <= now + Duration::from_secs(7), "{:?}", at - now);
        assert!(at > now + Duration::from_secs(6), "{:?}", at - now);
    }

    #[test]
    fn a_deadline_already_past_or_within_the_margin_is_now() {
        let past = SystemTime::now() - Duration::from_secs(5);
        let near = SystemTime::now() + Duration::from_millis(100);
        for deadline in [past, near] {
            let at = instant_before(deadline, Duration::from_secs(1));
            assert!(at <= Instant::now());
        }
    }
}
