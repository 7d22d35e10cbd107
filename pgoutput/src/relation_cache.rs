//! The relation cache: from a change's table oid to named, typed columns.
//!
//! Changes carry values by position only; names, type oids and key flags come from the latest
//! `Relation` message for the oid, which pgoutput sends once per session (and once per streamed
//! transaction) before the first change, and again after the schema changes. [`RelationCache`]
//! keeps that latest message per oid and pairs a tuple with it. It is pure bookkeeping: it never
//! evicts on its own, and it refuses to guess — an unknown oid or a column-count disagreement is
//! an error, because resolving by position against a stale schema would misname values.
//!
//! Streams: a Relation message inside a stream block is as current as one outside (pgoutput
//! re-sends the schema in each streamed transaction that uses it), so feed the cache every
//! Relation message in arrival order and resolve changes as they arrive.

use std::collections::HashMap;

use crate::{ColumnKind, ColumnValue, Error, LogicalMessage, Oid, Relation, Result, TupleData};

/// The latest `Relation` message per table oid.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelationCache {
    relations: HashMap<Oid, Relation>,
}

/// A tuple paired with its relation's column descriptions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedTuple<'a> {
    /// The relation the tuple belongs to.
    pub relation: &'a Relation,
    /// One entry per column, in relation order.
    pub columns: Vec<ResolvedColumn<'a>>,
}

/// One column value with its name, type and key flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResolvedColumn<'a> {
    /// Column name.
    pub name: &'a str,
    /// Oid of the column's data type.
    pub type_oid: Oid,
    /// `atttypmod`, -1 when none.
    pub type_modifier: i32,
    /// Whether the column is part of the replica identity key.
    pub is_key: bool,
    /// The value.
    pub value: &'a ColumnValue,
}

impl ResolvedColumn<'_> {
    /// The kind of value (null, unchanged TOAST, text, binary).
    pub fn kind(&self) -> ColumnKind {
        self.value.kind()
    }
}

impl<'a> ResolvedTuple<'a> {
    /// The column called `name`.
    pub fn get(&self, name: &str) -> Option<&ResolvedColumn<'a>> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// The replica identity key columns.
    pub fn key_columns(&self) -> impl Iterator<Item = &ResolvedColumn<'a>> {
        self.columns.iter().filter(|c| c.is_key)
    }
}

impl RelationCache {
    /// An empty cache.
    pub fn new() -> Self {
        RelationCache::default()
    }

    /// Stores `relation`, replacing and returning any previous one for the same oid.
    pub fn insert(&mut self, relation: Relation) -> Option<Relation> {
        self.relations.insert(relation.id, relation)
    }

    /// Stores the message if it is a `Relation` message; returns whether it was.
    pub fn observe(&mut self, message: &LogicalMessage) -> bool {
        match message {
            LogicalMessage::Relation(r) => {
                self.insert(r.clone());
                true
            }
            _ => false,
        }
    }

    /// The latest Relation message for `oid`.
    pub fn get(&self, oid: Oid) -> Option<&Relation> {
        self.relations.get(&oid)
    }

    /// Forgets `oid`.
    pub fn remove(&mut self, oid: Oid) -> Option<Relation> {
        self.relations.remove(&oid)
    }

    /// Forgets everything (e.g. on reconnect: the server re-sends Relation messages).
    pub fn clear(&mut self) {
        self.relations.clear();
    }

    /// Number of cached relations.
    pub fn len(&self) -> usize {
        self.relations.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.relations.is_empty()
    }

    /// All cached relations, in no particular order.
    pub fn relations(&self) -> impl Iterator<Item = &Relation> {
        self.relations.values()
    }

    /// Pairs `tuple`, a row of table `oid`, with the table's columns.
    ///
    /// Fails with [`Error::UnknownRelation`] if no Relation message was seen for `oid`, and with
    /// [`Error::ColumnCountMismatch`] if the tuple's width differs from the column list.
    pub fn resolve<'a>(&'a self, oid: Oid, tuple: &'a TupleData) -> Result<ResolvedTuple<'a>> {
        let relation = self.get(oid).ok_or(Error::UnknownRelation { oid })?;
        if relation.columns.len() != tuple.columns.len() {
            return Err(Error::ColumnCountMismatch {
                oid,
                name: relation.qualified_name(),
                relation_columns: relation.columns.len(),
                tuple_columns: tuple.columns.len(),
            });
        }
        let columns = relation
            .columns
            .iter()
            .zip(&tuple.columns)
            .map(|(c, value)| ResolvedColumn {
                name: &c.name,
                type_oid: c.type_oid,
                type_modifier: c.type_modifier,
                is_key: c.is_key,
                value,
            })
            .collect();
        Ok(ResolvedTuple { relation, columns })
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::{RelationColumn, ReplicaIdentity};

    fn relation(oid: u32, names: &[&str]) -> Relation {
        Relation {
            xid: None,
            id: Oid(oid),
            namespace: "public".into(),
            name: "slices".into(),
            replica_identity: ReplicaIdentity::Default,
            columns: names
                .iter()
                .enumerate()
                .map(|(i, n)| RelationColumn {
                    is_key: i == 0,
                    name: (*n).into(),
                    type_oid: Oid(if i == 0 { 23 } else { 25 }),
                    type_modifier: -1,
                })
                .collect(),
        }
    }

    #[test]
    fn resolves_named_columns() {
        let mut cache = RelationCache::new();
        assert!(cache.observe(&LogicalMessage::Relation(relation(1, &["id", "name"]))));
        assert!(!cache.observe(&LogicalMessage::StreamStop));
        let tuple = TupleData::new(vec![
            ColumnValue::Text(Bytes::from_static(b"3")),
            ColumnValue::UnchangedToast,
        ]);
        let resolved = cache.resolve(Oid(1), &tuple).unwrap();
        assert_eq!(resolved.relation.name, "slices");
        let id = resolved.get("id").unwrap();
        assert!(id.is_key);
        assert_eq!(id.type_oid, Oid(23));
        assert_eq!(id.value.as_str(), Some("3"));
        assert_eq!(
            resolved.get("name").unwrap().kind(),
            ColumnKind::UnchangedToast
        );
        assert_eq!(resolved.key_columns().count(), 1);
        assert!(resolved.get("nope").is_none());
    }

    #[test]
    fn newer_relation_replaces_older() {
        let mut cache = RelationCache::new();
        cache.insert(relation(1, &["id"]));
        let old = cache.insert(relation(1, &["id", "name"])).unwrap();
        assert_eq!(old.columns.len(), 1);
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.get(Oid(1)).unwrap().columns.len(), 2);
    }

    #[test]
    fn refuses_unknown_relation_and_width_mismatch() {
        let mut cache = RelationCache::new();
        let tuple = TupleData::new(vec![ColumnValue::Null]);
        assert_eq!(
            cache.resolve(Oid(9), &tuple),
            Err(Error::UnknownRelation { oid: Oid(9) })
        );
        cache.insert(relation(9, &["id", "name"]));
        assert_eq!(
            cache.resolve(Oid(9), &tuple),
            Err(Error::ColumnCountMismatch {
                oid: Oid(9),
                name: "public.slices".into(),
                relation_columns: 2,
                tuple_columns: 1
            })
        );
        assert!(cache.remove(Oid(9)).is_some());
        assert!(cache.is_empty());
        cache.insert(relation(9, &[]));
        cache.clear();
        assert_eq!(cache.relations().count(), 0);
    }
}
