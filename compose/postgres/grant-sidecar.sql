-- The privileges of the sidecar's own database role, for `replicator run` (and `capture`,
-- `apply`, `snapshot`): least privilege, as docs/security.md explains. Run it as the role that
-- ran `replicator setup` (the owner of Superset's tables), in the metadata database, AFTER setup
-- (schema `replicator` must exist). Every statement is idempotent: run it again after each
-- `replicator setup` (a newer replicator may add tables to schema `replicator`).
--
--   psql -v ON_ERROR_STOP=1 -v role=replicator -d superset -f grant-sidecar.sql
--
-- The role itself is created beforehand, by a superuser, with the REPLICATION attribute (the
-- reader streams the logical slot over a walsender connection):
--
--   CREATE ROLE replicator LOGIN REPLICATION PASSWORD '...';
--
-- The two GRANTs on pg_replication_origin_* functions need a superuser (only superusers hold them
-- by default in PostgreSQL 15).

\set ON_ERROR_STOP 1
\if :{?role}
\else
  \set role replicator
\endif
SELECT current_database() AS db \gset

GRANT CONNECT ON DATABASE :"db" TO :"role";
GRANT USAGE ON SCHEMA public TO :"role";

-- The replicated tables: the applier inserts, updates and deletes their rows; the reader and
-- `snapshot` read them.
GRANT SELECT, INSERT, UPDATE, DELETE ON
    public.dbs, public.tables, public.table_columns, public.sql_metrics, public.themes,
    public.css_templates, public.slices, public.dashboards, public.dashboard_slices,
    public.dashboard_user, public.dashboard_roles, public.slice_user, public.sqlatable_user,
    public.embedded_dashboards, public.saved_query, public.tag, public.tagged_object,
    public.row_level_security_filters, public.rls_filter_tables, public.rls_filter_roles
    TO :"role";
GRANT USAGE ON SEQUENCE
    public.dbs_id_seq, public.tables_id_seq, public.table_columns_id_seq,
    public.sql_metrics_id_seq, public.themes_id_seq, public.css_templates_id_seq,
    public.slices_id_seq, public.dashboards_id_seq, public.dashboard_slices_id_seq,
    public.dashboard_user_id_seq, public.dashboard_roles_id_seq, public.slice_user_id_seq,
    public.sqlatable_user_id_seq, public.saved_query_id_seq, public.tag_id_seq,
    public.tagged_object_id_seq, public.row_level_security_filters_id_seq,
    public.rls_filter_tables_id_seq, public.rls_filter_roles_id_seq
    TO :"role";

-- Users and roles are matched by username and role name; never written.
GRANT SELECT ON public.ab_user, public.ab_role TO :"role";

-- The permission rows Superset's own hooks derive from datasets and databases, which the applier
-- recreates in this region's terms (docs/apply.md, "Write").
GRANT SELECT, INSERT ON public.ab_permission TO :"role";
GRANT SELECT, INSERT, UPDATE, DELETE ON public.ab_view_menu TO :"role";
GRANT SELECT, INSERT, DELETE ON public.ab_permission_view TO :"role";
GRANT SELECT, DELETE ON public.ab_permission_view_role TO :"role";
GRANT USAGE ON SEQUENCE
    public.ab_permission_id_seq, public.ab_view_menu_id_seq, public.ab_permission_view_id_seq
    TO :"role";

-- The sidecar's own schema, created by `replicator setup`: clocks, registry, positions, parked
-- transactions, quarantine, conflict log, heartbeats.
GRANT USAGE ON SCHEMA replicator TO :"role";
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA replicator TO :"role";
GRANT USAGE ON ALL SEQUENCES IN SCHEMA replicator TO :"role";
-- Tables a later `replicator setup` adds (it runs as this same role) get the same grants.
ALTER DEFAULT PRIVILEGES IN SCHEMA replicator
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO :"role";
ALTER DEFAULT PRIVILEGES IN SCHEMA replicator GRANT USAGE ON SEQUENCES TO :"role";

-- The applier writes under a replication origin, so this region's reader does not publish its
-- writes again. Superuser-only by default; a superuser can grant them.
GRANT EXECUTE ON FUNCTION pg_catalog.pg_replication_origin_create(text) TO :"role";
GRANT EXECUTE ON FUNCTION pg_catalog.pg_replication_origin_session_setup(text) TO :"role";
