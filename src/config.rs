//! Vigil's configuration, loaded in layers: built-in defaults, then a TOML file (`--config`, or
//! `vigil.toml` in the working directory when it exists), then `VIGIL__*` environment variables
//! (`VIGIL__ENGINE__REVIEW_THRESHOLD=0.6` sets `engine.review_threshold`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use vigil_scoring::EngineConfig;

const DEFAULT_FILE: &str = "vigil.toml";
const ENV_PREFIX: &str = "VIGIL__";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// How the scoring engine scores, decides and learns.
    pub engine: EngineConfig,
}

impl Config {
    /// Loads the layers; `file` must exist when given.
    pub fn load(file: Option<&Path>) -> Result<Self> {
        Self::load_with(file, std::env::vars())
    }

    fn load_with(file: Option<&Path>, env: impl Iterator<Item = (String, String)>) -> Result<Self> {
        let path = match file {
            Some(p) => Some(p.to_owned()),
            None => Some(PathBuf::from(DEFAULT_FILE)).filter(|p| p.exists()),
        };
        let mut table = toml::Table::new();
        if let Some(path) = &path {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            // Parsed as the typed config first, so that an error names the file's line.
            toml::from_str::<Config>(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            table =
                toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        }
        let mut overridden = vec![];
        for (name, value) in env.filter(|(k, _)| k.starts_with(ENV_PREFIX)) {
            set(&mut table, &name[ENV_PREFIX.len()..].to_lowercase(), &value)
                .with_context(|| format!("environment variable {name}"))?;
            overridden.push(name);
        }
        let config = Config::deserialize(table).map_err(|e| {
            anyhow::anyhow!(
                "{} (set by {})",
                e.message().trim_end(),
                if overridden.is_empty() {
                    "the defaults".into()
                } else {
                    overridden.join(", ")
                }
            )
        })?;
        config.engine.validate()?;
        Ok(config)
    }
}

/// Sets `a__b__c` in `table` to `value`, read as a TOML value where it is one (a number, a
/// boolean) and as a string otherwise.
fn set(table: &mut toml::Table, path: &str, value: &str) -> Result<()> {
    let keys: Vec<&str> = path.split("__").collect();
    let (last, parents) = keys.split_last().context("empty name")?;
    let mut at = table;
    for key in parents {
        let entry = at
            .entry((*key).to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let toml::Value::Table(next) = entry else {
            bail!("`{key}` is not a table")
        };
        at = next;
    }
    let parsed = toml::from_str::<toml::Table>(&format!("v = {value}"))
        .ok()
        .and_then(|mut t| t.remove("v"));
    at.insert(
        (*last).to_owned(),
        parsed.unwrap_or_else(|| toml::Value::String(value.to_owned())),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    fn env(vars: &[(&str, &str)]) -> impl Iterator<Item = (String, String)> {
        vars.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<Vec<_>>()
            .into_iter()
    }

    #[test]
    fn layers_apply_in_order() {
        let f = file("[engine]\nreview_threshold = 0.4\nmaturity = \"20d\"\n");
        let config = Config::load_with(
            Some(f.path()),
            env(&[("VIGIL__ENGINE__REVIEW_THRESHOLD", "0.6"), ("OTHER", "x")]),
        )
        .unwrap();
        assert_eq!(config.engine.review_threshold, 0.6, "the environment wins");
        assert_eq!(
            config.engine.maturity.as_seconds(),
            20 * 86_400,
            "the file sets what the environment does not"
        );
        assert_eq!(
            config.engine.decline_threshold,
            EngineConfig::default().decline_threshold
        );
        let nested = Config::load_with(
            Some(f.path()),
            env(&[("VIGIL__ENGINE__MODEL__POSITIVE_WEIGHT", "4")]),
        )
        .unwrap();
        assert_eq!(nested.engine.model.positive_weight, 4.0);
    }

    #[test]
    fn errors_name_the_line_or_the_variable() {
        let f = file("[engine]\nreview_threshold = 0.4\nreveiw = 1\n");
        let err = Config::load_with(Some(f.path()), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 3") && err.contains("unknown field `reveiw`"),
            "{err}"
        );
        let err = Config::load_with(None, env(&[("VIGIL__ENGINE__MATURITY", "soon")])).unwrap_err();
        assert!(
            format!("{err:#}").contains("VIGIL__ENGINE__MATURITY"),
            "{err:#}"
        );
        let err = Config::load_with(None, env(&[("VIGIL__ENGINE__REVIEW_THRESHOLD", "0.99")]))
            .unwrap_err();
        assert!(err.to_string().contains("review_threshold"), "{err}");
    }
}
