//! `replicator setup`.

use std::io::Write;

use clap::Args;
use replicator::setup::{self, PublicationName, SetupOptions, SlotName};
use replicator::{DatabaseUrl, Error, RegionId};

use super::Secret;

pub(crate) const SETUP_EXAMPLES: &str = "\
Examples:
  # Set up region us (the password comes from the environment, never from the command line):
  REPLICATOR_DATABASE_URL='postgresql://replicator@db.us.internal/superset' PGPASSWORD=... \\
      replicator setup --region us

  # Print every statement setup would run, changing nothing:
  replicator setup --region us --dry-run \\
      --database-url 'host=db.us.internal dbname=superset user=replicator'

  # Custom slot and publication names:
  replicator setup --region eu --slot replicator_eu --publication replicator_eu

Running setup again is safe: it reports `nothing to do` when the database is already set up.";

#[derive(Debug, Args)]
pub(crate) struct SetupArgs {
    /// The metadata database: a libpq `key=value` string or a `postgresql://` url.
    #[arg(long, env = "REPLICATOR_DATABASE_URL", hide_env_values = true, value_parser = Secret::parse)]
    pub(crate) database_url: Secret,

    /// This region's id (1-16 of a-z, 0-9, `_`, `-`); set once, it can never change.
    #[arg(long, env = "REPLICATOR_REGION", value_parser = RegionId::new)]
    pub(crate) region: RegionId,

    /// The logical replication slot to create (pgoutput) if it does not exist.
    #[arg(long, env = "REPLICATOR_SLOT", default_value = "replicator", value_parser = SlotName::new)]
    pub(crate) slot: SlotName,

    /// The publication to create, or to make match the table policy.
    #[arg(long, env = "REPLICATOR_PUBLICATION", default_value = "replicator", value_parser = PublicationName::new)]
    pub(crate) publication: PublicationName,

    /// Print every statement setup would run, as a SQL script, and change nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
}

pub(crate) async fn run_setup(args: SetupArgs) -> Result<(), Error> {
    let database = DatabaseUrl::parse(&args.database_url.0)?;
    let options = SetupOptions::new(args.region, args.slot, args.publication);
    tracing::info!(
        database = %database,
        region = %options.region,
        slot = %options.slot,
        publication = %options.publication,
        dry_run = args.dry_run,
        "replicator setup"
    );
    let mut client = database.connect().await?;
    let text = if args.dry_run {
        let plan = setup::plan(&mut client, &options).await?;
        format!("-- replicator setup --dry-run against {database}\n{plan}")
    } else {
        setup::run(&mut client, &options).await?.to_string()
    };
    let mut stdout = std::io::stdout().lock();
    // A closed stdout (a pipe into `head`) is not a setup failure.
    let _ = stdout.write_all(text.as_bytes());
    Ok(())
}
