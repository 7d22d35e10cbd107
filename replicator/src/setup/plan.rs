//! A setup plan: the steps that bring a database to the wanted state, each a list of SQL
//! statements, and the report of running them.
//!
//! **Contract.** A plan is plain data computed from what setup read; it holds every statement that
//! would run, verbatim, so `--dry-run` prints exactly what a real run executes (its `Display` is a
//! SQL script, one `BEGIN … COMMIT` per atomic step). An empty plan means there is nothing to do.

use std::fmt;

use tokio_postgres::{Client, GenericClient};

use crate::error::{Error, Result};

use super::sql::terminated;

/// Every step, in order.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    steps: Vec<Step>,
}

/// One step: what it does, and its statements.
#[derive(Debug, Clone)]
pub struct Step {
    pub summary: String,
    /// Run in one transaction (everything except creating the slot, which PostgreSQL forbids in
    /// a transaction that has written).
    pub atomic: bool,
    pub statements: Vec<Statement>,
}

/// One SQL statement and what to report about it.
#[derive(Debug, Clone)]
pub struct Statement {
    pub sql: String,
    pub outcome: Outcome,
}

/// What a statement's result means for the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing to report (DDL, settings).
    Silent,
    /// Report the number of rows it affected under this label.
    Count(String),
    /// Report the text of its single result value under this label.
    Value(String),
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub steps: Vec<StepReport>,
}

/// What one step did: its summary and the counts and values it reported.
#[derive(Debug, Clone)]
pub struct StepReport {
    pub summary: String,
    pub results: Vec<(String, String)>,
}

impl Plan {
    pub(crate) fn new(steps: Vec<Step>) -> Self {
        Plan { steps }
    }

    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Every statement, in order.
    pub fn statements(&self) -> impl Iterator<Item = &Statement> {
        self.steps.iter().flat_map(|step| step.statements.iter())
    }
}

impl Step {
    pub(crate) fn atomic(summary: impl Into<String>, statements: Vec<Statement>) -> Self {
        Step {
            summary: summary.into(),
            atomic: true,
            statements,
        }
    }

    pub(crate) fn single(summary: impl Into<String>, statement: Statement) -> Self {
        Step {
            summary: summary.into(),
            atomic: false,
            statements: vec![statement],
        }
    }
}

impl Statement {
    pub(crate) fn silent(sql: impl Into<String>) -> Self {
        Statement {
            sql: sql.into(),
            outcome: Outcome::Silent,
        }
    }

    pub(crate) fn count(label: impl Into<String>, sql: impl Into<String>) -> Self {
        Statement {
            sql: sql.into(),
            outcome: Outcome::Count(label.into()),
        }
    }

    pub(crate) fn value(label: impl Into<String>, sql: impl Into<String>) -> Self {
        Statement {
            sql: sql.into(),
            outcome: Outcome::Value(label.into()),
        }
    }
}

impl Report {
    /// Whether the run changed nothing.
    pub fn is_noop(&self) -> bool {
        self.steps.is_empty()
    }

    /// The value a step reported under `label` (e.g. `"dashboards: registered"`), if any.
    pub fn result(&self, label: &str) -> Option<&str> {
        self.steps
            .iter()
            .flat_map(|step| step.results.iter())
            .find(|(name, _)| name == label)
            .map(|(_, value)| value.as_str())
    }
}

impl fmt::Display for Plan {
    /// The plan as a SQL script.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.steps.is_empty() {
            return writeln!(f, "-- nothing to do");
        }
        for (number, step) in self.steps.iter().enumerate() {
            writeln!(f, "-- step {}: {}", number + 1, step.summary)?;
            if step.atomic {
                writeln!(f, "BEGIN;")?;
            }
            for statement in &step.statements {
                writeln!(f, "{}", terminated(&statement.sql))?;
            }
            if step.atomic {
                writeln!(f, "COMMIT;")?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.steps.is_empty() {
            return writeln!(f, "nothing to do: the database is set up");
        }
        for step in &self.steps {
            writeln!(f, "done: {}", step.summary)?;
            for (label, value) in &step.results {
                writeln!(f, "      {label}: {value}")?;
            }
        }
        Ok(())
    }
}

/// Runs every step of `plan`.
pub(crate) async fn apply(client: &mut Client, plan: &Plan) -> Result<Report> {
    let mut report = Report::default();
    for step in &plan.steps {
        tracing::info!(step = %step.summary, "setup");
        let context = |statement: &Statement| {
            let first_line = statement
                .sql
                .trim_start()
                .lines()
                .next()
                .unwrap_or_default();
            format!("{}: {first_line}", step.summary)
        };
        let mut results = Vec::new();
        if step.atomic {
            let tx = client
                .transaction()
                .await
                .map_err(Error::pg("begin a transaction"))?;
            for statement in &step.statements {
                execute(&tx, statement, &mut results)
                    .await
                    .map_err(Error::pg(context(statement)))?;
            }
            tx.commit()
                .await
                .map_err(Error::pg(format!("{}: commit", step.summary)))?;
        } else {
            for statement in &step.statements {
                execute(client, statement, &mut results)
                    .await
                    .map_err(Error::pg(context(statement)))?;
            }
        }
        report.steps.push(StepReport {
            summary: step.summary.clone(),
            results,
        });
    }
    Ok(report)
}

async fn execute(
    client: &impl GenericClient,
    statement: &Statement,
    results: &mut Vec<(String, String)>,
) -> Result<(), tokio_postgres::Error> {
    match &statement.outcome {
        Outcome::Silent => client.batch_execute(&statement.sql).await,
        Outcome::Count(label) => {
            let rows = client.execute(&statement.sql, &[]).await?;
            results.push((label.clone(), rows.to_string()));
            Ok(())
        }
        Outcome::Value(label) => {
            let row = client.query_one(&statement.sql, &[]).await?;
            let value: Option<String> = row.try_get(0)?;
            results.push((label.clone(), value.unwrap_or_default()));
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_prints_as_a_sql_script() {
        let plan = Plan::new(vec![
            Step::atomic(
                "set the local region to us",
                vec![Statement::silent(
                    "INSERT INTO replicator.local_region (region) VALUES ('us')",
                )],
            ),
            Step::single(
                "create slot s",
                Statement::value(
                    "slot s",
                    "SELECT lsn::text FROM pg_create_logical_replication_slot('s', 'pgoutput');",
                ),
            ),
        ]);
        assert_eq!(
            plan.to_string(),
            "-- step 1: set the local region to us\nBEGIN;\n\
             INSERT INTO replicator.local_region (region) VALUES ('us');\nCOMMIT;\n\n\
             -- step 2: create slot s\n\
             SELECT lsn::text FROM pg_create_logical_replication_slot('s', 'pgoutput');\n\n"
        );
        assert_eq!(Plan::default().to_string(), "-- nothing to do\n");
        assert_eq!(plan.statements().count(), 2);
    }

    #[test]
    fn a_report_names_what_changed() {
        let report = Report {
            steps: vec![StepReport {
                summary: "backfill dashboards".into(),
                results: vec![("dashboards: registered".into(), "3".into())],
            }],
        };
        assert_eq!(report.result("dashboards: registered"), Some("3"));
        assert!(!report.is_noop());
        assert!(Report::default().to_string().contains("nothing to do"));
    }
}
