//! The policy for Apache Superset 6.1's metadata schema (54 tables in `public`; facts file §1–§3).
//!
//! Order matters: a table comes after every table its identity refers to (registry tables first,
//! then parents, then association rows), because setup registers existing rows in this order.
//! The unit tests in `fixture.rs` check this list against the real schema dump.

use super::superset_json::{
    DASHBOARD_METADATA, DASHBOARD_POSITION, SLICE_PARAMS, SLICE_QUERY_CONTEXT, TABLE_FOLDERS,
    TAG_NAME,
};
use super::{
    Embedded, EmbeddedFormat, Identity, Local, Policy, Reference, RegistryPolicy, SystemRows,
    TablePolicy, TableRule, Treatment,
};

/// Superset 6.1's policy.
pub fn superset() -> &'static Policy {
    &SUPERSET_6_1
}

static SUPERSET_6_1: Policy = Policy::new(RULES);

const fn fk(column: &'static str, target: &'static str) -> Reference {
    Reference::Foreign { column, target }
}

const fn local(column: &'static str, why: &'static str) -> Local {
    Local { column, why }
}

const fn replicated(table: &'static str, policy: TablePolicy) -> TableRule {
    TableRule {
        table,
        treatment: Treatment::Replicated(policy),
    }
}

const fn excluded(table: &'static str, reason: &'static str) -> TableRule {
    TableRule {
        table,
        treatment: Treatment::Excluded { reason },
    }
}

/// A uuid-identified table with an integer `id`.
const fn by_uuid(
    local: &'static [Local],
    references: &'static [Reference],
    embedded: &'static [Embedded],
) -> TablePolicy {
    TablePolicy {
        identity: Identity::Uuid {
            column: "uuid",
            system: None,
        },
        local_id: Some("id"),
        local,
        references,
        embedded,
    }
}

/// A row with an integer `id` and no uuid, identified by what it joins or by its natural key.
const fn by_name(identity: Identity, references: &'static [Reference]) -> TablePolicy {
    TablePolicy {
        identity,
        local_id: Some("id"),
        local: &[],
        references,
        embedded: &[],
    }
}

const CREATED_CHANGED: [Reference; 2] = [
    fk("created_by_fk", "ab_user"),
    fk("changed_by_fk", "ab_user"),
];

const PERMS: [Local; 3] = [
    local(
        "perm",
        "`[db].[table](id:<local id>)`: recomputed in each region from its own ids",
    ),
    local(
        "schema_perm",
        "permission string, recomputed in each region by Superset's hooks",
    ),
    local(
        "catalog_perm",
        "permission string, recomputed in each region by Superset's hooks",
    ),
];

const SECRET: &str = "encrypted with the region's SECRET_KEY; each region configures its own";

const ACCESS: &str =
    "region-local access control (users, groups, roles and permissions are managed per region)";
const REPORTS: &str =
    "alerts and reports run where they are defined (replicated, every region would send them)";
const SQL_LAB: &str = "SQL Lab state of the region's own users";
const TASKS: &str = "the task queue of the region's own workers";
const ANNOTATIONS: &str =
    "annotation layers are not replicated (a chart's NATIVE layer id stays local)";
const PERMISSIONS: &str =
    "permission rows are recreated in each region by its security manager from the replicated objects (DESIGN §4), never copied";

const RULES: &[TableRule] = &[
    TableRule {
        table: "ab_role",
        treatment: Treatment::Registry(RegistryPolicy {
            local_id: "id",
            key: &["name"],
        }),
    },
    TableRule {
        table: "ab_user",
        treatment: Treatment::Registry(RegistryPolicy {
            local_id: "id",
            key: &["username"],
        }),
    },
    replicated(
        "dbs",
        by_uuid(
            &[
                local(
                    "sqlalchemy_uri",
                    "the connection (host, user, maybe a password) is per region (DESIGN §4)",
                ),
                local("password", SECRET),
                local("encrypted_extra", SECRET),
                local("server_cert", SECRET),
            ],
            &CREATED_CHANGED,
            &[],
        ),
    ),
    replicated(
        "tables",
        by_uuid(
            &PERMS,
            &[
                fk("database_id", "dbs"),
                CREATED_CHANGED[0],
                CREATED_CHANGED[1],
            ],
            &[Embedded {
                column: "folders",
                format: EmbeddedFormat::Json,
                refs: &TABLE_FOLDERS,
            }],
        ),
    ),
    replicated(
        "table_columns",
        by_uuid(
            &[],
            &[
                fk("table_id", "tables"),
                CREATED_CHANGED[0],
                CREATED_CHANGED[1],
            ],
            &[],
        ),
    ),
    replicated(
        "sql_metrics",
        by_uuid(
            &[],
            &[
                fk("table_id", "tables"),
                CREATED_CHANGED[0],
                CREATED_CHANGED[1],
            ],
            &[],
        ),
    ),
    replicated(
        "themes",
        TablePolicy {
            identity: Identity::Uuid {
                column: "uuid",
                // THEME_DEFAULT / THEME_DARK get a random uuid in each region (facts §2).
                system: Some(SystemRows {
                    flag: "is_system",
                    key: "theme_name",
                }),
            },
            local_id: Some("id"),
            local: &[],
            references: &CREATED_CHANGED,
            embedded: &[],
        },
    ),
    replicated("css_templates", by_uuid(&[], &CREATED_CHANGED, &[])),
    replicated(
        "slices",
        by_uuid(
            &[
                PERMS[0],
                PERMS[1],
                PERMS[2],
                local(
                    "druid_datasource_id",
                    "legacy Druid id; no table it could refer to exists",
                ),
            ],
            &[
                fk("table_id", "tables"),
                Reference::Polymorphic {
                    column: "datasource_id",
                    discriminator: "datasource_type",
                    targets: &[("table", "tables")],
                },
                fk("last_saved_by_fk", "ab_user"),
                CREATED_CHANGED[0],
                CREATED_CHANGED[1],
            ],
            &[
                Embedded {
                    column: "params",
                    format: EmbeddedFormat::JsonText,
                    refs: &SLICE_PARAMS,
                },
                Embedded {
                    column: "query_context",
                    format: EmbeddedFormat::JsonText,
                    refs: &SLICE_QUERY_CONTEXT,
                },
            ],
        ),
    ),
    replicated(
        "dashboards",
        by_uuid(
            &[],
            &[
                fk("theme_id", "themes"),
                CREATED_CHANGED[0],
                CREATED_CHANGED[1],
            ],
            &[
                Embedded {
                    column: "position_json",
                    format: EmbeddedFormat::JsonText,
                    refs: &DASHBOARD_POSITION,
                },
                Embedded {
                    column: "json_metadata",
                    format: EmbeddedFormat::JsonText,
                    refs: &DASHBOARD_METADATA,
                },
            ],
        ),
    ),
    replicated(
        "dashboard_slices",
        by_name(
            Identity::Derived {
                parts: &["dashboard_id", "slice_id"],
            },
            &[fk("dashboard_id", "dashboards"), fk("slice_id", "slices")],
        ),
    ),
    replicated(
        "dashboard_user",
        by_name(
            Identity::Derived {
                parts: &["dashboard_id", "user_id"],
            },
            &[fk("dashboard_id", "dashboards"), fk("user_id", "ab_user")],
        ),
    ),
    replicated(
        "dashboard_roles",
        by_name(
            Identity::Derived {
                parts: &["dashboard_id", "role_id"],
            },
            &[fk("dashboard_id", "dashboards"), fk("role_id", "ab_role")],
        ),
    ),
    replicated(
        "slice_user",
        by_name(
            Identity::Derived {
                parts: &["slice_id", "user_id"],
            },
            &[fk("slice_id", "slices"), fk("user_id", "ab_user")],
        ),
    ),
    replicated(
        "sqlatable_user",
        by_name(
            Identity::Derived {
                parts: &["table_id", "user_id"],
            },
            &[fk("table_id", "tables"), fk("user_id", "ab_user")],
        ),
    ),
    replicated(
        "embedded_dashboards",
        TablePolicy {
            // No primary key and no id (facts §1): identified by its uuid only; setup gives the
            // table REPLICA IDENTITY FULL before publishing it.
            identity: Identity::Uuid {
                column: "uuid",
                system: None,
            },
            local_id: None,
            local: &[],
            references: &[
                fk("dashboard_id", "dashboards"),
                CREATED_CHANGED[0],
                CREATED_CHANGED[1],
            ],
            embedded: &[],
        },
    ),
    replicated(
        "saved_query",
        by_uuid(
            &[],
            &[
                fk("db_id", "dbs"),
                fk("user_id", "ab_user"),
                CREATED_CHANGED[0],
                CREATED_CHANGED[1],
            ],
            &[],
        ),
    ),
    replicated(
        "tag",
        TablePolicy {
            identity: Identity::NaturalKey { columns: &["name"] },
            local_id: Some("id"),
            local: &[],
            references: &CREATED_CHANGED,
            embedded: &[Embedded {
                column: "name",
                format: EmbeddedFormat::PrefixedId,
                refs: &TAG_NAME,
            }],
        },
    ),
    replicated(
        "tagged_object",
        by_name(
            Identity::Derived {
                parts: &["tag_id", "object_type", "object_id"],
            },
            &[
                fk("tag_id", "tag"),
                Reference::Polymorphic {
                    column: "object_id",
                    discriminator: "object_type",
                    targets: &[
                        ("chart", "slices"),
                        ("dashboard", "dashboards"),
                        ("dataset", "tables"),
                        ("query", "saved_query"),
                    ],
                },
                CREATED_CHANGED[0],
                CREATED_CHANGED[1],
            ],
        ),
    ),
    replicated(
        "row_level_security_filters",
        by_name(
            Identity::NaturalKey { columns: &["name"] },
            &CREATED_CHANGED,
        ),
    ),
    replicated(
        "rls_filter_tables",
        by_name(
            Identity::Derived {
                parts: &["rls_filter_id", "table_id"],
            },
            &[
                fk("rls_filter_id", "row_level_security_filters"),
                fk("table_id", "tables"),
            ],
        ),
    ),
    replicated(
        "rls_filter_roles",
        by_name(
            Identity::Derived {
                parts: &["rls_filter_id", "role_id"],
            },
            &[
                fk("rls_filter_id", "row_level_security_filters"),
                fk("role_id", "ab_role"),
            ],
        ),
    ),
    excluded(
        "ab_api_key",
        "per-user API keys (key hashes) belong to the region that issued them",
    ),
    excluded("ab_group", ACCESS),
    excluded("ab_group_role", ACCESS),
    excluded("ab_permission", PERMISSIONS),
    excluded("ab_permission_view", PERMISSIONS),
    excluded("ab_permission_view_role", PERMISSIONS),
    excluded(
        "ab_register_user",
        "pending self-registrations with password hashes; local",
    ),
    excluded("ab_user_group", ACCESS),
    excluded("ab_user_role", ACCESS),
    excluded("ab_view_menu", PERMISSIONS),
    excluded(
        "alembic_version",
        "Superset's own schema version; each region migrates itself",
    ),
    excluded("annotation", ANNOTATIONS),
    excluded("annotation_layer", ANNOTATIONS),
    excluded(
        "cache_keys",
        "bookkeeping of the region's own results cache",
    ),
    excluded(
        "database_user_oauth2_tokens",
        "per-user OAuth2 tokens, encrypted with the region's SECRET_KEY",
    ),
    excluded(
        "dynamic_plugin",
        "frontend plugin registrations of one deployment",
    ),
    excluded(
        "favstar",
        "personal favourites (local user state, polymorphic ids)",
    ),
    excluded(
        "key_value",
        "permalinks and app state whose values embed local ids",
    ),
    excluded("keyvalue", "legacy key-value store, unused by Superset 6"),
    excluded("logs", "the region's append-only action log"),
    excluded("query", SQL_LAB),
    excluded(
        "report_execution_log",
        "log of the region's own report runs",
    ),
    excluded("report_recipient", REPORTS),
    excluded("report_schedule", REPORTS),
    excluded("report_schedule_user", REPORTS),
    excluded(
        "ssh_tunnels",
        "every credential column is encrypted with the region's SECRET_KEY",
    ),
    excluded("tab_state", SQL_LAB),
    excluded("table_schema", SQL_LAB),
    excluded("task_subscribers", TASKS),
    excluded("tasks", TASKS),
    excluded("user_attribute", "per-user preferences (local user state)"),
    excluded(
        "user_favorite_tag",
        "personal favourites (local user state); no primary key, so never published",
    ),
];
