//! Engine snapshots as the service stores them.

use crate::{Engine, EngineConfig, Result, RuleSet};

pub fn take(engine: &Engine) -> Vec<u8> {
    engine.snapshot()
}

pub fn restore(state: &[u8], config: EngineConfig, rules: RuleSet) -> Result<Engine> {
    Engine::restore(config, rules, state)
}
