#!/usr/bin/env bash
# Make sure the services the tests use answer on loopback:
#   PostgreSQL on 127.0.0.1:5432, user postgres without a password (trust), database `test`
#   Redis on 127.0.0.1:6379, no persistence
# There is no systemd here, so each is installed from Debian if absent and started directly.
# Idempotent: prints nothing when both already answer.
set -euo pipefail
LOG_TAG=services
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

PG_HOST=127.0.0.1
PG_PORT=5432
PG_DATABASE='test'
REDIS_PORT=6379

pg_sql() { psql -h "$PG_HOST" -p "$PG_PORT" -U postgres -d postgres -XtAq -w "$@"; }

pg_version() { ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1; }

ensure_postgres() {
  local version
  if ! pg_isready -q -h "$PG_HOST" -p "$PG_PORT" 2>/dev/null; then
    command -v pg_ctlcluster >/dev/null 2>&1 && [ -n "$(pg_version)" ] \
      || apt_install postgresql || die "could not install postgresql"
    version=$(pg_version)
    [ -n "$version" ] || die "no PostgreSQL version under /etc/postgresql"
    if [ ! -d "/etc/postgresql/$version/main" ]; then
      log "creating PostgreSQL $version cluster main"
      pg_createcluster "$version" main >/dev/null
    fi
    # The package's install may already have started it: only start what is down.
    if ! pg_isready -q -h "$PG_HOST" -p "$PG_PORT" 2>/dev/null; then
      log "starting PostgreSQL $version/main"
      pg_ctlcluster --skip-systemctl-redirect "$version" main start
    fi
    wait_for 30 pg_isready -q -h "$PG_HOST" -p "$PG_PORT" || die "PostgreSQL did not accept connections on $PG_HOST:$PG_PORT within 30s"
  fi

  if ! pg_sql -c 'select 1' >/dev/null 2>&1; then
    # Debian's default asks loopback clients for a password; the tests connect as postgres with
    # none, which is acceptable only because the server listens on loopback alone.
    version=$(pg_version)
    local hba=/etc/postgresql/$version/main/pg_hba.conf
    [ -f "$hba" ] || die "cannot log in as postgres on $PG_HOST and there is no $hba to fix it"
    log "allowing trust auth on loopback in $hba"
    sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
    pg_ctlcluster --skip-systemctl-redirect "$version" main reload
    wait_for 10 pg_sql -c 'select 1' || die "still cannot log in as postgres on $PG_HOST:$PG_PORT"
  fi

  if [ "$(pg_sql -c "select 1 from pg_database where datname = '$PG_DATABASE'")" != 1 ]; then
    log "creating database $PG_DATABASE"
    pg_sql -c "create database $PG_DATABASE" >/dev/null
  fi
}

redis_up() { [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]; }

ensure_redis() {
  redis_up && return 0
  command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1 \
    || apt_install redis-server || die "could not install redis-server"
  # The package's own start (where it happened) may be up by now.
  redis_up && return 0
  mkdir -p /var/lib/redis /var/log/redis
  log "starting redis-server on 127.0.0.1:$REDIS_PORT"
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" --save "" \
    --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
  if ! wait_for 15 redis_up; then
    tail -n 20 /var/log/redis/ci.log >&2 || true
    die "Redis did not answer on 127.0.0.1:$REDIS_PORT within 15s"
  fi
}

ensure_postgres
ensure_redis
