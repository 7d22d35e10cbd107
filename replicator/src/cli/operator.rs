//! The operator's subcommands: `status`, `lag`, `verify`, `teardown` here, `conflicts` and
//! `quarantine` in [`logs`]. Each parses its arguments, calls `replicator::operator` and prints
//! the report on stdout, as text or (`--output json`) as one JSON document; logs and prompts go
//! to stderr.

pub(crate) mod logs;

use std::io::{BufRead, Write};
use std::time::Duration;

use clap::{Args, ValueEnum};
use replicator::operator::agreement::{self, Settle};
use replicator::operator::{self, status, teardown, Report};
use replicator::setup::{PublicationName, SlotName};
use replicator::{DatabaseUrl, Error, RegionId};

use super::{duration, Secret};

/// How a report is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Output {
    /// For a person: aligned columns.
    Text,
    /// For a script: one JSON document.
    Json,
}

/// Prints `report`; a closed stdout (a pipe into `head`) is not a failure.
pub(crate) fn emit(report: &impl Report, output: Output) {
    let text = match output {
        Output::Text => report.to_string(),
        Output::Json => format!("{:#}\n", report.to_json()),
    };
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}

/// The database of this region, as every operator command takes it.
#[derive(Debug, Args)]
pub(crate) struct DatabaseArg {
    /// This region's metadata database: a libpq `key=value` string or a `postgresql://` url
    /// (a password in it, or in PGPASSWORD, is never printed).
    #[arg(long, env = "REPLICATOR_DATABASE_URL", hide_env_values = true, value_parser = Secret::parse)]
    pub(crate) database_url: Secret,
}

impl DatabaseArg {
    pub(crate) fn url(&self) -> Result<DatabaseUrl, Error> {
        DatabaseUrl::parse(&self.database_url.0)
    }
}

pub(crate) const STATUS_EXAMPLES: &str = "\
Examples:
  # How far this region applied every other region, and what its slot holds back:
  REPLICATOR_DATABASE_URL='postgresql://replicator@db.eu.internal/superset' PGPASSWORD=... \\
      replicator status

  # Name the regions this one should apply, so a silent one shows as \"never applied\":
  replicator status --sources us,ap --slot replicator

  # For a script or a monitoring check:
  replicator status --output json | jq '.sources[] | {source, lag_seconds, parked}'

Lag is now minus the newest applied heartbeat or commit time of that source (its clock, so skew
between regions shows in it). Exit status: 0 when the report was printed, 75 when the database
could not be reached (try again), 78 when an operator must act (setup never ran here), 70 on an
internal error.";

#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    #[command(flatten)]
    pub(crate) database: DatabaseArg,

    /// This region's replication slot (the one `setup` created).
    #[arg(long, env = "REPLICATOR_SLOT", default_value = "replicator", value_parser = SlotName::new)]
    pub(crate) slot: SlotName,

    /// The regions this one is expected to apply, comma-separated; one that never delivered
    /// anything shows as "never applied".
    #[arg(long, env = "REPLICATOR_SOURCES", value_delimiter = ',', value_parser = RegionId::new)]
    pub(crate) sources: Vec<RegionId>,

    /// How to print the report.
    #[arg(long, value_enum, default_value = "text")]
    pub(crate) output: Output,
}

pub(crate) const LAG_EXAMPLES: &str = "\
Examples:
  replicator lag
  replicator lag --sources us,ap --output json    # {\"region\": \"eu\", \"lag_seconds\": {\"ap\": 0.4, \"us\": null}}

A source that never delivered anything has no lag (null, \"never applied\"). Exit status: 0 when
the report was printed, 75 when the database could not be reached, 78 when an operator must act
(setup never ran here), 70 on an internal error.";

#[derive(Debug, Args)]
pub(crate) struct LagArgs {
    #[command(flatten)]
    pub(crate) database: DatabaseArg,

    /// The regions this one is expected to apply, comma-separated.
    #[arg(long, env = "REPLICATOR_SOURCES", value_delimiter = ',', value_parser = RegionId::new)]
    pub(crate) sources: Vec<RegionId>,

    /// How to print the report.
    #[arg(long, value_enum, default_value = "text")]
    pub(crate) output: Output,
}

fn names(sources: &[RegionId]) -> Vec<String> {
    sources.iter().map(ToString::to_string).collect()
}

pub(crate) async fn run_status(args: StatusArgs) -> Result<(), Error> {
    let database = args.database.url()?;
    let (client, region) = operator::connect(&database).await?;
    let report = status::status(
        &client,
        region,
        database.redacted(),
        args.slot.as_str(),
        &names(&args.sources),
    )
    .await?;
    emit(&report, args.output);
    Ok(())
}

pub(crate) async fn run_lag(args: LagArgs) -> Result<(), Error> {
    let database = args.database.url()?;
    let (client, region) = operator::connect(&database).await?;
    let sources = status::sources(&client, &names(&args.sources)).await?;
    emit(&status::Lag { region, sources }, args.output);
    Ok(())
}

pub(crate) const VERIFY_EXAMPLES: &str = "\
Examples:
  # Compare region us with eu and ap (passwords from PGPASSWORD or the urls, never printed):
  REPLICATOR_DATABASE_URL='postgresql://replicator@db.us.internal/superset' PGPASSWORD=... \\
      replicator verify --peer eu=postgresql://replicator@db.eu.internal/superset \\
                        --peer ap=postgresql://replicator@db.ap.internal/superset

  # In a nightly job: wait up to 2 minutes for replication in flight, and keep the report:
  replicator verify --peer eu=... --settle 2min --output json > verify.json || alert

Each region's canonical state (every entity with its values, dots, hlcs and clock) is read and
compared; while they differ, the comparison is repeated until no state changed for --stable-for
(nothing is in flight) or --settle passed. Printed: per table and region the number of entities
and the md5 of their canonical JSON, then every divergent (table, uuid) with what differs.
Exit status: 0 when every region holds the same state, 1 when they diverge, 75 when a database
could not be reached (try again), 78 when an operator must act (a bad --peer, a region not set
up), 70 on an internal error.";

#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    #[command(flatten)]
    pub(crate) database: DatabaseArg,

    /// Another region's database, `<region>=<url>`; repeatable. The region must be the one
    /// stored in that database.
    #[arg(long = "peer", value_name = "REGION=URL", value_parser = Secret::parse, required = true)]
    pub(crate) peers: Vec<Secret>,

    /// The longest time to wait for the regions to agree or stop changing.
    #[arg(long, default_value = "30s", value_parser = duration)]
    pub(crate) settle: Duration,

    /// How long states must stay unchanged before a difference is reported as divergence.
    #[arg(long, default_value = "5s", value_parser = duration)]
    pub(crate) stable_for: Duration,

    /// How to print the report.
    #[arg(long, value_enum, default_value = "text")]
    pub(crate) output: Output,
}

/// `Ok(true)` when every region agrees.
pub(crate) async fn run_verify(args: VerifyArgs) -> Result<bool, Error> {
    let local = args.database.url()?;
    let peers = args
        .peers
        .iter()
        .map(|peer| agreement::parse_peer(&peer.0))
        .collect::<Result<Vec<_>, Error>>()?;
    let settle = Settle {
        settle: args.settle,
        stable_for: args.stable_for.min(args.settle),
        ..Settle::default()
    };
    let report = agreement::verify(&local, &peers, settle).await?;
    emit(&report, args.output);
    Ok(report.equal())
}

pub(crate) const TEARDOWN_EXAMPLES: &str = "\
Examples:
  # See exactly what would be dropped, changing nothing:
  REPLICATOR_DATABASE_URL='postgresql://replicator@db.eu.internal/superset' PGPASSWORD=... \\
      replicator teardown --dry-run

  # Remove the replicator from region eu (asks you to type `eu`):
  replicator teardown --slot replicator --publication replicator

  # Unattended:
  replicator teardown --yes

Drops the capture triggers (replicator_version, replicator_uuid, replicator_register), the
publication, the applier's replication origin (replicator_apply_<database oid>) and schema
replicator (state, conflict log, quarantine, functions) in one transaction, then the slot.
REPLICA IDENTITY FULL on embedded_dashboards stays (harmless); Superset's rows are untouched.
It refuses while a sidecar is connected. This cannot be undone: the region would rejoin only
as a new one, from a snapshot. Exit status: 0 when done (or with --dry-run), 75 when the
database could not be reached or a lock was busy (try again), 78 when an operator must act (not
confirmed, a sidecar still connected), 70 on an internal error.";

#[derive(Debug, Args)]
pub(crate) struct TeardownArgs {
    #[command(flatten)]
    pub(crate) database: DatabaseArg,

    /// The slot `setup` created.
    #[arg(long, env = "REPLICATOR_SLOT", default_value = "replicator", value_parser = SlotName::new)]
    pub(crate) slot: SlotName,

    /// The publication `setup` created.
    #[arg(long, env = "REPLICATOR_PUBLICATION", default_value = "replicator", value_parser = PublicationName::new)]
    pub(crate) publication: PublicationName,

    /// Do not ask: tear down at once.
    #[arg(long)]
    pub(crate) yes: bool,

    /// Print the SQL teardown would run, and change nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,

    /// How to print the report.
    #[arg(long, value_enum, default_value = "text")]
    pub(crate) output: Output,
}

pub(crate) async fn run_teardown(args: TeardownArgs) -> Result<(), Error> {
    let database = args.database.url()?;
    let mut client = database.connect().await?;
    let plan = teardown::plan(&client, database.redacted(), &args.slot, &args.publication).await?;
    if args.dry_run {
        emit(&plan, args.output);
        return Ok(());
    }
    if !args.yes && !plan.is_empty() {
        confirm(&plan)?;
    }
    let report = teardown::run(&mut client, &plan).await?;
    emit(&report, args.output);
    Ok(())
}

/// Asks on stderr for the region id (or database name) and reads it from stdin.
fn confirm(plan: &teardown::TeardownPlan) -> Result<(), Error> {
    let expected = plan.confirmation().to_owned();
    let mut stderr = std::io::stderr().lock();
    let mut prompt = format!(
        "This drops from {} (region {}):\n",
        plan.database,
        plan.region.as_deref().unwrap_or("not set")
    );
    for (what, _) in &plan.statements {
        prompt.push_str(&format!("  {what}\n"));
    }
    if let Some(slot) = &plan.slot {
        prompt.push_str(&format!("  replication slot {slot}\n"));
    }
    prompt.push_str(&format!(
        "It cannot be undone. Type {expected:?} to confirm: "
    ));
    let _ = stderr.write_all(prompt.as_bytes());
    let _ = stderr.flush();
    let mut answer = String::new();
    let read = std::io::stdin().lock().read_line(&mut answer);
    if matches!(read, Ok(n) if n > 0) && answer.trim() == expected {
        Ok(())
    } else {
        let _ = stderr.write_all(b"\n");
        Err(Error::NotConfirmed { expected })
    }
}
