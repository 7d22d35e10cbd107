//! `replicator config check` and `replicator config docs`.

use std::io::Write;

use clap::{Args, Subcommand};
use replicator::Error;

use super::run::RunArgs;

pub(crate) const CONFIG_EXAMPLES: &str = "\
Examples:
  # Validate a configuration and print the effective one (secrets redacted), as `run` would use it:
  replicator config check --config /etc/replicator/replicator.toml

  # The same with the environment and flags `run` would get:
  REPLICATOR_SOURCES=eu replicator config check --config replicator.toml --metrics-listen off

  # Regenerate docs/configuration.md:
  replicator config docs > docs/configuration.md

Exit status: 0 when the configuration is valid, 78 with the setting and its fix when not.";

#[derive(Debug, Args)]
pub(crate) struct ConfigArgs {
    #[command(subcommand)]
    command: ConfigCommand,
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Check the configuration of `replicator run` (file, environment and flags) and print the
    /// effective one, each value with its origin, every secret redacted. Secret files are read
    /// to check them; nothing is connected to.
    Check(Box<RunArgs>),
    /// Print the reference of every setting (docs/configuration.md).
    Docs,
}

pub(crate) async fn run_config(args: ConfigArgs) -> Result<(), Error> {
    let text = match args.command {
        ConfigCommand::Check(args) => {
            let config = args.load()?;
            tracing::info!(region = %config.region(), "the configuration is valid");
            config.effective()
        }
        ConfigCommand::Docs => replicator::config::reference::markdown(),
    };
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    Ok(())
}
