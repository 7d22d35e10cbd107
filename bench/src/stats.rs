//! Latency statistics of P3: percentiles by the nearest-rank method (a reported p99 is a latency
//! some change really had), and a per-second series by commit time, which shows whether the lag
//! stays flat (keeping up) or grows through the run (falling behind).

use serde_json::{json, Value};

/// One change's commit time and how long after it the target region first showed it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample {
    pub(crate) committed_micros: i64,
    pub(crate) latency_micros: i64,
}

/// The `q`-quantile (0 < q ≤ 1) of sorted values, nearest rank.
pub(crate) fn percentile(sorted: &[i64], q: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// p50, p99, max and count of `samples`, in milliseconds.
pub(crate) fn summary(samples: &[Sample]) -> Value {
    let mut latencies: Vec<i64> = samples.iter().map(|s| s.latency_micros).collect();
    latencies.sort_unstable();
    let ms = |v: Option<i64>| v.map(|us| us as f64 / 1000.0);
    json!({
        "count": latencies.len(),
        "p50_ms": ms(percentile(&latencies, 0.50)),
        "p90_ms": ms(percentile(&latencies, 0.90)),
        "p99_ms": ms(percentile(&latencies, 0.99)),
        "max_ms": ms(latencies.last().copied()),
    })
}

/// Per second of commit time since `start_micros`: how many changes, their median and maximum
/// latency.
pub(crate) fn per_second(samples: &[Sample], start_micros: i64) -> Vec<Value> {
    let mut buckets: std::collections::BTreeMap<i64, Vec<i64>> = Default::default();
    for s in samples {
        let second = (s.committed_micros - start_micros).max(0) / 1_000_000;
        buckets.entry(second).or_default().push(s.latency_micros);
    }
    buckets
        .into_iter()
        .map(|(second, mut latencies)| {
            latencies.sort_unstable();
            json!({
                "second": second,
                "changes": latencies.len(),
                "p50_ms": percentile(&latencies, 0.5).map(|us| us / 1000),
                "max_ms": latencies.last().map(|us| us / 1000),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn nearest_rank_percentiles() {
        let values: Vec<i64> = (1..=100).collect();
        assert_eq!(percentile(&values, 0.5), Some(50));
        assert_eq!(percentile(&values, 0.99), Some(99));
        assert_eq!(percentile(&values, 1.0), Some(100));
        assert_eq!(percentile(&[7], 0.99), Some(7));
        assert_eq!(percentile(&[], 0.5), None);
    }
}
