//! `replicator setup` against real Superset 6.1 databases: it installs everything once and then
//! has nothing to do, `--dry-run` changes nothing, the triggers version exactly the fields a write
//! changed (and nothing for the applier), identities agree across regions, Superset can still
//! update and delete embedded dashboards once they are published, and the publication and slot
//! are exactly what the reader needs.

use std::collections::BTreeSet;
use std::error::Error;
use std::time::Duration;

use bytes::Bytes;
use harness::{wait_until, HarnessError, Lab, TestDb};
use pgoutput::{ColumnValue, LogicalMessage, ProtocolVersion, RelationCache, StreamDecoder};
use replicator::policy::{name_uuid, superset};
use replicator::setup::{self, PublicationName, SetupOptions, SlotName};
use replicator::{Action, DatabaseUrl, RegionId};
use tokio_postgres::Client;
use uuid::Uuid;

type TestResult = Result<(), Box<dyn Error>>;

/// A test database with setup's options for it and a connection.
struct Fixture {
    db: TestDb,
    options: SetupOptions,
    client: Client,
}

async fn fixture(region: &str, label: &str) -> Result<Fixture, Box<dyn Error>> {
    let db = Lab::get()?.region(region)?.fresh_db(label).await?;
    let options = SetupOptions::new(
        RegionId::new(region)?,
        SlotName::new(&db.unique_name("slot"))?,
        PublicationName::new(&db.unique_name("pub"))?,
    );
    let client = DatabaseUrl::parse(&db.conninfo())?.connect().await?;
    Ok(Fixture {
        db,
        options,
        client,
    })
}

impl Fixture {
    async fn setup(&mut self) -> Result<setup::Report, replicator::Error> {
        setup::run(&mut self.client, &self.options).await
    }

    /// Rows written the way Superset writes them, before setup: a user and a role, a database, a
    /// dataset without a uuid, a chart, a dashboard holding the chart, two identical owner rows,
    /// a system theme, an owner tag on the dashboard and an embedded config.
    async fn seed(&self) -> TestResult {
        self.client
            .batch_execute(
                "INSERT INTO ab_user (id, first_name, last_name, username, email)
                   VALUES (nextval('ab_user_id_seq'), 'Ada', 'Admin', 'admin', 'admin@example.com');
                 INSERT INTO ab_role (id, name) VALUES (nextval('ab_role_id_seq'), 'Admin');
                 INSERT INTO dbs (database_name, sqlalchemy_uri, password, uuid)
                   VALUES ('examples', 'postgresql://u:XXXXXXXXXX@h/db', '\\x01', gen_random_uuid());
                 INSERT INTO tables (table_name, database_id, perm)
                   SELECT 'sales', id, '[examples].[sales](id:1)' FROM dbs;
                 INSERT INTO slices (slice_name, datasource_id, datasource_type, params, uuid)
                   SELECT 'Revenue', id, 'table', '{\"datasource\": \"1__table\"}', gen_random_uuid() FROM tables;
                 INSERT INTO dashboards (dashboard_title, created_by_fk, uuid)
                   SELECT 'Sales', id, gen_random_uuid() FROM ab_user;
                 INSERT INTO dashboard_slices (dashboard_id, slice_id) SELECT d.id, s.id FROM dashboards d, slices s;
                 INSERT INTO dashboard_user (dashboard_id, user_id) SELECT d.id, u.id FROM dashboards d, ab_user u;
                 INSERT INTO dashboard_user (dashboard_id, user_id) SELECT d.id, u.id FROM dashboards d, ab_user u;
                 INSERT INTO themes (theme_name, is_system, is_system_default, is_system_dark, uuid)
                   VALUES ('THEME_DEFAULT', true, true, false, gen_random_uuid());
                 INSERT INTO tag (name, type) SELECT 'owner:' || id, 'owner' FROM ab_user;
                 INSERT INTO tagged_object (tag_id, object_id, object_type)
                   SELECT t.id, d.id, 'dashboard' FROM tag t, dashboards d;
                 INSERT INTO embedded_dashboards (dashboard_id, allow_domain_list, uuid)
                   SELECT id, '', gen_random_uuid() FROM dashboards;",
            )
            .await?;
        Ok(())
    }

    async fn int(&self, sql: &str) -> Result<i64, Box<dyn Error>> {
        Ok(self.client.query_one(sql, &[]).await?.get(0))
    }

    async fn text(&self, sql: &str) -> Result<String, Box<dyn Error>> {
        Ok(self.client.query_one(sql, &[]).await?.get(0))
    }

    /// `field -> counter` of one entity, and its clock.
    async fn versions(
        &self,
        table: &str,
        uuid: Uuid,
    ) -> Result<(Vec<(String, i64)>, String), Box<dyn Error>> {
        let fields = self
            .client
            .query(
                "SELECT field, counter FROM replicator.field_version
                 WHERE table_name = $1 AND uuid = $2 ORDER BY field",
                &[&table, &uuid],
            )
            .await?
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
        let clock = self
            .client
            .query_opt(
                "SELECT clock::text FROM replicator.entity WHERE table_name = $1 AND uuid = $2",
                &[&table, &uuid],
            )
            .await?
            .map(|row| row.get(0))
            .unwrap_or_default();
        Ok((fields, clock))
    }

    /// Fields of an entity stamped with `counter`.
    async fn stamped(
        &self,
        table: &str,
        uuid: Uuid,
        counter: i64,
    ) -> Result<Vec<String>, Box<dyn Error>> {
        let (fields, _) = self.versions(table, uuid).await?;
        Ok(fields
            .into_iter()
            .filter(|(_, c)| *c == counter)
            .map(|(f, _)| f)
            .collect())
    }

    async fn hlc(&self, table: &str, uuid: Uuid, field: &str) -> Result<i64, Box<dyn Error>> {
        let row = self
            .client
            .query_one(
                "SELECT hlc FROM replicator.field_version WHERE table_name = $1 AND uuid = $2 AND field = $3",
                &[&table, &uuid, &field],
            )
            .await?;
        Ok(row.get(0))
    }

    /// `(schema.table, columns)` of every table the publication publishes.
    async fn published(&self) -> Result<BTreeSet<(String, String)>, Box<dyn Error>> {
        let rows = self
            .client
            .query(
                "SELECT schemaname || '.' || tablename, array_to_string(attnames, ',')
                 FROM pg_publication_tables WHERE pubname = $1",
                &[&self.options.publication.as_str()],
            )
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    async fn registered(&self, table: &str, id: i32) -> Result<Option<Uuid>, Box<dyn Error>> {
        Ok(self
            .client
            .query_opt(
                "SELECT uuid FROM replicator.registry WHERE table_name = $1 AND local_id = $2",
                &[&table, &i64::from(id)],
            )
            .await?
            .map(|row| row.get(0)))
    }

    /// A digest of everything setup could change: schemas, relations and their replica identity,
    /// triggers, functions, publications, this database's slots, and every row of `public`.
    async fn fingerprint(&self) -> Result<String, Box<dyn Error>> {
        let mut parts = vec![self
            .text(
                "SELECT string_agg(x, E'\\n' ORDER BY x) FROM (
                   SELECT 'ns ' || nspname FROM pg_namespace
                   UNION ALL SELECT 'rel ' || c.oid::regclass::text || ' ' || c.relkind::text || c.relreplident::text
                     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                     WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
                   UNION ALL SELECT 'trigger ' || tgrelid::regclass::text || ' ' || tgname || tgenabled::text FROM pg_trigger
                   UNION ALL SELECT 'proc ' || p.oid::regprocedure::text || md5(p.prosrc)
                     FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                     WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
                   UNION ALL SELECT 'pub ' || pubname FROM pg_publication
                   UNION ALL SELECT 'pubrel ' || prrelid::regclass::text FROM pg_publication_rel
                   UNION ALL SELECT 'slot ' || slot_name FROM pg_replication_slots WHERE database = current_database()
                 ) AS f (x)",
            )
            .await?];
        for table in superset().rules().iter().map(|rule| rule.table) {
            parts.push(
                self.text(&format!(
                    "SELECT '{table} ' || md5(coalesce(string_agg(to_jsonb(t)::text, ',' ORDER BY to_jsonb(t)::text), '')) FROM public.{table} t"
                ))
                .await?,
            );
        }
        Ok(parts.join("\n"))
    }
}

#[tokio::test]
async fn setup_installs_everything_once_and_then_has_nothing_to_do() -> TestResult {
    let mut f = fixture("us", "setup_twice").await?;
    f.seed().await?;
    let report = f.setup().await?;
    assert!(!report.is_noop());
    assert_eq!(
        report.result("tables: uuids assigned"),
        Some("1"),
        "{report}"
    );
    assert_eq!(
        report.result("dashboards: registered"),
        Some("1"),
        "{report}"
    );
    assert_eq!(
        report.result("dashboard_user: registered"),
        Some("1"),
        "{report}"
    );
    assert_eq!(
        report.result("dashboard_user: registered under a random uuid (duplicates)"),
        Some("1"),
        "two identical owner rows are two entities: {report}"
    );
    assert!(report
        .result(&format!("slot {} consistent point", f.options.slot))
        .is_some());

    // Every row of every replicated and registry table is registered; every replicated row is an
    // entity written once by this region, with every versioned field stamped.
    for rule in superset().rules() {
        let table = rule.table;
        if superset().is_registered(table) {
            let missing = f
                .int(&format!(
                    "SELECT count(*) FROM public.{table} t WHERE NOT EXISTS (SELECT 1 FROM replicator.registry r
                     WHERE r.table_name = '{table}' AND r.local_id = t.id)"
                ))
                .await?;
            assert_eq!(missing, 0, "{table} rows without a registry entry");
        }
    }
    assert_eq!(
        f.int("SELECT count(*) FROM public.tables WHERE uuid IS NULL")
            .await?,
        0
    );
    let clocks = f
        .int("SELECT count(*) FROM replicator.entity WHERE clock <> '{\"us\": 1}'")
        .await?;
    assert_eq!(clocks, 0, "backfilled entities have clock {{us: 1}}");
    let entities = f.int("SELECT count(*) FROM replicator.entity").await?;
    // dbs, tables, slices, dashboards, dashboard_slices, 2 × dashboard_user, themes, tag,
    // tagged_object, embedded_dashboards; users and roles are registry only.
    assert_eq!(entities, 11);
    let dashboard: Uuid = f
        .client
        .query_one("SELECT uuid FROM dashboards", &[])
        .await?
        .get(0);
    let stamped = f.stamped("dashboards", dashboard, 1).await?;
    assert!(
        stamped.contains(&"$exists".to_owned()) && stamped.contains(&"position_json".to_owned())
    );
    assert!(!stamped.contains(&"id".to_owned()) && !stamped.contains(&"uuid".to_owned()));
    let dbs: Uuid = f
        .client
        .query_one("SELECT uuid FROM dbs", &[])
        .await?
        .get(0);
    let stamped = f.stamped("dbs", dbs, 1).await?;
    assert!(stamped.contains(&"database_name".to_owned()));
    for local in [
        "sqlalchemy_uri",
        "password",
        "encrypted_extra",
        "server_cert",
    ] {
        assert!(!stamped.contains(&local.to_owned()), "dbs.{local} is local");
    }

    let again = f.setup().await?;
    assert!(again.is_noop(), "second run: {again}");
    assert!(setup::plan(&mut f.client, &f.options).await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn setup_dry_run_prints_every_statement_and_changes_nothing() -> TestResult {
    let mut f = fixture("eu", "dry_run").await?;
    f.seed().await?;
    let before = f.fingerprint().await?;
    let plan = setup::plan(&mut f.client, &f.options).await?;
    let script = plan.to_string();
    assert_eq!(
        f.fingerprint().await?,
        before,
        "a dry run changed the database"
    );
    for expected in [
        "CREATE SCHEMA replicator;",
        "INSERT INTO replicator.local_region (region) VALUES ('eu');",
        "CREATE TRIGGER replicator_version BEFORE INSERT OR DELETE OR UPDATE ON public.dashboards",
        "ALTER TABLE public.embedded_dashboards REPLICA IDENTITY FULL;",
        "UPDATE public.tables AS t SET uuid = gen_random_uuid()",
        &format!("CREATE PUBLICATION {} FOR TABLE", f.options.publication),
        &format!(
            "pg_create_logical_replication_slot('{}', 'pgoutput')",
            f.options.slot
        ),
    ] {
        assert!(script.contains(expected), "the plan lacks {expected:?}");
    }
    assert!(
        !script.contains(f.db.region().password()),
        "a plan never shows the password"
    );

    // What the plan printed is what the run executes, statement for statement.
    let report = setup::apply(&mut f.client, &plan).await?;
    assert_eq!(report.steps.len(), plan.steps().len());
    assert_eq!(
        setup::plan(&mut f.client, &f.options).await?.to_string(),
        "-- nothing to do\n"
    );
    Ok(())
}

#[tokio::test]
async fn setup_a_dashboard_is_versioned_field_by_field_once_per_transaction() -> TestResult {
    let mut f = fixture("us", "dashboard").await?;
    f.setup().await?;
    let uuid = Uuid::new_v4();
    f.client
        .execute(
            "INSERT INTO dashboards (dashboard_title, position_json, uuid) VALUES ('Sales', '{}', $1)",
            &[&uuid],
        )
        .await?;
    let (fields, clock) = f.versions("dashboards", uuid).await?;
    assert_eq!(clock, "{\"us\": 1}");
    let columns = f.int("SELECT count(*) FROM information_schema.columns WHERE table_schema = 'public' AND table_name = 'dashboards'").await?;
    let expected = usize::try_from(columns - 2 + 1)?; // without id and uuid, with $exists
    assert_eq!(fields.len(), expected, "{fields:?}");
    assert!(fields.iter().all(|(_, counter)| *counter == 1));

    let inserted_hlc = f.hlc("dashboards", uuid, "dashboard_title").await?;
    f.client
        .execute(
            "UPDATE dashboards SET dashboard_title = 'Sales 2025' WHERE uuid = $1",
            &[&uuid],
        )
        .await?;
    assert_eq!(f.stamped("dashboards", uuid, 2).await?, ["dashboard_title"]);
    assert_eq!(f.versions("dashboards", uuid).await?.1, "{\"us\": 2}");
    let title_hlc = f.hlc("dashboards", uuid, "dashboard_title").await?;
    assert!(title_hlc > inserted_hlc);

    // Two updates in one transaction: one dot, two fields, increasing hlcs.
    let tx = f.client.transaction().await?;
    tx.execute(
        "UPDATE dashboards SET dashboard_title = 'Sales EMEA' WHERE uuid = $1",
        &[&uuid],
    )
    .await?;
    tx.execute(
        "UPDATE dashboards SET css = '.x {}' WHERE uuid = $1",
        &[&uuid],
    )
    .await?;
    tx.commit().await?;
    assert_eq!(f.versions("dashboards", uuid).await?.1, "{\"us\": 3}");
    assert_eq!(
        f.stamped("dashboards", uuid, 3).await?,
        ["css", "dashboard_title"]
    );
    let (css_hlc, new_title_hlc) = (
        f.hlc("dashboards", uuid, "css").await?,
        f.hlc("dashboards", uuid, "dashboard_title").await?,
    );
    assert!(
        css_hlc > new_title_hlc && new_title_hlc > title_hlc,
        "later writes have greater hlcs"
    );

    // Writing the same value is no change.
    f.client
        .execute(
            "UPDATE dashboards SET position_json = '{}' WHERE uuid = $1",
            &[&uuid],
        )
        .await?;
    assert_eq!(f.versions("dashboards", uuid).await?.1, "{\"us\": 3}");

    f.client
        .execute("DELETE FROM dashboards WHERE uuid = $1", &[&uuid])
        .await?;
    assert_eq!(f.stamped("dashboards", uuid, 4).await?, ["$exists"]);
    let alive: bool = f
        .client
        .query_one(
            "SELECT alive FROM replicator.entity WHERE uuid = $1",
            &[&uuid],
        )
        .await?
        .get(0);
    assert!(!alive);
    let id = f
        .int("SELECT local_id FROM replicator.registry WHERE table_name = 'dashboards'")
        .await?;
    assert!(id > 0, "a deleted dashboard keeps its registry entry");
    Ok(())
}

#[tokio::test]
async fn setup_datasets_charts_and_dashboard_charts_stamp_only_what_changed() -> TestResult {
    let mut f = fixture("ap", "writes").await?;
    f.seed().await?;
    f.setup().await?;
    let dataset: Uuid = f
        .client
        .query_one("SELECT uuid FROM tables", &[])
        .await?
        .get(0);

    // perm strings and connection secrets are local: changing only them is no write at all.
    f.client
        .batch_execute("UPDATE tables SET perm = '[x].[y](id:9)', schema_perm = 'x'")
        .await?;
    f.client
        .batch_execute("UPDATE dbs SET sqlalchemy_uri = 'postgresql://other', password = '\\x02'")
        .await?;
    assert_eq!(
        f.int("SELECT count(*) FROM replicator.entity WHERE clock <> '{\"ap\": 1}'")
            .await?,
        0
    );
    f.client
        .batch_execute("UPDATE tables SET description = 'Sales facts', perm = 'z'")
        .await?;
    assert_eq!(f.stamped("tables", dataset, 2).await?, ["description"]);

    let chart: Uuid = f
        .client
        .query_one("SELECT uuid FROM slices", &[])
        .await?
        .get(0);
    f.client
        .batch_execute("UPDATE slices SET params = '{\"datasource\": \"1__table\", \"x\": 1}'")
        .await?;
    assert_eq!(f.stamped("slices", chart, 2).await?, ["params"]);

    // dashboard_slices is named by the uuids it joins; removing and re-adding a chart is the
    // same entity coming back.
    let link = f.int("SELECT id::bigint FROM dashboard_slices").await?;
    let link_uuid = f
        .registered("dashboard_slices", i32::try_from(link)?)
        .await?
        .ok_or("registered")?;
    let dashboard: Uuid = f
        .client
        .query_one("SELECT uuid FROM dashboards", &[])
        .await?
        .get(0);
    assert_eq!(
        link_uuid,
        name_uuid(&format!("dashboard_slices:{dashboard}:{chart}"))
    );
    f.client
        .batch_execute("DELETE FROM dashboard_slices")
        .await?;
    assert_eq!(
        f.stamped("dashboard_slices", link_uuid, 2).await?,
        ["$exists"]
    );
    f.client
        .batch_execute("INSERT INTO dashboard_slices (dashboard_id, slice_id) SELECT d.id, s.id FROM dashboards d, slices s")
        .await?;
    let readded = f.int("SELECT id::bigint FROM dashboard_slices").await?;
    assert_ne!(readded, link);
    assert_eq!(
        f.registered("dashboard_slices", i32::try_from(readded)?)
            .await?,
        Some(link_uuid)
    );
    let (fields, clock) = f.versions("dashboard_slices", link_uuid).await?;
    assert_eq!(clock, "{\"ap\": 3}");
    assert!(
        fields.contains(&("$exists".to_owned(), 3)) && fields.contains(&("slice_id".to_owned(), 3))
    );
    Ok(())
}

#[tokio::test]
async fn setup_the_appliers_writes_are_registered_but_never_versioned() -> TestResult {
    let mut f = fixture("eu", "applier").await?;
    f.setup().await?;
    let uuid = Uuid::new_v4();
    f.client
        .batch_execute("SET replicator.applying = on")
        .await?;
    f.client
        .execute(
            "INSERT INTO dashboards (dashboard_title, uuid) VALUES ('From us', $1)",
            &[&uuid],
        )
        .await?;
    f.client
        .execute(
            "UPDATE dashboards SET dashboard_title = 'From us 2' WHERE uuid = $1",
            &[&uuid],
        )
        .await?;
    let id: i32 = f
        .client
        .query_one("SELECT id FROM dashboards WHERE uuid = $1", &[&uuid])
        .await?
        .get(0);
    assert_eq!(
        f.registered("dashboards", id).await?,
        Some(uuid),
        "the registry is kept for the applier"
    );
    assert_eq!(
        f.versions("dashboards", uuid).await?,
        (vec![], String::new()),
        "nothing versioned"
    );
    // Even in a replica-role session (triggers are ENABLE ALWAYS).
    f.client
        .batch_execute("SET session_replication_role = replica")
        .await?;
    f.client
        .batch_execute(
            "INSERT INTO dashboards (dashboard_title, uuid) VALUES ('Replica', gen_random_uuid())",
        )
        .await?;
    let registered = f
        .int("SELECT count(*) FROM replicator.registry WHERE table_name = 'dashboards'")
        .await?;
    assert_eq!(registered, 2);

    f.client
        .batch_execute("RESET session_replication_role; RESET replicator.applying")
        .await?;
    f.client
        .execute(
            "UPDATE dashboards SET dashboard_title = 'Local edit' WHERE uuid = $1",
            &[&uuid],
        )
        .await?;
    assert_eq!(f.stamped("dashboards", uuid, 1).await?, ["dashboard_title"]);
    Ok(())
}

#[tokio::test]
async fn setup_identities_agree_across_regions() -> TestResult {
    let (dashboard, chart) = (Uuid::new_v4(), Uuid::new_v4());
    let mut names = Vec::new();
    for (region, users_before) in [("us", 0), ("eu", 2)] {
        let mut f = fixture(region, "identity").await?;
        f.setup().await?;
        // Local ids differ between the regions: eu has two other users first.
        for n in 0..users_before {
            f.client
                .execute(
                    "INSERT INTO ab_user (id, first_name, last_name, username, email)
                     VALUES (nextval('ab_user_id_seq'), 'x', 'y', $1, $1)",
                    &[&format!("other{n}")],
                )
                .await?;
        }
        f.client
            .execute(
                "INSERT INTO ab_user (id, first_name, last_name, username, email)
                   VALUES (nextval('ab_user_id_seq'), 'Ada', 'Admin', 'admin', 'admin@example.com')",
                &[],
            )
            .await?;
        f.client
            .execute(
                "INSERT INTO dashboards (dashboard_title, uuid) VALUES ('d', $1)",
                &[&dashboard],
            )
            .await?;
        f.client
            .execute(
                "INSERT INTO slices (slice_name, datasource_type, uuid) VALUES ('c', 'table', $1)",
                &[&chart],
            )
            .await?;
        f.client
            .batch_execute(
                "INSERT INTO dashboard_slices (dashboard_id, slice_id) SELECT d.id, s.id FROM dashboards d, slices s;
                 INSERT INTO themes (theme_name, is_system, is_system_default, is_system_dark, uuid)
                   VALUES ('THEME_DARK', true, false, true, gen_random_uuid());
                 INSERT INTO tag (name, type) SELECT 'owner:' || id, 'owner' FROM ab_user WHERE username = 'admin';",
            )
            .await?;
        let mut row = Vec::new();
        for table in ["ab_user", "dashboard_slices", "themes", "tag"] {
            let uuid: Uuid = f
                .client
                .query_one(
                    &format!("SELECT r.uuid FROM replicator.registry r JOIN public.{table} t ON t.id = r.local_id
                              WHERE r.table_name = '{table}' ORDER BY t.id DESC LIMIT 1"),
                    &[],
                )
                .await?
                .get(0);
            row.push(uuid);
        }
        names.push(row);
    }
    assert_eq!(names[0], names[1], "us and eu name the same rows alike");
    let user = name_uuid("ab_user:admin");
    assert_eq!(
        names[0],
        [
            user,
            name_uuid(&format!("dashboard_slices:{dashboard}:{chart}")),
            name_uuid("themes:THEME_DARK"),
            name_uuid(&format!("tag:owner:{user}")),
        ],
        "the SQL formulas and policy::name_uuid agree"
    );
    Ok(())
}

#[tokio::test]
async fn setup_superset_can_still_update_and_delete_embedded_dashboards_once_published(
) -> TestResult {
    let mut f = fixture("us", "embedded").await?;
    f.seed().await?;
    let report = f.setup().await?;
    assert!(report.steps.iter().any(|s| s
        .summary
        .contains("REPLICA IDENTITY FULL on embedded_dashboards")));
    let identity = f.text("SELECT relreplident::text FROM pg_class WHERE oid = 'public.embedded_dashboards'::regclass").await?;
    assert_eq!(identity, "f");
    let published = f
        .int(&format!(
            "SELECT count(*) FROM pg_publication_tables WHERE pubname = '{}' AND tablename = 'embedded_dashboards'",
            f.options.publication
        ))
        .await?;
    assert_eq!(published, 1);
    let uuid: Uuid = f
        .client
        .query_one("SELECT uuid FROM embedded_dashboards", &[])
        .await?
        .get(0);
    // Superset's own calls (facts §1): these failed with "does not have a replica identity".
    f.client
        .batch_execute("UPDATE embedded_dashboards SET allow_domain_list = 'https://example.com'")
        .await?;
    assert_eq!(
        f.stamped("embedded_dashboards", uuid, 2).await?,
        ["allow_domain_list"]
    );
    f.client
        .batch_execute("DELETE FROM embedded_dashboards")
        .await?;
    assert_eq!(
        f.stamped("embedded_dashboards", uuid, 3).await?,
        ["$exists"]
    );
    Ok(())
}

#[tokio::test]
async fn setup_the_publication_holds_exactly_the_policy_and_is_repaired_when_it_drifts(
) -> TestResult {
    let mut f = fixture("eu", "publication").await?;
    f.setup().await?;
    let publication = f.options.publication.to_string();
    let tables = f.published().await?;
    let names: BTreeSet<&str> = tables.iter().map(|(t, _)| t.as_str()).collect();
    let mut expected: BTreeSet<String> = superset()
        .replicated()
        .map(|(t, _)| t)
        .chain(superset().registry().map(|(t, _)| t))
        .map(|t| format!("public.{t}"))
        .collect();
    expected.extend(
        ["registry", "entity", "field_version", "heartbeat"].map(|t| format!("replicator.{t}")),
    );
    assert_eq!(names, expected.iter().map(String::as_str).collect());
    let columns = |table: &str| {
        tables
            .iter()
            .find(|(t, _)| t == table)
            .map(|(_, c)| c.split(',').map(str::to_owned).collect::<BTreeSet<_>>())
    };
    assert_eq!(
        columns("public.ab_user"),
        Some(["id".to_owned(), "username".to_owned()].into())
    );
    assert_eq!(
        columns("public.ab_role"),
        Some(["id".to_owned(), "name".to_owned()].into())
    );
    let dbs = columns("public.dbs").ok_or("dbs is published")?;
    assert!(dbs.contains("database_name") && dbs.contains("id") && dbs.contains("uuid"));
    for secret in [
        "sqlalchemy_uri",
        "password",
        "encrypted_extra",
        "server_cert",
    ] {
        assert!(!dbs.contains(secret), "dbs.{secret} is published");
    }
    assert!(!columns("public.slices").ok_or("slices")?.contains("perm"));
    assert!(columns("public.dashboards")
        .ok_or("dashboards")?
        .contains("position_json"));

    // Someone edits the publication and drops a trigger: setup puts both back, and only them.
    f.client
        .batch_execute(&format!(
            "ALTER PUBLICATION {publication} DROP TABLE public.dashboards;
             ALTER PUBLICATION {publication} ADD TABLE public.logs;
             DROP TRIGGER replicator_version ON public.slices;"
        ))
        .await?;
    let repair = f.setup().await?;
    let summaries: Vec<&str> = repair.steps.iter().map(|s| s.summary.as_str()).collect();
    assert_eq!(
        summaries,
        [
            "install capture on slices",
            &format!("make publication {publication} publish exactly the policy's tables")
        ]
    );
    assert_eq!(f.published().await?, tables);
    assert!(f.setup().await?.is_noop());
    Ok(())
}

#[tokio::test]
async fn setup_the_stream_carries_the_versioning_rows_with_the_data_row() -> TestResult {
    let mut f = fixture("ap", "stream").await?;
    f.seed().await?;
    f.setup().await?;
    f.client
        .batch_execute("UPDATE dashboards SET dashboard_title = 'Streamed'")
        .await?;
    let (slot, publication) = (
        f.options.slot.to_string(),
        f.options.publication.to_string(),
    );
    let payloads: Vec<Vec<u8>> = wait_until(
        "the update to reach the slot",
        Duration::from_secs(30),
        || {
            let (client, slot, publication) = (&f.client, &slot, &publication);
            async move {
                let rows = client
                    .query(
                        "SELECT data FROM pg_logical_slot_peek_binary_changes($1, NULL, NULL,
                       'proto_version', '1', 'publication_names', $2)",
                        &[slot, publication],
                    )
                    .await
                    .map_err(|e| HarnessError::Other(e.to_string()))?;
                let payloads: Vec<Vec<u8>> = rows.iter().map(|r| r.get(0)).collect();
                Ok((!payloads.is_empty()).then_some(payloads))
            }
        },
    )
    .await?;
    let mut decoder = StreamDecoder::new(ProtocolVersion::V1);
    let mut relations = RelationCache::new();
    let mut changes = Vec::new();
    for payload in payloads {
        let message = decoder.decode(Bytes::from(payload))?;
        relations.observe(&message);
        let (relation, tuple) = match &message {
            LogicalMessage::Insert(insert) => (insert.relation, &insert.new),
            LogicalMessage::Update(update) => (update.relation, &update.new),
            _ => continue,
        };
        let row = relations.resolve(relation, tuple)?;
        let field = match row.get("field").map(|c| c.value) {
            Some(ColumnValue::Text(text)) => String::from_utf8(text.to_vec())?,
            _ => String::new(),
        };
        changes.push(
            format!("{}.{} {field}", row.relation.namespace, row.relation.name)
                .trim_end()
                .to_owned(),
        );
    }
    assert_eq!(
        changes,
        [
            "replicator.entity",
            "replicator.field_version dashboard_title",
            "public.dashboards"
        ],
        "one transaction: the clock and the one field it changed, then the data row"
    );
    Ok(())
}

#[tokio::test]
async fn setup_refuses_a_foreign_slot_and_a_new_region_for_a_database() -> TestResult {
    let mut f = fixture("us", "refusals").await?;
    f.client
        .execute(
            "SELECT pg_create_logical_replication_slot($1, 'test_decoding')",
            &[&f.options.slot.as_str()],
        )
        .await?;
    let error = f
        .setup()
        .await
        .err()
        .ok_or("setup accepted a test_decoding slot")?;
    assert!(
        matches!(error, replicator::Error::SlotPlugin { .. }),
        "{error}"
    );
    assert_eq!(error.action(), Action::Operator);
    let schemas = f
        .int("SELECT count(*) FROM pg_namespace WHERE nspname = 'replicator'")
        .await?;
    assert_eq!(schemas, 0, "a refused setup changes nothing");

    f.client
        .execute(
            "SELECT pg_drop_replication_slot($1)",
            &[&f.options.slot.as_str()],
        )
        .await?;
    f.setup().await?;
    let plugin = f
        .text(&format!(
            "SELECT plugin || ' ' || database FROM pg_replication_slots WHERE slot_name = '{}'",
            f.options.slot
        ))
        .await?;
    assert_eq!(plugin, format!("pgoutput {}", f.db.name()));

    f.options.region = RegionId::new("eu")?;
    let error = f.setup().await.err().ok_or("setup changed the region")?;
    assert!(
        matches!(error, replicator::Error::RegionMismatch { .. }),
        "{error}"
    );
    assert!(error.hint().contains("--region us"), "{}", error.hint());
    let changed = f
        .client
        .batch_execute("UPDATE replicator.local_region SET region = 'eu'")
        .await;
    assert!(changed.is_err(), "the database refuses too");
    Ok(())
}
