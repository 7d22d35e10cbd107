//! The identity formulas of the policy (`policy` module docs), written as SQL expressions over a
//! row. The same expression text is used by the capture triggers (row `NEW`) and by the backfill
//! (row alias `t`), so a row gets the same identity whichever of them registers it first.
//!
//! A reference part is the referenced row's registered uuid. A reference that names no registered
//! row (a dangling polymorphic id) falls back to `<table>#<local id>`, and a NULL to `null`: such a
//! part is region-specific, but then so is what it points to.

use crate::policy::{Embedded, EmbeddedFormat, Identity, Reference, RegistryPolicy, TablePolicy};

use super::sql::{ident, literal};

/// `row.column`.
fn field(row: &str, column: &str) -> String {
    format!("{row}.{}", ident(column))
}

/// The registered uuid of `local_id` in `table_expr` (an SQL expression naming the table).
fn registered(table_expr: &str, local_id: &str) -> String {
    format!("replicator.registered({table_expr}, {local_id})")
}

/// One part of a derived identity, as text.
fn part(policy: &TablePolicy, row: &str, column: &str) -> String {
    let value = field(row, column);
    match policy.reference(column) {
        Some(Reference::Foreign { target, .. }) => format!(
            "coalesce({}::text, {} || {value}::text, 'null')",
            registered(&literal(target), &value),
            literal(&format!("{target}#")),
        ),
        Some(Reference::Polymorphic {
            discriminator,
            targets,
            ..
        }) => {
            let kind = field(row, discriminator);
            let arms: String = targets
                .iter()
                .map(|(value, table)| format!(" WHEN {} THEN {}", literal(value), literal(table)))
                .collect();
            format!(
                "coalesce({}::text, coalesce({kind}::text, '?') || '#' || {value}::text, 'null')",
                registered(&format!("CASE {kind}{arms} END"), &value),
            )
        }
        None => format!("coalesce({value}::text, 'null')"),
    }
}

/// One column of a natural key, as text. A `<prefix>:<local id>` value (a tag named after a
/// user) is keyed by the referenced row's uuid instead, so it names the same thing everywhere.
fn key_part(embedded: &[Embedded], row: &str, column: &str) -> String {
    let value = field(row, column);
    let prefixed = embedded
        .iter()
        .filter(|e| e.column == column && e.format == EmbeddedFormat::PrefixedId)
        .flat_map(|e| e.refs.iter());
    let mut arms = String::new();
    for reference in prefixed {
        let Some(prefix) = reference.path.strip_suffix(":<id>") else {
            continue;
        };
        let pattern = format!("^{prefix}:[0-9]{{1,18}}$");
        let id = format!("split_part({value}, ':', 2)::bigint");
        arms.push_str(&format!(
            " WHEN {value} ~ {} THEN coalesce({} || {}::text, {value})",
            literal(&pattern),
            literal(&format!("{prefix}:")),
            registered(&literal(reference.target), &id),
        ));
    }
    if arms.is_empty() {
        format!("coalesce({value}::text, 'null')")
    } else {
        format!("CASE{arms} ELSE coalesce({value}::text, 'null') END")
    }
}

/// `replicator.name_uuid('<table>:' || part || ':' || part …)`.
fn name_uuid(table: &str, parts: &[String]) -> String {
    let joined = parts.join(" || ':' || ");
    format!(
        "replicator.name_uuid({} || {joined})",
        literal(&format!("{table}:"))
    )
}

/// The identity a row of a replicated table gets from its own values.
pub(crate) fn computed(table: &str, policy: &TablePolicy, row: &str) -> String {
    match policy.identity {
        Identity::Uuid {
            column,
            system: None,
        } => field(row, column),
        Identity::Uuid {
            column,
            system: Some(system),
        } => format!(
            "CASE WHEN {} THEN {} ELSE {} END",
            field(row, system.flag),
            name_uuid(
                table,
                &[format!(
                    "coalesce({}::text, 'null')",
                    field(row, system.key)
                )]
            ),
            field(row, column),
        ),
        Identity::Derived { parts } => {
            let parts: Vec<String> = parts.iter().map(|c| part(policy, row, c)).collect();
            name_uuid(table, &parts)
        }
        Identity::NaturalKey { columns } => {
            let parts: Vec<String> = columns
                .iter()
                .map(|c| key_part(policy.embedded, row, c))
                .collect();
            name_uuid(table, &parts)
        }
    }
}

/// The identity of a registry table's row: its natural key, name-based.
pub(crate) fn registry(table: &str, policy: &RegistryPolicy, row: &str) -> String {
    let parts: Vec<String> = policy.key.iter().map(|c| key_part(&[], row, c)).collect();
    name_uuid(table, &parts)
}

/// Whether a computed identity may collide with another live row's (derived and natural-key
/// identities: duplicate association rows, a new tag named like a renamed one). Such a row gets a
/// random uuid instead: it is a different entity.
pub(crate) fn may_collide(policy: &TablePolicy) -> bool {
    matches!(
        policy.identity,
        Identity::Derived { .. } | Identity::NaturalKey { .. }
    )
}

/// The columns whose change gives a row a new identity on UPDATE (derived identities only; a
/// natural-key identity survives renames, a uuid identity follows its column).
pub(crate) fn identity_columns(policy: &TablePolicy) -> &'static [&'static str] {
    match policy.identity {
        Identity::Derived { parts } => parts,
        _ => &[],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{superset, Treatment};

    fn replicated(table: &str) -> &'static TablePolicy {
        match &superset().rule(table).expect("in the policy").treatment {
            Treatment::Replicated(policy) => policy,
            _ => panic!("{table} is replicated"),
        }
    }

    #[test]
    fn a_dashboard_is_its_uuid_and_a_system_theme_its_name() {
        assert_eq!(
            computed("dashboards", replicated("dashboards"), "NEW"),
            "NEW.uuid"
        );
        assert_eq!(
            computed("themes", replicated("themes"), "t"),
            "CASE WHEN t.is_system THEN replicator.name_uuid('themes:' || \
             coalesce(t.theme_name::text, 'null')) ELSE t.uuid END"
        );
    }

    #[test]
    fn an_association_is_named_by_the_uuids_it_joins() {
        assert_eq!(
            computed("dashboard_slices", replicated("dashboard_slices"), "NEW"),
            "replicator.name_uuid('dashboard_slices:' || \
             coalesce(replicator.registered('dashboards', NEW.dashboard_id)::text, 'dashboards#' || NEW.dashboard_id::text, 'null') || ':' || \
             coalesce(replicator.registered('slices', NEW.slice_id)::text, 'slices#' || NEW.slice_id::text, 'null'))"
        );
        let tagged = computed("tagged_object", replicated("tagged_object"), "t");
        assert!(
            tagged.contains("coalesce(t.object_type::text, 'null')"),
            "{tagged}"
        );
        assert!(
            tagged.contains("replicator.registered(CASE t.object_type WHEN 'chart' THEN 'slices' WHEN 'dashboard' THEN 'dashboards' WHEN 'dataset' THEN 'tables' WHEN 'query' THEN 'saved_query' END, t.object_id)"),
            "{tagged}"
        );
    }

    #[test]
    fn a_tag_named_after_a_user_is_keyed_by_the_users_uuid() {
        let tag = computed("tag", replicated("tag"), "NEW");
        assert!(tag.starts_with("replicator.name_uuid('tag:' || CASE WHEN NEW.name ~ '^owner:[0-9]{1,18}$' THEN coalesce('owner:' || replicator.registered('ab_user', split_part(NEW.name, ':', 2)::bigint)::text, NEW.name)"), "{tag}");
        assert!(
            tag.contains("WHEN NEW.name ~ '^favorited_by:[0-9]{1,18}$'"),
            "{tag}"
        );
        assert!(may_collide(replicated("tag")) && !may_collide(replicated("dashboards")));
    }

    #[test]
    fn users_and_roles_are_named_by_their_key() {
        let Some((_, users)) = superset().registry().find(|(t, _)| *t == "ab_user") else {
            panic!("ab_user is a registry table");
        };
        assert_eq!(
            registry("ab_user", users, "NEW"),
            "replicator.name_uuid('ab_user:' || coalesce(NEW.username::text, 'null'))"
        );
    }
}
