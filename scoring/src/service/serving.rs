//! The models the service scores with, from the registry: the champion (which decides, the
//! online model correcting it) and the shadows (scored beside it, recorded, never acted on).
//! Polled every `models_refresh_secs`; a change is swapped in between batches, so that no batch
//! is scored by a mix of models. Per model: score distribution, would-be alerts and drift.

use std::sync::Arc;

use prometheus::{Histogram, IntCounter};
use sqlx::PgPool;
use vigil_models::Artifact;
use vigil_registry::{self as registry, Status};

use super::MODEL_VERSION;
use super::metrics::ScoringMetrics;

/// One served model with its metric handles (looked up once, not per event).
#[derive(Debug)]
pub struct Served {
    pub artifact: Arc<Artifact>,
    score: Histogram,
    scored: IntCounter,
    alerts: IntCounter,
    /// Live scores per bin of the training score profile, for the stability index.
    drift_counts: Vec<u64>,
}

impl Served {
    fn new(artifact: Arc<Artifact>, role: Status, metrics: &ScoringMetrics) -> Self {
        let labels = [artifact.version.as_str(), role.as_str()];
        Self {
            score: metrics.model_score.with_label_values(&labels),
            scored: metrics.model_scored.with_label_values(&labels),
            alerts: metrics.model_alerts.with_label_values(&labels),
            drift_counts: vec![0; artifact.reference.bins()],
            artifact,
        }
    }

    /// Records one score: `logit` is the model's own log-odds (what its training profile
    /// describes), `score` and `alert` what it decided or would have.
    pub fn record(&mut self, logit: f64, score: f32, alert: bool) {
        self.score.observe(f64::from(score));
        self.scored.inc();
        if alert {
            self.alerts.inc();
        }
        self.drift_counts[self.artifact.reference.bin(logit)] += 1;
    }
}

/// The champion and shadows in force.
#[derive(Debug, Default)]
pub struct Serving {
    pub champion: Option<Served>,
    pub shadows: Vec<Served>,
    /// Registry models this engine cannot serve: not fetched again until the registry's
    /// choice changes.
    refused: Vec<(String, Status)>,
}

impl Serving {
    /// The model version decisions record: the champion's, or the online model's alone.
    pub fn version(&self) -> &str {
        self.champion
            .as_ref()
            .map_or(MODEL_VERSION, |c| c.artifact.version.as_str())
    }

    pub fn champion_artifact(&self) -> Option<Arc<Artifact>> {
        self.champion.as_ref().map(|c| c.artifact.clone())
    }

    /// (version, status) of each model the registry chose, served or refused, sorted: what
    /// the registry's choice is compared with.
    fn chosen(&self) -> Vec<(String, Status)> {
        let champion = self.champion.iter().map(|c| (c, Status::Champion));
        let shadows = self.shadows.iter().map(|s| (s, Status::Shadow));
        let mut chosen: Vec<(String, Status)> = champion
            .chain(shadows)
            .map(|(m, status)| (m.artifact.version.clone(), status))
            .chain(self.refused.iter().cloned())
            .collect();
        chosen.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        chosen
    }

    /// Publishes each model's population stability index against its training scores.
    pub fn publish_drift(&self, metrics: &ScoringMetrics) {
        for served in self.champion.iter().chain(&self.shadows) {
            if let Some(psi) = served.artifact.reference.psi(&served.drift_counts) {
                metrics
                    .model_psi
                    .with_label_values(&[served.artifact.version.as_str()])
                    .set(psi);
            }
        }
    }

    /// The registry's champion and shadows, if they differ from the ones in force; a model
    /// this engine cannot read is left out (and logged, and counted).
    pub async fn reload(
        &self,
        pool: &PgPool,
        metrics: &ScoringMetrics,
    ) -> Result<Option<Self>, registry::RegistryError> {
        let mut wanted = registry::serving(pool).await?;
        wanted.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        if wanted == self.chosen() {
            return Ok(None);
        }
        let mut next = Self::default();
        for (version, status) in wanted {
            let known = self
                .champion
                .iter()
                .chain(&self.shadows)
                .find(|m| m.artifact.version == version)
                .map(|m| m.artifact.clone());
            let artifact = match known {
                Some(a) => a,
                None => match registry::artifact(pool, &version).await {
                    Ok(a) => Arc::new(a),
                    Err(e) => {
                        metrics.models_refused.inc();
                        tracing::error!(model = %version, error = %e, "model not served");
                        next.refused.push((version, status));
                        continue;
                    }
                },
            };
            let served = Served::new(artifact, status, metrics);
            if status == Status::Champion {
                next.champion = Some(served);
            } else {
                next.shadows.push(served);
            }
        }
        tracing::info!(
            champion = next.version(),
            shadows = ?next.shadows.iter().map(|s| s.artifact.version.as_str()).collect::<Vec<_>>(),
            "models in force"
        );
        Ok(Some(next))
    }
}
