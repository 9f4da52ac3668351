//! Reading the services' Prometheus text: the figures the live line of `vigil demo` and
//! `vigil bench pipeline` show.

/// What is read from one scrape.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    /// The event-to-commit histogram: (upper bound in seconds, cumulative count) per bucket.
    pub latency: Vec<(f64, f64)>,
    pub batches: f64,
    pub batch_seconds: f64,
    pub decisions: f64,
    pub alerts: f64,
    /// Summed over partitions.
    pub lag: f64,
}

impl Scrape {
    pub fn parse(text: &str) -> Self {
        // The sum of every sample of `name` (over its labels).
        let sum = |name: &str| -> f64 {
            text.lines()
                .filter(|l| {
                    l.strip_prefix(name)
                        .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
                })
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                // An empty sum is -0.0.
                .fold(0.0, |a, b| a + b)
        };
        Self {
            latency: text
                .lines()
                .filter_map(|l| {
                    l.strip_prefix("vigil_scoring_event_to_commit_seconds_bucket{le=\"")
                })
                .filter_map(|l| {
                    let (le, count) = l.split_once("\"} ")?;
                    let le = if le == "+Inf" {
                        f64::INFINITY
                    } else {
                        le.parse().ok()?
                    };
                    Some((le, count.trim().parse().ok()?))
                })
                .collect(),
            batches: sum("vigil_scoring_batch_seconds_count"),
            batch_seconds: sum("vigil_scoring_batch_seconds_sum"),
            decisions: sum("vigil_scoring_decisions_total"),
            alerts: sum("vigil_scoring_alerts_total"),
            lag: sum("vigil_scoring_consumer_lag"),
        }
    }

    /// The `q` quantile (0..1) of the latencies observed between `before` and `self`, in
    /// seconds, linearly interpolated within a bucket; `None` when nothing was observed.
    pub fn latency_quantile(&self, before: &Scrape, q: f64) -> Option<f64> {
        let counts: Vec<(f64, f64)> = self
            .latency
            .iter()
            .zip(before.latency.iter().chain(std::iter::repeat(&(0.0, 0.0))))
            .map(|(a, b)| (a.0, a.1 - b.1))
            .collect();
        let total = counts.last()?.1;
        if total <= 0.0 {
            return None;
        }
        let target = q * total;
        let mut lower = (0.0, 0.0);
        for &(le, count) in &counts {
            if count >= target {
                if le.is_infinite() {
                    return Some(lower.0);
                }
                let share = (target - lower.1) / (count - lower.1).max(1.0);
                return Some(lower.0 + share * (le - lower.0));
            }
            lower = (le, count);
        }
        Some(lower.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_between_two_scrapes() {
        let text = |counts: [u32; 3]| {
            format!(
                "vigil_scoring_event_to_commit_seconds_bucket{{le=\"0.01\"}} {}\n\
                 vigil_scoring_event_to_commit_seconds_bucket{{le=\"0.1\"}} {}\n\
                 vigil_scoring_event_to_commit_seconds_bucket{{le=\"+Inf\"}} {}\n\
                 vigil_scoring_alerts_total{{decision=\"review\"}} 3\n\
                 vigil_scoring_alerts_total{{decision=\"decline\"}} 2\n",
                counts[0], counts[1], counts[2]
            )
        };
        let before = Scrape::parse(&text([100, 100, 100]));
        let after = Scrape::parse(&text([100, 200, 200]));
        assert_eq!(after.alerts, 5.0);
        // The 100 new observations all fall in (0.01, 0.1]: the median is halfway.
        let p50 = after.latency_quantile(&before, 0.5).unwrap();
        assert!((p50 - 0.055).abs() < 1e-9, "{p50}");
        assert!(after.latency_quantile(&after, 0.5).is_none(), "nothing new");
    }
}
