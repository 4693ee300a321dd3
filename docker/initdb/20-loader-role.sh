#!/usr/bin/env bash
# Run by the postgres image on first start, after 10-postgres_setup.sql: a LOGIN role for the
# pipeline, member of the least-privilege group role ingest_loader.
set -euo pipefail
: "${POSTGRES_LOADER_USER:?set POSTGRES_LOADER_USER in .env}"
: "${POSTGRES_LOADER_PASSWORD:?set POSTGRES_LOADER_PASSWORD in .env}"
psql -v ON_ERROR_STOP=1 --no-psqlrc --username "${POSTGRES_USER:-postgres}" \
  --dbname "${POSTGRES_DB:-postgres}" \
  -v user="$POSTGRES_LOADER_USER" -v password="$POSTGRES_LOADER_PASSWORD" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L IN ROLE ingest_loader', :'user', :'password')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'user') \gexec
SQL
