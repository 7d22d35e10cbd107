//! The capture triggers (DESIGN §2 step 1), generated from the table policy.
//!
//! **Contract.** Every replicated table gets one `BEFORE INSERT OR UPDATE OR DELETE … FOR EACH ROW`
//! trigger, `replicator_version`, running a function generated for that table,
//! `replicator.capture_<table>()`. In the writing transaction, before the row is written, it:
//!
//! 1. keeps the id↔uuid registry current — always, even for the applier's own writes;
//! 2. unless the session is the applier's (`replicator.applying = on`), versions the write with
//!    `replicator.stamp`: this region's counter in the entity's clock is bumped once per
//!    transaction, and each *changed* versioned column gets the dot and a new hlc. INSERT stamps
//!    every versioned column and `$exists`; DELETE stamps `$exists` only; UPDATE stamps the columns
//!    whose value differs (`to_jsonb(OLD)` against `to_jsonb(NEW)`, so columns Superset adds later
//!    are versioned too), and an UPDATE of local columns only stamps nothing at all.
//!
//! A row whose identity changes (its uuid rewritten by an import that matched a natural key, or an
//! association re-pointed) is a delete of the old entity and an insert of the new one.
//!
//! Tables identified by a `uuid` column also get `replicator_uuid`, `BEFORE INSERT OR UPDATE`:
//! Superset fills uuids in Python, so a row written by anything else would have none. Registry
//! tables (`ab_user`, `ab_role`) get `replicator_register` only: registry upkeep, no versioning,
//! and only when the key column changes (not on every login).
//!
//! **Why BEFORE.** The versioning rows the trigger writes reach the WAL *before* the data row, so
//! the reader meets a row's registry entry, clock and stamped fields first and can publish the row
//! the moment it arrives: it never holds a statement's or a transaction's rows in memory, however
//! many there are. (An AFTER ROW trigger fires at the end of its statement: a million-row
//! statement would put a million data rows ahead of their versioning.) BEFORE triggers fire in
//! name order, so `replicator_uuid` (which fills a missing uuid) runs before `replicator_version`
//! (which reads it); a unit test pins that order. The cost: a row that a later BEFORE trigger or an
//! `ON CONFLICT DO NOTHING` drops after ours ran leaves versioning rows without a data row. Superset
//! has neither (no triggers of its own; the ORM never upserts these tables), and the reader drops
//! such orphaned versioning rows at commit, counting them.
//!
//! **Why these choices.** Triggers are `ENABLE ALWAYS`, so they fire even in a session with
//! `session_replication_role = replica`: the registry must never miss a row, whoever writes it.
//! The functions are `SECURITY DEFINER` (owned by whoever ran setup) with a fixed `search_path`,
//! so Superset's own database role needs no privilege on schema `replicator`, and nothing it
//! can do to its search path changes what the triggers run. Setup compares the installed function
//! text and trigger definitions with the generated ones, so running it again changes nothing.

use crate::policy::{Identity, Policy, RegistryPolicy, TablePolicy};

use super::identity;
use super::sql::{ident, literal, public, text_array};

pub(crate) const CAPTURE_TRIGGER: &str = "replicator_version";
pub(crate) const UUID_TRIGGER: &str = "replicator_uuid";
pub(crate) const REGISTER_TRIGGER: &str = "replicator_register";

/// One table's capture: its generated function and its triggers.
#[derive(Debug, Clone)]
pub(crate) struct Capture {
    pub(crate) table: &'static str,
    /// The function's name in schema `replicator`.
    pub(crate) function: String,
    /// The function's body, exactly as `pg_proc.prosrc` stores it.
    pub(crate) body: String,
    pub(crate) triggers: Vec<Trigger>,
}

/// A trigger, as `pg_get_triggerdef` prints it.
#[derive(Debug, Clone)]
pub(crate) struct Trigger {
    pub(crate) name: &'static str,
    pub(crate) definition: String,
}

/// The captures of every replicated and registry table, in policy order.
pub(crate) fn captures(policy: &Policy) -> Vec<Capture> {
    let mut all: Vec<Capture> = Vec::new();
    for rule in policy.rules() {
        if let Some((_, table_policy)) = policy.replicated().find(|(t, _)| *t == rule.table) {
            all.push(replicated(rule.table, table_policy));
        } else if let Some((_, registry_policy)) = policy.registry().find(|(t, _)| *t == rule.table)
        {
            all.push(registry(rule.table, registry_policy));
        }
    }
    all
}

impl Capture {
    /// The statements that install this capture (replacing whatever version was there).
    pub(crate) fn statements(&self) -> Vec<String> {
        let mut statements = vec![format!(
            "CREATE OR REPLACE FUNCTION replicator.{}() RETURNS trigger\n\
             LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp\n\
             AS $capture${}$capture$",
            ident(&self.function),
            self.body
        )];
        for trigger in &self.triggers {
            statements.push(format!(
                "DROP TRIGGER IF EXISTS {} ON {}",
                ident(trigger.name),
                public(self.table)
            ));
            statements.push(trigger.definition.clone());
            statements.push(format!(
                "ALTER TABLE {} ENABLE ALWAYS TRIGGER {}",
                public(self.table),
                ident(trigger.name)
            ));
        }
        statements
    }
}

fn trigger(name: &'static str, when: &str, table: &str, function: &str) -> Trigger {
    Trigger {
        name,
        definition: format!(
            "CREATE TRIGGER {name} {when} ON {} FOR EACH ROW EXECUTE FUNCTION replicator.{}()",
            public(table),
            ident(function)
        ),
    }
}

/// The capture of a replicated table.
pub(crate) fn replicated(table: &'static str, policy: &TablePolicy) -> Capture {
    let function = format!("capture_{table}");
    let mut triggers = Vec::new();
    if matches!(policy.identity, Identity::Uuid { .. }) {
        triggers.push(trigger(
            UUID_TRIGGER,
            "BEFORE INSERT OR UPDATE",
            table,
            "fill_uuid",
        ));
    }
    triggers.push(trigger(
        CAPTURE_TRIGGER,
        "BEFORE INSERT OR DELETE OR UPDATE",
        table,
        &function,
    ));
    Capture {
        table,
        body: capture_body(table, policy),
        function,
        triggers,
    }
}

/// The capture of a registry table: registry upkeep when the key changes.
pub(crate) fn registry(table: &'static str, policy: &RegistryPolicy) -> Capture {
    let function = format!("register_{table}");
    let key_columns: Vec<String> = policy.key.iter().map(|c| ident(c)).collect();
    let changed: Vec<String> = policy
        .key
        .iter()
        .map(|c| format!("NEW.{0} IS DISTINCT FROM OLD.{0}", ident(c)))
        .collect();
    let body = format!(
        "
BEGIN
    IF TG_OP = 'INSERT' OR {changed} THEN
        PERFORM replicator.register({table_literal}, NEW.{id}, {identity});
    END IF;
    RETURN NULL;
END
",
        changed = changed.join(" OR "),
        table_literal = literal(table),
        id = ident(policy.local_id),
        identity = identity::registry(table, policy, "NEW"),
    );
    let when = format!("AFTER INSERT OR UPDATE OF {}", key_columns.join(", "));
    let triggers = vec![trigger(REGISTER_TRIGGER, &when, table, &function)];
    Capture {
        table,
        function,
        body,
        triggers,
    }
}

/// The body of `replicator.capture_<table>()`.
fn capture_body(table: &str, policy: &TablePolicy) -> String {
    let name = literal(table);
    let unversioned = text_array(&policy.unversioned_columns());
    let old_identity = match (policy.local_id, policy.identity) {
        (Some(id), _) => format!("replicator.registered({name}, OLD.{})", ident(id)),
        (None, Identity::Uuid { column, .. }) => format!("OLD.{}", ident(column)),
        (None, _) => "NULL".to_owned(),
    };
    let new_identity = new_identity(table, policy);
    let register = match policy.local_id {
        Some(id) => format!(
            "\n        PERFORM replicator.register({name}, NEW.{}, new_identity);",
            ident(id)
        ),
        None => String::new(),
    };
    format!(
        "
DECLARE
    unversioned constant text[] := {unversioned};
    versioning constant boolean := coalesce(current_setting('replicator.applying', true), '') <> 'on';
    old_identity uuid;
    new_identity uuid;
    old_row jsonb;
    changed text[];
BEGIN
    IF TG_OP <> 'INSERT' THEN
        old_identity := {old_identity};
    END IF;
    IF TG_OP = 'DELETE' THEN
        IF versioning AND old_identity IS NOT NULL THEN
            PERFORM replicator.stamp({name}, old_identity, '{{}}', false);
        END IF;
        RETURN OLD;
    END IF;
{new_identity}
    IF new_identity IS DISTINCT FROM old_identity THEN{register}
        IF versioning THEN
            IF old_identity IS NOT NULL THEN
                PERFORM replicator.stamp({name}, old_identity, '{{}}', false);
            END IF;
            PERFORM replicator.stamp({name}, new_identity,
                ARRAY(SELECT jsonb_object_keys(to_jsonb(NEW) - unversioned)), true);
        END IF;
    ELSIF versioning THEN
        old_row := to_jsonb(OLD);
        changed := ARRAY(SELECT f.key FROM jsonb_each(to_jsonb(NEW) - unversioned) AS f
                         WHERE f.value IS DISTINCT FROM old_row -> f.key);
        IF cardinality(changed) > 0 THEN
            PERFORM replicator.stamp({name}, new_identity, changed, NULL);
        END IF;
    END IF;
    RETURN NEW;
END
"
    )
}

/// The statements that set `new_identity` for an INSERT or UPDATE.
fn new_identity(table: &str, policy: &TablePolicy) -> String {
    let computed = identity::computed(table, policy, "NEW");
    if !identity::may_collide(policy) {
        return format!("    new_identity := {computed};");
    }
    // Derived: keep the identity unless a joined column changed. Natural key: keep it for good.
    let keep = match identity::identity_columns(policy) {
        [] => "old_identity IS NOT NULL".to_owned(),
        columns => {
            let changed: Vec<String> = columns
                .iter()
                .map(|c| format!("NEW.{0} IS DISTINCT FROM OLD.{0}", ident(c)))
                .collect();
            format!(
                "old_identity IS NOT NULL AND NOT ({})",
                changed.join(" OR ")
            )
        }
    };
    let collision = match policy.local_id {
        Some(id) => format!(
            "
        IF EXISTS (SELECT 1 FROM replicator.registry AS r
                   JOIN {table_name} AS other ON other.{id} = r.local_id
                   WHERE r.table_name = {name} AND r.uuid = new_identity AND r.local_id <> NEW.{id}) THEN
            new_identity := gen_random_uuid();
        END IF;",
            table_name = public(table),
            id = ident(id),
            name = literal(table),
        ),
        None => String::new(),
    };
    format!(
        "    IF {keep} THEN
        new_identity := old_identity;
    ELSE
        new_identity := {computed};{collision}
    END IF;"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::superset;

    fn capture(table: &str) -> Capture {
        captures(superset())
            .into_iter()
            .find(|c| c.table == table)
            .expect("captured")
    }

    #[test]
    fn every_replicated_and_registry_table_is_captured_in_policy_order() {
        let tables: Vec<&str> = captures(superset()).iter().map(|c| c.table).collect();
        assert_eq!(tables.len(), 22);
        assert_eq!(tables.first(), Some(&"ab_role"));
        assert!(!tables.contains(&"logs") && !tables.contains(&"user_favorite_tag"));
    }

    #[test]
    fn a_dashboard_is_versioned_by_uuid_without_its_local_columns() {
        let dashboards = capture("dashboards");
        assert_eq!(dashboards.function, "capture_dashboards");
        let body = &dashboards.body;
        assert!(
            body.contains("unversioned constant text[] := '{id,uuid}'::text[];"),
            "{body}"
        );
        assert!(body.contains("old_identity := replicator.registered('dashboards', OLD.id);"));
        assert!(body.contains("    new_identity := NEW.uuid;"), "{body}");
        assert!(body.contains("PERFORM replicator.register('dashboards', NEW.id, new_identity);"));
        assert!(body.contains("current_setting('replicator.applying', true)"));
        let definitions: Vec<&str> = dashboards
            .triggers
            .iter()
            .map(|t| t.definition.as_str())
            .collect();
        assert_eq!(
            definitions,
            [
                "CREATE TRIGGER replicator_uuid BEFORE INSERT OR UPDATE ON public.dashboards FOR EACH ROW EXECUTE FUNCTION replicator.fill_uuid()",
                "CREATE TRIGGER replicator_version BEFORE INSERT OR DELETE OR UPDATE ON public.dashboards FOR EACH ROW EXECUTE FUNCTION replicator.capture_dashboards()",
            ]
        );
    }

    #[test]
    fn the_uuid_is_filled_before_the_version_trigger_reads_it() {
        // PostgreSQL fires BEFORE ROW triggers of one table in name order.
        for capture in captures(superset()) {
            let names: Vec<&str> = capture.triggers.iter().map(|t| t.name).collect();
            let mut sorted = names.clone();
            sorted.sort_unstable();
            assert_eq!(names, sorted, "{}", capture.table);
        }
        assert!(UUID_TRIGGER < CAPTURE_TRIGGER);
    }

    #[test]
    fn local_database_columns_are_never_versioned() {
        let body = capture("dbs").body;
        assert!(body
            .contains("'{id,uuid,sqlalchemy_uri,password,encrypted_extra,server_cert}'::text[]"));
    }

    #[test]
    fn an_association_keeps_its_identity_unless_it_is_re_pointed() {
        let body = capture("dashboard_slices").body;
        assert!(body.contains(
            "IF old_identity IS NOT NULL AND NOT (NEW.dashboard_id IS DISTINCT FROM OLD.dashboard_id OR NEW.slice_id IS DISTINCT FROM OLD.slice_id) THEN"
        ), "{body}");
        assert!(body.contains("new_identity := gen_random_uuid();"));
        assert!(capture("dashboard_slices")
            .triggers
            .iter()
            .all(|t| t.name != UUID_TRIGGER));
    }

    #[test]
    fn embedded_dashboards_have_no_local_id_to_register() {
        let body = capture("embedded_dashboards").body;
        assert!(body.contains("old_identity := OLD.uuid;"));
        assert!(!body.contains("replicator.register("), "{body}");
        assert!(!body.contains(".id"), "{body}");
    }

    #[test]
    fn users_are_registered_by_username_only_when_it_changes() {
        let users = capture("ab_user");
        assert_eq!(users.triggers.len(), 1);
        assert_eq!(
            users.triggers[0].definition,
            "CREATE TRIGGER replicator_register AFTER INSERT OR UPDATE OF username ON public.ab_user FOR EACH ROW EXECUTE FUNCTION replicator.register_ab_user()"
        );
        assert!(users
            .body
            .contains("IF TG_OP = 'INSERT' OR NEW.username IS DISTINCT FROM OLD.username THEN"));
        assert!(!users.body.contains("stamp"));
        let statements = users.statements();
        assert!(statements[0].contains("SECURITY DEFINER SET search_path = pg_catalog, pg_temp"));
        assert_eq!(
            statements.last().map(String::as_str),
            Some("ALTER TABLE public.ab_user ENABLE ALWAYS TRIGGER replicator_register")
        );
    }
}
