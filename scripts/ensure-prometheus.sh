#!/usr/bin/env bash
# Make sure `prometheus` and `promtool` (Debian's `prometheus` package) are on PATH: the
# metrics tests run a real Prometheus against the platform and `promtool test rules` on
# deploy/prometheus/alerts.yaml. The tests start their own Prometheus, so the packaged
# service must never run: we forbid service starts during the install (policy-rc.d) and
# stop any daemon the package's postinst started anyway.
# Idempotent: prints nothing when both tools are already present.
set -euo pipefail
LOG_TAG=prometheus
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 && exit 0

# Pids of packaged daemons that were already running, so that only one the install starts is
# stopped (someone else's Prometheus on this machine is left alone).
before=$(pgrep -x prometheus 2>/dev/null | sort || true)

POLICY=/usr/sbin/policy-rc.d
made_policy=0
if [ ! -e "$POLICY" ]; then
  # 101 = "action forbidden": invoke-rc.d then skips starting the service on install.
  printf '#!/bin/sh\nexit 101\n' >"$POLICY"
  chmod 755 "$POLICY"
  made_policy=1
fi
cleanup() { [ "$made_policy" = 1 ] && rm -f "$POLICY"; return 0; }
trap cleanup EXIT

apt_install prometheus || die "could not install the prometheus package"

for pid in $(pgrep -x prometheus 2>/dev/null | sort || true); do
  if ! grep -qx "$pid" <<<"$before"; then
    log "stopping the prometheus daemon the package started (pid $pid)"
    kill "$pid" 2>/dev/null || true
  fi
done

command -v prometheus >/dev/null 2>&1 || die "prometheus is still not on PATH after installing the package"
command -v promtool >/dev/null 2>&1 || die "promtool is still not on PATH after installing the package"
log "prometheus $(prometheus --version 2>&1 | head -n 1 | awk '{print $3}') installed"
