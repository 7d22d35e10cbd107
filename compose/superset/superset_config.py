# Superset configuration for one region of the compose stack (profile `superset`). The region's
# settings come from the environment compose.yaml sets; the secrets from files under
# /run/secrets (compose `secrets:`), never from this file.
import os


def _secret(name: str) -> str:
    with open(f"/run/secrets/{name}", encoding="utf-8") as handle:
        return handle.read().strip()


_region = os.environ["SUPERSET_REGION"]
_db_host = os.environ.get("SUPERSET_DB_HOST", f"postgres-{_region}")

# Each region's metadata database. The password is URL-safe (compose/make-secrets makes it so).
SQLALCHEMY_DATABASE_URI = (
    f"postgresql+psycopg2://superset:{_secret('superset_db_password')}@{_db_host}:5432/superset"
)

# Each region has its own SECRET_KEY: columns encrypted with it (a database connection's password)
# are never replicated (docs/security.md).
SECRET_KEY = _secret(f"superset_secret_key_{_region}")

# The features whose tables the replicator covers (tags, embedded dashboards).
FEATURE_FLAGS = {
    "TAGGING_SYSTEM": True,
    "EMBEDDED_SUPERSET": True,
}

# A demonstration stack: no Redis; the simple in-process cache.
CACHE_CONFIG = {"CACHE_TYPE": "SimpleCache"}
DATA_CACHE_CONFIG = CACHE_CONFIG
WTF_CSRF_ENABLED = True
