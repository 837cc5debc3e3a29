#!/usr/bin/env bash
# Install Debian's podman (with catatonit, which `podman kube play` needs as the pause
# process) and make it work on these machines, for test/kubernetes/podman-kube-play.test.ts:
# the generated Pod manifests run for real under `podman kube play`.
#  - cgroup v1 hybrid hosts lack the hugetlb hierarchy crun expects: mount it.
#  - podman's default nofile/nproc ulimits are above this VM's hard limits and every
#    container start fails with "setrlimit ... operation not permitted": lower them in
#    /etc/containers/containers.conf.
# Idempotent: prints nothing when podman is installed and configured. Exits non-zero when
# podman cannot be installed (the test then skips, or fails when CI=true).
set -euo pipefail
LOG_TAG=podman
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

CONTAINERS_CONF=${CONTAINERS_CONF_FILE:-/etc/containers/containers.conf}
ULIMITS_LINE='default_ulimits = ["nofile=20000:20000", "nproc=8192:8192"]'

if ! command -v podman >/dev/null 2>&1 || { [ ! -x /usr/bin/catatonit ] && [ ! -x /usr/libexec/podman/catatonit ]; }; then
  apt_install podman catatonit || die "could not install podman and catatonit from apt"
fi

# The hybrid cgroup fix: only when cgroup v1 is in use (v2 has no per-controller mounts).
if [ -d /sys/fs/cgroup/memory ] && ! grep -qs ' /sys/fs/cgroup/hugetlb ' /proc/mounts; then
  log "mounting the cgroup v1 hugetlb hierarchy"
  mkdir -p /sys/fs/cgroup/hugetlb
  mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb || warn "could not mount the hugetlb cgroup; podman may fail to start containers"
fi

# default_ulimits under [containers]; other settings in the file are kept.
if ! grep -qsF "$ULIMITS_LINE" "$CONTAINERS_CONF"; then
  log "setting default_ulimits in $CONTAINERS_CONF"
  mkdir -p "$(dirname "$CONTAINERS_CONF")"
  touch "$CONTAINERS_CONF"
  node --input-type=module - "$CONTAINERS_CONF" "$ULIMITS_LINE" <<'JS'
import { readFileSync, writeFileSync, renameSync } from 'node:fs';
const [file, line] = process.argv.slice(2);
const lines = readFileSync(file, 'utf8').split('\n').filter((l) => !/^\s*default_ulimits\s*=/.test(l));
const at = lines.findIndex((l) => l.trim() === '[containers]');
if (at === -1) lines.push('[containers]', line);
else lines.splice(at + 1, 0, line);
writeFileSync(`${file}.tmp`, lines.join('\n').replace(/\n*$/, '\n'));
renameSync(`${file}.tmp`, file);
JS
fi

podman info >/dev/null 2>&1 || die "podman is installed but 'podman info' fails"
