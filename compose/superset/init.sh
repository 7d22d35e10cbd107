#!/bin/sh
# One-shot initialisation of one region's Superset (service superset-init-<region>, profile
# `superset`). Safe to run again: every step checks or is idempotent.
set -eu

# The postgres service loaded Superset 6.1's schema from the fixture (alembic head 4b2a8c9d3e1f)
# without its alembic_version row: record that revision once, so `db upgrade` starts from it
# (and applies only the migrations of a newer Superset image, if any).
if ! superset db current 2>/dev/null | grep -Eq '^[0-9a-f]{12}'; then
    superset db stamp 4b2a8c9d3e1f
fi
superset db upgrade

# The same admin username in every region: users are matched across regions by username.
if ! superset fab list-users 2>/dev/null | grep -q 'username:admin '; then
    superset fab create-admin --username admin --firstname Admin --lastname User \
        --email admin@example.invalid --password "$(cat /run/secrets/superset_admin_password)"
fi
superset init
