//! The clocks the poller reads: the injectable wall clock (shared with the simulator
//! through `bitget-proto`, so tests move both by hand) and [`ServerClock`], Bitget's clock
//! as this process knows it.

pub use bitget_proto::clock::{Clock, ManualClock, SystemClock};

/// Bitget's clock as this process knows it: bounds on server time minus wall time, which
/// the rate limiter narrows with every reply's `requestTime` (see
/// `limiter::offset`). One estimate for the whole process, so what the limiter admits,
/// when the scheduler calls a candle closed, the time the gateway reports and the stamp the
/// signer puts on a request all follow the same clock. The limiter writes; the rest read.
#[derive(Debug, Default)]
pub struct ServerClock {
    /// (lower, upper) bounds on server − wall, in µs; `None` before the first reply.
    bounds_us: std::sync::Mutex<Option<(i64, i64)>>,
}

impl ServerClock {
    /// Sets the bounds (server − wall, µs).
    pub fn set_bounds_us(&self, lower: i64, upper: i64) {
        *self.bounds_us.lock().unwrap_or_else(|e| e.into_inner()) = Some((lower, upper));
    }

    /// The bounds (server − wall, µs), once a reply gave them.
    pub fn bounds_us(&self) -> Option<(i64, i64)> {
        *self.bounds_us.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Bounds from one round trip outside the limiter (a reply without `requestTime`): the
    /// server read `server_ms` between our `sent_wall_ms` and `received_wall_ms`.
    pub fn observe_round_trip(&self, server_ms: u64, sent_wall_ms: u64, received_wall_ms: u64) {
        let ms = |x: u64| i64::try_from(x).unwrap_or(i64::MAX);
        let lower = ms(server_ms).saturating_sub(ms(received_wall_ms));
        let upper = ms(server_ms)
            .saturating_add(1)
            .saturating_sub(ms(sent_wall_ms));
        self.set_bounds_us(lower.saturating_mul(1_000), upper.saturating_mul(1_000));
    }

    /// Server minus wall time, in ms (the middle of the bounds), once known.
    pub fn offset_ms(&self) -> Option<i64> {
        self.bounds_us()
            .map(|(lower, upper)| (lower / 2 + upper / 2).div_euclid(1_000))
    }

    /// The server's time when the wall clock reads `wall_ms`: the wall clock alone until
    /// the first reply.
    pub fn server_ms(&self, wall_ms: u64) -> u64 {
        wall_ms.saturating_add_signed(self.offset_ms().unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_server_clock_reads_the_middle_of_its_bounds_and_the_wall_until_known() {
        let clock = super::ServerClock::default();
        assert_eq!(clock.server_ms(1_000_000), 1_000_000);
        assert_eq!(clock.offset_ms(), None);
        clock.set_bounds_us(-3_000, 7_000);
        assert_eq!(clock.offset_ms(), Some(2));
        assert_eq!(clock.server_ms(1_000_000), 1_000_002);
        clock.set_bounds_us(-9_000, -5_000);
        assert_eq!(clock.server_ms(1_000_000), 999_993);
    }
}
