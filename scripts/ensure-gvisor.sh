#!/usr/bin/env bash
# Register Debian's gVisor (`runsc`) with the local dockerd as runtimes "runsc" and "runsc-net",
# when that can be done safely, and prove each with one container run. gVisor is an extra isolation class, not a
# requirement: whatever goes wrong here is a warning and the script still exits 0.
# Idempotent: prints nothing when runsc is registered and runs containers.
set -euo pipefail
LOG_TAG=gvisor
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

DAEMON_JSON=${DOCKER_DAEMON_JSON:-/etc/docker/daemon.json}
RUNSC_PATH=/usr/bin/runsc
# ptrace: the KVM platform hangs on these VMs. network=none: the sandbox gets loopback only, so a
# gVisor agent has no network whatever Docker network it is attached to. --oci-seccomp: apply the
# container's seccomp profile (Docker's default) inside the sandbox too; without it gVisor lets an
# agent unshare a user namespace and take capabilities inside the sandbox (not the host's, but
# defence in depth and the same rules as runc; test/security/escape.test.ts checks it).
RUNSC_ARGS_JSON='["--platform=ptrace","--network=none","--oci-seccomp"]'
# runsc-net: for agents on the platform's internal egress network (allowlist mode, exposed
# ports). --network=host makes the sandbox use the container's own network namespace (the
# veth Docker put on the internal network), so the host's iptables rules and the egress proxy
# apply exactly as for runc. The default --network=sandbox refuses to start here ("cannot run
# with network enabled in root network namespace"). Cost: socket syscalls reach the host
# kernel's network stack (inside that namespace) instead of gVisor's netstack.
RUNSC_NET_ARGS_JSON='["--platform=ptrace","--network=host","--oci-seccomp"]'
CHECK_IMAGE=agent-platform/busybox:latest
CHECK_TIMEOUT_S=${GVISOR_CHECK_TIMEOUT_S:-60}

skip() { warn "$* -- gVisor (isolation class gvisor) will be unavailable"; exit 0; }

runtime_registered() {
  local runtimes
  runtimes=$(docker info -f '{{json .Runtimes}}' 2>/dev/null) || return 1
  grep -q '"runsc"' <<<"$runtimes" && grep -q '"runsc-net"' <<<"$runtimes"
}

# check_runsc RUNTIME: one real sandboxed container; a named container so a failed start can be
# removed.
check_runsc() {
  local runtime=${1:-runsc} name=gvisor-check-$$ out
  "$(dirname "$0")/build-images.sh" busybox
  if out=$(timeout "$CHECK_TIMEOUT_S" docker run --rm --name "$name" --runtime="$runtime" --network none \
      "$CHECK_IMAGE" sh -c 'echo gvisor-ok' 2>&1) && [ "$out" = gvisor-ok ]; then
    return 0
  fi
  docker rm -f "$name" >/dev/null 2>&1 || true
  printf '%s\n' "$out" | tail -n 10 >&2
  return 1
}

# merge_daemon_json: add or update runtimes.runsc and runtimes.runsc-net, keeping every other
# setting; prints "changed" or "unchanged". Node is used because it is always here (python3 may
# not be).
merge_daemon_json() {
  node --input-type=module - "$DAEMON_JSON" "$RUNSC_PATH" "$RUNSC_ARGS_JSON" "$RUNSC_NET_ARGS_JSON" <<'JS'
import { readFileSync, writeFileSync, mkdirSync, renameSync } from 'node:fs';
import { dirname } from 'node:path';
const [file, path, argsJson, netArgsJson] = process.argv.slice(2);
let text = '';
try { text = readFileSync(file, 'utf8'); } catch (e) { if (e.code !== 'ENOENT') throw e; }
let config;
try { config = text.trim() === '' ? {} : JSON.parse(text); } catch (e) {
  console.log(`${file} is not valid JSON (${e.message}); left as it is`);
  process.exit(1);
}
const wanted = { runsc: { path, runtimeArgs: JSON.parse(argsJson) }, 'runsc-net': { path, runtimeArgs: JSON.parse(netArgsJson) } };
config.runtimes ??= {};
const same = Object.entries(wanted).every(([name, entry]) => JSON.stringify(config.runtimes[name]) === JSON.stringify(entry));
if (same) {
  console.log('unchanged');
} else {
  Object.assign(config.runtimes, wanted);
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
  check_runsc runsc || skip "runsc is registered on $DOCKER_HOST but cannot run a container"
  check_runsc runsc-net || skip "runsc-net is registered on $DOCKER_HOST but cannot run a container"
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
  log "registered runsc and runsc-net in $DAEMON_JSON"
  reload_dockerd || skip "dockerd did not come back with the runsc runtime (see /var/log/dockerd.log)"
elif ! runtime_registered; then
  # daemon.json is right but the daemon started before it was: same reload.
  reload_dockerd || skip "dockerd did not pick up runsc from $DAEMON_JSON"
fi

check_runsc runsc || skip "runsc is registered but a container does not start under it"
check_runsc runsc-net || skip "runsc-net is registered but a container does not start under it"
