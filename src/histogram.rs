//! Fixed-bucket duration histograms for `/metrics`: what a shard records on its hot path and
//! the control thread renders in the Prometheus text format.
//!
//! Pure values, no I/O and no clock: the caller measures, a histogram only counts. Recording is
//! a search over a dozen bounds and two additions, cheap enough to do once per message. The
//! bounds are fixed for every histogram so that shards' histograms add up and an operator's
//! dashboards keep working across releases.

use std::fmt::Write;
use std::time::Duration;

/// Upper bounds of the buckets, in microseconds. They span a fast durable write (about 0.1 ms
/// on an NVMe drive) to a stalled disk (seconds); the last bucket, `+Inf`, takes the rest.
pub const BUCKET_BOUNDS_MICROS: [u64; 14] = [
    100, 250, 500, 1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 64_000, 128_000, 256_000, 1_000_000,
    4_000_000,
];

/// Counts of durations by bucket, with their sum.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DurationHistogram {
    /// Observations per bucket, not cumulative; the last one is `+Inf`.
    counts: [u64; BUCKET_BOUNDS_MICROS.len() + 1],
    sum_micros: u64,
}

impl DurationHistogram {
    /// Counts one observation.
    pub fn record(&mut self, duration: Duration) {
        let micros = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
        let bucket = BUCKET_BOUNDS_MICROS.partition_point(|&bound| bound < micros);
        self.counts[bucket] += 1;
        self.sum_micros = self.sum_micros.saturating_add(micros);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Appends the histogram's lines (buckets, sum, count) for one label set, `labels` being
    /// the inside of the braces, e.g. `shard="0"`. The `# HELP` and `# TYPE` lines are the
    /// caller's, once per family.
    pub fn render(&self, name: &str, labels: &str, text: &mut String) {
        let mut cumulative = 0;
        for (bound, count) in BUCKET_BOUNDS_MICROS.iter().zip(self.counts) {
            cumulative += count;
            let seconds = *bound as f64 / 1e6;
            let _ = writeln!(
                text,
                "{name}_bucket{{{labels},le=\"{seconds}\"}} {cumulative}"
            );
        }
        let count = self.count();
        let _ = writeln!(text, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
        let sum = self.sum_micros as f64 / 1e6;
        let _ = writeln!(text, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(text, "{name}_count{{{labels}}} {count}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn micros(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    #[test]
    fn an_observation_on_a_bound_falls_in_that_bound_s_bucket() {
        let mut histogram = DurationHistogram::default();
        histogram.record(micros(100));
        histogram.record(micros(101));
        histogram.record(micros(0));
        assert_eq!(histogram.counts[0], 2);
        assert_eq!(histogram.counts[1], 1);
        assert_eq!(histogram.sum_micros, 201);
    }

    #[test]
    fn beyond_the_last_bound_is_counted_in_inf() {
        let mut histogram = DurationHistogram::default();
        histogram.record(Duration::from_secs(5));
        histogram.record(Duration::MAX);
        assert_eq!(histogram.counts[BUCKET_BOUNDS_MICROS.len()], 2);
        assert_eq!(histogram.count(), 2);
        assert_eq!(histogram.sum_micros, u64::MAX);
    }

    #[test]
    fn rendered_buckets_are_cumulative_and_end_at_the_count() {
        let mut histogram = DurationHistogram::default();
        for n in [50, 300, 300, 1_500, 9_000_000] {
            histogram.record(micros(n));
        }
        let mut text = String::new();
        histogram.render("postern_x_seconds", "shard=\"1\"", &mut text);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "postern_x_seconds_bucket{shard=\"1\",le=\"0.0001\"} 1"
        );
        assert_eq!(
            lines[1],
            "postern_x_seconds_bucket{shard=\"1\",le=\"0.00025\"} 1"
        );
        assert_eq!(
            lines[2],
            "postern_x_seconds_bucket{shard=\"1\",le=\"0.0005\"} 3"
        );
        assert_eq!(
            lines[4],
            "postern_x_seconds_bucket{shard=\"1\",le=\"0.002\"} 4"
        );
        assert_eq!(
            lines[13],
            "postern_x_seconds_bucket{shard=\"1\",le=\"4\"} 4"
        );
        assert_eq!(
            lines[14],
            "postern_x_seconds_bucket{shard=\"1\",le=\"+Inf\"} 5"
        );
        assert_eq!(lines[15], "postern_x_seconds_sum{shard=\"1\"} 9.00215");
        assert_eq!(lines[16], "postern_x_seconds_count{shard=\"1\"} 5");
        assert_eq!(lines.len(), 17);
    }
}
