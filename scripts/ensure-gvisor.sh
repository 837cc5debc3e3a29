#!/usr/bin/env bash
# Register Debian's gVisor (`runsc`) with the local dockerd as runtime "runsc", when that can be
# done safely, and prove it with one container run. gVisor is an extra isolation class, not a
# requirement: whatever goes wrong here is a warning and the script still exits 0.
# Idempotent: prints nothing when runsc is registered and runs containers.
set -euo pipefail
LOG_TAG=gvisor
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

DAEMON_JSON=${DOCKER_DAEMON_JSON:-/etc/docker/daemon.json}
RUNSC_PATH=/usr/bin/runsc
# ptrace: the KVM platform hangs on these VMs. network=none: the sandbox gets loopback only, so a
# gVisor agent has no network whatever Docker network it is attached to.
RUNSC_ARGS_JSON='["--platform=ptrace","--network=none"]'
CHECK_IMAGE=agent-platform/busybox:latest
CHECK_TIMEOUT_S=${GVISOR_CHECK_TIMEOUT_S:-60}

skip() { warn "$* -- gVisor (isolation class gvisor) will be unavailable"; exit 0; }

runtime_registered() { docker info -f '{{json .Runtimes}}' 2>/dev/null | grep -q '"runsc"'; }

# check_runsc: one real sandboxed container; a named container so a failed start can be removed.
check_runsc() {
  local name=gvisor-check-$$ out
  "$(dirname "$0")/build-images.sh" busybox
  if out=$(timeout "$CHECK_TIMEOUT_S" docker run --rm --name "$name" --runtime=runsc --network none \
      "$CHECK_IMAGE" sh -c 'echo gvisor-ok' 2>&1) && [ "$out" = gvisor-ok ]; then
    return 0
  fi
  docker rm -f "$name" >/dev/null 2>&1 || true
  printf '%s\n' "$out" | tail -n 10 >&2
  return 1
}

# merge_daemon_json: add or update runtimes.runsc, keeping every other setting; prints
# "changed" or "unchanged". Node is used because it is always here (python3 may not be).
merge_daemon_json() {
  node --input-type=module - "$DAEMON_JSON" "$RUNSC_PATH" "$RUNSC_ARGS_JSON" <<'JS'
import { readFileSync, writeFileSync, mkdirSync, renameSync } from 'node:fs';
import { dirname } from 'node:path';
const [file, path, argsJson] = process.argv.slice(2);
let text = '';
try { text = readFileSync(file, 'utf8'); } catch (e) { if (e.code !== 'ENOENT') throw e; }
let config;
try { config = text.trim() === '' ? {} : JSON.parse(text); } catch (e) {
  console.log(`${file} is not valid JSON (${e.message}); left as it is`);
  process.exit(1);
}
const wanted = { path, runtimeArgs: JSON.parse(argsJson) };
config.runtimes ??= {};
if (JSON.stringify(config.runtimes.runsc) === JSON.stringify(wanted)) {
  console.log('unchanged');
} else {
  config.runtimes.runsc = wanted;
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(`${file}.tmp`, JSON.stringify(config, null, 2) + '\n');
  renameSync(`${file}.tmp`, file);
  console.log('changed');
}
JS
}

# reload_dockerd: dockerd re-reads `runtimes` on SIGHUP, which keeps running containers (and
# other users of this daemon) alive; only if that does not take do we restart it.
reload_dockerd() {
  local pid
  pid=$(cat /var/run/docker.pid 2>/dev/null || pgrep -xo dockerd || true)
  [ -n "$pid" ] || return 1
  log "reloading dockerd (pid $pid) to pick up the runsc runtime"
  kill -HUP "$pid"
  wait_for 10 runtime_registered && return 0
  log "reload did not register runsc; restarting dockerd"
  kill -TERM "$pid"
  wait_for 30 sh -c "! kill -0 $pid" || return 1
  "$(dirname "$0")/ensure-docker.sh"
  runtime_registered
}

"$(dirname "$0")/ensure-docker.sh"

if ! docker_uses_local_daemon; then
  runtime_registered || skip "DOCKER_HOST=$DOCKER_HOST is remote and has no runsc runtime"
  check_runsc || skip "runsc is registered on $DOCKER_HOST but cannot run a container"
  exit 0
fi

if [ ! -x "$RUNSC_PATH" ]; then
  if ! apt_install runsc; then
    apt_update || true
    apt-cache policy runsc 2>/dev/null | grep -q 'Candidate: [0-9]' || skip "no runsc package in this machine's apt sources"
    skip "could not install the runsc package"
  fi
fi

if ! changed=$(merge_daemon_json 2>&1); then
  skip "could not update $DAEMON_JSON: $changed"
fi
if [ "$changed" = changed ]; then
  log "registered runsc in $DAEMON_JSON"
  reload_dockerd || skip "dockerd did not come back with the runsc runtime (see /var/log/dockerd.log)"
elif ! runtime_registered; then
  # daemon.json is right but the daemon started before it was: same reload.
  reload_dockerd || skip "dockerd did not pick up runsc from $DAEMON_JSON"
fi

check_runsc || skip "runsc is registered but a container does not start under it"
