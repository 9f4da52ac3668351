//! `vigil models`: the model registry from the command line (list, show, promote, retire,
//! export, import), against the configured Postgres. Status changes are audited like those
//! made through `/v1/models`, with the operating-system user as the actor.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Subcommand;
use vigil_models::Artifact;
use vigil_registry::{self as registry, Status};

use crate::cli::ConfigArg;
use vigil_app::db::{block_on, set_status};
use vigil_app::output;

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// List the registered models, newest first
    List(ConfigArg),
    /// Show a model: status, training period, validation metrics and calibration
    Show {
        version: String,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Make a model the champion (the scoring service switches within seconds; the previous
    /// champion is retired), or with --shadow score it beside the champion without acting on it
    Promote {
        version: String,
        #[arg(long)]
        shadow: bool,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Stop serving a model
    Retire {
        version: String,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Write a model's artifact (JSON) to a file, by default models/VERSION.json
    Export {
        version: String,
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Register an artifact file as a candidate (refused if its feature schema is not this
    /// engine's)
    Import {
        file: PathBuf,
        #[command(flatten)]
        config: ConfigArg,
    },
}

pub fn run(command: &ModelsCommand) -> Result<()> {
    let config = match command {
        ModelsCommand::List(config)
        | ModelsCommand::Show { config, .. }
        | ModelsCommand::Promote { config, .. }
        | ModelsCommand::Retire { config, .. }
        | ModelsCommand::Export { config, .. }
        | ModelsCommand::Import { config, .. } => config.load()?,
    };
    block_on(&config, async |pool| match command {
        ModelsCommand::List(_) => {
            let mut lines = vec![format!(
                "{:<28} {:<10} {:<21} {:<21} {:>8} {:>8}",
                "version", "status", "trained from", "trained to", "AUC", "AP"
            )];
            for m in registry::list(&pool).await? {
                let metric = |name: &str| {
                    m.validation
                        .as_ref()
                        .and_then(|v| v.0["evaluation"][name].as_f64())
                        .map_or("-".into(), |v| format!("{v:.4}"))
                };
                lines.push(format!(
                    "{:<28} {:<10} {:<21} {:<21} {:>8} {:>8}",
                    m.version,
                    m.status.as_str(),
                    m.trained_from.format("%Y-%m-%dT%H:%M:%SZ"),
                    m.trained_to.format("%Y-%m-%dT%H:%M:%SZ"),
                    metric("auc_roc"),
                    metric("average_precision")
                ));
            }
            output::print(lines.join("\n") + "\n")
        }
        ModelsCommand::Show { version, .. } => {
            let info = registry::info(&pool, version).await?;
            let artifact = registry::artifact(&pool, version).await?;
            let shown = serde_json::json!({
                "model": info,
                "training": artifact.training,
                "validation": artifact.validation,
                "config": artifact.config,
                "trees": artifact.model.trees().len(),
            });
            output::print(serde_json::to_string_pretty(&shown)? + "\n")
        }
        ModelsCommand::Promote {
            version, shadow, ..
        } => {
            let to = if *shadow {
                Status::Shadow
            } else {
                Status::Champion
            };
            let model = set_status(&pool, &config, version, to).await?;
            output::print(format!(
                "{} is now {}\n",
                model.version,
                model.status.as_str()
            ))
        }
        ModelsCommand::Retire { version, .. } => {
            let model = set_status(&pool, &config, version, Status::Retired).await?;
            output::print(format!(
                "{} is now {}\n",
                model.version,
                model.status.as_str()
            ))
        }
        ModelsCommand::Export { version, out, .. } => {
            let bytes = registry::artifact_bytes(&pool, version).await?;
            let path = out
                .clone()
                .unwrap_or_else(|| PathBuf::from("models").join(format!("{version}.json")));
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
            output::print(format!("wrote {}\n", path.display()))
        }
        ModelsCommand::Import { file, .. } => {
            let bytes =
                std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
            let artifact = Artifact::from_json(&bytes)
                .with_context(|| format!("{} cannot be served", file.display()))?;
            let model = registry::register(&pool, &artifact).await?;
            output::print(format!("registered {} as a candidate\n", model.version))
        }
    })
}
