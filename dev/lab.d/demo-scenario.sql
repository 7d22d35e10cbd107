-- The demo's scenario, run in region us: what a Superset user builds through the UI, written the
-- way Superset's ORM writes it. A database connection, two datasets, three charts, and a
-- dashboard laying them out with two native filters (one scoped with chartsInScope), a
-- cross-filter configuration, an expanded chart and two owners.
\set ON_ERROR_STOP on
BEGIN;
INSERT INTO dbs (database_name, sqlalchemy_uri, uuid, created_by_fk)
  SELECT 'examples', 'postgresql://examples-us/examples', '0d0d0d0d-0000-4000-8000-00000000db01', id
  FROM ab_user WHERE username = 'admin';
INSERT INTO tables (table_name, schema, database_id, uuid, created_on)
  SELECT t.name, 'public', d.id, gen_random_uuid(), now()
  FROM dbs d, (VALUES ('sales'), ('visits')) AS t (name) WHERE d.database_name = 'examples';
INSERT INTO slices (slice_name, viz_type, datasource_type, datasource_id, uuid)
  SELECT c.name, 'table', 'table', t.id, gen_random_uuid()
  FROM (VALUES ('Revenue by region', 'sales'), ('Orders', 'sales'), ('Visits per day', 'visits')) AS c (name, ds)
  JOIN tables t ON t.table_name = c.ds;
UPDATE slices s SET params = json_build_object('datasource', s.datasource_id || '__table', 'viz_type', 'table')::text;
INSERT INTO dashboards (dashboard_title, slug, published, uuid, created_on, position_json, json_metadata)
  SELECT 'Sales overview', 'sales-overview', true, gen_random_uuid(), now(),
    json_build_object(
      'DASHBOARD_VERSION_KEY', 'v2',
      'ROOT_ID', json_build_object('type', 'ROOT', 'id', 'ROOT_ID', 'children', json_build_array('GRID_ID')),
      'GRID_ID', json_build_object('type', 'GRID', 'id', 'GRID_ID', 'children', json_build_array('ROW-1')),
      'ROW-1', json_build_object('type', 'ROW', 'id', 'ROW-1', 'children', json_build_array('CHART-1', 'CHART-2', 'CHART-3')),
      'CHART-1', json_build_object('type', 'CHART', 'id', 'CHART-1', 'meta', json_build_object('chartId', c1.id, 'uuid', c1.uuid, 'width', 4, 'height', 50)),
      'CHART-2', json_build_object('type', 'CHART', 'id', 'CHART-2', 'meta', json_build_object('chartId', c2.id, 'uuid', c2.uuid, 'width', 4, 'height', 50)),
      'CHART-3', json_build_object('type', 'CHART', 'id', 'CHART-3', 'meta', json_build_object('chartId', c3.id, 'uuid', c3.uuid, 'width', 4, 'height', 50))
    )::text,
    json_build_object(
      'native_filter_configuration', json_build_array(
        json_build_object('id', 'NATIVE_FILTER-region', 'name', 'Region',
          'targets', json_build_array(json_build_object('datasetId', c1.datasource_id, 'column', json_build_object('name', 'region'))),
          'scope', json_build_object('rootPath', json_build_array('ROOT_ID'), 'excluded', json_build_array(c3.id)),
          'chartsInScope', json_build_array(c1.id, c2.id)),
        json_build_object('id', 'NATIVE_FILTER-day', 'name', 'Day',
          'targets', json_build_array(json_build_object('datasetId', c3.datasource_id, 'column', json_build_object('name', 'day'))),
          'scope', json_build_object('rootPath', json_build_array('ROOT_ID'), 'excluded', json_build_array()),
          'chartsInScope', json_build_array(c3.id))),
      'chart_configuration', json_build_object(c1.id::text, json_build_object('id', c1.id,
          'crossFilters', json_build_object('scope', 'global', 'chartsInScope', json_build_array(c2.id, c3.id)))),
      'expanded_slices', json_build_object(c3.id::text, true),
      'color_scheme', 'supersetColors'
    )::text
  FROM slices c1, slices c2, slices c3
  WHERE c1.slice_name = 'Revenue by region' AND c2.slice_name = 'Orders' AND c3.slice_name = 'Visits per day';
INSERT INTO dashboard_slices (dashboard_id, slice_id)
  SELECT d.id, s.id FROM dashboards d, slices s WHERE d.slug = 'sales-overview';
INSERT INTO dashboard_user (dashboard_id, user_id)
  SELECT d.id, u.id FROM dashboards d, ab_user u WHERE d.slug = 'sales-overview';
COMMIT;
