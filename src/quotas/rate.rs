//! A byte rate measured over sampled windows, and the throttle time of a
//! client over its quota: Kafka's `Rate` over a `SampledStat` (`WindowedSum`)
//! and `QuotaUtils.throttleTime`, so that clients see the throttle times a
//! Kafka broker would give them.
//!
//! Kafka's rate is the sum of the retained samples divided by the time they
//! span, where that time is never taken as less than `samples - 1` whole
//! windows. A new client may therefore send `quota * (samples - 1) * window`
//! bytes at once before it is throttled (2 MB for 200 KB/s with the defaults).
//!
//! Not thread-safe: the quota store keeps each `Rate` behind its lock.

/// Kafka's `quota.window.num` and `quota.window.size.seconds`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateConfig {
    /// Retained samples (Kafka's default 11).
    pub samples: usize,
    /// Span of one sample in ms (Kafka's default 1 s).
    pub window_ms: i64,
}

impl Default for RateConfig {
    fn default() -> Self {
        RateConfig {
            samples: 11,
            window_ms: 1000,
        }
    }
}

impl RateConfig {
    /// Bytes a client may take in one go without being throttled when nothing
    /// was recorded before (Kafka's `getMaxValueInQuotaWindow`).
    pub fn max_value_in_window(&self, quota: f64) -> f64 {
        quota * (self.samples.saturating_sub(1)) as f64 * self.window_ms as f64 / 1000.0
    }
}

#[derive(Clone, Copy, Debug)]
struct Sample {
    start_ms: i64,
    last_event_ms: i64,
    value: f64,
}

impl Sample {
    fn new(now_ms: i64) -> Sample {
        Sample {
            start_ms: now_ms,
            last_event_ms: now_ms,
            value: 0.0,
        }
    }
}

/// A rate in units per second over `samples` windows of `window_ms`.
#[derive(Clone, Debug, Default)]
pub struct Rate {
    /// At most `samples + 1`: Kafka keeps one extra for a sample that started
    /// before the monitored window but overlaps it.
    samples: Vec<Sample>,
    current: usize,
}

impl Rate {
    pub fn new() -> Rate {
        Rate::default()
    }

    /// Adds `value` (negative to take back a recorded value) at `now_ms`.
    pub fn record(&mut self, cfg: &RateConfig, value: f64, now_ms: i64) {
        if self.samples.is_empty() {
            self.samples.push(Sample::new(now_ms));
            self.current = 0;
        }
        if now_ms - self.samples[self.current].start_ms >= cfg.window_ms {
            self.advance(cfg, now_ms);
        }
        let s = &mut self.samples[self.current];
        s.value += value;
        s.last_event_ms = now_ms;
    }

    fn advance(&mut self, cfg: &RateConfig, now_ms: i64) {
        let max = cfg.samples + 1;
        self.current = (self.current + 1) % max;
        if self.current >= self.samples.len() {
            self.samples.push(Sample::new(now_ms));
        } else {
            self.samples[self.current] = Sample::new(now_ms);
        }
    }

    /// Samples with no event in the last `samples * window_ms` start over.
    fn purge(&mut self, cfg: &RateConfig, now_ms: i64) {
        let expire_ms = cfg.samples as i64 * cfg.window_ms;
        for s in &mut self.samples {
            if now_ms - s.last_event_ms >= expire_ms {
                *s = Sample::new(now_ms);
            }
        }
    }

    /// The time the rate is computed over, in ms: since the oldest sample
    /// began, but at least `samples - 1` whole windows (plus what has passed of
    /// the current one), and at least 1 ms.
    pub fn window_size_ms(&mut self, cfg: &RateConfig, now_ms: i64) -> i64 {
        self.purge(cfg, now_ms);
        if self.samples.is_empty() {
            self.samples.push(Sample::new(now_ms));
            self.current = 0;
        }
        let oldest = self
            .samples
            .iter()
            .map(|s| s.start_ms)
            .min()
            .unwrap_or(now_ms);
        let mut elapsed = now_ms - oldest;
        let full_windows = elapsed / cfg.window_ms;
        let min_full_windows = cfg.samples.saturating_sub(1) as i64;
        if full_windows < min_full_windows {
            elapsed += (min_full_windows - full_windows) * cfg.window_ms;
        }
        elapsed.max(1)
    }

    /// Units per second.
    pub fn measure(&mut self, cfg: &RateConfig, now_ms: i64) -> f64 {
        self.purge(cfg, now_ms);
        let sum: f64 = self.samples.iter().map(|s| s.value).sum();
        sum / (self.window_size_ms(cfg, now_ms) as f64 / 1000.0)
    }

    /// Whether every sample has expired: the rate is then indistinguishable
    /// from a new one and may be dropped.
    pub fn is_idle(&self, cfg: &RateConfig, now_ms: i64) -> bool {
        let expire_ms = cfg.samples as i64 * cfg.window_ms;
        self.samples
            .iter()
            .all(|s| now_ms - s.last_event_ms >= expire_ms)
    }

    /// Records `value` and answers how long, in ms, the client must wait for
    /// the rate to come back to `quota` (0 when within it). Kafka's
    /// `Sensor.record` with quota check and `QuotaUtils.throttleTime`: if the
    /// observed rate O exceeds the quota T over a window W, the delay X with
    /// O * W / (W + X) = T is X = (O - T) / T * W.
    pub fn record_and_throttle_ms(
        &mut self,
        cfg: &RateConfig,
        value: f64,
        quota: f64,
        now_ms: i64,
    ) -> u32 {
        self.record(cfg, value, now_ms);
        let observed = self.measure(cfg, now_ms);
        if observed <= quota {
            return 0;
        }
        let window = self.window_size_ms(cfg, now_ms) as f64;
        let ms = ((observed - quota) / quota * window).round();
        ms.clamp(0.0, i32::MAX as f64) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const Q: f64 = 200.0 * 1024.0;

    #[test]
    fn a_new_client_gets_nine_windows_of_credit() {
        // The window is taken as at least (samples - 1) windows: 10 s by default.
        let cfg = RateConfig::default();
        let mut r = Rate::new();
        r.record(&cfg, 1000.0, 0);
        assert_eq!(r.window_size_ms(&cfg, 0), 10_000);
        assert!((r.measure(&cfg, 0) - 100.0).abs() < 1e-9);
        assert_eq!(cfg.max_value_in_window(Q), Q * 10.0);
    }

    #[test]
    fn throttle_time_is_kafkas_formula() {
        let cfg = RateConfig::default();
        let mut r = Rate::new();
        // Exactly the credit: not throttled (Kafka's bound is inclusive).
        assert_eq!(r.record_and_throttle_ms(&cfg, Q * 10.0, Q, 0), 0);
        // 10% more over a 10 s window: O = 1.1 T, X = 0.1 * 10 s = 1 s.
        assert_eq!(r.record_and_throttle_ms(&cfg, Q, Q, 0), 1000);
    }

    #[test]
    fn window_grows_past_the_minimum_with_time() {
        let cfg = RateConfig::default();
        let mut r = Rate::new();
        r.record(&cfg, 100.0, 0);
        r.record(&cfg, 100.0, 10_500);
        // Oldest sample started at 0: 10.5 s elapsed, which is more than 10 full windows.
        assert_eq!(r.window_size_ms(&cfg, 10_500), 10_500);
        r.record(&cfg, 100.0, 12_000);
        // The first sample expired at 11 s (no event since 0) and started over at 12 s,
        // so the oldest is now the one begun at 10.5 s: 1.5 s elapsed, of which one whole
        // window, so nine windows are added.
        assert_eq!(r.window_size_ms(&cfg, 12_000), 10_500);
        assert!((r.measure(&cfg, 12_000) - 200.0 / 10.5).abs() < 1e-9);
    }

    #[test]
    fn unrecording_takes_a_value_back() {
        let cfg = RateConfig::default();
        let mut r = Rate::new();
        assert_eq!(r.record_and_throttle_ms(&cfg, Q * 10.0, Q, 5), 0);
        assert!(r.record_and_throttle_ms(&cfg, Q, Q, 5) > 0);
        r.record(&cfg, -Q, 5);
        assert!((r.measure(&cfg, 5) - Q).abs() < 1e-6);
    }

    #[test]
    fn idle_rates_expire_after_all_samples() {
        let cfg = RateConfig::default();
        let mut r = Rate::new();
        r.record(&cfg, 1.0, 0);
        assert!(!r.is_idle(&cfg, 10_999));
        assert!(r.is_idle(&cfg, 11_000));
    }

    /// A client that sends a request whenever it is not muted, the way a
    /// producer does against a broker that mutes its connection. Answers the
    /// time of its last request and the bytes sent, after `total` bytes or `run_ms`.
    fn greedy(cfg: RateConfig, quota: f64, request: f64, total: f64, run_ms: i64) -> (i64, f64) {
        let mut r = Rate::new();
        let (mut now, mut last, mut sent) = (0i64, 0i64, 0.0);
        while now < run_ms && sent < total {
            let t = r.record_and_throttle_ms(&cfg, request, quota, now);
            sent += request;
            last = now;
            // A request every ms at most (a real client needs a round trip).
            now += (t as i64).max(1);
        }
        (last, sent)
    }

    #[test]
    fn a_greedy_client_is_held_to_its_quota() {
        let cfg = RateConfig::default();
        for request in [16.0 * 1024.0, 64.0 * 1024.0, 1024.0 * 1024.0] {
            let (ms, sent) = greedy(cfg, Q, request, f64::MAX, 120_000);
            let rate = sent / (ms as f64 / 1000.0);
            assert!(rate <= Q * 1.15, "request {request}: {rate} B/s");
            assert!(rate >= Q * 0.85, "request {request}: {rate} B/s");
        }
    }

    #[test]
    fn ten_seconds_of_credit_then_the_quota() {
        // What the compat tests size their runs by (librdkafka sends 16 KiB batches
        // there): 2 MiB at 200 KiB/s pass at once, 2.5 MiB take about 12 s, because
        // the window stays at 10-11 s for the first 10 s and the sample holding the
        // initial burst expires only after 11 s.
        let cfg = RateConfig::default();
        let mib = 1024.0 * 1024.0;
        let (ms, _) = greedy(cfg, Q, 16.0 * 1024.0, 2.0 * mib, 60_000);
        assert!(ms < 1_000, "2 MiB: last request at {ms} ms");
        let (ms, _) = greedy(cfg, Q, 16.0 * 1024.0, 2.5 * mib, 60_000);
        assert!(
            (11_000..=13_000).contains(&ms),
            "2.5 MiB: last request at {ms} ms"
        );
    }
}
