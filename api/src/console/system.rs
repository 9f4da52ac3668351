//! The system page: consumer lag, throughput, decision latency, alert and dead-letter rates and
//! each model's drift (PSI), from this process's own metrics (every service's, under
//! `vigil serve`), sampled every [`SAMPLE_EVERY`] for the last hour and drawn as small charts
//! the page's script refreshes.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use maud::{Markup, html};
use vigil_common::scrape::Scrape;

use super::page::{self, ConsoleError};
use super::session::Signed;
use crate::Api;
use crate::auth::INVESTIGATE;

pub const SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// An hour of samples.
const KEPT: usize = 360;

/// A scrape and when it was taken.
type Sample = (DateTime<Utc>, Scrape);

/// The samples of the last hour, oldest first.
#[derive(Debug, Clone, Default)]
pub struct History(Arc<Mutex<VecDeque<Sample>>>);

impl History {
    /// Samples `registry` every [`SAMPLE_EVERY`] on a task of its own.
    pub fn start(registry: prometheus::Registry) -> Self {
        let history = Self::default();
        let sampled = history.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(SAMPLE_EVERY);
            loop {
                every.tick().await;
                sampled.push(Utc::now(), Scrape::gather(&registry));
            }
        });
        history
    }

    fn push(&self, at: DateTime<Utc>, scrape: Scrape) {
        let mut samples = self.0.lock().expect("no panic while locked");
        if samples.len() == KEPT {
            samples.pop_front();
        }
        samples.push_back((at, scrape));
    }

    /// Each series as (time, value) points: gauges as read, counters as rates between samples.
    pub fn series(&self) -> Vec<Series> {
        let samples = self.0.lock().expect("no panic while locked");
        let pairs = || samples.iter().zip(samples.iter().skip(1));
        let rate = |name: &'static str, unit: &'static str, of: fn(&Scrape) -> f64| Series {
            name: name.into(),
            unit,
            points: pairs()
                .map(|((t0, a), (t1, b))| {
                    let seconds = (*t1 - *t0).as_seconds_f64().max(1e-3);
                    (*t1, (of(b) - of(a)).max(0.0) / seconds)
                })
                .collect(),
        };
        let mut series = vec![
            Series {
                name: "Consumer lag".into(),
                unit: "messages",
                points: samples.iter().map(|(t, s)| (*t, s.lag)).collect(),
            },
            rate("Decisions", "a second", |s| s.decisions),
            Series {
                name: "Event to commit, p99".into(),
                unit: "ms",
                points: pairs()
                    .filter_map(|((_, a), (t, b))| Some((*t, b.latency_quantile(a, 0.99)? * 1e3)))
                    .collect(),
            },
            rate("Alerts", "a second", |s| s.alerts),
            rate("Dead letters", "a second", |s| s.dead_letters),
        ];
        let models: std::collections::BTreeSet<&str> = samples
            .iter()
            .flat_map(|(_, s)| s.psi.iter().map(|(model, _)| model.as_str()))
            .collect();
        for model in models {
            series.push(Series {
                name: format!("PSI of model {model}"),
                unit: "above 0.25: drift",
                points: samples
                    .iter()
                    .filter_map(|(t, s)| {
                        let psi = s.psi.iter().find(|(m, _)| m == model)?;
                        Some((*t, psi.1))
                    })
                    .collect(),
            });
        }
        series
    }
}

/// One chart's data.
#[derive(Debug)]
pub struct Series {
    pub name: String,
    pub unit: &'static str,
    pub points: Vec<(DateTime<Utc>, f64)>,
}

/// A small line chart of `series`, with its latest value and its peak.
pub fn chart(series: &Series) -> Markup {
    const WIDTH: f64 = 300.0;
    const HEIGHT: f64 = 70.0;
    let peak = series.points.iter().map(|p| p.1).fold(0.0_f64, f64::max);
    let latest = series.points.last().map(|p| p.1);
    let path = match (series.points.first(), series.points.last()) {
        (Some(first), Some(last)) => {
            let span = (last.0 - first.0).as_seconds_f64().max(1.0);
            let scale = if peak > 0.0 { HEIGHT / peak } else { 0.0 };
            let mut path = String::new();
            for (i, (t, v)) in series.points.iter().enumerate() {
                let x = WIDTH * (*t - first.0).as_seconds_f64() / span;
                let y = HEIGHT - v * scale;
                let step = if i == 0 { "M" } else { " L" };
                let _ = write!(path, "{step}{x:.1},{y:.1}");
            }
            path
        }
        _ => String::new(),
    };
    html! {
        figure.chart {
            figcaption {
                strong { (series.name) } " "
                span.latest { (latest.map_or_else(|| "no data yet".to_owned(), figure)) } " "
                small { (series.unit) "; peak " (figure(peak)) }
            }
            svg width=(WIDTH) height=(HEIGHT + 2.0) role="img" aria-label=(series.name) {
                line x1="0" y1=(HEIGHT) x2=(WIDTH) y2=(HEIGHT) class="axis" {}
                path d=(path) class="line" {}
            }
        }
    }
}

fn figure(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
    }
}

fn charts(api: &Api) -> Markup {
    html! {
        @for series in api.history.series() { (chart(&series)) }
    }
}

pub async fn page(State(api): State<Api>, signed: Signed) -> Result<Response, ConsoleError> {
    signed.require(INVESTIGATE)?;
    let body = html! {
        h1 { "System" }
        p.empty { "This process's own metrics (every service's under " code { "vigil serve" } "), sampled every "
            (SAMPLE_EVERY.as_secs()) " s for the last hour; the charts refresh by themselves." }
        div #charts data-refresh="/console/system/charts" { (charts(&api)) }
    };
    Ok(page::shell("System", Some(&signed), &body).into_response())
}

/// The charts alone, for the page's script to swap in.
pub async fn fragment(State(api): State<Api>, signed: Signed) -> Result<Markup, ConsoleError> {
    signed.require(INVESTIGATE)?;
    Ok(charts(&api))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrape(decisions: f64, lag: f64, psi: f64) -> Scrape {
        Scrape {
            decisions,
            lag,
            latency: vec![
                (0.01, decisions),
                (0.1, decisions),
                (f64::INFINITY, decisions),
            ],
            psi: vec![("m1".into(), psi)],
            ..Scrape::default()
        }
    }

    #[test]
    fn counters_become_rates_and_gauges_stay_as_read() {
        let history = History::default();
        let t0 = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        history.push(t0, scrape(100.0, 5.0, 0.1));
        history.push(t0 + chrono::Duration::seconds(10), scrape(300.0, 7.0, 0.3));
        let series = history.series();
        let named = |name: &str| series.iter().find(|s| s.name == name).unwrap();
        assert_eq!(named("Consumer lag").points.len(), 2);
        assert_eq!(named("Decisions").points[0].1, 20.0);
        assert_eq!(named("PSI of model m1").points[1].1, 0.3);
        let p99 = named("Event to commit, p99").points[0].1;
        assert!(p99 > 0.0 && p99 <= 10.0, "{p99}");
        assert!(chart(named("Decisions")).into_string().contains("M0.0,"));
    }

    #[test]
    fn an_hour_is_kept() {
        let history = History::default();
        let t0 = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        for i in 0..KEPT + 5 {
            history.push(t0 + chrono::Duration::seconds(i as i64), Scrape::default());
        }
        assert_eq!(history.0.lock().unwrap().len(), KEPT);
    }
}
