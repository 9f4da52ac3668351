//! Shadow scoring: the champion's and the shadows' scores recorded beside each decision, the
//! shadows deciding nothing.

use super::Loop;
use super::rows;
use crate::Engine;
use crate::engine::Decision;

impl Loop {
    /// Records the champion's score, and scores the shadows on the same features and rules:
    /// their scores go to `shadow_scores`, their decisions nowhere.
    pub(super) fn score_alongside(
        &mut self,
        engine: &Engine,
        decision: &Decision,
        d: &mut rows::Decisions,
    ) {
        let scoring = engine.champion().map(|c| c.version.as_str());
        if let Some(champion) = &mut self.serving.champion
            && scoring == Some(champion.artifact.version.as_str())
        {
            champion.record(
                decision.model.base_logit,
                decision.score,
                decision.action.is_alert(),
            );
        }
        for (model, shadow) in self.serving.shadows.iter_mut().enumerate() {
            let logit = shadow.artifact.model.logit(engine.features());
            let (score, action) =
                engine.decide(logit, decision.rule_log_odds, decision.rule_action);
            shadow.record(logit, score, action.is_alert());
            d.shadows.push(rows::ShadowScore {
                decision: d.score.len() as u32,
                model: model as u16,
                score,
                action,
            });
        }
    }
}
