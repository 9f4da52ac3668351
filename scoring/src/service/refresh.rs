//! What the service reloads from Postgres between batches: the allow and block lists, the
//! published rule set, the champion and shadow models from the registry, and the champion the
//! engine holds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Loop;
use super::events::Sink;
use super::lists::Lists;
use super::rule_sets;
use crate::Engine;

impl Loop {
    /// Makes sure the engine holds the champion the pooled shares switched to (another
    /// instance's registry may have offered it first), fetching it from the registry by
    /// version; false while it cannot be had (nothing is scored meanwhile).
    pub(super) fn hold_champion(&mut self, engine: &mut Engine) -> bool {
        let Some(version) = engine.champion_missing().map(str::to_owned) else {
            return true;
        };
        let fetch = vigil_registry::artifact(self.shared.store.pool(), &version);
        match self.shared.handle.block_on(fetch) {
            Ok(artifact) => {
                engine.provide_champion(Arc::new(artifact));
                engine.champion_missing().is_none()
            }
            Err(e) => {
                tracing::warn!(model = version, error = %e, "the shares' champion not loaded; scoring waits");
                false
            }
        }
    }

    /// Reloads the allow and block lists every `lists_refresh_secs`; while Postgres cannot be
    /// read, the lists last loaded stay in force.
    pub(super) fn refresh_lists(&mut self) {
        let interval = Duration::from_secs(self.config.lists_refresh_secs);
        if self.lists_loaded.is_some_and(|t| t.elapsed() < interval) {
            return;
        }
        self.lists_loaded = Some(Instant::now());
        match self
            .shared
            .handle
            .block_on(Lists::load(self.shared.store.pool()))
        {
            Ok(lists) => {
                if lists.len() != self.lists.len() {
                    tracing::info!(entries = lists.len(), "allow and block lists loaded");
                }
                self.metrics.list_entries.set(lists.len() as i64);
                self.lists = lists;
            }
            Err(e) => {
                self.metrics.sink_errors_of(Sink::Postgres).inc();
                tracing::warn!(error = %e, "lists not reloaded; the previous ones stay in force");
            }
        }
    }

    /// Looks for a newer published rule set every `rules_refresh_secs`, and decides with it
    /// from the next batch on; while Postgres cannot be read, or the newer version cannot be
    /// used, the rules in force stay.
    pub(super) fn refresh_rules(&mut self) {
        let interval = Duration::from_secs(self.config.rules_refresh_secs);
        if self.rules_loaded.is_some_and(|t| t.elapsed() < interval) {
            return;
        }
        self.rules_loaded = Some(Instant::now());
        let newer = rule_sets::newer_than(self.shared.store.pool(), self.rule_set);
        match self.shared.handle.block_on(newer) {
            Ok(None) => {}
            Ok(Some(published)) => {
                let mut instance = self.shared.instance.lock().expect("no panic while locked");
                instance.engine.set_rules(published.rules);
                self.rule_set = published.version;
                self.metrics
                    .rule_set_version
                    .set(i64::from(published.version));
                tracing::info!(version = published.version, "rule set in force");
            }
            Err(rule_sets::LoadError::Postgres(e)) => {
                self.metrics.sink_errors_of(Sink::Postgres).inc();
                tracing::warn!(error = %e, "rules not reloaded; those in force stay");
            }
            Err(rule_sets::LoadError::Invalid { version, error }) => {
                // Said once a version, not at every refresh.
                if self.rules_refused != Some(version) {
                    self.rules_refused = Some(version);
                    tracing::error!(version, error, "the rules in force stay");
                }
            }
        }
    }

    /// Asks the registry for the champion and shadows every `models_refresh_secs`: shadows
    /// are swapped in between batches, a champion offered to the shares (see
    /// [`Engine::offer_champion`]). While Postgres cannot be read, the models in force stay.
    pub(super) fn refresh_models(&mut self) {
        let interval = Duration::from_secs(self.config.models_refresh_secs);
        if self.models_loaded.is_some_and(|t| t.elapsed() < interval) {
            return;
        }
        self.models_loaded = Some(Instant::now());
        self.serving.publish_drift(&self.metrics);
        let reload = self.serving.reload(self.shared.store.pool(), &self.metrics);
        match self.shared.handle.block_on(reload) {
            Ok(Some(serving)) => {
                self.serving = serving;
                // Offered to every instance through the shares: all take it at one point.
                let mut instance = self.shared.instance.lock().expect("no panic while locked");
                instance
                    .engine
                    .offer_champion(self.serving.champion_artifact());
            }
            Ok(None) => {}
            Err(e) => {
                self.metrics.sink_errors_of(Sink::Postgres).inc();
                tracing::warn!(error = %e, "models not reloaded; those in force stay");
            }
        }
    }
}
