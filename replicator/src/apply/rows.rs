//! Rows: the SQL the applier runs against Superset's tables.
//!
//! **Contract.** [`Rows`] inserts, updates, deletes and reads one row of a replicated table, by
//! its local id (or, for a table without one, `embedded_dashboards`, by its uuid column), on the
//! client it is given: the applier's open transaction. Values are bound as text and cast to the
//! column's type in SQL (`$1::text::<type>`), so one code path writes every type exactly as
//! [`LocalValue::pg_text`] spells it; statements are prepared once per shape and reused.
//!
//! **Why reads are in the text format.** The conflict log and the merge's equal-value test
//! compare a local value with an incoming one. [`Rows::read_text`] reads through the simple query
//! protocol, so every column comes back printed by its type's output function — the same text
//! [`LocalValue::pg_text`] produces for the incoming value (`t`/`f` booleans, UTC timestamps on
//! the applier's UTC session).

use std::collections::{BTreeMap, HashMap};

use tokio_postgres::types::Type;
use tokio_postgres::{GenericClient, SimpleQueryMessage, Statement};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::policy::TablePolicy;
use crate::setup::sql::{ident, public};

use super::local_form::{ColumnTypes, LocalValue};

/// Where a row is: its local id, or its uuid for a table without one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowKey {
    Id(i64),
    Uuid(Uuid),
}

/// The SQL type of every column of the replicated tables, as `format_type` prints it: the ones
/// [`ColumnTypes::load`] read with the rest of each column's description.
#[derive(Debug, Clone, Default)]
pub struct SqlTypes(ColumnTypes);

impl SqlTypes {
    pub fn new(types: ColumnTypes) -> Self {
        SqlTypes(types)
    }

    fn get(&self, table: &str, column: &str) -> Result<&str> {
        self.0
            .sql_type(table, column)
            .ok_or_else(|| Error::LocalValue {
                table: table.to_owned(),
                field: column.to_owned(),
                reason: "this database has no such column".into(),
            })
    }
}

/// Row statements for the replicated tables, prepared once per shape.
#[derive(Debug)]
pub struct Rows {
    types: SqlTypes,
    statements: HashMap<String, Statement>,
}

impl Rows {
    pub fn new(types: SqlTypes) -> Self {
        Rows {
            types,
            statements: HashMap::new(),
        }
    }

    async fn statement(
        &mut self,
        client: &impl GenericClient,
        sql: String,
        params: usize,
    ) -> Result<Statement> {
        if let Some(statement) = self.statements.get(&sql) {
            return Ok(statement.clone());
        }
        let types = vec![Type::TEXT; params];
        let statement = client
            .prepare_typed(&sql, &types)
            .await
            .map_err(Error::pg(format!("prepare `{sql}`")))?;
        self.statements.insert(sql, statement.clone());
        Ok(statement)
    }

    /// `$n::text::<type of column>`.
    fn cast(&self, table: &str, column: &str, n: usize) -> Result<String> {
        Ok(format!("${n}::text::{}", self.types.get(table, column)?))
    }

    /// Inserts a row with `columns` and returns its local id (`None` for a table without one).
    pub async fn insert(
        &mut self,
        client: &impl GenericClient,
        table: &str,
        policy: &TablePolicy,
        columns: &[(String, LocalValue)],
    ) -> Result<Option<i64>> {
        let names: Vec<String> = columns.iter().map(|(c, _)| ident(c)).collect();
        let casts = columns
            .iter()
            .enumerate()
            .map(|(i, (c, _))| self.cast(table, c, i + 1))
            .collect::<Result<Vec<_>>>()?;
        let returning = match policy.local_id {
            Some(id) => format!(" RETURNING {}::bigint", ident(id)),
            None => String::new(),
        };
        let sql = format!(
            "INSERT INTO {} ({}) VALUES ({}){returning}",
            public(table),
            names.join(", "),
            casts.join(", ")
        );
        let statement = self.statement(client, sql, columns.len()).await?;
        let values: Vec<Option<String>> = columns.iter().map(|(_, v)| v.pg_text()).collect();
        let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = values
            .iter()
            .map(|v| v as &(dyn tokio_postgres::types::ToSql + Sync))
            .collect();
        if policy.local_id.is_some() {
            let row = client
                .query_one(&statement, &params)
                .await
                .map_err(Error::pg(format!("insert into {table}")))?;
            Ok(Some(row.try_get(0).map_err(Error::pg("read the new id"))?))
        } else {
            client
                .execute(&statement, &params)
                .await
                .map_err(Error::pg(format!("insert into {table}")))?;
            Ok(None)
        }
    }

    /// Sets `columns` of one row; returns whether the row was there.
    pub async fn update(
        &mut self,
        client: &impl GenericClient,
        table: &str,
        key_column: &str,
        key: RowKey,
        columns: &[(String, LocalValue)],
    ) -> Result<bool> {
        if columns.is_empty() {
            return Ok(true);
        }
        let sets = columns
            .iter()
            .enumerate()
            .map(|(i, (c, _))| Ok(format!("{} = {}", ident(c), self.cast(table, c, i + 1)?)))
            .collect::<Result<Vec<_>>>()?;
        let n = columns.len() + 1;
        let sql = format!(
            "UPDATE {} SET {} WHERE {} = {}",
            public(table),
            sets.join(", "),
            ident(key_column),
            key_cast(key, n)
        );
        let statement = self.statement(client, sql, n).await?;
        let mut values: Vec<Option<String>> = columns.iter().map(|(_, v)| v.pg_text()).collect();
        values.push(Some(key_text(key)));
        let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = values
            .iter()
            .map(|v| v as &(dyn tokio_postgres::types::ToSql + Sync))
            .collect();
        let updated = client
            .execute(&statement, &params)
            .await
            .map_err(Error::pg(format!("update {table}")))?;
        Ok(updated > 0)
    }

    /// Deletes one row; returns whether it was there.
    pub async fn delete(
        &mut self,
        client: &impl GenericClient,
        table: &str,
        key_column: &str,
        key: RowKey,
    ) -> Result<bool> {
        let sql = format!(
            "DELETE FROM {} WHERE {} = {}",
            public(table),
            ident(key_column),
            key_cast(key, 1)
        );
        let statement = self.statement(client, sql, 1).await?;
        let deleted = client
            .execute(&statement, &[&key_text(key)])
            .await
            .map_err(Error::pg(format!("delete from {table}")))?;
        Ok(deleted > 0)
    }

    /// The text of `columns` of one row, as the columns' output functions print them (module
    /// docs); `None` when the row is not there.
    pub async fn read_text(
        &self,
        client: &impl GenericClient,
        table: &str,
        key_column: &str,
        key: RowKey,
        columns: &[&str],
    ) -> Result<Option<BTreeMap<String, Option<String>>>> {
        if columns.is_empty() {
            return Ok(Some(BTreeMap::new()));
        }
        for column in columns {
            self.types.get(table, column)?;
        }
        let names: Vec<String> = columns.iter().map(|c| ident(c)).collect();
        // Only integers and uuids are spliced into the text, never a peer's text.
        let sql = format!(
            "SELECT {} FROM {} WHERE {} = '{}'",
            names.join(", "),
            public(table),
            ident(key_column),
            key_text(key)
        );
        let messages = client
            .simple_query(&sql)
            .await
            .map_err(Error::pg(format!("read a row of {table}")))?;
        for message in messages {
            if let SimpleQueryMessage::Row(row) = message {
                let mut values = BTreeMap::new();
                for (i, column) in columns.iter().enumerate() {
                    let value = row
                        .try_get(i)
                        .map_err(Error::pg(format!("read {table}.{column}")))?;
                    values.insert((*column).to_owned(), value.map(str::to_owned));
                }
                return Ok(Some(values));
            }
        }
        Ok(None)
    }
}

fn key_cast(key: RowKey, n: usize) -> String {
    match key {
        RowKey::Id(_) => format!("${n}::text::bigint"),
        RowKey::Uuid(_) => format!("${n}::text::uuid"),
    }
}

fn key_text(key: RowKey) -> String {
    match key {
        RowKey::Id(id) => id.to_string(),
        RowKey::Uuid(uuid) => uuid.to_string(),
    }
}
