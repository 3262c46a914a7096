#!/usr/bin/env bash
# Start a throwaway PostgreSQL server on 127.0.0.1 (Debian's postgresql packages) and
# print the SQLAlchemy URL of an empty database for the tests on stdout.
# Idempotent: reuses the cluster, role and database when they exist. Runs as root.
set -euo pipefail
PORT="${LRF_OPTUNA_PG_PORT:-54329}"
CLUSTER=lrf
USER_NAME=lrf
PASSWORD=lrf
DB=lrf_optuna

VERSION="$(ls /usr/lib/postgresql | sort -V | tail -n 1)"
if [ -z "$VERSION" ]; then
  echo "postgres.sh: no PostgreSQL server installed (apt-get install -y postgresql)" >&2
  exit 1
fi
if ! pg_lsclusters -h | awk '{print $1 "/" $2}' | grep -qx "$VERSION/$CLUSTER"; then
  pg_createcluster -p "$PORT" "$VERSION" "$CLUSTER" -- --auth-local=peer --auth-host=scram-sha-256 >&2
fi
# 127.0.0.1 only: the test server is never reachable from outside this machine.
printf "listen_addresses = '127.0.0.1'\nmax_connections = 200\n" \
  >"/etc/postgresql/$VERSION/$CLUSTER/conf.d/lrf_optuna.conf"
if ! pg_lsclusters -h | awk '{print $1 "/" $2 " " $4}' | grep -qx "$VERSION/$CLUSTER online"; then
  pg_ctlcluster "$VERSION" "$CLUSTER" start >&2
fi

psql_as_postgres() { runuser -u postgres -- psql -p "$PORT" -v ON_ERROR_STOP=1 -qtA "$@"; }
if [ -z "$(psql_as_postgres -c "SELECT 1 FROM pg_roles WHERE rolname = '$USER_NAME'")" ]; then
  psql_as_postgres -c "CREATE ROLE $USER_NAME LOGIN PASSWORD '$PASSWORD'"
fi
if [ -z "$(psql_as_postgres -c "SELECT 1 FROM pg_database WHERE datname = '$DB'")" ]; then
  psql_as_postgres -c "CREATE DATABASE $DB OWNER $USER_NAME"
fi
echo "postgresql+psycopg2://$USER_NAME:$PASSWORD@127.0.0.1:$PORT/$DB"
