//! Local columns from configuration: what a new row needs here that no region may send
//! (DESIGN §4). A database connection's `sqlalchemy_uri` names a host this region reaches and is
//! `NOT NULL`; its password and other encrypted columns are encrypted with this region's
//! `SECRET_KEY` and are never replicated.
//!
//! **Contract.** [`LocalColumns::for_insert`] gives the extra columns of a new row of a table
//! that needs them, looked up by the entity's uuid, then by its natural name (`database_name`
//! for `dbs`); `Err(status)` when the configuration has none, and the applier parks the
//! transaction with that status until an operator adds them and restarts the sidecar.
//! Tables that need nothing get nothing.

use std::collections::BTreeMap;

use uuid::Uuid;

use super::local_form::LocalValue;

/// Local columns of one row: column → value.
pub type RowColumns = BTreeMap<String, String>;

/// Configured local columns: table → (uuid or natural name) → columns.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct LocalColumns {
    tables: BTreeMap<String, BTreeMap<String, RowColumns>>,
}

impl std::fmt::Debug for LocalColumns {
    /// Names only: values may hold credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys: BTreeMap<&String, Vec<&String>> = self
            .tables
            .iter()
            .map(|(table, rows)| (table, rows.keys().collect()))
            .collect();
        f.debug_struct("LocalColumns").field("rows", &keys).finish()
    }
}

/// Tables whose new rows need local columns: the table, its natural-name column, and the
/// columns required.
const NEEDED: &[(&str, &str, &[&str])] = &[("dbs", "database_name", &["sqlalchemy_uri"])];

impl LocalColumns {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the local columns of the row of `table` named `key` (its uuid or natural name).
    pub fn insert(&mut self, table: &str, key: &str, columns: RowColumns) {
        self.tables
            .entry(table.to_owned())
            .or_default()
            .insert(key.to_owned(), columns);
    }

    /// Reads `{"<table>": {"<uuid or name>": {"<column>": "<value>"}}}` from a JSON file.
    pub fn from_json_file(path: &std::path::Path) -> crate::Result<Self> {
        let bad = |problem: String| crate::Error::Config {
            problem: format!("local columns file {}: {problem}", path.display()),
        };
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        let tables: BTreeMap<String, BTreeMap<String, RowColumns>> =
            serde_json::from_str(&text).map_err(|e| bad(format!("not the expected JSON ({e})")))?;
        Ok(LocalColumns { tables })
    }

    /// The local columns a new row of `table` takes here (module docs).
    pub fn for_insert(
        &self,
        table: &str,
        entity: Uuid,
        columns: &[(String, LocalValue)],
    ) -> Result<Vec<(String, LocalValue)>, String> {
        let Some((_, name_column, required)) = NEEDED.iter().find(|(t, _, _)| *t == table) else {
            return Ok(Vec::new());
        };
        let name = columns.iter().find_map(|(c, v)| match v {
            LocalValue::Text(text) if c == name_column => Some(text.as_str()),
            _ => None,
        });
        let rows = self.tables.get(table);
        let configured = rows
            .and_then(|rows| rows.get(&entity.to_string()))
            .or_else(|| name.and_then(|name| rows.and_then(|rows| rows.get(name))));
        let Some(configured) = configured else {
            return Err(format!(
                "needs local configuration: {table} {entity} ({name_column} {:?}) arrived without {}; \
                 add them under [local_columns.{table}.\"{entity}\"] and restart the sidecar",
                name.unwrap_or("?"),
                required.join(", "),
            ));
        };
        let missing: Vec<&str> = required
            .iter()
            .copied()
            .filter(|c| !configured.contains_key(*c))
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "needs local configuration: {table} {entity} lacks {} in its local columns",
                missing.join(", ")
            ));
        }
        Ok(configured
            .iter()
            .map(|(c, v)| (c.clone(), LocalValue::Text(v.clone())))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn found_by_uuid_then_by_name_and_parked_otherwise() {
        let uuid = Uuid::new_v4();
        let named = vec![("database_name".to_owned(), LocalValue::Text("sales".into()))];
        let mut config = LocalColumns::new();
        assert!(config.for_insert("dbs", uuid, &named).is_err());
        assert_eq!(config.for_insert("slices", uuid, &named), Ok(vec![]));
        config.insert(
            "dbs",
            "sales",
            RowColumns::from([("sqlalchemy_uri".into(), "postgresql://secret@h/db".into())]),
        );
        let extra = config.for_insert("dbs", uuid, &named).unwrap();
        assert_eq!(extra[0].0, "sqlalchemy_uri");
        assert!(!format!("{config:?}").contains("secret"));
        config.insert("dbs", &uuid.to_string(), RowColumns::new());
        let err = config.for_insert("dbs", uuid, &named).unwrap_err();
        assert!(err.contains("lacks sqlalchemy_uri"), "{err}");
    }
}
