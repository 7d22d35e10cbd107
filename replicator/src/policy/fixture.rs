//! The policy checked against Superset 6.1's real schema dump (`tests/fixtures/`): every table is
//! accounted for, every named column exists, every reference is declared and lands on a table
//! whose rows other regions can name, and nothing encrypted leaves the region.

use std::collections::{BTreeMap, BTreeSet};

use super::{superset, EmbeddedFormat, Identity, Reference, TablePolicy, Treatment};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/fixtures/superset-6.1-metadata-schema.sql"
);

/// Encrypted columns listed in the facts file §1 (sqlalchemy_utils `EncryptedType`).
const ENCRYPTED: &[(&str, &str)] = &[
    ("dbs", "password"),
    ("dbs", "encrypted_extra"),
    ("dbs", "server_cert"),
    ("ssh_tunnels", "username"),
    ("ssh_tunnels", "password"),
    ("ssh_tunnels", "private_key"),
    ("ssh_tunnels", "private_key_password"),
    ("database_user_oauth2_tokens", "access_token"),
    ("database_user_oauth2_tokens", "refresh_token"),
];

#[derive(Debug, Default)]
struct Table {
    /// column -> (type, NOT NULL)
    columns: BTreeMap<String, (String, bool)>,
    primary_key: Option<Vec<String>>,
    unique: Vec<Vec<String>>,
    /// (column, target table)
    foreign_keys: Vec<(String, String)>,
}

fn list(text: &str) -> Vec<String> {
    text.split(',')
        .map(|c| c.trim().trim_matches('"').to_owned())
        .collect()
}

fn between<'a>(line: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let start = line.find(open)? + open.len();
    let end = line.get(start..)?.find(close)? + start;
    line.get(start..end)
}

fn parse_schema() -> BTreeMap<String, Table> {
    let text = std::fs::read_to_string(FIXTURE).expect("the schema fixture is readable");
    let mut tables: BTreeMap<String, Table> = BTreeMap::new();
    let mut creating: Option<String> = None;
    let mut altering: Option<String> = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("CREATE TABLE public.") {
            let name = rest.trim_end_matches(" (").to_owned();
            tables.entry(name.clone()).or_default();
            creating = Some(name);
            continue;
        }
        if let Some(name) = &creating {
            if line.starts_with(')') {
                creating = None;
                continue;
            }
            let column = line.trim().trim_end_matches(',');
            if column.starts_with("CONSTRAINT") {
                continue;
            }
            let (name_part, rest) = column.split_once(' ').expect("a column has a type");
            let table = tables.get_mut(name).expect("created above");
            table.columns.insert(
                name_part.trim_matches('"').to_owned(),
                (rest.to_owned(), rest.contains("NOT NULL")),
            );
            continue;
        }
        if let Some(rest) = line.strip_prefix("ALTER TABLE ONLY public.") {
            // `ALTER TABLE ONLY public.x` alone on its line; the constraint follows on the next.
            altering = (!rest.trim().contains(' ')).then(|| rest.trim().to_owned());
            continue;
        }
        if let Some(name) = altering.take() {
            let table = tables
                .get_mut(&name)
                .expect("constraints follow their table");
            if let Some(columns) = between(line, "PRIMARY KEY (", ")") {
                table.primary_key = Some(list(columns));
            } else if let Some(columns) = between(line, "UNIQUE (", ")") {
                table.unique.push(list(columns));
            } else if let Some(column) = between(line, "FOREIGN KEY (", ")") {
                let target = between(line, "REFERENCES public.", "(").expect("an FK has a target");
                table
                    .foreign_keys
                    .push((column.to_owned(), target.to_owned()));
            }
        }
    }
    tables
}

/// Every column a replicated table's policy names.
fn named_columns(policy: &TablePolicy) -> Vec<&'static str> {
    let mut columns = policy.unversioned_columns();
    match policy.identity {
        Identity::Uuid {
            system: Some(system),
            ..
        } => columns.extend([system.flag, system.key]),
        Identity::Uuid { system: None, .. } => {}
        Identity::Derived { parts } => columns.extend(parts),
        Identity::NaturalKey { columns: key } => columns.extend(key),
    }
    for reference in policy.references {
        columns.push(reference.column());
        if let Reference::Polymorphic { discriminator, .. } = reference {
            columns.push(discriminator);
        }
    }
    columns.extend(policy.embedded.iter().map(|embedded| embedded.column));
    columns
}

#[test]
fn every_table_of_the_schema_has_exactly_one_rule() {
    let schema = parse_schema();
    assert_eq!(schema.len(), 54, "facts §1: 54 tables in public");
    let rules = superset().rules();
    let ruled: BTreeSet<&str> = rules.iter().map(|rule| rule.table).collect();
    assert_eq!(ruled.len(), rules.len(), "a table has two rules");
    let in_schema: BTreeSet<&str> = schema.keys().map(String::as_str).collect();
    assert_eq!(ruled, in_schema);
    for rule in rules {
        if let Treatment::Excluded { reason } = rule.treatment {
            assert!(
                !reason.trim().is_empty(),
                "{} is excluded without a reason",
                rule.table
            );
        }
    }
    assert_eq!(superset().replicated().count(), 20);
    assert_eq!(
        superset().registry().map(|(t, _)| t).collect::<Vec<_>>(),
        ["ab_role", "ab_user"]
    );
}

#[test]
fn every_column_the_policy_names_exists() {
    let schema = parse_schema();
    for (table, policy) in superset().replicated() {
        for column in named_columns(policy) {
            assert!(
                schema[table].columns.contains_key(column),
                "{table}.{column} is not in the schema"
            );
        }
        if let Identity::Uuid { column, .. } = policy.identity {
            assert_eq!(
                schema[table].columns[column].0.split(' ').next(),
                Some("uuid"),
                "{table}.{column}"
            );
        }
    }
    for (table, policy) in superset().registry() {
        for column in policy.key.iter().chain([&policy.local_id]) {
            let (_, not_null) = schema[table]
                .columns
                .get(*column)
                .expect("registry column exists");
            assert!(
                not_null,
                "{table}.{column} is a key, so it must be NOT NULL"
            );
        }
    }
}

#[test]
fn the_local_id_is_the_primary_key_and_natural_keys_are_unique() {
    let schema = parse_schema();
    for (table, policy) in superset().replicated() {
        let pk = schema[table].primary_key.clone();
        assert_eq!(pk, policy.local_id.map(|id| vec![id.to_owned()]), "{table}");
        if let Identity::NaturalKey { columns } = policy.identity {
            let key: Vec<String> = columns.iter().map(|c| (*c).to_owned()).collect();
            assert!(
                schema[table].unique.contains(&key),
                "{table}{columns:?} is not unique"
            );
        }
    }
    for (table, policy) in superset().registry() {
        let key: Vec<String> = policy.key.iter().map(|c| (*c).to_owned()).collect();
        assert!(schema[table].unique.contains(&key), "{table}");
        assert_eq!(
            schema[table].primary_key,
            Some(vec![policy.local_id.to_owned()])
        );
    }
}

#[test]
fn every_foreign_key_of_a_replicated_table_is_declared_and_lands_on_a_named_table() {
    let schema = parse_schema();
    assert_eq!(
        schema["slices"].foreign_keys.len(),
        4,
        "the parser sees every FK"
    );
    let policy = superset();
    let nameable = |table: &str| {
        matches!(
            policy.rule(table).map(|rule| rule.treatment),
            Some(Treatment::Replicated(_) | Treatment::Registry(_))
        )
    };
    for (table, table_policy) in policy.replicated() {
        for (column, target) in &schema[table].foreign_keys {
            let declared = table_policy.reference(column).map(Reference::targets);
            assert_eq!(
                declared,
                Some(vec![target.as_str()]),
                "{table}.{column} -> {target}"
            );
            let not_null = schema[table].columns[column].1;
            assert!(
                nameable(target),
                "{table}.{column} (NOT NULL: {not_null}) points to {target}, which is neither replicated nor registry"
            );
        }
        for reference in table_policy.references {
            for target in reference.targets() {
                assert!(
                    nameable(target),
                    "{table}.{} -> {target}",
                    reference.column()
                );
                assert!(
                    policy.is_registered(target),
                    "{target} rows have no registry entry"
                );
            }
        }
    }
}

#[test]
fn parents_come_before_the_tables_that_refer_to_them() {
    let policy = superset();
    let position = |table: &str| policy.rules().iter().position(|rule| rule.table == table);
    for (table, table_policy) in policy.replicated() {
        let mut targets: Vec<&str> = table_policy
            .references
            .iter()
            .flat_map(Reference::targets)
            .collect();
        for embedded in table_policy.embedded {
            if embedded.format == EmbeddedFormat::PrefixedId {
                targets.extend(embedded.refs.iter().map(|r| r.target));
            }
        }
        for target in targets.into_iter().filter(|target| *target != table) {
            assert!(
                position(target) < position(table),
                "{target} must come before {table}"
            );
        }
    }
}

#[test]
fn derived_identities_are_built_from_references_and_discriminators() {
    for (table, policy) in superset().replicated() {
        let Identity::Derived { parts } = policy.identity else {
            continue;
        };
        for part in parts {
            let is_reference = policy.reference(part).is_some();
            let is_discriminator = policy.references.iter().any(|r| {
                matches!(r, Reference::Polymorphic { discriminator, .. } if discriminator == part)
            });
            assert!(is_reference || is_discriminator, "{table}.{part}");
        }
    }
}

#[test]
fn prefixed_ids_name_their_prefix() {
    for (table, policy) in superset().replicated() {
        for embedded in policy
            .embedded
            .iter()
            .filter(|e| e.format == EmbeddedFormat::PrefixedId)
        {
            for reference in embedded.refs {
                let prefix = reference.path.strip_suffix(":<id>");
                assert!(
                    prefix.is_some_and(|p| !p.is_empty()),
                    "{table}.{}",
                    embedded.column
                );
            }
        }
    }
}

#[test]
fn nothing_encrypted_leaves_the_region() {
    let schema = parse_schema();
    let policy = superset();
    let stays_local =
        |table: &str, column: &str| match policy.rule(table).map(|rule| rule.treatment) {
            Some(Treatment::Replicated(table_policy)) => table_policy.is_local(column),
            Some(Treatment::Excluded { .. }) => true,
            // Registry tables publish only their id and key.
            Some(Treatment::Registry(registry)) => !registry.key.contains(&column),
            None => false,
        };
    for (table, column) in ENCRYPTED {
        assert!(
            schema[*table].columns.contains_key(*column),
            "{table}.{column}"
        );
        assert!(
            stays_local(table, column),
            "{table}.{column} is encrypted but would be replicated"
        );
    }
    // EncryptedType is stored as bytea: any bytea column of a replicated table must be local.
    for (table, _) in policy.replicated() {
        for (column, (kind, _)) in &schema[table].columns {
            if kind.starts_with("bytea") {
                assert!(
                    stays_local(table, column),
                    "{table}.{column} is bytea and replicated"
                );
            }
        }
    }
    let Some(Treatment::Replicated(dbs)) = policy.rule("dbs").map(|rule| rule.treatment) else {
        panic!("dbs is replicated");
    };
    assert!(dbs.is_local("sqlalchemy_uri"), "DESIGN §4");
}

#[test]
fn perm_strings_are_recomputed_not_copied() {
    for table in ["slices", "tables"] {
        let Some(Treatment::Replicated(policy)) = superset().rule(table).map(|rule| rule.treatment)
        else {
            panic!("{table} is replicated");
        };
        for column in ["perm", "schema_perm", "catalog_perm"] {
            assert!(policy.is_local(column), "{table}.{column}");
        }
        assert!(!policy.is_local("created_on") && !policy.is_local("changed_on"));
    }
}
