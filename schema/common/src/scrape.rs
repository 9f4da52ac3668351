//! Reading the services' metrics, from a registry in this process or from the Prometheus text
//! another process serves: the figures the live line of `vigil demo`, `vigil bench pipeline`
//! and the console's system page show.

use prometheus::Registry;
use prometheus::proto::{MetricFamily, MetricType};

/// What is read from one scrape.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    /// The event-to-commit histogram: (upper bound in seconds, cumulative count) per bucket.
    pub latency: Vec<(f64, f64)>,
    /// The intake's time from a waiting request's arrival to its answer, the same way.
    pub answered: Vec<(f64, f64)>,
    pub batches: f64,
    pub batch_seconds: f64,
    pub decisions: f64,
    pub alerts: f64,
    /// Summed over partitions.
    pub lag: f64,
    pub dead_letters: f64,
    /// Each served model's population stability index, by model.
    pub psi: Vec<(String, f64)>,
}

/// One sample as the text format names it: a histogram's as `_bucket` (with its bound), `_sum`
/// and `_count`.
struct Sample {
    name: String,
    le: Option<f64>,
    /// The `model` label, where there is one.
    model: Option<String>,
    value: f64,
}

impl Scrape {
    /// From a registry in this process, read directly.
    pub fn gather(registry: &Registry) -> Self {
        Self::from_samples(registry.gather().iter().flat_map(samples))
    }

    /// From the Prometheus text a service in another process serves on `/metrics`.
    pub fn parse(text: &str) -> Self {
        Self::from_samples(text.lines().filter_map(parse_line))
    }

    fn from_samples(samples: impl Iterator<Item = Sample>) -> Self {
        let mut scrape = Self::default();
        for sample in samples {
            let summed = match sample.name.as_str() {
                "vigil_scoring_event_to_commit_seconds_bucket" => {
                    scrape
                        .latency
                        .extend(sample.le.map(|le| (le, sample.value)));
                    continue;
                }
                "vigil_ingest_decision_wait_seconds_bucket" => {
                    scrape
                        .answered
                        .extend(sample.le.map(|le| (le, sample.value)));
                    continue;
                }
                "vigil_scoring_batch_seconds_count" => &mut scrape.batches,
                "vigil_scoring_batch_seconds_sum" => &mut scrape.batch_seconds,
                "vigil_scoring_decisions_total" => &mut scrape.decisions,
                "vigil_scoring_alerts_total" => &mut scrape.alerts,
                "vigil_scoring_consumer_lag" => &mut scrape.lag,
                "vigil_scoring_dead_letters_total" => &mut scrape.dead_letters,
                "vigil_model_psi" => {
                    let model = sample.model.unwrap_or_default();
                    scrape.psi.push((model, sample.value));
                    continue;
                }
                _ => continue,
            };
            *summed += sample.value;
        }
        scrape
    }

    /// The `q` quantile (0..1) of the latencies observed between `before` and `self`, in
    /// seconds, linearly interpolated within a bucket; `None` when nothing was observed.
    pub fn latency_quantile(&self, before: &Scrape, q: f64) -> Option<f64> {
        quantile(&self.latency, &before.latency, q)
    }

    /// The same of the time to a waiting request's answer.
    pub fn answered_quantile(&self, before: &Scrape, q: f64) -> Option<f64> {
        quantile(&self.answered, &before.answered, q)
    }
}

/// The `q` quantile of the observations between two readings of one histogram's buckets.
fn quantile(now: &[(f64, f64)], before: &[(f64, f64)], q: f64) -> Option<f64> {
    let counts: Vec<(f64, f64)> = now
        .iter()
        .zip(before.iter().chain(std::iter::repeat(&(0.0, 0.0))))
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

/// A family's samples, as the text format shows them.
fn samples(family: &MetricFamily) -> Vec<Sample> {
    let name = family.name();
    let mut out = vec![];
    for metric in family.get_metric() {
        let model = metric
            .get_label()
            .iter()
            .find(|label| label.name() == "model")
            .map(|label| label.value().to_owned());
        let sample = |suffix: &str, le: Option<f64>, value: f64| Sample {
            name: format!("{name}{suffix}"),
            le,
            model: model.clone(),
            value,
        };
        match family.get_field_type() {
            MetricType::COUNTER => out.push(sample("", None, metric.get_counter().get_value())),
            MetricType::GAUGE => out.push(sample("", None, metric.get_gauge().get_value())),
            MetricType::HISTOGRAM => {
                let histogram = metric.get_histogram();
                for bucket in histogram.get_bucket() {
                    let (le, count) = (bucket.upper_bound(), bucket.cumulative_count());
                    out.push(sample("_bucket", Some(le), count as f64));
                }
                let count = histogram.get_sample_count() as f64;
                out.push(sample("_bucket", Some(f64::INFINITY), count));
                out.push(sample("_sum", None, histogram.get_sample_sum()));
                out.push(sample("_count", None, count));
            }
            _ => {}
        }
    }
    out
}

/// `name{labels} value`, with the `le` label read.
fn parse_line(line: &str) -> Option<Sample> {
    if line.starts_with('#') {
        return None;
    }
    let (series, value) = line.rsplit_once(' ')?;
    let (name, labels) = series.split_once('{').unwrap_or((series, ""));
    // A label's name starts the labels or follows a comma (`le` is not the end of `role`).
    let label = |key: &str| {
        let start = format!("{key}=\"");
        labels
            .match_indices(&start)
            .find(|(at, _)| *at == 0 || labels[..*at].ends_with(','))
            .and_then(|(at, _)| labels[at + start.len()..].split_once('"'))
            .map(|(value, _)| value)
    };
    let le = label("le").map(|le| match le {
        "+Inf" => Some(f64::INFINITY),
        le => le.parse().ok(),
    });
    Some(Sample {
        name: name.to_owned(),
        le: le.flatten(),
        model: label("model").map(str::to_owned),
        value: value.trim().parse().ok()?,
    })
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
                 vigil_scoring_alerts_total{{decision=\"decline\"}} 2\n\
                 vigil_model_psi{{model=\"online-v1\"}} 0.12\n\
                 vigil_scoring_dead_letters_total{{role=\"x\"}} 4\n",
                counts[0], counts[1], counts[2]
            )
        };
        let before = Scrape::parse(&text([100, 100, 100]));
        let after = Scrape::parse(&text([100, 200, 200]));
        assert_eq!(after.alerts, 5.0);
        assert_eq!(after.psi, [("online-v1".to_owned(), 0.12)]);
        assert_eq!(after.dead_letters, 4.0);
        // The 100 new observations all fall in (0.01, 0.1]: the median is halfway.
        let p50 = after.latency_quantile(&before, 0.5).unwrap();
        assert!((p50 - 0.055).abs() < 1e-9, "{p50}");
        assert!(after.latency_quantile(&after, 0.5).is_none(), "nothing new");
    }

    #[test]
    fn a_registry_read_directly_gives_what_its_text_gives() {
        let registry = Registry::new();
        let latency = prometheus::Histogram::with_opts(
            prometheus::HistogramOpts::new("vigil_scoring_event_to_commit_seconds", "latency")
                .buckets(vec![0.01, 0.1]),
        )
        .unwrap();
        let alerts = prometheus::IntCounterVec::new(
            prometheus::Opts::new("vigil_scoring_alerts_total", "alerts"),
            &["decision"],
        )
        .unwrap();
        let lag = prometheus::IntGauge::new("vigil_scoring_consumer_lag", "lag").unwrap();
        registry.register(Box::new(latency.clone())).unwrap();
        registry.register(Box::new(alerts.clone())).unwrap();
        registry.register(Box::new(lag.clone())).unwrap();
        for seconds in [0.005, 0.05, 0.05, 2.0] {
            latency.observe(seconds);
        }
        alerts.with_label_values(&["review"]).inc_by(3);
        alerts.with_label_values(&["decline"]).inc_by(2);
        lag.set(7);

        let direct = Scrape::gather(&registry);
        let text = Scrape::parse(&crate::metrics::render(&registry));
        assert_eq!(
            direct.latency,
            [(0.01, 1.0), (0.1, 3.0), (f64::INFINITY, 4.0)]
        );
        assert_eq!(direct.latency, text.latency);
        assert_eq!((direct.alerts, direct.lag), (5.0, 7.0));
        assert_eq!((text.alerts, text.lag), (5.0, 7.0));
    }
}
