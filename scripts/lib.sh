# shellcheck shell=bash
# Shared helpers for the machine set-up scripts; sourced, never run.
# Every script prints one short line per action it takes and nothing when all is in place.

log() { printf '[%s] %s\n' "${LOG_TAG:-setup}" "$*" >&2; }
warn() { printf '[%s] WARNING: %s\n' "${LOG_TAG:-setup}" "$*" >&2; }
die() { printf '[%s] ERROR: %s\n' "${LOG_TAG:-setup}" "$*" >&2; exit 1; }

# apt_install PKG...: install Debian packages, running `apt-get update` only when the install
# fails without it (a fresh machine may have no lists; a warm one should not pay for a refresh).
# Returns non-zero (after printing apt's complaint) when the packages cannot be installed.
apt_install() {
  log "apt-get install $*"
  if DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >/dev/null 2>&1; then
    return 0
  fi
  log "install failed with the current package lists; running apt-get update"
  apt_update || return 1
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >/dev/null
}

# apt_update: refresh package lists once per process tree (APT_UPDATED is exported).
apt_update() {
  [ "${APT_UPDATED:-}" = 1 ] && return 0
  apt-get update -q >/dev/null || return 1
  export APT_UPDATED=1
}

# wait_for SECONDS CMD...: poll CMD every half second until it succeeds or time runs out.
wait_for() {
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -ge "$deadline" ] && return 1
    sleep 0.5
  done
}

# docker_uses_local_daemon: true when the CLI talks to this machine's default socket, so that
# starting or reconfiguring dockerd here actually affects it.
docker_uses_local_daemon() {
  case "${DOCKER_HOST:-}" in
    "" | unix:///var/run/docker.sock | unix:///run/docker.sock) return 0 ;;
    *) return 1 ;;
  esac
}
