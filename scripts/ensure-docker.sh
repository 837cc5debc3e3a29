#!/usr/bin/env bash
# Make sure a Docker daemon answers on $DOCKER_HOST (or the default socket).
# On a machine without systemd we install Debian's docker.io and start dockerd ourselves.
# Idempotent: prints nothing when Docker already answers.
set -euo pipefail
LOG_TAG=docker
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

DOCKERD_LOG=${DOCKERD_LOG:-/var/log/dockerd.log}
DOCKER_READY_TIMEOUT_S=${DOCKER_READY_TIMEOUT_S:-30}

# docker-compose (Debian's 1.29) validates deploy/compose/docker-compose.yml in the tests;
# docker.io ships no compose plugin.
if ! command -v docker-compose >/dev/null 2>&1; then
  apt_install docker-compose || die "could not install docker-compose"
fi

docker info >/dev/null 2>&1 && exit 0

if ! docker_uses_local_daemon; then
  die "DOCKER_HOST=$DOCKER_HOST does not answer and is not this machine's default socket; start that daemon yourself"
fi

if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then
  apt_install docker.io || die "could not install docker.io"
fi

if pgrep -x dockerd >/dev/null 2>&1; then
  # A daemon that is still starting (or stuck) owns the pid file; give it the same grace period
  # rather than starting a second one that would fail on the lock.
  log "dockerd is running but not answering yet; waiting"
else
  log "starting dockerd (log: $DOCKERD_LOG)"
  setsid dockerd >"$DOCKERD_LOG" 2>&1 </dev/null &
fi

if ! wait_for "$DOCKER_READY_TIMEOUT_S" docker info; then
  echo "---- last lines of $DOCKERD_LOG ----" >&2
  tail -n 30 "$DOCKERD_LOG" >&2 || true
  die "dockerd did not answer within ${DOCKER_READY_TIMEOUT_S}s"
fi
log "dockerd is up ($(docker version -f '{{.Server.Version}}' 2>/dev/null))"
