#!/usr/bin/env bash
# Run once by the postgres image's entrypoint, on the first start of an empty data volume, after
# 10-superset-schema.sql loaded Superset's schema. Creates the sidecar's login role with the
# REPLICATION attribute and the password from the `replicator_db_password` secret. Its
# privileges are granted by the `grant-<region>` service after `replicator setup` has created
# schema `replicator` (compose/postgres/grant-sidecar.sql).
set -e
replicator_password=$(cat /run/secrets/replicator_db_password)
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v password="$replicator_password" <<'SQL'
CREATE ROLE replicator LOGIN REPLICATION PASSWORD :'password';
SQL
unset replicator_password
