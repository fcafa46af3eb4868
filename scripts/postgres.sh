#!/usr/bin/env bash
# Start a local PostgreSQL server for the tests that need a real one (Optuna RDB storage), installing Debian's
# `postgresql` package if it is missing, and write its URL to .venv/postgres_url. Idempotent. Needs root (apt, service).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v pg_ctlcluster > /dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql > /dev/null
fi
service postgresql start > /dev/null
for _ in $(seq 30); do su postgres -c "psql -tAc 'select 1'" > /dev/null 2>&1 && break; sleep 1; done
su postgres -c "psql -tAc \"select 1 from pg_roles where rolname = 'neppo'\"" | grep -q 1 ||
    su postgres -c "psql -q -c \"create role neppo login superuser password 'neppo'\""
mkdir -p .venv
echo "postgresql://neppo:neppo@127.0.0.1:5432/postgres" > .venv/postgres_url
echo "PostgreSQL ready: $(cat .venv/postgres_url)"
