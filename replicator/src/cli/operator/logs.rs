//! `replicator conflicts` and `replicator quarantine`: the two logs an operator reads and acts on.

use clap::{Args, Subcommand, ValueEnum};
use replicator::operator::conflicts::{self, ConflictDetail, Filter, Since};
use replicator::operator::resolution::{self, Keep};
use replicator::operator::{self, quarantine};
use replicator::{Error, RegionId};
use uuid::Uuid;

use super::{emit, DatabaseArg, Output};

pub(crate) const CONFLICTS_EXAMPLES: &str = "\
Examples:
  replicator conflicts list --since 1h --unresolved
  replicator conflicts show 42
  replicator conflicts resolve 42 --keep eu

Every region logs each conflict it meets under its own id; the winner is the same everywhere.";

/// `replicator conflicts ...`.
#[derive(Debug, Args)]
pub(crate) struct ConflictsArgs {
    #[command(subcommand)]
    pub(crate) command: ConflictsCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ConflictsCommand {
    /// List logged conflicts, newest first.
    #[command(after_help = LIST_EXAMPLES)]
    List(ListArgs),
    /// Show one conflict: both versions side by side, and the diff of the two values.
    #[command(after_help = SHOW_EXAMPLES)]
    Show(ShowArgs),
    /// Settle a conflict: write the chosen side's value as a new version every region applies.
    #[command(after_help = RESOLVE_EXAMPLES)]
    Resolve(ResolveArgs),
}

const LIST_EXAMPLES: &str = "\
Examples:
  # Unresolved conflicts of the last hour:
  replicator conflicts list --since 1h --unresolved

  # Everything about one dashboard since a point in time, for a script:
  replicator conflicts list --entity 0d0d0d0d-0000-4000-8000-00000000db01 \\
      --since 2024-05-01T12:00:00Z --output json

  # Delete/update conflicts on charts:
  replicator conflicts list --kind delete_update --table slices

Exit status: 0 when the list was printed (even if empty), 75 when the database could not be
reached, 78 on a bad argument or a database setup never ran on, 70 on an internal error.";

/// A conflict's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Kind {
    /// Two concurrent writes of one field.
    Field,
    /// A delete concurrent with an update.
    #[value(name = "delete_update")]
    DeleteUpdate,
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    #[command(flatten)]
    pub(crate) database: DatabaseArg,

    /// Only conflicts detected since: a duration back from now (`90s`, `30min`, `1h`, `2d`) or
    /// an RFC 3339 time (`2024-05-01T12:00:00Z`).
    #[arg(long)]
    pub(crate) since: Option<String>,

    /// Only conflicts of this kind.
    #[arg(long, value_enum)]
    pub(crate) kind: Option<Kind>,

    /// Only conflicts on this entity (its uuid).
    #[arg(long)]
    pub(crate) entity: Option<Uuid>,

    /// Only conflicts on this table (e.g. `dashboards`, `slices`).
    #[arg(long)]
    pub(crate) table: Option<String>,

    /// Only conflicts no operator has resolved.
    #[arg(long)]
    pub(crate) unresolved: bool,

    /// At most this many (the newest).
    #[arg(long, default_value_t = 100)]
    pub(crate) limit: i64,

    /// How to print the report.
    #[arg(long, value_enum, default_value = "text")]
    pub(crate) output: Output,
}

const SHOW_EXAMPLES: &str = "\
Examples:
  replicator conflicts show 42
  replicator conflicts show 42 --output json | jq .diff

JSON text values (position_json, json_metadata, params, ...) are pretty-printed with sorted keys
before the line diff, so only the keys that differ show. Exit status: 0 when shown, 78 when
there is no such conflict in this region, 75 when the database could not be reached, 70 on an
internal error.";

#[derive(Debug, Args)]
pub(crate) struct ShowArgs {
    #[command(flatten)]
    pub(crate) database: DatabaseArg,

    /// The conflict's id in this region (from `conflicts list`).
    pub(crate) id: i64,

    /// How to print the report.
    #[arg(long, value_enum, default_value = "text")]
    pub(crate) output: Output,
}

const RESOLVE_EXAMPLES: &str = "\
Examples:
  # Keep the value written in eu:
  replicator conflicts resolve 42 --keep eu

  # Keep the side that lost the merge (it becomes the value everywhere):
  replicator conflicts resolve 42 --keep loser

The chosen value is written with an ordinary UPDATE of that column, versioned by the capture
triggers like an edit in Superset: a new dot with an hlc above both sides, which the reader
publishes and every region applies. The conflict is marked resolved in this region. It refuses
delete/update conflicts (recreate or delete the object in Superset instead), entities whose row
is gone, and fields edited again since the conflict (unless --force). Exit status: 0 when
resolved, 78 when it cannot be resolved that way or there is no such conflict, 75 when the
database could not be reached or a lock was busy, 70 on an internal error.";

#[derive(Debug, Args)]
pub(crate) struct ResolveArgs {
    #[command(flatten)]
    pub(crate) database: DatabaseArg,

    /// The conflict's id in this region (from `conflicts list`).
    pub(crate) id: i64,

    /// Which value to keep: a region id (the side written there), `winner` or `loser`.
    #[arg(long, value_parser = keep)]
    pub(crate) keep: Keep,

    /// Resolve even when the field was edited again after the conflict (that edit is lost).
    #[arg(long)]
    pub(crate) force: bool,

    /// How to print the report.
    #[arg(long, value_enum, default_value = "text")]
    pub(crate) output: Output,
}

fn keep(text: &str) -> Result<Keep, String> {
    match Keep::parse(text) {
        Keep::Region(region) => RegionId::new(&region)
            .map(|_| Keep::Region(region))
            .map_err(|_| format!("{text:?} is not `winner`, `loser` or a region id")),
        other => Ok(other),
    }
}

pub(crate) async fn run_conflicts(args: ConflictsArgs) -> Result<(), Error> {
    match args.command {
        ConflictsCommand::List(args) => {
            let (client, _) = operator::connect(&args.database.url()?).await?;
            let filter = Filter {
                since: args.since.as_deref().map(Since::parse),
                kind: args.kind.map(|k| match k {
                    Kind::Field => "field".to_owned(),
                    Kind::DeleteUpdate => "delete_update".to_owned(),
                }),
                entity: args.entity,
                table: args.table,
                unresolved: args.unresolved,
                limit: args.limit,
            };
            emit(&conflicts::list(&client, &filter).await?, args.output);
        }
        ConflictsCommand::Show(args) => {
            let (client, _) = operator::connect(&args.database.url()?).await?;
            let conflict = conflicts::get_one(&client, args.id).await?;
            emit(&ConflictDetail::new(conflict), args.output);
        }
        ConflictsCommand::Resolve(args) => {
            let (mut client, _) = operator::connect(&args.database.url()?).await?;
            let done = resolution::resolve(&mut client, args.id, &args.keep, args.force).await?;
            emit(&done, args.output);
        }
    }
    Ok(())
}

pub(crate) const QUARANTINE_EXAMPLES: &str = "\
Examples:
  replicator quarantine list
  replicator quarantine show 7

What the applier could not decode or apply is kept with the reason and the raw records; apply
went on past it.";

/// `replicator quarantine ...`.
#[derive(Debug, Args)]
pub(crate) struct QuarantineArgs {
    #[command(subcommand)]
    pub(crate) command: QuarantineCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum QuarantineCommand {
    /// List quarantined records, newest first.
    #[command(after_help = QUARANTINE_LIST_EXAMPLES)]
    List(QuarantineListArgs),
    /// Show one quarantined run: reason, detail, offsets and its records decoded (hex when
    /// they do not decode).
    #[command(after_help = QUARANTINE_SHOW_EXAMPLES)]
    Show(QuarantineShowArgs),
}

const QUARANTINE_LIST_EXAMPLES: &str = "\
Examples:
  replicator quarantine list
  replicator quarantine list --source us --output json

Exit status: 0 when the list was printed (even if empty), 75 when the database could not be
reached, 78 when setup never ran on it, 70 on an internal error.";

#[derive(Debug, Args)]
pub(crate) struct QuarantineListArgs {
    #[command(flatten)]
    pub(crate) database: DatabaseArg,

    /// Only records from this source region.
    #[arg(long, value_parser = RegionId::new)]
    pub(crate) source: Option<RegionId>,

    /// At most this many (the newest).
    #[arg(long, default_value_t = 100)]
    pub(crate) limit: i64,

    /// How to print the report.
    #[arg(long, value_enum, default_value = "text")]
    pub(crate) output: Output,
}

const QUARANTINE_SHOW_EXAMPLES: &str = "\
Examples:
  replicator quarantine show 7
  replicator quarantine show 7 --output json | jq '.records[].decoded.body'

Text output shows at most 512 bytes of hex per undecodable record; JSON has all of them. Exit
status: 0 when shown, 78 when there is no such record in this region, 75 when the database could
not be reached, 70 on an internal error.";

#[derive(Debug, Args)]
pub(crate) struct QuarantineShowArgs {
    #[command(flatten)]
    pub(crate) database: DatabaseArg,

    /// The quarantined run's id (from `quarantine list`).
    pub(crate) id: i64,

    /// How to print the report.
    #[arg(long, value_enum, default_value = "text")]
    pub(crate) output: Output,
}

pub(crate) async fn run_quarantine(args: QuarantineArgs) -> Result<(), Error> {
    match args.command {
        QuarantineCommand::List(args) => {
            let (client, _) = operator::connect(&args.database.url()?).await?;
            let source = args.source.map(|s| s.to_string());
            let list = quarantine::list(&client, source.as_deref(), args.limit).await?;
            emit(&list, args.output);
        }
        QuarantineCommand::Show(args) => {
            let (client, _) = operator::connect(&args.database.url()?).await?;
            emit(&quarantine::show(&client, args.id).await?, args.output);
        }
    }
    Ok(())
}
